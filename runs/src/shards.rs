//! Shards and their leases: how several workers split a manifest without asking the storage
//! about every item.
//!
//! Items are grouped into shards of consecutive items. A worker leases a whole shard (owner,
//! expiry), renews the lease in the background every third of its length, works through the
//! shard's items and marks it done. A lease that expires, or whose owner is known to be dead
//! (same host and PID namespace, process gone), is taken over by an idle worker, and the shard's
//! unfinished jobs are claimed again with their partials kept for resume. Correctness never
//! rests on leases: the final create-only promotion is the last line of defence; leases only
//! keep two workers from fetching the same bytes.
//!
//! `Leases` is the one seam: `LedgerLeases` keeps leases in the run directory's ledger
//! (several processes, one run directory).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use promote_core::kit::{Liveness, Owner};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ledger::{Acquire, Db, LedgerError, now_ms};

/// Why a shard lease could not be taken, renewed, shared or finished.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The run directory's ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A control object in the bucket could not be read or written.
    #[error("{what} {name}")]
    Control {
        /// `reading`, `claiming`, `writing`.
        what: &'static str,
        /// The control object.
        name: String,
        /// Why.
        #[source]
        source: promote_core::Error,
    },
}

/// Items per shard: `configured`, but smaller when the manifest is small, so that several
/// processes still get a share (about 64 shards at least, one item each at the least).
pub fn size(configured: usize, items: usize) -> usize {
    configured.max(1).min((items / 64).max(1))
}

/// A manifest's bytes, hashed, for [`run_id`] (so the bytes need not be kept).
pub fn manifest_hash(manifest: &[u8]) -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(manifest);
    hasher
}

/// The run's identity: the manifest's digest ([`manifest_hash`]) and how it is cut into
/// shards, so workers agree on shard numbers only when they agree on the items.
pub fn run_id(manifest: &Sha256, items: usize, shard_size: usize) -> String {
    let mut hasher = manifest.clone();
    hasher.update(format!("\n{items}/{shard_size}").as_bytes());
    hex::encode(hasher.finalize())
}

/// Who holds a lease: core's [`Owner`] of this process (host, boot id, PID namespace, PID,
/// start time, nonce) as JSON. Two processes never share one, even across PID reuse or
/// containers.
pub fn owner() -> String {
    // A derived record of strings and integers always serializes.
    serde_json::to_string(&Owner::me()).expect("an owner serializes")
}

/// Whether the lease owner `owner` may still be alive: false only when it is known to be gone
/// (same host, boot and PID namespace, and its process has exited).
pub fn owner_alive(owner: &str) -> bool {
    serde_json::from_str::<Owner>(owner).map_or(true, |o| o.liveness() != Liveness::Dead)
}

/// What a worker says of a shard: the digests it promoted (or found present) and the jobs that
/// failed. Shared through the bucket as the shard's progress while it is held, and as its done
/// marker when it is finished, so another machine neither fetches again what was finished nor
/// says "already present" without looking (see `bucket.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Who wrote it (an owner record, see [`owner`]).
    pub owner: String,
    /// Jobs finished: job key → SHA-256 (hex) at the key.
    #[serde(default)]
    pub promoted: BTreeMap<String, String>,
    /// Jobs that failed: job key → reason.
    #[serde(default)]
    pub failed: BTreeMap<String, String>,
}

impl ShardRecord {
    /// Its writer in words: `host pid N`, or the raw record when it is not an owner record.
    pub fn writer(&self) -> String {
        serde_json::from_str::<Owner>(&self.owner)
            .map_or_else(|_| self.owner.clone(), |o| format!("{} pid {}", o.host, o.pid))
    }

    /// The record as JSON (a derived record of strings always serializes).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a shard record serializes")
    }

    /// The digests it records as hints: job key → SHA-256 (unparsable ones left out).
    pub fn hints(&self) -> BTreeMap<String, promote_core::Sha256> {
        self.promoted.iter().filter_map(|(job, sha)| Some((job.clone(), sha.parse().ok()?))).collect()
    }
}

/// What trying to lease a shard gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lease {
    /// Leased now; `from` names the previous holder when its lease was taken over; `hints` are
    /// digests other workers recorded for the shard's jobs (job key → SHA-256): an item whose
    /// key holds its hint is already present, found by a `head` instead of a fetch.
    Acquired {
        /// The previous holder.
        from: Option<String>,
        /// Digests recorded for the shard's jobs.
        hints: BTreeMap<String, promote_core::Sha256>,
    },
    /// Another live worker holds it.
    Held,
    /// Finished already, in this pass. `Some(record)`: by a worker elsewhere (its done marker);
    /// `None`: look in this run directory's ledger.
    Done(Option<ShardRecord>),
}

impl From<Acquire> for Lease {
    fn from(acquire: Acquire) -> Self {
        match acquire {
            Acquire::Acquired { from } => Self::Acquired { from, hints: BTreeMap::new() },
            Acquire::Held => Self::Held,
            Acquire::Done => Self::Done(None),
        }
    }
}

/// Shard leases, wherever they live.
#[async_trait]
pub(crate) trait Leases: Send + Sync + std::fmt::Debug {
    /// Tries to lease `shard`.
    async fn acquire(&self, shard: u64) -> Result<Lease, LeaseError>;
    /// Extends the lease; false when it was lost to another worker.
    async fn renew(&self, shard: u64) -> Result<bool, LeaseError>;
    /// Makes what the holder did so far visible to other workers (a no-op where they share the
    /// ledger).
    async fn progress(&self, _shard: u64, _record: &ShardRecord) -> Result<(), LeaseError> {
        Ok(())
    }
    /// Whether [`Self::progress`] and [`Self::finish`] use their records (where workers share
    /// the ledger they do not, and the run keeps none).
    fn shares_records(&self) -> bool {
        false
    }
    /// Marks the shard done with `record` and releases it.
    async fn finish(&self, shard: u64, record: ShardRecord) -> Result<(), LeaseError>;
    /// How long a lease lasts without renewal.
    fn lease(&self) -> Duration;
    /// How often a worker with nothing to lease looks again at shards others hold.
    fn poll(&self) -> Duration {
        Duration::from_millis(300)
    }
}

/// Leases in the run directory's ledger, for processes sharing it.
#[derive(Debug)]
pub(crate) struct LedgerLeases {
    /// The ledger.
    pub db: Db,
    /// The run (see [`run_id`]).
    pub run: String,
    /// This worker (see [`owner`]).
    pub owner: String,
    /// Lease length.
    pub lease: Duration,
}

#[async_trait]
impl Leases for LedgerLeases {
    async fn acquire(&self, shard: u64) -> Result<Lease, LeaseError> {
        let (run, owner, lease) = (self.run.clone(), self.owner.clone(), self.lease_ms());
        Ok(self.db.call(move |l| l.acquire(&run, shard, &owner, now_ms(), lease, &owner_alive)).await?.into())
    }

    async fn renew(&self, shard: u64) -> Result<bool, LeaseError> {
        let (run, owner, lease) = (self.run.clone(), self.owner.clone(), self.lease_ms());
        Ok(self.db.call(move |l| l.renew(&run, shard, &owner, now_ms(), lease)).await?)
    }

    async fn finish(&self, shard: u64, _record: ShardRecord) -> Result<(), LeaseError> {
        let (run, owner) = (self.run.clone(), self.owner.clone());
        let mine = self.db.call(move |l| l.finish(&run, shard, &owner)).await?;
        if !mine {
            tracing::warn!(shard, "the shard's lease was taken over before it was finished");
        }
        Ok(())
    }

    fn lease(&self) -> Duration {
        self.lease
    }
}

impl LedgerLeases {
    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// Drops this worker's lease on `shard` without marking it done.
    pub(crate) async fn release(&self, shard: u64) -> Result<(), LeaseError> {
        let (run, owner) = (self.run.clone(), self.owner.clone());
        Ok(self.db.call(move |l| l.release(&run, shard, &owner)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_size_shrinks_for_small_manifests() {
        assert_eq!(size(256, 0), 1);
        assert_eq!(size(256, 10), 1);
        assert_eq!(size(256, 300), 4);
        assert_eq!(size(256, 2001), 31);
        assert_eq!(size(256, 64 * 256), 256);
        assert_eq!(size(256, 1_000_000), 256);
        assert_eq!(size(100, 1_000_000), 100);
        assert_eq!(size(0, 1_000), 1);
    }

    #[test]
    fn run_ids_differ_with_manifest_and_cut() {
        let (m, m2) = (manifest_hash(b"m"), manifest_hash(b"m2"));
        let a = run_id(&m, 10, 1);
        assert_eq!(a, run_id(&manifest_hash(b"m"), 10, 1));
        assert_ne!(a, run_id(&m2, 10, 1));
        assert_ne!(a, run_id(&m, 9, 1));
        assert_ne!(a, run_id(&m, 10, 2));
    }

    #[test]
    fn owners_are_alive_until_their_process_is_gone() {
        let me = owner();
        assert!(owner_alive(&me), "{me}");
        let mut gone: Owner = serde_json::from_str(&me).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        gone.pid = child.id();
        child.wait().unwrap();
        assert!(!owner_alive(&serde_json::to_string(&gone).unwrap()));
        // Another host: cannot tell, so presumed alive (its lease must expire).
        gone.host = "elsewhere".into();
        assert!(owner_alive(&serde_json::to_string(&gone).unwrap()));
        assert!(owner_alive("not an owner record"));
    }
}
