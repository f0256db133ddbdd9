//! Parallel range requests for one large item (`run.segments`, as `aria2c -x` does), for the
//! real internet, where one connection is often the bottleneck.
//!
//! A large item whose server takes byte ranges (`Accept-Ranges: bytes`, and a strong validator
//! for `If-Range`) is split into segments of at least [`MIN_SEGMENT`] bytes. Each connection
//! fetches one segment at a time with `Range: bytes=START-END` + `If-Range` and writes its
//! bytes where they belong in the partial file, so every byte is written once; the first
//! connection is the item's own request, read up to the end of the first segment. The partial
//! hashes the object in order as the bytes come (see `Partial::write_segment`): the final
//! SHA-256 is a fresh hash of the whole object, never one put together from pieces.
//!
//! Connections beyond the item's first are taken only when the host has one free under
//! `per_host` (never waited for), and pick segments from a queue: a segment whose connection
//! broke goes back to it for another connection. Every second the partial is fsynced and then
//! each segment's progress recorded in the ledger's checkpoint, so a crash or a failed attempt
//! resumes every segment from its own checkpoint. A `200` to a range request, a `416` or a
//! `Content-Range` of another object version means the object changed: the partial is
//! discarded and the item fetched again from the start.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use reqwest::{Response, StatusCode, Url};
use tokio::sync::Notify;

use crate::events::Event;
use crate::fetch::{self, FetchError, RangeFrom};
use crate::item::{Ctx, Failure};
use crate::ledger::now_ms;
use crate::lock;
use crate::manifest::Item;
use crate::resume::Partial;

/// The smallest segment worth a connection of its own.
pub(crate) const MIN_SEGMENT: u64 = 1 << 20;
/// Time between two checkpoints while segments are fetched.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How many segments for an object of `total` bytes when `wanted` are asked for: as many as
/// fit [`MIN_SEGMENT`] bytes each, at least one.
pub(crate) fn count(wanted: usize, total: u64) -> u64 {
    (wanted as u64).min(total / MIN_SEGMENT).max(1)
}

/// Whether a fresh download answered by `response` (a `200` announcing the object's length)
/// can be fetched in segments: more than one is asked for and fits, the server takes byte
/// ranges, and the partial has a strong validator to send in `If-Range`.
pub(crate) fn fit(ctx: &Ctx, kept: &Partial, response: &Response) -> bool {
    ctx.segments > 1
        && kept.total.is_some_and(|total| count(ctx.segments, total) > 1)
        && fetch::accepts_ranges(response)
        && kept.if_range().is_some()
}

/// How the fetch of the segments ended, apart from the bytes.
pub(crate) struct Fetched {
    /// Bytes received.
    pub(crate) bytes: u64,
    /// The object changed (or stopped taking ranges): the partial was emptied.
    pub(crate) discarded: bool,
}

/// What the connections of one item share.
struct Shared<'a> {
    ctx: &'a Ctx,
    item: &'a Item,
    url: &'a Url,
    partial: Mutex<&'a mut Partial>,
    /// Segments not yet complete that no connection is fetching.
    queue: Mutex<VecDeque<usize>>,
    /// The first failure (the attempt's error when segments are left).
    failure: Mutex<Option<Failure>>,
    /// Stop at the next chunk: a local error, a changed object, or the lease lost.
    stop: AtomicBool,
    /// The object changed: the partial is to be discarded.
    changed: AtomicBool,
    lost: &'a AtomicBool,
    bytes: AtomicU64,
}

impl Shared<'_> {
    fn fail(&self, failure: Failure) {
        lock(&self.failure).get_or_insert(failure);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.lost.load(Ordering::Relaxed)
    }

    /// The object is not the one the partial holds bytes of.
    fn changed(&self, why: String) {
        self.changed.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        self.fail(Failure::fetch(&FetchError::Protocol(format!("{why}; fetching from the start"))));
    }

    /// A range request for segment `index`'s bytes not yet fetched, checked to continue them.
    async fn request(&self, index: usize) -> Option<Response> {
        let (segment, total, etag, if_range) = {
            let partial = lock(&self.partial);
            (partial.segments()[index], partial.total, partial.etag.clone(), partial.if_range())
        };
        let Some(if_range) = if_range else {
            // Split only with one, and kept with its checkpoint; without it, a resume is unsafe.
            self.changed("no validator to resume the segments safely".into());
            return None;
        };
        let range = RangeFrom { offset: segment.done, last: Some(segment.end - 1), if_range };
        let response = match self.ctx.http.get_segment(self.url, &range).await {
            Ok(response) => response,
            Err(FetchError::Status { status: 416, .. }) => {
                self.changed(format!("416 for bytes {}-{}", segment.done, segment.end - 1));
                return None;
            }
            Err(err) => {
                self.fail(Failure::fetch(&err));
                return None;
            }
        };
        if response.status() != StatusCode::PARTIAL_CONTENT {
            self.changed("the server sent the whole object to a range request".into());
            return None;
        }
        let (got_etag, _) = fetch::validators(&response);
        let same = fetch::content_range(&response) == Some((segment.done, segment.end - 1, total))
            && (etag.is_none() || got_etag.is_none() || got_etag == etag);
        if !same {
            self.changed(format!(
                "the server sent other bytes than {}-{} of the same object",
                segment.done,
                segment.end - 1
            ));
            return None;
        }
        Some(response)
    }

    /// Writes `response`'s body into segment `index` until the segment is complete. A `200`
    /// for the whole object (the item's first response) is read only that far.
    async fn copy(&self, index: usize, mut response: Response) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    let segment = lock(&self.partial).segments()[index];
                    if segment.done < segment.end {
                        let want = segment.end - segment.start;
                        self.fail(Failure::fetch(&FetchError::ShortBody { got: segment.done - segment.start, want }));
                        return false;
                    }
                    return true;
                }
                Err(err) => {
                    self.fail(Failure::fetch(&FetchError::transport(&err)));
                    return false;
                }
            };
            let complete = {
                let mut partial = lock(&self.partial);
                let segment = partial.segments()[index];
                let take = chunk.len().min((segment.end - segment.done) as usize);
                if let Err(err) = partial.write_segment(index, &chunk[..take]) {
                    let what = format!("writing {}", partial.path().display());
                    drop(partial);
                    self.stop.store(true, Ordering::Relaxed);
                    self.fail(Failure::local(what, &err));
                    return false;
                }
                self.bytes.fetch_add(take as u64, Ordering::Relaxed);
                self.ctx.events.event(Event::Bytes { line: self.item.line, n: take as u64 });
                segment.done + take as u64 == segment.end
            };
            if complete {
                return true;
            }
        }
    }

    /// One connection: the item's first response for segment 0 when given, then segments
    /// from the queue until none is left or a request fails.
    async fn connection(&self, mut first: Option<Response>) {
        loop {
            if self.stopped() {
                return;
            }
            let (index, response) = match first.take() {
                Some(response) => (0, response),
                None => {
                    let Some(index) = lock(&self.queue).pop_front() else { return };
                    match self.request(index).await {
                        Some(response) => (index, response),
                        None => {
                            lock(&self.queue).push_front(index);
                            return;
                        }
                    }
                }
            };
            if !self.copy(index, response).await {
                lock(&self.queue).push_front(index);
                return;
            }
        }
    }

    /// Every [`CHECKPOINT_EVERY`] with bytes written: fsync, then record every segment's
    /// progress, until `finished`.
    async fn checkpoints(&self, job: &str, finished: &Notify) {
        loop {
            tokio::select! {
                () = finished.notified() => return,
                () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            }
            if let Err(failure) = self.checkpoint(job).await {
                self.stop.store(true, Ordering::Relaxed);
                self.fail(failure);
                return;
            }
        }
    }

    /// Makes what was written so far durable, then records it: the checkpoint is taken before
    /// the fsync starts, so it never claims a byte the fsync did not cover.
    async fn checkpoint(&self, job: &str) -> Result<(), Failure> {
        let (cp, file, path) = {
            let mut partial = lock(&self.partial);
            let (cp, file) = partial.begin_sync();
            (cp, file, partial.path().to_owned())
        };
        let synced = promote_core::kit::blocking::run(move || file.sync_data()).await;
        let synced = synced.map_err(std::io::Error::other).and_then(|r| r);
        synced.map_err(|e| Failure::local(format!("syncing {}", path.display()), &e))?;
        let (job_key, owner) = (job.to_owned(), self.ctx.owner.clone());
        let mine = self.ctx.db.call(move |l| l.checkpoint(&job_key, &owner, &cp, now_ms())).await;
        if mine.map_err(|e| Failure::ledger(&e))? {
            Ok(())
        } else {
            self.lost.store(true, Ordering::Relaxed);
            Err(Failure::lost(&self.item.key))
        }
    }
}

/// Fetches the segments of `kept` not yet complete, over the item's own connection (the
/// caller holds its slot; `first` is its response when the download is fresh) and as many
/// more as `run.segments` asks for and the host has free. Ends with the partial complete, or
/// checkpointed with the attempt's error (a changed object: emptied, `discarded`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    url: &Url,
    kept: &mut Partial,
    first: Option<Response>,
    lost: &AtomicBool,
) -> (Fetched, Result<(), Failure>) {
    let pending: VecDeque<usize> = kept
        .segments()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.done < s.end)
        .map(|(index, _)| index)
        .filter(|&index| index != 0 || first.is_none())
        .collect();
    let wanted = (pending.len() + usize::from(first.is_some())).min(ctx.segments.max(1));
    let spare: Vec<_> = (1..wanted).map_while(|_| ctx.http.spare_slot(url)).collect();
    tracing::debug!(key = %item.key, segments = kept.segments().len(), connections = 1 + spare.len(), "fetching in segments");
    let shared = Shared {
        ctx,
        item,
        url,
        partial: Mutex::new(kept),
        queue: Mutex::new(pending),
        failure: Mutex::new(None),
        stop: AtomicBool::new(false),
        changed: AtomicBool::new(false),
        lost,
        bytes: AtomicU64::new(0),
    };
    let finished = Notify::new();
    let connections = async {
        let mut all = vec![shared.connection(first)];
        all.extend(spare.iter().map(|_| shared.connection(None)));
        futures_util::future::join_all(all).await;
        finished.notify_one();
    };
    tokio::join!(connections, shared.checkpoints(job, &finished));
    drop(spare);

    let (complete, changed) = (lock(&shared.partial).complete(), shared.changed.load(Ordering::Relaxed));
    // Keep what was fetched for the next attempt (or run) before saying why it stopped.
    let recorded = if complete || changed { Ok(()) } else { shared.checkpoint(job).await };
    let Shared { partial, failure, bytes, .. } = shared;
    let kept = partial.into_inner().unwrap_or_else(PoisonError::into_inner);
    let failure = failure.into_inner().unwrap_or_else(PoisonError::into_inner);
    let mut fetched = Fetched { bytes: bytes.into_inner(), discarded: false };
    if changed {
        fetched.discarded = true;
        let reset = kept.reset().map_err(|e| Failure::local(format!("truncating {}", kept.path().display()), &e));
        return (fetched, Err(reset.err().or(failure).expect("a changed object is a failure")));
    }
    if complete {
        return (fetched, Ok(()));
    }
    let failure = match (recorded, failure) {
        (Err(err), _) => err,
        (Ok(()), Some(failure)) => failure,
        (Ok(()), None) if lost.load(Ordering::Relaxed) => Failure::lost(&item.key),
        (Ok(()), None) => Failure::fetch(&FetchError::Protocol("segments were left unfetched".into())),
    };
    (fetched, Err(failure))
}
