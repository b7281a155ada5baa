//! The image type every stage shares, and decoding and encoding at the edges.
//!
//! Decoding lives here rather than in the binary because the stand-in server, the providers
//! and the CLI all need the same limits and the same colour rules. It works on bytes only:
//! reading files is the caller's business, so this crate stays free of I/O.

use std::io::Cursor;

use crate::{Error, Result};

/// An RGB image with `f32` samples, nominally in `[0, 1]`.
///
/// Layout: **planar CHW** — all red samples row by row, then all green, then all blue, so
/// sample `(c, y, x)` sits at `data[c * h * w + y * w + x]`. This is the layout candle models
/// take (`[3, h, w]`), so tensors are built without a permute.
///
/// Values may leave `[0, 1]`: Gaussian noise is added without clipping. Clipping and 8-bit
/// quantisation belong to the *base classifier* (a provider encodes what it sends as 8-bit
/// PNG; see [`Image::to_png`]), so the smoothing statistics see exactly the noise model
/// `x + δ`, δ ~ N(0, σ²I).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    width: u32,
    height: u32,
    data: Vec<f32>,
}

/// Limits on what [`Image::decode`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: u64,
    /// Largest accepted `width × height`.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    /// 50 MB of file and 40 megapixels.
    fn default() -> Self {
        DecodeLimits {
            max_bytes: 50_000_000,
            max_pixels: 40_000_000,
        }
    }
}

impl Image {
    /// PSNR (dB) of `other` clipped to [0, 1] against `self` (the clean image); the same
    /// size is assumed (the pixels beyond the shorter of the two are ignored).
    pub fn psnr(&self, other: &Image) -> f64 {
        let n = self.data().len().min(other.data().len()).max(1) as f64;
        let mse: f64 = self
            .data()
            .iter()
            .zip(other.data())
            .map(|(a, b)| f64::from(b.clamp(0.0, 1.0) - a).powi(2))
            .sum::<f64>()
            / n;
        10.0 * (1.0 / mse.max(1e-12)).log10()
    }

    /// Wraps planar CHW data; fails unless `data.len() == 3 · width · height` and both
    /// dimensions are non-zero.
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Result<Image> {
        let expected = 3 * width as usize * height as usize;
        if width == 0 || height == 0 || data.len() != expected {
            return Err(Error::InvalidParameter {
                name: "image",
                reason: format!(
                    "{width}x{height} RGB needs {expected} samples, got {}",
                    data.len()
                ),
            });
        }
        Ok(Image {
            width,
            height,
            data,
        })
    }

    /// A constant image, handy in tests and examples.
    pub fn filled(width: u32, height: u32, value: f32) -> Result<Image> {
        Image::new(
            width,
            height,
            vec![value; 3 * width as usize * height as usize],
        )
    }

    /// From interleaved 8-bit RGB (`[r, g, b, r, g, b, …]`, row-major), scaled to `[0, 1]`.
    pub fn from_rgb8(width: u32, height: u32, rgb: &[u8]) -> Result<Image> {
        let plane = width as usize * height as usize;
        if rgb.len() != 3 * plane {
            return Err(Error::InvalidParameter {
                name: "image",
                reason: format!("{width}x{height} RGB8 needs {} bytes", 3 * plane),
            });
        }
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = f32::from(px[c]) / 255.0;
            }
        }
        Image::new(width, height, data)
    }

    /// Decodes PNG, JPEG, WebP or BMP bytes. Grayscale becomes RGB (the gray value in
    /// all three channels); an alpha channel is dropped; 16-bit samples keep their
    /// precision. Fails with [`Error::TooLarge`] beyond `limits`, before decoding pixels.
    pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Image> {
        if bytes.is_empty() {
            return Err(Error::Decode("empty input (0 bytes)".into()));
        }
        if bytes.len() as u64 > limits.max_bytes {
            return Err(Error::TooLarge(format!(
                "{} bytes, the limit is {} bytes",
                bytes.len(),
                limits.max_bytes
            )));
        }
        let reader = || -> Result<image::ImageReader<Cursor<&[u8]>>> {
            let reader = image::ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|e| Error::Decode(e.to_string()))?;
            match reader.format() {
                Some(
                    image::ImageFormat::Png
                    | image::ImageFormat::Jpeg
                    | image::ImageFormat::WebP
                    | image::ImageFormat::Bmp,
                ) => Ok(reader),
                Some(other) => Err(Error::Decode(format!(
                    "format {other:?} is not supported (PNG, JPEG, WebP or BMP)"
                ))),
                None => Err(Error::Decode(
                    "unrecognised format (expected PNG, JPEG, WebP or BMP)".into(),
                )),
            }
        };
        let r = reader()?;
        if r.format() == Some(image::ImageFormat::Jpeg) {
            crate::jpeg::check(bytes)?;
        }
        let (w, h) = r
            .into_dimensions()
            .map_err(|e| Error::Decode(e.to_string()))?;
        let pixels = u64::from(w) * u64::from(h);
        if pixels > limits.max_pixels {
            return Err(Error::TooLarge(format!(
                "{w}x{h} = {pixels} pixels, the limit is {} pixels",
                limits.max_pixels
            )));
        }
        let mut reader = reader()?;
        let mut image_limits = image::Limits::default();
        // 16-bit RGBA is the widest decode buffer: 8 bytes a pixel, plus our f32 copy.
        image_limits.max_alloc = Some(pixels.saturating_mul(8).max(1 << 20));
        reader.limits(image_limits);
        let decoded = reader.decode().map_err(|e| Error::Decode(e.to_string()))?;
        let eight_bit = matches!(
            decoded.color(),
            image::ColorType::L8
                | image::ColorType::La8
                | image::ColorType::Rgb8
                | image::ColorType::Rgba8
        );
        if eight_bit {
            // Same scaling as `from_rgb8`, so 8-bit values round-trip exactly.
            return Image::from_rgb8(w, h, decoded.to_rgb8().as_raw());
        }
        let rgb = decoded.to_rgb32f();
        let plane = w as usize * h as usize;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = px[c];
            }
        }
        Image::new(w, h, data)
    }

    /// The dimensions `bytes` declare, read from the header alone (nothing is decoded): what
    /// a memory estimate needs before any work.
    pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
        image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::Decode(e.to_string()))?
            .into_dimensions()
            .map_err(|e| Error::Decode(e.to_string()))
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The planar CHW samples.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable planar CHW samples.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the image, returning its planar CHW samples.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Clips to `[0, 1]` and quantises to interleaved 8-bit RGB (round to nearest). This is
    /// what a remote base classifier receives.
    pub fn to_rgb8(&self) -> Vec<u8> {
        let plane = self.width as usize * self.height as usize;
        let mut out = vec![0u8; 3 * plane];
        for i in 0..plane {
            for c in 0..3 {
                let v = self.data[c * plane + i].clamp(0.0, 1.0);
                out[3 * i + c] = (v * 255.0).round() as u8;
            }
        }
        out
    }

    /// Encodes [`Image::to_rgb8`] as a PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        use image::ImageEncoder;
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                &self.to_rgb8(),
                self.width,
                self.height,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| Error::Decode(format!("PNG encoding failed: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn psnr_of_a_known_error() {
        let clean = super::Image::filled(4, 4, 0.5).unwrap();
        let off = super::Image::filled(4, 4, 0.6).unwrap();
        assert!(
            (clean.psnr(&off) - 20.0).abs() < 1e-4,
            "{}",
            clean.psnr(&off)
        );
        // Identical: the floor, not infinity; values outside [0, 1] are clipped first.
        assert!((clean.psnr(&clean) - 120.0).abs() < 1e-9);
        let bright = super::Image::filled(4, 4, 1.0).unwrap();
        let over = super::Image::new(4, 4, vec![1.7; 48]).unwrap();
        assert!((bright.psnr(&over) - 120.0).abs() < 1e-9);
    }

    use super::*;

    fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn png_round_trip_is_exact_at_8_bits() {
        let rgb: Vec<u8> = (0..5 * 3 * 3).map(|i| (i * 17 % 256) as u8).collect();
        let img = Image::from_rgb8(5, 3, &rgb).unwrap();
        let back = Image::decode(&img.to_png().unwrap(), &DecodeLimits::default()).unwrap();
        assert_eq!(back, img);
        assert_eq!(back.to_rgb8(), rgb);
    }

    #[test]
    fn layout_is_planar_chw() {
        // One red pixel then one blue pixel.
        let img = Image::from_rgb8(2, 1, &[255, 0, 0, 0, 0, 255]).unwrap();
        assert_eq!(img.data(), &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn grayscale_and_alpha_become_rgb() {
        let gray =
            image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(2, 1, vec![0, 51]).unwrap());
        let img = Image::decode(&png_bytes(&gray), &DecodeLimits::default()).unwrap();
        assert_eq!(img.data(), &[0.0, 0.2, 0.0, 0.2, 0.0, 0.2]);
        let rgba = image::DynamicImage::ImageRgba8(
            image::RgbaImage::from_raw(1, 1, vec![255, 0, 255, 7]).unwrap(),
        );
        let img = Image::decode(&png_bytes(&rgba), &DecodeLimits::default()).unwrap();
        assert_eq!(img.data(), &[1.0, 0.0, 1.0]);
    }

    #[test]
    fn noise_is_not_clipped_but_encoding_is() {
        let img = Image::new(1, 1, vec![-0.5, 0.5, 1.5]).unwrap();
        assert_eq!(img.to_rgb8(), vec![0, 128, 255]);
    }

    #[test]
    fn bad_inputs_get_clear_errors() {
        let limits = DecodeLimits::default();
        assert!(
            matches!(Image::decode(&[], &limits), Err(Error::Decode(m)) if m.contains("0 bytes"))
        );
        assert!(matches!(
            Image::decode(b"hello, I am a text file", &limits),
            Err(Error::Decode(m)) if m.contains("unrecognised")
        ));
        let img = Image::filled(16, 16, 0.3).unwrap();
        let png = img.to_png().unwrap();
        let truncated = &png[..png.len() / 2];
        assert!(matches!(
            Image::decode(truncated, &limits),
            Err(Error::Decode(_))
        ));
        let small = DecodeLimits {
            max_bytes: 10,
            ..limits
        };
        assert!(matches!(
            Image::decode(&png, &small),
            Err(Error::TooLarge(_))
        ));
        let few = DecodeLimits {
            max_pixels: 255,
            ..limits
        };
        assert!(
            matches!(Image::decode(&png, &few), Err(Error::TooLarge(m)) if m.contains("16x16"))
        );
    }

    fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, rgb).unwrap());
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn truncated_jpegs_are_refused_whole_ones_with_trailers_are_not() {
        let limits = DecodeLimits::default();
        let jpeg = jpeg_bytes(64, 48);
        assert!(Image::decode(&jpeg, &limits).is_ok());
        // Any cut is refused: mid-header, mid-scan, just before EOI.
        for cut in [
            4,
            100,
            700.min(jpeg.len() - 3),
            jpeg.len() / 2,
            jpeg.len() - 2,
        ] {
            let err = Image::decode(&jpeg[..cut], &limits)
                .unwrap_err()
                .to_string();
            assert!(err.contains("truncated"), "cut at {cut}: {err}");
        }
        // Bytes after EOI (a motion photo's video, a vendor trailer) are fine.
        let mut trailed = jpeg.clone();
        trailed.extend_from_slice(b"\0\0ftypmp42 some video");
        assert!(Image::decode(&trailed, &limits).is_ok());
        assert_eq!(Image::dimensions(&jpeg).unwrap(), (64, 48));
    }

    /// `jpeg` cut after `keep` bytes, with an end-of-image marker put back.
    fn cut_with_eoi(jpeg: &[u8], keep: usize) -> Vec<u8> {
        let mut out = jpeg[..keep].to_vec();
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../../{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn scans_cut_short_are_refused_even_with_an_end_marker() {
        let limits = DecodeLimits::default();
        // A baseline photo: the first half, then FF D9.
        let photo = fixture("examples/images/goldfish.jpg");
        assert!(Image::decode(&photo, &limits).is_ok());
        let refusal = |bytes: &[u8]| match Image::decode(bytes, &limits) {
            Ok(i) => panic!("a cut JPEG was accepted as {}x{}", i.width(), i.height()),
            Err(e) => e.to_string(),
        };
        for keep in [photo.len() / 2, photo.len() - 100, 1000] {
            let err = refusal(&cut_with_eoi(&photo, keep));
            assert!(err.contains("truncated or corrupt JPEG"), "{keep}: {err}");
        }
        // A progressive JPEG (10 scans) cut after its second scan began, then FF D9.
        let progressive = fixture("tests/fixtures/progressive.jpg");
        assert!(Image::decode(&progressive, &limits).is_ok());
        let sos: Vec<usize> = (0..progressive.len() - 1)
            .filter(|&i| progressive[i] == 0xFF && progressive[i + 1] == 0xDA)
            .collect();
        assert_eq!(sos.len(), 10);
        for keep in [sos[1] + 40, sos[2] - 1, sos[5]] {
            let err = refusal(&cut_with_eoi(&progressive, keep));
            assert!(
                err.contains("truncated or corrupt JPEG"),
                "cut at {keep}: {err}"
            );
        }
    }

    #[test]
    fn huge_declared_dimensions_are_refused_before_decoding() {
        // A valid PNG header that claims 100000 x 100000 pixels (10 gigapixels).
        let img = Image::filled(1, 1, 0.0).unwrap();
        let mut png = img.to_png().unwrap();
        // IHDR data starts at byte 16: width (4 bytes), height (4 bytes). The CRC no
        // longer matches, but dimensions are read first.
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = Image::decode(&png, &DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge(_) | Error::Decode(_)),
            "{err}"
        );
    }
}
