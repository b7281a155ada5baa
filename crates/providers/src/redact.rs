//! Keeping secrets and hostile bytes out of what people, logs and clients see.
//!
//! Vendor answers are untrusted text: an error body may quote the request it received
//! (AWS's `InvalidSignatureException` quotes its canonical request, session token
//! included), and a label may carry terminal escapes. [`Redactor::scrub`] replaces every
//! configured credential value, and the value after any credential-shaped header or
//! parameter name, with `***`; [`vendor_text`] makes a vendor's words short and printable;
//! [`printable`] escapes control characters in a label for a terminal. Scrub first, then
//! cut: a secret cut in half would no longer be recognised.
//!
//! ```
//! use robustify_providers::redact::{Redactor, printable, vendor_text};
//!
//! let r = Redactor::new(["sk-live-123456".to_string()]);
//! let echoed = "bad signature for x-goog-api-key: sk-live-123456\nx-amz-security-token:FwoGZXIv";
//! let shown = vendor_text(&r.scrub(echoed), 200);
//! assert!(!shown.contains("sk-live-123456") && !shown.contains("FwoGZXIv"));
//! assert_eq!(printable("dog\u{1b}]0;pwned\u{7}"), "dog\\u{1b}]0;pwned\\u{7}");
//! ```

use std::borrow::Cow;
use std::sync::Arc;

/// Header and parameter names whose values are credentials, lower case.
const SENSITIVE: &[&str] = &[
    "authorization",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-amz-security-token",
    "x-amz-credential",
    "x-api-key",
    "api-key",
    "apikey",
    "api_key",
    "credential",
    "access_token",
    "token",
    "key",
];

/// Values shorter than this are not scrubbed by value (they would garble every line).
const MIN_SECRET_LEN: usize = 4;

/// The credential values to scrub, longest first (a value containing another is replaced
/// whole).
#[derive(Clone, Debug, Default)]
pub struct Redactor(Arc<Vec<String>>);

impl Redactor {
    /// These values (blank and very short ones are skipped).
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut v: Vec<String> = values
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        Redactor(Arc::new(v))
    }

    /// The values of these environment variables, where set.
    pub fn from_env_vars<'a>(vars: impl IntoIterator<Item = &'a str>) -> Redactor {
        Redactor::new(vars.into_iter().filter_map(|v| std::env::var(v).ok()))
    }

    /// The values of every variable a built-in provider reads its credentials from (and
    /// `AWS_SESSION_TOKEN`).
    pub fn from_env() -> Redactor {
        let vars: Vec<String> = crate::ProviderDef::builtins()
            .unwrap_or_default()
            .into_iter()
            .flat_map(|d| d.auth_env)
            .chain(["AWS_SESSION_TOKEN".to_string()])
            .collect();
        Redactor::from_env_vars(vars.iter().map(String::as_str))
    }

    /// This redactor's values and `other`'s.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        Redactor::new(self.0.iter().chain(other.0.iter()).cloned())
    }

    /// How many values it scrubs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it scrubs no value (it still scrubs credential-shaped headers).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret value, and every value after a credential-shaped name
    /// (`x-goog-api-key: …`, `Authorization: …`, `key=…`), replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.0.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        scrub_named(&out)
    }
}

/// Whether `c` may stand next to a sensitive name without being part of a longer word.
fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Replaces the value after each sensitive name followed by `:` or `=` (quotes and spaces
/// allowed around them) with `***`. `Authorization` loses the rest of its line.
fn scrub_named(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    // Byte ranges to replace, from the name matches.
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for name in SENSITIVE {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(name) {
            let start = from + pos;
            let end = start + name.len();
            from = end;
            let before = lower[..start].chars().next_back();
            let after = lower[end..].chars().next();
            if before.is_some_and(word_char) || after.is_some_and(word_char) {
                continue;
            }
            // Skip a closing quote, spaces, then the separator.
            let bytes = text.as_bytes();
            let mut i = end;
            while i < bytes.len() && matches!(bytes[i], b'"' | b'\'' | b' ' | b'\t') {
                i += 1;
            }
            if i >= bytes.len() || !matches!(bytes[i], b':' | b'=') {
                continue;
            }
            i += 1;
            while i < bytes.len() && matches!(bytes[i], b'"' | b'\'' | b' ' | b'\t') {
                i += 1;
            }
            let value_start = i;
            let whole_line = *name == "authorization";
            while i < bytes.len() {
                let b = bytes[i];
                let stop = if whole_line {
                    matches!(b, b'\n' | b'\r' | b'"' | b'\'')
                } else {
                    matches!(
                        b,
                        b'\n' | b'\r' | b'"' | b'\'' | b' ' | b'\t' | b',' | b'&' | b';' | b'}'
                    ) || b == b'\\'
                };
                if stop {
                    break;
                }
                i += 1;
            }
            if i > value_start {
                cuts.push((value_start, i));
            }
        }
    }
    if cuts.is_empty() {
        return text.to_owned();
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in cuts {
        if e <= at {
            continue;
        }
        let s = s.max(at);
        out.push_str(&text[at..s]);
        out.push_str("***");
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

/// A vendor's words made fit to show: control characters (newlines included) escaped,
/// cut to `max_chars` characters with the number of characters left out said.
pub fn vendor_text(raw: &str, max_chars: usize) -> String {
    let total = raw.chars().count();
    let kept: String = raw.chars().take(max_chars).collect();
    let mut out = printable(&kept).into_owned();
    if total > max_chars {
        out.push_str(&format!("… ({} more characters)", total - max_chars));
    }
    out
}

/// `text` with every control character (C0, DEL, C1, and the bidirectional overrides
/// that reorder what a terminal shows) written as `\u{…}`, so that a label cannot move the
/// cursor, retitle the window or hide text.
pub fn printable(text: &str) -> Cow<'_, str> {
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(bad) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_secret_longest_first() {
        let s = Redactor::new(["abcd".to_string(), "abcdefgh".into(), "x".into()]);
        assert_eq!(s.scrub("k1=abcdefgh;j=abcd;x"), "k1=***;j=***;x");
    }

    #[test]
    fn scrubs_values_after_credential_names_whatever_their_value() {
        let r = Redactor::default();
        let aws = "The Canonical String for this request should have been 'POST\n/\n\n\
                   content-type:application/x-amz-json-1.1\nhost:rekognition\n\
                   x-amz-date:20261208T000000Z\nx-amz-security-token:FwoGZXIvYXdzEJr//token\n'";
        let out = r.scrub(aws);
        assert!(!out.contains("FwoGZXIvYXdzEJr"), "{out}");
        assert!(out.contains("x-amz-date:20261208T000000Z"), "{out}");
        let json = r#"{"headers":{"x-goog-api-key":"AIzaSyD-leak","Ocp-Apim-Subscription-Key": "0123abcd"}}"#;
        let out = r.scrub(json);
        assert!(
            !out.contains("AIzaSyD-leak") && !out.contains("0123abcd"),
            "{out}"
        );
        let out = r.scrub("Authorization: Bearer hf_secret_value\nnext line");
        assert_eq!(out, "Authorization: ***\nnext line");
        let out = r.scrub("GET /v1/images?key=AIza123&x=1");
        assert_eq!(out, "GET /v1/images?key=***&x=1");
        // Words that merely contain a name are left alone.
        assert_eq!(
            r.scrub("monkey: 0.9, tokenizer=x"),
            "monkey: 0.9, tokenizer=x"
        );
    }

    #[test]
    fn vendor_text_is_short_and_printable() {
        let long = "a\u{1b}[2J".to_string() + &"x".repeat(500);
        let out = vendor_text(&long, 10);
        assert!(out.starts_with("a\\u{1b}[2J"), "{out}");
        assert!(out.ends_with("(495 more characters)"), "{out}");
        assert_eq!(
            vendor_text("line\r\nnext\0", 100),
            "line\\u{d}\\u{a}next\\u{0}"
        );
        assert_eq!(printable("plain label"), "plain label");
        assert_eq!(printable("evil\u{202e}txt"), "evil\\u{202e}txt");
    }
}
