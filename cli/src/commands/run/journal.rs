//! `--report FILE.jsonl`: the report as JSON Lines, written as the run goes. Each item's line is
//! appended when the item ends (flushed at least once a second while items end), so a long
//! run's report can be followed (`tail -f`), and one that is killed leaves the lines of what it
//! finished. Bad lines come first; when the run ends, the lines of the items no process
//! reported here (skipped and repeated lines, items done elsewhere or not done) follow, then one
//! line of totals: `{"totals": {…}}`, the fields of the JSON report but `items`. Every line comes
//! from the run's events ([`Event::Reported`]); [`Journal::finish`] adds those of a summary that
//! kept its reports and did not send them (a dry run's).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use promote_run::report::ItemReport;
use promote_run::{Event, Events, Summary};

/// Longest time an item's line waits in the buffer while other items end.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Whether `path` asks for a JSON Lines report.
pub(super) fn wanted(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("jsonl"))
}

/// A JSON Lines report being written.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    out: BufWriter<File>,
    /// Manifest lines written, by line number.
    written: Vec<bool>,
    last_flush: Instant,
    /// The first write that failed (said when the run ends; the run itself goes on).
    failed: Option<std::io::Error>,
}

impl Journal {
    /// Creates (or empties) the report at `path`, before any item starts.
    ///
    /// # Errors
    ///
    /// When the file cannot be created.
    pub(super) fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating the report {}", path.display()))?;
        let state = State { out: BufWriter::new(file), written: Vec::new(), last_flush: Instant::now(), failed: None };
        Ok(Self { path: path.to_owned(), state: Mutex::new(state) })
    }

    /// Appends `report`'s line.
    pub(super) fn item(&self, report: &ItemReport) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.write(report);
        if state.last_flush.elapsed() >= FLUSH_EVERY {
            state.flush();
        }
    }

    /// Flushes the lines written [`FLUSH_EVERY`] until dropped, for the items that end while
    /// no other does.
    pub(super) fn flusher(self: &std::sync::Arc<Self>) -> Flusher {
        let journal = std::sync::Arc::clone(self);
        Flusher(tokio::spawn(async move {
            // Ends when aborted (`Flusher` dropped).
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                journal.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).flush();
            }
        }))
    }

    /// Appends the lines of `summary`'s items not written yet, then the totals, and flushes.
    ///
    /// # Errors
    ///
    /// When a write failed, during the run or now.
    pub(super) fn finish(&self, summary: &Summary) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for report in &summary.items {
            if !state.written.get(report.line).copied().unwrap_or(false) {
                state.write(report);
            }
        }
        let totals = serde_json::json!({ "totals": summary.totals_json() });
        if let Err(err) = writeln!(state.out, "{totals}").and_then(|()| state.out.flush()) {
            state.failed.get_or_insert(err);
        }
        match state.failed.take() {
            Some(err) => Err(err).with_context(|| format!("writing the report {}", self.path.display())),
            None => Ok(()),
        }
    }
}

/// The task of [`Journal::flusher`], stopped when dropped.
pub(super) struct Flusher(tokio::task::JoinHandle<()>);

impl Drop for Flusher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl State {
    fn flush(&mut self) {
        self.last_flush = Instant::now();
        if let Err(err) = self.out.flush() {
            self.failed.get_or_insert(err);
        }
    }

    fn write(&mut self, report: &ItemReport) {
        if self.written.len() <= report.line {
            self.written.resize(report.line + 1, false);
        }
        self.written[report.line] = true;
        let written = serde_json::to_writer(&mut self.out, report)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(err) = written {
            self.failed.get_or_insert(err);
        }
    }
}

/// A run's events, to the display and to a JSON Lines report when there is one.
pub(super) struct Tee<E> {
    /// The display (progress bar and lines).
    pub(super) display: std::sync::Arc<E>,
    /// The report written as the run goes.
    pub(super) journal: Option<std::sync::Arc<Journal>>,
}

impl<E: Events> Events for Tee<E> {
    fn event(&self, event: Event) {
        if let (Event::Reported(report), Some(journal)) = (&event, &self.journal) {
            journal.item(report);
        }
        self.display.event(event);
    }
}
