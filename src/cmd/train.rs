//! `robustify train`: train the models robustify ships.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::render::outln;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use robustify_standin::cifar::Config;
use robustify_standin::cifar_train::{Hooks, TrainConfig, train};
use robustify_train::dataset::ImageFolder;

/// `robustify train …`
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TrainCommand,
}

#[derive(clap::Subcommand)]
enum TrainCommand {
    /// Train the CIFAR-10 stand-in classifier (ResNet-20), no noise.
    Classifier(ClassifierArgs),
    /// Train a denoiser on random crops: the MSE objective ‖D(x + δ) − x‖², or the
    /// stability objective through a frozen classifier (a fine-tune of an MSE denoiser).
    Denoiser(DenoiserArgs),
}

#[derive(clap::Args)]
struct DenoiserArgs {
    /// Image folder, searched recursively (any sizes): e.g. ../shared/data/cifar10/train,
    /// or ../shared/data/imagenet-samples.
    #[arg(long)]
    data: PathBuf,
    /// Noise level σ it is trained for.
    #[arg(long)]
    sigma: f64,
    /// Architecture: unet (fast, for photos), dncnn (the paper's 17×64), or explicit
    /// dncnn-DEPTH-WIDTH / unet-W1-W2-…-xCONVS.
    #[arg(long, default_value = "unet")]
    arch: String,
    /// Epochs in total.
    #[arg(long)]
    epochs: usize,
    /// Side of the square training crops.
    #[arg(long, default_value_t = 48)]
    crop: usize,
    /// Crops taken from each image per epoch.
    #[arg(long, default_value_t = 1)]
    crops_per_image: usize,
    /// Crops per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (Adam, warm-up then cosine).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of initialisation, data order, crops and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// mse: ‖D(x + δ) − x‖². stab: Salman et al.'s stability objective, the cross-entropy
    /// of the --classifier's label for the denoised copy against its label for the clean
    /// image, plus --mse-weight × MSE; start it from an MSE denoiser with --init.
    #[arg(long, value_enum, default_value = "mse")]
    objective: ObjectiveArg,
    /// The frozen classifier of --objective stab: standin-cifar10 (the shipped ResNet-20),
    /// or another CIFAR-10 ResNet-20's weights (a surrogate: a .safetensors file or the
    /// folder of `robustify train classifier --out`); 32×32 crops.
    #[arg(long)]
    classifier: Option<String>,
    /// Weight of the MSE term under --objective stab.
    #[arg(long, default_value_t = 0.0)]
    mse_weight: f64,
    /// Start from this denoiser's weights (a shipped name or a folder; same --arch)
    /// instead of a random initialisation.
    #[arg(long)]
    init: Option<String>,
    /// Test folder, scored (PSNR) after every epoch [default: every --hold-out-th image of
    /// --data, kept out of training].
    #[arg(long)]
    test: Option<PathBuf>,
    /// Without --test, hold out every N-th image of --data (sorted) for the test.
    #[arg(long, default_value_t = 20)]
    hold_out: usize,
    /// Test images used at most (spread evenly over the sorted test set).
    #[arg(long, default_value_t = 1000)]
    test_limit: usize,
    /// Side of the central test crops.
    #[arg(long, default_value_t = 128)]
    test_crop: usize,
    /// Images with a shorter side above this are downscaled to it when loaded.
    #[arg(long, default_value_t = 256)]
    max_short: u32,
    /// What the card says it is for: cifar10 or photo [default: cifar10 when every image is
    /// at most 32×32].
    #[arg(long)]
    kind: Option<String>,
    /// Checkpoint folder; the model is `OUT/model.safetensors`, its card `OUT/card.json`.
    #[arg(long)]
    out: PathBuf,
    /// Continue the checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) after this many minutes; continue later with --resume.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Seconds between checkpoints within an epoch.
    #[arg(long, default_value_t = 300)]
    save_every: u64,
}

#[derive(clap::Args)]
struct ClassifierArgs {
    /// Training image folder (`<class>/<image>`), e.g. ../shared/data/cifar10/train.
    #[arg(long)]
    data: PathBuf,
    /// Test image folder, scored after every epoch.
    #[arg(long)]
    test: Option<PathBuf>,
    /// Epochs in total.
    #[arg(long)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate (SGD, Nesterov momentum 0.9, cosine schedule).
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Seed of initialisation, data order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint folder; the trained model is `OUT/model.safetensors`.
    #[arg(long)]
    out: PathBuf,
    /// Continue the checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) after this many minutes; continue later with --resume.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Seconds between checkpoints within an epoch.
    #[arg(long, default_value_t = 300)]
    save_every: u64,
}

/// A flag raised by Ctrl-C or SIGTERM, so training stops at the next batch with a
/// checkpoint and a card instead of losing the work since the last save.
fn stop_on_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
        });
        eprintln!("stopping after this batch (checkpoint and card follow)");
        raised.store(true, Ordering::Relaxed);
    });
    flag
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        TrainCommand::Classifier(a) => classifier(a),
        TrainCommand::Denoiser(a) => denoiser(a),
    }
}

/// What both trainings do around the loop: a progress bar, a deadline (`--max-minutes`),
/// Ctrl-C/SIGTERM, and the closing line.
struct Driver {
    bar: ProgressBar,
    deadline: Option<std::time::Instant>,
    interrupted: Arc<AtomicBool>,
    epochs: usize,
}

impl Driver {
    fn new(max_minutes: Option<f64>, epochs: usize) -> Driver {
        Driver {
            bar: epoch_bar(),
            deadline: max_minutes
                .map(|m| std::time::Instant::now() + Duration::from_secs_f64(m * 60.0)),
            interrupted: stop_on_signal(),
            epochs,
        }
    }

    fn batch(&self, epoch: usize, batch: usize, batches: usize, message: String) {
        self.bar.set_length(batches as u64);
        self.bar.set_position(batch as u64 + 1);
        self.bar
            .set_prefix(format!("{}/{}", epoch + 1, self.epochs));
        self.bar.set_message(message);
    }

    /// Each epoch's entry: one JSON line on stdout (JSON Lines for programs), printed
    /// once, above the bar.
    fn epoch(&self, entry: &serde_json::Value) {
        self.bar.suspend(|| {
            let _ = outln!("{entry}");
        });
    }

    /// Past the deadline or interrupted, and at least one batch into the epoch.
    fn should_stop(&self, p: &robustify_train::checkpoint::Progress) -> bool {
        let late = self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d);
        (late || self.interrupted.load(Ordering::Relaxed)) && p.batch > 0
    }

    /// Clears the bar and says how the run ended.
    fn finish(&self, p: &robustify_train::checkpoint::Progress) -> anyhow::Result<()> {
        self.bar.finish_and_clear();
        if p.epoch < self.epochs {
            outln!(
                "stopped at epoch {} batch {} (step {}); continue with the same command and --resume",
                p.epoch + 1,
                p.batch,
                p.step
            )?;
        } else {
            // Each epoch's line was printed as it ended: say only that the run is done.
            eprintln!("finished: {} of {} epochs", p.history.len(), self.epochs);
        }
        Ok(())
    }
}

/// A bar for epochs of batches.
fn epoch_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {rate} eta {eta} {msg}",
        )
        .map(|s| {
            s.with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", super::session::rate(state.per_sec(), "batches"));
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Loads an image folder with a progress bar.
fn with_bar<T>(
    dir: &std::path::Path,
    load: impl FnOnce(&mut dyn FnMut(usize, usize)) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let bar = ProgressBar::new(0).with_message(format!("loading {}", dir.display()));
    bar.set_style(
        ProgressStyle::with_template("{msg} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let out = load(&mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("cannot load {}", dir.display()))?;
    bar.finish_and_clear();
    Ok(out)
}

fn denoiser(a: DenoiserArgs) -> anyhow::Result<ExitCode> {
    use robustify_denoiser::data::Photos;
    use robustify_denoiser::train::{Hooks, TestSet, TrainConfig, train};
    use robustify_denoiser::{Arch, Card, registry};
    if a.epochs == 0 || a.batch_size == 0 || !(a.lr > 0.0 && a.lr.is_finite()) {
        anyhow::bail!("epochs, batch-size and lr must be positive");
    }
    if !(a.sigma > 0.0 && a.sigma <= 1.0) {
        anyhow::bail!("--sigma must be in (0, 1]");
    }
    let arch = Arch::parse(&a.arch)?;
    // The objective, its classifier and the starting weights are checked before the data
    // load (CIFAR-10's 50,000 images take most of a minute).
    let (objective, guide) = stab_objective(&a)?;
    let init = match &a.init {
        Some(name) => {
            let dir = registry::resolve(name)?;
            let card = Card::read(&dir.join("card.json"))?;
            if card.arch != arch {
                anyhow::bail!(
                    "--init {name}: its architecture is {}, not --arch {}",
                    card.arch.name(),
                    arch.name()
                );
            }
            Some(dir.join("model.safetensors"))
        }
        None => None,
    };
    let data = with_bar(&a.data, |p| Ok(Photos::load(&a.data, a.max_short, p)?))?;
    let (data, test) = match &a.test {
        Some(dir) => (
            data,
            with_bar(dir, |p| Ok(Photos::load(dir, a.max_short, p)?))?,
        ),
        None => data.hold_out(a.hold_out),
    };
    let mut data = data;
    let dropped = data.retain_min_side(a.crop);
    if dropped > 0 {
        eprintln!(
            "{dropped} training images smaller than the {}px crop are left out",
            a.crop
        );
    }
    let mut test = test.spread(a.test_limit);
    let dropped = test.retain_min_side(a.test_crop.min(a.crop));
    if dropped > 0 {
        eprintln!("{dropped} test images smaller than the crop are left out");
    }
    let kind = match &a.kind {
        Some(k) if k == "cifar10" || k == "photo" => k.clone(),
        Some(k) => anyhow::bail!("--kind {k:?}: expected cifar10 or photo"),
        None => registry::data_for_size(data.max_side()).into(),
    };
    let test_images = test.len();
    let test_set = if test.is_empty() {
        None
    } else {
        Some(TestSet::center_crops(&test, a.test_crop, a.sigma, 1)?)
    };
    let cfg = TrainConfig {
        arch: arch.clone(),
        sigma: a.sigma,
        epochs: a.epochs,
        batch_size: a.batch_size,
        crop: a.crop,
        crops_per_image: a.crops_per_image,
        lr: a.lr,
        seed: a.seed,
        objective,
        init,
    };
    let logits = guide
        .as_ref()
        .map(|model| move |x: &candle_core::Tensor| model.network().forward_t(x, false));
    let driver = Driver::new(a.max_minutes, cfg.epochs);
    let progress = train(
        &data,
        test_set.as_ref(),
        &cfg,
        &a.out,
        a.resume,
        Duration::from_secs(a.save_every),
        Hooks {
            on_batch: &mut |r| {
                let mut msg = format!("mse {:.5} psnr {:.2} dB", r.loss, r.psnr);
                if let Some(ce) = r.stab {
                    msg.push_str(&format!(" stab {ce:.3}"));
                }
                driver.batch(r.epoch, r.batch, r.batches, msg);
            },
            on_epoch: &mut |e| driver.epoch(e),
            should_stop: &mut |p| driver.should_stop(p),
            guide: logits
                .as_ref()
                .map(|f| f as robustify_denoiser::train::Guide<'_>),
        },
    )?;
    let card_path = a.out.join("card.json");
    // A re-written card keeps what was added to it by hand (the fixture floor, eval figures).
    let previous = Card::read(&card_path).ok();
    let mut extra = previous
        .as_ref()
        .map(|c| c.extra.clone())
        .unwrap_or_default();
    let last = progress.history.last().cloned().unwrap_or_default();
    let command: Vec<String> = std::env::args().collect();
    let name = a
        .out
        .file_name()
        .map_or_else(|| "denoiser".into(), |n| n.to_string_lossy().into_owned());
    for (k, v) in [
        (
            "objective",
            serde_json::json!(objective_text(&cfg.objective, a.init.as_deref())),
        ),
        (
            "training_data",
            serde_json::json!(a.data.display().to_string()),
        ),
        (
            "test_data",
            serde_json::json!(match &a.test {
                Some(t) => format!(
                    "{} ({} images spread evenly over the sorted files), central {}px crops",
                    t.display(),
                    test_images,
                    a.test_crop
                ),
                None => format!(
                    "every {}th image of {} (held out), central {}px crops",
                    a.hold_out,
                    a.data.display(),
                    a.test_crop
                ),
            }),
        ),
        ("training", serde_json::to_value(&cfg)?),
        ("epochs_done", serde_json::json!(progress.epoch)),
        ("command", serde_json::json!(command.join(" "))),
        (
            "test_psnr_noisy",
            last.get("test_psnr_noisy").cloned().unwrap_or_default(),
        ),
        (
            "test_psnr",
            last.get("test_psnr").cloned().unwrap_or_default(),
        ),
        ("history", serde_json::to_value(&progress.history)?),
    ] {
        extra.insert(k.into(), v);
    }
    Card {
        name,
        arch,
        sigma: a.sigma,
        data: kind,
        psnr_floor: previous.and_then(|c| c.psnr_floor),
        extra,
    }
    .write(&card_path)?;
    driver.finish(&progress)?;
    Ok(ExitCode::SUCCESS)
}

/// `--objective`: a closed choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectiveArg {
    /// ‖D(x + δ) − x‖².
    Mse,
    /// Salman et al.'s stability objective through a frozen classifier.
    Stab,
}

/// The objective `--objective`, `--classifier` and `--mse-weight` ask for, and the frozen
/// classifier it needs.
fn stab_objective(
    a: &DenoiserArgs,
) -> anyhow::Result<(
    robustify_denoiser::train::Objective,
    Option<robustify_standin::cifar::CifarClassifier>,
)> {
    use robustify_denoiser::train::Objective;
    match (a.objective, a.classifier.as_deref()) {
        (ObjectiveArg::Mse, None) => Ok((Objective::Mse, None)),
        (ObjectiveArg::Mse, Some(_)) => anyhow::bail!("--classifier goes with --objective stab"),
        (ObjectiveArg::Stab, None) => {
            anyhow::bail!("--objective stab needs --classifier standin-cifar10")
        }
        (ObjectiveArg::Stab, Some(name)) => {
            // The shipped stand-in, or the weights of another CIFAR-10 ResNet-20 (a
            // surrogate trained by `robustify train classifier`): a file or its folder.
            let weights = match name {
                "standin-cifar10" => None,
                path if path.ends_with(".safetensors") => Some(PathBuf::from(path)),
                dir if std::path::Path::new(dir).is_dir() => {
                    Some(std::path::Path::new(dir).join("model.safetensors"))
                }
                other => anyhow::bail!(
                    "--classifier {other:?}: expected standin-cifar10 or the weights of a \
                     CIFAR-10 ResNet-20 (a .safetensors file or its folder); the ImageNet \
                     stand-in runs forward only"
                ),
            };
            if a.crop != 32 {
                anyhow::bail!("--classifier {name} classifies 32×32 images: use --crop 32");
            }
            if !(a.mse_weight >= 0.0 && a.mse_weight.is_finite()) {
                anyhow::bail!("--mse-weight must be ≥ 0");
            }
            let model = match &weights {
                None => robustify_standin::cifar::CifarClassifier::load_default()?,
                Some(path) => robustify_standin::cifar::CifarClassifier::load(path)?,
            };
            let objective = Objective::Stab {
                classifier: name.into(),
                mse_weight: a.mse_weight,
            };
            Ok((objective, Some(model)))
        }
    }
}

/// The card's one-line description of the objective; `init` as the user named it.
fn objective_text(objective: &robustify_denoiser::train::Objective, init: Option<&str>) -> String {
    use robustify_denoiser::train::Objective;
    let start = init
        .map(|name| format!(", fine-tuned from {name}"))
        .unwrap_or_default();
    match objective {
        Objective::Mse => format!("MSE ‖D(x+δ) − x‖², δ ~ N(0, σ²I) unclipped{start}"),
        Objective::Stab {
            classifier,
            mse_weight,
        } => format!(
            "stability: CE(F(clip(D(x+δ))), argmax F(x)) + {mse_weight}·MSE, F = {classifier} \
             (frozen), δ ~ N(0, σ²I){start}"
        ),
    }
}

fn classifier(a: ClassifierArgs) -> anyhow::Result<ExitCode> {
    if a.epochs == 0 || a.batch_size == 0 || !(a.lr > 0.0 && a.lr.is_finite()) {
        anyhow::bail!("epochs, batch-size and lr must be positive");
    }
    let load = |dir: &PathBuf| with_bar(dir, |p| Ok(ImageFolder::load(dir, p)?));
    let data = load(&a.data)?;
    let test = a.test.as_ref().map(load).transpose()?;
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        momentum: 0.9,
        weight_decay: a.weight_decay,
        seed: a.seed,
        arch: Config::resnet20(),
    };
    let driver = Driver::new(a.max_minutes, cfg.epochs);
    let progress = train(
        &data,
        test.as_ref(),
        &cfg,
        &a.out,
        a.resume,
        Duration::from_secs(a.save_every),
        Hooks {
            on_batch: &mut |r| {
                let msg = format!("loss {:.3} acc {:.3}", r.loss, r.accuracy);
                driver.batch(r.epoch, r.batch, r.batches, msg);
            },
            on_epoch: &mut |e| driver.epoch(e),
            should_stop: &mut |p| driver.should_stop(p),
        },
    )?;
    let command: Vec<String> = std::env::args().collect();
    let last = progress.history.last().cloned().unwrap_or_default();
    let card = serde_json::json!({
        "architecture": "ResNet-20 for CIFAR-10 (He et al. 2016), 1x1 projection shortcuts, crates/standin/src/cifar.rs",
        "task": "CIFAR-10 classification, no noise (the off-the-shelf classifier of the paper's CIFAR protocol)",
        "data": a.data.display().to_string(),
        "augmentation": "random crop 32 with padding 4, horizontal flip",
        "training": cfg,
        "epochs_done": progress.epoch,
        "command": command.join(" "),
        "test_data": a.test.as_ref().map(|t| t.display().to_string()),
        "test_accuracy": last.get("test_accuracy").cloned(),
        "history": progress.history,
    });
    let card_path = a.out.join("card.json");
    std::fs::write(&card_path, serde_json::to_string_pretty(&card)?)
        .with_context(|| format!("{}", card_path.display()))?;
    driver.finish(&progress)?;
    Ok(ExitCode::SUCCESS)
}
