//! Around a training run: its settings checked before any data is loaded, the weights it
//! starts from, and the card it leaves (what `robustify denoisers list` and the eval
//! tables read).

use std::path::{Path, PathBuf};

use robustify_train::checkpoint::Progress;

use crate::arch::Arch;
use crate::card::Card;
use crate::train::{Objective, TrainConfig};
use crate::{Error, Result, registry};

fn bad(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidParameter {
        name,
        reason: reason.into(),
    }
}

impl TrainConfig {
    /// Refuses settings no training can use (zero epochs, a NaN learning rate, σ outside
    /// (0, 1], a negative MSE weight, …).
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(bad("epochs", "must be ≥ 1"));
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", "must be ≥ 1"));
        }
        if self.crop == 0 || self.crops_per_image == 0 {
            return Err(bad("crop", "the crop and the crops per image must be ≥ 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(bad(
                "lr",
                format!("must be a finite number > 0, got {}", self.lr),
            ));
        }
        if !(self.sigma > 0.0 && self.sigma <= 1.0) {
            return Err(bad(
                "sigma",
                format!("must lie in (0, 1], got {}", self.sigma),
            ));
        }
        if let Objective::Stab { mse_weight, .. } = &self.objective
            && !(*mse_weight >= 0.0 && mse_weight.is_finite())
        {
            return Err(bad("mse_weight", format!("must be ≥ 0, got {mse_weight}")));
        }
        Ok(())
    }
}

impl Objective {
    /// The classifiers a stab denoiser was tuned through (none for MSE).
    pub fn classifiers(&self) -> Vec<String> {
        match self {
            Objective::Mse => Vec::new(),
            Objective::Stab { classifier, .. } => {
                classifier.split(',').map(str::to_owned).collect()
            }
        }
    }

    /// The card's one-line description; `init` as the user named it.
    pub fn describe(&self, init: Option<&str>) -> String {
        let start = init
            .map(|name| format!(", fine-tuned from {name}"))
            .unwrap_or_default();
        match self {
            Objective::Mse => format!("MSE ‖D(x+δ) − x‖², δ ~ N(0, σ²I) unclipped{start}"),
            Objective::Stab {
                classifier,
                mse_weight,
            } if classifier.contains(',') => format!(
                "stability: mean over F_i of CE(F_i(clip(D(x+δ))), argmax F_i(x)) + \
                 {mse_weight}·MSE, F_i = {} (frozen), δ ~ N(0, σ²I){start}",
                classifier.replace(',', ", ")
            ),
            Objective::Stab {
                classifier,
                mse_weight,
            } => format!(
                "stability: CE(F(clip(D(x+δ))), argmax F(x)) + {mse_weight}·MSE, F = {classifier} \
                 (frozen), δ ~ N(0, σ²I){start}"
            ),
        }
    }
}

/// The weights of denoiser `name` (shipped name or folder) to start a training of `arch`
/// from; refused when its architecture is another.
pub fn init_weights(name: &str, arch: &Arch) -> Result<PathBuf> {
    let dir = registry::resolve(name)?;
    let card = Card::read(&dir.join("card.json"))?;
    if &card.arch != arch {
        return Err(bad(
            "init",
            format!(
                "{name}: its architecture is {}, not {}",
                card.arch.name(),
                arch.name()
            ),
        ));
    }
    Ok(dir.join("model.safetensors"))
}

/// What a card says the denoiser is for: `kind` when given (`cifar10` or `photo`), else
/// `cifar10` when no training image is larger than 32×32.
pub fn data_kind(kind: Option<&str>, max_side: usize) -> Result<String> {
    match kind {
        Some(k @ ("cifar10" | "photo")) => Ok(k.to_owned()),
        Some(k) => Err(bad("kind", format!("{k:?}: expected cifar10 or photo"))),
        None => Ok(registry::data_for_size(max_side).into()),
    }
}

/// What a training run writes into its card besides its settings and history.
#[derive(Clone, Debug)]
pub struct TrainedFacts {
    /// The denoiser's name (its folder's).
    pub name: String,
    /// `cifar10` or `photo`.
    pub data: String,
    /// Where the training images came from.
    pub training_data: String,
    /// How it was tested.
    pub test_data: String,
    /// The denoiser it was fine-tuned from, as the user named it.
    pub init: Option<String>,
    /// The command line.
    pub command: String,
}

/// Writes `out/card.json` for a run of `config` that reached `progress`. A re-written card
/// keeps what was added to it by hand (the fixture floor, eval figures).
pub fn write_card(
    out: &Path,
    config: &TrainConfig,
    progress: &Progress,
    facts: TrainedFacts,
) -> Result<()> {
    let path = out.join("card.json");
    let previous = Card::read(&path).ok();
    let mut extra = previous
        .as_ref()
        .map(|c| c.extra.clone())
        .unwrap_or_default();
    let last = progress.history.last().cloned().unwrap_or_default();
    let training = serde_json::to_value(config).map_err(|e| Error::Model {
        path: path.clone(),
        message: e.to_string(),
    })?;
    for (k, v) in [
        (
            "objective",
            serde_json::json!(config.objective.describe(facts.init.as_deref())),
        ),
        (
            "tuned_through",
            serde_json::json!(config.objective.classifiers()),
        ),
        ("training_data", serde_json::json!(facts.training_data)),
        ("test_data", serde_json::json!(facts.test_data)),
        ("training", training),
        ("epochs_done", serde_json::json!(progress.epoch)),
        ("command", serde_json::json!(facts.command)),
        (
            "test_psnr_noisy",
            last.get("test_psnr_noisy").cloned().unwrap_or_default(),
        ),
        (
            "test_psnr",
            last.get("test_psnr").cloned().unwrap_or_default(),
        ),
        ("history", serde_json::json!(progress.history)),
    ] {
        extra.insert(k.into(), v);
    }
    Card {
        name: facts.name,
        arch: config.arch.clone(),
        sigma: config.sigma,
        data: facts.data,
        psnr_floor: previous.and_then(|c| c.psnr_floor),
        extra,
    }
    .write(&path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> TrainConfig {
        TrainConfig {
            arch: Arch::parse("unet-8-x1").unwrap(),
            sigma: 0.25,
            epochs: 1,
            batch_size: 4,
            crop: 32,
            crops_per_image: 1,
            lr: 1e-3,
            seed: 0,
            objective: Objective::Mse,
            init: None,
        }
    }

    #[test]
    fn hostile_settings_are_refused() {
        assert!(config().validate().is_ok());
        let mut c = config();
        c.lr = f64::NAN;
        assert!(c.validate().is_err());
        let mut c = config();
        c.sigma = 0.0;
        assert!(c.validate().is_err());
        let mut c = config();
        c.epochs = 0;
        assert!(c.validate().is_err());
        let mut c = config();
        c.objective = Objective::Stab {
            classifier: "x".into(),
            mse_weight: -1.0,
        };
        assert!(c.validate().is_err());
        assert!(data_kind(Some("faces"), 32).is_err());
        assert_eq!(data_kind(None, 32).unwrap(), "cifar10");
        assert_eq!(data_kind(None, 224).unwrap(), "photo");
    }

    #[test]
    fn a_rewritten_card_keeps_what_was_added_by_hand() {
        let dir = std::env::temp_dir().join(format!("robustify-trained-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let progress = Progress {
            epoch: 1,
            history: vec![serde_json::json!({"test_psnr": 30.5})],
            ..Progress::default()
        };
        let facts = TrainedFacts {
            name: "t".into(),
            data: "photo".into(),
            training_data: "d".into(),
            test_data: "t".into(),
            init: Some("photo-unet-0.25".into()),
            command: "robustify train".into(),
        };
        write_card(&dir, &config(), &progress, facts.clone()).unwrap();
        let mut card = Card::read(&dir.join("card.json")).unwrap();
        card.psnr_floor = Some(29.0);
        card.extra
            .insert("eval".into(), serde_json::json!("by hand"));
        card.write(&dir.join("card.json")).unwrap();
        write_card(&dir, &config(), &progress, facts).unwrap();
        let card = Card::read(&dir.join("card.json")).unwrap();
        assert_eq!(card.psnr_floor, Some(29.0));
        assert_eq!(card.extra["eval"], "by hand");
        assert_eq!(card.extra["test_psnr"], 30.5);
        assert!(
            card.extra["objective"]
                .as_str()
                .unwrap()
                .ends_with("fine-tuned from photo-unet-0.25")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
