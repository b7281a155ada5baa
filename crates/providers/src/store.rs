//! The answer store: every paid answer kept in SQLite (WAL, synchronous FULL), keyed as the
//! query log keys it — image SHA-256, provider, denoiser, σ, seed, client, draw — and reused
//! whenever the same draw is asked again, by this run or any later one. New draws come from
//! a new seed; a run that wants to pay again opens no store (`--fresh`).
//!
//! Durability: an answer is committed (one transaction per vendor response, fsync'd) before
//! the certificate that counts it is computed, so a process killed at any line loses at
//! most the answers of the requests in flight — paid for, but never counted either.
//! JSON Lines stay the export format ([`AnswerStore::export`]), which `replay` reads.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};

use crate::provider::{Answer, ScoredLabel};
use crate::querylog::{DrawContext, LogEntry};
use crate::{Error, Result};

/// The schema, created when missing. `sigma` is kept as the bits of the `f64` so that a key
/// matches exactly what was asked; `client` is `''` from the command line.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS answers (
    image      TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    denoiser   TEXT    NOT NULL,
    sigma_bits INTEGER NOT NULL,
    seed       INTEGER NOT NULL,
    client     TEXT    NOT NULL,
    draw       INTEGER NOT NULL,
    labels     TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    latency_ms REAL    NOT NULL,
    cost_usd   REAL    NOT NULL,
    attempts   INTEGER NOT NULL,
    unix_ms    INTEGER NOT NULL,
    PRIMARY KEY (image, provider, denoiser, sigma_bits, seed, client, draw)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS charges (
    unix_ms   INTEGER NOT NULL,
    payer     TEXT    NOT NULL,
    provider  TEXT    NOT NULL,
    micro_usd INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_by_payer ON charges (payer, unix_ms);
";

/// What one vendor response cost, and who pays for it: kept with its answers in one
/// transaction, so a client's spend is rebuilt after a restart from the answers it paid.
#[derive(Clone, Debug, PartialEq)]
pub struct Charge {
    /// The proxy client (`""` from the command line).
    pub payer: String,
    /// The provider.
    pub provider: String,
    /// Dollars billed: the answers received and the requests billed without one.
    pub usd: f64,
    /// When, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// Where paid answers are kept and found again: the SQLite [`AnswerStore`] on one machine,
/// or a store shared by replicas (Redis, in `robustify-redis`).
pub trait AnswerBackend: Send + Sync {
    /// The stored answers to draws `draws` of `context`, in order (`None`: not stored).
    fn lookup<'a>(
        &'a self,
        context: &'a DrawContext,
        draws: Range<u64>,
    ) -> BoxFuture<'a, Result<Vec<Option<Answer>>>>;
    /// Keeps `entries` (votes only; a stored draw keeps its first answer) and what they
    /// cost, durably, before returning.
    fn insert<'a>(
        &'a self,
        entries: &'a [LogEntry],
        charge: Option<&'a Charge>,
    ) -> BoxFuture<'a, Result<()>>;
    /// Whether new paid work may start: an error while paid answers wait to be written
    /// (the store is locked or failing), so that nothing more is bought that could not be
    /// kept.
    fn ready(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Runs blocking SQLite work without stalling the async workers: on a multi-threaded
/// runtime the worker hands its other tasks away first (a locked file can hold a call for
/// the whole busy timeout); elsewhere it runs as is.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A boxed future (the backends' methods are async and object-safe).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl AnswerBackend for AnswerStore {
    fn lookup<'a>(
        &'a self,
        context: &'a DrawContext,
        draws: Range<u64>,
    ) -> BoxFuture<'a, Result<Vec<Option<Answer>>>> {
        Box::pin(async move { blocking(|| AnswerStore::lookup(self, context, draws)) })
    }

    fn insert<'a>(
        &'a self,
        entries: &'a [LogEntry],
        charge: Option<&'a Charge>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { blocking(|| AnswerStore::insert(self, entries, charge)) })
    }

    fn ready(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { blocking(|| self.flush()) })
    }
}

/// Paid answers in a SQLite file, shared by every classifier of a process (and by
/// processes: SQLite locks the file; a writer waits up to 10 s for another).
pub struct AnswerStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// `--fresh`: nothing is reused, and new answers replace stored ones.
    fresh: bool,
    /// Answers this process found stored, and stored anew.
    reused: AtomicU64,
    stored: AtomicU64,
    /// Paid answers (and their charges) that could not be written yet (a locked or failing
    /// file), in arrival order: written first by the next write that succeeds.
    pending: Mutex<Vec<(Vec<LogEntry>, Option<Charge>)>>,
}

/// The answers waiting in memory, as [`AnswerStore::write`] takes them.
fn borrowed(pending: &[(Vec<LogEntry>, Option<Charge>)]) -> Vec<(&[LogEntry], Option<&Charge>)> {
    pending
        .iter()
        .map(|(e, c)| (e.as_slice(), c.as_ref()))
        .collect()
}

impl Drop for AnswerStore {
    /// A last try at the answers waiting in memory; what still cannot be written is said.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!("{e}: they are lost with this process (the vendor billed them)");
        }
    }
}

/// `i64` columns hold `u64` values by their bits (SQLite integers are signed).
fn bits(v: u64) -> i64 {
    v as i64
}

impl AnswerStore {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<AnswerStore> {
        let err = |e: rusqlite::Error| Error::Store {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Store {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        // WAL: readers never block the writer; FULL: a commit is on disk when it returns.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(AnswerStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            fresh: false,
            reused: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Waits at most `timeout` for another process's lock before a write fails (default
    /// 10 s; the write is then kept in memory and retried, see [`AnswerStore::insert`]).
    pub fn with_busy_timeout(self, timeout: std::time::Duration) -> Result<AnswerStore> {
        self.conn().busy_timeout(timeout).map_err(|e| self.err(e))?;
        Ok(self)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<(Vec<LogEntry>, Option<Charge>)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Paid answers waiting in memory for the file to be writable.
    pub fn waiting(&self) -> usize {
        self.pending().iter().map(|(e, _)| e.len()).sum()
    }

    /// Writes the answers waiting in memory, if any: an error (and no new paid work, see
    /// [`AnswerBackend::ready`]) while the file still cannot be written.
    pub fn flush(&self) -> Result<()> {
        let mut pending = self.pending();
        if pending.is_empty() {
            return Ok(());
        }
        match self.write(&borrowed(&pending)) {
            Ok(()) => {
                tracing::warn!(
                    "{}: {} paid answers kept in memory while it could not be written are \
                     now stored",
                    self.path.display(),
                    pending.iter().map(|(e, _)| e.len()).sum::<usize>()
                );
                pending.clear();
                Ok(())
            }
            Err(e) => Err(self.err(format!(
                "cannot be written ({e}); {} paid answers wait in memory, and no new paid \
                 work starts until they are stored",
                pending.iter().map(|(e, _)| e.len()).sum::<usize>()
            ))),
        }
    }

    /// This store for a run that pays again: lookups find nothing, and every answer it
    /// receives replaces the stored one (the store keeps the newest).
    pub fn fresh(mut self) -> AnswerStore {
        self.fresh = true;
        self
    }

    /// Answers this process found stored (and did not pay for again).
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Answers this process stored.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (it has its own
        // transactions); keep going.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored answers to draws `draws` of `context`, in order (`None`: not stored).
    pub fn lookup(&self, context: &DrawContext, draws: Range<u64>) -> Result<Vec<Option<Answer>>> {
        if self.fresh {
            return Ok(vec![None; (draws.end - draws.start) as usize]);
        }
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT labels FROM answers WHERE image = ?1 AND provider = ?2 AND denoiser = ?3 \
                 AND sigma_bits = ?4 AND seed = ?5 AND client = ?6 AND draw = ?7",
            )
            .map_err(|e| self.err(e))?;
        let found: Vec<Option<Answer>> = draws
            .map(|draw| {
                let labels: Option<String> = stmt
                    .query_row(
                        params![
                            context.image,
                            context.provider,
                            context.denoiser,
                            bits(context.sigma.to_bits()),
                            bits(context.seed),
                            context.client.as_deref().unwrap_or(""),
                            bits(draw),
                        ],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(|e| self.err(e))?;
                labels
                    .map(|text| {
                        serde_json::from_str::<Vec<ScoredLabel>>(&text)
                            .map(|labels| Answer { labels })
                            .map_err(|e| self.err(format!("draw {draw}: unreadable labels: {e}")))
                    })
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let hits = found.iter().filter(|a| a.is_some()).count();
        self.reused.fetch_add(hits as u64, Ordering::Relaxed);
        Ok(found)
    }

    /// Stores `entries`, and what they cost, in one transaction (committed and on disk
    /// when this returns). Error answers are not stored: they are never votes. A draw
    /// already stored keeps its first answer.
    ///
    /// A file that cannot be written (another process holds its lock past the busy
    /// timeout, a full disk) loses nothing: the answers and their charge stay in memory,
    /// are counted as received, and are written first by the next write that succeeds;
    /// meanwhile [`AnswerStore::flush`] fails, which stops new paid work.
    pub fn insert(&self, entries: &[LogEntry], charge: Option<&Charge>) -> Result<()> {
        let charge = charge.filter(|c| c.usd.is_finite() && c.usd > 0.0);
        if entries.is_empty() && charge.is_none() {
            return Ok(());
        }
        let mut pending = self.pending();
        // What waits goes first, in the same transaction; the answers are copied only when
        // they must wait too.
        let mut batches = borrowed(&pending);
        batches.push((entries, charge));
        let written = self.write(&batches);
        drop(batches);
        match written {
            Ok(()) => pending.clear(),
            Err(e) => {
                pending.push((entries.to_vec(), charge.cloned()));
                tracing::warn!(
                    "{}: {e}; {} paid answers kept in memory until it can be written",
                    self.path.display(),
                    pending.iter().map(|(e, _)| e.len()).sum::<usize>()
                );
            }
        }
        Ok(())
    }

    /// Writes `batches` in one transaction.
    fn write(&self, batches: &[(&[LogEntry], Option<&Charge>)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut stored = 0;
        {
            let mut stmt = tx
                .prepare_cached(if self.fresh {
                    "INSERT OR REPLACE INTO answers VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                } else {
                    "INSERT OR IGNORE INTO answers VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                })
                .map_err(|e| self.err(e))?;
            for e in batches.iter().flat_map(|(e, _)| *e).filter(|e| e.is_vote()) {
                let labels = serde_json::to_string(&e.labels).map_err(|x| self.err(x))?;
                stored += stmt
                    .execute(params![
                        e.context.image,
                        e.context.provider,
                        e.context.denoiser,
                        bits(e.context.sigma.to_bits()),
                        bits(e.context.seed),
                        e.context.client.as_deref().unwrap_or(""),
                        bits(e.draw),
                        labels,
                        e.status,
                        e.latency_ms,
                        e.cost_usd,
                        e.attempts,
                        bits(e.unix_ms),
                    ])
                    .map_err(|x| self.err(x))?;
            }
        }
        for c in batches.iter().filter_map(|(_, c)| *c) {
            tx.execute(
                "INSERT INTO charges VALUES (?1, ?2, ?3, ?4)",
                params![
                    bits(c.unix_ms),
                    c.payer,
                    c.provider,
                    (c.usd * 1e6).round() as i64
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.stored.fetch_add(stored as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Dollars charged to `payer` since `since_unix_ms` (0: ever), per provider.
    pub fn spent(&self, payer: &str, since_unix_ms: u64) -> Result<Vec<(String, f64)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT provider, SUM(micro_usd) FROM charges WHERE payer = ?1 AND unix_ms >= ?2 \
                 GROUP BY provider ORDER BY provider",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![payer, bits(since_unix_ms)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as f64 / 1e6))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Answers stored.
    pub fn len(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM answers", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Writes every stored answer as a query-log line (JSON Lines, what `replay` and
    /// `--resume` read), in key order; returns how many.
    pub fn export(&self, out: &mut dyn Write) -> Result<u64> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT image, provider, denoiser, sigma_bits, seed, client, draw, labels, \
                 status, latency_ms, cost_usd, attempts, unix_ms FROM answers \
                 ORDER BY image, provider, denoiser, sigma_bits, seed, client, draw",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let get_u64 = |i| row.get::<_, i64>(i).map(|v| v as u64);
            let client: String = row.get(5).map_err(|e| self.err(e))?;
            let labels: String = row.get(7).map_err(|e| self.err(e))?;
            let entry = LogEntry {
                context: DrawContext {
                    image: row.get(0).map_err(|e| self.err(e))?,
                    provider: row.get(1).map_err(|e| self.err(e))?,
                    denoiser: row.get(2).map_err(|e| self.err(e))?,
                    sigma: f64::from_bits(get_u64(3).map_err(|e| self.err(e))?),
                    seed: get_u64(4).map_err(|e| self.err(e))?,
                    client: (!client.is_empty()).then_some(client),
                },
                draw: get_u64(6).map_err(|e| self.err(e))?,
                labels: serde_json::from_str(&labels).map_err(|e| self.err(e))?,
                status: row.get(8).map_err(|e| self.err(e))?,
                latency_ms: row.get(9).map_err(|e| self.err(e))?,
                cost_usd: row.get(10).map_err(|e| self.err(e))?,
                attempts: row.get(11).map_err(|e| self.err(e))?,
                unix_ms: get_u64(12).map_err(|e| self.err(e))?,
                reused: false,
            };
            let mut line = serde_json::to_vec(&entry).map_err(|e| self.err(e))?;
            line.push(b'\n');
            out.write_all(&line).map_err(|e| self.err(e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ctx(seed: u64, client: Option<&str>) -> DrawContext {
        DrawContext {
            image: "ab".repeat(32),
            provider: "google".into(),
            denoiser: "none".into(),
            sigma: 0.25,
            seed,
            client: client.map(str::to_owned),
        }
    }

    fn entry(context: DrawContext, draw: u64, label: &str, status: u16) -> LogEntry {
        LogEntry {
            context,
            draw,
            labels: vec![ScoredLabel {
                label: label.into(),
                score: 0.9,
            }],
            status,
            latency_ms: 12.5,
            cost_usd: 0.0015,
            attempts: 1,
            unix_ms: 1_700_000_000_000,
            reused: false,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("robustify-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("answers.sqlite")
    }

    #[test]
    fn answers_survive_reopening_keyed_by_every_field() {
        let path = temp("keys");
        {
            let store = AnswerStore::open(&path).unwrap();
            let charge = |payer: &str, usd, unix_ms| Charge {
                payer: payer.into(),
                provider: "google".into(),
                usd,
                unix_ms,
            };
            store
                .insert(
                    &[
                        entry(ctx(5, None), 0, "cat", 200),
                        entry(ctx(5, None), 1, "dog", 200),
                        entry(ctx(5, None), 2, "boom", 500),
                    ],
                    Some(&charge("", 0.0045, 1_000)),
                )
                .unwrap();
            store
                .insert(
                    &[entry(ctx(5, Some("team-a")), 0, "fox", 200)],
                    Some(&charge("team-a", 0.0015, 2_000)),
                )
                .unwrap();
            // A second answer for a stored draw keeps the first; a NaN charge is none.
            store
                .insert(
                    &[entry(ctx(5, None), 0, "emu", 200)],
                    Some(&charge("", f64::NAN, 3_000)),
                )
                .unwrap();
        }
        let store = AnswerStore::open(&path).unwrap();
        assert_eq!(store.len().unwrap(), 3, "the error answer is not stored");
        // What each payer was charged survives too, per provider and since a time.
        assert_eq!(store.spent("", 0).unwrap(), [("google".to_owned(), 0.0045)]);
        assert_eq!(
            store.spent("team-a", 0).unwrap(),
            [("google".to_owned(), 0.0015)]
        );
        assert!(store.spent("team-a", 2_001).unwrap().is_empty());
        let got = store.lookup(&ctx(5, None), 0..4).unwrap();
        let top: Vec<Option<&str>> = got.iter().map(|a| a.as_ref().map(Answer::top1)).collect();
        assert_eq!(top, [Some("cat"), Some("dog"), None, None]);
        // Another seed, another client, another σ: not the same draws.
        assert!(store.lookup(&ctx(6, None), 0..1).unwrap()[0].is_none());
        assert_eq!(
            store.lookup(&ctx(5, Some("team-a")), 0..1).unwrap()[0]
                .as_ref()
                .map(|a| a.top1().to_owned()),
            Some("fox".into())
        );
        let mut other = ctx(5, None);
        other.sigma = 0.25 + f64::EPSILON;
        assert!(store.lookup(&other, 0..1).unwrap()[0].is_none());
        // The export is the query log's format, in key order.
        let mut out = Vec::new();
        assert_eq!(store.export(&mut out).unwrap(), 3);
        let lines: Vec<LogEntry> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0], entry(ctx(5, None), 0, "cat", 200));
        assert_eq!(lines[2].context.client.as_deref(), Some("team-a"));
    }

    #[test]
    fn a_fresh_store_reuses_nothing_and_keeps_the_newest() {
        let path = temp("fresh");
        let store = AnswerStore::open(&path).unwrap();
        store
            .insert(&[entry(ctx(1, None), 0, "cat", 200)], None)
            .unwrap();
        assert_eq!(
            store.lookup(&ctx(1, None), 0..1).unwrap()[0]
                .as_ref()
                .unwrap()
                .top1(),
            "cat"
        );
        assert_eq!((store.reused(), store.stored()), (1, 1));
        drop(store);
        let fresh = AnswerStore::open(&path).unwrap().fresh();
        assert!(fresh.lookup(&ctx(1, None), 0..1).unwrap()[0].is_none());
        fresh
            .insert(&[entry(ctx(1, None), 0, "dog", 200)], None)
            .unwrap();
        drop(fresh);
        let store = AnswerStore::open(&path).unwrap();
        assert_eq!(
            store.lookup(&ctx(1, None), 0..1).unwrap()[0]
                .as_ref()
                .unwrap()
                .top1(),
            "dog"
        );
        assert_eq!(store.len().unwrap(), 1);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let path = temp("garbage");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            b"this is not SQLite, just some text that is long enough",
        )
        .unwrap();
        let err = AnswerStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("answers.sqlite"), "{err}");
    }
}
