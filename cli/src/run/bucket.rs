//! Shard leases shared through the bucket, for machines that share nothing else.
//!
//! Each machine keeps its own run directory (ledger, partials); what they share is the
//! backend's control objects (core's claim protocol: create with `If-None-Match: *`, renew and
//! take over with `If-Match`, ages by the server's clock):
//! - `runs/<run>/shards/<n>`: the claim on shard `n` while a worker holds it, renewed every
//!   lease/3 in the background;
//! - `runs/<run>/done/<n>`: written (create-only) when shard `n` is finished, with the shard's
//!   failed jobs, so other machines skip it without looking at its items.
//!
//! The run directory's ledger is asked first, so processes sharing one run directory settle
//! among themselves without a request to the bucket.
//!
//! # Cost
//!
//! Per shard, uncontended: one read of the done marker, one create of the claim, one create of
//! the done marker and one release (a read and a delete), so about five requests, plus one
//! renewal per lease/3 while held. A machine that finds the shard held pays a read of the done
//! marker, a create and a read; one that finds it done, a read. With 256-item shards that is
//! about 20 requests per 1,000 items for the worker that does them, plus 4 reads per 1,000
//! items for each other machine that passes over them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
#[cfg(test)]
use promote_core::Owner;
use promote_core::claims::ControlStore;
use promote_core::{Claims, Error, HeldClaim};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::shards::{Lease, Leases, LedgerLeases};

/// A done marker's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DoneMarker {
    /// Who finished the shard (an owner record, for humans).
    owner: String,
    /// Failed jobs: job key → reason.
    failed: BTreeMap<String, String>,
}

/// Leases in the bucket, behind this run directory's ledger.
#[derive(Debug)]
pub(crate) struct BucketLeases {
    local: LedgerLeases,
    control: Arc<dyn ControlStore>,
    claims: Claims,
    run: String,
    held: Mutex<HashMap<u64, HeldClaim>>,
}

impl BucketLeases {
    /// Leases for run `run` in `control`, asking `local` first.
    pub(crate) fn new(local: LedgerLeases, control: Arc<dyn ControlStore>, run: &str) -> Self {
        let claims = Claims::new(Arc::clone(&control));
        Self { local, control, claims, run: run.to_owned(), held: Mutex::new(HashMap::new()) }
    }

    fn claim_name(&self, shard: u64) -> String {
        format!("runs/{}/shards/{shard}", self.run)
    }

    fn done_name(&self, shard: u64) -> String {
        format!("runs/{}/done/{shard}", self.run)
    }

    async fn done_marker(&self, shard: u64) -> anyhow::Result<Option<DoneMarker>> {
        let name = self.done_name(shard);
        let Some(object) = self.control.read(&name).await.with_context(|| format!("reading {name}"))? else {
            return Ok(None);
        };
        // An unreadable marker still says the shard is done; its failures are unknown.
        Ok(Some(serde_json::from_slice(&object.body).unwrap_or_default()))
    }
}

#[async_trait]
impl Leases for BucketLeases {
    async fn acquire(&self, shard: u64, jobs: &[String]) -> anyhow::Result<Lease> {
        match self.local.acquire(shard, jobs).await? {
            Lease::Acquired { .. } => {}
            other => return Ok(other),
        }
        if let Some(marker) = self.done_marker(shard).await? {
            self.local.finish(shard, BTreeMap::new()).await?;
            return Ok(Lease::Done(Some(marker.failed)));
        }
        let name = self.claim_name(shard);
        match self.claims.try_acquire(&name, self.local.lease).await.with_context(|| format!("claiming {name}"))? {
            Some(mut held) => {
                held.keep_alive();
                self.held.lock().await.insert(shard, held);
                Ok(Lease::Acquired { from: None })
            }
            None => {
                self.local.release(shard).await?;
                Ok(Lease::Held)
            }
        }
    }

    async fn renew(&self, shard: u64) -> anyhow::Result<bool> {
        let lost = self.held.lock().await.get(&shard).is_none_or(HeldClaim::is_lost);
        Ok(!lost && self.local.renew(shard).await?)
    }

    async fn finish(&self, shard: u64, failed: BTreeMap<String, String>) -> anyhow::Result<()> {
        let marker = DoneMarker { owner: self.local.owner.clone(), failed };
        let body = serde_json::to_vec(&marker).context("encoding a done marker")?;
        let name = self.done_name(shard);
        match self.control.create(&name, body.into()).await {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(err) => return Err(err).with_context(|| format!("writing {name}")),
        }
        if let Some(held) = self.held.lock().await.remove(&shard)
            && let Err(err) = held.release().await
        {
            tracing::info!(shard, error = %format!("{:#}", anyhow::Error::from(err)), "could not release a shard claim; it expires");
        }
        self.local.finish(shard, BTreeMap::new()).await
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
    use promote_core::Backend;
    use promote_object_store::ObjectStoreBackend;

    use super::*;
    use crate::run::ledger::{Db, Ledger};

    fn machine(control: &Arc<dyn ControlStore>, lease: Duration) -> (tempfile::TempDir, BucketLeases) {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.prepare_shards("run", 2).unwrap();
        let local = LedgerLeases { db: Db::new(ledger), run: "run".into(), owner: crate::run::shards::owner(), lease };
        (dir, BucketLeases::new(local, Arc::clone(control), "run"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn machines_with_their_own_run_dirs_share_shards_through_the_bucket() {
        let control = ObjectStoreBackend::memory().control().expect("memory has control objects");
        let lease = Duration::from_secs(60);
        let ((_a_dir, a), (_b_dir, b)) = (machine(&control, lease), machine(&control, lease));
        let jobs = vec!["j".to_owned()];
        assert_eq!(a.acquire(0, &jobs).await.unwrap(), Lease::Acquired { from: None });
        // b's own ledger knows nothing of a: the bucket says the shard is held.
        assert_eq!(b.acquire(0, &jobs).await.unwrap(), Lease::Held);
        assert_eq!(b.acquire(1, &jobs).await.unwrap(), Lease::Acquired { from: None });
        assert!(a.renew(0).await.unwrap());
        let failed = BTreeMap::from([("j".to_owned(), "http-404".to_owned())]);
        a.finish(0, failed.clone()).await.unwrap();
        // Finished elsewhere: b skips it, and learns which jobs failed there.
        assert_eq!(b.acquire(0, &jobs).await.unwrap(), Lease::Done(Some(failed)));
        b.finish(1, BTreeMap::new()).await.unwrap();
        assert_eq!(a.acquire(1, &jobs).await.unwrap(), Lease::Done(Some(BTreeMap::new())));
        let names = control.list("runs/run/").await.unwrap();
        assert_eq!(names.iter().filter(|n| n.contains("/done/")).count(), 2, "{names:?}");
        assert!(!names.iter().any(|n| n.contains("/shards/")), "claims are released: {names:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_that_is_not_renewed_is_taken_over() {
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
        assert_eq!(taker.acquire(0, &[]).await.unwrap(), Lease::Held);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(taker.acquire(0, &[]).await.unwrap(), Lease::Acquired { from: None });
    }
}
