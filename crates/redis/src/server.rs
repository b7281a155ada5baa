//! A throwaway `redis-server` on a free loopback port, for tests and benchmarks of the
//! replicas (the one launcher the workspace's tests share).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed when dropped.
pub struct LocalServer {
    child: Child,
    port: u16,
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalServer {
    /// Starts one without persistence and waits until it accepts connections; `None`,
    /// said on stderr, where `redis-server` is not installed — except on CI (`CI` set),
    /// where that panics: `.ci/run` installs it.
    ///
    /// # Panics
    /// On CI without `redis-server`, or when it does not start within 10 s.
    pub fn start() -> Option<LocalServer> {
        #[allow(clippy::expect_used)]
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = match spawn(port) {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server is missing on CI ({e}): .ci/run installs it"
                );
                eprintln!(
                    "SKIPPED: redis-server is not installed ({e}); apt-get install redis-server"
                );
                return None;
            }
        };
        let server = LocalServer {
            child,
            port,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        server.wait_ready();
        Some(server)
    }

    /// Kills the server (as a crash would: no shutdown, nothing saved).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, empty (after [`LocalServer::kill`]).
    ///
    /// # Panics
    /// When it cannot be started again.
    pub fn restart(&mut self) {
        self.kill();
        #[allow(clippy::expect_used)]
        {
            self.child = spawn(self.port).expect("redis-server starts again");
        }
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(port: u16) -> std::io::Result<Child> {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
}
