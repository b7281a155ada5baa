//! Helpers to run the real binary and find fixtures and the shared data folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A finished run of the binary.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> String {
        assert!(
            self.output.status.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts failure with a non-zero exit and an `error:` line; returns stderr.
    pub fn fails(&self) -> String {
        assert!(
            !self.output.status.success(),
            "expected failure, got success:\n{}",
            self.stdout()
        );
        assert_ne!(self.code(), Some(0));
        let err = self.stderr();
        assert!(err.contains("error"), "no error message: {err}");
        err
    }

    /// Parses stdout as exactly one JSON value.
    pub fn json(&self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
    }
}

/// Runs `robustify ARGS…` in the repository root.
pub fn robustify<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new(env!("CARGO_BIN_EXE_robustify"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run robustify");
    Run { output }
}

/// `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The shared data folder beside the repository (`../shared/data`), or
/// `$ROBUSTIFY_SHARED_DATA`; `None` (and a message) when absent, so tests can skip.
pub fn shared_data(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("ROBUSTIFY_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let path = dir.join(what);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} not found (set ROBUSTIFY_SHARED_DATA)",
            path.display()
        );
        None
    }
}

/// A fresh temporary folder under the target directory, removed first if it exists.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
