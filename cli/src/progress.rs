//! The progress bar of `put`, `get` and `copy`: bytes, rate and ETA (and files done of total
//! for a directory), on stderr, once a transfer has taken longer than [`DELAY`]; when, is
//! `--progress` (by default only on a terminal, never with `-q` or `--json`). `promote run` has its own display
//! (`crate::commands::run::progress`), which also prints plain lines off a terminal.

use std::io::{IsTerminal, Seek};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, ReadBuf};

use crate::args::ProgressWhen;
use crate::output;

/// How long a transfer runs before the bar appears.
const DELAY: Duration = Duration::from_secs(1);
/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// A transfer's progress. Cheap to share; the bar goes away on [`Transfer::finish`] or drop.
#[derive(Debug)]
pub(crate) struct Transfer {
    shared: Option<Arc<Shared>>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    bar: ProgressBar,
    started: Instant,
    bytes: AtomicU64,
    bytes_total: Option<u64>,
    files: AtomicU64,
    files_total: Option<u64>,
    /// Duplicates of the descriptors of source files being read, by id: each shares its file's
    /// offset, which says how far the reader has got without touching the reading code.
    followed: Mutex<Vec<(u64, Arc<std::fs::File>)>>,
    /// Every byte is in and the storage is completing (an S3 multipart upload, an fsync).
    completing: std::sync::atomic::AtomicBool,
}

impl Transfer {
    /// Progress over `bytes_total` bytes (when known) and `files_total` files (a directory).
    /// Shows nothing unless `shown` (see [`Transfer::shown`]).
    pub(crate) fn new(bytes_total: Option<u64>, files_total: Option<u64>, shown: bool) -> Self {
        if !shown {
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
            followed: Mutex::new(Vec::new()),
            completing: std::sync::atomic::AtomicBool::new(false),
        });
        let me = Arc::clone(&shared);
        let ticker = tokio::spawn(async move {
            tokio::time::sleep(DELAY).await;
            me.bar.set_draw_target(crate::stderr_term::draw_target());
            let mut tick = tokio::time::interval(TICK);
            // Ends when the ticker is aborted (see `Drop`/`finish`).
            loop {
                tick.tick().await;
                me.redraw();
            }
        });
        Self { shared: Some(shared), ticker: Mutex::new(Some(ticker)) }
    }

    /// No display at all.
    pub(crate) fn off() -> Self {
        Self { shared: None, ticker: Mutex::new(None) }
    }

    /// Whether a bar is shown (`--progress`, given -q, --json and whether stderr is a terminal),
    /// so callers can skip work done only for it.
    pub(crate) fn shown(when: ProgressWhen, quiet: bool, json: bool) -> bool {
        when.shown(quiet, json, std::io::stderr().is_terminal())
    }

    /// Counts how far a file has been read, through `dup`, a duplicate of its descriptor
    /// sharing its offset, until [`Transfer::unfollow`] with the same `id`.
    fn follow(&self, id: u64, dup: Arc<std::fs::File>) {
        if let Some(shared) = &self.shared {
            shared.followed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((id, dup));
        }
    }

    /// Stops counting a file's offset (its bytes are then counted with [`Transfer::add_bytes`]).
    fn unfollow(&self, id: u64) {
        if let Some(shared) = &self.shared {
            shared.followed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|(i, _)| *i != id);
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
    pub(crate) fn finish(&self) {
        if let Some(ticker) = self.ticker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
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

/// The engines' events (`promote-tree`): bytes and reads into the bar, notices on stderr.
impl promote_tree::Events for Transfer {
    fn event(&self, event: promote_tree::Event) {
        use promote_tree::Event;
        match event {
            Event::Reading { id, file } => self.follow(id, file),
            Event::ReadDone { id } => self.unfollow(id),
            Event::Bytes { n } => self.add_bytes(n),
            other => notice(other),
        }
    }
}

/// What an engine event says on stderr, when it says anything: skipped directory entries, an
/// object copied out despite a change since its promotion.
pub(crate) fn notice(event: promote_tree::Event) {
    use promote_tree::Event;
    use promote_tree::events::Skip;
    match event {
        Event::Skipped { path, why: Skip::SymbolicLink } => {
            eprintln!("promote: skipping symbolic link {} (pass -L to follow links)", output::path(&path));
        }
        Event::Skipped { path, why: Skip::NotAFile } => {
            eprintln!("promote: skipping {}: not a regular file", output::path(&path));
        }
        Event::ModifiedCopied { key } => {
            eprintln!(
                "promote: warning: {key} was modified since it was promoted; copied, checked against its size only"
            );
        }
        _ => {}
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Shared {
    fn redraw(&self) {
        let reading: u64 = self
            .followed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
            .map(|(_, file)| (&**file).stream_position().unwrap_or(0))
            .sum();
        let bytes = self.bytes.load(Ordering::Relaxed) + reading;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = output::bytes((bytes as f64 / secs) as u64);
        let mut msg = match self.bytes_total {
            Some(total) => format!("{} / {}  {rate}/s", output::bytes(bytes), output::bytes(total)),
            None => format!("{}  {rate}/s", output::bytes(bytes)),
        };
        if let Some(files) = self.files_total {
            msg = format!("{} / {files} files  {msg}", self.files.load(Ordering::Relaxed));
        }
        if self.bytes_total.is_some_and(|total| bytes >= total)
            && self.files_total.is_none_or(|files| self.files.load(Ordering::Relaxed) < files)
        {
            // All read, not all done: the storage is completing (an S3 multipart upload, the
            // fsyncs); an "eta 0s" would be a lie.
            if !self.completing.swap(true, Ordering::Relaxed)
                && let Ok(style) = ProgressStyle::with_template("[{wide_bar}] {msg}")
            {
                self.bar.set_style(style.progress_chars("=> "));
            }
            msg = format!("{msg}  completing (all bytes sent; the storage is finishing the write)");
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
