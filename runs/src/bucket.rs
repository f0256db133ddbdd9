//! Shard leases shared through the bucket, for machines that share nothing else.
//!
//! Each machine keeps its own run directory (ledger, partials); what they share is the
//! backend's control objects (core's claim protocol: create with `If-None-Match: *`, renew and
//! take over with `If-Match`, ages by the server's clock):
//! - `runs/<run>/shards/<n>`: the claim on shard `n` while a worker holds it, renewed every
//!   lease/3 in the background;
//! - `runs/<run>/progress/<n>`: what the holder finished so far (a [`ShardRecord`]: digests
//!   promoted, reasons of failures), rewritten every 2 s at most, so a worker that takes
//!   the shard over after a crash looks at those keys with a `head` instead of fetching them;
//! - `runs/<run>/done/<n>`: the shard's [`ShardRecord`] once it is finished.
//!
//! # What a done marker means
//!
//! A hint, never proof. A marker written while this process runs (its age, by the server's
//! clock, is less than this process's by a margin for whole-second dates) is another worker's,
//! in the same pass: the shard is
//! skipped and its items reported `done-elsewhere` (not "already present": nobody here looked).
//! An older marker is an earlier run's: the shard is claimed and worked through again, each
//! item first looked at with a `head` against the digest the marker recorded, so an object
//! deleted since is fetched again, failed items are tried again, and finished ones cost one
//! `head`. An unreadable marker is no hint at all. The new marker replaces the old one.
//!
//! The run directory's ledger is asked first, so processes sharing one run directory settle
//! among themselves without a request to the bucket.
//!
//! # Cost
//!
//! Per shard, uncontended: one read of the done marker, one create of the claim, one read of
//! the progress object, one create of the done marker and one release (a read and a delete),
//! so about six requests, plus one renewal per lease/3 and at most one progress write per 2 s while
//! held. With 256-item shards that is about 25 requests per 1,000 items for the worker that
//! does them, plus 4 reads per 1,000 items for each other machine that passes over them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use promote_core::Error;
#[cfg(test)]
use promote_core::kit::Owner;
use promote_core::kit::claims::{ControlStore, Tag};
use promote_core::kit::{Claims, HeldClaim};
use tokio::sync::Mutex;

use crate::shards::{Lease, LeaseError, Leases, LedgerLeases, ShardRecord};

/// How far a control object's age may be off: S3 dates have whole seconds, on both ends. A
/// marker is taken as this process's pass only when it is younger by more than this.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// A shard this worker holds in the bucket.
#[derive(Debug)]
struct Held {
    claim: HeldClaim,
    /// The version of the progress object, once written (or found).
    progress: Option<Tag>,
    /// The version of an earlier run's done marker, which finishing replaces.
    marker: Option<Tag>,
}

/// Leases in the bucket, behind this run directory's ledger.
#[derive(Debug)]
pub(crate) struct BucketLeases {
    local: LedgerLeases,
    control: Arc<dyn ControlStore>,
    claims: Claims,
    run: String,
    /// When this worker started: done markers younger than this are of its pass.
    started: Instant,
    held: Mutex<HashMap<u64, Held>>,
}

impl BucketLeases {
    /// Leases for run `run` in `control`, asking `local` first.
    pub(crate) fn new(local: LedgerLeases, control: Arc<dyn ControlStore>, run: &str) -> Self {
        let claims = Claims::new(Arc::clone(&control));
        Self { local, control, claims, run: run.to_owned(), started: Instant::now(), held: Mutex::new(HashMap::new()) }
    }

    fn claim_name(&self, shard: u64) -> String {
        format!("runs/{}/shards/{shard}", self.run)
    }

    fn done_name(&self, shard: u64) -> String {
        format!("runs/{}/done/{shard}", self.run)
    }

    fn progress_name(&self, shard: u64) -> String {
        format!("runs/{}/progress/{shard}", self.run)
    }

    /// A record and its version; `(None, tag)` when the object is there but unreadable.
    async fn read_record(&self, name: &str) -> Result<Option<(Option<ShardRecord>, Tag, Duration)>, LeaseError> {
        let read = self.control.read(name).await;
        let read = read.map_err(|source| LeaseError::Control { what: "reading", name: name.to_owned(), source })?;
        let Some(object) = read else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&object.body).ok();
        if record.is_none() {
            tracing::warn!(name, "an unreadable shard record; it is ignored");
        }
        Ok(Some((record, object.tag.clone(), object.age())))
    }

    /// Writes `body` at `name` over version `tag` (or creates it), taking over whatever
    /// version is there when ours is stale. Returns the new version.
    async fn put(&self, name: &str, body: bytes::Bytes, tag: Option<&Tag>) -> Result<Tag, Error> {
        let mut tag = tag.cloned();
        // At most three rounds: each lost race re-reads the current version.
        for _ in 0..3 {
            let result = match &tag {
                Some(tag) => self.control.replace(name, body.clone(), tag).await,
                None => self.control.create(name, body.clone()).await,
            };
            match result {
                Err(Error::AlreadyExists { .. } | Error::VersionMismatch { .. } | Error::NotFound { .. }) => {
                    tag = self.control.read(name).await?.map(|o| o.tag);
                }
                other => return other,
            }
        }
        Err(Error::VersionMismatch { key: name.to_owned(), expected: tag.map(|t| t.0).unwrap_or_default() })
    }
}

#[async_trait]
impl Leases for BucketLeases {
    async fn acquire(&self, shard: u64) -> Result<Lease, LeaseError> {
        match self.local.acquire(shard).await? {
            Lease::Acquired { .. } => {}
            other => return Ok(other),
        }
        let mut hints = std::collections::BTreeMap::new();
        let mut marker = None;
        if let Some((record, tag, age)) = self.read_record(&self.done_name(shard)).await? {
            match record {
                Some(record) if age + CLOCK_SLACK <= self.started.elapsed() => {
                    // Finished by another worker while this one runs: skip it.
                    self.local.finish(shard, ShardRecord::default()).await?;
                    return Ok(Lease::Done(Some(record)));
                }
                // An earlier run's: look at its objects again, with its digests as hints.
                Some(record) => hints.extend(record.hints()),
                None => {}
            }
            marker = Some(tag);
        }
        let name = self.claim_name(shard);
        let claimed = self.claims.try_acquire(&name, self.local.lease).await;
        let Some(mut claim) = claimed.map_err(|source| LeaseError::Control { what: "claiming", name, source })? else {
            self.local.release(shard).await?;
            return Ok(Lease::Held);
        };
        claim.keep_alive();
        // What an earlier holder (crashed, or paused past its lease) finished.
        let progress = match self.read_record(&self.progress_name(shard)).await {
            Ok(Some((record, tag, _))) => {
                hints.extend(record.map(|r| r.hints()).unwrap_or_default());
                Some(tag)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::info!(shard, error = %crate::error::chain(&err), "could not read the shard's progress");
                None
            }
        };
        self.held.lock().await.insert(shard, Held { claim, progress, marker });
        Ok(Lease::Acquired { from: None, hints })
    }

    async fn renew(&self, shard: u64) -> Result<bool, LeaseError> {
        let lost = self.held.lock().await.get(&shard).is_none_or(|held| held.claim.is_lost());
        Ok(!lost && self.local.renew(shard).await?)
    }

    fn shares_records(&self) -> bool {
        true
    }

    async fn progress(&self, shard: u64, record: &ShardRecord) -> Result<(), LeaseError> {
        let name = self.progress_name(shard);
        let tag = self.held.lock().await.get(&shard).and_then(|h| h.progress.clone());
        let written = self.put(&name, record.to_json().into(), tag.as_ref()).await;
        let tag = written.map_err(|source| LeaseError::Control { what: "writing", name, source })?;
        if let Some(held) = self.held.lock().await.get_mut(&shard) {
            held.progress = Some(tag);
        }
        Ok(())
    }

    async fn finish(&self, shard: u64, record: ShardRecord) -> Result<(), LeaseError> {
        let name = self.done_name(shard);
        let held = self.held.lock().await.remove(&shard);
        let marker = held.as_ref().and_then(|h| h.marker.clone());
        let written = self.put(&name, record.to_json().into(), marker.as_ref()).await;
        written.map_err(|source| LeaseError::Control { what: "writing", name, source })?;
        if let Some(held) = held {
            if let Some(tag) = &held.progress
                && let Err(err) = self.control.remove(&self.progress_name(shard), tag).await
            {
                tracing::info!(shard, error = %err, "could not remove the shard's progress object");
            }
            if let Err(err) = held.claim.release().await {
                tracing::info!(shard, error = %crate::error::chain(&err), "could not release a shard claim; it expires");
            }
        }
        self.local.finish(shard, ShardRecord::default()).await
    }

    fn lease(&self) -> Duration {
        self.local.lease
    }

    fn poll(&self) -> Duration {
        // Each look at a held shard costs requests: look less often than on a local ledger.
        (self.local.lease / 20).clamp(Duration::from_millis(300), Duration::from_secs(3))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use promote_core::Backend;
    use promote_object_store::ObjectStoreBackend;

    use super::*;
    use crate::ledger::{Db, Ledger};

    fn machine(control: &Arc<dyn ControlStore>, lease: Duration) -> (tempfile::TempDir, BucketLeases) {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.prepare_shards("run", 2).unwrap();
        let local = LedgerLeases { db: Db::new(ledger), run: "run".into(), owner: crate::shards::owner(), lease };
        (dir, BucketLeases::new(local, Arc::clone(control), "run"))
    }

    /// Runs a test's body for at most 20 s (each takes about a second): a ledger or bucket call that
    /// never returns fails the test instead of hanging it (and a mutation test's 30 s timeout).
    async fn bounded(body: impl std::future::Future<Output = ()>) {
        tokio::time::timeout(Duration::from_secs(20), body).await.expect("the test took over 20 s");
    }

    fn acquired() -> Lease {
        Lease::Acquired { from: None, hints: BTreeMap::new() }
    }

    fn record(promoted: &[(&str, &[u8])], failed: &[(&str, &str)]) -> ShardRecord {
        ShardRecord {
            owner: crate::shards::owner(),
            promoted: promoted
                .iter()
                .map(|(j, b)| ((*j).to_owned(), promote_core::Sha256::of(b).to_string()))
                .collect(),
            failed: failed.iter().map(|(j, r)| ((*j).to_owned(), (*r).to_owned())).collect(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn machines_with_their_own_run_dirs_share_shards_through_the_bucket() {
        bounded(async {
            let control = ObjectStoreBackend::memory().control().expect("memory has control objects");
            let lease = Duration::from_secs(60);
            let ((_a_dir, mut a), (_b_dir, mut b)) = (machine(&control, lease), machine(&control, lease));
            // Both have been running for a while: markers written now are of their pass.
            for worker in [&mut a, &mut b] {
                worker.started -= Duration::from_secs(10);
            }
            assert_eq!(a.acquire(0).await.unwrap(), acquired());
            // b's own ledger knows nothing of a: the bucket says the shard is held.
            assert_eq!(b.acquire(0).await.unwrap(), Lease::Held);
            assert_eq!(b.acquire(1).await.unwrap(), acquired());
            assert!(a.renew(0).await.unwrap());
            let done = record(&[("j1", b"x")], &[("j2", "http-404")]);
            a.finish(0, done.clone()).await.unwrap();
            // Finished elsewhere during b's run: b skips it, and learns what happened there.
            assert_eq!(b.acquire(0).await.unwrap(), Lease::Done(Some(done)));
            b.finish(1, ShardRecord::default()).await.unwrap();
            assert!(matches!(a.acquire(1).await.unwrap(), Lease::Done(Some(_))));
            let names = control.list("runs/run/").await.unwrap();
            assert_eq!(names.iter().filter(|n| n.contains("/done/")).count(), 2, "{names:?}");
            assert!(!names.iter().any(|n| n.contains("/shards/")), "claims are released: {names:?}");
        })
        .await;
    }

    /// A later run trusts no marker: it claims the shard again, with the marker's digests as
    /// hints (each checked with a `head`), and replaces the marker when it is done. An
    /// unreadable marker gives no hint and marks nothing present.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_earlier_runs_done_marker_is_a_hint_not_proof() {
        bounded(async {
            let control = ObjectStoreBackend::memory().control().expect("memory has control objects");
            let lease = Duration::from_secs(60);
            let earlier = record(&[("j1", b"x")], &[("j2", "http-404")]);
            control.create("runs/run/done/0", serde_json::to_vec(&earlier).unwrap().into()).await.unwrap();
            control.create("runs/run/done/1", bytes::Bytes::from_static(b"{not json")).await.unwrap();
            // The server's clock must see the markers as older than the next worker.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let (_dir, later) = machine(&control, lease);
            let hints = BTreeMap::from([("j1".to_owned(), promote_core::Sha256::of(b"x"))]);
            assert_eq!(later.acquire(0).await.unwrap(), Lease::Acquired { from: None, hints });
            assert_eq!(later.acquire(1).await.unwrap(), acquired(), "an unreadable marker hints nothing");
            let now = record(&[("j1", b"x"), ("j2", b"fixed")], &[]);
            later.finish(0, now.clone()).await.unwrap();
            let body = control.read("runs/run/done/0").await.unwrap().unwrap().body;
            assert_eq!(serde_json::from_slice::<ShardRecord>(&body).unwrap(), now, "the marker is replaced");
        })
        .await;
    }

    /// A worker that takes a shard over learns what its earlier holder finished.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_takeover_starts_from_the_holders_progress() {
        bounded(async {
            let control = ObjectStoreBackend::memory().control().expect("memory has control objects");
            let lease = Duration::from_millis(300);
            let ((_a_dir, a), (_b_dir, b)) = (machine(&control, lease), machine(&control, lease));
            // a's claim, on another machine, not renewed: a crashed after sharing its progress.
            let mut elsewhere = Owner::me();
            elsewhere.host = "elsewhere".into();
            let claims = Claims::new(Arc::clone(&control)).as_owner(elsewhere);
            std::mem::forget(claims.try_acquire("runs/run/shards/0", lease).await.unwrap().expect("free"));
            a.progress(0, &record(&[("j1", b"one")], &[])).await.unwrap();
            a.progress(0, &record(&[("j1", b"one"), ("j2", b"two")], &[("j3", "http-500")])).await.unwrap();
            assert_eq!(b.acquire(0).await.unwrap(), Lease::Held);
            let deadline = Instant::now() + Duration::from_secs(10);
            let taken = loop {
                match b.acquire(0).await.unwrap() {
                    Lease::Held if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                    other => break other,
                }
            };
            let hints = BTreeMap::from([
                ("j1".to_owned(), promote_core::Sha256::of(b"one")),
                ("j2".to_owned(), promote_core::Sha256::of(b"two")),
            ]);
            assert_eq!(taken, Lease::Acquired { from: None, hints });
            b.finish(0, ShardRecord::default()).await.unwrap();
            let names = control.list("runs/run/").await.unwrap();
            assert!(!names.iter().any(|n| n.contains("/progress/")), "progress goes with the finish: {names:?}");
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_that_is_not_renewed_is_taken_over() {
        bounded(async {
            let control = ObjectStoreBackend::memory().control().expect("memory has control objects");
            let (_dir, taker) = machine(&control, Duration::from_millis(200));
            // A holder on another machine that stopped renewing (it crashed).
            let mut stale = Owner::me();
            stale.host = "elsewhere".into();
            let held = Claims::new(Arc::clone(&control))
                .as_owner(stale)
                .try_acquire("runs/run/shards/0", Duration::from_millis(200))
                .await
                .unwrap()
                .expect("free");
            std::mem::forget(held);
            assert_eq!(taker.acquire(0).await.unwrap(), Lease::Held);
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(taker.acquire(0).await.unwrap(), acquired());
        })
        .await;
    }
}
