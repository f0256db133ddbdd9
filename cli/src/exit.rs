//! Exit codes, and turning an error into one line on stderr.

use std::process::ExitCode;

use promote_core::Error;

use crate::output::{CLOSED_PIPE_EXIT, ClosedPipe};

// 0: promoted, already present, or the command did what it was asked (ExitCode::SUCCESS).
/// `doctor` found a problem (details above the summary).
pub(crate) const CHECK_FAILED: u8 = 1;
/// Bad usage, invalid input (key, digest, path), or a configuration error.
pub(crate) const USAGE: u8 = 2;
/// The key already holds different content (or something is in the way); nothing was replaced.
pub(crate) const CONFLICT: u8 = 3;
/// The bytes were not what was expected (size or SHA-256); nothing was published.
pub(crate) const VERIFY: u8 = 4;
/// No object at that key.
pub(crate) const NOT_FOUND: u8 = 5;
/// The backend or local I/O failed (disk full, network, permissions; retry may help), or the
/// storage the settings name does not exist (an S3 bucket).
pub(crate) const IO: u8 = 6;
/// `config validate` found the configuration invalid (every problem is listed above).
pub(crate) const INVALID_CONFIG: u8 = 7;

/// 128 + SIGINT: interrupted by Ctrl-C (the staged write discarded). A closed stdout is
/// [`CLOSED_PIPE_EXIT`] (141).
pub(crate) const INTERRUPTED: u8 = 130;
/// 128 + SIGTERM: terminated (the staged write discarded).
pub(crate) const TERMINATED: u8 = 143;

/// A usage error the CLI itself detected (wrong combination of arguments, unreadable input path).
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The exit code for a core error.
pub(crate) fn code_for(err: &Error) -> u8 {
    match err {
        Error::InvalidKey { .. } | Error::Unsupported { .. } | Error::Config { .. } | Error::BadSetting { .. } => USAGE,
        Error::AlreadyExists { .. } | Error::Conflict { .. } | Error::VersionMismatch { .. } => CONFLICT,
        Error::DigestMismatch { .. } | Error::SizeMismatch { .. } | Error::Damaged { .. } | Error::Modified { .. } => {
            VERIFY
        }
        Error::NotFound { .. } => NOT_FOUND,
        Error::StorageMissing { .. } => IO,
        _ => IO,
    }
}

/// The exit code for any error: the first core error or usage error in its chain decides.
pub(crate) fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(core) = cause.downcast_ref::<Error>() {
            return code_for(core);
        }
        if cause.downcast_ref::<Usage>().is_some() {
            return USAGE;
        }
    }
    IO
}

/// Prints `promote: error: …` (the whole cause chain on one line) and returns its exit code;
/// with `json` the failure is also a JSON record on stdout (`{"ok": false, "error", "exit"}`).
/// A closed stdout is no error to print: the command ends quietly (see [`ClosedPipe`]).
pub(crate) fn report(err: &anyhow::Error, json: bool) -> ExitCode {
    if err.chain().any(|cause| cause.is::<ClosedPipe>()) {
        return ExitCode::from(CLOSED_PIPE_EXIT);
    }
    let (line, code) = (one_line(err), code(err));
    if json {
        let record = serde_json::json!({ "ok": false, "error": line, "exit": code });
        if crate::output::write_line(format_args!("{record}")).is_err() {
            return ExitCode::from(CLOSED_PIPE_EXIT);
        }
    }
    eprintln!("promote: error: {line}");
    ExitCode::from(code)
}

/// The cause chain on one line, without repeating a cause a message already includes. A
/// configuration error keeps its own line breaks (a TOML syntax error's line, column and caret).
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let mut text = cause.to_string().trim_end().to_owned();
        if line.contains(&text) {
            continue;
        }
        if !matches!(cause.downcast_ref::<Error>(), Some(Error::Config { .. })) {
            text = text.replace('\n', " ");
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    if let Some(hint) = hint(err)
        && !line.contains("--")
    {
        line.push_str(hint);
    }
    line
}

/// What to do about an error, where the CLI has a flag for it.
fn hint(err: &anyhow::Error) -> Option<&'static str> {
    match err.chain().find_map(|cause| cause.downcast_ref::<Error>())? {
        Error::Conflict { .. } => Some(" (pass --replace to overwrite it)"),
        Error::VersionMismatch { .. } => Some(" (`promote stat KEY` shows the current version)"),
        _ => None,
    }
}
