//! Reading logged label sequences for `robustify replay`.
//!
//! A replay log is JSON Lines, gzip-compressed or not (detected from the content), one
//! image a line, with at least `labels` (the top-1 label of each query in query order) and
//! `clean` (the reference label). Other fields are ignored, so the Denoised Smoothing API
//! logs read as they are.
//!
//! robustify's own query logs ([`crate::querylog`], one answer a line) read too: answers are
//! grouped by (image, provider, denoiser, σ, seed) and ordered by draw index; they carry no
//! reference label (`clean` is `None`).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// One logged image.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ReplayRecord {
    /// The image's index if the log gives one.
    #[serde(default)]
    pub image: Option<u64>,
    /// The reference label a certified prediction is compared with (`None` in a query log).
    pub clean: Option<String>,
    /// What identifies the image when it is not an index (a query log's SHA-256, σ, seed).
    #[serde(skip)]
    pub name: Option<String>,
    /// Top-1 labels in query order.
    pub labels: Vec<String>,
    /// 1-based line number in the log.
    #[serde(skip)]
    pub line: usize,
}

/// Opens `path`, gunzipping when it starts with the gzip magic bytes.
pub fn open_maybe_gzip(path: &Path) -> Result<Box<dyn BufRead>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(std::fs::File::open(path).map_err(io)?);
    let gz = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}

/// Which certifications of a query log to replay: a log the proxy wrote mixes σ values,
/// providers, denoisers and seeds. `None` takes every value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryFilter {
    /// Only answers made at this σ.
    pub sigma: Option<f64>,
    /// Only this provider's answers.
    pub provider: Option<String>,
    /// Only answers through this denoiser (`none` for none).
    pub denoiser: Option<String>,
    /// Only this seed's draws.
    pub seed: Option<u64>,
}

impl QueryFilter {
    fn keeps(&self, c: &crate::querylog::DrawContext) -> bool {
        self.sigma
            .is_none_or(|s| (s - c.sigma).abs() <= 1e-12 * s.abs().max(1.0))
            && self.provider.as_deref().is_none_or(|p| {
                // A provider's name takes its answers from every endpoint (`name@…`).
                p == c.provider
                    || c.provider
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with(['@', '#']))
            })
            && self.denoiser.as_deref().is_none_or(|d| d == c.denoiser)
            && self.seed.is_none_or(|s| s == c.seed)
    }
}

/// Reads every record of a replay log. Blank lines are skipped; any other line that is not
/// a JSON object with `labels` and `clean` is an error naming the line. A query log (its
/// first line has a `draw` field) is grouped into one record per certification.
pub fn read_replay_log(path: &Path) -> Result<Vec<ReplayRecord>> {
    read_replay_log_filtered(path, &QueryFilter::default())
}

/// As [`read_replay_log`], keeping only a query log's answers that `filter` selects (a
/// paper-format log has no such fields and is read whole).
pub fn read_replay_log_filtered(path: &Path, filter: &QueryFilter) -> Result<Vec<ReplayRecord>> {
    let mut reader = open_maybe_gzip(path)?;
    let mut first = String::new();
    while first.trim().is_empty() {
        first.clear();
        if reader.read_line(&mut first).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })? == 0
        {
            break;
        }
    }
    let is_query_log =
        serde_json::from_str::<serde_json::Value>(&first).is_ok_and(|v| v.get("draw").is_some());
    if is_query_log {
        return group_query_log(path, filter);
    }
    parse_replay(std::io::Cursor::new(first).chain(reader), path)
}

/// One record per (image, provider, denoiser, σ, seed) of a query log, labels in draw order;
/// draws must run 0, 1, 2, … without gaps.
fn group_query_log(path: &Path, filter: &QueryFilter) -> Result<Vec<ReplayRecord>> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut order = Vec::new();
    for e in crate::querylog::read_log(path)? {
        // An error answer is no vote: its draw counts as missing.
        if !e.is_vote() || !filter.keeps(&e.context) {
            continue;
        }
        let c = &e.context;
        let key = format!(
            "{} provider={} denoiser={} sigma={} seed={}{}",
            c.image,
            c.provider,
            c.denoiser,
            c.sigma,
            c.seed,
            c.client
                .as_deref()
                .map(|n| format!(" client={n}"))
                .unwrap_or_default()
        );
        let top = crate::provider::Answer { labels: e.labels }
            .top1()
            .to_owned();
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push((e.draw, top));
    }
    let mut records = Vec::new();
    for key in order {
        let mut draws = groups.remove(&key).unwrap_or_default();
        draws.sort_by_key(|(d, _)| *d);
        draws.dedup_by_key(|(d, _)| *d);
        if let Some(gap) = draws.iter().enumerate().find(|(i, (d, _))| *d != *i as u64) {
            return Err(Error::Log {
                path: path.to_path_buf(),
                line: 0,
                message: format!("{key}: draw {} is missing (resume the run first)", gap.0),
            });
        }
        // Named by what identifies it, not by an index that means nothing.
        records.push(ReplayRecord {
            image: None,
            clean: None,
            name: Some(key.get(..12).unwrap_or(&key).to_owned() + key.get(64..).unwrap_or("")),
            labels: draws.into_iter().map(|(_, l)| l).collect(),
            line: 0,
        });
    }
    if records.is_empty() {
        return Err(Error::Log {
            path: path.to_path_buf(),
            line: 0,
            message: if *filter == QueryFilter::default() {
                "the log holds no records".into()
            } else {
                format!("no answers in the log match {filter:?}")
            },
        });
    }
    Ok(records)
}

fn parse_replay(reader: impl Read, path: &Path) -> Result<Vec<ReplayRecord>> {
    let mut records = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| Error::Log {
            path: path.to_path_buf(),
            line: line_no,
            message: format!("cannot read: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let mut record: ReplayRecord = serde_json::from_str(&line).map_err(|e| Error::Log {
            path: path.to_path_buf(),
            line: line_no,
            message: format!("not a replay record: {e}"),
        })?;
        if record.clean.is_none() {
            return Err(Error::Log {
                path: path.to_path_buf(),
                line: line_no,
                message: "not a replay record: missing field `clean`".into(),
            });
        }
        record.line = line_no;
        records.push(record);
    }
    if records.is_empty() {
        return Err(Error::Log {
            path: path.to_path_buf(),
            line: 0,
            message: "the log holds no records".into(),
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_names_bad_lines() {
        let text = "{\"image\": 3, \"clean\": \"cat\", \"labels\": [\"cat\"], \"scores\": [1]}\n\n\
                    {\"clean\": \"dog\", \"labels\": []}\n";
        let recs = parse_replay(text.as_bytes(), Path::new("t.jsonl")).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].image, recs[0].line), (Some(3), 1));
        assert_eq!((recs[1].image, recs[1].line), (None, 3));

        let bad = "{\"clean\": \"cat\", \"labels\": []}\n{\"labels\": [\"x\"]}\n";
        let err = parse_replay(bad.as_bytes(), Path::new("t.jsonl")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("t.jsonl:2:") && msg.contains("clean"),
            "{msg}"
        );
        let err = parse_replay("not json".as_bytes(), Path::new("t.jsonl")).unwrap_err();
        assert!(err.to_string().starts_with("t.jsonl:1:"));
        assert!(parse_replay("".as_bytes(), Path::new("e")).is_err());
    }

    #[test]
    fn query_logs_group_by_certification_in_draw_order() {
        use crate::querylog::{DrawContext, LogEntry, QueryLog};
        let dir = std::env::temp_dir().join(format!("robustify-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = QueryLog::open(&path, None).unwrap();
        let ctx = |seed| DrawContext {
            image: "ab".into(),
            provider: "google".into(),
            denoiser: "none".into(),
            sigma: 0.25,
            seed,
            client: None,
        };
        for (seed, draw, label) in [(0, 1, "dog"), (0, 0, "cat"), (1, 0, "owl"), (0, 2, "cat")] {
            log.append(&LogEntry {
                context: ctx(seed),
                draw,
                labels: vec![crate::ScoredLabel {
                    label: label.into(),
                    score: 1.0,
                }],
                status: 200,
                latency_ms: 1.0,
                cost_usd: 0.0,
                attempts: 1,
                unix_ms: 0,
                reused: false,
            })
            .unwrap();
        }
        drop(log);
        let recs = read_replay_log(&path).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].labels, ["cat", "dog", "cat"]);
        assert_eq!(recs[1].labels, ["owl"]);
        assert_eq!(recs[0].clean, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
