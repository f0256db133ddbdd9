//! The end of a run as data: one [`ItemReport`] per manifest line and the [`Summary`] over them.
//! The summary serializes (serde) to the JSON report `promote run --report` writes; turning it
//! into a line of text or an exit code is the caller's business.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::events::{Event, Events};
use crate::item::{Done, FailureKind, Outcome};
use crate::manifest::{BadLine, Item};
use crate::resume::Decision;

/// One manifest line's result.
#[derive(Clone, Debug, Serialize)]
pub struct ItemReport {
    /// 1-based manifest line.
    pub line: usize,
    /// Destination key (null for a line without one).
    pub key: Option<String>,
    /// Source as written.
    pub source: Option<String>,
    /// `promoted`, `already-present`, `done-elsewhere`, `failed`, `skipped`, `not-done` (the run
    /// was cancelled first).
    pub outcome: Outcome,
    /// `already-complete`, `resume`, `discard`, `fresh`.
    pub decision: Option<Decision>,
    /// SHA-256 at the key.
    pub sha256: Option<String>,
    /// Size at the key.
    pub size: Option<u64>,
    /// Bytes fetched for it by this process.
    pub fetched_bytes: u64,
    /// Attempts by this process.
    pub attempts: u32,
    /// Failure reason (`http-404`, `bad-manifest-line`, …); for an item not done, `interrupted`
    /// (it was in flight) or `not-started`.
    pub reason: Option<String>,
    /// Failure message.
    pub error: Option<String>,
    /// The size the manifest gives, if it gives one.
    pub manifest_size: Option<u64>,
    /// The SHA-256 the manifest gives, if it gives one.
    pub manifest_sha256: Option<String>,
    /// What kind of failure, for a failed item (not in the JSON report).
    #[serde(skip)]
    pub kind: Option<FailureKind>,
}

impl ItemReport {
    /// A processed (or skipped) item.
    pub(crate) fn item(item: &Item, done: &Done) -> Self {
        Self {
            line: item.line,
            key: Some(item.key.to_string()),
            source: Some(item.source_text.clone()),
            outcome: done.outcome,
            decision: done.decision,
            sha256: done.sha256.map(|s| s.to_string()),
            size: done.size,
            fetched_bytes: done.fetched,
            attempts: done.attempts,
            reason: done.failure.as_ref().map(|f| f.reason.clone()),
            error: done.failure.as_ref().map(|f| f.message.clone()),
            manifest_size: item.expected.size,
            manifest_sha256: item.expected.sha256.map(|s| s.to_string()),
            kind: match (&done.outcome, &done.failure) {
                (Outcome::Failed, Some(f)) => Some(f.kind),
                (Outcome::Failed, None) => Some(FailureKind::Io),
                _ => None,
            },
        }
    }

    /// An item the run was cancelled (by `reason`, such as `SIGINT`) before finishing: cut
    /// short while `in_flight` (its partial download, if any, is kept for the next run), or
    /// not started.
    pub(crate) fn not_done(item: &Item, reason: &str, in_flight: bool) -> Self {
        let (why, error) = if in_flight {
            (
                "interrupted",
                format!("stopped by {reason} while in flight; the next run does it (resuming a kept partial download)"),
            )
        } else {
            ("not-started", format!("not started before {reason}; the next run does it"))
        };
        Self {
            line: item.line,
            key: Some(item.key.to_string()),
            source: Some(item.source_text.clone()),
            outcome: Outcome::NotDone,
            decision: None,
            sha256: None,
            size: None,
            fetched_bytes: 0,
            attempts: 0,
            reason: Some(why.into()),
            error: Some(error),
            manifest_size: item.expected.size,
            manifest_sha256: item.expected.sha256.map(|s| s.to_string()),
            kind: None,
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
            outcome: Outcome::Failed,
            decision: None,
            sha256: None,
            size: None,
            fetched_bytes: 0,
            attempts: 0,
            reason: Some("bad-manifest-line".into()),
            error: Some(bad.reason.clone()),
            manifest_size: None,
            manifest_sha256: None,
            kind: Some(FailureKind::BadLine),
        }
    }
}

/// Everything a run reports: counts over the items, and, when asked for
/// ([`Options::keep_items`](crate::Options::keep_items)) or for a dry run, each item's report in
/// manifest order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// What cancelled the run (the word its `cancel` future gave, such as `SIGINT`), if
    /// anything did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// Items promoted by this run.
    pub promoted: u64,
    /// Items whose key already held the expected bytes.
    pub already_present: u64,
    /// Items finished by workers on other machines.
    pub done_elsewhere: u64,
    /// Items that failed (bad lines included).
    pub failed: u64,
    /// Items not attempted (a dry run, past `max`).
    pub skipped: u64,
    /// Items a cancelled run did not finish (in flight or not started).
    pub not_done: u64,
    /// Items whose download resumed from kept bytes.
    pub resumed: u64,
    /// Items whose kept bytes were discarded.
    pub discarded: u64,
    /// Failed items by reason.
    pub failures: BTreeMap<String, u64>,
    /// Bytes fetched by this process.
    pub bytes: u64,
    /// How long the run took, in seconds (to the millisecond).
    pub elapsed_secs: f64,
    /// Every manifest line's report, by line, when kept (see above); else empty, and each
    /// report went to the run's events as [`Event::Reported`].
    pub items: Vec<ItemReport>,
    /// Manifest lines reported.
    #[serde(skip)]
    lines: u64,
    /// Items a cancelled run cut short while in flight.
    #[serde(skip)]
    cut_short: u64,
    /// The kinds of failure among the failed items.
    #[serde(skip)]
    kinds: std::collections::BTreeSet<FailureKind>,
}

impl Summary {
    /// Totals over `items` (kept, sorted into manifest line order), over `elapsed`.
    pub fn new(mut items: Vec<ItemReport>, elapsed: Duration) -> Self {
        let mut summary = Self::default();
        items.iter().for_each(|item| summary.count(item));
        items.sort_by_key(|i| i.line);
        summary.items = items;
        summary.elapsed(elapsed)
    }

    /// Counts `item` into the totals (not into [`Self::items`]).
    pub(crate) fn count(&mut self, item: &ItemReport) {
        self.lines += 1;
        self.bytes += item.fetched_bytes;
        let tally = match item.outcome {
            Outcome::Promoted => &mut self.promoted,
            Outcome::AlreadyPresent => &mut self.already_present,
            Outcome::Elsewhere => &mut self.done_elsewhere,
            Outcome::Failed => &mut self.failed,
            Outcome::Skipped => &mut self.skipped,
            Outcome::NotDone => &mut self.not_done,
        };
        *tally += 1;
        match item.decision {
            Some(Decision::Resume) => self.resumed += 1,
            Some(Decision::Discard) => self.discarded += 1,
            _ => {}
        }
        if item.outcome == Outcome::Failed {
            if let Some(reason) = &item.reason {
                *self.failures.entry(reason.clone()).or_default() += 1;
            }
            self.kinds.insert(item.kind.unwrap_or(FailureKind::Io));
        }
        if item.reason.as_deref() == Some("interrupted") {
            self.cut_short += 1;
        }
    }

    /// The run took `elapsed`.
    pub(crate) fn elapsed(self, elapsed: Duration) -> Self {
        Self { elapsed_secs: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0, ..self }
    }

    /// Marks the run as cancelled by `reason`.
    pub fn interrupted(self, reason: String) -> Self {
        Self { interrupted: Some(reason), ..self }
    }

    /// Manifest lines reported (kept in [`Self::items`] or not).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Items a cancelled run cut short while in flight (the rest of [`Self::not_done`] never
    /// started).
    pub fn cut_short(&self) -> u64 {
        self.cut_short
    }

    /// The kinds of failure among the failed items, each once.
    pub fn failure_kinds(&self) -> impl Iterator<Item = FailureKind> + '_ {
        self.kinds.iter().copied()
    }

    /// The JSON report.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The JSON report's totals: everything but `items` (the same fields as [`Self::to_json`]'s).
    pub fn totals_json(&self) -> serde_json::Value {
        let mut totals = serde_json::json!({
            "promoted": self.promoted,
            "already_present": self.already_present,
            "done_elsewhere": self.done_elsewhere,
            "failed": self.failed,
            "skipped": self.skipped,
            "not_done": self.not_done,
            "resumed": self.resumed,
            "discarded": self.discarded,
            "failures": self.failures,
            "bytes": self.bytes,
            "elapsed_secs": self.elapsed_secs,
        });
        if let Some(reason) = &self.interrupted {
            totals["interrupted"] = reason.as_str().into();
        }
        totals
    }
}

/// A run's reports as they are made: counted into the summary, sent to the run's events, kept
/// when asked for. The report of a job that repeated lines share is held for them.
pub(crate) struct Reporter {
    events: Arc<dyn Events>,
    keep: bool,
    state: Mutex<(Summary, HashMap<String, ItemReport>)>,
    /// The jobs of repeated lines.
    repeated: HashSet<String>,
}

impl Reporter {
    pub(crate) fn new<'a>(events: Arc<dyn Events>, keep: bool, repeated: impl Iterator<Item = &'a String>) -> Self {
        let repeated = repeated.cloned().collect();
        Self { events, keep, state: Mutex::new((Summary::default(), HashMap::new())), repeated }
    }

    /// Counts `report` (of job `job`, if it is an item's), keeps it when asked for, and sends
    /// it to the events.
    pub(crate) fn report(&self, report: ItemReport, job: Option<&str>) {
        {
            let mut state = crate::lock(&self.state);
            state.0.count(&report);
            if let Some(job) = job.filter(|job| self.repeated.contains(*job)) {
                state.1.insert(job.to_owned(), report.clone());
            }
            if self.keep {
                state.0.items.push(report.clone());
            }
        }
        self.events.event(Event::Reported(Box::new(report)));
    }

    /// The report of job `job`, when it is a repeated line's job and was reported.
    pub(crate) fn reported(&self, job: &str) -> Option<ItemReport> {
        crate::lock(&self.state).1.get(job).cloned()
    }

    /// The summary (its elapsed time not set), the kept reports in manifest line order.
    pub(crate) fn finish(self) -> Summary {
        let (mut summary, _) = self.state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        summary.items.sort_by_key(|i| i.line);
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(line: usize, outcome: Outcome, decision: Option<Decision>, reason: Option<&str>) -> ItemReport {
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
            kind: (outcome == Outcome::Failed).then_some(FailureKind::Fetch),
        }
    }

    #[test]
    fn summary_counts_kinds_and_json() {
        let items = vec![
            report(3, Outcome::Failed, Some(Decision::Fresh), Some("http-404")),
            report(1, Outcome::Promoted, Some(Decision::Resume), None),
            report(2, Outcome::AlreadyPresent, Some(Decision::AlreadyComplete), None),
            ItemReport::bad_line(&BadLine { line: 4, reason: "not json".into(), key: None, source: None }),
            report(5, Outcome::Promoted, Some(Decision::Discard), None),
            report(6, Outcome::Elsewhere, None, None),
        ];
        let summary = Summary::new(items, Duration::from_micros(2_345_678));
        assert_eq!(summary.elapsed_secs, 2.346, "to the millisecond");
        assert_eq!((summary.lines(), summary.cut_short()), (6, 0));
        assert_eq!((summary.promoted, summary.already_present, summary.done_elsewhere, summary.failed), (2, 1, 1, 2));
        assert_eq!((summary.resumed, summary.discarded, summary.bytes), (1, 1, 5 << 20));
        let mut kinds: Vec<FailureKind> = summary.failure_kinds().collect();
        kinds.sort();
        assert_eq!(kinds, vec![FailureKind::BadLine, FailureKind::Fetch]);
        let json = summary.to_json();
        assert_eq!(json["items"][0]["line"], 1);
        assert_eq!(json["items"][0]["outcome"], "promoted");
        assert_eq!(json["items"][0]["decision"], "resume");
        assert_eq!(json["items"][5]["outcome"], "done-elsewhere");
        assert_eq!(json["failures"]["http-404"], 1);
        assert_eq!(json["failures"]["bad-manifest-line"], 1);
        assert_eq!(json["done_elsewhere"], 1);
        assert_eq!(json["items"][3]["key"], serde_json::Value::Null);
        assert!(json["items"][0].get("kind").is_none(), "the kind is not part of the report");
        assert!(json.get("interrupted").is_none());
        let mut without_items = json.clone();
        without_items.as_object_mut().unwrap().remove("items");
        assert_eq!(summary.totals_json(), without_items, "the totals are the report's fields but items");
        let interrupted = summary.interrupted("SIGINT".into());
        let mut without_items = interrupted.to_json();
        without_items.as_object_mut().unwrap().remove("items");
        assert_eq!(interrupted.totals_json(), without_items);
    }

    /// A failed item's report carries its failure's kind (I/O when it has no failure), which
    /// the exit code comes from; any other outcome carries none.
    #[test]
    fn an_items_report_has_the_kind_of_its_failure() {
        let item = Item {
            line: 7,
            source_text: "https://h/a".into(),
            source: crate::manifest::Source::Http,
            key: promote_core::Key::new("k").unwrap(),
            expected: promote_core::Expected::default(),
        };
        let mut done = Done::skipped();
        assert_eq!(ItemReport::item(&item, &done).kind, None);
        done.outcome = Outcome::Failed;
        assert_eq!(ItemReport::item(&item, &done).kind, Some(FailureKind::Io));
        done.failure = Some(crate::Failure::new("conflict", FailureKind::Conflict, "other bytes"));
        let report = ItemReport::item(&item, &done);
        assert_eq!(
            (report.kind, report.reason.as_deref(), report.line),
            (Some(FailureKind::Conflict), Some("conflict"), 7)
        );
        done.outcome = Outcome::Promoted;
        assert_eq!(ItemReport::item(&item, &done).kind, None);
    }

    #[test]
    fn an_interrupted_summary_counts_what_was_not_done_apart_from_failures() {
        let mut cut = report(2, Outcome::NotDone, None, Some("interrupted"));
        cut.kind = None;
        let mut unstarted = report(3, Outcome::NotDone, None, Some("not-started"));
        unstarted.kind = None;
        let items = vec![report(1, Outcome::Promoted, Some(Decision::Fresh), None), cut, unstarted];
        let summary = Summary::new(items, Duration::from_secs(1)).interrupted("SIGTERM".into());
        assert_eq!((summary.not_done, summary.cut_short(), summary.failed), (2, 1, 0));
        assert_eq!(summary.failure_kinds().count(), 0);
        let json = summary.to_json();
        assert_eq!(
            (&json["interrupted"], &json["not_done"], &json["failed"]),
            (&"SIGTERM".into(), &2.into(), &0.into())
        );
        assert_eq!(json["items"][1]["outcome"], "not-done");
        assert_eq!(json["failures"], serde_json::json!({}));
    }
}
