//! Paid answers shared by every replica: one hash per draw context (image, provider,
//! denoiser, σ, seed, client), one field per draw, the labels as JSON. A draw already
//! stored keeps its first answer (`HSETNX`); writes are acknowledged by the server before
//! the certificate counts them (durability is Redis's: run it with `appendonly yes` and
//! `appendfsync always` for the guarantee the SQLite store gives on one machine).

use std::ops::Range;

use std::sync::atomic::{AtomicU64, Ordering};

use robustify_providers::budget::micro_usd_up;
use robustify_providers::store::BoxFuture;
use robustify_providers::{Answer, AnswerBackend, Charge, DrawContext, LogEntry};

use crate::{Hold, Redis, SharedLedger};

/// The answer store in Redis.
#[derive(Clone)]
pub struct SharedAnswers {
    redis: Redis,
}

impl SharedAnswers {
    pub(crate) fn new(redis: Redis) -> SharedAnswers {
        SharedAnswers { redis }
    }

    fn key(&self, c: &DrawContext) -> String {
        self.redis.key(&format!(
            "answers:{}:{}:{}:{}:{}:{}",
            c.image,
            c.provider,
            c.denoiser,
            c.sigma.to_bits(),
            c.seed,
            c.client.as_deref().unwrap_or("")
        ))
    }
}

fn store_err(e: impl std::fmt::Display) -> robustify_providers::Error {
    robustify_providers::Error::Store {
        path: "redis".into(),
        message: e.to_string(),
    }
}

impl AnswerBackend for SharedAnswers {
    fn lookup<'a>(
        &'a self,
        context: &'a DrawContext,
        draws: Range<u64>,
    ) -> BoxFuture<'a, robustify_providers::Result<Vec<Option<Answer>>>> {
        Box::pin(async move {
            let mut conn = self.redis.conn.clone();
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(self.key(context));
            for d in draws.clone() {
                cmd.arg(d);
            }
            let found: Vec<Option<String>> = cmd.query_async(&mut conn).await.map_err(store_err)?;
            found
                .into_iter()
                .map(|v| {
                    v.map(|text| {
                        serde_json::from_str(&text)
                            .map(|labels| Answer { labels })
                            .map_err(store_err)
                    })
                    .transpose()
                })
                .collect()
        })
    }

    fn insert<'a>(
        &'a self,
        entries: &'a [LogEntry],
        _charge: Option<&'a Charge>,
    ) -> BoxFuture<'a, robustify_providers::Result<()>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            if self.votes_in(&mut pipe, entries)? == 0 {
                return Ok(());
            }
            let mut conn = self.redis.conn.clone();
            pipe.query_async::<()>(&mut conn).await.map_err(store_err)
        })
    }
}

impl SharedAnswers {
    /// Adds to the transaction `pipe` the votes among `entries` (a stored draw keeps its
    /// first answer); returns how many.
    fn votes_in(
        &self,
        pipe: &mut redis::Pipeline,
        entries: &[LogEntry],
    ) -> robustify_providers::Result<usize> {
        pipe.atomic();
        let mut votes = 0;
        for e in entries.iter().filter(|e| e.is_vote()) {
            let labels = serde_json::to_string(&e.labels).map_err(store_err)?;
            pipe.cmd("HSETNX")
                .arg(self.key(&e.context))
                .arg(e.draw)
                .arg(labels)
                .ignore();
            votes += 1;
        }
        Ok(votes)
    }

    /// This store for one request that holds `holds`: each vendor response's answers and
    /// its cost are written in one transaction, the cost billed from every hold as it
    /// arrives — so a replica killed mid-request has billed every response it stored (its
    /// holds lapse; what it was billed stays billed), as the SQLite store's charges do.
    pub fn charging(&self, holds: Vec<(SharedLedger, Hold)>) -> ChargedAnswers {
        ChargedAnswers {
            answers: self.clone(),
            holds,
            drawn: AtomicU64::new(0),
        }
    }
}

/// The shared answers of one request, billing its holds per response
/// ([`SharedAnswers::charging`]).
pub struct ChargedAnswers {
    answers: SharedAnswers,
    holds: Vec<(SharedLedger, Hold)>,
    drawn: AtomicU64,
}

impl ChargedAnswers {
    /// Units billed from each hold so far (micro-dollars, rounded up per response).
    pub fn drawn(&self) -> u64 {
        self.drawn.load(Ordering::SeqCst)
    }
}

impl AnswerBackend for ChargedAnswers {
    fn lookup<'a>(
        &'a self,
        context: &'a DrawContext,
        draws: Range<u64>,
    ) -> BoxFuture<'a, robustify_providers::Result<Vec<Option<Answer>>>> {
        self.answers.lookup(context, draws)
    }

    fn insert<'a>(
        &'a self,
        entries: &'a [LogEntry],
        charge: Option<&'a Charge>,
    ) -> BoxFuture<'a, robustify_providers::Result<()>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            let votes = self.answers.votes_in(&mut pipe, entries)?;
            let units = charge.map_or(0, |c| micro_usd_up(c.usd));
            if units > 0 {
                for (ledger, hold) in &self.holds {
                    ledger.draw_in(&mut pipe, hold, units);
                }
            }
            if votes == 0 && units == 0 {
                return Ok(());
            }
            let mut conn = self.answers.redis.conn.clone();
            pipe.query_async::<()>(&mut conn).await.map_err(store_err)?;
            self.drawn.fetch_add(units, Ordering::SeqCst);
            Ok(())
        })
    }
}
