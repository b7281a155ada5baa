//! Logging to stderr under `RUST_LOG`, with two guards so that no secret reaches a log at
//! any level: the AWS signer's own trace output (its canonical request holds the access
//! key id and the session token) is switched off whatever `RUST_LOG` says, and every line
//! is scrubbed of the values of the credential variables the providers read, whichever
//! crate logged it.

use std::io::Write;

use robustify_providers::Redactor;
use tracing_subscriber::EnvFilter;

/// Targets that are never logged: they print credentials by design.
const SILENCED: &[&str] = &["aws_sigv4", "aws_credential_types"];

/// Installs the global subscriber.
pub fn init() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    for target in SILENCED {
        if let Ok(d) = format!("{target}=off").parse() {
            filter = filter.add_directive(d);
        }
    }
    let secrets = Redactor::from_env();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || Scrubbing {
            secrets: secrets.clone(),
            out: std::io::stderr(),
        })
        .with_ansi(crate::render::colour_stderr())
        .init();
}

/// A writer that scrubs each write (the formatter writes one event per write).
struct Scrubbing {
    secrets: Redactor,
    out: std::io::Stderr,
}

impl Write for Scrubbing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.out.write_all(self.secrets.scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
