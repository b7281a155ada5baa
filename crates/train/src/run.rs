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

/// Each epoch's shuffled order of `count` training items, item `k` being example
/// `k mod examples` (several random crops of one image are several items), shuffled by
/// ChaCha8 seeded with `seed + epoch`: the same order after a resume.
pub struct EpochOrder {
    seed: u64,
    count: usize,
    examples: usize,
    epoch: usize,
    order: Vec<usize>,
}

impl EpochOrder {
    /// `count` items over `examples` examples.
    pub fn new(seed: u64, count: usize, examples: usize) -> EpochOrder {
        EpochOrder {
            seed,
            count,
            examples: examples.max(1),
            epoch: usize::MAX,
            order: Vec::new(),
        }
    }

    /// The examples of batch `b` (of `batch_size` items) in `epoch`.
    pub fn batch(&mut self, epoch: usize, b: usize, batch_size: usize) -> &[usize] {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        if self.epoch != epoch {
            self.order = (0..self.count).map(|k| k % self.examples).collect();
            self.order
                .shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
                    self.seed.wrapping_add(epoch as u64),
                ));
            self.epoch = epoch;
        }
        let start = (b * batch_size).min(self.count);
        &self.order[start..((b + 1) * batch_size).min(self.count)]
    }
}

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
            // Never stop after an epoch's last batch: its entry needs this process's
            // tallies (a resume would record an empty epoch: train loss 0 in 0.6 s).
            if b + 1 < schedule.batches && (steps.should_stop)(progress) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_asked_at_an_epochs_last_batch_waits_for_its_entry() {
        let mut progress = Progress::default();
        let (mut steps, mut ends) = (0, Vec::new());
        let done = epochs::<()>(
            &mut progress,
            Schedule {
                epochs: 2,
                batches: 3,
                save_every: Duration::from_secs(3600),
            },
            Steps {
                step: &mut |_, _, _| {
                    steps += 1;
                    Ok(())
                },
                end_epoch: &mut |e| {
                    ends.push(e);
                    Ok(serde_json::json!({ "epoch": e + 1 }))
                },
                // Asks to stop once the first epoch's batches are all done.
                should_stop: &mut |p| p.step >= 3,
                save: &mut |_| Ok(()),
            },
        )
        .unwrap();
        // The first epoch was closed (its entry written), the stop came in the second.
        assert!(!done);
        assert_eq!(ends, [0]);
        assert_eq!((progress.epoch, progress.batch, steps), (1, 1, 4));
    }

    #[test]
    fn epoch_order_covers_every_item_and_repeats_after_a_restart() {
        // 10 items over 4 examples: examples 0 and 1 three times, 2 and 3 twice.
        let mut a = EpochOrder::new(7, 10, 4);
        let epoch0: Vec<usize> = (0..4).flat_map(|b| a.batch(0, b, 3).to_vec()).collect();
        let mut sorted = epoch0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]);
        assert_eq!(a.batch(0, 3, 3).len(), 1, "the last batch is short");
        assert!(a.batch(0, 9, 3).is_empty());
        let epoch1: Vec<usize> = (0..4).flat_map(|b| a.batch(1, b, 3).to_vec()).collect();
        assert_ne!(epoch0, epoch1, "each epoch has its own order");
        // A fresh order (a resumed run) asked for batch 2 of epoch 1 first agrees.
        let mut b = EpochOrder::new(7, 10, 4);
        assert_eq!(b.batch(1, 2, 3), &epoch1[6..9]);
    }
}
