//! # robustify-redis
//!
//! What several replicas of the robustify proxy share through one Redis, so that behind a
//! load balancer they act as one client of each vendor and one keeper of each budget:
//!
//! - [`SharedRate`]: the vendor's request rate as a GCRA (generic cell rate algorithm) in a
//!   Lua script, timed by the Redis server's clock, so N replicas together send no more
//!   than the limit (not N times it).
//! - [`SharedLedger`]: reserve-then-settle in micro-dollars (or any unit), atomic in Lua:
//!   a reservation counts against the cap until it is settled, released, or its lease runs
//!   out — so a replica killed mid-request leaks nothing past its lease, and the live ones
//!   renew theirs ([`SharedLedger::renew`]).
//! - [`SharedAnswers`]: paid answers, so a draw one replica paid for is not paid again by
//!   another.
//!
//! ```no_run
//! # async fn demo() -> Result<(), robustify_redis::Error> {
//! use std::time::Duration;
//! let redis = robustify_redis::Redis::connect("redis://127.0.0.1:6379/", "robustify").await?;
//! let wallet = redis.ledger("wallet:team-a:total", Some(20_000_000), Duration::from_secs(60));
//! if let Some(hold) = wallet.reserve(33_000).await? {
//!     // … send the request, then bill what the vendor billed:
//!     wallet.settle(&hold, 30_000).await?;
//! }
//! # Ok(()) }
//! ```

mod answers;
mod gcra;
mod ledger;
pub mod server;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use answers::{ChargedAnswers, SharedAnswers};
pub use gcra::SharedRate;
pub use ledger::{Hold, SharedLedger};

/// What can go wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis refused, failed or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to the shared Redis (multiplexed: clone it freely), and the prefix every
/// key of this deployment starts with. It reconnects by itself after Redis restarts or the
/// connection breaks (the command that met the break fails; the next ones go through),
/// and no command waits longer than [`COMMAND_TIMEOUT`] for an answer.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
}

/// Longest wait for one command's answer, and for a (re)connection.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Redis {
    /// Connects to `url` (`redis://host:port/db`); every key gets `prefix:` first.
    pub async fn connect(url: &str, prefix: &str) -> Result<Redis> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Redis {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The shared rate limit `name` at `per_second` requests a second with `burst`.
    pub fn rate(&self, name: &str, per_second: f64, burst: u32) -> SharedRate {
        SharedRate::new(
            self.clone(),
            self.key(&format!("rate:{name}")),
            per_second,
            burst,
        )
    }

    /// The shared ledger `name` with at most `cap` units (none: unlimited), whose holds
    /// lapse `lease` after they were taken or last renewed.
    pub fn ledger(&self, name: &str, cap: Option<u64>, lease: std::time::Duration) -> SharedLedger {
        SharedLedger::new(
            self.clone(),
            self.key(&format!("ledger:{name}")),
            cap,
            lease,
        )
    }

    /// The answer store every replica shares.
    pub fn answers(&self) -> SharedAnswers {
        SharedAnswers::new(self.clone())
    }

    /// Answers `PING` (for a health check, and for tests waiting for a server).
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}
