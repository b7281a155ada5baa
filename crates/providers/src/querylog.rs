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
}

impl DrawContext {
    fn key(&self, draw: u64) -> Key {
        Key {
            image: self.image.clone(),
            provider: self.provider.clone(),
            denoiser: self.denoiser.clone(),
            sigma_bits: self.sigma.to_bits(),
            seed: self.seed,
            draw,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    image: String,
    provider: String,
    denoiser: String,
    sigma_bits: u64,
    seed: u64,
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
}

/// An append-only query log with the answers of earlier runs.
pub struct QueryLog {
    path: PathBuf,
    file: Mutex<File>,
    dirty: AtomicBool,
    known: HashMap<Key, Answer>,
}

impl QueryLog {
    /// Opens `path` for appending (creating it). With `resume`, the answers already in
    /// `resume` (often the same file) are loaded for reuse.
    pub fn open(path: &Path, resume: Option<&Path>) -> Result<QueryLog> {
        let mut known = HashMap::new();
        if let Some(from) = resume {
            for e in read_log(from)? {
                known
                    .entry(e.context.key(e.draw))
                    .or_insert(Answer { labels: e.labels });
            }
        }
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

    /// The earlier answer to draw `draw` of `context`, if the resumed log has one.
    pub fn lookup(&self, context: &DrawContext, draw: u64) -> Option<&Answer> {
        self.known.get(&context.key(draw))
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
        self.dirty.store(true, Ordering::Release);
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

/// Reads every entry of a query log. A line cut short (a crash mid-write: no closing brace)
/// is skipped; any other malformed line is an error naming it.
pub fn read_log(path: &Path) -> Result<Vec<LogEntry>> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LogEntry>(line) {
            Ok(e) => out.push(e),
            Err(_) if !line.trim_end().ends_with('}') => {}
            Err(e) => {
                return Err(Error::Log {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("not a query-log entry: {e}"),
                });
            }
        }
    }
    Ok(out)
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
        assert!(log.lookup(&ctx(), 3).is_none());
        let other_seed = DrawContext { seed: 8, ..ctx() };
        assert!(log.lookup(&other_seed, 0).is_none());
        // A bad line in the middle is an error naming it.
        std::fs::write(&path, "{\"x\":1}\n{\"y\":2}\n").unwrap();
        let err = read_log(&path).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
