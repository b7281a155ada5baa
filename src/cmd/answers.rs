//! `robustify answers`: the answer store — how many paid answers it keeps, what was spent,
//! and its export as JSON Lines (what `replay` and `--resume` read).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use robustify_providers::AnswerStore;

use crate::render::outln;

/// Arguments of `robustify answers`.
#[derive(clap::Args)]
pub struct Args {
    /// The store.
    #[arg(long, env = "ROBUSTIFY_STORE", default_value = robustify_pipeline::DEFAULT_STORE)]
    store: PathBuf,
    /// Write every stored answer to this file as JSON Lines (`-`: standard output).
    #[arg(long)]
    export: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.store.exists(),
        "{}: no answer store here (paid runs create it; --store names another)",
        args.store.display()
    );
    let store = AnswerStore::open(&args.store)?;
    match &args.export {
        Some(path) if path.as_os_str() == "-" => {
            let mut out = std::io::stdout().lock();
            store.export(&mut out)?;
            out.flush()?;
        }
        Some(path) => {
            let file =
                std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let n = store.export(&mut out)?;
            out.flush().with_context(|| format!("{}", path.display()))?;
            eprintln!("{n} answers written to {}", path.display());
        }
        None => {
            outln!("{}: {} paid answers", args.store.display(), store.len()?)?;
            for (provider, usd) in store.spent("", 0)? {
                outln!("  {provider}: ${usd:.4} spent from the command line")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
