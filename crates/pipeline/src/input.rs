//! Reading user files: images with size limits checked before the bytes are read.

use std::path::Path;

use robustify_smoothing::{DecodeLimits, Image, MemoryBudget};

use crate::{Error, Result};

/// Reads and decodes an image file, refusing files over the byte limit before reading them;
/// also returns the file's bytes (whose hash keys the query log).
pub fn read_image(path: &Path, limits: &DecodeLimits) -> Result<(Vec<u8>, Image)> {
    let bytes = read_file(path, limits.max_bytes)?;
    let image = Image::decode(&bytes, limits).map_err(|e| Error::file(path, e))?;
    Ok((bytes, image))
}

/// As [`read_image`] under a memory ceiling: an image whose declared size cannot be
/// certified even one draw at a time is refused from its header, before it is decoded.
pub fn read_image_within(path: &Path, memory: &MemoryBudget) -> Result<(Vec<u8>, Image)> {
    let limits = memory.decode_limits();
    let bytes = read_file(path, limits.max_bytes)?;
    // Said in the memory's terms; decoding would refuse it too, as "too many pixels".
    if let Ok((w, h)) = Image::dimensions(&bytes) {
        memory
            .batch_for(w, h, 1)
            .map_err(|e| Error::file(path, e))?;
    }
    let image = Image::decode(&bytes, &limits).map_err(|e| Error::file(path, e))?;
    Ok((bytes, image))
}

/// A regular file's bytes, refused before reading when over `max_bytes`.
pub fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
    if !meta.is_file() {
        return Err(Error::file(path, "not a regular file"));
    }
    if meta.len() > max_bytes {
        return Err(Error::file(
            path,
            format!(
                "image too large: {} bytes, the limit is {max_bytes} bytes",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|e| Error::file(path, e))
}
