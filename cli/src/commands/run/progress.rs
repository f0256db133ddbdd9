//! What a run shows while it works, drawn from the engine's events: a line on stderr for each
//! item as it fails; a progress bar on a terminal, plain periodic lines otherwise, nothing with
//! `--quiet`; `--progress always` draws the bar off a terminal too, `--progress never` shows
//! nothing. When the manifest gives every item a size, the bar measures bytes (done and in
//! flight of the total, so a large item moves it and its ETA while it downloads); otherwise it
//! counts items and shows no ETA, which items of unknown size would make a guess.

use std::collections::HashMap;
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
    /// The items' bytes, when the manifest sizes every item: the bar then measures bytes.
    total_bytes: Option<u64>,
    items: AtomicU64,
    bytes: AtomicU64,
    /// Bytes of the items finished (their sizes, or what they fetched).
    done_bytes: AtomicU64,
    /// Bytes fetched so far by each item in flight, by manifest line.
    in_flight: Mutex<HashMap<usize, u64>>,
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

    /// Starts the display over `total` items (of `total_bytes`, when every size is known).
    fn start(&self, total: u64, total_bytes: Option<u64>) {
        let terminal = std::io::stderr().is_terminal();
        let shown = self.when.shown(self.quiet, self.json, terminal);
        let bar = (shown && (terminal || self.when == ProgressWhen::Always)).then(|| {
            let (length, template) = match total_bytes {
                Some(bytes) => (bytes, "{elapsed_precise} [{wide_bar}] {msg}  eta {eta}"),
                None => (total, "{elapsed_precise} [{wide_bar}] {pos}/{len} items  {msg}"),
            };
            let bar = ProgressBar::with_draw_target(Some(length), crate::stderr_term::draw_target());
            let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        let state = Arc::new(Shown {
            total,
            total_bytes,
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            in_flight: Mutex::new(HashMap::new()),
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
    fn item_done(&self, line: usize, key: &Key, failure: Option<&Failure>, size: Option<u64>) {
        let shown = self.shown.get();
        if let Some(shown) = shown {
            shown.items.fetch_add(1, Ordering::Relaxed);
            let fetched = shown.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&line);
            shown.done_bytes.fetch_add(size.or(fetched).unwrap_or(0), Ordering::Relaxed);
        }
        let bar = shown.and_then(|s| s.bar.as_ref());
        if let Some(failed) = failure {
            let line = failure_line(key, failed);
            match bar {
                Some(bar) => bar.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
        if let (Some(bar), Some(shown)) = (bar, shown)
            && shown.total_bytes.is_none()
        {
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
            Event::Planned { items, bytes, .. } => self.start(items, bytes),
            Event::Bytes { line, n } => {
                if let Some(shown) = self.shown.get() {
                    shown.bytes.fetch_add(n, Ordering::Relaxed);
                    *shown
                        .in_flight
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(line)
                        .or_default() += n;
                }
            }
            Event::ItemDone { line, key, failure, size, .. } => self.item_done(line, &key, failure.as_ref(), size),
            // Counted as done here; the worker that took its shard over reports it.
            Event::ItemGivenBack { line, key } => self.item_done(line, &key, None, None),
            Event::BundledRoots => eprintln!("{BUNDLED_ROOTS}"),
            // Logged by the engine (`-v`); nothing to draw.
            _ => {}
        }
    }
}

impl Shown {
    /// Bytes done: the finished items' sizes and what the items in flight have fetched.
    fn done(&self) -> u64 {
        let flying: u64 = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().sum();
        self.done_bytes.load(Ordering::Relaxed) + flying
    }

    fn draw(&self, bar: &ProgressBar) {
        match self.total_bytes {
            Some(total) => {
                bar.set_position(self.done().min(total));
                bar.set_message(self.text());
            }
            None => bar.set_message(self.rate()),
        }
    }

    /// Items done of all, bytes done of all when known, fetched bytes and rate.
    fn text(&self) -> String {
        let items = format!("{}/{} items", self.items.load(Ordering::Relaxed), self.total);
        match self.total_bytes {
            Some(total) => {
                format!(
                    "{items}, {} / {}, {}",
                    output::bytes(self.done().min(total)),
                    output::bytes(total),
                    self.rate()
                )
            }
            None => format!("{items}, {}", self.rate()),
        }
    }

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
                    Some(bar) => me.draw(bar),
                    None => eprintln!("run: {}", me.text()),
                }
            }
        }))
    }
}

/// The line a failed item gets as it fails.
fn failure_line(key: &Key, failed: &Failure) -> String {
    format!("promote: failed {}: {}: {}", output::shown(key.as_str()), failed.reason, output::shown(&failed.message))
}
