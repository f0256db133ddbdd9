//! The end of a run: the one-line summary on stderr, the `--report` JSON, the exit code.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::item::{Done, Outcome};
use super::manifest::{BadLine, Item};
use super::resume::Decision;
use crate::{exit, output};

/// One manifest line's result.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ItemReport {
    /// 1-based manifest line.
    pub(crate) line: usize,
    /// Destination key (null for a line without one).
    pub(crate) key: Option<String>,
    /// Source as written.
    pub(crate) source: Option<String>,
    /// `promoted`, `already-present`, `done-elsewhere`, `failed`, `skipped`, `not-done` (the run
    /// was interrupted first).
    pub(crate) outcome: &'static str,
    /// `already-complete`, `resume`, `discard`, `fresh`.
    pub(crate) decision: Option<&'static str>,
    /// SHA-256 at the key.
    pub(crate) sha256: Option<String>,
    /// Size at the key.
    pub(crate) size: Option<u64>,
    /// Bytes fetched for it by this process.
    pub(crate) fetched_bytes: u64,
    /// Attempts by this process.
    pub(crate) attempts: u32,
    /// Failure reason (`http-404`, `bad-manifest-line`, …); for an item not done, `interrupted`
    /// (it was in flight) or `not-started`.
    pub(crate) reason: Option<String>,
    /// Failure message.
    pub(crate) error: Option<String>,
    #[serde(skip)]
    code: u8,
}

impl ItemReport {
    /// A processed (or skipped) item.
    pub(crate) fn item(item: &Item, done: &Done) -> Self {
        Self {
            line: item.line,
            key: Some(item.key.to_string()),
            source: Some(item.source_text.clone()),
            outcome: done.outcome.as_str(),
            decision: done.decision.map(Decision::as_str),
            sha256: done.sha256.map(|s| s.to_string()),
            size: done.size,
            fetched_bytes: done.fetched,
            attempts: done.attempts,
            reason: done.failure.as_ref().map(|f| f.reason.clone()),
            error: done.failure.as_ref().map(|f| f.message.clone()),
            code: match (&done.outcome, &done.failure) {
                (Outcome::Failed, Some(f)) => f.code,
                (Outcome::Failed, None) => exit::IO,
                _ => 0,
            },
        }
    }

    /// An item the run was interrupted (by `signal`) before finishing: cut short while
    /// `in_flight` (its partial download, if any, is kept for the next run), or not started.
    pub(crate) fn not_done(item: &Item, signal: &str, in_flight: bool) -> Self {
        let (reason, error) = if in_flight {
            (
                "interrupted",
                format!("stopped by {signal} while in flight; the next run does it (resuming a kept partial download)"),
            )
        } else {
            ("not-started", format!("not started before {signal}; the next run does it"))
        };
        Self {
            line: item.line,
            key: Some(item.key.to_string()),
            source: Some(item.source_text.clone()),
            outcome: NOT_DONE,
            decision: None,
            sha256: None,
            size: None,
            fetched_bytes: 0,
            attempts: 0,
            reason: Some(reason.into()),
            error: Some(error),
            code: 0,
        }
    }

    /// The same report for another manifest line (a repeat of the same job).
    pub(crate) fn for_line(&self, line: usize) -> Self {
        Self { line, ..self.clone() }
    }

    /// A bad manifest line.
    pub(crate) fn bad_line(bad: &BadLine) -> Self {
        Self {
            line: bad.line,
            key: bad.key.clone(),
            source: bad.source.clone(),
            outcome: Outcome::Failed.as_str(),
            decision: None,
            sha256: None,
            size: None,
            fetched_bytes: 0,
            attempts: 0,
            reason: Some("bad-manifest-line".into()),
            error: Some(bad.reason.clone()),
            code: exit::USAGE,
        }
    }
}

/// The outcome of an item an interrupted run did not finish.
const NOT_DONE: &str = "not-done";

/// Everything a run reports.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    /// The signal that stopped the run (`SIGINT`, `SIGTERM`), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<&'static str>,
    promoted: u64,
    already_present: u64,
    done_elsewhere: u64,
    failed: u64,
    skipped: u64,
    /// Items an interrupted run did not finish (in flight or not started).
    not_done: u64,
    resumed: u64,
    discarded: u64,
    failures: BTreeMap<String, u64>,
    bytes: u64,
    elapsed_secs: f64,
    items: Vec<ItemReport>,
}

impl Summary {
    /// Totals over `items` (in manifest line order).
    pub(crate) fn new(mut items: Vec<ItemReport>, elapsed: Duration) -> Self {
        items.sort_by_key(|i| i.line);
        let count = |outcome: Outcome| items.iter().filter(|i| i.outcome == outcome.as_str()).count() as u64;
        let decided = |d: Decision| items.iter().filter(|i| i.decision == Some(d.as_str())).count() as u64;
        let mut failures = BTreeMap::new();
        let failed = items.iter().filter(|i| i.outcome == Outcome::Failed.as_str());
        for reason in failed.filter_map(|i| i.reason.as_ref()) {
            *failures.entry(reason.clone()).or_default() += 1;
        }
        Self {
            interrupted: None,
            promoted: count(Outcome::Promoted),
            already_present: count(Outcome::AlreadyPresent),
            done_elsewhere: count(Outcome::Elsewhere),
            failed: count(Outcome::Failed),
            skipped: count(Outcome::Skipped),
            not_done: items.iter().filter(|i| i.outcome == NOT_DONE).count() as u64,
            resumed: decided(Decision::Resume),
            discarded: decided(Decision::Discard),
            failures,
            bytes: items.iter().map(|i| i.fetched_bytes).sum(),
            elapsed_secs: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            items,
        }
    }

    /// Marks the run as stopped by `signal`.
    pub(crate) fn interrupted(self, signal: &'static str) -> Self {
        Self { interrupted: Some(signal), ..self }
    }

    /// Whether a signal stopped the run.
    pub(crate) fn was_interrupted(&self) -> bool {
        self.interrupted.is_some()
    }

    /// `run: 300 items: 297 promoted, 2 already present, 1 failed (http-404: 1); 5 resumed,
    /// 1 discarded; 280.1 MiB in 12.3s (22.8 MiB/s)`; when a signal stopped it, `run: interrupted
    /// by SIGINT: 300 items: 101 promoted, …, 199 not done (8 in flight, 191 not started); …`.
    pub(crate) fn line(&self) -> String {
        let mut head = "run: ".to_owned();
        let mut parts =
            vec![format!("{} promoted", self.promoted), format!("{} already present", self.already_present)];
        if self.done_elsewhere > 0 {
            parts.push(format!("{} done by other workers", self.done_elsewhere));
        }
        let mut failed = format!("{} failed", self.failed);
        if !self.failures.is_empty() {
            let reasons: Vec<String> = self.failures.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            failed.push_str(&format!(" ({})", reasons.join(", ")));
        }
        parts.push(failed);
        if self.skipped > 0 {
            parts.push(format!("{} skipped", self.skipped));
        }
        if let Some(signal) = self.interrupted {
            let cut = self.items.iter().filter(|i| i.reason.as_deref() == Some("interrupted")).count();
            let unstarted = self.not_done as usize - cut;
            parts.push(format!("{} not done ({cut} in flight, {unstarted} not started)", self.not_done));
            head = format!("run: interrupted by {signal}: ");
        }
        let secs = self.elapsed_secs.max(1e-3);
        format!(
            "{head}{} items: {}; {} resumed, {} discarded; {} in {:.1}s ({}/s)",
            self.items.len(),
            parts.join(", "),
            self.resumed,
            self.discarded,
            output::bytes(self.bytes),
            self.elapsed_secs,
            output::bytes((self.bytes as f64 / secs) as u64)
        )
    }

    /// 0 when nothing failed, else the highest failure code (2 bad line, 3 conflict,
    /// 4 verification, 6 fetch or I/O).
    pub(crate) fn exit_code(&self) -> u8 {
        self.items.iter().map(|i| i.code).max().unwrap_or(0)
    }

    /// The `--report` JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(line: usize, outcome: Outcome, decision: Option<Decision>, reason: Option<&str>, code: u8) -> ItemReport {
        ItemReport {
            line,
            key: Some(format!("k{line}")),
            source: None,
            outcome: outcome.as_str(),
            decision: decision.map(Decision::as_str),
            sha256: None,
            size: None,
            fetched_bytes: 1 << 20,
            attempts: 1,
            reason: reason.map(str::to_owned),
            error: None,
            code,
        }
    }

    #[test]
    fn summary_counts_and_exit_code() {
        let items = vec![
            report(3, Outcome::Failed, Some(Decision::Fresh), Some("http-404"), exit::IO),
            report(1, Outcome::Promoted, Some(Decision::Resume), None, 0),
            report(2, Outcome::AlreadyPresent, Some(Decision::AlreadyComplete), None, 0),
            ItemReport::bad_line(&BadLine { line: 4, reason: "not json".into(), key: None, source: None }),
            report(5, Outcome::Promoted, Some(Decision::Discard), None, 0),
            report(6, Outcome::Elsewhere, None, None, 0),
        ];
        let summary = Summary::new(items, Duration::from_secs(2));
        let line = summary.line();
        assert!(
            line.starts_with(
                "run: 6 items: 2 promoted, 1 already present, 1 done by other workers, 2 failed (bad-manifest-line: 1, http-404: 1); 1 resumed, 1 discarded; 5.0 MiB in 2.0s"
            ),
            "{line}"
        );
        assert_eq!(summary.exit_code(), exit::IO);
        let json = summary.json();
        assert_eq!(json["items"][0]["line"], 1);
        assert_eq!(json["failures"]["http-404"], 1);
        assert_eq!(json["done_elsewhere"], 1);
        assert_eq!(json["items"][3]["key"], serde_json::Value::Null);
        let only_bad = Summary::new(
            vec![ItemReport::bad_line(&BadLine { line: 1, reason: "x".into(), key: None, source: None })],
            Duration::ZERO,
        );
        assert_eq!(only_bad.exit_code(), exit::USAGE);
    }

    #[test]
    fn an_interrupted_summary_counts_what_was_not_done_apart_from_failures() {
        let mut cut = report(2, Outcome::Failed, None, Some("interrupted"), 0);
        cut.outcome = NOT_DONE;
        let mut unstarted = report(3, Outcome::Failed, None, Some("not-started"), 0);
        unstarted.outcome = NOT_DONE;
        let items = vec![report(1, Outcome::Promoted, Some(Decision::Fresh), None, 0), cut, unstarted];
        let summary = Summary::new(items, Duration::from_secs(1));
        assert!(!summary.was_interrupted());
        let summary = summary.interrupted("SIGTERM");
        let line = summary.line();
        assert!(
            line.starts_with(
                "run: interrupted by SIGTERM: 3 items: 1 promoted, 0 already present, 0 failed, 2 not done (1 in flight, 1 not started); "
            ),
            "{line}"
        );
        let json = summary.json();
        assert_eq!(
            (&json["interrupted"], &json["not_done"], &json["failed"]),
            (&"SIGTERM".into(), &2.into(), &0.into())
        );
        assert_eq!(json["failures"], serde_json::json!({}));
        assert_eq!(summary.exit_code(), 0, "the caller exits with the signal's code");
    }
}
