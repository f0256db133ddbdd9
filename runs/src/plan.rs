//! Planning a run and driving its shards: [`Plan::read`] reads and checks the manifest,
//! [`Plan::run`] leases shards (from the run directory's ledger,
//! or through the bucket where the backend has control objects) and works through their items,
//! [`Plan::dry_run`] only says what would be done.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use promote_core::{Mode, Store};
use tokio::sync::{Notify, Semaphore};

use crate::ahead::{self, Ahead};
use crate::bucket::BucketLeases;
use crate::error::RunError;
use crate::events::{Event, Events};
use crate::fetch::Http;
use crate::index::{self, Bits, Index};
use crate::item::{self, Ctx, Done};
use crate::job;
use crate::ledger::{self, Db, Elsewhere, now_ms};
use crate::manifest::{self, BadLine, Item};
use crate::options::Options;
use crate::report::{ItemReport, Reporter, Summary};
use crate::shards::{self, Lease, Leases, LedgerLeases, ShardRecord};

/// A run, planned: the manifest read and checked, repeated lines folded into one job each,
/// the jobs past [`Options::max`] set aside. What is kept of the manifest is where each job's
/// line is (a few bytes a job, see `index.rs`), not its items: a shard's items are read again
/// when it starts. Nothing is written until [`Plan::run`].
#[derive(Debug)]
pub struct Plan {
    options: Options,
    /// The manifest's bytes, hashed (part of the run's identity).
    digest: sha2::Sha256,
    /// Lines that could not be used.
    bad: Vec<BadLine>,
    /// Where every distinct job's line is, in manifest order.
    index: Arc<Index>,
    /// The jobs to process: the first `count` of the index (the rest are past `max`).
    count: usize,
    /// Their bytes, when the manifest gives every one of them a size.
    bytes: Option<u64>,
    /// Lines repeating an earlier line's job, with that job's key: each reports its job's outcome.
    repeats: Vec<(Item, String)>,
    /// When planning began (the summary's elapsed time counts from here).
    started: Instant,
}

/// Bytes of manifest read and parsed at a time while planning (a few lines' worth in tests, so
/// that they cross blocks).
const BLOCK: usize = if cfg!(test) { 4096 } else { 16 << 20 };

/// Jobs read back from the manifest at a time for a dry run and the end of a run.
const READ_BACK: usize = 4096;

impl Plan {
    /// Reads and checks the manifest [`Options::manifest`]. A bad line does not stop the run:
    /// it is reported failed ([`Plan::bad_lines`] lists them) and the other lines proceed. The
    /// same job twice (a repeated line) is one job: it runs once, and each of its lines
    /// reports the one outcome. The manifest is read a block at a time, so memory stays a few
    /// bytes per job, whatever its length; it must not change until the run ends.
    ///
    /// # Errors
    ///
    /// [`RunError::Manifest`] when the manifest cannot be read.
    pub fn read(options: Options) -> Result<Self, RunError> {
        use sha2::Digest as _;
        use std::io::Read as _;
        let started = Instant::now();
        let path = options.manifest.clone();
        let failed = |error| RunError::Manifest { path: path.clone(), error };
        let mut file = std::fs::File::open(&path).map_err(failed)?;
        let base = path.parent().map(PathBuf::from).unwrap_or_default();
        let meta = file.metadata().map_err(failed)?;
        if !meta.is_file() {
            // A pipe cannot be read again, and a run reads each shard's lines again.
            let why = "not a regular file (a run reads it again shard by shard): write it to a file first";
            return Err(failed(std::io::Error::other(why)));
        }
        let stamp = index::stamp(&meta);
        let mut index = Index::new(&path, &base, stamp);
        let max = options.max.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
        let (mut bad, mut repeats, mut bytes) = (Vec::new(), Vec::new(), Some(0u64));
        let mut digest = sha2::Sha256::new();
        // The first 128 bits of each job key tell the jobs apart (two jobs of a billion-line
        // manifest share them with odds of about 10^-21) in half the memory of the whole key.
        let mut seen: HashSet<[u8; 16], job::Spread> = HashSet::default();
        // A long manifest is parsed (and its job keys hashed) on every core, taken in order here.
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let prepare = |at: u64, entry: manifest::Entry| {
            entry.map(|item| {
                let job = job::digest(&item);
                (at, item, job)
            })
        };
        let (mut block, mut line, mut offset, mut want) = (Vec::new(), 1usize, 0u64, BLOCK);
        // Each round parses the block's whole lines and keeps the rest for the next; ends at the
        // end of the file.
        loop {
            let mut eof = false;
            while block.len() < want && !eof {
                let have = block.len();
                block.resize(want, 0);
                let n = file.read(&mut block[have..]).map_err(failed)?;
                block.truncate(have + n);
                eof = n == 0;
            }
            let end = match block.iter().rposition(|&b| b == b'\n') {
                _ if eof => block.len(),
                Some(at) => at + 1,
                // A line longer than a block: read on.
                None => {
                    want += BLOCK;
                    continue;
                }
            };
            digest.update(&block[..end]);
            let newlines = block[..end].iter().filter(|&&b| b == b'\n').count();
            if offset == 0 && end > 0 {
                // Sized once for the lines the first block's suggest: a set that doubles as it
                // grows holds its old table and its new one at once.
                seen.reserve((stamp.0 as f64 * newlines as f64 / end as f64) as usize);
            }
            manifest::parse_each(&block[..end], (line, offset), &base, threads, prepare, |entry| match entry {
                Err(line) => bad.push(line),
                Ok((at, item, job)) => {
                    if !seen.insert(job[..16].try_into().expect("16 of 32 bytes")) {
                        repeats.push((item, job::hex(&job)));
                        return;
                    }
                    if index.len() < max {
                        bytes = bytes.zip(item.expected.size).map(|(a, b)| a + b);
                    }
                    index.push(item.line, at);
                }
            });
            line += newlines;
            offset += end as u64;
            block.drain(..end);
            want = BLOCK;
            if eof {
                break;
            }
        }
        drop(seen);
        let count = index.len().min(max);
        tracing::info!(items = count, ms = started.elapsed().as_millis() as u64, "manifest read");
        Ok(Self { options, digest, bad, index: Arc::new(index), count, bytes, repeats, started })
    }

    /// The manifest lines that could not be used, in order (each is reported failed).
    pub fn bad_lines(&self) -> &[BadLine] {
        &self.bad
    }

    /// How many items a run processes (distinct jobs, at most [`Options::max`]).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is nothing to process.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The options it was planned with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What a run would do, without doing it: each item's decision from a look at `store` (a
    /// `head`; none without a store) and at the run directory's kept partial downloads (see
    /// `dry_run.rs`), the items reported skipped, bad lines failed. Fetches, creates and writes
    /// nothing. The summary keeps every line's report (a dry run is a listing).
    ///
    /// # Errors
    ///
    /// [`RunError::Manifest`] when the manifest cannot be read again, or changed.
    pub async fn dry_run(self, store: Option<&Store>) -> Result<Summary, RunError> {
        let mut reports: Vec<ItemReport> = self.bad.iter().map(ItemReport::bad_line).collect();
        let partials = self.options.out.join("partials");
        let skipped = Done::skipped();
        for from in (0..self.index.len()).step_by(READ_BACK) {
            let range = from..(from + READ_BACK).min(self.index.len());
            let items = read_back(&self.index, range).await?;
            let decided: Vec<ItemReport> = futures_util::stream::iter(&items)
                .enumerate()
                .map(|(n, (item, _))| {
                    let (partials, skipped) = (&partials, &skipped);
                    async move {
                        if from + n >= self.count {
                            return ItemReport::item(item, skipped);
                        }
                        ItemReport::item(item, &crate::dry_run::decide(store, item, partials).await)
                    }
                })
                .buffered(self.options.concurrency.max(1))
                .collect()
                .await;
            reports.extend(decided);
        }
        reports.extend(self.repeats.iter().map(|(item, _)| ItemReport::item(item, &skipped)));
        Ok(Summary::new(reports, self.started.elapsed()))
    }

    /// Runs the plan into `store`: each item exactly once across every worker sharing the run
    /// directory (or, where the backend has control objects, the bucket), resuming what earlier
    /// runs left. What happens goes to `events` as it happens, every manifest line's report
    /// included ([`Event::Reported`]).
    ///
    /// `cancel` is polled from when the items start: once it completes (with a word saying
    /// what stopped the run, such as `SIGINT`), no new item starts, the ones in flight are
    /// dropped (staged writes discard themselves, partial downloads stay with their
    /// checkpoints), and the summary says what was done and what was not
    /// (`Summary::interrupted`). Pass [`std::future::pending`] to run to the end.
    ///
    /// An item's failure is no error here: it is in the summary, with its
    /// [`FailureKind`](crate::FailureKind).
    ///
    /// # Errors
    ///
    /// [`RunError::Store`] when the store cannot publish create-only; [`RunError::RunDir`] and
    /// [`RunError::Ledger`] when the run directory or its ledger cannot be set up, or the
    /// ledger fails mid-run; [`RunError::Lease`] when shard leases fail; [`RunError::Manifest`]
    /// when the manifest cannot be read again, or changed during the run.
    pub async fn run(
        self,
        store: Store,
        events: Arc<dyn Events>,
        cancel: impl Future<Output = String>,
    ) -> Result<Summary, RunError> {
        let Self { options, digest, bad, index, count, bytes, repeats, started } = self;
        // Under group commit (`durability = "batch"`), enough items in flight to fill a flush;
        // still only `concurrency` of them read or fetch bytes at a time (the staging limit,
        // and `Http`'s own limit), the rest wait, sealed, for the flush they share.
        let (store, in_flight) = if store.batches_durability() {
            (store.limit_staging(options.concurrency), promote_core::kit::BATCH.max(options.concurrency))
        } else {
            (store, options.concurrency)
        };
        store.check_mode(&Mode::Create)?;
        let out = options.out.clone();
        let (partials, spool) = (out.join("partials"), out.join("spool"));
        for dir in [&partials, &spool] {
            std::fs::create_dir_all(dir).map_err(|source| RunError::RunDir { path: dir.clone(), source })?;
        }
        let db = Db::open(&out).await?;
        let shard_size = shards::size(options.shard_size, count);
        let shard_count = count.div_ceil(shard_size) as u64;
        let run_id = shards::run_id(&digest, count, shard_size);
        let run = run_id.clone();
        // The jobs themselves are recorded shard by shard, as each starts (`Work::plan_shard`).
        db.call(move |l| l.prepare_shards(&run, shard_count)).await?;
        let owner = shards::owner();
        tracing::info!(items = count, shard_size, shards = shard_count, owner = %owner, run = %run_id, ms = started.elapsed().as_millis() as u64, "run planned");
        events.event(Event::Planned {
            items: count as u64,
            bytes,
            shards: shard_count,
            shard_size,
            run: run_id.clone(),
        });
        let reporter = Reporter::new(Arc::clone(&events), options.keep_items, repeats.iter().map(|(_, job)| job));
        bad.iter().for_each(|bad| reporter.report(ItemReport::bad_line(bad), None));
        let lease = options.lease.max(Duration::from_secs(1));
        let local = LedgerLeases { db: db.clone(), run: run_id.clone(), owner: owner.clone(), lease };
        // A backend with control objects (S3) shares leases through the bucket, so machines with
        // separate run directories split the work too.
        let leases: Arc<dyn Leases> = match store.backend().control() {
            Some(control) => Arc::new(BucketLeases::new(local, control, &run_id)),
            None => Arc::new(local),
        };
        let ctx = Arc::new(Ctx {
            store,
            db: db.clone(),
            http: Http::new(&options, Arc::clone(&events)),
            retries: options.retries,
            resume_threshold: options.resume_threshold,
            segments: options.segments.max(1),
            streaming: options.streaming,
            partials,
            spool,
            events,
            owner,
            patience: lease,
            workers: tokio::sync::OnceCell::new(),
            worker_threads: options.concurrency,
        });
        let work = Work {
            ctx,
            leases,
            index: Arc::clone(&index),
            count,
            shard_size,
            slots: Arc::new(Semaphore::new(in_flight.max(1))),
            in_flight_max: in_flight.max(1),
            fates: tokio::sync::Mutex::new(vec![Fate::Pending; shard_count as usize]),
            records: std::sync::Mutex::new(BTreeMap::new()),
            finished: std::sync::Mutex::new(Bits::default()),
            reporter,
            planned_to: tokio::sync::Mutex::new(0),
            cursor: AtomicUsize::new(0),
            unstarted: AtomicUsize::new(0),
            started: Notify::new(),
            elsewhere: std::sync::Mutex::new(BTreeMap::new()),
            hints: std::sync::Mutex::new(BTreeMap::new()),
            in_flight: std::sync::Mutex::new(BTreeSet::new()),
        };
        // From here on `cancel` stops the run cleanly: no new items start, the ones in flight
        // are dropped (staged writes discard themselves, partial downloads stay with their
        // checkpoints), and the summary says what was done.
        let (outcome, interrupted) = tokio::select! {
            biased;
            outcome = work.drive() => (outcome, None),
            reason = cancel => (Ok(()), Some(reason)),
        };
        // The items' last records ride with later calls (`Db::record`): commit them now.
        db.flush().await?;
        outcome?;
        work.report_the_rest(interrupted.as_deref()).await?;
        let Work { reporter, .. } = work;
        // The jobs past `max` are skipped; a repeated line reports its job's outcome (a repeat
        // of a job cut off by `max` is skipped with it).
        for from in (count..index.len()).step_by(READ_BACK) {
            for (item, job) in read_back(&index, from..(from + READ_BACK).min(index.len())).await? {
                reporter.report(ItemReport::item(&item, &Done::skipped()), Some(&job));
            }
        }
        for (item, job) in &repeats {
            let report = reporter
                .reported(job)
                .map_or_else(|| ItemReport::item(item, &Done::skipped()), |first| first.for_line(item.line));
            reporter.report(report, None);
        }
        let summary = reporter.finish().elapsed(started.elapsed());
        Ok(match interrupted {
            None => summary,
            Some(reason) => summary.interrupted(reason),
        })
    }
}

/// Jobs `range`'s items and keys, read back from the manifest off the runtime's threads.
async fn read_back(index: &Arc<Index>, range: std::ops::Range<usize>) -> Result<Vec<(Item, String)>, RunError> {
    let reader = Arc::clone(index);
    match tokio::task::spawn_blocking(move || reader.items(range)).await {
        Ok(items) => items,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Only when the runtime is shutting down.
        Err(join) => Err(RunError::Manifest { path: index.path().to_owned(), error: std::io::Error::other(join) }),
    }
}

/// How often a worker shares what it finished in a shard it holds, at most (one small write
/// each time, on S3 a PUT).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Jobs recorded in the ledger at once, ahead of the shards that need them (see
/// [`Work::plan_shard`]).
const PLAN_AHEAD: usize = 16_384;

/// What this process knows about a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Not finished as far as we know.
    Pending,
    /// Leased by one of our runners.
    Mine,
    /// Finished (by us, or another worker sharing the ledger).
    Done,
    /// Finished by a worker elsewhere (its record is in `Work::elsewhere`).
    DoneElsewhere,
}

/// The shared state of a run's shard runners.
struct Work {
    ctx: Arc<Ctx>,
    leases: Arc<dyn Leases>,
    /// Where the jobs' lines are: a shard's items are read from the manifest when it starts.
    index: Arc<Index>,
    /// Jobs to process (the first of the index).
    count: usize,
    shard_size: usize,
    slots: Arc<Semaphore>,
    /// The slots' number: items in flight at most.
    in_flight_max: usize,
    fates: tokio::sync::Mutex<Vec<Fate>>,
    /// What this worker did in the shards it holds, where the leases share it (their progress
    /// and done markers; see [`Leases::shares_records`]).
    records: std::sync::Mutex<BTreeMap<usize, ShardRecord>>,
    /// The items this worker reported.
    finished: std::sync::Mutex<Bits>,
    reporter: Reporter,
    /// Shards finished by workers elsewhere: shard → their done marker.
    elsewhere: std::sync::Mutex<BTreeMap<usize, ShardRecord>>,
    /// Shards leased with digests other workers recorded: shard → (job key → SHA-256).
    hints: std::sync::Mutex<BTreeMap<usize, BTreeMap<String, promote_core::Sha256>>>,
    /// The jobs before this index are recorded in the ledger.
    planned_to: tokio::sync::Mutex<usize>,
    /// Where the next scan for a shard to lease starts.
    cursor: AtomicUsize,
    /// Items of leased shards still waiting for a slot.
    unstarted: AtomicUsize,
    /// Signalled whenever an item takes a slot.
    started: Notify,
    /// Items being processed now (what an interruption cut short).
    in_flight: std::sync::Mutex<BTreeSet<usize>>,
}

impl Work {
    fn range(&self, shard: usize) -> std::ops::Range<usize> {
        shard * self.shard_size..((shard + 1) * self.shard_size).min(self.count)
    }

    /// Leases shards and works through them until every shard is done by someone. A new shard
    /// is leased only when every item of the shards held has a slot, so a process holds no more
    /// than it can work on, and one slow item never holds up the rest.
    async fn drive(&self) -> Result<(), RunError> {
        let mut running = FuturesUnordered::new();
        // Ends when every shard is done by someone. Waiting on shards others hold is bounded by
        // their leases: a holder that stops renewing loses its shard to us after `lease`.
        loop {
            if self.unstarted.load(Ordering::Acquire) == 0 {
                // Keep the items in flight moving while leasing (a lease may be a network call).
                let leasing = self.next_shard();
                tokio::pin!(leasing);
                // Ends with the lease call (each running item only shortens `running`).
                let (next, waiting) = loop {
                    tokio::select! {
                        leased = &mut leasing => break leased?,
                        Some(result) = running.next() => result?,
                    }
                };
                if let Some(shard) = next {
                    self.unstarted.fetch_add(self.range(shard).len(), Ordering::AcqRel);
                    running.push(self.run_shard(shard));
                    continue;
                }
                if running.is_empty() && !waiting {
                    return Ok(());
                }
                // Nothing to lease now: wait for one of ours to finish, or for others' to.
                tokio::select! {
                    Some(result) = running.next() => result?,
                    () = tokio::time::sleep(self.leases.poll()) => {}
                }
            } else {
                tokio::select! {
                    Some(result) = running.next() => result?,
                    () = self.started.notified() => {}
                }
            }
        }
    }

    /// The next shard this process can lease, and whether others still hold unfinished ones.
    /// Scans on from the last shard leased, so each shard is asked about about once until the
    /// scan wraps around to the ones others held.
    async fn next_shard(&self) -> Result<(Option<usize>, bool), RunError> {
        let mut fates = self.fates.lock().await;
        let count = fates.len();
        let start = self.cursor.load(Ordering::Relaxed);
        let mut waiting = false;
        for shard in (start..count).chain(0..start) {
            if fates[shard] != Fate::Pending {
                waiting |= fates[shard] == Fate::Mine;
                continue;
            }
            match self.leases.acquire(shard as u64).await? {
                Lease::Acquired { from, hints } => {
                    if let Some(from) = from {
                        tracing::info!(shard, from = %from, "took over an expired lease");
                        self.ctx.events.event(Event::LeaseTakenOver { shard: shard as u64, from });
                    }
                    fates[shard] = Fate::Mine;
                    crate::lock(&self.hints).insert(shard, hints);
                    self.cursor.store(shard + 1, Ordering::Relaxed);
                    return Ok((Some(shard), true));
                }
                Lease::Done(None) => fates[shard] = Fate::Done,
                Lease::Done(Some(record)) => {
                    fates[shard] = Fate::DoneElsewhere;
                    self.plan_shard(shard).await?;
                    self.record_elsewhere(shard, &record).await?;
                    crate::lock(&self.elsewhere).insert(shard, record);
                }
                Lease::Held => waiting = true,
            }
        }
        self.cursor.store(count, Ordering::Relaxed);
        Ok((None, waiting))
    }

    /// Records the jobs up to the end of `shard`, and up to [`PLAN_AHEAD`] more, in the ledger
    /// (those not there yet) as the shard starts: a run of a long manifest begins after a few
    /// thousand jobs' worth of ledger writes, not all of them, and each transaction still
    /// covers many jobs (their index pages written once for all of them).
    async fn plan_shard(&self, shard: usize) -> Result<(), RunError> {
        let mut planned_to = self.planned_to.lock().await;
        let end = self.range(shard).end;
        if end <= *planned_to {
            return Ok(());
        }
        let to = end.max((*planned_to + PLAN_AHEAD).min(self.count));
        let planned: Vec<(String, String)> = read_back(&self.index, *planned_to..to)
            .await?
            .into_iter()
            .map(|(item, job)| (job, item.key.to_string()))
            .collect();
        self.ctx.db.call(move |l| l.plan(planned.iter().map(|(j, k)| (j.as_str(), k.as_str())), now_ms())).await?;
        *planned_to = to;
        Ok(())
    }

    /// Records in this run directory's ledger what a worker elsewhere did with a shard, so
    /// `status` shows it (failures with their reasons) and no job of it looks unfinished.
    async fn record_elsewhere(&self, shard: usize, record: &ShardRecord) -> Result<(), RunError> {
        let writer = record.writer();
        let outcomes: Vec<(String, Elsewhere)> = read_back(&self.index, self.range(shard))
            .await?
            .into_iter()
            .filter_map(|(_, job)| {
                let outcome = match (record.promoted.get(&job), record.failed.get(&job)) {
                    (Some(sha), _) => Elsewhere::Promoted(sha.parse().ok()?),
                    (None, Some(reason)) => Elsewhere::Failed {
                        reason: reason.clone(),
                        error: format!("failed on {writer} (its run directory says why)"),
                    },
                    (None, None) => return None,
                };
                Some((job, outcome))
            })
            .collect();
        self.ctx
            .db
            .call(move |l| {
                let now = now_ms();
                l.in_transaction(|l| outcomes.iter().try_for_each(|(job, outcome)| l.elsewhere(job, outcome, now)))
            })
            .await?;
        Ok(())
    }

    /// What this worker did with `shard`'s items so far: digests promoted or found present,
    /// reasons of failures.
    fn shard_record(&self, shard: usize) -> ShardRecord {
        let record = crate::lock(&self.records).get(&shard).cloned().unwrap_or_default();
        ShardRecord { owner: self.ctx.owner.clone(), ..record }
    }

    /// Notes that item `index` of `shard` (job `job`) ended as `done`, and reports it.
    fn report_done(&self, shard: usize, index: usize, item: &Item, job: &str, done: &Done) {
        if self.leases.shares_records() {
            let mut records = crate::lock(&self.records);
            let record = records.entry(shard).or_default();
            match (&done.failure, done.sha256) {
                (Some(failure), _) => {
                    record.failed.insert(job.to_owned(), failure.reason.clone());
                }
                (None, Some(sha)) => {
                    record.promoted.insert(job.to_owned(), sha.to_string());
                }
                (None, None) => {}
            }
        }
        crate::lock(&self.finished).insert(index);
        self.reporter.report(ItemReport::item(item, done), Some(job));
    }

    /// Reports the items this worker did not: done by others (as the ledger or their done
    /// marker says), or, when the run was `interrupted`, not done. A shard at a time, its items
    /// read back from the manifest.
    async fn report_the_rest(&self, interrupted: Option<&str>) -> Result<(), RunError> {
        let fates = self.fates.lock().await.clone();
        let in_flight = crate::lock(&self.in_flight).clone();
        for (shard, &fate) in fates.iter().enumerate() {
            let range = self.range(shard);
            let open: Vec<usize> = {
                let finished = crate::lock(&self.finished);
                range.clone().filter(|&index| !finished.contains(index)).collect()
            };
            if open.is_empty() {
                continue;
            }
            let items = read_back(&self.index, range.clone()).await?;
            let open: Vec<(usize, &(Item, String))> = open.into_iter().map(|i| (i, &items[i - range.start])).collect();
            let record = crate::lock(&self.elsewhere).get(&shard).cloned();
            if let (Fate::DoneElsewhere, Some(record)) = (fate, &record) {
                for (_, (item, job)) in open {
                    self.reporter.report(ItemReport::item(item, &Done::elsewhere(record, job)), Some(job));
                }
                continue;
            }
            let jobs: Vec<String> = open.iter().map(|(_, (_, job))| job.clone()).collect();
            let rows = self
                .ctx
                .db
                .call(move |l| jobs.iter().map(|job| l.job(job)).collect::<ledger::Result<Vec<_>>>())
                .await?;
            for ((index, (item, job)), row) in open.into_iter().zip(rows) {
                let report = match interrupted {
                    Some(reason)
                        if fate != Fate::Done && row.as_ref().is_none_or(|r| r.state != ledger::State::Promoted) =>
                    {
                        // Cancelled before this process (or anyone) finished it.
                        ItemReport::not_done(item, reason, in_flight.contains(&index))
                    }
                    _ => ItemReport::item(item, &Done::from_ledger(row.as_ref())),
                };
                self.reporter.report(report, Some(job));
            }
        }
        Ok(())
    }

    async fn run_shard(&self, shard: usize) -> Result<(), RunError> {
        self.plan_shard(shard).await?;
        let range = self.range(shard);
        let items = read_back(&self.index, range.clone()).await?;
        let lost = Arc::new(AtomicBool::new(false));
        let hints = crate::lock(&self.hints).remove(&shard).unwrap_or_default();
        let renewer = {
            let (leases, lost, events) = (Arc::clone(&self.leases), Arc::clone(&lost), Arc::clone(&self.ctx.events));
            AbortOnDrop(tokio::spawn(async move {
                let mut tick = tokio::time::interval(leases.lease() / 3);
                tick.tick().await;
                // Ends when the lease is lost, or when `renewer` is dropped (the shard is
                // finished, or this runner was dropped mid-way).
                loop {
                    tick.tick().await;
                    match leases.renew(shard as u64).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(
                                shard,
                                "lost the shard's lease; its items stop and are left to the new owner"
                            );
                            lost.store(true, Ordering::Relaxed);
                            events.event(Event::LeaseLost { shard: shard as u64 });
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(shard, error = %crate::error::chain(&err), "could not renew the shard's lease")
                        }
                    }
                }
            }))
        };
        // Progress is shared (on S3: written to the bucket) every `PROGRESS_EVERY` at most
        // (a third of the lease if shorter), so a worker taking the shard over fetches again
        // only what was finished in the last moments before its holder died.
        let every = PROGRESS_EVERY.min(self.leases.lease() / 3);
        let shared = tokio::sync::Mutex::new(Instant::now());
        let jobs: Vec<String> = items.iter().map(|(_, job)| job.clone()).collect();
        let ahead = Ahead::new(self.in_flight_max.max(ahead::WINDOW), jobs);
        futures_util::stream::iter(range.clone())
            .for_each_concurrent(None, |index| {
                let (lost, hints, shared, ahead, items) = (Arc::clone(&lost), &hints, &shared, &ahead, &items);
                async move {
                    let slot = self.slots.acquire().await;
                    self.unstarted.fetch_sub(1, Ordering::AcqRel);
                    self.started.notify_one();
                    let Ok(_slot) = slot else { return };
                    if lost.load(Ordering::Relaxed) {
                        return;
                    }
                    crate::lock(&self.in_flight).insert(index);
                    let (item, job) = &items[index - range.start];
                    self.ctx.events.event(Event::ItemStarted { line: item.line, key: item.key.clone() });
                    let begun = ahead.take(&self.ctx.db, &self.ctx.owner, index - range.start).await;
                    let done = item::process(&self.ctx, item, job, hints.get(job).copied(), begun, &lost).await;
                    crate::lock(&self.in_flight).remove(&index);
                    if done.stopped() {
                        // The worker that took the shard over reports it.
                        self.ctx.events.event(Event::ItemGivenBack { line: item.line, key: item.key.clone() });
                        return;
                    }
                    self.ctx.events.event(Event::ItemDone {
                        line: item.line,
                        key: item.key.clone(),
                        outcome: done.outcome,
                        failure: done.failure.clone(),
                        size: item.expected.size.or(done.size),
                    });
                    self.report_done(shard, index, item, job, &done);
                    if self.leases.shares_records()
                        && let Ok(mut last) = shared.try_lock()
                        && last.elapsed() >= every
                    {
                        *last = Instant::now();
                        if let Err(err) = self.leases.progress(shard as u64, &self.shard_record(shard)).await {
                            tracing::info!(shard, error = %crate::error::chain(&err), "could not share the shard's progress");
                        }
                    }
                }
            })
            .await;
        drop(renewer);
        // Attempts begun ahead for items that then never started (the lease was lost): given
        // back, so the shard's next holder takes them without waiting for this process to end.
        for index in ahead.untaken().await {
            let (item, job) = &items[index];
            let (job, owner, now) = (job.clone(), self.ctx.owner.clone(), now_ms());
            item::record(&self.ctx, &item.key, "the ledger could not give the job back", move |l| {
                l.disown(&job, &owner, now).map(drop)
            });
        }
        let fate = if lost.load(Ordering::Relaxed) {
            Fate::Pending
        } else {
            self.leases.finish(shard as u64, self.shard_record(shard)).await?;
            crate::lock(&self.records).remove(&shard);
            Fate::Done
        };
        self.fates.lock().await[shard] = fate;
        Ok(())
    }
}

/// A task that is aborted when this is dropped: a shard runner dropped mid-way (an error ended
/// the run) stops renewing its lease instead of holding it for as long as the runtime lives.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use promote_local::{LocalBackend, LocalConfig};

    use super::*;
    use crate::Outcome;

    /// A manifest of `files` local files plus a bad line and a repeat of the first line, with
    /// its store.
    fn setup(dir: &Path, files: usize) -> (Options, Store) {
        let mut manifest = String::new();
        for n in 0..files {
            std::fs::write(dir.join(format!("{n}.txt")), format!("file {n}\n")).unwrap();
            manifest.push_str(&format!("{{\"source\": \"{n}.txt\", \"key\": \"k/{n}\"}}\n"));
        }
        manifest.push_str("not json\n{\"source\": \"0.txt\", \"key\": \"k/0\"}\n");
        std::fs::write(dir.join("m.jsonl"), manifest).unwrap();
        let store = Store::new(Arc::new(LocalBackend::open(LocalConfig::at(dir.join("store"))).unwrap()));
        let mut options = Options::new(dir.join("m.jsonl"), dir.join("run"));
        options.keep_items = true;
        (options, store)
    }

    /// A manifest read a block at a time gives back, from where each job's line is, the same
    /// items as parsing it whole: blank lines, bad lines (not UTF-8 either), repeated lines,
    /// `\r\n` endings, a line longer than a block and a last line without a newline included,
    /// for any range of jobs.
    #[test]
    fn each_job_is_read_back_from_where_its_line_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        for n in 0..700_usize {
            let line = match n % 9 {
                0 => "\n".to_owned(),
                1 => "not json \u{e9}\n".to_owned(),
                2 => format!("{{\"source\": \"f{0}\", \"key\": \"k/{0}\"}}\n", n.saturating_sub(3)),
                3 => format!("{{\"source\": \"https://h/{n}\", \"key\": \"k/{n}\", \"size\": {n}}}\r\n"),
                _ => format!("{{\"source\": \"f{n}\", \"key\": \"k/{n}\"}}\n"),
            };
            text.extend_from_slice(line.as_bytes());
            if n == 300 {
                text.extend_from_slice(
                    format!("{{\"source\": \"{}\", \"key\": \"long\"}}\n", "x".repeat(3 * BLOCK)).as_bytes(),
                );
                text.extend_from_slice(b"{\"source\": \"\xff\xfe\", \"key\": \"\n");
            }
        }
        text.extend_from_slice(b"{\"source\": \"last\", \"key\": \"no-newline\"}");
        std::fs::write(dir.path().join("m.jsonl"), &text).unwrap();
        let plan = Plan::read(Options::new(dir.path().join("m.jsonl"), dir.path().join("run"))).unwrap();
        let whole = String::from_utf8_lossy(&text);
        let (mut seen, mut want, mut bad) = (HashSet::new(), Vec::new(), Vec::new());
        for entry in manifest::parse(&whole, dir.path()) {
            match entry {
                Ok(item) if seen.insert(job::key(&item)) => {
                    want.push((item.line, item.key.to_string(), job::key(&item)))
                }
                Ok(_) => {}
                Err(line) => bad.push(line),
            }
        }
        assert_eq!(plan.bad_lines(), bad);
        assert_eq!(plan.len(), want.len());
        assert!(!plan.repeats.is_empty() && want.len() > 3 * 64, "{} jobs", want.len());
        let got = |range: std::ops::Range<usize>| -> Vec<(usize, String, String)> {
            plan.index
                .items(range)
                .unwrap()
                .into_iter()
                .map(|(item, job)| (item.line, item.key.to_string(), job))
                .collect()
        };
        assert_eq!(got(0..plan.len()), want);
        for range in [0..1, 63..130, 64..64, 128..192, 200..plan.len(), plan.len() - 1..plan.len()] {
            assert_eq!(got(range.clone()), want[range.clone()], "{range:?}");
        }
        assert_eq!(plan.bytes, None, "not every item has a size");
    }

    /// A manifest that changes after it was read is not read back as if it had not: the run
    /// stops with an error saying so, before any item.
    #[tokio::test]
    async fn a_manifest_changed_after_planning_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let (options, store) = setup(dir.path(), 3);
        let plan = Plan::read(options).unwrap();
        // Another key of the same length, the time set apart from the clock's coarse tick: only
        // the modification time tells.
        let text = std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap();
        std::fs::write(dir.path().join("m.jsonl"), text.replace("k/1", "k/7")).unwrap();
        let file = std::fs::File::options().write(true).open(dir.path().join("m.jsonl")).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000)).unwrap();
        let err = plan.run(store, Arc::new(|_| {}), std::future::pending()).await.unwrap_err();
        assert!(matches!(err, RunError::Manifest { .. }), "{err:?}");
        assert!(err.to_string().contains("changed since the run read it"), "{err}");
        assert!(!dir.path().join("store/k/0").exists() && !dir.path().join("store/k/7").exists());
    }

    /// A manifest that is not a regular file (a pipe, a directory) is refused when read, with
    /// why: a run reads each shard's lines again.
    #[test]
    fn a_manifest_that_is_not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("m.fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Held open for reading and writing (which Linux allows a pipe without waiting), so that
        // opening it to read finds a writer and does not wait for one.
        let _held = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
        for path in [fifo.clone(), dir.path().to_owned()] {
            let err = Plan::read(Options::new(&path, dir.path().join("run"))).unwrap_err();
            assert!(matches!(err, RunError::Manifest { .. }), "{err:?}");
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }

    /// `tokio::test` is a current-thread runtime, where `block_in_place` would panic: the whole
    /// engine runs on it.
    #[tokio::test]
    async fn a_tiny_manifest_runs_on_a_current_thread_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let (options, store) = setup(dir.path(), 3);
        let plan = Plan::read(options).unwrap();
        assert_eq!((plan.len(), plan.bad_lines().len()), (3, 1));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let events = {
            let seen = Arc::clone(&seen);
            Arc::new(move |event: Event| seen.lock().unwrap().push(event))
        };
        let summary = plan.run(store, events, std::future::pending()).await.unwrap();
        assert_eq!((summary.promoted, summary.failed, summary.items.len()), (4, 1, 5), "{summary:?}");
        assert_eq!(summary.items[4].outcome, Outcome::Promoted, "the repeated line reports its job's outcome");
        assert_eq!(summary.items[3].kind, Some(crate::FailureKind::BadLine));
        assert_eq!(std::fs::read_to_string(dir.path().join("store/k/2")).unwrap(), "file 2\n");
        let seen = seen.lock().unwrap();
        assert!(matches!(seen[0], Event::Planned { items: 3, .. }), "{:?}", seen[0]);
        let done = seen.iter().filter(|e| matches!(e, Event::ItemDone { outcome: Outcome::Promoted, .. })).count();
        let bytes: u64 = seen.iter().map(|e| if let Event::Bytes { n, .. } = e { *n } else { 0 }).sum();
        assert_eq!((done, bytes), (3, 21));
        let reported: Vec<&ItemReport> =
            seen.iter().filter_map(|e| if let Event::Reported(r) = e { Some(&**r) } else { None }).collect();
        let mut lines: Vec<usize> = reported.iter().map(|r| r.line).collect();
        lines.sort_unstable();
        assert_eq!(lines, [1, 2, 3, 4, 5], "every line reported once, as the summary lists them");
    }

    /// Without `keep_items`, the summary has the totals and no reports: each line's report went
    /// to the events once, whatever became of it (promoted, a bad line, a repeated line, past
    /// `max`).
    #[tokio::test]
    async fn a_run_that_keeps_no_reports_sends_each_to_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let (mut options, store) = setup(dir.path(), 5);
        (options.keep_items, options.max) = (false, Some(4));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let events = {
            let seen = Arc::clone(&seen);
            Arc::new(move |event: Event| {
                if let Event::Reported(report) = event {
                    seen.lock().unwrap().push((report.line, report.outcome, report.reason));
                }
            })
        };
        let summary = Plan::read(options).unwrap().run(store, events, std::future::pending()).await.unwrap();
        assert!(summary.items.is_empty(), "{summary:?}");
        assert_eq!((summary.lines(), summary.promoted, summary.failed, summary.skipped), (7, 5, 1, 1));
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_by_key(|(line, ..)| *line);
        let failed = Some("bad-manifest-line".to_owned());
        assert_eq!(
            seen,
            [
                (1, Outcome::Promoted, None),
                (2, Outcome::Promoted, None),
                (3, Outcome::Promoted, None),
                (4, Outcome::Promoted, None),
                (5, Outcome::Skipped, None),
                (6, Outcome::Failed, failed),
                (7, Outcome::Promoted, None),
            ]
        );
    }

    /// A cancellation that has already happened when the items start: nothing new starts, and
    /// every item is reported, done or not done, with the reason given.
    #[tokio::test]
    async fn a_cancelled_run_says_what_it_did_not_do() {
        let dir = tempfile::tempdir().unwrap();
        let (options, store) = setup(dir.path(), 20);
        let plan = Plan::read(options).unwrap();
        let summary = plan.run(store, Arc::new(|_| {}), std::future::ready("SIGTERM".to_owned())).await.unwrap();
        assert_eq!(summary.interrupted.as_deref(), Some("SIGTERM"));
        assert!(summary.not_done > 0, "{summary:?}");
        assert_eq!(summary.promoted + summary.not_done, 21, "{summary:?}");
        let unstarted = summary.items.iter().find(|i| i.outcome == Outcome::NotDone).unwrap();
        assert!(unstarted.error.as_deref().unwrap().contains("SIGTERM"), "{unstarted:?}");
    }

    #[tokio::test]
    async fn a_dry_run_reports_every_line_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut options, _store) = setup(dir.path(), 3);
        options.max = Some(2);
        let summary = Plan::read(options).unwrap().dry_run(None).await.unwrap();
        assert_eq!((summary.skipped, summary.failed, summary.items.len()), (4, 1, 5));
        assert_eq!(summary.items[0].decision, Some(crate::Decision::Fresh));
        assert!(!dir.path().join("run").exists(), "nothing written");
    }

    /// Each item's decision comes from a look at the store and the run directory: a key holding
    /// the manifest's digest is already complete, other bytes a conflict, a kept partial a
    /// resume, the rest fresh. Nothing changes.
    #[tokio::test]
    async fn a_dry_run_says_what_it_would_do_with_each_item() {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = setup(dir.path(), 0);
        let sha = |text: &str| promote_core::Sha256::of(text.as_bytes());
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        let line = |key: &str, sha256: promote_core::Sha256| {
            format!("{{\"source\": \"a.txt\", \"key\": \"{key}\", \"sha256\": \"{sha256}\"}}\n")
        };
        let manifest =
            [line("present", sha("a")), line("other", sha("a")), line("kept", sha("a")), line("new", sha("a"))];
        std::fs::write(dir.path().join("m.jsonl"), manifest.concat()).unwrap();
        for (key, bytes) in [("present", "a"), ("other", "b")] {
            let key = promote_core::Key::new(key).unwrap();
            store.promote_reader(&key, bytes.as_bytes(), &Default::default(), Mode::Create).await.unwrap();
        }
        let options = Options::new(dir.path().join("m.jsonl"), dir.path().join("run"));
        let plan = Plan::read(options.clone()).unwrap();
        let kept = plan.index.items(2..3).unwrap()[0].1.clone();
        std::fs::create_dir_all(dir.path().join("run/partials")).unwrap();
        std::fs::write(dir.path().join("run/partials").join(&kept), "part").unwrap();
        let summary = plan.dry_run(Some(&store)).await.unwrap();
        let decided: Vec<_> =
            summary.items.iter().map(|i| (i.key.clone().unwrap(), i.decision, i.reason.clone(), i.outcome)).collect();
        use crate::Decision::*;
        assert_eq!(
            decided,
            [
                ("present".into(), Some(AlreadyComplete), None, Outcome::Skipped),
                ("other".into(), None, Some("conflict".into()), Outcome::Skipped),
                ("kept".into(), Some(Resume), None, Outcome::Skipped),
                ("new".into(), Some(Fresh), None, Outcome::Skipped),
            ]
        );
        assert_eq!(summary.items[3].manifest_sha256, Some(sha("a").to_string()));
        assert!(!dir.path().join("store/new").exists() && !dir.path().join("run/ledger.sqlite3").exists());
    }
}
