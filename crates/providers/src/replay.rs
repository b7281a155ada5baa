//! Reading logged label sequences for `robustify replay`.
//!
//! A replay log is JSON Lines, gzip-compressed or not (detected from the content), one
//! image a line, with at least `labels` (the top-1 label of each query in query order) and
//! `clean` (the reference label). Other fields are ignored, so the Denoised Smoothing API
//! logs read as they are.

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
    /// The reference label a certified prediction is compared with.
    pub clean: String,
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

/// Reads every record of a replay log. Blank lines are skipped; any other line that is not
/// a JSON object with `labels` and `clean` is an error naming the line.
pub fn read_replay_log(path: &Path) -> Result<Vec<ReplayRecord>> {
    parse_replay(open_maybe_gzip(path)?, path)
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
}
