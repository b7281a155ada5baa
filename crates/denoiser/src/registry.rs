//! The shipped denoisers (`denoisers/<name>/` in the repository) and `--denoiser NAME|PATH`.

use std::path::{Path, PathBuf};

use crate::card::Card;
use crate::{Error, Result};

/// The folder of shipped denoisers: `$ROBUSTIFY_DENOISERS` if set, else `denoisers/` of
/// the repository robustify was built from.
pub fn shipped_dir() -> PathBuf {
    match std::env::var_os("ROBUSTIFY_DENOISERS") {
        Some(dir) => PathBuf::from(dir),
        // `crates/denoiser` → the repository root, without `..` in paths we print.
        None => {
            let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
            krate.ancestors().nth(2).unwrap_or(krate).join("denoisers")
        }
    }
}

/// The cards of the shipped denoisers, sorted by name, with their folders.
pub fn list() -> Result<Vec<(Card, PathBuf)>> {
    list_in(&shipped_dir())
}

/// The cards under `dir` (each sub-folder with a `card.json`), sorted by name.
pub fn list_in(dir: &Path) -> Result<Vec<(Card, PathBuf)>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let card = entry.path().join("card.json");
        if card.is_file() {
            out.push((Card::read(&card)?, entry.path()));
        }
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}

/// The folder of `name_or_path`: a shipped denoiser's name, or a folder holding
/// `card.json` and `model.safetensors`.
pub fn resolve(name_or_path: &str) -> Result<PathBuf> {
    let path = Path::new(name_or_path);
    if path.join("card.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let shipped = list()?;
    if let Some((_, dir)) = shipped.iter().find(|(c, _)| c.name == name_or_path) {
        return Ok(dir.clone());
    }
    let known: Vec<&str> = shipped.iter().map(|(c, _)| c.name.as_str()).collect();
    Err(Error::Unknown {
        name: name_or_path.to_owned(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    })
}

/// Of `items`, the one whose training σ (`sigma_of`) is nearest to `sigma`, if any is
/// within 10% of it: the rule by which robustify picks a denoiser for a run.
pub fn nearest_sigma<T>(
    items: impl IntoIterator<Item = T>,
    sigma: f64,
    sigma_of: impl Fn(&T) -> f64,
) -> Option<T> {
    items
        .into_iter()
        .filter(|t| (sigma_of(t) - sigma).abs() <= 0.1 * sigma)
        .min_by(|a, b| {
            (sigma_of(a) - sigma)
                .abs()
                .total_cmp(&(sigma_of(b) - sigma).abs())
        })
}

/// The kind of data (`cifar10` or `photo`) an image of this largest side most likely is:
/// CIFAR-10 images are 32×32, anything larger is a photo.
pub fn data_for_size(max_side: usize) -> &'static str {
    if max_side <= 32 { "cifar10" } else { "photo" }
}

/// The shipped denoiser for `data` (`cifar10` or `photo`) trained at the σ nearest to
/// `sigma`, if any is within 10% of it.
pub fn best_for(data: &str, sigma: f64) -> Result<Option<PathBuf>> {
    let matching = list()?.into_iter().filter(|(c, _)| c.data == data);
    Ok(nearest_sigma(matching, sigma, |(c, _)| c.sigma).map(|(_, dir)| dir))
}
