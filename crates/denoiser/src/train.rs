//! Training of a denoiser, Adam with warm-up and cosine decay, random crops and flips:
//! - [`Objective::Mse`]: `‖D(x + δ) − x‖²`, δ ~ N(0, σ²I) unclipped (exactly what smoothing
//!   feeds it);
//! - [`Objective::Stab`]: Salman et al.'s stability objective, `CE(F(D(x + δ)), argmax F(x))`
//!   through a frozen classifier F (a surrogate of the one that will be smoothed), plus
//!   `mse_weight` times the MSE; usually a fine-tune of an MSE-trained denoiser
//!   ([`TrainConfig::init`]), the paper's "Stab+MSE".
//!
//! Everything random — initialisation, data order, crops, flips, noise — derives from
//! `(seed, epoch, batch)`, and the optimiser state is checkpointed, so a run stopped and
//! resumed mid-epoch produces the same weights as one that never stopped.

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use robustify_train::checkpoint::{Checkpoint, Progress};
use robustify_train::optim::{Adam, warmup_cosine};
use robustify_train::run;
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::data::Photos;
use crate::net::Net;
use crate::{Error, Result};

/// Settings of a training run (saved in the checkpoint; a resume must use the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The architecture.
    pub arch: Arch,
    /// Noise level σ.
    pub sigma: f64,
    /// Epochs in total (the learning-rate schedule spans them).
    pub epochs: usize,
    /// Crops per step.
    pub batch_size: usize,
    /// Side of the square training crops.
    pub crop: usize,
    /// Crops taken from each image per epoch.
    pub crops_per_image: usize,
    /// Peak learning rate (Adam).
    pub lr: f64,
    /// Seed of initialisation, data order, crops and noise.
    pub seed: u64,
    /// What the training minimises.
    #[serde(default, skip_serializing_if = "Objective::is_mse")]
    pub objective: Objective,
    /// Weights to start from (a denoiser's `model.safetensors` of the same architecture)
    /// instead of the seeded initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<std::path::PathBuf>,
}

/// What a training run minimises.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Objective {
    /// `‖D(x + δ) − x‖²`.
    #[default]
    Mse,
    /// `mean_i CE(F_i(D(x + δ)), argmax F_i(x)) + mse_weight · ‖D(x + δ) − x‖²` with the
    /// F_i frozen: the classifiers come as [`Hooks::guides`]; `classifier` names them in
    /// the checkpoint (comma-separated when several).
    Stab {
        /// Which classifiers F_i are (a resume must use the same).
        classifier: String,
        /// Weight of the MSE term.
        mse_weight: f64,
    },
}

impl Objective {
    /// Whether this is plain MSE.
    pub fn is_mse(&self) -> bool {
        matches!(self, Objective::Mse)
    }
}

/// A frozen classifier's logits `[N, classes]` for images `[N, 3, H, W]` in `[0, 1]`,
/// differentiable with respect to the images.
pub type Guide<'a> = &'a dyn Fn(&Tensor) -> candle_core::Result<Tensor>;

/// What a finished batch reports (for progress bars).
#[derive(Clone, Copy, Debug)]
pub struct BatchReport {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// This batch's mean squared error.
    pub loss: f32,
    /// `10·log10(1/loss)`: the batch's PSNR in dB (before clipping).
    pub psnr: f32,
    /// The stability term (cross-entropy), under [`Objective::Stab`].
    pub stab: Option<f32>,
}

/// Callbacks of a training run.
pub struct Hooks<'a> {
    /// After every batch (progress bars).
    pub on_batch: &'a mut dyn FnMut(&BatchReport),
    /// After every epoch, with its history entry.
    pub on_epoch: &'a mut dyn FnMut(&serde_json::Value),
    /// Checked after every batch: `true` saves a checkpoint and returns early.
    pub should_stop: &'a mut dyn FnMut(&Progress) -> bool,
    /// The frozen classifiers F_i of [`Objective::Stab`] (at least one; unused by MSE):
    /// the stability term is averaged over them.
    pub guides: Vec<Guide<'a>>,
}

/// Fixed test crops with fixed noise, for PSNR that can be compared across runs.
pub struct TestSet {
    clean: Tensor,
    noisy: Tensor,
}

/// Adds N(0, σ²) noise drawn from `rng` (unclipped).
pub fn add_noise(x: &Tensor, sigma: f64, rng: &mut impl Rng) -> Result<Tensor> {
    let noise: Vec<f32> = (0..x.elem_count())
        .map(|_| rng.sample::<f32, _>(StandardNormal) * sigma as f32)
        .collect();
    Ok((x + Tensor::from_vec(noise, x.shape(), x.device())?)?)
}

/// Per-image PSNR (dB) of `other` clipped to `[0, 1]` against `clean`, both `[B, 3, H, W]`.
pub fn psnr_per_image(clean: &Tensor, other: &Tensor) -> Result<Vec<f64>> {
    let mse = (other.clamp(0f32, 1f32)? - clean)?
        .sqr()?
        .flatten_from(1)?
        .mean(1)?
        .to_vec1::<f32>()?;
    Ok(mse
        .into_iter()
        .map(|m| 10.0 * (1.0 / f64::from(m).max(1e-12)).log10())
        .collect())
}

impl TestSet {
    /// The central `crop × crop` window of every image (`crop` capped by the smallest
    /// image), with noise from `seed`.
    pub fn center_crops(photos: &Photos, crop: usize, sigma: f64, seed: u64) -> Result<TestSet> {
        let crop = crop.min(photos.min_side());
        let mut data = Vec::with_capacity(photos.len() * 3 * crop * crop);
        for i in 0..photos.len() {
            photos.center_crop(i, crop, &mut data);
        }
        let clean = Tensor::from_vec(
            data,
            (photos.len(), 3, crop, crop),
            &robustify_ops::device(),
        )?;
        TestSet::new(clean, sigma, seed)
    }

    /// `clean` `[N, 3, H, W]` with noise from `seed`.
    pub fn new(clean: Tensor, sigma: f64, seed: u64) -> Result<TestSet> {
        let noisy = add_noise(&clean, sigma, &mut ChaCha8Rng::seed_from_u64(seed))?;
        Ok(TestSet { clean, noisy })
    }

    /// Number of crops.
    pub fn len(&self) -> usize {
        self.clean.dims()[0]
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mean PSNR of the noisy crops, and of `denoise` applied to them in batches.
    pub fn psnr(
        &self,
        batch: usize,
        mut denoise: impl FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(f64, f64)> {
        let (mut noisy, mut denoised) = (0.0, 0.0);
        let n = self.len();
        let mut start = 0;
        while start < n {
            let len = batch.max(1).min(n - start);
            let clean = self.clean.narrow(0, start, len)?;
            let x = self.noisy.narrow(0, start, len)?;
            noisy += psnr_per_image(&clean, &x)?.iter().sum::<f64>();
            denoised += psnr_per_image(&clean, &denoise(&x)?)?.iter().sum::<f64>();
            start += len;
        }
        Ok((noisy / n.max(1) as f64, denoised / n.max(1) as f64))
    }

    /// The fraction of crops on which `guide` gives the denoised noisy crop the label it
    /// gives the clean one.
    pub fn agreement(
        &self,
        batch: usize,
        guide: Guide<'_>,
        mut denoise: impl FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<f64> {
        let n = self.len();
        let (mut same, mut start) = (0usize, 0);
        while start < n {
            let len = batch.max(1).min(n - start);
            let clean = top1(&guide(&self.clean.narrow(0, start, len)?)?)?;
            let x = denoise(&self.noisy.narrow(0, start, len)?)?.clamp(0f32, 1f32)?;
            let denoised = top1(&guide(&x)?)?;
            same += clean.iter().zip(&denoised).filter(|(a, b)| a == b).count();
            start += len;
        }
        Ok(same as f64 / n.max(1) as f64)
    }
}

/// Top-1 labels of `logits` `[N, classes]`.
fn top1(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(1)?.to_vec1::<u32>()?)
}

fn batch_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    seed ^ ((epoch as u64) << 32) ^ (batch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Trains (or resumes) into the checkpoint folder `out`, saving at least every
/// `save_every` and at each epoch's end; `test`, when given, is scored after each epoch.
pub fn train(
    data: &Photos,
    test: Option<&TestSet>,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    save_every: Duration,
    hooks: Hooks<'_>,
) -> Result<Progress> {
    if data.is_empty() || cfg.batch_size == 0 || cfg.crops_per_image == 0 || cfg.epochs == 0 {
        return Err(Error::InvalidParameter {
            name: "training",
            reason: "needs images, and positive batch size, crops per image and epochs".into(),
        });
    }
    if cfg.crop == 0 || cfg.crop > data.min_side() {
        return Err(Error::InvalidParameter {
            name: "crop",
            reason: format!(
                "{} does not fit the smallest image ({} px)",
                cfg.crop,
                data.min_side()
            ),
        });
    }
    let dev = robustify_ops::device();
    let mut varmap = VarMap::new();
    let net = Net::new(
        &cfg.arch,
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?;
    let zero = Net::zero_init(&cfg.arch);
    let zero: Vec<&str> = zero.iter().map(String::as_str).collect();
    robustify_train::optim::seeded_init(&varmap, cfg.seed, &zero)?;
    let Hooks {
        on_batch,
        on_epoch,
        should_stop,
        guides,
    } = hooks;
    let stab = match (&cfg.objective, guides.as_slice()) {
        (Objective::Mse, _) => None,
        (Objective::Stab { mse_weight, .. }, g) if !g.is_empty() && *mse_weight >= 0.0 => {
            Some((g, *mse_weight))
        }
        (Objective::Stab { .. }, _) => {
            return Err(Error::InvalidParameter {
                name: "objective",
                reason: "the stability objective needs a classifier and an MSE weight ≥ 0".into(),
            });
        }
    };
    if let (Some(init), false) = (&cfg.init, resume) {
        varmap.load(init).map_err(|e| Error::Model {
            path: init.clone(),
            message: format!("cannot start from these weights: {e}"),
        })?;
    }
    let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Model {
        path: out.to_path_buf(),
        message: e.to_string(),
    })?;
    let (mut progress, state) = run::open(out, &mut varmap, cfg_json, resume)?;
    let mut adam = Adam::default();
    if let Some(state) = state {
        adam.load_state(state, progress.step);
    }
    let adam = RefCell::new(adam);
    let ckpt = Checkpoint::new(out);
    let crops = data.len() * cfg.crops_per_image;
    let batches = crops.div_ceil(cfg.batch_size);
    let total = (batches * cfg.epochs) as u64;
    // This epoch's crop order.
    let order = RefCell::new(run::EpochOrder::new(cfg.seed, crops, data.len()));
    // The epoch's running losses: (MSE sum, stability sum, crops, start).
    let tally = RefCell::new((0.0f64, 0.0f64, 0usize, Instant::now()));
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
                let mut rng = ChaCha8Rng::seed_from_u64(batch_seed(cfg.seed, epoch, b));
                let mut pixels = Vec::with_capacity(idx.len() * 3 * cfg.crop * cfg.crop);
                for &i in idx {
                    data.random_crop(i, cfg.crop, &mut rng, &mut pixels);
                }
                let clean = Tensor::from_vec(pixels, (idx.len(), 3, cfg.crop, cfg.crop), &dev)?;
                let noisy = add_noise(&clean, cfg.sigma, &mut rng)?;
                let denoised = net.forward_t(&noisy, true)?;
                let mse = (&denoised - &clean)?.sqr()?.mean_all()?;
                let (loss, ce) = match stab {
                    None => (mse.clone(), None),
                    Some((guides, mse_weight)) => {
                        // Each classifier sees what it will see at certification: pixels
                        // in [0, 1]. Its labels for the clean crops are its targets.
                        let seen = denoised.clamp(0f32, 1f32)?;
                        let mut ce_sum: Option<Tensor> = None;
                        for guide in guides {
                            let target = guide(&clean)?.detach().argmax(1)?;
                            let ce = candle_nn::loss::cross_entropy(&guide(&seen)?, &target)?;
                            ce_sum = Some(match ce_sum {
                                Some(sum) => (sum + ce)?,
                                None => ce,
                            });
                        }
                        let ce = match ce_sum {
                            Some(sum) => (sum / guides.len() as f64)?,
                            None => mse.zeros_like()?,
                        };
                        ((&ce + (&mse * mse_weight)?)?, Some(ce))
                    }
                };
                let grads = loss.backward()?;
                adam.borrow_mut()
                    .step(&varmap, &grads, warmup_cosine(cfg.lr, p.step, total))?;
                let l = mse.to_scalar::<f32>()?;
                let ce = ce.map(|c| c.to_scalar::<f32>()).transpose()?;
                let mut t = tally.borrow_mut();
                t.0 += f64::from(l) * idx.len() as f64;
                t.1 += f64::from(ce.unwrap_or(0.0)) * idx.len() as f64;
                t.2 += idx.len();
                on_batch(&BatchReport {
                    epoch,
                    batch: b,
                    batches,
                    loss: l,
                    psnr: 10.0 * (1.0 / l.max(1e-12)).log10(),
                    stab: ce,
                });
                Ok(())
            },
            end_epoch: &mut |epoch| {
                let scored = match test {
                    Some(t) => Some(t.psnr(64, |x| net.forward_t(x, false))?),
                    None => None,
                };
                let mut t = tally.borrow_mut();
                let crops = t.2.max(1) as f64;
                // No batch of this epoch ran in this process (a checkpoint made at its
                // end by an older version): no training figures, rather than zeros.
                let ran = t.2 > 0;
                let mut entry = serde_json::json!({
                    "epoch": epoch + 1,
                    "train_mse": ran.then(|| t.0 / crops),
                    "test_psnr_noisy": scored.map(|s| s.0),
                    "test_psnr": scored.map(|s| s.1),
                    "seconds": t.3.elapsed().as_secs_f64(),
                });
                if let Some((guides, _)) = stab {
                    entry["train_stab"] = serde_json::json!(ran.then(|| t.1 / crops));
                    if let Some(test) = test {
                        let each = guides
                            .iter()
                            .map(|g| test.agreement(64, *g, |x| net.forward_t(x, false)))
                            .collect::<Result<Vec<f64>>>()?;
                        let mean = each.iter().sum::<f64>() / each.len() as f64;
                        entry["test_agreement"] = serde_json::json!(mean);
                        if each.len() > 1 {
                            entry["test_agreement_each"] = serde_json::json!(each);
                        }
                    }
                }
                *t = (0.0, 0.0, 0, Instant::now());
                on_epoch(&entry);
                Ok(entry)
            },
            should_stop,
            save: &mut |p| Ok(ckpt.save(&varmap, &adam.borrow().state(), p)?),
        },
    )?;
    Ok(progress)
}
