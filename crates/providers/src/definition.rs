//! Provider definitions: one TOML file per provider, in `providers/` at the repository root.
//!
//! The built-in files are compiled into the binary, so a fresh install knows every vendor;
//! a user adds a provider by writing a file and passing its path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cost::Pricing;
use crate::{Error, Result};

/// Which wire format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Adapter {
    /// Azure AI Vision Image Analysis 4.0, `features=tags`.
    Azure,
    /// Azure Computer Vision v3.2 `/vision/v3.2/tag`.
    #[serde(rename = "azure-v3.2")]
    AzureV32,
    /// Google Cloud Vision `images:annotate`, `LABEL_DETECTION`.
    Google,
    /// AWS Rekognition `DetectLabels` with SigV4.
    Aws,
    /// Clarifai model outputs.
    Clarifai,
    /// Hugging Face inference, image classification.
    Huggingface,
    /// A JSON API described entirely by its definition.
    Generic,
    /// The stand-in model in-process (no HTTP).
    StandinLocal,
}

/// Client-side traffic limits and vendor-side size limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Sustained requests per second allowed by the vendor (per key or project).
    pub requests_per_second: f64,
    /// Requests that may go at once after an idle period.
    #[serde(default = "one")]
    pub burst: u32,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    /// Images the vendor accepts in one request.
    #[serde(default = "one")]
    pub images_per_request: u32,
    /// Largest encoded image the vendor accepts, in bytes.
    pub max_image_bytes: u64,
    /// Largest request the vendor accepts, in bytes, where it limits the whole request
    /// (Google: 10 MB of JSON, base64 images included): requests carry fewer images to
    /// stay under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    /// Largest `width × height` the vendor accepts, if it states one.
    #[serde(default)]
    pub max_pixels: Option<u64>,
    /// Seconds before a request without an answer is abandoned (and retried).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Retries of one request after throttling or a transient error.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Seconds one request may take with all its retries and waits [default: 4 ×
    /// `timeout_s`, at least 60].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_s: Option<f64>,
    /// Largest response body read from the vendor, in bytes: a longer one (or one whose
    /// declared length is longer) is cut off and counts as a billed failure.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Labels kept per answer (the vendor's first ones); the rest are dropped with a
    /// warning. Labels are also cut to [`MAX_LABEL_CHARS`] characters.
    #[serde(default = "default_max_answer_labels")]
    pub max_answer_labels: u32,
    /// Where the figures come from, and when they were read.
    pub source: String,
    /// False when the figures could not be checked against the vendor's page.
    #[serde(default)]
    pub verified: bool,
}

fn one() -> u32 {
    1
}

fn default_timeout() -> f64 {
    30.0
}

fn default_retries() -> u32 {
    8
}

fn default_max_labels() -> u32 {
    10
}

fn default_max_response_bytes() -> u64 {
    4 << 20
}

fn default_max_answer_labels() -> u32 {
    100
}

/// Characters kept of one label; a longer label is cut (and the cut said in a warning).
pub const MAX_LABEL_CHARS: usize = 200;

/// Adapter settings beyond the endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Labels asked for per image, where the vendor takes a number.
    #[serde(default = "default_max_labels")]
    pub max_labels: u32,
    /// AWS region to sign for; by default the one in the endpoint's host name, else
    /// `AWS_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Clarifai: the model path below `/v2/` (e.g.
    /// `users/clarifai/apps/main/models/general-image-recognition`); Hugging Face: the
    /// model id (`google/vit-base-patch16-224`), used when the endpoint has no path;
    /// `standin-local`: `imagenet` (default) or `cifar10`.
    #[serde(default)]
    pub model: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_labels: default_max_labels(),
            region: None,
            model: None,
        }
    }
}

/// A JSON API described entirely by its definition (`adapter = "generic"`).
///
/// Templates substitute `{endpoint}`, `{image_base64}` (body only) and `{key}` (auth only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSpec {
    /// URL template, e.g. `{endpoint}/v1/classify`.
    pub url: String,
    /// Header carrying the credential, e.g. `Authorization`; none when absent.
    #[serde(default)]
    pub auth_header: Option<String>,
    /// The header's value, e.g. `Bearer {key}` (`{key}` is the first `auth_env` variable).
    #[serde(default = "default_auth_format")]
    pub auth_format: String,
    /// JSON body template with `{image_base64}` inside a string; the raw PNG bytes are sent
    /// as the body when absent.
    #[serde(default)]
    pub body: Option<String>,
    /// JSON pointer (RFC 6901) to the list of labels in the response, `""` for the root.
    pub labels_pointer: String,
    /// JSON pointer to the label text inside one list element.
    pub label_pointer: String,
    /// JSON pointer to the score inside one list element; scores are 0 when absent.
    #[serde(default)]
    pub score_pointer: Option<String>,
}

fn default_auth_format() -> String {
    "{key}".into()
}

fn default_concurrency() -> u32 {
    8
}

impl Limits {
    /// Requests needed to send `draws` images of one image's step, batched as the vendor
    /// allows.
    pub fn requests_for(&self, draws: u64) -> u64 {
        draws.div_ceil(u64::from(self.images_per_request))
    }

    /// The least time `requests` requests take at the sustained rate.
    pub fn min_seconds(&self, requests: u64) -> f64 {
        requests as f64 / self.requests_per_second
    }

    /// Seconds for `requests` requests: at the sustained rate, or, when slower, the
    /// concurrency at `latency_ms` a request.
    pub fn seconds_for_requests(&self, latency_ms: f64, requests: f64) -> f64 {
        let by_rate = requests / self.requests_per_second;
        let by_latency = requests * latency_ms / 1000.0 / f64::from(self.max_concurrency.max(1));
        by_rate.max(by_latency)
    }

    /// Seconds for `queries` images sent `images_per_request` to a request (an estimate
    /// for a mean number of draws; [`Limits::seconds_for_requests`] when the requests are
    /// counted).
    pub fn seconds_for(&self, latency_ms: f64, queries: f64) -> f64 {
        let requests = (queries / f64::from(self.images_per_request.max(1))).ceil();
        self.seconds_for_requests(latency_ms, requests)
    }
}

/// One provider, as its definition file describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    /// Short name users type (`--provider NAME`).
    pub name: String,
    /// One line for listings.
    pub description: String,
    /// Wire format.
    pub adapter: Adapter,
    /// Base URL; `--endpoint` overrides it.
    pub endpoint: String,
    /// Environment variables holding the credentials, in the order the adapter reads them.
    #[serde(default)]
    pub auth_env: Vec<String>,
    /// What the provider's model expects: `photo` (natural photos, the default) or
    /// `cifar10` (32×32); picks the default denoiser.
    #[serde(default = "default_images")]
    pub images: String,
    /// Rate and size limits.
    pub limits: Limits,
    /// Prices.
    pub pricing: Pricing,
    /// Adapter settings.
    #[serde(default)]
    pub options: Options,
    /// The request and response shapes of a `generic` provider.
    #[serde(default)]
    pub generic: Option<GenericSpec>,
}

const BUILTIN: &[(&str, &str)] = &[
    ("aws", include_str!("../../../providers/aws.toml")),
    ("azure", include_str!("../../../providers/azure.toml")),
    ("clarifai", include_str!("../../../providers/clarifai.toml")),
    ("google", include_str!("../../../providers/google.toml")),
    (
        "huggingface",
        include_str!("../../../providers/huggingface.toml"),
    ),
    ("standin", include_str!("../../../providers/standin.toml")),
    (
        "standin-cifar10",
        include_str!("../../../providers/standin-cifar10.toml"),
    ),
    (
        "standin-cifar10-local",
        include_str!("../../../providers/standin-cifar10-local.toml"),
    ),
    (
        "standin-local",
        include_str!("../../../providers/standin-local.toml"),
    ),
];

fn default_images() -> String {
    "photo".into()
}

impl ProviderDef {
    /// Parses and checks a definition; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<ProviderDef> {
        let err = |message: String| Error::Definition {
            path: origin.to_path_buf(),
            message,
        };
        let def: ProviderDef = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        def.pricing.validate().map_err(err)?;
        let l = &def.limits;
        if !(l.requests_per_second.is_finite() && l.requests_per_second > 0.0) {
            return Err(err("limits.requests_per_second must be > 0".into()));
        }
        if l.images_per_request == 0 || l.max_concurrency == 0 || l.burst == 0 {
            return Err(err(
                "limits.images_per_request, max_concurrency and burst must be ≥ 1".into(),
            ));
        }
        if !(l.timeout_s.is_finite() && l.timeout_s > 0.0) {
            return Err(err("limits.timeout_s must be > 0".into()));
        }
        if let Some(m) = l.max_request_s
            && !(m.is_finite() && m > 0.0)
        {
            return Err(err("limits.max_request_s must be > 0".into()));
        }
        if l.max_response_bytes == 0 || l.max_answer_labels == 0 {
            return Err(err(
                "limits.max_response_bytes and max_answer_labels must be ≥ 1".into(),
            ));
        }
        if def.adapter == Adapter::Generic {
            let Some(g) = &def.generic else {
                return Err(err("adapter \"generic\" needs a [generic] table".into()));
            };
            if g.auth_header.is_some() && def.auth_env.is_empty() {
                return Err(err("generic.auth_header needs an auth_env variable".into()));
            }
            if let Some(body) = &g.body
                && !body.contains("{image_base64}")
            {
                return Err(err("generic.body must contain {image_base64}".into()));
            }
        }
        Ok(def)
    }

    /// A built-in provider by name, or a definition file by path (anything containing a
    /// path separator or ending in `.toml`).
    pub fn load(name_or_path: &str) -> Result<ProviderDef> {
        let looks_like_path = name_or_path.ends_with(".toml")
            || name_or_path.contains(std::path::MAIN_SEPARATOR)
            || name_or_path.contains('/');
        if looks_like_path {
            let path = PathBuf::from(name_or_path);
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            return ProviderDef::from_toml(&text, &path);
        }
        // Names are case-insensitive: `Google` and `AWS` are what people type.
        let asked = name_or_path.trim().to_ascii_lowercase();
        match BUILTIN.iter().find(|(name, _)| *name == asked) {
            Some((name, text)) => {
                ProviderDef::from_toml(text, Path::new(&format!("builtin:{name}")))
            }
            None => {
                let names = ProviderDef::builtin_names();
                let near = names
                    .iter()
                    .map(|n| (edit_distance(&asked, n), *n))
                    .filter(|(d, n)| *d <= 2.max(n.len() / 3) || n.starts_with(&asked))
                    .min();
                Err(Error::UnknownProvider {
                    name: name_or_path.to_owned(),
                    known: match near {
                        Some((_, n)) => format!("{} (did you mean {n:?}?)", names.join(", ")),
                        None => names.join(", "),
                    },
                })
            }
        }
    }

    /// Names of the built-in providers (lower case).
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(name, _)| *name).collect()
    }

    /// The provider as the answer store and the query log key it: its name, then
    /// `@ENDPOINT` when the endpoint is not the built-in definition's of that name, and
    /// `#MODEL` when the model is not (a custom definition always names its endpoint).
    /// Answers from one endpoint or model are never reused for another.
    ///
    /// ```
    /// # use robustify_providers::ProviderDef;
    /// let google = ProviderDef::load("google")?;
    /// assert_eq!(google.answer_key(None), "google");
    /// assert_eq!(google.answer_key(Some("https://vision.googleapis.com/")), "google");
    /// assert_eq!(
    ///     google.answer_key(Some("http://127.0.0.1:8731")),
    ///     "google@http://127.0.0.1:8731"
    /// );
    /// # Ok::<(), robustify_providers::Error>(())
    /// ```
    pub fn answer_key(&self, endpoint: Option<&str>) -> String {
        let endpoint = endpoint.unwrap_or(&self.endpoint).trim_end_matches('/');
        let builtin = BUILTIN
            .iter()
            .any(|(name, _)| *name == self.name)
            .then(|| ProviderDef::load(&self.name).ok())
            .flatten();
        let mut key = self.name.clone();
        let default_endpoint = builtin
            .as_ref()
            .is_some_and(|b| b.endpoint.trim_end_matches('/') == endpoint);
        if !default_endpoint && self.adapter != Adapter::StandinLocal {
            key.push('@');
            key.push_str(endpoint);
        }
        let default_model = builtin.as_ref().map_or(self.options.model.is_none(), |b| {
            b.options.model == self.options.model
        });
        if !default_model && let Some(m) = &self.options.model {
            key.push('#');
            key.push_str(m);
        }
        key
    }

    /// All built-in definitions.
    pub fn builtins() -> Result<Vec<ProviderDef>> {
        ProviderDef::builtin_names()
            .into_iter()
            .map(ProviderDef::load)
            .collect()
    }
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_typos_get_a_suggestion() {
        assert_eq!(ProviderDef::load("Google").unwrap().name, "google");
        assert_eq!(ProviderDef::load("AWS").unwrap().name, "aws");
        let err = ProviderDef::load("gogle").unwrap_err().to_string();
        assert!(err.contains("did you mean \"google\""), "{err}");
        let err = ProviderDef::load("hugging").unwrap_err().to_string();
        assert!(err.contains("did you mean \"huggingface\""), "{err}");
        let err = ProviderDef::load("zzzzzzzz").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn every_builtin_definition_parses() {
        let defs = ProviderDef::builtins().unwrap();
        assert_eq!(defs.len(), 9);
        for def in &defs {
            assert!(ProviderDef::builtin_names().contains(&def.name.as_str()));
        }
        let google = ProviderDef::load("google").unwrap();
        assert_eq!(google.limits.images_per_request, 16);
        assert_eq!(google.pricing.free_units_per_month, 1000);
        assert!((google.pricing.cost_usd(12_000, false) - 18.0).abs() < 1e-9);
        let clarifai = ProviderDef::load("clarifai").unwrap();
        assert_eq!(clarifai.limits.images_per_request, 128);
        assert_eq!(clarifai.limits.requests_per_second, 15.0);
    }

    #[test]
    fn bad_definitions_name_their_file() {
        let err = ProviderDef::load("nonesuch").unwrap_err().to_string();
        assert!(err.contains("nonesuch") && err.contains("google"), "{err}");
        let err = ProviderDef::from_toml("name = 3", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("provider definition x.toml"), "{err}");
        let err = ProviderDef::load("/no/such/file.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/file.toml"), "{err}");
    }
}
