//! What a run shows while it works, drawn from the engine's events: a line on stderr for each
//! item as it fails; a progress bar on a terminal (items done/total, bytes, rate, ETA), plain
//! periodic lines otherwise, nothing with `--quiet`; `--progress always` draws the bar off a
//! terminal too, `--progress never` shows nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use promote_core::Key;
use promote_run::{Event, Events, Failure};

use crate::args::ProgressWhen;
use crate::output;

/// How often the plain lines are printed off a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Said on stderr (once) when the system has no root certificates. Not through `tracing`,
/// whose default level would print it a second time.
const BUNDLED_ROOTS: &str = "promote: no CA certificates on this system; using the bundled Mozilla roots";

/// The run's display: counters, and the bar or plain lines once the run is planned.
#[derive(Debug)]
pub(super) struct Progress {
    when: ProgressWhen,
    quiet: bool,
    json: bool,
    /// Set when the run is planned (the total is known then).
    shown: OnceLock<Arc<Shown>>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shown {
    total: u64,
    items: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    /// A display as `when` says: a bar when stderr is a terminal (or `always`), lines otherwise
    /// (`auto`), nothing with `quiet`, `never`, or `json` (`auto`). Failures are always said.
    pub(super) fn new(when: ProgressWhen, quiet: bool, json: bool) -> Self {
        Self { when, quiet, json, shown: OnceLock::new(), ticker: Mutex::new(None) }
    }

    /// Starts the display over `total` items.
    fn start(&self, total: u64) {
        let terminal = std::io::stderr().is_terminal();
        let shown = self.when.shown(self.quiet, self.json, terminal);
        let bar = (shown && (terminal || self.when == ProgressWhen::Always)).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), crate::stderr_term::draw_target());
            let style =
                ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} items  {msg}  eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        let state = Arc::new(Shown {
            total,
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            bar,
            plain: shown && !terminal && self.when == ProgressWhen::Auto,
        });
        if self.shown.set(Arc::clone(&state)).is_ok() {
            let ticker = state.spawn_ticker();
            *self.ticker.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = ticker;
        }
    }

    /// One more item finished; a failed one is said at once, on stderr above the bar (like
    /// `put`'s per-file errors, also with `--quiet` and `--json`: an error is not chatter):
    /// `promote: failed KEY: REASON: MESSAGE`.
    fn item_done(&self, key: &Key, failure: Option<&Failure>) {
        let shown = self.shown.get();
        if let Some(shown) = shown {
            shown.items.fetch_add(1, Ordering::Relaxed);
        }
        let bar = shown.and_then(|s| s.bar.as_ref());
        if let Some(failed) = failure {
            let line = failure_line(key, failed);
            match bar {
                Some(bar) => bar.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
        if let Some(bar) = bar {
            bar.inc(1);
        }
    }

    /// Stops the ticker and removes the bar (before the summary is printed).
    pub(super) fn finish(&self) {
        if let Some(ticker) = self.ticker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            ticker.abort();
        }
        if let Some(bar) = self.shown.get().and_then(|s| s.bar.as_ref()) {
            bar.finish_and_clear();
        }
    }
}

impl Events for Progress {
    fn event(&self, event: Event) {
        match event {
            Event::Planned { items, .. } => self.start(items),
            Event::Bytes { n, .. } => {
                if let Some(shown) = self.shown.get() {
                    shown.bytes.fetch_add(n, Ordering::Relaxed);
                }
            }
            Event::ItemDone { key, failure, .. } => self.item_done(&key, failure.as_ref()),
            // Counted as done here; the worker that took its shard over reports it.
            Event::ItemGivenBack { key, .. } => self.item_done(&key, None),
            Event::BundledRoots => eprintln!("{BUNDLED_ROOTS}"),
            // Logged by the engine (`-v`); nothing to draw.
            _ => {}
        }
    }
}

impl Shown {
    fn rate(&self) -> String {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!("{}, {}/s", output::bytes(bytes), output::bytes((bytes as f64 / secs) as u64))
    }

    /// Refreshes the display every so often until aborted.
    fn spawn_ticker(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.bar.is_none() && !self.plain {
            return None;
        }
        let me = Arc::clone(self);
        Some(tokio::spawn(async move {
            let every = if me.plain { PLAIN_EVERY } else { Duration::from_millis(200) };
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            // Ends when `Progress::finish` aborts it (after the run).
            loop {
                tick.tick().await;
                match &me.bar {
                    Some(bar) => bar.set_message(me.rate()),
                    None => eprintln!("run: {}/{} items, {}", me.items.load(Ordering::Relaxed), me.total, me.rate()),
                }
            }
        }))
    }
}

/// The line a failed item gets as it fails.
fn failure_line(key: &Key, failed: &Failure) -> String {
    format!("promote: failed {}: {}: {}", output::shown(key.as_str()), failed.reason, output::shown(&failed.message))
}
