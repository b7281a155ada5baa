//! One file per subcommand; this enum dispatches to them.

use std::process::ExitCode;

mod answers;
mod bench;
mod certify;
mod classify;
mod denoise;
mod envelope;
mod estimate;
mod eval;
mod noise;
mod predict;
mod progress;
mod providers;
mod replay;
mod score;
mod sequential;
mod serve;
mod session;
mod standin;
mod train;

/// The subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Certify images: a label and an ℓ2 radius no perturbation within can change.
    Certify(certify::Args),
    /// Predict the smoothed label of images (or abstain), without a radius.
    Predict(predict::Args),
    /// Classify images once, without noise: top-5 labels with scores.
    Classify(classify::Args),
    /// Certify from a log of labels alone: no noise drawn, nothing sent, nothing paid.
    Replay(replay::Args),
    /// Certify every K-th image of a folder: certified accuracy by radius (TSV, JSON, PNG).
    Eval(eval::Args),
    /// The paper's headline table from eval runs at several σ: at each radius the best
    /// certified accuracy over them (the outer envelope), which σ gave it, and one plot.
    Envelope(envelope::Args),
    /// Cost dry run: queries, dollars, minimum time and reachable radius of a certification.
    Estimate(estimate::Args),
    /// Write a noisy copy of an image and its denoised version (PNG), with their PSNR.
    Denoise(denoise::DenoiseArgs),
    /// The shipped denoisers.
    Denoisers(denoise::DenoisersArgs),
    /// Write noisy copies of an image as a provider would receive them (8-bit PNG).
    Noise(noise::Args),
    /// The certification proxy: keyed clients, budgets, one shared gate per provider.
    Serve(serve::Args),
    /// The local stand-in vision API.
    Standin(standin::Args),
    /// Convolution and model speed: ours, candle's, PyTorch's (when installed), one run.
    Bench(bench::Args),
    /// Train the models robustify ships.
    Train(train::Args),
    /// List the built-in provider definitions.
    Providers(providers::Args),
    /// The answer store: paid answers kept for reuse, their spend, their export.
    Answers(answers::Args),
}

/// Runs one subcommand; `Err` is reported by `main` with exit code 2.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Answers(args) => answers::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Certify(args) => certify::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Denoise(args) => denoise::denoise(args),
        Command::Denoisers(args) => denoise::denoisers(args),
        Command::Eval(args) => eval::run(args),
        Command::Envelope(args) => envelope::run(args),
        Command::Estimate(args) => estimate::run(args),
        Command::Noise(args) => noise::run(args),
        Command::Providers(args) => providers::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Standin(args) => standin::run(args),
        Command::Train(args) => train::run(args),
    }
}
