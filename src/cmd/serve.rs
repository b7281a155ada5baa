//! `robustify serve`: the certification proxy (see `robustify-proxy`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::render::outln;
use anyhow::Context;
use robustify_proxy::{Config, ProxyState, hash_key, serve};

/// Arguments of `robustify serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The proxy's configuration (providers, clients with hashed keys and budgets).
    #[arg(long, required_unless_present = "hash_key")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Print the `key_sha256` line for a client key, and exit.
    #[arg(long, value_name = "KEY")]
    hash_key: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(key) = &args.hash_key {
        outln!("key_sha256 = \"{}\"", hash_key(key))?;
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.config.context("--config is required")?;
    let config = Config::load(&path)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let state = ProxyState::connect(&config, |var| std::env::var(var).ok()).await?;
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        // The first line of output is the address, so scripts and tests can read the port.
        outln!("listening on http://{}", listener.local_addr()?)?;
        serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
