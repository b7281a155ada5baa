//! `robustify certify`: CERTIFY each image against a provider.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use robustify_providers::adapters::standin_local::StandinLocal;
use robustify_providers::{Adapter, Provider, ProviderClassifier, ProviderDef};
use robustify_smoothing::{
    BaseClassifier, Certificate, CertifyParams, DecodeLimits, Image, certify,
};
use robustify_standin::imagenet::ImageNetClassifier;
use serde::Serialize;

use crate::input::read_image;
use crate::render;

/// Arguments of `robustify certify`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Image files (PNG, JPEG, WebP or BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Provider name (see `robustify providers`) or definition file.
    #[arg(long, default_value = "standin-local")]
    provider: String,
    /// Send the noisy images to the provider as they are (the only mode until denoisers ship).
    #[arg(long)]
    no_denoiser: bool,
    /// Noise level σ in [0, 1] pixel units.
    #[arg(long)]
    sigma: f64,
    /// Selection draws per image.
    #[arg(long)]
    n0: u64,
    /// Estimation draws per image.
    #[arg(long)]
    n: u64,
    /// Failure probability α.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Master seed of the noise (recorded in the result).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noisy images per provider call.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Print one JSON object per image (JSON Lines) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct CertJson<'a> {
    image: String,
    label: Option<&'a str>,
    radius: f64,
    p_lower: f64,
    counts: &'a std::collections::BTreeMap<String, u64>,
    queries: u64,
    cost_usd: f64,
    seed: Option<u64>,
    sigma: f64,
    n0: u64,
    n: u64,
    alpha: f64,
}

/// Counts draws on a progress bar as they are answered.
struct Progressed<C> {
    inner: C,
    bar: ProgressBar,
}

impl<C: BaseClassifier + Sync> BaseClassifier for Progressed<C> {
    type Error = C::Error;

    async fn classify(&self, batch: &[Image]) -> Result<Vec<String>, Self::Error> {
        let out = self.inner.classify(batch).await?;
        self.bar.inc(batch.len() as u64);
        Ok(out)
    }
}

fn provider(def: &ProviderDef) -> anyhow::Result<Arc<dyn Provider>> {
    match def.adapter {
        Adapter::StandinLocal => Ok(Arc::new(StandinLocal::new(Arc::new(
            ImageNetClassifier::load_default()?,
        )))),
        other => anyhow::bail!(
            "provider {:?} uses the {other:?} adapter, which is not implemented yet; \
             use --provider standin-local, or `robustify replay` on a logged run",
            def.name
        ),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let params = CertifyParams::new(args.sigma, args.n0, args.n, args.alpha)?
        .with_batch_size(args.batch_size)?;
    let def = ProviderDef::load(&args.provider)?;
    let provider = provider(&def)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut failed = false;
    if !args.json {
        println!(
            "provider {} · no denoiser · σ = {} · n0 = {} · n = {} · α = {} · seed {}\n",
            def.name, args.sigma, args.n0, args.n, args.alpha, args.seed
        );
        println!(
            "{:<36} {:<24} {:>8} {:>8} {:>9}",
            "image", "label", "radius", "p_lower", "n_A/n"
        );
    }
    for path in &args.images {
        let image = match read_image(path, &DecodeLimits::default()) {
            Ok(img) => img,
            Err(err) => {
                eprintln!("error: {err:#}");
                failed = true;
                continue;
            }
        };
        let bar = ProgressBar::new(args.n0 + args.n);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} draws, {per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(path.display().to_string());
        let classifier = Progressed {
            inner: ProviderClassifier::new(provider.clone()),
            bar: bar.clone(),
        };
        let result = runtime.block_on(certify(&classifier, &image, &params, args.seed));
        bar.finish_and_clear();
        match result {
            Ok(cert) => print_cert(
                &args,
                path,
                &cert,
                def.pricing.cost_usd(cert.queries, false),
            )?,
            Err(err) => {
                eprintln!("error: {}: {err}", path.display());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_cert(
    args: &Args,
    path: &std::path::Path,
    cert: &Certificate,
    cost: f64,
) -> anyhow::Result<()> {
    if args.json {
        return render::print_json(&CertJson {
            image: path.display().to_string(),
            label: cert.label.as_deref(),
            radius: cert.radius,
            p_lower: cert.p_lower,
            counts: &cert.counts,
            queries: cert.queries,
            cost_usd: cost,
            seed: cert.seed,
            sigma: cert.sigma,
            n0: cert.n0,
            n: cert.n,
            alpha: cert.alpha,
        });
    }
    let label = match (&cert.label, &cert.candidate) {
        (Some(l), _) => l.clone(),
        (None, Some(c)) => format!("abstain ({c}?)"),
        (None, None) => "abstain".into(),
    };
    println!(
        "{:<36} {:<24} {:>8.4} {:>8.4} {:>9}",
        path.display(),
        label,
        cert.radius,
        cert.p_lower,
        format!("{}/{}", cert.n_a, cert.n)
    );
    Ok(())
}
