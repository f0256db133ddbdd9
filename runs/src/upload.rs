//! Large downloads streamed straight into the backend's resumable staged write, where the
//! backend has one (S3: a multipart upload whose parts are the checkpoint), so nothing of them
//! touches local disk: every byte is written once, by the server, and hashed once, in core.
//!
//! Every [`CHECKPOINT_EVERY`] the staged write is checkpointed (the parts sent so far are
//! waited for) and its point recorded in the ledger with the response's validators: the
//! point's offset, the SHA-256 state there, and the backend's token. After a crash, a lost
//! connection or a lost lease, the next attempt (in this process or a rerun) goes on from the
//! point with a range request, its digester resumed from the saved state, so the final
//! SHA-256 is of every byte in order, never seeded. A point whose bytes are gone (the upload
//! was aborted or swept by `promote recover`), or a source that changed, starts over.
//!
//! Backends without resumable writes (local disk, which adopts the partial file instead, and
//! OpenDAL) download into a partial file (`crate::resume`), as do segmented downloads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use promote_core::{Digester, Expected, Mode, Outcome as Promotion, ResumePoint, Staged};
use reqwest::{Response, StatusCode, Url};

use crate::events::Event;
use crate::fetch::{self, FetchError, RangeFrom};
use crate::item::{Ctx, Done, Failure, FailureKind, clear_checkpoint, set_decision};
use crate::ledger::{Checkpoint, now_ms};
use crate::manifest::Item;
use crate::resume::Decision;

/// Time between two checkpoints at most. Each waits for the parts in flight, so it is longer
/// than a partial file's second.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// The source's validators and length, recorded with each checkpoint.
#[derive(Clone, Debug, Default)]
pub(crate) struct Source {
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    pub(crate) total: Option<u64>,
}

impl Source {
    /// The `If-Range` validator (see [`fetch::if_range`]).
    fn if_range(&self) -> Option<String> {
        fetch::if_range(self.etag.as_ref(), self.last_modified.as_ref())
    }
}

/// Goes on from `cp`, a checkpoint with a resume point: the rest of the object by a range
/// request into the staged write the point names. Starts over (the point's upload removed, the
/// checkpoint cleared) when the bytes are gone or the source changed.
///
/// `recorded` is the job's checkpoint as the ledger has it, kept up to date here (the caller
/// judges a failed attempt's progress by it).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn resume(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    url: &Url,
    cp: Checkpoint,
    recorded: &mut Option<Checkpoint>,
    lost: &AtomicBool,
    done: &mut Done,
) -> Result<Promotion, Failure> {
    let Some(point) = cp.upload.clone() else {
        return Err(Failure::new("internal", FailureKind::Io, "a checkpoint without a resume point"));
    };
    let mut source = Source { etag: cp.etag.clone(), last_modified: cp.last_modified.clone(), total: cp.total };
    let Some(if_range) = source.if_range() else {
        tracing::info!(key = %item.key, "no validator to resume safely; discarded");
        return start_over(ctx, item, job, &point, recorded, done, "no validator to resume safely").await;
    };
    let staged = ctx.store.stage_resumable(&item.key, &item.expected, Some(&point)).await;
    let Some(staged) = staged.map_err(|e| Failure::core(&e))? else {
        set_decision(done, Decision::Discard);
        *recorded = None;
        if !clear_checkpoint(ctx, job).await? {
            return Err(Failure::lost(&item.key));
        }
        return Err(Failure::fetch(&FetchError::Protocol(
            "the staged upload to resume is gone; fetching from the start".into(),
        )));
    };
    tracing::info!(key = %item.key, offset = point.offset, "resuming into the staged upload");
    if source.total == Some(point.offset) {
        // Every byte is in parts already: nothing left to fetch.
        set_decision(done, Decision::Resume);
        return finish(ctx, item, job, staged, &source, lost).await;
    }
    let range = RangeFrom { offset: point.offset, last: None, if_range };
    let response = match ctx.http.get(url, Some(&range)).await {
        Ok(response) => response,
        Err(FetchError::Status { status: 416, .. }) => {
            drop(staged);
            return start_over(ctx, item, job, &point, recorded, done, "416 for a resume").await;
        }
        Err(err) => return Err(Failure::fetch(&err)),
    };
    let (etag, last_modified) = fetch::validators(&response);
    if response.status() == StatusCode::PARTIAL_CONTENT {
        let same = fetch::content_range(&response).is_some_and(|(start, _, total)| {
            start == point.offset
                && (source.total.is_none() || total.is_none() || total == source.total)
                && (source.etag.is_none() || etag.is_none() || etag == source.etag)
        });
        if !same {
            drop(staged);
            let why = "the server sent bytes of a different object version";
            return start_over(ctx, item, job, &point, recorded, done, why).await;
        }
        set_decision(done, Decision::Resume);
        return fill(ctx, item, job, staged, response, source, recorded, lost, done).await;
    }
    // 200 to a Range request: ranges ignored or the validators changed. The kept parts go; the
    // whole object in hand goes into a new staged write.
    tracing::info!(key = %item.key, "the server sent the whole object; discarding the kept parts");
    set_decision(done, Decision::Discard);
    if let Err(e) = staged.abort().await {
        tracing::warn!(key = %item.key, error = %e, "could not remove the kept parts; `promote recover` will");
    }
    *recorded = None;
    if !clear_checkpoint(ctx, job).await? {
        return Err(Failure::lost(&item.key));
    }
    source = Source { etag, last_modified, total: response.content_length() };
    let staged = ctx.store.stage_resumable(&item.key, &item.expected, None).await.map_err(|e| Failure::core(&e))?;
    let Some(staged) = staged else {
        return Err(Failure::new("internal", FailureKind::Io, "the backend stopped offering resumable writes"));
    };
    fill(ctx, item, job, staged, response, source, recorded, lost, done).await
}

/// Removes the point's staged bytes and the checkpoint; the next attempt starts from the
/// beginning (a retryable failure saying `why`).
async fn start_over(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    point: &ResumePoint,
    recorded: &mut Option<Checkpoint>,
    done: &mut Done,
    why: &str,
) -> Result<Promotion, Failure> {
    set_decision(done, Decision::Discard);
    *recorded = None;
    if let Err(e) = ctx.store.discard_resumable(&item.key, point).await {
        tracing::warn!(key = %item.key, error = %e, "could not remove the kept parts; `promote recover` will");
    }
    if !clear_checkpoint(ctx, job).await? {
        return Err(Failure::lost(&item.key));
    }
    Err(Failure::fetch(&FetchError::Protocol(format!("{why}; fetching from the start"))))
}

/// Copies the body of `response` into `staged` (a fresh one from
/// [`promote_core::Store::stage_resumable`], or one gone on from a checkpoint), recording a
/// checkpoint as it goes (in the ledger and in `recorded`), then promotes it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fill(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    mut staged: Staged,
    mut response: Response,
    mut source: Source,
    recorded: &mut Option<Checkpoint>,
    lost: &AtomicBool,
    done: &mut Done,
) -> Result<Promotion, Failure> {
    let mut last = Instant::now();
    // Ends with the body; each chunk waits at most the client's read timeout, each part the
    // backend's request timeouts.
    loop {
        if lost.load(Ordering::Relaxed) {
            record(ctx, item, job, &mut staged, &source, recorded).await?;
            return Err(Failure::lost(&item.key));
        }
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => {
                record(ctx, item, job, &mut staged, &source, recorded).await?;
                return Err(Failure::fetch(&FetchError::transport(&err)));
            }
        };
        let n = chunk.len() as u64;
        staged.write(chunk).await.map_err(|e| Failure::core(&e))?;
        done.fetched += n;
        ctx.events.event(Event::Bytes { line: item.line, n });
        let written = staged.bytes_written();
        if item.expected.too_long(written) || source.total.is_some_and(|t| written > t) {
            let want = item.expected.size.or(source.total).unwrap_or_default();
            return Err(discard(
                ctx,
                item,
                job,
                staged,
                format!("the source for {:?} is longer than {want} bytes; nothing was published", item.key.as_str()),
            )
            .await);
        }
        if last.elapsed() >= CHECKPOINT_EVERY {
            record(ctx, item, job, &mut staged, &source, recorded).await?;
            last = Instant::now();
        }
    }
    let written = staged.bytes_written();
    if let Some(total) = source.total.filter(|&t| written < t) {
        record(ctx, item, job, &mut staged, &source, recorded).await?;
        return Err(Failure::fetch(&FetchError::ShortBody { got: written, want: total }));
    }
    source.total = Some(written);
    finish(ctx, item, job, staged, &source, lost).await
}

/// A download refused for its length: the staged bytes and the checkpoint go.
async fn discard(ctx: &Ctx, item: &Item, job: &str, staged: Staged, why: String) -> Failure {
    if let Err(e) = staged.abort().await {
        tracing::warn!(key = %item.key, error = %e, "could not remove the staged parts; `promote recover` will");
    }
    match clear_checkpoint(ctx, job).await {
        Ok(true) => Failure::new("size-mismatch", FailureKind::Verification, why),
        Ok(false) => Failure::lost(&item.key),
        Err(failed) => failed,
    }
}

/// Checkpoints `staged` and records the point (in the ledger, and in `recorded`); a lost job
/// is a failure.
async fn record(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    staged: &mut Staged,
    source: &Source,
    recorded: &mut Option<Checkpoint>,
) -> Result<(), Failure> {
    let point = staged.checkpoint().await.map_err(|e| Failure::core(&e))?;
    let prefix = Digester::resume(&point.hash_state, point.offset)
        .map_err(|why| Failure::new("internal", FailureKind::Io, why))?
        .finish();
    let cp = Checkpoint {
        offset: point.offset,
        prefix_sha256: prefix.sha256,
        etag: source.etag.clone(),
        last_modified: source.last_modified.clone(),
        total: source.total,
        segments: Vec::new(),
        upload: Some(point),
    };
    let (job_key, owner, kept) = (job.to_owned(), ctx.owner.clone(), cp.clone());
    let mine = ctx.db.call(move |l| l.checkpoint(&job_key, &owner, &kept, now_ms())).await;
    if !mine.map_err(|e| Failure::ledger(&e))? {
        return Err(Failure::lost(&item.key));
    }
    *recorded = Some(cp);
    Ok(())
}

/// Checks every byte against the manifest, records the job `verified`, then promotes.
async fn finish(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    staged: Staged,
    source: &Source,
    lost: &AtomicBool,
) -> Result<Promotion, Failure> {
    let digest = staged.digest();
    if let Err(err) = item.expected.check(&item.key, &digest) {
        let _ = staged.abort().await;
        if !clear_checkpoint(ctx, job).await? {
            return Err(Failure::lost(&item.key));
        }
        return Err(Failure::core(&err));
    }
    // The final checkpoint names the whole object and no staged write: should the process end
    // before the publish, the next attempt fetches again (the upload is swept by `recover`).
    let cp = Checkpoint {
        offset: digest.size,
        prefix_sha256: digest.sha256,
        etag: source.etag.clone(),
        last_modified: source.last_modified.clone(),
        total: source.total,
        segments: Vec::new(),
        upload: None,
    };
    let (job_key, owner) = (job.to_owned(), ctx.owner.clone());
    let mine = ctx.db.call(move |l| l.verified(&job_key, &owner, &cp, now_ms())).await;
    if !mine.map_err(|e| Failure::ledger(&e))? || lost.load(Ordering::Relaxed) {
        return Err(Failure::lost(&item.key));
    }
    match staged.promote(&Expected::exactly(digest), Mode::Create).await {
        Ok(promotion) => Ok(promotion),
        Err(e) => {
            // A failed publish removes the upload: the next attempt fetches into a new one
            // (not into a partial file, which the checkpoint recorded above would ask for).
            if !clear_checkpoint(ctx, job).await? {
                return Err(Failure::lost(&item.key));
            }
            Err(Failure::core(&e))
        }
    }
}
