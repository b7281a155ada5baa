//! Paid answers shared by every replica: one hash per draw context (image, provider,
//! denoiser, σ, seed, client), one field per draw, the labels as JSON. A draw already
//! stored keeps its first answer (`HSETNX`); writes are acknowledged by the server before
//! the certificate counts them (durability is Redis's: run it with `appendonly yes` and
//! `appendfsync always` for the guarantee the SQLite store gives on one machine).

use std::ops::Range;

use robustify_providers::store::BoxFuture;
use robustify_providers::{Answer, AnswerBackend, Charge, DrawContext, LogEntry};

use crate::Redis;

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
            let votes: Vec<&LogEntry> = entries.iter().filter(|e| e.is_vote()).collect();
            if votes.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for e in votes {
                let labels = serde_json::to_string(&e.labels).map_err(store_err)?;
                pipe.cmd("HSETNX")
                    .arg(self.key(&e.context))
                    .arg(e.draw)
                    .arg(labels)
                    .ignore();
            }
            let mut conn = self.redis.conn.clone();
            pipe.query_async::<()>(&mut conn).await.map_err(store_err)
        })
    }
}
