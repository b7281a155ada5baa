//! `robustify`: certified robustness for black-box image classifiers.
//!
//! This binary is glue: it parses flags, builds each library's validated parameters, calls
//! the libraries and renders their results (a table for people, `--json` for programs).
//! Statistics live in `robustify-smoothing`, providers and logs in `robustify-providers`.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed memory for the next tensor of the same size; the system allocator
/// hands large blocks back to the kernel, which faults and zeroes fresh pages for every
/// tensor (a tenth of a training profile). Measured: see `robustify bench`'s note in the README.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cmd;
mod logging;
mod plot;
mod render;

/// Certified robustness for any image classifier, by denoised randomized smoothing.
#[derive(Parser)]
#[command(name = "robustify", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
    /// Where the denoisers, stand-in models and trainings run: cpu, cuda, cuda:N or auto
    /// (a GPU when this build has CUDA and one is present). Default: $ROBUSTIFY_DEVICE,
    /// else auto.
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `RUST_LOG=robustify_providers=debug` shows each request (URL, status, latency) and
    // each retry on stderr; credentials are never logged (see `logging`).
    logging::init();
    let chosen = cli
        .device
        .or_else(|| std::env::var("ROBUSTIFY_DEVICE").ok())
        .map(|name| robustify_ops::parse_device(&name).and_then(robustify_ops::set_device));
    if let Some(Err(e)) = chosen {
        eprintln!("{} {e}", crate::render::label("error"));
        return ExitCode::from(2);
    }
    match cmd::run(cli.command) {
        Ok(code) => code,
        // `robustify … | head`: the reader has what it wanted.
        Err(err) if err.chain().any(|e| e.is::<render::OutputClosed>()) => ExitCode::SUCCESS,
        Err(err) => {
            // Whatever an error quotes (a vendor's echo of the request), no credential
            // from the environment is printed.
            let text = robustify_providers::Redactor::from_env().scrub(&format!("{err:#}"));
            eprintln!("{} {text}", crate::render::label("error"));
            ExitCode::from(2)
        }
    }
}
