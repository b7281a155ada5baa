//! `robustify train`: train the models robustify ships. One file per model
//! ([`denoiser`], [`classifier`]); this one holds what both runs share around the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::render::outln;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

mod classifier;
mod denoiser;

/// `robustify train …`
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TrainCommand,
}

#[derive(clap::Subcommand)]
enum TrainCommand {
    /// Train the CIFAR-10 stand-in classifier (ResNet-20), no noise.
    Classifier(classifier::ClassifierArgs),
    /// Train a denoiser on random crops: the MSE objective ‖D(x + δ) − x‖², or the
    /// stability objective through a frozen classifier (a fine-tune of an MSE denoiser).
    Denoiser(denoiser::DenoiserArgs),
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    match args.command {
        TrainCommand::Classifier(a) => classifier::run(a),
        TrainCommand::Denoiser(a) => denoiser::run(a),
    }
}

/// Where a training writes, and when it stops.
#[derive(clap::Args)]
struct RunArgs {
    /// Checkpoint folder: `OUT/model.safetensors`, `OUT/card.json`, the optimiser state
    /// and `OUT/progress.json`.
    #[arg(long)]
    out: std::path::PathBuf,
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

/// The command line, for the card.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
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

/// What both trainings do around the loop: a progress bar, a deadline (`--max-minutes`),
/// Ctrl-C/SIGTERM, and the closing line.
pub(super) struct Driver {
    bar: ProgressBar,
    deadline: Option<std::time::Instant>,
    interrupted: Arc<AtomicBool>,
    epochs: usize,
}

impl Driver {
    pub(super) fn new(max_minutes: Option<f64>, epochs: usize) -> Driver {
        Driver {
            bar: epoch_bar(),
            deadline: max_minutes
                .map(|m| std::time::Instant::now() + Duration::from_secs_f64(m * 60.0)),
            interrupted: stop_on_signal(),
            epochs,
        }
    }

    pub(super) fn batch(&self, epoch: usize, batch: usize, batches: usize, message: String) {
        self.bar.set_length(batches as u64);
        self.bar.set_position(batch as u64 + 1);
        self.bar
            .set_prefix(format!("{}/{}", epoch + 1, self.epochs));
        self.bar.set_message(message);
    }

    /// Each epoch's entry: one JSON line on stdout (JSON Lines for programs), printed
    /// once, above the bar.
    pub(super) fn epoch(&self, entry: &serde_json::Value) {
        self.bar.suspend(|| {
            let _ = outln!("{entry}");
        });
    }

    /// Past the deadline or interrupted, and at least one batch into the epoch.
    pub(super) fn should_stop(&self, p: &robustify_train::checkpoint::Progress) -> bool {
        let late = self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d);
        (late || self.interrupted.load(Ordering::Relaxed)) && p.batch > 0
    }

    /// Clears the bar and says how the run ended.
    pub(super) fn finish(&self, p: &robustify_train::checkpoint::Progress) -> anyhow::Result<()> {
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
                    let _ = write!(w, "{}", super::progress::rate(state.per_sec(), "batches"));
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Loads an image folder with a progress bar.
pub(super) fn with_bar<T>(
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
