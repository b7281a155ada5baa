//! Rendering helpers shared by subcommands: JSON for programs, aligned text for people.

pub use robustify_providers::redact::printable;
use robustify_smoothing::table::AccuracyRow;

/// Prints `value` as one line of JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    print_text(&format!("{}\n", serde_json::to_string(value)?))
}

/// Writes `text` to stdout. A reader that went away (`| head`) gives [`OutputClosed`]
/// instead of the panic `println!` gives on a closed pipe: the command stops there (its
/// logs closed and flushed as on any early return) and `main` exits quietly with 0.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(()),
    }
}

/// Whether stderr gets colours: a terminal, and `NO_COLOR` unset or empty
/// (<https://no-color.org>), as clap decides for its own messages.
pub fn colour_stderr() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `error:` or `warning:` as clap prints them: bold red or bold yellow on a terminal.
pub fn label(kind: &str) -> String {
    if !colour_stderr() {
        return format!("{kind}:");
    }
    let colour = if kind == "error" { 31 } else { 33 };
    format!("\x1b[1;{colour}m{kind}:\x1b[0m")
}

/// Standard output was closed by its reader.
#[derive(Debug)]
pub struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for OutputClosed {}

/// `println!` through [`print_text`]: evaluates to `anyhow::Result<()>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::render::print_text(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`print_text`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::render::print_text(&format!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// The certified-accuracy table as aligned text.
pub fn accuracy_table(rows: &[AccuracyRow]) -> String {
    let mut out = String::from("radius  certified accuracy\n");
    for row in rows {
        out.push_str(&format!(
            "{:>6.2}  {:>18.3}\n",
            row.radius, row.certified_accuracy
        ));
    }
    out
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A label in at most `width` characters: its start, then `…`; control characters
/// escaped (a vendor's label never reaches the terminal raw).
pub fn fit_start(text: &str, width: usize) -> String {
    let text = &*printable(text);
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let head: String = text.chars().take(width - 1).collect();
    format!("{head}…")
}

/// `text` in at most `width` characters: kept whole if it fits, else its end after `…`
/// (paths: the file name matters most).
pub fn fit(text: &str, width: usize) -> String {
    let text = &*printable(text);
    let n = text.chars().count();
    if n <= width {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(n - (width - 1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::{fit, fit_start};

    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(12_000), "12,000");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn long_cells_keep_their_end() {
        assert_eq!(fit("goldfish", 10), "goldfish");
        assert_eq!(
            fit("examples/images/golden_retriever.jpg", 22),
            "…/golden_retriever.jpg"
        );
        assert_eq!(
            fit_start("abstain (Chesapeake Bay retriever?)", 22),
            "abstain (Chesapeake B…"
        );
    }
}
