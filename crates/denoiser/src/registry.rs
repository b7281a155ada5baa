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
/// `sigma`, if any is within 10% of it; of those at that σ, one tuned through classifiers
/// (the stability objective) before one trained on MSE alone, then by name.
pub fn best_for(data: &str, sigma: f64) -> Result<Option<PathBuf>> {
    Ok(best_in(list()?, data, sigma))
}

/// [`best_for`]'s rule over the cards `cards` (sorted by name, as [`list_in`] gives them).
pub fn best_in(cards: Vec<(Card, PathBuf)>, data: &str, sigma: f64) -> Option<PathBuf> {
    let matching: Vec<_> = cards.into_iter().filter(|(c, _)| c.data == data).collect();
    let nearest = nearest_sigma(matching.iter(), sigma, |(c, _)| c.sigma)?
        .0
        .sigma;
    let at_nearest = matching.into_iter().filter(|(c, _)| c.sigma == nearest);
    // `min_by_key` keeps the first of equals: the name order of `cards`.
    at_nearest
        .min_by_key(|(c, _)| c.tuned_through().is_empty())
        .map(|(_, dir)| dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(name: &str, sigma: f64, data: &str, tuned: &[&str]) -> (Card, PathBuf) {
        let json = serde_json::json!({
            "name": name,
            "arch": {"kind": "unet", "widths": [32], "convs": 2},
            "sigma": sigma,
            "data": data,
            "tuned_through": tuned,
        });
        let card: Card = serde_json::from_value(json).expect("a card");
        (card, PathBuf::from(name))
    }

    fn pick(cards: &[(Card, PathBuf)], data: &str, sigma: f64) -> Option<String> {
        best_in(cards.to_vec(), data, sigma).map(|p| p.display().to_string())
    }

    #[test]
    fn a_stab_denoiser_wins_at_its_sigma_and_only_there() {
        let cards = vec![
            card("a-mse-0.12", 0.12, "photo", &[]),
            card("a-mse-0.25", 0.25, "photo", &[]),
            card("b-stab-0.25", 0.25, "photo", &["lite1"]),
            card("c-mse-0.25", 0.25, "cifar10", &[]),
        ];
        // At 0.25 the tuned one, although an MSE one sorts first by name.
        assert_eq!(pick(&cards, "photo", 0.25).as_deref(), Some("b-stab-0.25"));
        assert_eq!(pick(&cards, "photo", 0.26).as_deref(), Some("b-stab-0.25"));
        // A tuned denoiser at a farther σ never beats a nearer MSE one.
        assert_eq!(pick(&cards, "photo", 0.12).as_deref(), Some("a-mse-0.12"));
        // The data kind is respected; nothing within 10% is nothing.
        assert_eq!(pick(&cards, "cifar10", 0.25).as_deref(), Some("c-mse-0.25"));
        assert_eq!(pick(&cards, "photo", 0.5), None);
        assert_eq!(pick(&cards, "photo", 0.18), None);
    }

    #[test]
    fn among_equals_the_name_order_decides() {
        let cards = vec![
            card("a-stab", 0.25, "photo", &["x"]),
            card("b-stab", 0.25, "photo", &["y"]),
        ];
        assert_eq!(pick(&cards, "photo", 0.25).as_deref(), Some("a-stab"));
    }

    #[test]
    fn cards_before_the_field_name_their_classifier_in_the_objective() {
        let json = serde_json::json!({
            "name": "old", "arch": {"kind": "unet", "widths": [32], "convs": 2},
            "sigma": 0.25, "data": "cifar10",
            "training": {"objective": {"classifier": "standin-cifar10"}},
        });
        let card: Card = serde_json::from_value(json).expect("a card");
        assert_eq!(card.tuned_through(), vec!["standin-cifar10".to_owned()]);
    }
}
