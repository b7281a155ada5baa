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

/// An EfficientNet-Lite whose weights ship with the stand-in.
#[derive(Clone, Copy, Debug)]
pub struct LiteModel {
    /// `efficientnet-lite0`, …
    pub name: &'static str,
    /// The weights, relative to the repository root.
    pub weights: &'static str,
    /// Width and depth multipliers ([`Config::lite`]).
    pub width: f64,
    /// See [`LiteModel::width`].
    pub depth: f64,
    /// The input side the weights were trained at.
    pub size: u32,
}

/// Lite0 (the stand-in vendor's model) and Lite1, Lite2 (surrogates a denoiser is tuned
/// through without seeing Lite0): see `providers/standin/README.md`.
pub const LITE_MODELS: [LiteModel; 3] = [
    LiteModel {
        name: "efficientnet-lite0",
        weights: WEIGHTS,
        width: 1.0,
        depth: 1.0,
        size: 224,
    },
    LiteModel {
        name: "efficientnet-lite1",
        weights: "providers/standin/efficientnet_lite1.safetensors",
        width: 1.0,
        depth: 1.1,
        size: 240,
    },
    LiteModel {
        name: "efficientnet-lite2",
        weights: "providers/standin/efficientnet_lite2.safetensors",
        width: 1.1,
        depth: 1.2,
        size: 260,
    },
];
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
    /// `imagenet-efficientnet-lite0`, …
    name: String,
    /// Input side.
    size: u32,
}

impl ImageNetClassifier {
    /// Loads the shipped weights and class names.
    pub fn load_default() -> Result<ImageNetClassifier> {
        let root = repo_root();
        ImageNetClassifier::load(&root.join(WEIGHTS), &root.join(CLASSES))
    }

    /// Loads a shipped Lite model by name (`efficientnet-lite1`, …; see [`LITE_MODELS`]).
    pub fn load_named(name: &str) -> Result<ImageNetClassifier> {
        let Some(lite) = LITE_MODELS.iter().find(|m| m.name == name) else {
            return Err(Error::Weights {
                path: PathBuf::from(name),
                message: format!(
                    "no such ImageNet model (shipped: {})",
                    LITE_MODELS.map(|m| m.name).join(", ")
                ),
            });
        };
        let root = repo_root();
        ImageNetClassifier::load_lite(lite, &root.join(lite.weights), &root.join(CLASSES))
    }

    /// Loads Lite0 weights and class names from the given files.
    pub fn load(weights: &Path, classes: &Path) -> Result<ImageNetClassifier> {
        ImageNetClassifier::load_lite(&LITE_MODELS[0], weights, classes)
    }

    /// Loads `lite`'s architecture with weights and class names from the given files.
    pub fn load_lite(
        lite: &LiteModel,
        weights: &Path,
        classes: &Path,
    ) -> Result<ImageNetClassifier> {
        let device = robustify_ops::device();
        let w = Weights::load(weights, &device)?;
        let model = EfficientNetLite::new(&Config::lite(lite.width, lite.depth), &w)?;
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
            name: format!("imagenet-{}", lite.name),
            size: lite.size,
        })
    }

    /// The input side the weights were trained at (224, 240, 260).
    pub fn input_size(&self) -> u32 {
        self.size
    }

    /// The class list.
    pub fn classes(&self) -> &[ClassName] {
        &self.classes
    }

    /// Logits for a `[N, 3, H, W]` batch in `[0, 1]` ([`ImageNetClassifier::input_size`] is
    /// what the weights were trained at; the global pooling takes any size), normalised as [`Classifier::classify`]
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
        &self.name
    }

    fn classify(&self, images: &[Image], top_k: usize) -> Result<Vec<Vec<Scored>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = batch(
            images,
            Geometry::CenterCrop { size: self.size },
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
