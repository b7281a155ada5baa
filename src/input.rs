//! Reading user files: images with size limits checked before the bytes are read.

use std::path::Path;

use anyhow::Context;
use robustify_smoothing::{DecodeLimits, Image};

/// Reads and decodes an image file, refusing files over the byte limit before reading them.
pub fn read_image(path: &Path, limits: &DecodeLimits) -> anyhow::Result<Image> {
    read_image_bytes(path, limits).map(|(_, image)| image)
}

/// As [`read_image`], also returning the file's bytes (whose hash keys the query log).
pub fn read_image_bytes(path: &Path, limits: &DecodeLimits) -> anyhow::Result<(Vec<u8>, Image)> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{}: not a regular file", path.display());
    }
    if meta.len() > limits.max_bytes {
        anyhow::bail!(
            "{}: image too large: {} bytes, the limit is {} bytes",
            path.display(),
            meta.len(),
            limits.max_bytes
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let image = Image::decode(&bytes, limits).with_context(|| format!("{}", path.display()))?;
    Ok((bytes, image))
}
