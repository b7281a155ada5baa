//! A loaded denoiser, ready for inference on images of any size.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use robustify_smoothing::Image;

use crate::card::Card;
use crate::net::Net;
use crate::{Error, Result};

/// Images larger than this many pixels are denoised in overlapping tiles, so memory stays
/// bounded (a 12-megapixel photo would otherwise need tens of GB for DnCNN's activations).
const TILE_ABOVE: usize = 512 * 512;
/// Tile core size and the context kept around it on every side.
const TILE: usize = 256;
const MARGIN: usize = 32;
/// Pixels per forward pass when batching small images.
const BATCH_PIXELS: usize = 1 << 18;

/// A trained denoiser with its card.
pub struct Denoiser {
    net: Net,
    card: Card,
    device: Device,
    path: PathBuf,
}

/// The device denoisers run on: the process's ([`robustify_ops::device`]: `--device`,
/// else the first CUDA GPU when built with the `cuda` feature and one is present, else the
/// CPU).
pub fn default_device() -> Device {
    robustify_ops::device()
}

impl Denoiser {
    /// Loads `dir/card.json` and `dir/model.safetensors` on [`default_device`].
    pub fn load(dir: &Path) -> Result<Denoiser> {
        Denoiser::load_on(dir, &default_device())
    }

    /// Loads on `device`.
    pub fn load_on(dir: &Path, device: &Device) -> Result<Denoiser> {
        let card = Card::read(&dir.join("card.json"))?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(Error::Model {
                path: weights,
                message: "file not found".into(),
            });
        }
        let tensors =
            candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| Error::Model {
                path: weights.clone(),
                message: e.to_string(),
            })?;
        let net = Net::for_inference(&card.arch, tensors, device).map_err(|e| Error::Model {
            path: weights.clone(),
            message: format!("does not match the card's {}: {e}", card.arch.name()),
        })?;
        Ok(Denoiser {
            net,
            card,
            device: device.clone(),
            path: dir.to_path_buf(),
        })
    }

    /// The card's name.
    pub fn name(&self) -> &str {
        &self.card.name
    }

    /// The σ it was trained for.
    pub fn sigma(&self) -> f64 {
        self.card.sigma
    }

    /// The card.
    pub fn card(&self) -> &Card {
        &self.card
    }

    /// The folder it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Denoises a `[B, 3, H, W]` batch (moved to the denoiser's device and back).
    pub fn denoise_tensor(&self, x: &Tensor) -> Result<Tensor> {
        let on = x.to_device(&self.device)?;
        Ok(self.net.forward_t(&on, false)?.to_device(x.device())?)
    }

    /// Denoises each image (unclipped in, unclipped out). Consecutive images of one size
    /// go through together; large ones are tiled.
    pub fn denoise(&self, images: &[Image]) -> Result<Vec<Image>> {
        let mut out = Vec::with_capacity(images.len());
        let mut i = 0;
        while i < images.len() {
            let (w, h) = (images[i].width() as usize, images[i].height() as usize);
            if w * h > TILE_ABOVE {
                out.push(self.denoise_tiled(&images[i])?);
                i += 1;
                continue;
            }
            let per = (BATCH_PIXELS / (w * h)).max(1);
            let mut j = i;
            while j < images.len()
                && j - i < per
                && (images[j].width() as usize, images[j].height() as usize) == (w, h)
            {
                j += 1;
            }
            let data: Vec<f32> = images[i..j]
                .iter()
                .flat_map(|m| m.data().iter().copied())
                .collect();
            let x = Tensor::from_vec(data, (j - i, 3, h, w), &Device::Cpu)?;
            let y = self.denoise_tensor(&x)?.flatten_all()?.to_vec1::<f32>()?;
            for chunk in y.chunks(3 * h * w) {
                out.push(Image::new(w as u32, h as u32, chunk.to_vec())?);
            }
            i = j;
        }
        Ok(out)
    }

    /// One large image in `TILE`-sized tiles, each run with `MARGIN` pixels of context.
    fn denoise_tiled(&self, image: &Image) -> Result<Image> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let src = image.data();
        let mut dst = vec![0f32; src.len()];
        for ty in (0..h).step_by(TILE) {
            for tx in (0..w).step_by(TILE) {
                let (y0, x0) = (ty.saturating_sub(MARGIN), tx.saturating_sub(MARGIN));
                let (y1, x1) = ((ty + TILE + MARGIN).min(h), (tx + TILE + MARGIN).min(w));
                let (th, tw) = (y1 - y0, x1 - x0);
                let mut tile = Vec::with_capacity(3 * th * tw);
                for c in 0..3 {
                    for y in y0..y1 {
                        let row = c * h * w + y * w;
                        tile.extend_from_slice(&src[row + x0..row + x1]);
                    }
                }
                let x = Tensor::from_vec(tile, (1, 3, th, tw), &Device::Cpu)?;
                let y = self.denoise_tensor(&x)?.flatten_all()?.to_vec1::<f32>()?;
                let (cy1, cx1) = ((ty + TILE).min(h), (tx + TILE).min(w));
                for c in 0..3 {
                    for yy in ty..cy1 {
                        let from = c * th * tw + (yy - y0) * tw + (tx - x0);
                        let to = c * h * w + yy * w + tx;
                        dst[to..to + (cx1 - tx)].copy_from_slice(&y[from..from + (cx1 - tx)]);
                    }
                }
            }
        }
        Ok(Image::new(w as u32, h as u32, dst)?)
    }
}
