//! Logging to stderr under `RUST_LOG`, with two guards so that no secret reaches a log at
//! any level: the AWS signer's own trace output (its canonical request holds the access
//! key id and the session token) is switched off whatever `RUST_LOG` says, and every line
//! is scrubbed of the values of the credential variables the providers read, whichever
//! crate logged it.

use std::io::Write;

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
    let secrets = Secrets::from_env();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || Scrubbing {
            secrets: secrets.clone(),
            out: std::io::stderr(),
        })
        .with_ansi(crate::render::colour_stderr())
        .init();
}

/// The credential values in the environment, longest first (so that a value containing
/// another is replaced whole).
#[derive(Clone, Default)]
pub struct Secrets(std::sync::Arc<Vec<String>>);

impl Secrets {
    /// The values of every variable any built-in provider reads its credentials from.
    pub fn from_env() -> Secrets {
        let mut vars: Vec<String> = robustify_providers::ProviderDef::builtins()
            .unwrap_or_default()
            .into_iter()
            .flat_map(|d| d.auth_env)
            .collect();
        vars.extend(["AWS_SESSION_TOKEN".to_string()]);
        Secrets::new(vars.iter().filter_map(|v| std::env::var(v).ok()))
    }

    /// These values (blank and very short ones, which would garble logs, are skipped).
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut v: Vec<String> = values
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| s.len() >= 4)
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        Secrets(std::sync::Arc::new(v))
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.0.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// A writer that scrubs each write (the formatter writes one event per write).
struct Scrubbing {
    secrets: Secrets,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_secret_longest_first() {
        let s = Secrets::new(["abcd".to_string(), "abcdefgh".into(), "x".into()]);
        assert_eq!(s.scrub("k=abcdefgh;j=abcd;x"), "k=***;j=***;x");
    }
}
