//! Claims: leases on names, shared through nothing but the storage, for processes on many
//! machines.
//!
//! A claim is a small JSON *control object* (see [`ControlStore`]) naming its [`Owner`] and its
//! lease. Backends use claims to serialize work on one key (the S3 backend: one conditional
//! multipart completion at a time per key); `promote run` leases shards of a manifest with them.
//! The protocol lives here, once; a backend only implements the five storage verbs of
//! [`ControlStore`] (its conditional single-object writes) and offers them through
//! [`Backend::control`](crate::Backend::control).
//!
//! # Atomicity
//!
//! Each promise is checked by the claim suite (`tests/claims`, run against memory and a real S3
//! server), under these names:
//! - `one_holder_at_a_time`: [`Claims::try_acquire`] creates the claim with a create-only write
//!   (`If-None-Match: *`); of racing acquirers the storage picks exactly one.
//! - `expired_claim_is_taken_over`: a claim whose lease ran out (its holder stopped renewing) is
//!   taken over with a conditional replace (`If-Match: <tag>`), so of racing takers exactly one
//!   wins, and a crash never blocks a name for good.
//! - `dead_owner_is_taken_over_at_once`, `other_host_or_namespace_judged_by_age`: an owner on
//!   this host, boot and pid namespace that is gone loses its claim at once; an owner elsewhere
//!   (another host, boot or pid namespace) is [`Liveness::Unknown`] and loses it only by age.
//! - `renewal_keeps_a_slow_holder_safe`: [`HeldClaim::keep_alive`] renews (`If-Match`) every
//!   lease/3, so a holder working for many lease periods is never taken over; a renewal that
//!   finds the claim changed marks it lost ([`HeldClaim::is_lost`]).
//! - `stale_holder_cannot_fence_or_remove`: [`HeldClaim::fence`] proves, right before an
//!   irreversible step, that the claim is still ours (read, compare tag); [`HeldClaim::release`]
//!   removes only the claim it holds (conditional on the tag), so a holder whose claim was taken
//!   over neither proceeds nor deletes its successor's claim.
//! - `skewed_local_clock_changes_nothing`: ages are judged by the **server's clock** only: the
//!   age of a claim is the server's `Date` when it was read minus the claim's `Last-Modified`,
//!   both stamped by the server. The local clock ([`Clock`]) only stamps the record for humans.
//! - `dropped_holder_releases`: dropping a [`HeldClaim`] (a cancelled or failed task) stops its
//!   renewal and removes the claim in the background (when a tokio runtime is running).
//! - `a_wait_for_a_held_claim_gives_up_in_time`: every wait for a claim has a bound
//!   ([`Claims::acquire`]'s `patience`, [`Claims::acquire_commit`]'s [`Claims::with_patience`],
//!   [`COMMIT_PATIENCE`] by default); giving up is a retryable error that names the claim, who
//!   holds it, and how long it waited.
//! - `sweep_removes_dead_and_old_claims_only`: [`Claims::sweep`] (`promote recover`) removes the
//!   claims of dead owners and those older than its cut-off (server time), each only if it is
//!   still the version it read; a live holder's recent claim stays.
//!
//! The S3 backend's use of claims for multipart completions is checked by
//! `replace_if_version_multipart_checks_the_version_not_the_key` and
//! `dropped_multipart_writer_releases_its_claim` in the same suite.
//!
//! What remains: a storage that cannot delete conditionally (see [`ControlStore::remove`])
//! re-reads and compares the tag first, so a claim taken over in the instant between that read
//! and the delete could be removed; its new holder notices at its next renewal or fence (the
//! claim is gone) and stops. A holder that stalls (SIGSTOP, a suspended VM) for longer than its
//! lease between a successful fence and its irreversible step can race a taker; leases are
//! minutes long for that reason, and renewal keeps them from running out while the holder runs.
//!
//! # Cost
//!
//! Per claim, uncontended: one create (acquire), one read (fence), one conditional remove
//! (release; plus a read where the storage cannot delete conditionally) and one conditional
//! replace per lease/3 while held. A contender polls with one create and one read per attempt.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::backend::Leftover;
use crate::error::Error;
use crate::kit::owner::{Liveness, Owner};

/// The version of a control object (an S3 ETag): what conditional replaces and removes compare.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tag(pub String);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A control object as read, with the server's clock.
#[derive(Clone, Debug)]
pub struct ControlObject {
    /// Its contents.
    pub body: Bytes,
    /// Its version.
    pub tag: Tag,
    /// When it was last written, by the server's clock (S3: `Last-Modified`).
    pub modified: SystemTime,
    /// The server's clock when it answered the read (S3: the response's `Date`).
    pub server_now: SystemTime,
}

impl ControlObject {
    /// Time since it was last written, by the server's clock alone.
    pub fn age(&self) -> Duration {
        self.server_now.duration_since(self.modified).unwrap_or_default()
    }
}

/// Small objects a backend keeps for itself (claims), written only conditionally.
///
/// Names are plain relative strings (`claims/3fa2….json`) under the backend's own reserved
/// area (`<prefix>/.promote/` on S3). Every write is decided by the storage atomically, never
/// by check-then-act, except where [`ControlStore::remove`] says so.
#[async_trait]
pub trait ControlStore: Send + Sync + fmt::Debug {
    /// Creates `name` only if absent (S3: `If-None-Match: *`); returns its tag.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when `name` exists; backend errors.
    async fn create(&self, name: &str, body: Bytes) -> Result<Tag, Error>;

    /// Replaces `name` only if its tag is still `tag` (S3: `If-Match`); returns the new tag.
    ///
    /// # Errors
    ///
    /// [`Error::VersionMismatch`] when the tag differs or `name` is gone; backend errors.
    async fn replace(&self, name: &str, body: Bytes, tag: &Tag) -> Result<Tag, Error>;

    /// Reads `name` with its tag, its server-side modification time and the server's clock;
    /// `None` when absent.
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn read(&self, name: &str) -> Result<Option<ControlObject>, Error>;

    /// Removes `name` only if its tag is still `tag`: a conditional delete where the storage
    /// honours one; otherwise the implementation re-reads and compares first and documents the
    /// window between that read and the delete.
    ///
    /// # Errors
    ///
    /// [`Error::VersionMismatch`] when the tag differs; [`Error::NotFound`] when absent.
    async fn remove(&self, name: &str, tag: &Tag) -> Result<(), Error>;

    /// Names starting with `prefix` (a whole-segment prefix such as `claims/`).
    ///
    /// # Errors
    ///
    /// Backend errors.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error>;
}

/// Where claims live, as a control-object prefix.
pub const CLAIMS_PREFIX: &str = "claims/";

/// The name of the claim a backend takes to serialize its completions on `key`:
/// `claims/<first 32 hex digits of the key's SHA-256>.json`. One convention for every backend,
/// so two backends over the same storage (S3 through object_store, later OpenDAL) exclude each
/// other.
pub fn key_claim_name(key: &crate::Key) -> String {
    let hash = crate::Sha256::of(key.as_str().as_bytes()).to_string();
    format!("{CLAIMS_PREFIX}{}.json", &hash[..32])
}

/// A key's commit claim expires this long after its last renewal (by the storage's clock).
pub const COMMIT_LEASE: Duration = Duration::from_secs(60);
/// How long a committer waits for another holder of the key's claim before giving up.
pub const COMMIT_PATIENCE: Duration = Duration::from_secs(20 * 60);
/// How soon a waiting committer looks again: first, and at most (it backs off in between).
const COMMIT_POLL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// A local wall clock. The claim protocol never decides with it (ages come from the server);
/// it only stamps records for humans. Injectable so tests can skew it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, locally.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// What a claim object says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The claimed name.
    pub name: String,
    /// Who holds it.
    pub owner: Owner,
    /// The holder's lease, in milliseconds: expired when older than this by the server's clock.
    pub lease_ms: u64,
    /// The holder's local clock when it wrote the record (Unix ms). For humans only.
    pub written_at_ms: u64,
    /// A number the holder's process gives only this acquisition, so that with `owner` the
    /// record tells this acquisition's claim from any other (0 in records of older builds).
    #[serde(default)]
    pub nonce: u64,
}

/// The next [`ClaimRecord::nonce`] of this process.
static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl ClaimRecord {
    /// The lease.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
}

/// A claim as another process sees it.
#[derive(Clone, Debug)]
pub struct ClaimState {
    /// What it says (`None`: unreadable, judged by age against the reader's lease).
    pub record: Option<ClaimRecord>,
    /// Its version.
    pub tag: Tag,
    /// Its age by the server's clock.
    pub age: Duration,
    /// Whether its owner is alive, as far as this process can tell.
    pub liveness: Liveness,
    /// Whether its lease ran out (by the server's clock).
    pub expired: bool,
}

impl ClaimState {
    fn judge(object: &ControlObject, default_lease: Duration) -> Self {
        let record: Option<ClaimRecord> = serde_json::from_slice(&object.body).ok();
        let liveness = record.as_ref().map_or(Liveness::Unknown, |r| r.owner.liveness());
        let lease = record.as_ref().map_or(default_lease, ClaimRecord::lease);
        let age = object.age();
        Self { record, tag: object.tag.clone(), age, liveness, expired: age > lease }
    }

    /// Whether another process may take it over now: its owner is dead, or its lease ran out.
    pub fn takeable(&self) -> bool {
        self.liveness == Liveness::Dead || self.expired
    }
}

/// Claims over one [`ControlStore`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Claims {
    store: Arc<dyn ControlStore>,
    clock: Arc<dyn Clock>,
    owner: Option<Owner>,
    patience: Duration,
}

/// How often a waiting [`Claims::acquire`] tries again, at most.
const MAX_POLL: Duration = Duration::from_secs(1);

fn lost(name: &str) -> Error {
    Error::Backend {
        backend: "claims".into(),
        context: format!(
            "lost the claim {name:?}: it expired and was taken over, or was removed; nothing irreversible was done, retry"
        ),
        retryable: true,
        source: "claim lost".into(),
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

impl Claims {
    /// Claims in `store`, as this process, by the system clock.
    pub fn new(store: Arc<dyn ControlStore>) -> Self {
        Self { store, clock: Arc::new(SystemClock), owner: None, patience: COMMIT_PATIENCE }
    }

    /// The same, with `clock` as the local clock (tests skew it to show it decides nothing).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same, recording `owner` instead of this process (tests: an owner on another host or
    /// in another pid namespace).
    #[must_use]
    pub fn as_owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// The same, with [`Claims::acquire_commit`] giving up after `patience` instead of
    /// [`COMMIT_PATIENCE`].
    #[must_use]
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Who holds `name` now, for an error message: `"pid 12 on host-a"`, or why that is unknown.
    async fn holder(&self, name: &str) -> String {
        match self.inspect(name).await {
            Ok(Some(ClaimState { record: Some(record), age, .. })) => {
                format!("held by {} for {}s", record.owner, age.as_secs())
            }
            Ok(Some(_)) => "held by an owner whose record is unreadable".into(),
            Ok(None) => "released just now".into(),
            Err(e) => format!("its holder is unknown ({e})"),
        }
    }

    /// The control store underneath.
    pub fn store(&self) -> &Arc<dyn ControlStore> {
        &self.store
    }

    fn record(&self, name: &str, lease: Duration) -> Bytes {
        let record = ClaimRecord {
            name: name.to_owned(),
            owner: self.owner.clone().unwrap_or_else(Owner::me),
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            written_at_ms: unix_ms(self.clock.now()),
            nonce: NONCE.fetch_add(1, Ordering::Relaxed),
        };
        // A derived record of strings and integers always serializes.
        Bytes::from(serde_json::to_vec(&record).expect("a claim record serializes"))
    }

    /// Takes `name` for `lease` if it is free, expired, or held by a dead owner; `Ok(None)`
    /// when a live (or unknown, unexpired) owner holds it. Never waits.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn try_acquire(&self, name: &str, lease: Duration) -> Result<Option<HeldClaim>, Error> {
        let body = self.record(name, lease);
        // A claim released or taken between our steps is simply looked at again; a transient
        // failure (S3's 409 for a concurrent conditional write) is retried after a short pause.
        for attempt in 0..4u32 {
            let retry = attempt < 3;
            let created = InFlight::write(&self.store, name, &body, self.store.create(name, body.clone())).await;
            match created {
                Ok(tag) => return Ok(Some(HeldClaim::new(self, name, lease, body, tag))),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) if e.is_retryable() && retry => {
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let Some(current) = self.store.read(name).await? else { continue };
            if current.body == body {
                // Ours: an earlier try whose answer was lost (a timeout) was applied after all.
                return Ok(Some(HeldClaim::new(self, name, lease, body, current.tag)));
            }
            let state = ClaimState::judge(&current, lease);
            if !state.takeable() {
                return Ok(None);
            }
            let replaced =
                InFlight::write(&self.store, name, &body, self.store.replace(name, body.clone(), &current.tag)).await;
            match replaced {
                Ok(tag) => {
                    let owner = state.record.as_ref().map(|r| r.owner.to_string()).unwrap_or_default();
                    tracing::info!(claim = name, previous = %owner, age = ?state.age, "took over a claim");
                    return Ok(Some(HeldClaim::new(self, name, lease, body, tag)));
                }
                Err(Error::VersionMismatch { .. } | Error::NotFound { .. }) => {}
                Err(e) if e.is_retryable() && retry => tokio::time::sleep(Duration::from_millis(20 << attempt)).await,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Takes `name` for `lease`, waiting up to `patience` for its holder to release it or for
    /// its lease to run out.
    ///
    /// # Errors
    ///
    /// A retryable [`Error::Backend`] when it is still held after `patience`; backend errors.
    pub async fn acquire(&self, name: &str, lease: Duration, patience: Duration) -> Result<HeldClaim, Error> {
        let started = tokio::time::Instant::now();
        let poll = (lease / 10).clamp(Duration::from_millis(50), MAX_POLL);
        loop {
            if let Some(held) = self.try_acquire(name, lease).await? {
                return Ok(held);
            }
            if started.elapsed() >= patience {
                let holder = self.holder(name).await;
                return Err(Error::Backend {
                    backend: "claims".into(),
                    context: format!(
                        "gave up waiting for the claim {name:?} after {}: {holder}; retry later",
                        humantime::format_duration(patience)
                    ),
                    retryable: true,
                    source: "claim held".into(),
                });
            }
            tokio::time::sleep(poll.min(patience.saturating_sub(started.elapsed()))).await;
        }
    }

    /// Takes `key`'s commit claim ([`key_claim_name`], [`COMMIT_LEASE`]) for a `mode` commit,
    /// waiting for another holder, and keeps it renewed in the background: how a backend whose
    /// multi-part commits are not atomic on the server serializes them. For a create-only
    /// commit, `exists` is asked between tries: once an object is at the key there is nothing
    /// to wait for. `backend` names the backend in errors.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when, for a create-only commit, an object appears at the key
    /// while waiting (core then compares digests); `exists`' and backend errors; a retryable
    /// error naming the claim, its holder and the wait when the holder takes longer than the
    /// patience ([`Claims::with_patience`], [`COMMIT_PATIENCE`] by default).
    pub async fn acquire_commit<F, Fut>(
        &self,
        key: &crate::Key,
        mode: &crate::Mode,
        backend: &str,
        exists: F,
    ) -> Result<HeldClaim, Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool, Error>>,
    {
        let name = key_claim_name(key);
        let started = tokio::time::Instant::now();
        let (mut poll, max_poll) = COMMIT_POLL;
        loop {
            match self.try_acquire(&name, COMMIT_LEASE).await {
                Ok(Some(mut held)) => {
                    held.keep_alive();
                    return Ok(held);
                }
                Ok(None) => {}
                Err(e) if e.is_retryable() => tracing::debug!(key = %key, error = %e, "claiming; will retry"),
                Err(e) => return Err(e),
            }
            if *mode == crate::Mode::Create && exists().await? {
                return Err(Error::AlreadyExists { key: key.to_string() });
            }
            if started.elapsed() >= self.patience {
                let holder = self.holder(&name).await;
                return Err(Error::Backend {
                    backend: backend.into(),
                    context: format!(
                        "gave up waiting for another writer to finish {key:?} after {} (its claim {name:?} is {holder}); retry later",
                        humantime::format_duration(self.patience)
                    ),
                    retryable: true,
                    source: "another writer holds the key's claim".into(),
                });
            }
            tokio::time::sleep(poll.min(self.patience.saturating_sub(started.elapsed()))).await;
            poll = (poll * 3 / 2).min(max_poll);
        }
    }

    /// How `name`'s claim looks from here; `None` when nobody holds it.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn inspect(&self, name: &str) -> Result<Option<ClaimState>, Error> {
        Ok(self.store.read(name).await?.map(|o| ClaimState::judge(&o, Duration::ZERO)))
    }

    /// Claims under `prefix` left by holders that died or stopped long ago: removes those whose
    /// owner is dead or that are at least `older_than` old (server time), each only if it is
    /// still the version just read. With `dry_run`, only reports.
    ///
    /// # Errors
    ///
    /// Backend errors while listing.
    pub async fn sweep(&self, prefix: &str, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
        let mut found = Vec::new();
        for name in self.store.list(prefix).await? {
            let Some(state) = self.inspect(&name).await? else { continue };
            let removable = state.liveness == Liveness::Dead || state.age >= older_than;
            let removed = removable && !dry_run && self.store.remove(&name, &state.tag).await.is_ok();
            found.push(Leftover {
                name: format!("claim {name}"),
                size: None,
                age: Some(state.age),
                live: state.liveness == Liveness::Alive,
                removed,
            });
        }
        Ok(found)
    }
}

struct Shared {
    store: Arc<dyn ControlStore>,
    name: String,
    lease: Duration,
    body: Bytes,
    /// Held across each request that reads or moves the tag, so they never interleave.
    tag: Mutex<Tag>,
    lost: AtomicBool,
}

impl Shared {
    async fn renew(&self) -> Result<(), Error> {
        let mut tag = self.tag.lock().await;
        if self.lost.load(Ordering::Acquire) {
            return Err(lost(&self.name));
        }
        match self.store.replace(&self.name, self.body.clone(), &tag).await {
            Ok(new) => {
                *tag = new;
                Ok(())
            }
            Err(Error::VersionMismatch { .. } | Error::NotFound { .. }) => {
                self.lost.store(true, Ordering::Release);
                Err(lost(&self.name))
            }
            Err(e) => Err(e),
        }
    }

    async fn remove(&self) -> Result<bool, Error> {
        let tag = self.tag.lock().await;
        match self.store.remove(&self.name, &tag).await {
            Ok(()) => Ok(true),
            Err(Error::VersionMismatch { .. } | Error::NotFound { .. }) => {
                self.lost.store(true, Ordering::Release);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

struct KeepAlive {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl KeepAlive {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A claim write on its way to the server. Its future may be dropped while the request is out
/// (a cancelled task, a timeout around the acquisition), and the server may still apply it:
/// then nobody here knows the claim's tag, and the claim would stay until its lease ran out,
/// holding every other writer of the key back. Dropped before the answer came, it removes the
/// claim in the background (as a dropped [`HeldClaim`] does) if the claim holds this
/// acquisition's record ([`ClaimRecord::nonce`] makes it unique), and leaves anyone else's.
struct InFlight {
    store: Arc<dyn ControlStore>,
    name: String,
    body: Bytes,
    answered: bool,
}

impl InFlight {
    /// Sends `request`, a write of `body` to claim `name`, and returns its answer.
    async fn write(
        store: &Arc<dyn ControlStore>,
        name: &str,
        body: &Bytes,
        request: impl std::future::Future<Output = Result<Tag, Error>>,
    ) -> Result<Tag, Error> {
        let mut guard = Self { store: Arc::clone(store), name: name.to_owned(), body: body.clone(), answered: false };
        let answer = request.await;
        guard.answered = true;
        answer
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let (store, name, body) = (Arc::clone(&self.store), std::mem::take(&mut self.name), self.body.clone());
        crate::kit::cleanup::spawn(async move {
            let removed = match store.read(&name).await {
                Ok(Some(current)) if current.body == body => store.remove(&name, &current.tag).await,
                // Never written, or someone else's now.
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                tracing::warn!(claim = %name, error = %e, "could not remove the claim of a cancelled acquisition; it expires");
            }
        });
    }
}

/// A claim this process holds. Renew it ([`HeldClaim::renew`], or [`HeldClaim::keep_alive`] in
/// the background), [`fence`](HeldClaim::fence) before anything irreversible, and
/// [`release`](HeldClaim::release) it. Dropping it releases it in the background.
pub struct HeldClaim {
    shared: Arc<Shared>,
    keep_alive: Option<KeepAlive>,
    released: bool,
}

impl fmt::Debug for HeldClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldClaim").field("name", &self.shared.name).field("lease", &self.shared.lease).finish()
    }
}

impl HeldClaim {
    fn new(claims: &Claims, name: &str, lease: Duration, body: Bytes, tag: Tag) -> Self {
        let shared = Shared {
            store: Arc::clone(&claims.store),
            name: name.to_owned(),
            lease,
            body,
            tag: Mutex::new(tag),
            lost: AtomicBool::new(false),
        };
        Self { shared: Arc::new(shared), keep_alive: None, released: false }
    }

    /// The claimed name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its lease.
    pub fn lease(&self) -> Duration {
        self.shared.lease
    }

    /// Whether a renewal, fence or release found it no longer ours.
    pub fn is_lost(&self) -> bool {
        self.shared.lost.load(Ordering::Acquire)
    }

    /// Its current tag.
    pub async fn tag(&self) -> Tag {
        self.shared.tag.lock().await.clone()
    }

    /// Renews the lease: rewrites the claim if it is still the version we wrote last
    /// (`If-Match`), which restarts its age on the server.
    ///
    /// # Errors
    ///
    /// A retryable error saying the claim was lost (and [`HeldClaim::is_lost`] turns true) when
    /// it changed or is gone; backend errors (the claim may still be ours: try again).
    pub async fn renew(&self) -> Result<(), Error> {
        self.shared.renew().await
    }

    /// Renews in the background every lease/3 until released or dropped. A renewal that finds
    /// the claim lost stops and flags it ([`HeldClaim::is_lost`]); a failed request is retried
    /// at the next tick. Needs a tokio runtime.
    pub fn keep_alive(&mut self) {
        if self.keep_alive.is_some() {
            return;
        }
        let (stop, mut stopped) = watch::channel(false);
        let shared = Arc::clone(&self.shared);
        let every = (shared.lease / 3).max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => return,
                }
                match shared.renew().await {
                    Ok(()) => {}
                    Err(_) if shared.lost.load(Ordering::Acquire) => {
                        tracing::warn!(claim = %shared.name, "claim lost while held");
                        return;
                    }
                    Err(e) => tracing::warn!(claim = %shared.name, error = %e, "could not renew a claim; retrying"),
                }
            }
        });
        self.keep_alive = Some(KeepAlive { stop, task });
    }

    /// Proves, right now, that the claim is still ours: reads it and compares its tag with the
    /// one we wrote last (the read is serialized with renewals). When more than half of its
    /// lease has passed (server time), it also renews, so a taker has at least half a lease to
    /// wait after a successful fence.
    ///
    /// # Errors
    ///
    /// A retryable "claim lost" error (and [`HeldClaim::is_lost`] turns true) when it changed
    /// or is gone; backend errors.
    pub async fn fence(&self) -> Result<(), Error> {
        let age = {
            let tag = self.shared.tag.lock().await;
            if self.is_lost() {
                return Err(lost(&self.shared.name));
            }
            match self.shared.store.read(&self.shared.name).await? {
                Some(current) if current.tag == *tag => current.age(),
                _ => {
                    self.shared.lost.store(true, Ordering::Release);
                    return Err(lost(&self.shared.name));
                }
            }
        };
        if age > self.shared.lease / 2 { self.renew().await } else { Ok(()) }
    }

    /// Stops renewing and removes the claim if it is still ours (conditional on its tag).
    /// Returns whether it was removed: `false` means it had been taken over or removed, and
    /// whoever holds it now keeps it.
    ///
    /// # Errors
    ///
    /// Backend errors (the claim then expires on its own).
    pub async fn release(mut self) -> Result<bool, Error> {
        self.released = true;
        if let Some(keep_alive) = self.keep_alive.take() {
            keep_alive.stop().await;
        }
        self.shared.remove().await
    }
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let keep_alive = self.keep_alive.take();
        let shared = Arc::clone(&self.shared);
        // Best effort, like dropping a staged write: release in the background (an exiting CLI
        // waits for it, see `crate::kit::cleanup`); without a runtime the claim expires on its own.
        let abort = keep_alive.as_ref().map(|k| k.task.abort_handle());
        let started = crate::kit::cleanup::spawn(async move {
            if let Some(keep_alive) = keep_alive {
                keep_alive.stop().await;
            }
            if let Err(e) = shared.remove().await {
                tracing::warn!(claim = %shared.name, error = %e, "could not release a dropped claim; it expires");
            }
        });
        if !started && let Some(abort) = abort {
            abort.abort();
        }
    }
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
