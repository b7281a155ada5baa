//! Turning an [`Image`] into the tensor a model expects.

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use robustify_smoothing::Image;

use crate::Result;

/// How pixel values in `[0, 1]` are normalised per channel: `(x − mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// Per-channel mean (RGB).
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub std: [f32; 3],
}

impl Normalization {
    /// EfficientNet-Lite's, from TensorFlow's `efficientnet/lite/efficientnet_lite_builder.py`:
    /// `MEAN_RGB = [127.0] * 3`, `STDDEV_RGB = [128.0] * 3` on the 0–255 scale.
    pub const EFFICIENTNET_LITE: Normalization = Normalization {
        mean: [127.0 / 255.0; 3],
        std: [128.0 / 255.0; 3],
    };
}

/// Resizing and cropping before normalisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Geometry {
    /// TensorFlow's ImageNet evaluation crop: the centred square of side
    /// `size / (size + 32) · min(h, w)`, resized (bicubic) to `size × size`.
    CenterCrop {
        /// Output side.
        size: u32,
    },
    /// Use the image as it is; it must already be `size × size`-agnostic (fully
    /// convolutional models and 32×32 CIFAR inputs).
    AsIs,
}

/// Preprocesses one image: clip to `[0, 1]` (what a vendor sees), crop/resize, normalise.
pub fn to_tensor(
    image: &Image,
    geometry: Geometry,
    norm: &Normalization,
    device: &Device,
) -> Result<Tensor> {
    let (w, h) = (image.width(), image.height());
    let (data, ow, oh) = match geometry {
        Geometry::AsIs => (
            image
                .data()
                .iter()
                .map(|v| v.clamp(0.0, 1.0))
                .collect::<Vec<f32>>(),
            w,
            h,
        ),
        Geometry::CenterCrop { size } => {
            let side = ((f64::from(size) / f64::from(size + 32)) * f64::from(w.min(h))) as u32;
            let side = side.max(1);
            let (x0, y0) = ((w - side).div_ceil(2), (h - side).div_ceil(2));
            let plane = (w * h) as usize;
            let src = image.data();
            let crop = image::Rgb32FImage::from_fn(side, side, |x, y| {
                let i = ((y + y0) * w + (x + x0)) as usize;
                image::Rgb([0, 1, 2].map(|c| src[c * plane + i].clamp(0.0, 1.0)))
            });
            let resized = image::imageops::resize(&crop, size, size, FilterType::CatmullRom);
            let n = (size * size) as usize;
            let mut chw = vec![0f32; 3 * n];
            for (i, px) in resized.pixels().enumerate() {
                for c in 0..3 {
                    chw[c * n + i] = px.0[c].clamp(0.0, 1.0);
                }
            }
            (chw, size, size)
        }
    };
    let n = (ow * oh) as usize;
    let mut data = data;
    for c in 0..3 {
        for v in &mut data[c * n..(c + 1) * n] {
            *v = (*v - norm.mean[c]) / norm.std[c];
        }
    }
    Ok(Tensor::from_vec(
        data,
        (3, oh as usize, ow as usize),
        device,
    )?)
}

/// Preprocesses a batch into one `[N, 3, H, W]` tensor (all outputs must share a size).
pub fn batch(
    images: &[Image],
    geometry: Geometry,
    norm: &Normalization,
    device: &Device,
) -> Result<Tensor> {
    let tensors = images
        .iter()
        .map(|img| to_tensor(img, geometry, norm, device))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&tensors, 0)?)
}
