//! Checkpoints: model weights, optimiser state and progress, written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::io;

/// Where a run stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs fully done.
    pub epoch: usize,
    /// Batches done within the current epoch.
    pub batch: usize,
    /// Optimiser steps so far.
    pub step: u64,
    /// The run's settings (so a resumed run can refuse different ones).
    pub config: serde_json::Value,
    /// One entry per finished epoch (loss, accuracy, …).
    pub history: Vec<serde_json::Value>,
}

/// A checkpoint folder: `model.safetensors`, `optimizer.safetensors`, `progress.json`.
pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    /// A checkpoint in `dir` (created on first save).
    pub fn new(dir: &Path) -> Checkpoint {
        Checkpoint {
            dir: dir.to_path_buf(),
        }
    }

    /// The model file.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    fn write_atomic(&self, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        write(&tmp)?;
        let dst = self.dir.join(name);
        std::fs::rename(&tmp, &dst).map_err(|e| io(&dst, e))
    }

    /// Saves everything; each file is replaced atomically, progress last, so a crash
    /// mid-save leaves the previous progress pointing at consistent enough weights.
    pub fn save(
        &self,
        varmap: &VarMap,
        optimizer: &HashMap<String, Tensor>,
        progress: &Progress,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        self.write_atomic("model.safetensors", |p| Ok(varmap.save(p)?))?;
        self.write_atomic("optimizer.safetensors", |p| {
            Ok(candle_core::safetensors::save(optimizer, p)?)
        })?;
        let json = serde_json::to_vec_pretty(progress).map_err(|e| io(&self.dir, e))?;
        self.write_atomic("progress.json", |p| {
            std::fs::write(p, &json).map_err(|e| io(p, e))
        })
    }

    /// Loads weights into `varmap` and returns the optimiser state and progress, or `None`
    /// when there is no checkpoint yet.
    pub fn load(&self, varmap: &mut VarMap) -> Result<Option<(HashMap<String, Tensor>, Progress)>> {
        let progress_path = self.dir.join("progress.json");
        if !progress_path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&progress_path).map_err(|e| io(&progress_path, e))?;
        let progress: Progress = serde_json::from_str(&text).map_err(|e| io(&progress_path, e))?;
        varmap.load(self.model_path())?;
        // The optimiser's state goes where the weights are (a GPU when training on one).
        let device = varmap
            .all_vars()
            .first()
            .map_or(Device::Cpu, |v| v.device().clone());
        let optimizer =
            candle_core::safetensors::load(self.dir.join("optimizer.safetensors"), &device)?;
        Ok(Some((optimizer, progress)))
    }
}
