//! Training images for denoisers: any folder of images (searched recursively), of any
//! sizes, held in memory as 8-bit CHW, and the random crops the training takes from them.

use std::path::{Path, PathBuf};

use rand::Rng;

use crate::{Error, Result};

/// One image, 8-bit CHW.
#[derive(Clone, Debug)]
struct Item {
    h: usize,
    w: usize,
    pixels: Vec<u8>,
}

/// Images of any sizes.
#[derive(Clone, Debug, Default)]
pub struct Photos {
    items: Vec<Item>,
    /// Where each image came from.
    pub paths: Vec<PathBuf>,
}

const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "jfif"];

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Model {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    for entry in entries.filter_map(|e| e.ok()) {
        let p = entry.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Every image file under `dir` (recursively), sorted.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    Ok(files)
}

impl Photos {
    /// Loads every image under `root`; images whose shorter side exceeds `max_short` are
    /// downscaled (bilinear) to that. Calls `progress(done, total)`.
    pub fn load(
        root: &Path,
        max_short: u32,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Photos> {
        let files = image_files(root)?;
        if files.is_empty() {
            return Err(Error::Model {
                path: root.to_path_buf(),
                message: "no images (jpg, png, webp, bmp) found".into(),
            });
        }
        let mut photos = Photos::default();
        for (i, path) in files.iter().enumerate() {
            let img = image::open(path)
                .map_err(|e| Error::Model {
                    path: path.clone(),
                    message: e.to_string(),
                })?
                .to_rgb8();
            let (w, h) = img.dimensions();
            let img = if w.min(h) > max_short {
                let s = f64::from(max_short) / f64::from(w.min(h));
                let (nw, nh) = (
                    ((f64::from(w) * s).round() as u32).max(max_short),
                    ((f64::from(h) * s).round() as u32).max(max_short),
                );
                image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
            } else {
                img
            };
            photos.push(path.clone(), img);
            progress(i + 1, files.len());
        }
        Ok(photos)
    }

    fn push(&mut self, path: PathBuf, img: image::RgbImage) {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut pixels = vec![0u8; 3 * h * w];
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                pixels[c * h * w + i] = px.0[c];
            }
        }
        self.items.push(Item { h, w, pixels });
        self.paths.push(path);
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The shorter side of the smallest image.
    pub fn min_side(&self) -> usize {
        self.items.iter().map(|m| m.h.min(m.w)).min().unwrap_or(0)
    }

    /// The largest side of all images.
    pub fn max_side(&self) -> usize {
        self.items.iter().map(|m| m.h.max(m.w)).max().unwrap_or(0)
    }

    /// Splits off every `every`-th image (indices `every−1, 2·every−1, …`) as a held-out set.
    pub fn hold_out(self, every: usize) -> (Photos, Photos) {
        let mut keep = Photos::default();
        let mut held = Photos::default();
        for (i, (item, path)) in self.items.into_iter().zip(self.paths).enumerate() {
            let to = if every > 0 && i % every == every - 1 {
                &mut held
            } else {
                &mut keep
            };
            to.items.push(item);
            to.paths.push(path);
        }
        (keep, held)
    }

    /// Drops the images whose shorter side is below `min` (they cannot give a crop that
    /// size); returns how many were dropped.
    pub fn retain_min_side(&mut self, min: usize) -> usize {
        let before = self.items.len();
        let keep: Vec<bool> = self.items.iter().map(|m| m.h.min(m.w) >= min).collect();
        self.keep_where(&keep);
        before - self.items.len()
    }

    /// `n` images spread evenly over the set (all of them when there are no more than
    /// `n`): a folder sorted by class gives every class its share, where the first `n`
    /// would all be one class.
    pub fn spread(mut self, n: usize) -> Photos {
        let len = self.items.len();
        if n < len {
            let mut keep = vec![false; len];
            for i in 0..n {
                keep[i * len / n] = true;
            }
            self.keep_where(&keep);
        }
        self
    }

    /// Keeps image `i` (and its path) where `keep[i]`.
    fn keep_where(&mut self, keep: &[bool]) {
        let mut k = keep.iter();
        self.items.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        self.paths.retain(|_| *k.next().unwrap_or(&false));
    }

    /// A random `crop × crop` window of image `i` in `[0, 1]`, flipped horizontally with
    /// probability 1/2, appended to `out` (CHW).
    pub fn random_crop(&self, i: usize, crop: usize, rng: &mut impl Rng, out: &mut Vec<f32>) {
        let m = &self.items[i];
        let y0 = rng.random_range(0..=m.h - crop);
        let x0 = rng.random_range(0..=m.w - crop);
        let flip = rng.random_bool(0.5);
        self.window(i, y0, x0, crop, flip, out);
        debug_assert!(m.h >= crop && m.w >= crop);
    }

    /// The central `crop × crop` window of image `i` in `[0, 1]`, appended to `out`.
    pub fn center_crop(&self, i: usize, crop: usize, out: &mut Vec<f32>) {
        let m = &self.items[i];
        self.window(i, (m.h - crop) / 2, (m.w - crop) / 2, crop, false, out);
    }

    fn window(&self, i: usize, y0: usize, x0: usize, crop: usize, flip: bool, out: &mut Vec<f32>) {
        let m = &self.items[i];
        for c in 0..3 {
            for y in y0..y0 + crop {
                let row = &m.pixels[c * m.h * m.w + y * m.w + x0..][..crop];
                if flip {
                    out.extend(row.iter().rev().map(|&v| f32::from(v) / 255.0));
                } else {
                    out.extend(row.iter().map(|&v| f32::from(v) / 255.0));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photos(n: usize) -> Photos {
        let mut p = Photos::default();
        for i in 0..n {
            p.push(
                PathBuf::from(format!("{i:03}.png")),
                image::RgbImage::new(4, 4),
            );
        }
        p
    }

    fn names(p: &Photos) -> Vec<String> {
        p.paths.iter().map(|x| x.display().to_string()).collect()
    }

    #[test]
    fn spread_takes_evenly_spaced_images() {
        assert_eq!(
            names(&photos(10).spread(3)),
            ["000.png", "003.png", "006.png"]
        );
        // 10 classes of 100 sorted by class: 1 in 10 taken gives every class 10 images.
        let p = photos(1000).spread(100);
        assert_eq!(p.len(), 100);
        for class in 0..10 {
            let in_class = names(&p)
                .iter()
                .filter(|n| n[..3].parse::<usize>().unwrap_or(0) / 100 == class)
                .count();
            assert_eq!(in_class, 10, "class {class}");
        }
        assert_eq!(photos(5).spread(9).len(), 5);
    }

    #[test]
    fn hold_out_takes_every_kth_from_k_minus_one() {
        let (keep, held) = photos(10).hold_out(4);
        assert_eq!(names(&held), ["003.png", "007.png"]);
        assert_eq!(keep.len(), 8);
    }
}
