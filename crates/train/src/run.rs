//! The epoch loop every robustify training shares: open or resume a checkpoint, run the
//! batches left, stop on request with a checkpoint, save periodically and after each epoch.
//! The model-specific parts — one optimisation step, the end-of-epoch scores — are
//! closures, so the CIFAR classifier and the denoisers train through the same code.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use candle_nn::VarMap;

use crate::Error;
use crate::checkpoint::{Checkpoint, Progress};

/// Starts a run in `out`, or with `resume` continues the checkpoint there (loading its
/// weights into `varmap`). Returns the progress and the saved optimiser state. Refuses to
/// resume a run made with other settings, and to start over an existing checkpoint.
pub fn open(
    out: &Path,
    varmap: &mut VarMap,
    config: serde_json::Value,
    resume: bool,
) -> crate::Result<(Progress, Option<HashMap<String, Tensor>>)> {
    let fresh = Progress {
        config: config.clone(),
        ..Progress::default()
    };
    if resume {
        return match Checkpoint::new(out).load(varmap)? {
            Some((_, p)) if p.config != config => Err(Error::Data {
                path: out.to_path_buf(),
                message: format!("the checkpoint was made with other settings: {}", p.config),
            }),
            Some((state, p)) => Ok((p, Some(state))),
            None => Ok((fresh, None)),
        };
    }
    if out.join("progress.json").exists() {
        return Err(Error::Data {
            path: out.to_path_buf(),
            message:
                "a checkpoint exists here: pass --resume to continue it, or choose another --out"
                    .into(),
        });
    }
    Ok((fresh, None))
}

/// The shape of a run.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Epochs in total.
    pub epochs: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Longest time between checkpoints within an epoch.
    pub save_every: Duration,
}

/// What the loop calls.
pub struct Steps<'a, E> {
    /// One optimisation step on batch `batch` of `epoch`; the loop then advances
    /// `progress.step` and `progress.batch`.
    pub step: &'a mut dyn FnMut(usize, usize, &Progress) -> Result<(), E>,
    /// After an epoch's last batch: the epoch's history entry.
    pub end_epoch: &'a mut dyn FnMut(usize) -> Result<serde_json::Value, E>,
    /// Checked after each batch: `true` saves and returns early.
    pub should_stop: &'a mut dyn FnMut(&Progress) -> bool,
    /// Writes a checkpoint of the model and optimiser at `progress`.
    pub save: &'a mut dyn FnMut(&Progress) -> Result<(), E>,
}

/// Runs the epochs and batches left in `progress`. Returns `true` when the run is
/// complete, `false` when `should_stop` ended it early (after saving).
pub fn epochs<E>(
    progress: &mut Progress,
    schedule: Schedule,
    steps: Steps<'_, E>,
) -> Result<bool, E> {
    let mut last_save = Instant::now();
    while progress.epoch < schedule.epochs {
        let epoch = progress.epoch;
        for b in progress.batch..schedule.batches {
            (steps.step)(epoch, b, progress)?;
            progress.step += 1;
            progress.batch = b + 1;
            if (steps.should_stop)(progress) {
                (steps.save)(progress)?;
                return Ok(false);
            }
            if last_save.elapsed() >= schedule.save_every {
                (steps.save)(progress)?;
                last_save = Instant::now();
            }
        }
        let entry = (steps.end_epoch)(epoch)?;
        progress.history.push(entry);
        progress.epoch += 1;
        progress.batch = 0;
        (steps.save)(progress)?;
        last_save = Instant::now();
    }
    Ok(true)
}
