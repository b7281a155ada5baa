//! Memory bounded by design: what one certification of a `w × h` image holds at its peak,
//! and the batch size that keeps it under a ceiling.
//!
//! A certification holds the decoded image, and for every draw of the batch in flight its
//! noisy copy, the copies the denoiser and the provider adapter make of it, the denoised
//! image and its 8-bit encoding. All of these scale with the pixel count, so the estimate
//! is `pixels × (BASE + BYTES_PER_DRAW × batch)`: checked before any work or spend, and
//! the batch is cut (never the image resized) until it fits. An image that does not fit
//! even one draw at a time is refused.
//!
//! ```
//! use robustify_smoothing::MemoryBudget;
//!
//! let budget = MemoryBudget::new(2 << 30); // 2 GiB
//! // A 224×224 photo keeps the provider's preferred 32 draws in flight…
//! assert_eq!(budget.batch_for(224, 224, 32).unwrap(), 32);
//! // …a 36-megapixel one is refused before anything is decoded or sent.
//! assert!(budget.batch_for(6000, 6000, 8).is_err());
//! ```

use crate::{Error, Result};

/// Bytes per pixel held once per certification: the decoded `f32` RGB image (12) and the
/// decoder's own buffer while it converts (at most 8, 16-bit RGBA), rounded up.
pub const BASE_BYTES_PER_PIXEL: u64 = 24;

/// Bytes per pixel held for each draw in flight: the noisy `f32` copy (12), the denoiser's
/// input copy and output (24), the provider adapter's copies of the batch (24), the 8-bit
/// RGB and PNG encodings and the request body (≤ 9), rounded up. The denoiser itself works
/// in fixed-size tiles, so its activations do not grow with the image.
pub const BYTES_PER_DRAW_PIXEL: u64 = 72;

/// A ceiling on the bytes one certification may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    max_bytes: u64,
}

impl Default for MemoryBudget {
    /// 2 GiB: a 24-megapixel image one draw at a time, a 1-megapixel one 28 at a time.
    fn default() -> Self {
        MemoryBudget { max_bytes: 2 << 30 }
    }
}

impl MemoryBudget {
    /// A ceiling of `max_bytes`.
    pub fn new(max_bytes: u64) -> MemoryBudget {
        MemoryBudget { max_bytes }
    }

    /// The ceiling in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The most pixels an image may have to be certified one draw at a time.
    pub fn max_pixels(&self) -> u64 {
        self.max_bytes / (BASE_BYTES_PER_PIXEL + BYTES_PER_DRAW_PIXEL)
    }

    /// Decoding limits under this ceiling: the default byte limit, and no more pixels than
    /// one draw at a time fits (nor than the default allows).
    pub fn decode_limits(&self) -> crate::DecodeLimits {
        let default = crate::DecodeLimits::default();
        crate::DecodeLimits {
            max_pixels: self.max_pixels().min(default.max_pixels),
            ..default
        }
    }

    /// The estimated peak bytes of certifying a `pixels`-pixel image `batch` draws at a time
    /// (saturating: never wraps).
    pub fn estimate(pixels: u64, batch: u64) -> u64 {
        pixels.saturating_mul(
            BASE_BYTES_PER_PIXEL.saturating_add(BYTES_PER_DRAW_PIXEL.saturating_mul(batch)),
        )
    }

    /// The batch size for a `width × height` image: `preferred`, or fewer draws at a time
    /// so that the estimate stays under the ceiling; an error when not even one fits.
    pub fn batch_for(&self, width: u32, height: u32, preferred: usize) -> Result<usize> {
        let pixels = u64::from(width) * u64::from(height);
        let base = pixels.saturating_mul(BASE_BYTES_PER_PIXEL);
        let per_draw = pixels.saturating_mul(BYTES_PER_DRAW_PIXEL).max(1);
        let fits = self.max_bytes.saturating_sub(base) / per_draw;
        if base >= self.max_bytes || fits == 0 {
            return Err(Error::TooLarge(format!(
                "{width}x{height} = {pixels} pixels needs about {} MB even one draw at a time; \
                 the memory limit is {} MB ({} pixels at most)",
                MemoryBudget::estimate(pixels, 1) / 1_000_000,
                self.max_bytes / 1_000_000,
                self.max_pixels()
            )));
        }
        Ok(preferred
            .max(1)
            .min(usize::try_from(fits).unwrap_or(usize::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_shrink_to_fit_and_hopeless_images_are_refused() {
        let budget = MemoryBudget::new(1 << 30);
        // 1 MP: 24 MB base + 72 MB a draw → 14 draws in 1 GiB.
        assert_eq!(budget.batch_for(1000, 1000, 64).unwrap(), 14);
        assert_eq!(budget.batch_for(1000, 1000, 4).unwrap(), 4);
        assert_eq!(budget.batch_for(10, 10, 0).unwrap(), 1);
        let err = budget.batch_for(6000, 6000, 8).unwrap_err().to_string();
        assert!(
            err.contains("6000x6000") && err.contains("memory limit"),
            "{err}"
        );
        // The largest image that fits one draw at a time does; one pixel row more does not.
        let max = budget.max_pixels();
        assert!(MemoryBudget::estimate(max, 1) <= budget.max_bytes());
        assert!(MemoryBudget::estimate(max + 1, 1) > budget.max_bytes());
        assert_eq!(MemoryBudget::estimate(u64::MAX, u64::MAX), u64::MAX);
        assert!(MemoryBudget::new(0).batch_for(1, 1, 1).is_err());
    }
}
