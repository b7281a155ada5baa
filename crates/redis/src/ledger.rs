//! Reserve-then-settle shared by every replica: the holds of a request count against the
//! cap until settled, released, or lapsed (a replica that died leaks nothing past its
//! lease).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Script;

use crate::{Redis, Result};

/// RESERVE and HELD start here: the server's time in ms as `now`, lapsed holds dropped,
/// the units still held as `held`. KEYS[1]: spent (a counter); KEYS[2]: hash id → units;
/// KEYS[3]: zset id → lapse time.
macro_rules! held_now {
    () => {
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, id in ipairs(lapsed) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
local held = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do held = held + tonumber(v) end
"
    };
}

/// Holds ARGV[1] units under id ARGV[4] until now + ARGV[3] ms if spent + held + amount ≤
/// cap (ARGV[2], negative: none). Returns {1, 0} or {0, left}.
const RESERVE: &str = concat!(
    held_now!(),
    r"local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
if cap >= 0 and spent + held + amount > cap then
  local left = cap - spent - held
  if left < 0 then left = 0 end
  return {0, left}
end
redis.call('HSET', KEYS[2], ARGV[4], amount)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[4])
return {1, 0}
"
);

/// Bills min(ARGV[2], the hold) for hold ARGV[1] and drops it; a hold that lapsed bills
/// ARGV[2] all the same (the vendor billed it). Returns what was billed.
const SETTLE: &str = r"
local amount = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or ARGV[2])
local used = tonumber(ARGV[2])
if used > amount then used = amount end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if used > 0 then redis.call('INCRBY', KEYS[1], used) end
return used
";

/// Bills ARGV[2] units of hold ARGV[1] now (a vendor response arrived): the hold shrinks by
/// as much, so spent + held stays put and a replica that dies later has billed what it was
/// billed; at most what is left of the hold, or all of it when the hold lapsed (the vendor
/// billed it). Returns what was billed.
const DRAW: &str = r"
local left = redis.call('HGET', KEYS[2], ARGV[1])
local used = tonumber(ARGV[2])
if left then
  left = tonumber(left)
  if used > left then used = left end
  redis.call('HSET', KEYS[2], ARGV[1], left - used)
end
if used > 0 then redis.call('INCRBY', KEYS[1], used) end
return used
";

/// Moves the lapse time of hold ARGV[1] to now + ARGV[2] ms, if it still exists.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
";

/// Drops lapsed holds and returns the units still held.
const HELD: &str = concat!(held_now!(), "return held\n");

/// The scripts, each hashed once (`EVALSHA` by that hash, loaded on first use).
static SCRIPTS: std::sync::LazyLock<[Script; 4]> = std::sync::LazyLock::new(|| {
    [
        Script::new(RESERVE),
        Script::new(SETTLE),
        Script::new(RENEW),
        Script::new(HELD),
    ]
});

/// A ledger in Redis.
#[derive(Clone)]
pub struct SharedLedger {
    redis: Redis,
    keys: [String; 3],
    cap: Option<u64>,
    lease: Duration,
}

/// One hold: settle or release it (an abandoned hold lapses with its lease).
#[derive(Clone, Debug)]
pub struct Hold {
    id: String,
    /// Units held.
    pub units: u64,
}

/// Distinct hold ids within a process; with the process id and the time, across replicas.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl SharedLedger {
    pub(crate) fn new(
        redis: Redis,
        key: String,
        cap: Option<u64>,
        lease: Duration,
    ) -> SharedLedger {
        SharedLedger {
            redis,
            keys: [
                format!("{key}:spent"),
                format!("{key}:holds"),
                format!("{key}:lapse"),
            ],
            cap,
            lease,
        }
    }

    fn invoke<'a>(&'a self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        inv
    }

    /// Holds `units`, or `None` when they do not fit beside what is spent and held.
    pub async fn reserve(&self, units: u64) -> Result<Option<Hold>> {
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let script = &SCRIPTS[0];
        let mut conn = self.redis.conn.clone();
        let cap = self
            .cap
            .map_or(-1, |c| i64::try_from(c).unwrap_or(i64::MAX));
        let (ok, _left): (i64, i64) = self
            .invoke(script)
            .arg(units)
            .arg(cap)
            .arg(self.lease.as_millis() as u64)
            .arg(&id)
            .invoke_async(&mut conn)
            .await?;
        Ok((ok == 1).then_some(Hold { id, units }))
    }

    /// Bills `used` units (at most the hold) and drops the hold; returns what was billed.
    pub async fn settle(&self, hold: &Hold, used: u64) -> Result<u64> {
        let script = &SCRIPTS[1];
        let mut conn = self.redis.conn.clone();
        Ok(self
            .invoke(script)
            .arg(&hold.id)
            .arg(used.min(hold.units))
            .invoke_async(&mut conn)
            .await?)
    }

    /// Adds to `pipe` the billing of `units` of `hold` now, the hold shrinking by as much
    /// (the script's text, not its hash: a transaction cannot load a missing script).
    pub(crate) fn draw_in(&self, pipe: &mut redis::Pipeline, hold: &Hold, units: u64) {
        pipe.cmd("EVAL").arg(DRAW).arg(self.keys.len());
        for k in &self.keys {
            pipe.arg(k);
        }
        pipe.arg(&hold.id).arg(units).ignore();
    }

    /// Drops the hold without billing.
    pub async fn release(&self, hold: &Hold) -> Result<()> {
        self.settle(hold, 0).await.map(drop)
    }

    /// Keeps a hold alive for another lease (a request still running).
    pub async fn renew(&self, hold: &Hold) -> Result<bool> {
        let script = &SCRIPTS[2];
        let mut conn = self.redis.conn.clone();
        let alive: i64 = self
            .invoke(script)
            .arg(&hold.id)
            .arg(self.lease.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(alive == 1)
    }

    /// Units billed so far.
    pub async fn spent(&self) -> Result<u64> {
        let mut conn = self.redis.conn.clone();
        let spent: Option<u64> = redis::cmd("GET")
            .arg(&self.keys[0])
            .query_async(&mut conn)
            .await?;
        Ok(spent.unwrap_or(0))
    }

    /// Units held now (lapsed holds dropped first).
    pub async fn held(&self) -> Result<u64> {
        let script = &SCRIPTS[3];
        let mut conn = self.redis.conn.clone();
        Ok(self.invoke(script).invoke_async(&mut conn).await?)
    }

    /// The cap.
    pub fn cap(&self) -> Option<u64> {
        self.cap
    }
}
