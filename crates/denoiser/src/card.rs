//! Model cards: the JSON file beside every shipped denoiser's weights.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::{Error, Result};

/// What a denoiser is and how it was made. The fields robustify reads are typed; the rest
/// (training command, epochs, metrics, …) is kept as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Short name (`cifar10-unet-0.25`); `--denoiser NAME` finds it.
    pub name: String,
    /// The architecture.
    pub arch: Arch,
    /// The noise level σ it was trained for, in [0, 1] pixel units.
    pub sigma: f64,
    /// What it was trained on: `cifar10` (32×32) or `photo` (natural photos).
    pub data: String,
    /// Mean PSNR (dB) on the committed test fixture must stay above this (checked by the
    /// test suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psnr_floor: Option<f64>,
    /// Everything else: data, command, epochs, metrics.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Card {
    /// Reads `path` (a `card.json`).
    pub fn read(path: &Path) -> Result<Card> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: format!("not a model card: {e}"),
        })
    }

    /// The classifiers a stability-objective denoiser was tuned through: the card's
    /// `tuned_through`, or its training objective's `classifier` in cards written before
    /// that field. Empty for a denoiser trained on MSE alone.
    pub fn tuned_through(&self) -> Vec<String> {
        let listed = self.extra.get("tuned_through").and_then(|v| v.as_array());
        if let Some(list) = listed {
            return list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        self.extra
            .get("training")
            .and_then(|t| t.get("objective"))
            .and_then(|o| o.get("classifier"))
            .and_then(|c| c.as_str())
            .map(|c| c.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Writes the card as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        std::fs::write(path, json + "\n").map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}
