//! Training the CIFAR-10 stand-in: SGD with Nesterov momentum, cosine learning rate, random
//! crops (padding 4) and horizontal flips, no noise. Checkpoints make it resumable: the
//! data order and augmentation of every batch derive from `(seed, epoch, batch)`, so a run
//! resumed mid-epoch continues as if never stopped.

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use robustify_train::augment::random_crop_flip;
use robustify_train::checkpoint::{Checkpoint, Progress};
use robustify_train::dataset::ImageFolder;
use robustify_train::optim::Sgd;
use robustify_train::run;
use serde::{Deserialize, Serialize};

use crate::cifar::{CifarResNet, Config};
use crate::{Error, Result};

/// Settings of a training run (saved in the checkpoint; a resume must use the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs in total (the learning-rate schedule spans them).
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Nesterov momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Seed of initialisation, data order and augmentation.
    pub seed: u64,
    /// The architecture.
    pub arch: Config,
}

impl TrainConfig {
    /// Refuses settings no training can use (zero epochs, a NaN learning rate, …).
    pub fn validate(&self) -> Result<()> {
        let ok = self.epochs > 0
            && self.batch_size > 0
            && self.lr > 0.0
            && self.lr.is_finite()
            && (0.0..1.0).contains(&self.momentum)
            && self.weight_decay >= 0.0
            && self.weight_decay.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::Train(robustify_train::Error::Config(format!(
                "epochs and batch size must be ≥ 1, lr a finite number > 0, momentum in [0, 1), \
                 weight decay ≥ 0 (got {} epochs, batch {}, lr {}, momentum {}, weight decay {})",
                self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay
            ))))
        }
    }

    /// Learning rate at `step` of `total`: linear warm-up over the first 2%, then cosine.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        robustify_train::optim::warmup_cosine(self.lr, step, total)
    }
}

/// What a finished batch reports (for progress bars).
#[derive(Clone, Copy, Debug)]
pub struct BatchReport {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// This batch's mean cross-entropy.
    pub loss: f32,
    /// This batch's accuracy.
    pub accuracy: f32,
}

fn batch_tensor(
    data: &ImageFolder,
    idx: &[usize],
    augment: Option<&mut ChaCha8Rng>,
    dev: &Device,
) -> Result<(Tensor, Tensor)> {
    let (h, w) = (data.height, data.width);
    let mut pixels = Vec::with_capacity(idx.len() * 3 * h * w);
    let mut rng = augment;
    for &i in idx {
        match rng.as_deref_mut() {
            Some(r) => pixels.extend(random_crop_flip(data.image(i), h, w, h, w, 4, r)),
            None => pixels.extend_from_slice(data.image(i)),
        }
    }
    let x = Tensor::from_vec(pixels, (idx.len(), 3, h, w), dev)?
        .to_dtype(DType::F32)?
        .affine(1.0 / 255.0, 0.0)?;
    let labels: Vec<u32> = idx.iter().map(|&i| data.labels[i]).collect();
    let y = Tensor::from_vec(labels, idx.len(), dev)?;
    Ok((x, y))
}

/// Accuracy of `model` on `data`.
pub fn evaluate(model: &CifarResNet, data: &ImageFolder, batch: usize) -> Result<f64> {
    let dev = robustify_ops::device();
    let mut correct = 0usize;
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(batch.max(1)) {
        let (x, y) = batch_tensor(data, chunk, None, &dev)?;
        let pred = model.forward_t(&x, false)?.argmax(1)?;
        correct += pred
            .eq(&y)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// Callbacks of a training run.
pub struct Hooks<'a> {
    /// After every batch (progress bars).
    pub on_batch: &'a mut dyn FnMut(&BatchReport),
    /// After every epoch, with its history entry.
    pub on_epoch: &'a mut dyn FnMut(&serde_json::Value),
    /// Checked after every batch: `true` saves a checkpoint and returns early (time limits,
    /// and tests of `--resume`).
    pub should_stop: &'a mut dyn FnMut(&Progress) -> bool,
}

/// Trains (or resumes) into the checkpoint folder `out`, saving at least every
/// `save_every` and at each epoch's end. `test`, when given, is scored after each epoch.
pub fn train(
    data: &ImageFolder,
    test: Option<&ImageFolder>,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    save_every: Duration,
    hooks: Hooks<'_>,
) -> Result<Progress> {
    let dev = robustify_ops::device();
    let mut varmap = VarMap::new();
    let model = CifarResNet::new(
        &cfg.arch,
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?;
    // Initialisation is seeded too.
    robustify_train::optim::seeded_init(&varmap, cfg.seed, &["fc.bias"])?;
    let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Weights {
        path: out.to_path_buf(),
        message: e.to_string(),
    })?;
    let (mut progress, state) = run::open(out, &mut varmap, cfg_json, resume)?;
    let mut sgd = Sgd::new(cfg.momentum, cfg.weight_decay, true);
    if let Some(state) = state {
        sgd.load_state(state);
    }
    let sgd = RefCell::new(sgd);
    let ckpt = Checkpoint::new(out);
    let batches = data.len().div_ceil(cfg.batch_size);
    let total = (batches * cfg.epochs) as u64;
    // This epoch's image order, and its running (loss sum, correct, images, start).
    let order = RefCell::new(run::EpochOrder::new(cfg.seed, data.len(), data.len()));
    let tally = RefCell::new((0.0f64, 0.0f64, 0usize, Instant::now()));
    let Hooks {
        on_batch,
        on_epoch,
        should_stop,
    } = hooks;
    run::epochs(
        &mut progress,
        run::Schedule {
            epochs: cfg.epochs,
            batches,
            save_every,
        },
        run::Steps::<Error> {
            step: &mut |epoch, b, p| {
                let mut order = order.borrow_mut();
                let idx = order.batch(epoch, b, cfg.batch_size);
                let mut rng = ChaCha8Rng::seed_from_u64(
                    cfg.seed
                        ^ ((epoch as u64) << 32)
                        ^ (b as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let (x, y) = batch_tensor(data, idx, Some(&mut rng), &dev)?;
                let logits = model.forward_t(&x, true)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
                let grads = loss.backward()?;
                sgd.borrow_mut()
                    .step(&varmap, &grads, cfg.lr_at(p.step, total))?;
                let l = loss.to_scalar::<f32>()?;
                let acc = logits
                    .argmax(1)?
                    .eq(&y)?
                    .to_dtype(DType::F32)?
                    .mean_all()?
                    .to_scalar::<f32>()?;
                let mut t = tally.borrow_mut();
                t.0 += f64::from(l) * idx.len() as f64;
                t.1 += f64::from(acc) * idx.len() as f64;
                t.2 += idx.len();
                on_batch(&BatchReport {
                    epoch,
                    batch: b,
                    batches,
                    loss: l,
                    accuracy: acc,
                });
                Ok(())
            },
            end_epoch: &mut |epoch| {
                let test_acc = match test {
                    Some(t) => Some(evaluate(&model, t, 500)?),
                    None => None,
                };
                let mut t = tally.borrow_mut();
                // No batch of this epoch ran here: no training figures, rather than zeros.
                let ran = t.2 > 0;
                let entry = serde_json::json!({
                    "epoch": epoch + 1,
                    "train_loss": ran.then(|| t.0 / t.2 as f64),
                    "train_accuracy": ran.then(|| t.1 / t.2 as f64),
                    "test_accuracy": test_acc,
                    "seconds": t.3.elapsed().as_secs_f64(),
                });
                *t = (0.0, 0.0, 0, Instant::now());
                on_epoch(&entry);
                Ok(entry)
            },
            should_stop,
            save: &mut |p| Ok(ckpt.save(&varmap, &sgd.borrow().state(), p)?),
        },
    )?;
    Ok(progress)
}

/// Writes `out/card.json` for a run of `config` on `data` (tested on `test`) that reached
/// `progress`.
pub fn write_card(
    out: &Path,
    config: &TrainConfig,
    progress: &Progress,
    data: &Path,
    test: Option<&Path>,
    command: &str,
) -> Result<()> {
    let last = progress.history.last().cloned().unwrap_or_default();
    let card = serde_json::json!({
        "architecture": "ResNet-20 for CIFAR-10 (He et al. 2016), 1x1 projection shortcuts, crates/standin/src/cifar.rs",
        "task": "CIFAR-10 classification, no noise (the off-the-shelf classifier of the paper's CIFAR protocol)",
        "data": data.display().to_string(),
        "augmentation": "random crop 32 with padding 4, horizontal flip",
        "training": config,
        "epochs_done": progress.epoch,
        "command": command,
        "test_data": test.map(|t| t.display().to_string()),
        "test_accuracy": last.get("test_accuracy").cloned(),
        "history": progress.history,
    });
    let path = out.join("card.json");
    let weights = |message: String| Error::Weights {
        path: path.clone(),
        message,
    };
    let text = serde_json::to_string_pretty(&card).map_err(|e| weights(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| weights(e.to_string()))
}
