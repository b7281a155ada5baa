//! The vendor's rate limit shared by every replica: GCRA in one Lua script, timed by the
//! Redis server's clock (replicas' clocks may disagree; the server's is the only one).

use std::time::Duration;

use redis::Script;

use crate::{Redis, Result};

/// GCRA: a request is admitted when the theoretical arrival time (TAT) is within the
/// burst tolerance of now; admitting moves the TAT one period on. Returns 0 (admitted) or
/// the microseconds to wait. Times in microseconds of the server's `TIME`.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local tolerance = period * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return math.ceil(allow_at - now)
end
redis.call('SET', KEYS[1], string.format('%d', tat + period), 'PX', math.ceil((tolerance + period) / 1000) + 1000)
return 0
";

/// A request rate shared through Redis.
#[derive(Clone)]
pub struct SharedRate {
    redis: Redis,
    key: String,
    period_us: u64,
    burst: u32,
    script: Script,
}

impl SharedRate {
    pub(crate) fn new(redis: Redis, key: String, per_second: f64, burst: u32) -> SharedRate {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1e-6
        };
        SharedRate {
            redis,
            key,
            period_us: (1e6 / per_second).ceil().max(1.0) as u64,
            burst: burst.max(1),
            script: Script::new(SCRIPT),
        }
    }

    /// Takes a turn if one is free: `Duration::ZERO` when admitted, else how long to wait
    /// before asking again.
    pub async fn try_acquire(&self) -> Result<Duration> {
        let mut conn = self.redis.conn.clone();
        let wait_us: u64 = self
            .script
            .key(&self.key)
            .arg(self.period_us)
            .arg(self.burst)
            .invoke_async(&mut conn)
            .await?;
        Ok(Duration::from_micros(wait_us))
    }

    /// Waits for a turn.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            let wait = self.try_acquire().await?;
            if wait.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(wait).await;
        }
    }
}

impl robustify_providers::traffic::SharedGate for SharedRate {
    fn try_acquire(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<Duration, String>> + Send + '_>,
    > {
        Box::pin(async move {
            SharedRate::try_acquire(self)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
