//! [`Session`]: an open provider (with its traffic gate, budget and answer log), the label
//! rule and the denoiser — everything one run sends its draws through.

use std::sync::Arc;

use robustify_denoiser::{Denoised, Denoiser, registry};
use robustify_providers::traffic::TrafficSnapshot;
use robustify_providers::{
    Adapter, AnswerBackend, AnswerStore, BudgetLimits, DrawContext, HttpProvider, LabelRule,
    Ledger, Provider, ProviderClassifier, ProviderDef, QueryLog,
};
use robustify_smoothing::{BaseClassifier, Image};
use sha2::{Digest, Sha256};

use crate::config::{DenoiserChoice, SessionConfig};
use crate::{Error, Result};

/// Something a caller should tell the user about the session (where answers are logged,
/// what a resumed log held, a denoiser trained for other images).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// A warning rather than information.
    pub warning: bool,
    /// The text.
    pub text: String,
}

/// An open provider, ready to classify draws.
pub struct Session {
    /// The definition, with this run's overrides.
    pub def: ProviderDef,
    provider: Arc<dyn Provider>,
    http: Option<Arc<HttpProvider>>,
    /// The answer log, when one is written.
    pub log: Option<Arc<QueryLog>>,
    /// The answer store, for a paid provider.
    pub store: Option<Arc<AnswerStore>>,
    rule: LabelRule,
    denoiser: Option<Arc<Denoiser>>,
    notices: Vec<Notice>,
    /// The provider as answers are keyed ([`ProviderDef::answer_key`]).
    answer_key: String,
}

impl Session {
    /// Loads the definition, applies overrides, reads credentials (failing before any call
    /// when one is missing), loads the denoiser for `sigma`, and opens the log. Call inside
    /// a tokio runtime.
    pub fn open(config: &SessionConfig, sigma: f64) -> Result<Session> {
        config.validate()?;
        // σ first: a σ out of range is that, not a missing denoiser for it.
        robustify_smoothing::Sigma::new(sigma)?;
        let mut def = ProviderDef::load(&config.provider)?;
        if let Some(rate) = config.rate {
            def.limits.requests_per_second = rate;
            def.limits.burst = def.limits.burst.min((rate.ceil() as u32).max(1));
        }
        if let Some(c) = config.concurrency {
            def.limits.max_concurrency = c;
        }
        if let Some(t) = config.timeout_s {
            def.limits.timeout_s = t;
        }
        if let Some(r) = config.max_retries {
            def.limits.max_retries = r;
        }
        let (provider, http) =
            open_provider(&def, config.endpoint.as_deref(), config.budget.clone())?;
        let mut notices = Vec::new();
        let paid = !def.pricing.is_free();
        let store = match &config.store {
            Some(path) if paid => {
                let mut store = AnswerStore::open(path)?;
                let held = store.len()?;
                if config.fresh {
                    store = store.fresh();
                }
                notices.push(Notice {
                    warning: false,
                    text: format!(
                        "paid answers are kept in {} ({held} from earlier runs{})",
                        path.display(),
                        if config.fresh {
                            "; --fresh: none reused"
                        } else {
                            ", reused where the same draw is asked; --fresh pays again"
                        }
                    ),
                });
                Some(Arc::new(store))
            }
            _ => None,
        };
        let log_path = config.log.clone().or_else(|| config.resume.clone());
        let log = match log_path {
            Some(path) => {
                let log = Arc::new(QueryLog::open(&path, config.resume.as_deref())?);
                log.spawn_syncer();
                if let Some(from) = &config.resume {
                    notices.push(Notice {
                        warning: false,
                        text: format!("resuming from {}: {}", from.display(), log.load_report()),
                    });
                }
                Some(log)
            }
            None => None,
        };
        let mut rule = LabelRule {
            case_fold: config.case_fold,
            ..LabelRule::default()
        };
        if let Some(path) = &config.label_map {
            rule.map = LabelRule::read_map(path)?;
            if rule.case_fold {
                rule.map = rule
                    .map
                    .into_iter()
                    .map(|(k, v)| (k.to_lowercase(), v))
                    .collect();
            }
        }
        let denoiser = load_denoiser(&config.denoiser, &def.images, sigma)?;
        if let Some(d) = &denoiser {
            notices.extend(unfit(d, sigma, &def.images));
        }
        Ok(Session {
            answer_key: def.answer_key(config.endpoint.as_deref()),
            def,
            provider,
            http,
            log,
            store,
            rule,
            denoiser,
            notices,
        })
    }

    /// What the user should be told about this session, in order.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Whether the provider bills its answers.
    pub fn paid(&self) -> bool {
        !self.def.pricing.is_free()
    }

    /// The base classifier `f ∘ D` for the draws at `sigma` under `seed` of the image whose
    /// bytes hash to `image_sha256` ([`sha256_hex`]).
    pub fn classifier(
        &self,
        image_sha256: &str,
        sigma: f64,
        seed: u64,
    ) -> Denoised<ProviderClassifier> {
        let context = draw_context(
            image_sha256,
            &self.answer_key,
            self.denoiser_name(),
            sigma,
            seed,
        );
        compose(
            self.provider.clone(),
            self.rule.clone(),
            Answers {
                log: self.log.clone(),
                store: self.store.clone().map(|s| s as Arc<dyn AnswerBackend>),
                context,
                payer: String::new(),
            },
            None,
            self.denoiser.clone(),
        )
    }

    /// The provider's label for the clean image (no noise, no denoiser): one query, kept in
    /// the store under σ = 0 (so a rerun does not pay for it again), not in the log.
    pub async fn clean_label(&self, image_sha256: &str, image: &Image) -> Result<String> {
        let mut c = ProviderClassifier::new(self.provider.clone()).with_rule(self.rule.clone());
        if let Some(store) = &self.store {
            c = c.with_store(
                store.clone() as Arc<dyn AnswerBackend>,
                draw_context(image_sha256, &self.answer_key, "none", 0.0, 0),
            );
        }
        let labels = c
            .classify(0..1, std::slice::from_ref(image))
            .await
            .map_err(Error::Provider)?;
        labels.into_iter().next().ok_or_else(|| {
            Error::Config("the provider returned no answer for the clean image".into())
        })
    }

    /// The denoiser's name, `none` without one.
    pub fn denoiser_name(&self) -> &str {
        self.denoiser.as_ref().map_or("none", |d| d.name())
    }

    /// Images per classifier call that keep the provider busy.
    pub fn preferred_batch(&self) -> usize {
        self.provider.preferred_batch()
    }

    /// Dollars billed so far in this session.
    pub fn spent_usd(&self) -> f64 {
        self.http.as_ref().map_or(0.0, |h| h.ledger().spent_usd())
    }

    /// Traffic counters, for HTTP providers.
    pub fn traffic(&self) -> Option<TrafficSnapshot> {
        self.http.as_ref().map(|h| h.traffic().stats().snapshot())
    }

    /// Flushes the log to disk; says how much of a resumed log and of the store was
    /// reused.
    pub fn close(&self) -> Result<Vec<Notice>> {
        let mut out = Vec::new();
        if let Some(log) = &self.log {
            log.sync()?;
            if log.resumed() > 0 {
                out.push(Notice {
                    warning: false,
                    text: format!("resume: {}", log.reuse_report()),
                });
            }
        }
        if let Some(store) = &self.store {
            out.push(Notice {
                warning: false,
                text: format!(
                    "{}: {} answers reused (not paid again), {} new answers stored",
                    store.path().display(),
                    store.reused(),
                    store.stored()
                ),
            });
        }
        Ok(out)
    }
}

/// What keys a draw in the answer log: the image's SHA-256 (hex, [`sha256_hex`]),
/// provider, denoiser, σ, seed (and, in the proxy, the client that paid).
pub fn draw_context(
    image_sha256: &str,
    provider: &str,
    denoiser: &str,
    sigma: f64,
    seed: u64,
) -> DrawContext {
    DrawContext {
        image: image_sha256.to_owned(),
        provider: provider.to_owned(),
        denoiser: denoiser.to_owned(),
        sigma,
        seed,
        client: None,
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where a classifier's answers are kept and found again, and under which key.
pub struct Answers {
    /// The JSON Lines log (and the answers of a resumed one).
    pub log: Option<Arc<QueryLog>>,
    /// The answer store.
    pub store: Option<Arc<dyn AnswerBackend>>,
    /// The key of the draws, but the draw index.
    pub context: DrawContext,
    /// Who the store charges what the vendor bills (a proxy client; `""` from the
    /// command line).
    pub payer: String,
}

/// The base classifier `f ∘ D`: the provider under a label rule, its answers kept (and
/// reused) in `answers`, each unit reserved in `allowance` when given, behind `denoiser`.
/// The CLI and the proxy build theirs here.
pub fn compose(
    provider: Arc<dyn Provider>,
    rule: LabelRule,
    answers: Answers,
    allowance: Option<Arc<Ledger>>,
    denoiser: Option<Arc<Denoiser>>,
) -> Denoised<ProviderClassifier> {
    let mut c = ProviderClassifier::new(provider).with_rule(rule);
    if let Some(log) = answers.log {
        c = c.with_log(log, answers.context.clone());
    }
    if let Some(store) = answers.store {
        c = c
            .with_store(store, answers.context)
            .with_payer(answers.payer);
    }
    if let Some(a) = allowance {
        c = c.with_allowance(a);
    }
    Denoised::new(c, denoiser)
}

/// An opened provider, and its HTTP client (for the spend and traffic) where it has one.
pub type Opened = (Arc<dyn Provider>, Option<Arc<HttpProvider>>);

/// The provider `def` describes: a stand-in model in this process, or an HTTP client (with
/// its traffic gate and `budget`) reading its credentials from the environment. Call
/// inside a tokio runtime.
pub fn open_provider(
    def: &ProviderDef,
    endpoint: Option<&str>,
    budget: BudgetLimits,
) -> Result<Opened> {
    if def.adapter == Adapter::StandinLocal {
        return open_standin(def);
    }
    let http = Arc::new(HttpProvider::from_env(def, endpoint, budget)?);
    Ok((http.clone(), Some(http)))
}

#[cfg(feature = "standin")]
fn open_standin(def: &ProviderDef) -> Result<Opened> {
    use robustify_standin::cifar::CifarClassifier;
    use robustify_standin::imagenet::ImageNetClassifier;
    use robustify_standin::model::Classifier;
    use robustify_standin::provider::StandinLocal;
    let model: Arc<dyn Classifier> = match def.options.model.as_deref() {
        None | Some("imagenet") => Arc::new(ImageNetClassifier::load_default()?),
        Some("cifar10") => Arc::new(CifarClassifier::load_default()?),
        Some(other) => {
            return Err(Error::Config(format!(
                "provider {}: unknown stand-in model {other:?} (imagenet or cifar10)",
                def.name
            )));
        }
    };
    Ok((Arc::new(StandinLocal::new(model)), None))
}

#[cfg(not(feature = "standin"))]
fn open_standin(def: &ProviderDef) -> Result<Opened> {
    Err(Error::Config(format!(
        "provider {}: the in-process stand-in models are not built in (feature `standin`)",
        def.name
    )))
}

/// The denoiser `choice` names, or the shipped one for `kind` images at σ.
fn load_denoiser(choice: &DenoiserChoice, kind: &str, sigma: f64) -> Result<Option<Arc<Denoiser>>> {
    let dir = match choice {
        DenoiserChoice::None => return Ok(None),
        DenoiserChoice::Named(name) => registry::resolve(name)?,
        DenoiserChoice::Default => registry::best_for(kind, sigma)?.ok_or_else(|| {
            let shipped: Vec<String> = registry::list()
                .unwrap_or_default()
                .into_iter()
                .map(|(c, _)| format!("{} ({}, σ = {})", c.name, c.data, c.sigma))
                .collect();
            Error::Config(format!(
                "no shipped {kind} denoiser for σ = {sigma} (shipped: {}); pass --denoiser \
                 NAME|PATH, or --no-denoiser for plain randomized smoothing",
                if shipped.is_empty() {
                    "none".into()
                } else {
                    shipped.join(", ")
                }
            ))
        })?,
    };
    let denoiser = Denoiser::load(&dir).map_err(|e| Error::file(&dir, e))?;
    Ok(Some(Arc::new(denoiser)))
}

/// Warnings when `denoiser` was trained for another σ (more than 10% off) or another kind
/// of image than `kind` (`photo`, `cifar10`): it still runs, but certifies less.
pub fn unfit(denoiser: &Denoiser, sigma: f64, kind: &str) -> Vec<Notice> {
    let mut out = Vec::new();
    if (denoiser.sigma() - sigma).abs() > 0.1 * sigma {
        out.push(Notice {
            warning: true,
            text: format!(
                "denoiser {} was trained for σ = {}, not σ = {sigma}",
                denoiser.name(),
                denoiser.sigma()
            ),
        });
    }
    let trained = denoiser.card().data.as_str();
    if trained != kind {
        out.push(Notice {
            warning: true,
            text: format!(
                "denoiser {} was trained on {trained} images, these are {kind} images",
                denoiser.name()
            ),
        });
    }
    out
}
