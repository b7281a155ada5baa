//! `robustify standin serve`: the stand-in vision API on loopback.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::render::outln;
use anyhow::Context;
use robustify_standin::cifar::CifarClassifier;
use robustify_standin::imagenet::ImageNetClassifier;
use robustify_standin::model::Classifier;
use robustify_standin::server::{AppState, FaultConfig, Keys, ServerConfig, serve};

/// `robustify standin …`
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: StandinCommand,
}

#[derive(clap::Subcommand)]
enum StandinCommand {
    /// Serve the stand-in classifier behind every vendor's wire format.
    Serve(ServeArgs),
}

/// Which classifier to serve.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModelChoice {
    /// EfficientNet-Lite0, 1,000 ImageNet classes.
    Imagenet,
    /// ResNet-20 trained on CIFAR-10 (32×32; larger images are resized), 10 classes.
    Cifar10,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8731")]
    addr: SocketAddr,
    /// The classifier.
    #[arg(long, value_enum, default_value = "imagenet")]
    model: ModelChoice,
    /// Accept only this key (Azure, Google, Clarifai, Hugging Face); default: any non-empty key.
    #[arg(long)]
    key: Option<String>,
    /// Accept only this AWS access key id (with --aws-secret), verifying SigV4 signatures.
    #[arg(long, requires = "aws_secret")]
    aws_key_id: Option<String>,
    /// The secret of --aws-key-id.
    #[arg(long, requires = "aws_key_id")]
    aws_secret: Option<String>,
    /// Requests per second over all routes, answered the vendor's way beyond it.
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Requests allowed at once after an idle period.
    #[arg(long, default_value_t = 1)]
    burst: u32,
    /// Share of requests answered with a 5xx error.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Share of requests never answered.
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// Share of requests answered with malformed JSON.
    #[arg(long, default_value_t = 0.0)]
    garbage_rate: f64,
    /// Share of requests answered with the vendor's throttling response.
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seed of the fault sequence.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let StandinCommand::Serve(a) = args.command;
    let model: Arc<dyn Classifier> = match a.model {
        ModelChoice::Imagenet => Arc::new(ImageNetClassifier::load_default()?),
        ModelChoice::Cifar10 => Arc::new(CifarClassifier::load_default()?),
    };
    let config = ServerConfig {
        keys: Keys {
            key: a.key,
            aws: a.aws_key_id.zip(a.aws_secret),
        },
        rate_limit: a.rate_limit,
        burst: a.burst,
        faults: FaultConfig {
            fail_rate: a.fail_rate,
            timeout_rate: a.timeout_rate,
            garbage_rate: a.garbage_rate,
            throttle_rate: a.throttle_rate,
            latency_ms: a.latency_ms,
            seed: a.seed,
        },
        ..ServerConfig::default()
    };
    let state = AppState::new(model, &config).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.addr)
            .await
            .with_context(|| format!("cannot listen on {}", a.addr))?;
        let local = listener.local_addr()?;
        // The first line of output is the address, so scripts and tests can read the port.
        outln!("listening on http://{local}")?;
        serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
