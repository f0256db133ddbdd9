//! The progress bar of `put` and `get`: bytes, rate and ETA (and files done of total for a
//! directory), on stderr, only when stderr is a terminal, and only once a transfer has taken
//! longer than [`DELAY`]; never with `-q` or `--json`. `promote run` has its own display
//! (`crate::run::progress`), which also prints plain lines off a terminal.

use std::io::{IsTerminal, Seek};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, ReadBuf};

use crate::output;

/// How long a transfer runs before the bar appears.
const DELAY: Duration = Duration::from_secs(1);
/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// A transfer's progress. Cheap to share; the bar goes away on [`Transfer::finish`] or drop.
#[derive(Debug)]
pub(crate) struct Transfer {
    shared: Option<Arc<Shared>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    bar: ProgressBar,
    started: Instant,
    bytes: AtomicU64,
    bytes_total: Option<u64>,
    files: AtomicU64,
    files_total: Option<u64>,
    /// A duplicate of a source file's descriptor: it shares the file offset, which says how far
    /// the reader has got without touching the reading code.
    offset_of: Mutex<Option<std::fs::File>>,
}

impl Transfer {
    /// Progress over `bytes_total` bytes (when known) and `files_total` files (a directory).
    /// Shows nothing when `quiet` or when stderr is not a terminal.
    pub(crate) fn new(bytes_total: Option<u64>, files_total: Option<u64>, quiet: bool) -> Self {
        if !Self::shown(quiet) {
            return Self::off();
        }
        let bar = ProgressBar::with_draw_target(bytes_total, ProgressDrawTarget::hidden());
        let template = if bytes_total.is_some() { "[{wide_bar}] {msg}  eta {eta}" } else { "{spinner} {msg}" };
        let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        let shared = Arc::new(Shared {
            bar,
            started: Instant::now(),
            bytes: AtomicU64::new(0),
            bytes_total,
            files: AtomicU64::new(0),
            files_total,
            offset_of: Mutex::new(None),
        });
        let me = Arc::clone(&shared);
        let ticker = tokio::spawn(async move {
            tokio::time::sleep(DELAY).await;
            me.bar.set_draw_target(ProgressDrawTarget::stderr());
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                me.redraw();
            }
        });
        Self { shared: Some(shared), ticker: Some(ticker) }
    }

    /// No display at all.
    pub(crate) fn off() -> Self {
        Self { shared: None, ticker: None }
    }

    /// Whether a bar would be shown (stderr a terminal, not `quiet`), so callers can skip
    /// work done only for it.
    pub(crate) fn shown(quiet: bool) -> bool {
        !quiet && std::io::stderr().is_terminal()
    }

    /// Follows how far `file` has been read (through a duplicate descriptor sharing its offset).
    pub(crate) fn follow_offset(&self, file: &std::fs::File) {
        if let (Some(shared), Ok(dup)) = (&self.shared, file.try_clone()) {
            *shared.offset_of.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dup);
        }
    }

    /// `n` more bytes moved.
    pub(crate) fn add_bytes(&self, n: u64) {
        if let Some(shared) = &self.shared {
            shared.bytes.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// One more file finished.
    pub(crate) fn file_done(&self) {
        if let Some(shared) = &self.shared {
            shared.files.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.shared {
            Some(shared) => shared.bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar (before a summary is printed).
    pub(crate) fn finish(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(shared) = &self.shared {
            shared.bar.finish_and_clear();
        }
    }

    /// `reader` counted into this transfer's bytes.
    pub(crate) fn counting<R>(&self, reader: R) -> Counted<'_, R> {
        Counted { inner: reader, transfer: self }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Shared {
    fn redraw(&self) {
        let offset = self
            .offset_of
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .map(|f| f.stream_position());
        let bytes = match offset {
            Some(Ok(position)) => position,
            _ => self.bytes.load(Ordering::Relaxed),
        };
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = output::bytes((bytes as f64 / secs) as u64);
        let mut msg = match self.bytes_total {
            Some(total) => format!("{} / {}  {rate}/s", output::bytes(bytes), output::bytes(total)),
            None => format!("{}  {rate}/s", output::bytes(bytes)),
        };
        if let Some(files) = self.files_total {
            msg = format!("{} / {files} files  {msg}", self.files.load(Ordering::Relaxed));
        }
        self.bar.set_position(bytes);
        self.bar.set_message(msg);
        self.bar.tick();
    }
}

/// A reader whose bytes count into a [`Transfer`].
pub(crate) struct Counted<'a, R> {
    inner: R,
    transfer: &'a Transfer,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<'_, R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.transfer.add_bytes(n as u64);
        polled
    }
}
