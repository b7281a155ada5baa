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

/// `robustify ARGS…` in the repository root, with no credentials inherited from the
/// environment running the tests.
pub fn command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_robustify"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    // Each run its own answer store (a test that wants one shared sets it again), so no
    // run reuses another test's paid answers, and nothing is written into the repository.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cmd.env(
        "ROBUSTIFY_STORE",
        std::env::temp_dir().join(format!(
            "robustify-test-{}-{n}/answers.sqlite",
            std::process::id()
        )),
    );
    for var in [
        "AZURE_VISION_KEY",
        "GOOGLE_API_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "CLARIFAI_PAT",
        "HF_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `certify --no-denoiser IMAGE --provider PROVIDER --endpoint ENDPOINT --sigma 0.25 --n0
/// N0 --n N`: the certification the vendor tests send to a stand-in on loopback (callers
/// add flags and the key's variable).
pub fn certify_args(image: &str, provider: &str, endpoint: &str, n0: &str, n: &str) -> Vec<String> {
    [
        "certify",
        "--no-denoiser",
        image,
        "--provider",
        provider,
        "--endpoint",
        endpoint,
        "--sigma",
        "0.25",
        "--n0",
        n0,
        "--n",
        n,
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `robustify ARGS…` in the repository root.
pub fn robustify<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run(command(args))
}

/// Runs a prepared command to completion.
pub fn run(mut cmd: Command) -> Run {
    Run {
        output: cmd.output().expect("run robustify"),
    }
}

/// A `robustify standin serve` child on an ephemeral loopback port, killed when dropped.
pub struct Standin {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Standin {
    /// Starts the stand-in with `args` after `standin serve --addr 127.0.0.1:0`, and waits
    /// for the address it prints.
    pub fn start(args: &[&str]) -> Standin {
        let mut cmd = command(["standin", "serve", "--addr", "127.0.0.1:0"]);
        cmd.args(args);
        let (child, url) = spawn_listening(cmd);
        Standin { child, url }
    }

    /// The stand-in's counters (`GET /stats`).
    pub fn stats(&self) -> serde_json::Value {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        use std::io::{Read, Write};
        write!(
            stream,
            "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split("\r\n\r\n").nth(1).expect("a body");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns a server command and waits for the address its first line prints
/// (`listening on http://127.0.0.1:PORT`); the child and that URL.
pub fn spawn_listening(mut cmd: Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the address");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
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
        // Straight to the process's stderr: `eprintln!` is captured by the test harness
        // and a skipped test would read as a passed one.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {}: {} not found (set ROBUSTIFY_SHARED_DATA)",
            std::thread::current().name().unwrap_or("a test"),
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

/// An HTTP/1.1 request on loopback (`Connection: close`): the status and the body.
pub fn http(addr: &str, method: &str, path: &str, key: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = addr.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
