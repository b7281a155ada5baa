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
    // The name column as wide as the longest name.
    let width = defs.iter().map(|d| d.name.len()).max().unwrap_or(4).max(4);
    let mut text = format!(
        "{:<width$} {:>8} {:>10} {:>12}  description\n",
        "name", "req/s", "img/req", "$/1,000"
    );
    for d in &defs {
        let price = d.pricing.tiers.first().map_or(0.0, |t| t.usd_per_1000);
        let mark = if d.pricing.verified { "" } else { "*" };
        text += &format!(
            "{:<width$} {:>8} {:>10} {:>11.2}{mark:1}  {}\n",
            d.name, d.limits.requests_per_second, d.limits.images_per_request, price, d.description
        );
    }
    text += "\n* price not verified against the vendor's page; see providers/<name>.toml\n";
    render::print_text(&text)?;
    Ok(ExitCode::SUCCESS)
}
