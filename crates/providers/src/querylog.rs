//! The query log: every paid answer, one JSON line each, keyed by (image SHA-256, provider,
//! denoiser, σ, seed, draw index).
//!
//! Each answer is written to the file as soon as it arrives (one `write` per line, so a
//! `kill -9` loses nothing that was written), and the file is fsync'd at least once a
//! second by [`QueryLog::spawn_syncer`] and on [`QueryLog::sync`]. Opening with resume reads
//! the earlier answers back: a rerun of the same command reuses them and sends only the
//! draws that are missing. A line cut short by a crash (no closing brace) is skipped; any
//! other bad line is an error naming it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::provider::{Answer, ScoredLabel};
use crate::{Error, Result};

/// What is being certified: everything of the key but the draw index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrawContext {
    /// Hex SHA-256 of the image file's bytes.
    pub image: String,
    /// Provider name.
    pub provider: String,
    /// Denoiser name, `none` without one.
    pub denoiser: String,
    /// Noise level.
    pub sigma: f64,
    /// Master seed of the noise.
    pub seed: u64,
    /// The proxy client whose request this was: answers are reused only within the same
    /// client (one client never learns of another's queries), unless the proxy shares them.
    /// `None` from the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

impl DrawContext {
    fn key(&self, draw: u64) -> Key {
        Key {
            image: self.image.clone(),
            provider: self.provider.clone(),
            denoiser: self.denoiser.clone(),
            sigma_bits: self.sigma.to_bits(),
            seed: self.seed,
            client: self.client.clone(),
            draw,
        }
    }

    /// Each key field but the draw, in the order a reuse report names them: whether
    /// `self` and `other` agree on it, and how a difference reads.
    fn agreement(&self, other: &DrawContext) -> [(bool, &'static str); 6] {
        [
            (self.image == other.image, "another image"),
            (self.provider == other.provider, "another provider"),
            (self.client == other.client, "another client"),
            (self.denoiser == other.denoiser, "another denoiser"),
            (self.sigma.to_bits() == other.sigma.to_bits(), "another σ"),
            (self.seed == other.seed, "another seed"),
        ]
    }

    /// Why an answer logged under `self` was not reused by a run that asked for `asked`:
    /// the first field that differs.
    fn differs_from(&self, asked: &DrawContext) -> &'static str {
        self.agreement(asked)
            .into_iter()
            .find(|(same, _)| !same)
            .map_or("draws this run did not need", |(_, why)| why)
    }

    /// How many of the key fields `self` shares with `other` (to find the closest).
    fn likeness(&self, other: &DrawContext) -> usize {
        self.agreement(other)
            .iter()
            .filter(|(same, _)| *same)
            .count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    image: String,
    provider: String,
    denoiser: String,
    sigma_bits: u64,
    seed: u64,
    client: Option<String>,
    draw: u64,
}

/// One logged answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// What was certified.
    #[serde(flatten)]
    pub context: DrawContext,
    /// Draw index.
    pub draw: u64,
    /// The labels in the vendor's order.
    pub labels: Vec<ScoredLabel>,
    /// HTTP status of the answer (0 in-process).
    pub status: u16,
    /// Seconds from send to answer of the request that carried it.
    pub latency_ms: f64,
    /// What this image cost.
    pub cost_usd: f64,
    /// Attempts the request took (1 without retries).
    pub attempts: u32,
    /// Wall-clock time of the answer, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Not paid for by this run: found in the answer store (paid by an earlier run) and
    /// logged so that the log alone rebuilds the certificate (`replay`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

impl LogEntry {
    /// Whether the answer can count as a vote: a success status (2xx, or 0 in-process).
    /// An error answer that found its way into a log (edited, or written by another tool)
    /// is never counted as the vendor's label.
    pub fn is_vote(&self) -> bool {
        self.status == 0 || (200..300).contains(&self.status)
    }
}

/// What reading a resumed log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Answers loaded for reuse.
    pub answers: usize,
    /// Lines that are not query-log entries (garbage, or cut short by a crash); the first
    /// few line numbers are in `unreadable_lines`.
    pub unreadable: usize,
    /// The first (up to 5) unreadable line numbers, 1-based.
    pub unreadable_lines: Vec<usize>,
    /// Entries logged with an error status: never votes.
    pub error_answers: usize,
}

impl LoadReport {
    /// Lines skipped, all reasons together.
    pub fn skipped(&self) -> usize {
        self.unreadable + self.error_answers
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answers read", self.answers)?;
        if self.skipped() > 0 {
            let mut why = Vec::new();
            if self.unreadable > 0 {
                let lines: Vec<String> = self
                    .unreadable_lines
                    .iter()
                    .map(|l| l.to_string())
                    .collect();
                why.push(format!(
                    "{} unreadable (line {}{})",
                    self.unreadable,
                    lines.join(", "),
                    if self.unreadable > lines.len() {
                        ", …"
                    } else {
                        ""
                    }
                ));
            }
            if self.error_answers > 0 {
                why.push(format!(
                    "{} error answers, never counted as votes",
                    self.error_answers
                ));
            }
            write!(f, "; {} lines skipped: {}", self.skipped(), why.join(", "))?;
        }
        Ok(())
    }
}

/// How much of a resumed log a run reused, and why the rest was not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReuseReport {
    /// Answers loaded from the log.
    pub loaded: usize,
    /// Answers reused (draws not sent again).
    pub reused: usize,
    /// Answers not reused, by reason ("another σ", "another seed", …), most first.
    pub unused: Vec<(&'static str, usize)>,
}

impl std::fmt::Display for ReuseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} logged answers reused",
            self.reused, self.loaded
        )?;
        if !self.unused.is_empty() {
            let why: Vec<String> = self
                .unused
                .iter()
                .map(|(reason, n)| format!("{n} for {reason}"))
                .collect();
            write!(
                f,
                " ({} not: {})",
                self.loaded - self.reused,
                why.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A loaded answer and the line it came from.
struct Known {
    answer: Answer,
    context: DrawContext,
    used: AtomicBool,
}

/// An append-only query log with the answers of earlier runs.
pub struct QueryLog {
    path: PathBuf,
    file: Mutex<File>,
    dirty: AtomicBool,
    known: HashMap<Key, Known>,
    report: LoadReport,
    /// Contexts this run asked about (for the reuse report).
    asked: Mutex<Vec<DrawContext>>,
    /// Answers appended by this process, reusable at once (a proxy asked the same draws
    /// twice while it runs pays once); the oldest are forgotten past `RECENT` entries so
    /// that memory stays bounded.
    recent: Mutex<Recent>,
}

/// Most answers of this process kept for reuse (about 1 KB each).
const RECENT: usize = 100_000;

#[derive(Default)]
struct Recent {
    answers: HashMap<Key, Answer>,
    order: std::collections::VecDeque<Key>,
}

impl QueryLog {
    /// Opens `path` for appending (creating it). With `resume`, the answers already in
    /// `resume` (often the same file) are loaded for reuse.
    ///
    /// Two different answers for one draw in `resume` are an error naming both lines.
    pub fn open(path: &Path, resume: Option<&Path>) -> Result<QueryLog> {
        let mut known: HashMap<Key, (usize, Known)> = HashMap::new();
        let mut report = LoadReport::default();
        if let Some(from) = resume {
            let Scanned {
                entries,
                unreadable,
                ..
            } = scan_log(from)?;
            report.unreadable = unreadable.len();
            report.unreadable_lines = unreadable.into_iter().take(5).collect();
            for (line, e) in entries {
                if !e.is_vote() {
                    report.error_answers += 1;
                    continue;
                }
                let key = e.context.key(e.draw);
                match known.get(&key) {
                    Some((first, k)) if k.answer.labels != e.labels => {
                        return Err(Error::Log {
                            path: from.to_path_buf(),
                            line,
                            message: format!(
                                "draw {} of image {} ({}, σ = {}, seed {}) answered {:?} here \
                                 but {:?} on line {first}: the log cannot be trusted for reuse",
                                e.draw,
                                short(&e.context.image),
                                e.context.provider,
                                e.context.sigma,
                                e.context.seed,
                                Answer { labels: e.labels }.top1(),
                                k.answer.top1(),
                            ),
                        });
                    }
                    Some(_) => {}
                    None => {
                        known.insert(
                            key,
                            (
                                line,
                                Known {
                                    answer: Answer { labels: e.labels },
                                    context: e.context,
                                    used: AtomicBool::new(false),
                                },
                            ),
                        );
                    }
                }
            }
            report.answers = known.len();
        }
        let known = known.into_iter().map(|(k, (_, v))| (k, v)).collect();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(io)?;
        // End a line cut by a crash, so the next entry starts on its own line.
        let len = file.metadata().map_err(io)?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io)?;
            }
        }
        Ok(QueryLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            dirty: AtomicBool::new(false),
            known,
            report,
            asked: Mutex::new(Vec::new()),
            recent: Mutex::new(Recent::default()),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers loaded from the resumed log.
    pub fn resumed(&self) -> usize {
        self.known.len()
    }

    /// What reading the resumed log found (answers, lines skipped and why).
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// The earlier answer to draw `draw` of `context`: from the resumed log, or appended
    /// by this process.
    pub fn lookup(&self, context: &DrawContext, draw: u64) -> Option<Answer> {
        if !self.known.is_empty() {
            let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
            if !asked.contains(context) {
                asked.push(context.clone());
            }
        }
        let key = context.key(draw);
        if let Some(k) = self.known.get(&key) {
            k.used.store(true, Ordering::Relaxed);
            return Some(k.answer.clone());
        }
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.answers.get(&key).cloned()
    }

    /// How many loaded answers this run reused, and why each other one was not: compared
    /// with the closest context the run asked for.
    pub fn reuse_report(&self) -> ReuseReport {
        let asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        let mut reused = 0;
        let mut unused: HashMap<&'static str, usize> = HashMap::new();
        for k in self.known.values() {
            if k.used.load(Ordering::Relaxed) {
                reused += 1;
                continue;
            }
            let reason = asked
                .iter()
                .max_by_key(|a| k.context.likeness(a))
                .map_or("a run that asked for nothing", |a| {
                    k.context.differs_from(a)
                });
            *unused.entry(reason).or_default() += 1;
        }
        let mut unused: Vec<_> = unused.into_iter().collect();
        unused.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ReuseReport {
            loaded: self.known.len(),
            reused,
            unused,
        }
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one answer (one `write` of one line).
    pub fn append(&self, entry: &LogEntry) -> Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(|e| self.io(e.into()))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&line).map_err(|e| self.io(e))?;
        drop(file);
        self.dirty.store(true, Ordering::Release);
        if entry.is_vote() {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let key = entry.context.key(entry.draw);
            if recent.answers.len() >= RECENT
                && let Some(old) = recent.order.pop_front()
            {
                recent.answers.remove(&old);
            }
            let answer = Answer {
                labels: entry.labels.clone(),
            };
            if recent.answers.insert(key.clone(), answer).is_none() {
                recent.order.push_back(key);
            }
        }
        Ok(())
    }

    /// Forces everything written to disk.
    pub fn sync(&self) -> Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.sync_data().map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    /// Syncs once a second on the current tokio runtime until the log is dropped.
    pub fn spawn_syncer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(log) = weak.upgrade() else { break };
                if let Err(err) = log.sync() {
                    eprintln!("warning: {err}");
                }
            }
        })
    }
}

impl Drop for QueryLog {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

/// The first 12 hex digits of an image hash, for messages.
fn short(image: &str) -> &str {
    image.get(..12).unwrap_or(image)
}

/// A query log as read: its entries and the lines that are not entries.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Each entry with its 1-based line number.
    pub entries: Vec<(usize, LogEntry)>,
    /// The 1-based numbers of the lines that are not entries (garbage, or cut short).
    pub unreadable: Vec<usize>,
    /// Those among them cut short by a crash mid-write (no closing brace).
    pub cut: Vec<usize>,
}

/// Reads every entry of a query log with its line number, and the numbers of the lines
/// that are not entries.
pub fn scan_log(path: &Path) -> Result<Scanned> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut scanned = Scanned::default();
    // Bytes, not `lines()`: one line of invalid UTF-8 is a bad line, not a failed read.
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(io)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<LogEntry>(&line) {
            Ok(e) => scanned.entries.push((i + 1, e)),
            Err(_) => {
                scanned.unreadable.push(i + 1);
                if !line.trim_ascii_end().ends_with(b"}") {
                    scanned.cut.push(i + 1);
                }
            }
        }
    }
    Ok(scanned)
}

/// Reads every entry of a query log. A line cut short (a crash mid-write: no closing brace)
/// is skipped; any other malformed line is an error naming it.
pub fn read_log(path: &Path) -> Result<Vec<LogEntry>> {
    let scanned = scan_log(path)?;
    if let Some(&line) = scanned
        .unreadable
        .iter()
        .find(|line| !scanned.cut.contains(line))
    {
        return Err(Error::Log {
            path: path.to_path_buf(),
            line,
            message: "not a query-log entry".into(),
        });
    }
    Ok(scanned.entries.into_iter().map(|(_, e)| e).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> DrawContext {
        DrawContext {
            image: "ab".repeat(32),
            provider: "google".into(),
            denoiser: "none".into(),
            sigma: 0.25,
            seed: 7,
            client: None,
        }
    }

    fn entry(draw: u64, label: &str) -> LogEntry {
        LogEntry {
            context: ctx(),
            draw,
            labels: vec![ScoredLabel {
                label: label.into(),
                score: 0.5,
            }],
            status: 200,
            latency_ms: 12.0,
            cost_usd: 0.0015,
            attempts: 1,
            unix_ms: 0,
            reused: false,
        }
    }

    #[test]
    fn resume_reads_answers_back_by_key() {
        let dir = std::env::temp_dir().join(format!("robustify-qlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let log = QueryLog::open(&path, None).unwrap();
            log.append(&entry(0, "cat")).unwrap();
            log.append(&entry(1, "dog")).unwrap();
        }
        // A crash mid-line leaves a cut last line: skipped.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"image\":\"ab").unwrap();
        drop(f);
        let log = QueryLog::open(&path, Some(&path)).unwrap();
        assert_eq!(log.resumed(), 2);
        log.append(&entry(2, "cat")).unwrap();
        drop(log);
        let log = QueryLog::open(&path, Some(&path)).unwrap();
        assert_eq!(log.resumed(), 3);
        assert_eq!(log.lookup(&ctx(), 1).unwrap().top1(), "dog");
        // An answer appended by this process is reusable at once.
        log.append(&entry(9, "owl")).unwrap();
        assert_eq!(log.lookup(&ctx(), 9).unwrap().top1(), "owl");
        assert!(log.lookup(&ctx(), 3).is_none());
        let other_seed = DrawContext { seed: 8, ..ctx() };
        assert!(log.lookup(&other_seed, 0).is_none());
        // A bad line in the middle is an error naming it.
        std::fs::write(&path, "{\"x\":1}\n{\"y\":2}\n").unwrap();
        let err = read_log(&path).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_log(name: &str, lines: &[String]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("robustify-qlog-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    fn line(e: &LogEntry) -> String {
        serde_json::to_string(e).unwrap()
    }

    #[test]
    fn error_answers_are_never_votes_and_bad_lines_are_counted() {
        let mut failed = entry(1, "x");
        failed.status = 500;
        failed.labels.clear();
        let path = temp_log(
            "evidence",
            &[
                line(&entry(0, "cat")),
                line(&failed),
                "garbage".into(),
                "{\"not\": \"an entry\"}".into(),
                line(&entry(2, "dog")),
                "{\"image\":\"ab".into(),
            ],
        );
        let log = QueryLog::open(&path, Some(&path)).unwrap();
        assert!(
            log.lookup(&ctx(), 1).is_none(),
            "a 500 answer was reused as a vote"
        );
        assert_eq!(log.lookup(&ctx(), 0).unwrap().top1(), "cat");
        let report = log.load_report().clone();
        assert_eq!(
            (report.answers, report.unreadable, report.error_answers),
            (2, 3, 1)
        );
        assert_eq!(report.unreadable_lines, [3, 4, 6]);
        let text = report.to_string();
        assert!(
            text.contains("4 lines skipped") && text.contains("line 3, 4, 6"),
            "{text}"
        );
        // The reuse report tells the truth: one of two reused, the other not needed.
        let r = log.reuse_report();
        assert_eq!((r.loaded, r.reused), (2, 1));
        assert_eq!(r.unused, [("draws this run did not need", 1)]);
    }

    fn ctx1() -> DrawContext {
        ctx()
    }

    #[test]
    fn two_answers_for_one_draw_name_both_lines() {
        let path = temp_log(
            "conflict",
            &[
                line(&entry(0, "cat")),
                line(&entry(1, "cat")),
                line(&entry(0, "cat")), // the same answer twice is harmless
                line(&entry(1, "dog")),
            ],
        );
        let err = QueryLog::open(&path, Some(&path))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(":4:") && err.contains("line 2") && err.contains("\"dog\""),
            "{err}"
        );
    }

    #[test]
    fn reuse_report_says_why_answers_were_not_reused() {
        let path = temp_log("why", &[line(&entry(0, "cat")), line(&entry(1, "cat"))]);
        let log = QueryLog::open(&path, Some(&path)).unwrap();
        let other_sigma = DrawContext {
            sigma: 0.5,
            ..ctx1()
        };
        assert!(log.lookup(&other_sigma, 0).is_none());
        let r = log.reuse_report();
        assert_eq!(r.reused, 0);
        assert_eq!(r.unused, [("another σ", 2)]);
        assert_eq!(
            r.to_string(),
            "0 of 2 logged answers reused (2 not: 2 for another σ)"
        );
        // Client-scoped: another client's answer is not reused.
        let other_client = DrawContext {
            client: Some("b".into()),
            ..ctx1()
        };
        assert!(log.lookup(&other_client, 0).is_none());
    }
}
