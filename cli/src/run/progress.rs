//! What a run shows while it works: a line on stderr for each item as it fails; a progress bar
//! on a terminal (items done/total, bytes, rate, ETA), plain periodic lines otherwise, nothing
//! with `--quiet`; `--progress always` draws the bar off a terminal too, `--progress never` shows
//! nothing.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use promote_core::Key;

use super::item::Failed;
use crate::args::ProgressWhen;
use crate::output;

/// How often the plain lines are printed off a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Counters shared by the workers, and whatever displays them.
#[derive(Debug)]
pub(crate) struct Progress {
    total: u64,
    items: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    /// Progress over `total` items, as `when` says: a bar when stderr is a terminal (or
    /// `always`), lines otherwise (`auto`), nothing with `quiet`, `never`, or `json` (`auto`).
    pub(crate) fn new(total: u64, when: ProgressWhen, quiet: bool, json: bool) -> Arc<Self> {
        let terminal = std::io::stderr().is_terminal();
        let shown = when.shown(quiet, json, terminal);
        let bar = (shown && (terminal || when == ProgressWhen::Always)).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), crate::stderr_term::draw_target());
            let style =
                ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} items  {msg}  eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        Arc::new(Self {
            total,
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            bar,
            plain: shown && !terminal && when == ProgressWhen::Auto,
        })
    }

    /// `n` more bytes fetched.
    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// One more item finished; a failed one is said at once, on stderr above the bar (like
    /// `put`'s per-file errors, also with `--quiet` and `--json`: an error is not chatter):
    /// `promote: failed KEY: REASON: MESSAGE`.
    pub(crate) fn item_done(&self, key: &Key, failure: Option<&Failed>) {
        self.items.fetch_add(1, Ordering::Relaxed);
        if let Some(failed) = failure {
            let line = failure_line(key, failed);
            match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn rate(&self) -> String {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!("{}, {}/s", output::bytes(bytes), output::bytes((bytes as f64 / secs) as u64))
    }

    /// Refreshes the display every so often until dropped; call once.
    pub(crate) fn spawn_ticker(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.bar.is_none() && !self.plain {
            return None;
        }
        let me = Arc::clone(self);
        Some(tokio::spawn(async move {
            let every = if me.plain { PLAIN_EVERY } else { Duration::from_millis(200) };
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            // Ends when the caller aborts the returned handle (after the run).
            loop {
                tick.tick().await;
                match &me.bar {
                    Some(bar) => bar.set_message(me.rate()),
                    None => eprintln!("run: {}/{} items, {}", me.items.load(Ordering::Relaxed), me.total, me.rate()),
                }
            }
        }))
    }

    /// Removes the bar (before the summary is printed).
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The line a failed item gets as it fails.
fn failure_line(key: &Key, failed: &Failed) -> String {
    format!("promote: failed {}: {}: {}", output::shown(key.as_str()), failed.reason, output::shown(&failed.message))
}
