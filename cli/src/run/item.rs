//! One item, start to finish: already complete? → fetch (local file, HTTP stream, or HTTP into a
//! resumable partial) → core's verified, create-only promotion → ledger.
//!
//! The ledger records `promoted` only after the backend's publish returned; a repeated attempt
//! (another process, a rerun after a crash) meets the create-only publish and ends as
//! already-present, never as a second write.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use promote_core::{Error, Expected, Mode, Outcome as Promotion, Receipt, Sha256, Store};
use reqwest::{Response, StatusCode, Url};

use super::fetch::{self, FetchError, Http, RangeFrom};
use super::ledger::{Checkpoint, Db, JobRow, State, now_ms};
use super::manifest::{Item, Source};
use super::progress::Progress;
use super::resume::{Decision, Partial};
use crate::exit;

/// What every item's processing shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Where items are promoted.
    pub(crate) store: Store,
    /// The run's ledger.
    pub(crate) db: Db,
    /// The HTTP client.
    pub(crate) http: Http,
    /// Retries per item after a transient failure.
    pub(crate) retries: u32,
    /// Items at least this large download into a resumable partial.
    pub(crate) resume_threshold: u64,
    /// Stream small items straight into staging (else download into the run directory first).
    pub(crate) streaming: bool,
    /// `<run dir>/partials`.
    pub(crate) partials: PathBuf,
    /// `<run dir>/spool` (local sources on the spool path).
    pub(crate) spool: PathBuf,
    /// Counters for the display.
    pub(crate) progress: Arc<Progress>,
}

/// How an item ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Published by this run.
    Promoted,
    /// Identical bytes were already at the key.
    AlreadyPresent,
    /// Not promoted; see the failure.
    Failed,
    /// Not attempted (dry run, `--max`).
    Skipped,
}

impl Outcome {
    /// The word used in summaries and reports.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::AlreadyPresent => "already-present",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// Why an item (or one attempt at it) failed.
#[derive(Clone, Debug)]
pub(crate) struct Failed {
    /// Short reason: `http-404`, `connection`, `sha256-mismatch`, `conflict`, …
    pub(crate) reason: String,
    /// The exit code it maps to.
    pub(crate) code: u8,
    /// One line: what happened and to which key.
    pub(crate) message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failed {
    fn new(reason: impl Into<String>, code: u8, message: impl Into<String>) -> Self {
        Self { reason: reason.into(), code, message: message.into(), retryable: false, retry_after: None }
    }

    fn fetch(err: &FetchError) -> Self {
        Self {
            reason: err.reason(),
            code: exit::IO,
            message: err.to_string(),
            retryable: err.retryable(),
            retry_after: err.retry_after(),
        }
    }

    fn core(err: &Error) -> Self {
        let (reason, code) = match err {
            Error::Conflict { .. } | Error::AlreadyExists { .. } => ("conflict", exit::CONFLICT),
            Error::DigestMismatch { .. } => ("sha256-mismatch", exit::VERIFY),
            Error::SizeMismatch { .. } => ("size-mismatch", exit::VERIFY),
            _ => ("backend", exit::code_for(err).max(exit::IO)),
        };
        Self { retryable: err.is_retryable(), ..Self::new(reason, code, err.to_string()) }
    }

    fn local(what: String, err: &std::io::Error) -> Self {
        Self::new("local-io", exit::IO, format!("{what}: {err}"))
    }

    fn ledger(err: &anyhow::Error) -> Self {
        Self::new("ledger", exit::IO, format!("{err:#}"))
    }
}

/// The result of processing one item.
#[derive(Clone, Debug)]
pub(crate) struct Done {
    /// How it ended.
    pub(crate) outcome: Outcome,
    /// What happened to earlier progress.
    pub(crate) decision: Option<Decision>,
    /// The digest at the key, when promoted or present.
    pub(crate) sha256: Option<Sha256>,
    /// Its size.
    pub(crate) size: Option<u64>,
    /// Bytes fetched for it by this process, over all attempts.
    pub(crate) fetched: u64,
    /// Attempts made by this process.
    pub(crate) attempts: u32,
    /// Why it failed.
    pub(crate) failure: Option<Failed>,
}

impl Done {
    /// An item this process did not handle, as the ledger records it (another worker's shard).
    pub(crate) fn from_ledger(row: Option<&JobRow>) -> Self {
        let mut done = Self::empty();
        match row {
            Some(row) if row.state == State::Promoted => {
                done.outcome = Outcome::AlreadyPresent;
                done.decision = Some(Decision::AlreadyComplete);
                (done.sha256, done.size) = (row.sha256, row.size);
            }
            Some(row) if row.state == State::Failed => {
                let reason = row.reason.clone().unwrap_or_else(|| "failed".into());
                done.failure = Some(Failed::new(reason, exit::IO, "failed in another worker (see `promote status`)"));
            }
            _ => done.failure = Some(Failed::new("not-done", exit::IO, "no worker finished it; run again")),
        }
        done
    }

    /// An item of a shard another machine finished: already present, or failed there.
    pub(crate) fn elsewhere(failed: Option<&str>) -> Self {
        let mut done = Self::empty();
        match failed {
            None => {
                done.outcome = Outcome::AlreadyPresent;
                done.decision = Some(Decision::AlreadyComplete);
            }
            Some(reason) => {
                done.failure =
                    Some(Failed::new(reason, exit::IO, "failed on another machine (its run directory says why)"));
            }
        }
        done
    }

    /// A skipped item.
    pub(crate) fn skipped() -> Self {
        Self { outcome: Outcome::Skipped, ..Self::empty() }
    }

    fn empty() -> Self {
        Self {
            outcome: Outcome::Failed,
            decision: None,
            sha256: None,
            size: None,
            fetched: 0,
            attempts: 0,
            failure: None,
        }
    }
}

/// Processes `item` (job key `job`) to the end and records the result in the ledger.
pub(crate) async fn process(ctx: &Ctx, item: &Item, job: &str) -> Done {
    let mut done = Done::empty();
    let result = attempts(ctx, item, job, &mut done).await;
    let now = now_ms();
    match result {
        Ok(promotion) => {
            let receipt = promotion.receipt();
            done.outcome = match promotion {
                Promotion::Promoted(_) => Outcome::Promoted,
                Promotion::AlreadyPresent(_) => Outcome::AlreadyPresent,
            };
            (done.sha256, done.size) = (Some(receipt.sha256), Some(receipt.size));
            tracing::info!(key = %item.key, outcome = done.outcome.as_str(), decision = ?done.decision.map(Decision::as_str), "item done");
            let (job_key, sha, size) = (job.to_owned(), receipt.sha256, receipt.size);
            if let Err(err) = ctx.db.call(move |l| l.promoted(&job_key, &sha, size, now)).await {
                // The object is in place; the next run finds it there (already-complete).
                tracing::warn!(key = %item.key, error = %format!("{err:#}"), "promoted, but the ledger could not record it");
            }
            remove_partial(&ctx.partials.join(job));
        }
        Err(failed) => {
            tracing::info!(key = %item.key, reason = %failed.reason, error = %failed.message, "item failed");
            let (job_key, reason, message) = (job.to_owned(), failed.reason.clone(), failed.message.clone());
            if let Err(err) = ctx.db.call(move |l| l.failed(&job_key, &reason, &message, now)).await {
                tracing::warn!(key = %item.key, error = %format!("{err:#}"), "the ledger could not record a failure");
            }
            done.failure = Some(failed);
        }
    }
    done
}

fn remove_partial(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %err, "could not remove a partial download");
    }
}

async fn attempts(ctx: &Ctx, item: &Item, job: &str, done: &mut Done) -> Result<Promotion, Failed> {
    let job_key = job.to_owned();
    let row = ctx.db.call(move |l| l.job(&job_key)).await.map_err(|e| Failed::ledger(&e))?;
    if let Some(present) = already_complete(ctx, item, row.as_ref()).await? {
        done.decision = Some(Decision::AlreadyComplete);
        return Ok(present);
    }
    let mut checkpoint = row.and_then(|r| r.checkpoint);
    let mut partial: Option<Partial> = None;
    let mut budget = fetch::RetryBudget::new(ctx.retries, checkpoint.as_ref().map_or(0, |cp| cp.offset));
    let mut attempt = 0;
    // Bounded by the budget: a retryable failure goes round again while it has `ctx.retries`
    // attempts without progress left; progress (a partial further than ever) is bounded by size.
    loop {
        attempt += 1;
        done.attempts = attempt;
        if attempt > 1 && partial.is_none() && checkpoint.is_none() {
            // A failed promotion of a complete partial leaves it on disk: pick it up again.
            let job_key = job.to_owned();
            let row = ctx.db.call(move |l| l.job(&job_key)).await.map_err(|e| Failed::ledger(&e))?;
            checkpoint = row.and_then(|r| r.checkpoint);
        }
        let job_key = job.to_owned();
        ctx.db.call(move |l| l.begin_attempt(&job_key, now_ms())).await.map_err(|e| Failed::ledger(&e))?;
        let result = match &item.source {
            Source::Local(path) => local(ctx, item, path, done).await,
            Source::Http(url) => http(ctx, item, job, url, &mut checkpoint, &mut partial, done).await,
        };
        match result {
            Ok(promotion) => return Ok(promotion),
            Err(failed) if failed.retryable => {
                let offset = partial.as_ref().map(Partial::offset).or(checkpoint.as_ref().map(|cp| cp.offset));
                let offset = offset.unwrap_or(0);
                let Some(wait) = budget.retry(offset, failed.retry_after) else { return Err(failed) };
                tracing::info!(key = %item.key, attempt, offset, error = %failed.message, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
            }
            Err(failed) => return Err(failed),
        }
    }
}

/// Already complete: the key holds the digest this job promoted before, or the manifest's
/// expected digest. Decided from the ledger and a `head`, without touching the source. A key
/// holding other bytes is a conflict, also without fetching.
async fn already_complete(ctx: &Ctx, item: &Item, row: Option<&JobRow>) -> Result<Option<Promotion>, Failed> {
    let want = match row {
        Some(JobRow { state: State::Promoted, sha256: Some(sha), size, .. }) => (*sha, *size),
        _ => match item.expected.sha256 {
            Some(sha) => (sha, item.expected.size),
            None => return Ok(None),
        },
    };
    let meta = match ctx.store.head(&item.key).await {
        Ok(meta) => meta,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(err) => {
            tracing::info!(key = %item.key, error = %err, "head failed; fetching");
            return Ok(None);
        }
    };
    let size_ok = want.1.is_none_or(|s| s == meta.size);
    let stored = match meta.sha256 {
        Some(sha) => Some(sha),
        // No digest stored with the object: hash it from the storage (never from the source).
        None if size_ok => match ctx.store.digest_of(&item.key).await {
            Ok(digest) => Some(digest.sha256),
            Err(err) => {
                tracing::info!(key = %item.key, error = %err, "could not hash the stored object; fetching");
                None
            }
        },
        None => None,
    };
    match stored {
        Some(have) if have == want.0 && size_ok => {
            let receipt = Receipt { key: item.key.clone(), size: meta.size, sha256: have, version: meta.version };
            Ok(Some(Promotion::AlreadyPresent(receipt)))
        }
        Some(have) => Err(Failed::new(
            "conflict",
            exit::CONFLICT,
            format!(
                "key {:?} holds sha256 {have}, not the expected {}; nothing was replaced",
                item.key.as_str(),
                want.0
            ),
        )),
        // No stored digest: the create-only promotion decides after fetching.
        None => Ok(None),
    }
}

async fn local(ctx: &Ctx, item: &Item, path: &Path, done: &mut Done) -> Result<Promotion, Failed> {
    let file = std::fs::File::open(path).map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound { "source-missing" } else { "source-unreadable" };
        Failed::new(reason, exit::IO, format!("cannot read {}: {e}", path.display()))
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    done.decision = Some(Decision::Fresh);
    let result = if ctx.streaming {
        ctx.store.promote_file(&item.key, file, &item.expected, Mode::Create).await
    } else {
        let file = tokio::fs::File::from_std(file);
        ctx.store.promote_spooled(&item.key, file, &item.expected, Mode::Create, &ctx.spool).await
    };
    done.fetched += len;
    ctx.progress.add_bytes(len);
    result.map_err(|e| Failed::core(&e))
}

fn set_decision(done: &mut Done, decision: Decision) {
    // A discard sticks: a later resume within this run continues the fresh download.
    if done.decision != Some(Decision::Discard) {
        done.decision = Some(decision);
    }
}

/// One HTTP attempt. Progress in a partial survives failed attempts (in memory, and durably at
/// each checkpoint), so the next attempt resumes.
#[allow(clippy::too_many_arguments)]
async fn http(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    url: &Url,
    checkpoint: &mut Option<Checkpoint>,
    partial: &mut Option<Partial>,
    done: &mut Done,
) -> Result<Promotion, Failed> {
    let path = ctx.partials.join(job);
    if partial.is_none()
        && let Some(cp) = checkpoint.take()
    {
        let reopened = Partial::reopened(&path, cp)
            .await
            .map_err(|e| Failed::local(format!("reading the partial download {}", path.display()), &e))?;
        match reopened {
            Some(kept) => {
                tracing::info!(key = %item.key, offset = kept.offset(), "partial download kept");
                *partial = Some(kept);
            }
            None => {
                tracing::info!(key = %item.key, "partial download failed its prefix check; discarded");
                set_decision(done, Decision::Discard);
                remove_partial(&path);
                let job_key = job.to_owned();
                ctx.db.call(move |l| l.clear_checkpoint(&job_key, now_ms())).await.map_err(|e| Failed::ledger(&e))?;
            }
        }
    }
    if let Some(kept) = partial.take_if(|kept| kept.complete()) {
        set_decision(done, Decision::Resume);
        return promote_partial(ctx, item, job, kept).await;
    }
    let mut range = None;
    if let Some(kept) = partial.as_mut()
        && kept.offset() > 0
    {
        match kept.if_range() {
            Some(if_range) => range = Some(RangeFrom { offset: kept.offset(), if_range }),
            None => {
                tracing::info!(key = %item.key, "no validator to resume safely; discarded");
                set_decision(done, Decision::Discard);
                kept.reset().map_err(|e| Failed::local(format!("truncating {}", path.display()), &e))?;
            }
        }
    }
    let _slot = ctx.http.slot(url).await;
    let response = match ctx.http.get(url, range.as_ref()).await {
        Ok(response) => response,
        Err(FetchError::Status { status: 416, .. }) if range.is_some() => {
            // The object shrank or changed: start over.
            set_decision(done, Decision::Discard);
            discard(partial, &path)?;
            return Err(Failed::fetch(&FetchError::Protocol("416 for a resume; fetching from the start".into())));
        }
        Err(err) => return Err(Failed::fetch(&err)),
    };
    let (etag, last_modified) = fetch::validators(&response);
    let length = response.content_length();
    let status = response.status();
    if let Some(range) = &range {
        // `range` is only set above, from a kept partial, which is still there.
        let kept = partial.as_mut().expect("a range comes from a partial");
        if status == StatusCode::PARTIAL_CONTENT {
            let Some((start, _, total)) = fetch::content_range(&response) else {
                discard(partial, &path)?;
                set_decision(done, Decision::Discard);
                return Err(Failed::fetch(&FetchError::Protocol("206 without a usable Content-Range".into())));
            };
            let same_object = start == range.offset
                && (kept.total.is_none() || total.is_none() || total == kept.total)
                && (kept.etag.is_none() || etag.is_none() || etag == kept.etag);
            if !same_object {
                discard(partial, &path)?;
                set_decision(done, Decision::Discard);
                return Err(Failed::fetch(&FetchError::Protocol(format!(
                    "the server sent bytes {start}- of a different object version; fetching from the start"
                ))));
            }
            tracing::info!(key = %item.key, offset = range.offset, "resuming");
            set_decision(done, Decision::Resume);
            kept.total = total.or(kept.total);
        } else {
            // 200 to a Range request: ranges ignored or the validators changed.
            tracing::info!(key = %item.key, "the server sent the whole object; discarding the kept bytes");
            set_decision(done, Decision::Discard);
            kept.reset().map_err(|e| Failed::local(format!("truncating {}", path.display()), &e))?;
            (kept.etag, kept.last_modified, kept.total) = (etag, last_modified, length);
        }
    } else {
        if status == StatusCode::PARTIAL_CONTENT {
            return Err(Failed::fetch(&FetchError::Protocol("206 to a request without Range".into())));
        }
        if done.decision.is_none() {
            done.decision = Some(Decision::Fresh);
        }
        if let (Some(want), Some(got)) = (item.expected.size, length)
            && want != got
        {
            return Err(Failed::new(
                "size-mismatch",
                exit::VERIFY,
                format!(
                    "{url} is {got} bytes, the manifest says {want} for key {:?}; nothing was published",
                    item.key.as_str()
                ),
            ));
        }
        let large = length.or(item.expected.size).is_some_and(|n| n >= ctx.resume_threshold);
        if ctx.streaming && !large && partial.is_none() {
            return stream(ctx, item, response, length, done).await;
        }
        let kept = match partial.take() {
            Some(mut kept) => {
                kept.reset().map_err(|e| Failed::local(format!("truncating {}", path.display()), &e))?;
                kept
            }
            None => Partial::create(&path).map_err(|e| Failed::local(format!("creating {}", path.display()), &e))?,
        };
        let kept = partial.insert(kept);
        (kept.etag, kept.last_modified, kept.total) = (etag, last_modified, length);
    }
    // Both branches above leave the partial to download into in `partial`.
    let kept = partial.as_mut().expect("set above");
    download(ctx, item, job, kept, response, done).await?;
    // `download` keeps it there.
    let kept = partial.take().expect("set above");
    promote_partial(ctx, item, job, kept).await
}

fn discard(partial: &mut Option<Partial>, path: &Path) -> Result<(), Failed> {
    if let Some(kept) = partial.as_mut() {
        kept.reset().map_err(|e| Failed::local(format!("truncating {}", path.display()), &e))?;
    }
    Ok(())
}

async fn record_checkpoint(ctx: &Ctx, job: &str, kept: &mut Partial) -> Result<(), Failed> {
    let cp = kept.sync().await.map_err(|e| Failed::local(format!("syncing {}", kept.path().display()), &e))?;
    let job_key = job.to_owned();
    ctx.db.call(move |l| l.checkpoint(&job_key, &cp, now_ms())).await.map_err(|e| Failed::ledger(&e))
}

/// Copies the body into the partial, checkpointing as it goes.
async fn download(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    kept: &mut Partial,
    mut response: Response,
    done: &mut Done,
) -> Result<(), Failed> {
    // Ends with the body; each chunk waits at most the client's read timeout.
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => {
                record_checkpoint(ctx, job, kept).await?;
                return Err(Failed::fetch(&FetchError::transport(&err)));
            }
        };
        kept.write(&chunk).map_err(|e| Failed::local(format!("writing {}", kept.path().display()), &e))?;
        done.fetched += chunk.len() as u64;
        ctx.progress.add_bytes(chunk.len() as u64);
        if item.expected.too_long(kept.offset()) || kept.total.is_some_and(|t| kept.offset() > t) {
            let want = item.expected.size.or(kept.total).unwrap_or_default();
            kept.reset().map_err(|e| Failed::local(format!("truncating {}", kept.path().display()), &e))?;
            return Err(Failed::new(
                "size-mismatch",
                exit::VERIFY,
                format!("the source for {:?} is longer than {want} bytes; nothing was published", item.key.as_str()),
            ));
        }
        if kept.due() {
            record_checkpoint(ctx, job, kept).await?;
        }
    }
    match kept.total {
        Some(total) if kept.offset() < total => {
            record_checkpoint(ctx, job, kept).await?;
            Err(Failed::fetch(&FetchError::ShortBody { got: kept.offset(), want: total }))
        }
        _ => {
            kept.total = Some(kept.offset());
            Ok(())
        }
    }
}

/// Checks a complete partial against the manifest, records it `verified`, then promotes it
/// through core, which hashes every byte again on the way.
async fn promote_partial(ctx: &Ctx, item: &Item, job: &str, mut kept: Partial) -> Result<Promotion, Failed> {
    let digest = kept.digest();
    if let Err(err) = item.expected.check(&item.key, &digest) {
        remove_partial(kept.path());
        let job_key = job.to_owned();
        ctx.db.call(move |l| l.clear_checkpoint(&job_key, now_ms())).await.map_err(|e| Failed::ledger(&e))?;
        return Err(Failed::core(&err));
    }
    let cp = kept.sync().await.map_err(|e| Failed::local(format!("syncing {}", kept.path().display()), &e))?;
    let job_key = job.to_owned();
    ctx.db.call(move |l| l.verified(&job_key, &cp, now_ms())).await.map_err(|e| Failed::ledger(&e))?;
    let file = kept.reader().map_err(|e| Failed::local(format!("reopening {}", kept.path().display()), &e))?;
    let result = ctx.store.promote_file(&item.key, file, &Expected::exactly(digest), Mode::Create).await;
    result.map_err(|e| {
        let failed = Failed::core(&e);
        if failed.code != exit::IO {
            remove_partial(kept.path());
        }
        failed
    })
}

/// Streams a small body straight into staging; core verifies it on the way.
async fn stream(
    ctx: &Ctx,
    item: &Item,
    response: Response,
    length: Option<u64>,
    done: &mut Done,
) -> Result<Promotion, Failed> {
    let source_error: Arc<Mutex<Option<FetchError>>> = Arc::default();
    let fetched = Arc::new(AtomicU64::new(0));
    let (slot, count, progress) = (Arc::clone(&source_error), Arc::clone(&fetched), Arc::clone(&ctx.progress));
    let chunks = futures_util::stream::unfold(Some(response), move |state| {
        let (slot, count, progress) = (Arc::clone(&slot), Arc::clone(&count), Arc::clone(&progress));
        async move {
            let mut response = state?;
            let fail = |err: FetchError| {
                let text = err.to_string();
                *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
                Some((Err(std::io::Error::other(text)), None))
            };
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    progress.add_bytes(chunk.len() as u64);
                    Some((Ok::<Bytes, std::io::Error>(chunk), Some(response)))
                }
                Ok(None) => match length {
                    Some(want) if count.load(Ordering::Relaxed) < want => {
                        fail(FetchError::ShortBody { got: count.load(Ordering::Relaxed), want })
                    }
                    _ => None,
                },
                Err(err) => fail(FetchError::transport(&err)),
            }
        }
    });
    let result = ctx.store.promote_stream(&item.key, chunks, &item.expected, Mode::Create).await;
    done.fetched += fetched.load(Ordering::Relaxed);
    result.map_err(|err| match source_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
        Some(fetch_err) => Failed::fetch(&fetch_err),
        None => Failed::core(&err),
    })
}
