//! Reading user files: images with size limits checked before the bytes are read.

use std::path::Path;

use anyhow::Context;
use robustify_smoothing::{DecodeLimits, Image, MemoryBudget};

/// Reads and decodes an image file, refusing files over the byte limit before reading them.
pub fn read_image(path: &Path, limits: &DecodeLimits) -> anyhow::Result<Image> {
    read_image_bytes(path, limits).map(|(_, image)| image)
}

/// As [`read_image`], also returning the file's bytes (whose hash keys the query log).
pub fn read_image_bytes(path: &Path, limits: &DecodeLimits) -> anyhow::Result<(Vec<u8>, Image)> {
    let bytes = read_file(path, limits.max_bytes)?;
    let image = Image::decode(&bytes, limits).with_context(|| format!("{}", path.display()))?;
    Ok((bytes, image))
}

/// As [`read_image_bytes`] under a memory ceiling: an image whose declared size cannot be
/// certified even one draw at a time is refused from its header, before it is decoded.
pub fn read_image_within(path: &Path, memory: &MemoryBudget) -> anyhow::Result<(Vec<u8>, Image)> {
    let limits = memory.decode_limits();
    let bytes = read_file(path, limits.max_bytes)?;
    // Said in the memory's terms; decoding would refuse it too, as "too many pixels".
    if let Ok((w, h)) = Image::dimensions(&bytes) {
        memory
            .batch_for(w, h, 1)
            .with_context(|| format!("{}", path.display()))?;
    }
    let image = Image::decode(&bytes, &limits).with_context(|| format!("{}", path.display()))?;
    Ok((bytes, image))
}

/// A regular file's bytes, refused before reading when over `max_bytes`.
fn read_file(path: &Path, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{}: not a regular file", path.display());
    }
    if meta.len() > max_bytes {
        anyhow::bail!(
            "{}: image too large: {} bytes, the limit is {} bytes",
            path.display(),
            meta.len(),
            max_bytes
        );
    }
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}
