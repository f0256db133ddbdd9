//! `promote run`: download a manifest's items into storage, each exactly once, resumably.
//!
//! The pieces, one file each: [`manifest`] (JSON Lines in), [`job`] (job keys), [`ledger`]
//! (SQLite: job states, checkpoints, shard leases), [`shards`] (sizing and leases),
//! [`fetch`] (HTTP client, per-host limits and headers, retries), [`resume`] (partial files and
//! decisions), [`item`] (one item start to finish), [`progress`] (what the user sees while it
//! runs) and [`report`] (summary, JSON report, exit code). This file plans the run and drives
//! the shards.

pub(crate) mod bucket;
pub(crate) mod fetch;
pub(crate) mod item;
pub(crate) mod job;
pub(crate) mod ledger;
pub(crate) mod manifest;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod resume;
pub(crate) mod shards;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use promote_core::Mode;
use tokio::sync::{Notify, Semaphore};

use self::item::{Ctx, Done};
use self::ledger::{Db, Elsewhere, now_ms};
use self::manifest::Item;
use self::report::{ItemReport, Summary};
use self::shards::{Lease, Leases, LedgerLeases, ShardRecord};
use crate::settings::{Loaded, RunSettings};

/// A run as asked for on the command line, settings already merged with flags.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The manifest file.
    pub(crate) manifest: PathBuf,
    /// The `[run]` settings with flags applied.
    pub(crate) settings: RunSettings,
    /// Only report what would be done.
    pub(crate) dry_run: bool,
    /// Where to write the JSON report.
    pub(crate) report: Option<PathBuf>,
    /// No progress, no summary.
    pub(crate) quiet: bool,
    /// `--progress`.
    pub(crate) progress: crate::args::ProgressWhen,
    /// The summary as JSON on stdout; no progress.
    pub(crate) json: bool,
}

/// Runs `plan`; returns the exit code (0 when every item is promoted, present or skipped).
///
/// # Errors
///
/// When the manifest cannot be read, the backend or the ledger cannot be opened, or the ledger
/// fails mid-run.
pub(crate) async fn run(loaded: &Loaded, plan: Plan) -> anyhow::Result<u8> {
    let started = Instant::now();
    let text = std::fs::read(&plan.manifest)
        .map_err(|e| crate::commands::usage(format!("cannot read the manifest {}: {e}", plan.manifest.display())))?;
    let base = plan.manifest.parent().map(PathBuf::from).unwrap_or_default();
    let entries = manifest::parse(&String::from_utf8_lossy(&text), &base);
    let mut reports = Vec::new();
    let mut items = Vec::new();
    for entry in entries {
        match entry {
            Err(bad) => {
                eprintln!("{}:{}: {}", plan.manifest.display(), bad.line, bad.reason);
                reports.push(ItemReport::bad_line(&bad));
            }
            Ok(item) => items.push(item),
        }
    }
    // The same job twice (a repeated line) is one job: it runs once, and each of its lines
    // reports the one outcome.
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut repeats: Vec<(Item, String)> = Vec::new();
    let mut unique = Vec::with_capacity(items.len());
    for item in items {
        let job = job::key(&item);
        if first_line.insert(job.clone(), item.line).is_some() {
            repeats.push((item, job));
        } else {
            unique.push(item);
        }
    }
    let mut items = unique;
    let max = plan.settings.max.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let rest = if items.len() > max { items.split_off(max) } else { Vec::new() };
    reports.extend(rest.iter().map(|item| ItemReport::item(item, &Done::skipped())));
    if plan.dry_run {
        reports.extend(
            items
                .iter()
                .chain(repeats.iter().map(|(item, _)| item))
                .map(|item| ItemReport::item(item, &Done::skipped())),
        );
        return finish(&plan, Summary::new(reports, started.elapsed()));
    }

    let store = crate::settings::open(loaded).await?;
    store.check_mode(&Mode::Create)?;
    let out = plan.settings.out.clone();
    let (partials, spool) = (out.join("partials"), out.join("spool"));
    for dir in [&partials, &spool] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let db = Db::open(&out).await?;
    let jobs: Vec<String> = items.iter().map(job::key).collect();
    let planned: Vec<(String, String, String)> =
        items.iter().zip(&jobs).map(|(i, j)| (j.clone(), i.key.to_string(), i.source_text.clone())).collect();
    let shard_size = shards::size(plan.settings.shard_size, items.len());
    let shard_count = items.len().div_ceil(shard_size) as u64;
    let run_id = shards::run_id(&text, items.len(), shard_size);
    let run = run_id.clone();
    db.call(move |l| {
        l.plan(planned.iter().map(|(j, k, s)| (j.as_str(), k.as_str(), s.as_str())), now_ms())?;
        l.prepare_shards(&run, shard_count)
    })
    .await?;
    let owner = shards::owner();
    tracing::info!(items = items.len(), shard_size, shards = shard_count, owner = %owner, run = %run_id, "run planned");
    let lease = plan.settings.lease.max(Duration::from_secs(1));
    let local = LedgerLeases { db: db.clone(), run: run_id.clone(), owner: owner.clone(), lease };
    // A backend with control objects (S3) shares leases through the bucket, so machines with
    // separate run directories split the work too.
    let leases: Arc<dyn Leases> = match store.backend().control() {
        Some(control) => Arc::new(bucket::BucketLeases::new(local, control, &run_id)),
        None => Arc::new(local),
    };

    let progress = progress::Progress::new(items.len() as u64, plan.progress, plan.quiet, plan.json);
    let ticker = progress.spawn_ticker();
    let ctx = Arc::new(Ctx {
        store,
        db: db.clone(),
        http: fetch::Http::new(&plan.settings)?,
        retries: plan.settings.retries,
        resume_threshold: plan.settings.resume_threshold,
        streaming: loaded.settings.streaming,
        partials,
        spool,
        progress: Arc::clone(&progress),
        owner,
        patience: lease,
    });
    let work = Work {
        ctx,
        leases,
        items: Arc::new(items),
        jobs: Arc::new(jobs),
        shard_size,
        slots: Arc::new(Semaphore::new(plan.settings.concurrency.max(1))),
        fates: tokio::sync::Mutex::new(vec![Fate::Pending; shard_count as usize]),
        results: std::sync::Mutex::new(Vec::new()),
        cursor: AtomicUsize::new(0),
        unstarted: AtomicUsize::new(0),
        started: Notify::new(),
        elsewhere: std::sync::Mutex::new(BTreeMap::new()),
        hints: std::sync::Mutex::new(BTreeMap::new()),
        in_flight: std::sync::Mutex::new(BTreeSet::new()),
    };
    // From here on a signal stops the run cleanly (see `crate::signals`): no new items start,
    // the ones in flight are dropped (staged writes discard themselves, partial downloads stay
    // with their checkpoints), and the summary and report say what was done.
    let mut stop = crate::signals::listen();
    let (outcome, interrupted) = tokio::select! {
        biased;
        outcome = work.drive() => (outcome, None),
        signal = stop.requested() => (Ok(()), Some(signal)),
    };
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    progress.finish();
    outcome?;

    let mut ran: Vec<Option<Done>> = vec![None; work.items.len()];
    for (index, result) in work.results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        ran[index] = Some(result);
    }
    let in_flight = work.in_flight.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let fates = work.fates.into_inner();
    let elsewhere = work.elsewhere.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    // What the ledger says of the items this process did not finish (one call for all).
    let unfinished: Vec<(usize, String)> = ran
        .iter()
        .enumerate()
        .filter(|(index, slot)| slot.is_none() && fates[index / shard_size] != Fate::DoneElsewhere)
        .map(|(index, _)| (index, work.jobs[index].clone()))
        .collect();
    let rows = db
        .call(move |l| {
            unfinished.into_iter().map(|(i, job)| Ok((i, l.job(&job)?))).collect::<anyhow::Result<BTreeMap<_, _>>>()
        })
        .await?;
    for (index, slot) in ran.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let row = rows.get(&index).and_then(Option::as_ref);
        let fate = fates[index / shard_size];
        if let (Fate::DoneElsewhere, Some(record)) = (fate, elsewhere.get(&(index / shard_size))) {
            *slot = Some(Done::elsewhere(record, &work.jobs[index]));
        } else if interrupted.is_none() || fate == Fate::Done || row.is_some_and(|r| r.state == ledger::State::Promoted)
        {
            *slot = Some(Done::from_ledger(row));
        }
        // Otherwise interrupted before this process (or anyone) finished it: reported below.
    }
    for (index, (item, slot)) in work.items.iter().zip(&ran).enumerate() {
        reports.push(match (slot, interrupted) {
            (Some(done), _) => ItemReport::item(item, done),
            (None, Some(signal)) => ItemReport::not_done(item, signal.name, in_flight.contains(&index)),
            // Not reached: without a signal every item got a result above.
            (None, None) => ItemReport::item(item, &Done::from_ledger(None)),
        });
    }
    // A repeated line reports its job's outcome (a repeat of a job cut off by `--max` is
    // skipped with it).
    let index_of: HashMap<&str, usize> = work.jobs.iter().enumerate().map(|(i, j)| (j.as_str(), i)).collect();
    let by_line: HashMap<usize, ItemReport> = reports.iter().map(|r| (r.line, r.clone())).collect();
    for (item, job) in &repeats {
        let first = index_of.get(job.as_str()).and_then(|&i| by_line.get(&work.items[i].line));
        reports.push(match first {
            Some(first) => first.for_line(item.line),
            None => ItemReport::item(item, &Done::skipped()),
        });
    }
    let summary = Summary::new(reports, started.elapsed());
    match interrupted {
        None => finish(&plan, summary),
        Some(signal) => {
            finish(&plan, summary.interrupted(signal.name))?;
            Ok(signal.exit)
        }
    }
}

fn finish(plan: &Plan, summary: Summary) -> anyhow::Result<u8> {
    if let Some(path) = &plan.report {
        let text = serde_json::to_string_pretty(&summary.json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing the report {}", path.display()))?;
    }
    if plan.json {
        crate::output::out!("{}", summary.json());
    }
    // An interrupted run always says what it did (the signal is no success to keep quiet about).
    if !plan.quiet || summary.was_interrupted() {
        eprintln!("{}", summary.line());
    }
    Ok(summary.exit_code())
}

/// How often a worker shares what it finished in a shard it holds, at most (one small write
/// each time, on S3 a PUT).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

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
    items: Arc<Vec<Item>>,
    jobs: Arc<Vec<String>>,
    shard_size: usize,
    slots: Arc<Semaphore>,
    fates: tokio::sync::Mutex<Vec<Fate>>,
    results: std::sync::Mutex<Vec<(usize, Done)>>,
    /// Shards finished by workers elsewhere: shard → their done marker.
    elsewhere: std::sync::Mutex<BTreeMap<usize, ShardRecord>>,
    /// Shards leased with digests other workers recorded: shard → (job key → SHA-256).
    hints: std::sync::Mutex<BTreeMap<usize, BTreeMap<String, promote_core::Sha256>>>,
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
        shard * self.shard_size..((shard + 1) * self.shard_size).min(self.items.len())
    }

    /// Leases shards and works through them until every shard is done by someone. A new shard
    /// is leased only when every item of the shards held has a slot, so a process holds no more
    /// than it can work on, and one slow item never holds up the rest.
    async fn drive(&self) -> anyhow::Result<()> {
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
    async fn next_shard(&self) -> anyhow::Result<(Option<usize>, bool)> {
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
                    }
                    fates[shard] = Fate::Mine;
                    self.hints.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(shard, hints);
                    self.cursor.store(shard + 1, Ordering::Relaxed);
                    return Ok((Some(shard), true));
                }
                Lease::Done(None) => fates[shard] = Fate::Done,
                Lease::Done(Some(record)) => {
                    fates[shard] = Fate::DoneElsewhere;
                    self.record_elsewhere(shard, &record).await?;
                    self.elsewhere.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(shard, record);
                }
                Lease::Held => waiting = true,
            }
        }
        self.cursor.store(count, Ordering::Relaxed);
        Ok((None, waiting))
    }

    /// Records in this run directory's ledger what a worker elsewhere did with a shard, so
    /// `status` shows it (failures with their reasons) and no job of it looks unfinished.
    async fn record_elsewhere(&self, shard: usize, record: &ShardRecord) -> anyhow::Result<()> {
        let writer = record.writer();
        let outcomes: Vec<(String, Elsewhere)> = self.jobs[self.range(shard)]
            .iter()
            .filter_map(|job| {
                let outcome = match (record.promoted.get(job), record.failed.get(job)) {
                    (Some(sha), _) => Elsewhere::Promoted(sha.parse().ok()?),
                    (None, Some(reason)) => Elsewhere::Failed {
                        reason: reason.clone(),
                        error: format!("failed on {writer} (its run directory says why)"),
                    },
                    (None, None) => return None,
                };
                Some((job.clone(), outcome))
            })
            .collect();
        self.ctx
            .db
            .call(move |l| {
                let now = now_ms();
                l.in_transaction(|l| outcomes.iter().try_for_each(|(job, outcome)| l.elsewhere(job, outcome, now)))
            })
            .await
    }

    /// What this worker did with `shard`'s items so far: digests promoted or found present,
    /// reasons of failures.
    fn shard_record(&self, shard: usize) -> ShardRecord {
        let mut record = ShardRecord { owner: self.ctx.owner.clone(), ..ShardRecord::default() };
        let results = self.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let range = self.range(shard);
        for (index, done) in results.iter().filter(|(index, _)| range.contains(index)) {
            let job = self.jobs[*index].clone();
            match (&done.failure, done.sha256) {
                (Some(failure), _) => {
                    record.failed.insert(job, failure.reason.clone());
                }
                (None, Some(sha)) => {
                    record.promoted.insert(job, sha.to_string());
                }
                (None, None) => {}
            }
        }
        record
    }

    async fn run_shard(&self, shard: usize) -> anyhow::Result<()> {
        let lost = Arc::new(AtomicBool::new(false));
        let hints =
            self.hints.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&shard).unwrap_or_default();
        let renewer = {
            let (leases, lost) = (Arc::clone(&self.leases), Arc::clone(&lost));
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
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(shard, error = %format!("{err:#}"), "could not renew the shard's lease")
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
        futures_util::stream::iter(self.range(shard))
            .for_each_concurrent(None, |index| {
                let (lost, hints, shared) = (Arc::clone(&lost), &hints, &shared);
                async move {
                    let slot = self.slots.acquire().await;
                    self.unstarted.fetch_sub(1, Ordering::AcqRel);
                    self.started.notify_one();
                    let Ok(_slot) = slot else { return };
                    if lost.load(Ordering::Relaxed) {
                        return;
                    }
                    self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(index);
                    let job = &self.jobs[index];
                    let done = item::process(&self.ctx, &self.items[index], job, hints.get(job).copied(), &lost).await;
                    self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&index);
                    if done.stopped() {
                        // The worker that took the shard over reports it.
                        self.ctx.progress.item_done(&self.items[index].key, None);
                        return;
                    }
                    self.ctx.progress.item_done(&self.items[index].key, done.failure.as_ref());
                    self.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((index, done));
                    if let Ok(mut last) = shared.try_lock()
                        && last.elapsed() >= every
                    {
                        *last = Instant::now();
                        if let Err(err) = self.leases.progress(shard as u64, &self.shard_record(shard)).await {
                            tracing::info!(shard, error = %format!("{err:#}"), "could not share the shard's progress");
                        }
                    }
                }
            })
            .await;
        drop(renewer);
        let fate = if lost.load(Ordering::Relaxed) {
            Fate::Pending
        } else {
            self.leases.finish(shard as u64, self.shard_record(shard)).await?;
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
