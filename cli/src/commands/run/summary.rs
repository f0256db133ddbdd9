//! The end of a run as the CLI shows it: the one-line summary on stderr, the `--report` JSON,
//! the `--json` summary on stdout, and the exit code.

use std::path::PathBuf;

use anyhow::Context;
use promote_run::{FailureKind, Summary};

use crate::exit;
use crate::output;

/// Where and how a summary is shown.
#[derive(Debug)]
pub(super) struct Show {
    /// `--report`: where to write the JSON report.
    pub(super) report: Option<PathBuf>,
    /// `--quiet`: no summary line (unless the run was interrupted).
    pub(super) quiet: bool,
    /// `--json`: the summary as JSON on stdout.
    pub(super) json: bool,
}

impl Show {
    /// Writes the report, prints the summary, and returns the exit code for its items.
    ///
    /// # Errors
    ///
    /// When the report cannot be written, or stdout is closed.
    pub(super) fn finish(&self, summary: &Summary) -> anyhow::Result<u8> {
        if let Some(path) = &self.report {
            let text = serde_json::to_string_pretty(&summary.to_json())?;
            std::fs::write(path, text + "\n").with_context(|| format!("writing the report {}", path.display()))?;
        }
        if self.json {
            output::out!("{}", summary.to_json());
        }
        // An interrupted run always says what it did (the signal is no success to keep quiet about).
        if !self.quiet || summary.interrupted.is_some() {
            eprintln!("{}", line(summary));
        }
        Ok(exit_code(summary))
    }
}

/// A dry run's listing on stdout: one line per manifest line, what a run would do with it —
/// `already-complete`, `resume`, `fresh` (fetch), `conflict`, `skipped` (past `--max`, a
/// repeated line) or `bad-line` — then the key and the source.
///
/// # Errors
///
/// When stdout is closed.
pub(super) fn list(summary: &Summary) -> anyhow::Result<()> {
    for item in &summary.items {
        let what = match (&item.decision, &item.reason) {
            (Some(decision), _) => decision.as_str(),
            (None, Some(reason)) if reason == "bad-manifest-line" => "bad-line",
            (None, Some(reason)) => reason.as_str(),
            (None, None) => "skipped",
        };
        let key = item.key.as_deref().unwrap_or("-");
        let source = item.source.as_deref().unwrap_or("-");
        output::out!("{what:<16} {key}  <- {source}");
    }
    Ok(())
}

/// The exit code of a failed item of this kind.
fn code(kind: FailureKind) -> u8 {
    match kind {
        FailureKind::BadLine => exit::USAGE,
        FailureKind::Conflict => exit::CONFLICT,
        FailureKind::Verification => exit::VERIFY,
        FailureKind::Fetch | FailureKind::Io => exit::IO,
    }
}

/// 0 when nothing failed, else the highest failure code (2 bad line, 3 conflict,
/// 4 verification, 6 fetch or I/O). An interrupted run exits with its signal's code instead.
pub(super) fn exit_code(summary: &Summary) -> u8 {
    summary.failure_kinds().map(code).max().unwrap_or(0)
}

/// `run: 300 items: 297 promoted, 2 already present, 1 failed (http-404: 1); 5 resumed,
/// 1 discarded; 280.1 MiB in 12.3s (22.8 MiB/s)`; when a signal stopped it, `run: interrupted
/// by SIGINT: 300 items: 101 promoted, …, 199 not done (8 in flight, 191 not started); …`.
pub(super) fn line(summary: &Summary) -> String {
    let mut head = "run: ".to_owned();
    let mut parts =
        vec![format!("{} promoted", summary.promoted), format!("{} already present", summary.already_present)];
    if summary.done_elsewhere > 0 {
        parts.push(format!("{} done by other workers", summary.done_elsewhere));
    }
    let mut failed = format!("{} failed", summary.failed);
    if !summary.failures.is_empty() {
        let reasons: Vec<String> = summary.failures.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        failed.push_str(&format!(" ({})", reasons.join(", ")));
    }
    parts.push(failed);
    if summary.skipped > 0 {
        parts.push(format!("{} skipped", summary.skipped));
    }
    if let Some(signal) = &summary.interrupted {
        let cut = summary.cut_short();
        let unstarted = summary.not_done - cut;
        parts.push(format!("{} not done ({cut} in flight, {unstarted} not started)", summary.not_done));
        head = format!("run: interrupted by {signal}: ");
    }
    let secs = summary.elapsed_secs.max(1e-3);
    format!(
        "{head}{} items: {}; {} resumed, {} discarded; {} in {:.1}s ({}/s)",
        summary.lines(),
        parts.join(", "),
        summary.resumed,
        summary.discarded,
        output::bytes(summary.bytes),
        summary.elapsed_secs,
        output::bytes((summary.bytes as f64 / secs) as u64)
    )
}

#[cfg(test)]
mod tests {
    use promote_run::{Decision, ItemReport, Outcome};

    use super::*;

    fn report(line: usize, outcome: Outcome, decision: Option<Decision>, reason: Option<&str>) -> ItemReport {
        let kind = match reason {
            Some("bad-manifest-line") => Some(FailureKind::BadLine),
            Some("conflict") => Some(FailureKind::Conflict),
            Some(_) if outcome == Outcome::Failed => Some(FailureKind::Fetch),
            _ => None,
        };
        ItemReport {
            line,
            key: Some(format!("k{line}")),
            source: None,
            outcome,
            decision,
            sha256: None,
            size: None,
            fetched_bytes: 1 << 20,
            attempts: 1,
            reason: reason.map(str::to_owned),
            error: None,
            manifest_size: None,
            manifest_sha256: None,
            kind,
        }
    }

    fn summary(items: Vec<ItemReport>, interrupted: Option<&str>) -> Summary {
        let summary = Summary::new(items, std::time::Duration::from_secs(2));
        match interrupted {
            Some(reason) => summary.interrupted(reason.to_owned()),
            None => summary,
        }
    }

    #[test]
    fn summary_line_and_exit_code() {
        let items = vec![
            report(1, Outcome::Promoted, Some(Decision::Resume), None),
            report(2, Outcome::AlreadyPresent, Some(Decision::AlreadyComplete), None),
            report(3, Outcome::Failed, Some(Decision::Fresh), Some("http-404")),
            report(4, Outcome::Failed, None, Some("bad-manifest-line")),
            report(5, Outcome::Promoted, Some(Decision::Discard), None),
            report(6, Outcome::Elsewhere, None, None),
        ];
        let summary = summary(items, None);
        let line = line(&summary);
        assert!(
            line.starts_with(
                "run: 6 items: 2 promoted, 1 already present, 1 done by other workers, 2 failed (bad-manifest-line: 1, http-404: 1); 1 resumed, 1 discarded; 6.0 MiB in 2.0s"
            ),
            "{line}"
        );
        assert_eq!(exit_code(&summary), exit::IO, "the highest code: I/O over a bad line");
        let only_bad = super::tests::summary(vec![report(1, Outcome::Failed, None, Some("bad-manifest-line"))], None);
        assert_eq!(exit_code(&only_bad), exit::USAGE);
        let conflict = super::tests::summary(
            vec![
                report(1, Outcome::Failed, None, Some("bad-manifest-line")),
                report(2, Outcome::Failed, None, Some("conflict")),
            ],
            None,
        );
        assert_eq!(exit_code(&conflict), exit::CONFLICT);
        let clean = super::tests::summary(vec![report(1, Outcome::Promoted, None, None)], None);
        assert_eq!(exit_code(&clean), 0);
    }

    #[test]
    fn an_interrupted_summary_counts_what_was_not_done_apart_from_failures() {
        let items = vec![
            report(1, Outcome::Promoted, Some(Decision::Fresh), None),
            report(2, Outcome::NotDone, None, Some("interrupted")),
            report(3, Outcome::NotDone, None, Some("not-started")),
        ];
        let summary = summary(items, Some("SIGTERM"));
        let line = line(&summary);
        assert!(
            line.starts_with(
                "run: interrupted by SIGTERM: 3 items: 1 promoted, 0 already present, 0 failed, 2 not done (1 in flight, 1 not started); "
            ),
            "{line}"
        );
        assert_eq!(exit_code(&summary), 0, "the command exits with the signal's code");
    }
}
