//! Image folders (`<root>/<class>/<file>`) held in memory as 8-bit CHW.

use std::path::Path;

use crate::error::io;
use crate::{Error, Result};

/// Every image of an image-class folder, all of one size.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    /// Class names: the sub-folder names, sorted. A label is an index into this list.
    pub classes: Vec<String>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// `len × 3 × height × width` bytes.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u32>,
}

impl ImageFolder {
    /// Loads every image under `root/<class>/` (sorted), calling `progress(done, total)`.
    /// All images must share one size.
    pub fn load(root: &Path, mut progress: impl FnMut(usize, usize)) -> Result<ImageFolder> {
        let mut classes: Vec<String> = std::fs::read_dir(root)
            .map_err(|e| io(root, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        classes.sort();
        if classes.is_empty() {
            return Err(Error::Data {
                path: root.to_path_buf(),
                message: "no class folders".into(),
            });
        }
        let mut files = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| io(&dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            names.sort();
            files.extend(names.into_iter().map(|p| (p, label as u32)));
        }
        let total = files.len();
        let mut folder = ImageFolder {
            classes,
            height: 0,
            width: 0,
            pixels: Vec::new(),
            labels: Vec::with_capacity(total),
        };
        for (i, (path, label)) in files.iter().enumerate() {
            let img = image::open(path).map_err(|e| io(path, e))?.to_rgb8();
            let (w, h) = (img.width() as usize, img.height() as usize);
            if i == 0 {
                folder.height = h;
                folder.width = w;
                folder.pixels.reserve(total * 3 * h * w);
            } else if (h, w) != (folder.height, folder.width) {
                return Err(Error::Data {
                    path: path.clone(),
                    message: format!(
                        "{w}x{h}, but the folder's images are {}x{}",
                        folder.width, folder.height
                    ),
                });
            }
            let raw = img.as_raw();
            for c in 0..3 {
                folder.pixels.extend(raw.iter().skip(c).step_by(3));
            }
            folder.labels.push(*label);
            if i % 1000 == 0 || i + 1 == total {
                progress(i + 1, total);
            }
        }
        Ok(folder)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the folder is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A new folder with the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageFolder {
        ImageFolder {
            classes: self.classes.clone(),
            height: self.height,
            width: self.width,
            pixels: indices
                .iter()
                .flat_map(|&i| self.image(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// Image `i`'s CHW bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = 3 * self.height * self.width;
        &self.pixels[i * n..(i + 1) * n]
    }
}
