//! What the CLI prints: receipts, sizes, and the tracing setup; and what happens when nobody
//! reads it any more (a closed pipe ends the command quietly, like a Unix tool).

use promote_core::Outcome;
use serde_json::json;

/// Logs go to stderr: `-v` info, `-vv` debug, `-vvv` trace; otherwise `PROMOTE_LOG`, then
/// `RUST_LOG` (a level such as `debug`, or directives such as `promote_local=trace`); otherwise
/// warnings only. Colour only when stderr is a terminal and `NO_COLOR` is not set.
pub(crate) fn init_tracing(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match verbose {
        0 => EnvFilter::try_from_env("PROMOTE_LOG")
            .or_else(|_| EnvFilter::try_from_default_env())
            .unwrap_or_else(|_| EnvFilter::new("warn")),
        1 => EnvFilter::new("info"),
        2 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colour).with_writer(std::io::stderr).try_init();
}

/// One line (or one JSON object) for a successful promotion.
pub(crate) fn receipt(outcome: &Outcome, json: bool) -> String {
    let r = outcome.receipt();
    if json {
        json!({
            "outcome": outcome.label(),
            "key": r.key.as_str(),
            "size": r.size,
            "sha256": r.sha256.to_string(),
            "version": r.version,
        })
        .to_string()
    } else {
        format!("{:<15} {}  {}  sha256:{}", outcome.label(), r.key, bytes(r.size), r.sha256)
    }
}

/// `1.5 MiB`-style sizes: the one way sizes print for humans (JSON has exact bytes).
pub(crate) fn bytes(n: u64) -> String {
    promote_core::kit::format_size(n)
}

/// A path or name as printed: control characters escaped (`\n`, `\u{1b}`), the rest as is.
pub(crate) fn shown(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// [`shown`] for a path.
pub(crate) fn path(p: &std::path::Path) -> String {
    shown(&p.to_string_lossy())
}

/// Standard output was closed by its reader (`promote ls | head -1`). Not a failure to report:
/// the command stops quietly, with the exit status a shell gives a tool that SIGPIPE ended.
#[derive(Debug)]
pub(crate) struct ClosedPipe;

impl std::fmt::Display for ClosedPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for ClosedPipe {}

/// 128 + SIGPIPE, what a shell reports for a tool ended by a closed pipe.
pub(crate) const CLOSED_PIPE_EXIT: u8 = 141;

/// Writes one line to stdout; a closed pipe becomes [`ClosedPipe`].
///
/// # Errors
///
/// [`ClosedPipe`] when the reader has gone; other write errors as they are.
pub(crate) fn write_line(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(stdout_error)
}

/// Maps a write error on stdout: a closed pipe to [`ClosedPipe`], anything else as it is.
pub(crate) fn stdout_error(err: std::io::Error) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        ClosedPipe.into()
    } else {
        anyhow::Error::new(err).context("writing to standard output")
    }
}

/// `println!` that stops the command quietly when stdout is a closed pipe (see [`ClosedPipe`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))?
    };
}
pub(crate) use out;
