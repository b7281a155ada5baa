//! `robustify providers`: the built-in provider definitions.

use std::process::ExitCode;

use robustify_providers::ProviderDef;

use crate::render;

/// Arguments of `robustify providers`.
#[derive(clap::Args)]
pub struct Args {
    /// Print the full definitions as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let defs = ProviderDef::builtins()?;
    if args.json {
        render::print_json(&defs)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("name            req/s    img/req      $/1,000  description");
    for d in &defs {
        let price = d.pricing.tiers.first().map_or(0.0, |t| t.usd_per_1000);
        let mark = if d.pricing.verified { "" } else { "*" };
        println!(
            "{:<12} {:>8} {:>10} {:>11.2}{mark:1}  {}",
            d.name, d.limits.requests_per_second, d.limits.images_per_request, price, d.description
        );
    }
    println!("\n* price not verified against the vendor's page; see providers/<name>.toml");
    Ok(ExitCode::SUCCESS)
}
