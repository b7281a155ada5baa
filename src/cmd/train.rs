//! `robustify train`: train the models robustify ships.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    let TrainCommand::Classifier(a) = args.command;
    if a.epochs == 0 || a.batch_size == 0 || !(a.lr > 0.0 && a.lr.is_finite()) {
        anyhow::bail!("epochs, batch-size and lr must be positive");
    }
    let load = |dir: &PathBuf| -> anyhow::Result<ImageFolder> {
        let bar = ProgressBar::new(0).with_message(format!("loading {}", dir.display()));
        let folder = ImageFolder::load(dir, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .with_context(|| format!("cannot load {}", dir.display()))?;
        bar.finish_and_clear();
        Ok(folder)
    };
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
    let deadline = a
        .max_minutes
        .map(|m| std::time::Instant::now() + Duration::from_secs_f64(m * 60.0));
    let interrupted = stop_on_signal();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = train(
        &data,
        test.as_ref(),
        &cfg,
        &a.out,
        a.resume,
        Duration::from_secs(a.save_every),
        Hooks {
            on_batch: &mut |r| {
                bar.set_length(r.batches as u64);
                bar.set_position(r.batch as u64 + 1);
                bar.set_prefix(format!("{}/{}", r.epoch + 1, cfg.epochs));
                bar.set_message(format!("loss {:.3} acc {:.3}", r.loss, r.accuracy));
            },
            on_epoch: &mut |e| bar.println(e.to_string()),
            should_stop: &mut |p| {
                let late = deadline.is_some_and(|d| std::time::Instant::now() >= d);
                (late || interrupted.load(Ordering::Relaxed)) && p.batch > 0
            },
        },
    )?;
    bar.finish_and_clear();
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
    if progress.epoch < cfg.epochs {
        println!(
            "stopped at epoch {} batch {} (step {}); continue with the same command and --resume",
            progress.epoch + 1,
            progress.batch,
            progress.step
        );
    } else {
        println!("{}", serde_json::to_string(&last)?);
    }
    Ok(ExitCode::SUCCESS)
}
