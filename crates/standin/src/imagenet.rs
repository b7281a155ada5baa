//! The ImageNet stand-in: EfficientNet-Lite0 with the 1,000 ImageNet class names.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use robustify_smoothing::Image;

use crate::efficientnet_lite::{Config, EfficientNetLite};
use crate::model::{Classifier, Scored, ranked};
use crate::preprocess::{Geometry, Normalization, batch};
use crate::weights::Weights;
use crate::{Error, Result};

/// One ImageNet class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassName {
    /// WordNet id (`n01440764`); the class index is its position among the sorted ids.
    pub wnid: String,
    /// Human-readable name (`tench`).
    pub name: String,
}

/// The shipped files, relative to the repository root.
pub const WEIGHTS: &str = "providers/standin/efficientnet_lite0.safetensors";
/// The class list shipped beside the weights (`wnid<TAB>name`, sorted by wnid).
pub const CLASSES: &str = "providers/standin/imagenet_classes.tsv";

/// The repository root this crate was built from (where the shipped files are).
pub fn repo_root() -> PathBuf {
    // `crates/standin` → the repository root, without `..` in paths we print.
    let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
    krate.ancestors().nth(2).unwrap_or(krate).to_path_buf()
}

/// Reads `wnid<TAB>name` lines.
pub fn read_classes(path: &Path) -> Result<Vec<ClassName>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let (wnid, name) = line.split_once('\t').ok_or_else(|| Error::Weights {
                path: path.to_path_buf(),
                message: format!("line {}: expected wnid<TAB>name", i + 1),
            })?;
            Ok(ClassName {
                wnid: wnid.to_owned(),
                name: name.to_owned(),
            })
        })
        .collect()
}

/// EfficientNet-Lite0 on ImageNet, preprocessed as TensorFlow evaluates it.
pub struct ImageNetClassifier {
    model: EfficientNetLite,
    classes: Vec<ClassName>,
    device: Device,
}

impl ImageNetClassifier {
    /// Loads the shipped weights and class names.
    pub fn load_default() -> Result<ImageNetClassifier> {
        let root = repo_root();
        ImageNetClassifier::load(&root.join(WEIGHTS), &root.join(CLASSES))
    }

    /// Loads weights and class names from the given files.
    pub fn load(weights: &Path, classes: &Path) -> Result<ImageNetClassifier> {
        let device = robustify_ops::device();
        let w = Weights::load(weights, &device)?;
        let model = EfficientNetLite::new(&Config::lite0(), &w)?;
        let classes = read_classes(classes)?;
        if classes.len() != 1000 {
            return Err(Error::Weights {
                path: classes_path_hint(),
                message: format!("expected 1000 classes, found {}", classes.len()),
            });
        }
        Ok(ImageNetClassifier {
            model,
            classes,
            device,
        })
    }

    /// The class list.
    pub fn classes(&self) -> &[ClassName] {
        &self.classes
    }

    /// Logits for a `[N, 3, H, W]` batch in `[0, 1]` (224×224 is what the weights were
    /// trained at; the global pooling takes any size), normalised as [`Classifier::classify`]
    /// does. Differentiable with respect to the input (the weights are frozen): the path a
    /// denoiser is tuned through.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let Normalization { mean, std } = Normalization::EFFICIENTNET_LITE;
        let mean = Tensor::from_slice(&mean, (1, 3, 1, 1), x.device())?;
        let std = Tensor::from_slice(&std, (1, 3, 1, 1), x.device())?;
        let x = x.broadcast_sub(&mean)?.broadcast_div(&std)?;
        self.model.forward(&x)
    }
}

impl Classifier for ImageNetClassifier {
    fn name(&self) -> &str {
        "imagenet-efficientnet-lite0"
    }

    fn classify(&self, images: &[Image], top_k: usize) -> Result<Vec<Vec<Scored>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = batch(
            images,
            Geometry::CenterCrop { size: 224 },
            &Normalization::EFFICIENTNET_LITE,
            &self.device,
        )?;
        ranked(&self.model.forward(&x)?, top_k, |i| {
            (self.classes[i].wnid.clone(), self.classes[i].name.clone())
        })
    }
}

fn classes_path_hint() -> PathBuf {
    PathBuf::from(CLASSES)
}
