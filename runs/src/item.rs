//! One item, start to finish: already complete? → fetch (local file, HTTP stream, HTTP into a
//! resumable partial, or on S3 into a resumable multipart upload, see `upload`) → core's
//! verified, create-only promotion → ledger.
//!
//! The ledger records `promoted` only after the backend's publish returned; a repeated attempt
//! (another process, a rerun after a crash) meets the create-only publish and ends as
//! already-present, never as a second write.
//!
//! An attempt is begun in the ledger ([`crate::ledger::Ledger::begin_attempt`]) before the source
//! is touched: a job in flight under another live worker of this run directory is waited for
//! (as long as that worker records progress), never worked on twice. An item whose shard lease
//! is lost stops at its next chunk, keeps its partial and checkpoint, and gives the job back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use promote_core::kit::blocking::Workers;
use promote_core::{Error, Expected, Mode, Outcome as Promotion, Receipt, Sha256, Store};
use reqwest::{Response, StatusCode, Url};

use crate::ahead::Begun;
use crate::events::{Event, Events};
use crate::fetch::{self, FetchError, Http, RangeFrom};
use crate::ledger::{Begin, Checkpoint, Db, JobRow, Ledger, LedgerError, State, now_ms};
use crate::manifest::{Item, Source};
use crate::resume::{Decision, Partial};
use crate::segments;
use crate::shards::{ShardRecord, owner_alive};
use crate::upload;

/// What every item's processing shares.
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
    /// Parallel range requests per large item (see [`crate::segments`]).
    pub(crate) segments: usize,
    /// Stream small items straight into staging (else download into the run directory first).
    pub(crate) streaming: bool,
    /// `<run dir>/partials`.
    pub(crate) partials: PathBuf,
    /// `<run dir>/spool` (local sources on the spool path).
    pub(crate) spool: PathBuf,
    /// Where the run's events go.
    pub(crate) events: Arc<dyn Events>,
    /// This worker's owner record (see `shards::owner`), which the ledger's jobs name.
    pub(crate) owner: String,
    /// How long to wait for another worker's job that records no progress (the lease).
    pub(crate) patience: Duration,
    /// Threads for small local files (see [`Ctx::workers`]), started by the first.
    pub(crate) workers: tokio::sync::OnceCell<Workers>,
    /// How many: `concurrency`.
    pub(crate) worker_threads: usize,
}

impl Ctx {
    /// The run's worker threads, started on first use (a run of URLs needs none).
    async fn workers(&self) -> Result<&Workers, promote_core::Error> {
        self.workers.get_or_try_init(|| async { Workers::new(self.worker_threads) }).await
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// The reason of an item stopped because its shard's lease was lost (not a failure: the job is
/// given back for the worker that took the shard over).
pub(crate) const LEASE_LOST: &str = "lease-lost";
/// The reason of an item another live worker of this run directory kept busy too long.
const BUSY: &str = "busy";
/// Waits for another worker's job, at most, per item.
const MAX_WAITS: u32 = 64;

/// How an item ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Published by this run.
    Promoted,
    /// Identical bytes were already at the key.
    AlreadyPresent,
    /// Not promoted; see the failure.
    Failed,
    /// Not attempted (dry run, `--max`).
    Skipped,
    /// Finished by a worker on another machine, as its shard's done marker says (not looked at
    /// here: "already present" is said only after a `head`).
    Elsewhere,
    /// Not finished: the run was cancelled first (the item was in flight, or not started).
    NotDone,
}

impl Outcome {
    /// The word used in summaries and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::AlreadyPresent => "already-present",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Elsewhere => "done-elsewhere",
            Self::NotDone => "not-done",
        }
    }
}

impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What kind of failure an item's is, for a caller that sorts them (an exit code, an alert).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// The manifest line could not be used (not JSON, a bad key, digest or source).
    BadLine,
    /// The key already holds other bytes; nothing was replaced.
    Conflict,
    /// The bytes were not what the manifest promised (size or SHA-256); nothing was published.
    Verification,
    /// The source could not be fetched (an HTTP status, a broken connection, a short body).
    Fetch,
    /// Anything else that failed on the way: a local file, the run directory, the ledger, the
    /// backend, another worker holding the job.
    Io,
}

/// Why an item (or one attempt at it) failed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Short reason: `http-404`, `connection`, `sha256-mismatch`, `conflict`, …
    pub reason: String,
    /// What kind of failure it is.
    pub kind: FailureKind,
    /// One line: what happened and to which key.
    pub message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn new(reason: impl Into<String>, kind: FailureKind, message: impl Into<String>) -> Self {
        Self { reason: reason.into(), kind, message: message.into(), retryable: false, retry_after: None }
    }

    pub(crate) fn fetch(err: &FetchError) -> Self {
        Self {
            reason: err.reason(),
            kind: FailureKind::Fetch,
            message: err.to_string(),
            retryable: err.retryable(),
            retry_after: err.retry_after(),
        }
    }

    pub(crate) fn core(err: &Error) -> Self {
        let (reason, kind) = match err {
            Error::Conflict { .. } | Error::AlreadyExists { .. } => ("conflict", FailureKind::Conflict),
            Error::DigestMismatch { .. } => ("sha256-mismatch", FailureKind::Verification),
            Error::SizeMismatch { .. } => ("size-mismatch", FailureKind::Verification),
            _ => ("backend", FailureKind::Io),
        };
        Self { retryable: err.is_retryable(), ..Self::new(reason, kind, err.to_string()) }
    }

    pub(crate) fn local(what: String, err: &std::io::Error) -> Self {
        Self::new("local-io", FailureKind::Io, format!("{what}: {err}"))
    }

    pub(crate) fn ledger(err: &LedgerError) -> Self {
        Self::new("ledger", FailureKind::Io, crate::error::chain(err))
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The shard's lease was lost, or another worker owns the job now.
    pub(crate) fn lost(key: &promote_core::Key) -> Self {
        Self::new(
            LEASE_LOST,
            FailureKind::Io,
            format!("stopped {:?}: another worker took its shard over; it resumes from here", key.as_str()),
        )
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
    pub(crate) failure: Option<Failure>,
    /// Found present as the ledger records it (promoted, with this digest and size): nothing
    /// to record.
    pub(crate) recorded: bool,
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
            Some(row) if row.state == State::Elsewhere => {
                done.outcome = Outcome::Elsewhere;
                done.sha256 = row.sha256;
            }
            Some(row) if row.state == State::Failed => {
                let reason = row.reason.clone().unwrap_or_else(|| "failed".into());
                done.failure =
                    Some(Failure::new(reason, FailureKind::Io, "failed in another worker (see `promote status`)"));
            }
            _ => done.failure = Some(Failure::new("not-done", FailureKind::Io, "no worker finished it; run again")),
        }
        done
    }

    /// An item of a shard a worker on another machine finished, as its done marker says.
    pub(crate) fn elsewhere(record: &ShardRecord, job: &str) -> Self {
        let mut done = Self::empty();
        if let Some(sha) = record.promoted.get(job) {
            done.outcome = Outcome::Elsewhere;
            done.sha256 = sha.parse().ok();
        } else if let Some(reason) = record.failed.get(job) {
            done.failure = Some(Failure::new(
                reason.clone(),
                FailureKind::Io,
                format!("failed on {} (its run directory says why; the next run tries it again)", record.writer()),
            ));
        } else {
            done.failure = Some(Failure::new(
                "not-done",
                FailureKind::Io,
                format!("the shard's done marker by {} does not mention it; run again", record.writer()),
            ));
        }
        done
    }

    /// Whether the item was stopped without an outcome (its lease lost): the worker that took
    /// its shard over reports it.
    pub(crate) fn stopped(&self) -> bool {
        self.failure.as_ref().is_some_and(|f| f.reason == LEASE_LOST)
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
            recorded: false,
        }
    }
}

/// Processes `item` (job key `job`) to the end and records the result in the ledger. `hint`:
/// a digest another worker recorded for the job (a `head` showing it at the key means already
/// present); `begun`: its first attempt, when begun already (with its row from before);
/// `lost`: set when the shard's lease is lost (the item stops at its next step).
pub(crate) async fn process(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    hint: Option<Sha256>,
    begun: Option<Begun>,
    lost: &AtomicBool,
) -> Done {
    let mut done = Done::empty();
    let result = attempts(ctx, item, job, hint, begun, lost, &mut done).await;
    let now = now_ms();
    let job_key = job.to_owned();
    match result {
        Ok(promotion) => {
            let receipt = promotion.receipt();
            done.outcome = match promotion {
                Promotion::Promoted(_) => Outcome::Promoted,
                Promotion::AlreadyPresent(_) => Outcome::AlreadyPresent,
            };
            (done.sha256, done.size) = (Some(receipt.sha256), Some(receipt.size));
            tracing::info!(key = %item.key, outcome = done.outcome.as_str(), decision = ?done.decision.map(Decision::as_str), "item done");
            let (sha, size) = (receipt.sha256, receipt.size);
            // If it is lost, the object is in place all the same: the next run finds it there.
            if !done.recorded {
                record(ctx, &item.key, "promoted, but the ledger could not record it", move |l| {
                    l.promoted(&job_key, &sha, size, now)
                });
            }
        }
        Err(failed) if failed.reason == LEASE_LOST => {
            tracing::info!(key = %item.key, "lease lost; the job is given back");
            let owner = ctx.owner.clone();
            record(ctx, &item.key, "the ledger could not give the job back", move |l| {
                l.disown(&job_key, &owner, now).map(drop)
            });
            done.failure = Some(failed);
        }
        Err(failed) => {
            tracing::info!(key = %item.key, reason = %failed.reason, error = %failed.message, "item failed");
            let (owner, reason, message) = (ctx.owner.clone(), failed.reason.clone(), failed.message.clone());
            // Refused when the job is not ours (busy elsewhere) or was promoted meanwhile.
            record(ctx, &item.key, "the ledger could not record a failure", move |l| {
                l.failed(&job_key, &owner, &reason, &message, now).map(drop)
            });
            done.failure = Some(failed);
        }
    }
    done
}

/// Records the end of item `key` in the ledger with the next transaction ([`Db::record`]);
/// `failed_to` is the warning logged, with why, if it cannot be.
pub(crate) fn record(
    ctx: &Ctx,
    key: &promote_core::Key,
    failed_to: &'static str,
    f: impl FnOnce(&mut Ledger) -> Result<(), LedgerError> + Send + 'static,
) {
    let key = key.clone();
    ctx.db.record(f, move |err| tracing::warn!(key = %key, error = %crate::error::chain(err), "{failed_to}"));
}

async fn row(ctx: &Ctx, job: &str) -> Result<Option<JobRow>, Failure> {
    let job_key = job.to_owned();
    ctx.db.call(move |l| l.job(&job_key)).await.map_err(|e| Failure::ledger(&e))
}

async fn attempts(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    hint: Option<Sha256>,
    mut begun: Option<Begun>,
    lost: &AtomicBool,
    done: &mut Done,
) -> Result<Promotion, Failure> {
    let mut partial: Option<Partial> = None;
    let (mut attempt, mut waits) = (0, 0);
    let mut budget: Option<fetch::RetryBudget> = None;
    let mut look = true;
    // Bounded by the budget (a retryable failure goes round again while it has `ctx.retries`
    // attempts without progress left; progress, a partial further than ever, is bounded by the
    // size) and by `MAX_WAITS` waits for another worker, each bounded by `ctx.patience`.
    loop {
        // The first attempt may be begun already, with the row read as it began.
        let (row, ahead) = match begun.take() {
            Some(begun) => begun,
            None => (row(ctx, job).await?, None),
        };
        if look {
            look = false;
            if let Some(present) = already_complete(ctx, item, row.as_ref(), hint).await? {
                done.decision = Some(Decision::AlreadyComplete);
                let receipt = present.receipt();
                done.recorded = row.as_ref().is_some_and(|r| {
                    r.state == State::Promoted && r.sha256 == Some(receipt.sha256) && r.size == Some(receipt.size)
                });
                return Ok(present);
            }
            if row.as_ref().is_some_and(|r| r.state == State::Promoted) {
                // Recorded promoted, but the storage does not show it (deleted since): the
                // record is stale; fetch again (create-only still decides).
                let job_key = job.to_owned();
                ctx.db.call(move |l| l.forget_promoted(&job_key, now_ms())).await.map_err(|e| Failure::ledger(&e))?;
            }
        }
        if lost.load(Ordering::Relaxed) {
            return Err(Failure::lost(&item.key));
        }
        let (job_key, owner) = (job.to_owned(), ctx.owner.clone());
        let begin = match ahead {
            Some(attempts) => Ok(Begin::Mine(attempts)),
            None => ctx.db.call(move |l| l.begin_attempt(&job_key, &owner, now_ms(), &owner_alive)).await,
        };
        match begin.map_err(|e| Failure::ledger(&e))? {
            Begin::Mine(_) => {}
            Begin::Promoted => {
                // Another worker of this run directory promoted it meanwhile: look at it.
                look = true;
                continue;
            }
            Begin::Busy { owner, updated_ms } => {
                waits += 1;
                wait_for(ctx, item, job, &owner, updated_ms, waits).await?;
                look = true;
                continue;
            }
        }
        attempt += 1;
        done.attempts = attempt;
        let mut checkpoint = if partial.is_none() { row.and_then(|r| r.checkpoint) } else { None };
        let budget = budget.get_or_insert_with(|| {
            fetch::RetryBudget::new(ctx.retries, checkpoint.as_ref().map_or(0, Checkpoint::fetched))
        });
        let result = match &item.source {
            Source::Local(path) => local(ctx, item, path, lost, done).await,
            Source::Http => match item.url() {
                Some(Ok(url)) => http(ctx, item, job, &url, &mut checkpoint, &mut partial, lost, done).await,
                // Ruled out when the manifest was read.
                other => {
                    let why = other.and_then(Result::err).unwrap_or_default();
                    Err(Failure::new("bad-manifest-line", FailureKind::BadLine, why))
                }
            },
        };
        match result {
            Ok(promotion) => return Ok(promotion),
            Err(failed) if failed.retryable => {
                let offset = partial.as_ref().map(Partial::progress).or(checkpoint.as_ref().map(Checkpoint::fetched));
                let offset = offset.unwrap_or(0);
                let Some(wait) = budget.retry(offset, failed.retry_after) else { return Err(failed) };
                tracing::info!(key = %item.key, attempt, offset, error = %failed.message, wait_ms = wait.as_millis() as u64, "retrying");
                ctx.events.event(Event::Retrying {
                    line: item.line,
                    key: item.key.clone(),
                    attempt,
                    wait,
                    failure: failed,
                });
                tokio::time::sleep(wait).await;
            }
            Err(failed) => return Err(failed),
        }
    }
}

/// Waits while another live worker of this run directory (`owner`) has `job` in flight and
/// records progress; returns when it let go (done, failed, gone) for the caller to look again.
///
/// # Errors
///
/// A `busy` failure when it recorded nothing for `ctx.patience` (paused, or stuck), or after
/// [`MAX_WAITS`] waits.
async fn wait_for(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    owner: &str,
    mut updated_ms: i64,
    waits: u32,
) -> Result<(), Failure> {
    let writer = ShardRecord { owner: owner.to_owned(), ..ShardRecord::default() }.writer();
    let busy = |why: String| {
        Failure::new(
            BUSY,
            FailureKind::Io,
            format!("{:?}: another promote process ({writer}) {why}; run again later", item.key.as_str()),
        )
    };
    if waits > MAX_WAITS {
        return Err(busy(format!("took it back {MAX_WAITS} times")));
    }
    tracing::info!(key = %item.key, owner = %writer, "another worker has the job in flight; waiting");
    let mut quiet_since = Instant::now();
    // Bounded: ends when the owner lets go, or after `patience` without a change it records.
    loop {
        tokio::time::sleep(WAIT_POLL).await;
        let Some(row) = row(ctx, job).await? else { return Ok(()) };
        let in_flight = matches!(row.state, State::Fetching | State::Verified);
        if !in_flight || row.owner.as_deref() != Some(owner) || !owner_alive(owner) {
            return Ok(());
        }
        if row.updated_ms != updated_ms {
            (updated_ms, quiet_since) = (row.updated_ms, Instant::now());
        } else if quiet_since.elapsed() >= ctx.patience {
            return Err(busy(format!(
                "has it in flight and recorded no progress for {}; it may be paused",
                humantime::format_duration(ctx.patience)
            )));
        }
    }
}

/// How often [`wait_for`] looks at the ledger.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// Already complete: the key holds the digest this job promoted or verified before, the
/// manifest's expected digest, or the digest another worker recorded for it (`hint`). Decided
/// from the ledger and a `head`, without touching the source. A key holding other bytes than
/// the manifest asks for is a conflict, also without fetching.
async fn already_complete(
    ctx: &Ctx,
    item: &Item,
    row: Option<&JobRow>,
    hint: Option<Sha256>,
) -> Result<Option<Promotion>, Failure> {
    let recorded = match row {
        Some(JobRow {
            state: State::Promoted | State::Verified | State::Elsewhere, sha256: Some(sha), size, ..
        }) => Some((*sha, *size)),
        _ => None,
    };
    // The manifest's digest is the authority; a recorded one stands in for a manifest without.
    let (want, binding) = match (item.expected.sha256, recorded, hint) {
        (Some(sha), ..) => ((sha, item.expected.size), true),
        (None, Some(recorded), _) => (recorded, false),
        (None, None, Some(sha)) => ((sha, item.expected.size), false),
        (None, None, None) => return Ok(None),
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
        Some(have) if binding => Err(Failure::new(
            "conflict",
            FailureKind::Conflict,
            format!(
                "key {:?} holds sha256 {have}, not the expected {}; nothing was replaced",
                item.key.as_str(),
                want.0
            ),
        )),
        // A recorded digest is no promise about the source: fetch, and the create-only
        // promotion decides. So it does when no digest is stored with the object.
        Some(_) | None => Ok(None),
    }
}

async fn local(ctx: &Ctx, item: &Item, path: &Path, lost: &AtomicBool, done: &mut Done) -> Result<Promotion, Failure> {
    if lost.load(Ordering::Relaxed) {
        return Err(Failure::lost(&item.key));
    }
    let file = std::fs::File::open(path).map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound { "source-missing" } else { "source-unreadable" };
        Failure::new(reason, FailureKind::Io, format!("cannot read {}: {e}", path.display()))
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    done.decision = Some(Decision::Fresh);
    let result = if ctx.streaming && len < promote_core::kit::CHUNK_SIZE as u64 {
        // A small file: every step in place on one of the run's worker threads, as a directory
        // put does, instead of a trip to the blocking pool and back for each.
        let (store, key, expected) = (ctx.store.clone(), item.key.clone(), item.expected);
        let promote = async move { store.promote_file(&key, file, &expected, Mode::Create).await };
        async { ctx.workers().await?.run(promote).await? }.await
    } else if ctx.streaming {
        ctx.store.promote_file(&item.key, file, &item.expected, Mode::Create).await
    } else {
        let file = tokio::fs::File::from_std(file);
        ctx.store.promote_spooled(&item.key, file, &item.expected, Mode::Create, &ctx.spool).await
    };
    done.fetched += len;
    ctx.events.event(Event::Bytes { line: item.line, n: len });
    result.map_err(|e| Failure::core(&e))
}

pub(crate) fn set_decision(done: &mut Done, decision: Decision) {
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
    lost: &AtomicBool,
    done: &mut Done,
) -> Result<Promotion, Failure> {
    let path = ctx.partials.join(job);
    if partial.is_none()
        && let Some(cp) = checkpoint.clone().filter(|cp| cp.upload.is_some())
    {
        // Streamed into the backend's resumable staged write, not a partial file.
        let _slot = ctx.http.slot(url).await;
        return upload::resume(ctx, item, job, url, cp, checkpoint, lost, done).await;
    }
    if partial.is_none()
        && let Some(cp) = checkpoint.take()
    {
        let (reopened, kept) = Partial::reopened(&path, cp)
            .await
            .map_err(|e| partial_error(format!("reading the partial download {}", path.display()), &e))?;
        if kept {
            tracing::info!(key = %item.key, offset = reopened.offset(), "partial download kept");
        } else {
            tracing::info!(key = %item.key, "partial download failed its prefix check; discarded");
            set_decision(done, Decision::Discard);
            if !clear_checkpoint(ctx, job).await? {
                return Err(Failure::lost(&item.key));
            }
        }
        *partial = Some(reopened);
    }
    if let Some(kept) = partial.take_if(|kept| kept.complete()) {
        set_decision(done, Decision::Resume);
        return promote_partial(ctx, item, job, kept, lost).await;
    }
    if partial.as_ref().is_some_and(Partial::segmented) {
        let _slot = ctx.http.slot(url).await;
        let kept = partial.as_mut().expect("checked above");
        set_decision(done, if kept.progress() > 0 { Decision::Resume } else { Decision::Fresh });
        return segmented(ctx, item, job, url, partial, None, lost, done).await;
    }
    let mut range = None;
    if let Some(kept) = partial.as_mut()
        && kept.offset() > 0
    {
        match kept.if_range() {
            Some(if_range) => range = Some(RangeFrom { offset: kept.offset(), last: None, if_range }),
            None => {
                tracing::info!(key = %item.key, "no validator to resume safely; discarded");
                set_decision(done, Decision::Discard);
                kept.reset().map_err(|e| Failure::local(format!("truncating {}", path.display()), &e))?;
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
            return Err(Failure::fetch(&FetchError::Protocol("416 for a resume; fetching from the start".into())));
        }
        Err(err) => return Err(Failure::fetch(&err)),
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
                return Err(Failure::fetch(&FetchError::Protocol("206 without a usable Content-Range".into())));
            };
            let same_object = start == range.offset
                && (kept.total.is_none() || total.is_none() || total == kept.total)
                && (kept.etag.is_none() || etag.is_none() || etag == kept.etag);
            if !same_object {
                discard(partial, &path)?;
                set_decision(done, Decision::Discard);
                return Err(Failure::fetch(&FetchError::Protocol(format!(
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
            kept.reset().map_err(|e| Failure::local(format!("truncating {}", path.display()), &e))?;
            (kept.etag, kept.last_modified, kept.total) = (etag, last_modified, length);
        }
    } else {
        if status == StatusCode::PARTIAL_CONTENT {
            return Err(Failure::fetch(&FetchError::Protocol("206 to a request without Range".into())));
        }
        if done.decision.is_none() {
            done.decision = Some(Decision::Fresh);
        }
        if let (Some(want), Some(got)) = (item.expected.size, length)
            && want != got
        {
            return Err(Failure::new(
                "size-mismatch",
                FailureKind::Verification,
                format!(
                    "{url} is {got} bytes, the manifest says {want} for key {:?}; nothing was published",
                    item.key.as_str()
                ),
            ));
        }
        let large = length.or(item.expected.size).is_some_and(|n| n >= ctx.resume_threshold);
        if ctx.streaming && !large && partial.is_none() {
            if lost.load(Ordering::Relaxed) {
                return Err(Failure::lost(&item.key));
            }
            return stream(ctx, item, response, length, done).await;
        }
        // A large download goes straight into the backend's resumable staged write where it
        // has one (S3), unless it is to be fetched in segments or `streaming = false` asks for
        // every item in the run directory first.
        if ctx.streaming && large && partial.is_none() && ctx.segments <= 1 {
            let staged = ctx.store.stage_resumable(&item.key, &item.expected, None).await;
            if let Some(staged) = staged.map_err(|e| Failure::core(&e))? {
                let source = upload::Source { etag, last_modified, total: length };
                return upload::fill(ctx, item, job, staged, response, source, checkpoint, lost, done).await;
            }
        }
        let kept = match partial.take() {
            Some(mut kept) => {
                kept.reset().map_err(|e| Failure::local(format!("truncating {}", path.display()), &e))?;
                kept
            }
            None => Partial::create(&path).map_err(|e| partial_error(format!("creating {}", path.display()), &e))?,
        };
        let kept = partial.insert(kept);
        (kept.etag, kept.last_modified, kept.total) = (etag, last_modified, length);
        if segments::fit(ctx, kept, &response) {
            let total = kept.total.unwrap_or_default();
            kept.split(segments::count(ctx.segments, total));
            return segmented(ctx, item, job, url, partial, Some(response), lost, done).await;
        }
    }
    // Both branches above leave the partial to download into in `partial`.
    let kept = partial.as_mut().expect("set above");
    if let Err(failed) = download(ctx, item, job, kept, response, lost, done).await {
        // Longer than promised: nothing of it is worth keeping, nor its checkpoint.
        if failed.kind == FailureKind::Verification {
            if !clear_checkpoint(ctx, job).await? {
                return Err(Failure::lost(&item.key));
            }
            partial.take().expect("set above").remove();
        }
        return Err(failed);
    }
    // `download` keeps it there.
    let kept = partial.take().expect("set above");
    promote_partial(ctx, item, job, kept, lost).await
}

/// Fetches a segmented partial's missing bytes (see [`segments`]), then promotes it.
#[allow(clippy::too_many_arguments)]
async fn segmented(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    url: &Url,
    partial: &mut Option<Partial>,
    first: Option<Response>,
    lost: &AtomicBool,
    done: &mut Done,
) -> Result<Promotion, Failure> {
    let kept = partial.as_mut().expect("the caller has a partial");
    let (fetched, result) = segments::fetch(ctx, item, job, url, kept, first, lost).await;
    done.fetched += fetched.bytes;
    if fetched.discarded {
        set_decision(done, Decision::Discard);
    }
    result?;
    let kept = partial.take().expect("still there");
    promote_partial(ctx, item, job, kept, lost).await
}

/// A partial that could not be opened: another process holds its lock (a retryable `busy`),
/// or a local I/O error.
fn partial_error(what: String, err: &std::io::Error) -> Failure {
    if err.kind() == std::io::ErrorKind::WouldBlock {
        return Failure { retryable: true, ..Failure::new(BUSY, FailureKind::Io, format!("{what}: {err}")) };
    }
    Failure::local(what, err)
}

/// Forgets the job's checkpoint; false when the job is no longer ours.
pub(crate) async fn clear_checkpoint(ctx: &Ctx, job: &str) -> Result<bool, Failure> {
    let (job_key, owner) = (job.to_owned(), ctx.owner.clone());
    ctx.db.call(move |l| l.clear_checkpoint(&job_key, &owner, now_ms())).await.map_err(|e| Failure::ledger(&e))
}

fn discard(partial: &mut Option<Partial>, path: &Path) -> Result<(), Failure> {
    if let Some(kept) = partial.as_mut() {
        kept.reset().map_err(|e| Failure::local(format!("truncating {}", path.display()), &e))?;
    }
    Ok(())
}

async fn record_checkpoint(ctx: &Ctx, item: &Item, job: &str, kept: &mut Partial) -> Result<(), Failure> {
    let cp = kept.sync().await.map_err(|e| Failure::local(format!("syncing {}", kept.path().display()), &e))?;
    let (job_key, owner) = (job.to_owned(), ctx.owner.clone());
    let mine = ctx.db.call(move |l| l.checkpoint(&job_key, &owner, &cp, now_ms())).await;
    if mine.map_err(|e| Failure::ledger(&e))? { Ok(()) } else { Err(Failure::lost(&item.key)) }
}

/// Copies the body into the partial, checkpointing as it goes.
async fn download(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    kept: &mut Partial,
    mut response: Response,
    lost: &AtomicBool,
    done: &mut Done,
) -> Result<(), Failure> {
    // Ends with the body; each chunk waits at most the client's read timeout.
    loop {
        if lost.load(Ordering::Relaxed) {
            record_checkpoint(ctx, item, job, kept).await?;
            return Err(Failure::lost(&item.key));
        }
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => {
                record_checkpoint(ctx, item, job, kept).await?;
                return Err(Failure::fetch(&FetchError::transport(&err)));
            }
        };
        kept.write(&chunk).map_err(|e| Failure::local(format!("writing {}", kept.path().display()), &e))?;
        done.fetched += chunk.len() as u64;
        ctx.events.event(Event::Bytes { line: item.line, n: chunk.len() as u64 });
        if item.expected.too_long(kept.offset()) || kept.total.is_some_and(|t| kept.offset() > t) {
            let want = item.expected.size.or(kept.total).unwrap_or_default();
            kept.reset().map_err(|e| Failure::local(format!("truncating {}", kept.path().display()), &e))?;
            return Err(Failure::new(
                "size-mismatch",
                FailureKind::Verification,
                format!("the source for {:?} is longer than {want} bytes; nothing was published", item.key.as_str()),
            ));
        }
        if kept.due() {
            record_checkpoint(ctx, item, job, kept).await?;
        }
    }
    match kept.total {
        Some(total) if kept.offset() < total => {
            record_checkpoint(ctx, item, job, kept).await?;
            Err(Failure::fetch(&FetchError::ShortBody { got: kept.offset(), want: total }))
        }
        _ => {
            kept.total = Some(kept.offset());
            Ok(())
        }
    }
}

/// Checks a complete partial against the manifest, records it `verified`, then promotes it.
/// Where the backend can take the file as it is (local disk or OpenDAL's staging, same
/// filesystem: [`Store::promote_adopted`]), it becomes the staged write, published by the usual
/// create-only rename or upload: its bytes were written once and hashed once, as they came in.
/// Otherwise core copies it, hashing every byte again on the way, reading them through the
/// partial's locked handle.
/// The partial is deleted while still locked once it is promoted or refused.
async fn promote_partial(
    ctx: &Ctx,
    item: &Item,
    job: &str,
    mut kept: Partial,
    lost: &AtomicBool,
) -> Result<Promotion, Failure> {
    let digest = kept.digest();
    if let Err(err) = item.expected.check(&item.key, &digest) {
        if !clear_checkpoint(ctx, job).await? {
            return Err(Failure::lost(&item.key));
        }
        kept.remove();
        return Err(Failure::core(&err));
    }
    let cp = kept.sync().await.map_err(|e| Failure::local(format!("syncing {}", kept.path().display()), &e))?;
    let (job_key, owner) = (job.to_owned(), ctx.owner.clone());
    let mine = ctx.db.call(move |l| l.verified(&job_key, &owner, &cp, now_ms())).await;
    if !mine.map_err(|e| Failure::ledger(&e))? || lost.load(Ordering::Relaxed) {
        return Err(Failure::lost(&item.key));
    }
    let reopen =
        |kept: &Partial| kept.reader().map_err(|e| Failure::local(format!("reopening {}", kept.path().display()), &e));
    let expected = Expected::exactly(digest);
    let adopted =
        ctx.store.promote_adopted(&item.key, kept.path(), reopen(&kept)?, digest, &expected, Mode::Create).await;
    let result = match adopted {
        Ok(Some(promotion)) => Ok(promotion),
        Ok(None) => ctx.store.promote_file(&item.key, reopen(&kept)?, &expected, Mode::Create).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(promotion) => {
            kept.remove();
            Ok(promotion)
        }
        Err(e) => {
            let failed = Failure::core(&e);
            if failed.kind != FailureKind::Io {
                kept.remove();
            }
            Err(failed)
        }
    }
}

/// Streams a small body straight into staging; core verifies it on the way.
async fn stream(
    ctx: &Ctx,
    item: &Item,
    response: Response,
    length: Option<u64>,
    done: &mut Done,
) -> Result<Promotion, Failure> {
    let source_error: Arc<Mutex<Option<FetchError>>> = Arc::default();
    let fetched = Arc::new(AtomicU64::new(0));
    let (slot, count, events, line) =
        (Arc::clone(&source_error), Arc::clone(&fetched), Arc::clone(&ctx.events), item.line);
    let chunks = futures_util::stream::unfold(Some(response), move |state| {
        let (slot, count, events) = (Arc::clone(&slot), Arc::clone(&count), Arc::clone(&events));
        async move {
            let mut response = state?;
            let fail = |err: FetchError| {
                let text = err.to_string();
                *crate::lock(&slot) = Some(err);
                Some((Err(std::io::Error::other(text)), None))
            };
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    events.event(Event::Bytes { line, n: chunk.len() as u64 });
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
    result.map_err(|err| match crate::lock(&source_error).take() {
        Some(fetch_err) => Failure::fetch(&fetch_err),
        None => Failure::core(&err),
    })
}

#[cfg(test)]
#[path = "item_tests.rs"]
mod tests;
