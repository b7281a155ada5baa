//! `robustify train denoiser`: MSE, or the stability objective through a frozen classifier.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use robustify_denoiser::Arch;
use robustify_denoiser::data::Photos;
use robustify_denoiser::train::{Hooks, Objective, TestSet, TrainConfig, train};
use robustify_denoiser::trained::{TrainedFacts, data_kind, init_weights, write_card};

use super::{Driver, RunArgs, command_line, with_bar};

#[derive(clap::Args)]
pub(super) struct DenoiserArgs {
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
    /// A frozen classifier of --objective stab (repeat it for several: the stability term
    /// is averaged over them). CIFAR-10 (32×32 crops): standin-cifar10 (the shipped
    /// ResNet-20) or another ResNet-20's weights (a surrogate: a .safetensors file or the
    /// folder of `robustify train classifier --out`). Photos: efficientnet-lite0 (the
    /// stand-in vendor's own model), efficientnet-lite1, efficientnet-lite2 (surrogates).
    #[arg(long)]
    classifier: Vec<String>,
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
    #[command(flatten)]
    run: RunArgs,
}

/// `--objective`: a closed choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectiveArg {
    /// ‖D(x + δ) − x‖².
    Mse,
    /// Salman et al.'s stability objective through a frozen classifier.
    Stab,
}

/// A frozen classifier the stability objective goes through.
enum Surrogate {
    Cifar(robustify_standin::cifar::CifarClassifier),
    Photo(robustify_standin::imagenet::ImageNetClassifier),
}

impl Surrogate {
    /// `name` as `--classifier` gives it, for `crop`-sided crops.
    fn load(name: &str, crop: usize) -> anyhow::Result<Surrogate> {
        use robustify_standin::imagenet::{ImageNetClassifier, LITE_MODELS};
        if LITE_MODELS.iter().any(|m| m.name == name) || name.starts_with("efficientnet") {
            // An unknown Lite name is refused there, naming the shipped ones.
            return Ok(Surrogate::Photo(ImageNetClassifier::load_named(name)?));
        }
        if crop != 32 {
            anyhow::bail!(
                "--classifier {name} classifies 32×32 images: use --crop 32 (photo \
                 classifiers: {})",
                LITE_MODELS.map(|m| m.name).join(", ")
            );
        }
        Ok(Surrogate::Cifar(
            robustify_standin::cifar::CifarClassifier::load_named(name)?,
        ))
    }

    /// Logits for a `[N, 3, H, W]` batch in `[0, 1]`, differentiable in the batch.
    fn logits(&self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Surrogate::Cifar(m) => m.network().forward_t(x, false),
            Surrogate::Photo(m) => m
                .logits(x)
                .map_err(|e| candle_core::Error::Msg(e.to_string())),
        }
    }
}

/// The objective `--objective`, `--classifier` and `--mse-weight` ask for, and the frozen
/// classifiers it needs.
fn stab_objective(a: &DenoiserArgs) -> anyhow::Result<(Objective, Vec<Surrogate>)> {
    match (a.objective, a.classifier.is_empty()) {
        (ObjectiveArg::Mse, true) => Ok((Objective::Mse, Vec::new())),
        (ObjectiveArg::Mse, false) => {
            anyhow::bail!("--classifier goes with --objective stab")
        }
        (ObjectiveArg::Stab, true) => anyhow::bail!(
            "--objective stab needs --classifier (standin-cifar10, efficientnet-lite1, …)"
        ),
        (ObjectiveArg::Stab, false) => {
            let models = a
                .classifier
                .iter()
                .map(|name| Surrogate::load(name, a.crop))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let objective = Objective::Stab {
                classifier: a.classifier.join(","),
                mse_weight: a.mse_weight,
            };
            Ok((objective, models))
        }
    }
}

pub(super) fn run(a: DenoiserArgs) -> anyhow::Result<ExitCode> {
    let arch = Arch::parse(&a.arch)?;
    // The settings, the objective, its classifier and the starting weights are checked
    // before the data load (CIFAR-10's 50,000 images take most of a minute).
    let (objective, surrogates) = stab_objective(&a)?;
    let init = a
        .init
        .as_deref()
        .map(|n| init_weights(n, &arch))
        .transpose()?;
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
    cfg.validate()?;
    let data = with_bar(&a.data, |p| Ok(Photos::load(&a.data, a.max_short, p)?))?;
    let (mut data, test) = match &a.test {
        Some(dir) => (
            data,
            with_bar(dir, |p| Ok(Photos::load(dir, a.max_short, p)?))?,
        ),
        None => data.hold_out(a.hold_out),
    };
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
    let kind = data_kind(a.kind.as_deref(), data.max_side())?;
    let test_images = test.len();
    let test_set = if test.is_empty() {
        None
    } else {
        Some(TestSet::center_crops(&test, a.test_crop, a.sigma, 1)?)
    };
    let logits: Vec<_> = surrogates
        .iter()
        .map(|model| move |x: &candle_core::Tensor| model.logits(x))
        .collect();
    let driver = Driver::new(a.run.max_minutes, cfg.epochs);
    let progress = train(
        &data,
        test_set.as_ref(),
        &cfg,
        &a.run.out,
        a.run.resume,
        Duration::from_secs(a.run.save_every),
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
            guides: logits
                .iter()
                .map(|f| f as robustify_denoiser::train::Guide<'_>)
                .collect(),
        },
    )?;
    let test_data = match &a.test {
        Some(t) => format!(
            "{} ({test_images} images spread evenly over the sorted files), central {}px crops",
            t.display(),
            a.test_crop
        ),
        None => format!(
            "every {}th image of {} (held out), central {}px crops",
            a.hold_out,
            a.data.display(),
            a.test_crop
        ),
    };
    let facts = TrainedFacts {
        name: a
            .run
            .out
            .file_name()
            .map_or_else(|| "denoiser".into(), |n| n.to_string_lossy().into_owned()),
        data: kind,
        training_data: a.data.display().to_string(),
        test_data,
        init: a.init.clone(),
        command: command_line(),
    };
    write_card(&a.run.out, &cfg, &progress, facts)?;
    driver.finish(&progress)?;
    Ok(ExitCode::SUCCESS)
}
