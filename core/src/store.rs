//! [`Store`]: a backend wrapped with the checks that live in core.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{Backend, ByteStream, Entry, Leftover, Meta};
use crate::error::Error;
use crate::key::Key;
use crate::kit::group_commit::Group;
use crate::mode::Mode;
use crate::outcome::{Outcome, Receipt};
use crate::put_options::PutOptions;
use crate::staged::{ResumePoint, Staged};
use crate::verify::{Digest, Digester, Expected};

/// A backend plus everything core does around it: capability checks before any byte moves,
/// hashing and verification while bytes flow, and the already-present/conflict decision.
///
/// Cheap to clone; clones share the backend, its group commit and the staging limit.
///
/// Its methods live in several files, one part each: `store.rs` (opening, staging, reads,
/// lists, the already-present decision), `promote.rs` (the promotion helpers),
/// `file_copy.rs` ([`Store::promote_file`]'s copy by the backend), `spool.rs`
/// ([`Store::promote_spooled`]) and `verified_read.rs` (verified reads).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The backend's group commit, when it batches durability.
    group: Option<Arc<Group>>,
    /// At most this many promotions stage bytes at once (see [`Store::limit_staging`]).
    staging: Option<Arc<Semaphore>>,
    /// What promotions through this handle tell the backend beside the bytes (content type).
    put_options: Arc<PutOptions>,
}

impl Store {
    /// Wraps `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        let group = backend.group_commit().map(|g| Arc::new(Group::new(g)));
        Self { backend, group, staging: None, put_options: Arc::default() }
    }

    /// This store, with promotions through the returned handle staged with `options` (a
    /// content type). Clones made before keep theirs.
    #[must_use]
    pub fn with_put_options(mut self, options: PutOptions) -> Self {
        self.put_options = Arc::new(options);
        self
    }

    /// Lets at most `n` promotions through this store (and its clones) stage bytes at once. A
    /// promotion holds its slot from [`Store::stage`] until its bytes are verified and sealed,
    /// not while it waits for a group commit (see [`crate::kit::group_commit`]): so a caller can keep
    /// many promotions waiting for one shared flush while memory stays bounded by `n` streams.
    #[must_use]
    pub fn limit_staging(mut self, n: usize) -> Self {
        self.staging = Some(Arc::new(Semaphore::new(n.max(1))));
        self
    }

    /// Whether promotions on this store are made durable by group commit.
    pub fn batches_durability(&self) -> bool {
        self.group.is_some()
    }

    pub(crate) fn group(&self) -> Option<&Arc<Group>> {
        self.group.as_ref()
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Refuses `mode` if the backend does not offer it, as far as it knows without live checks
    /// (see [`Store::ready_for`], which runs them first).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`].
    pub fn check_mode(&self, mode: &Mode) -> Result<(), Error> {
        self.backend.capabilities().check(mode, &self.backend.location())
    }

    /// Runs the backend's live checks for `mode` ([`Backend::ready_for`], e.g. S3's create-only
    /// probe, once per process), then refuses `mode` if the backend does not offer it. Every
    /// promotion helper calls this before it stages anything; [`Staged::promote`] checks again
    /// before publishing.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`]; backend errors when the live check cannot run.
    pub async fn ready_for(&self, mode: &Mode) -> Result<(), Error> {
        self.backend.ready_for(mode).await?;
        self.check_mode(mode)
    }

    /// Opens a staged handle for `key`. `expected` is passed to the backend as a hint (see
    /// [`Backend::stage`]); pass the same to [`Staged::promote`].
    ///
    /// # Errors
    ///
    /// The backend's staging error.
    pub async fn stage(&self, key: &Key, expected: &Expected) -> Result<Staged, Error> {
        let slot = self.staging_slot().await?;
        let inner = self.backend.stage_with(key, expected, &self.put_options).await?;
        Ok(Staged::new(key.clone(), self.clone(), inner, slot))
    }

    /// Opens a resumable staged handle for `key` (see [`Backend::stage_resumable`]): one whose
    /// [`Staged::checkpoint`] gives a [`ResumePoint`] to record, and that this call goes on
    /// from (`from`) in a later process after a crash, with the hash state it had there. It
    /// takes no staging slot ([`Store::limit_staging`] is for many small writes).
    ///
    /// `Ok(None)`: the backend has no resumable writes, or `from`'s bytes are gone (the caller
    /// starts over, with `from: None`).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when `from`'s hash state is not one; the backend's staging error.
    pub async fn stage_resumable(
        &self,
        key: &Key,
        expected: &Expected,
        from: Option<&ResumePoint>,
    ) -> Result<Option<Staged>, Error> {
        let digester = match from {
            Some(point) => Digester::resume(&point.hash_state, point.offset).map_err(|why| Error::Backend {
                backend: self.backend.kind().into(),
                context: format!("going on with the staged write of {:?}", key.as_str()),
                retryable: false,
                source: why.into(),
            })?,
            None => Digester::new(),
        };
        let token = from.map(|point| point.token.as_str());
        let inner = self.backend.stage_resumable(key, expected, &self.put_options, token).await?;
        Ok(inner.map(|inner| Staged::resumable(key.clone(), self.clone(), inner, digester)))
    }

    /// Removes the staged bytes of a [`ResumePoint`] that will not be gone on from (see
    /// [`Backend::discard_resumable`]).
    ///
    /// # Errors
    ///
    /// When they could not be removed; `promote recover` will find them.
    pub async fn discard_resumable(&self, key: &Key, point: &ResumePoint) -> Result<(), Error> {
        self.backend.discard_resumable(key, &point.token).await
    }

    /// Waits for a staging slot, where the store limits staging ([`Store::limit_staging`]).
    pub(crate) async fn staging_slot(&self) -> Result<Option<OwnedSemaphorePermit>, Error> {
        match &self.staging {
            Some(gate) => Arc::clone(gate)
                .acquire_owned()
                .await
                .map(Some)
                .map_err(|_| Error::io("waiting for a staging slot", std::io::ErrorKind::BrokenPipe.into())),
            None => Ok(None),
        }
    }

    /// See [`Backend::head`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] and backend errors.
    pub async fn head(&self, key: &Key) -> Result<Meta, Error> {
        self.backend.head(key).await
    }

    /// The object's bytes as stored, unverified. Prefer [`Store::read_verified`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] and backend errors.
    pub async fn read(&self, key: &Key) -> Result<ByteStream, Error> {
        self.backend.read(key).await
    }

    /// See [`Backend::delete`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] and backend errors.
    pub async fn delete(&self, key: &Key) -> Result<(), Error> {
        self.backend.delete(key).await
    }

    /// See [`Backend::list`].
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        self.backend.list(prefix).await
    }

    /// See [`Backend::sweep_staging`].
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn sweep_staging(&self, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
        let leftovers = self.backend.sweep_staging(older_than, dry_run).await?;
        for l in leftovers.iter().filter(|l| l.removed && !dry_run) {
            tracing::info!(name = %l.name, size = l.size, "removed staging leftover");
        }
        Ok(leftovers)
    }

    /// A create-only publish found `key` taken: identical bytes are success (returns the
    /// existing version), anything else is a conflict.
    /// For a create-only promotion whose SHA-256 is known up front: if the key already holds
    /// exactly that (its stored digest and size say so), the outcome without reading a byte of
    /// the source. A rerun of `put --sha256` costs one `head`.
    pub(crate) async fn already_present(
        &self,
        key: &Key,
        expected: &Expected,
        mode: &Mode,
    ) -> Result<Option<Outcome>, Error> {
        let (Mode::Create, Some(sha256)) = (mode, expected.sha256) else { return Ok(None) };
        let meta = match self.backend.head(key).await {
            Ok(meta) => meta,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        if meta.sha256 != Some(sha256) || expected.size.is_some_and(|size| size != meta.size) {
            return Ok(None);
        }
        tracing::info!(key = %key, bytes = meta.size, sha256 = %sha256, "already-present (by its stored digest)");
        let receipt = Receipt { key: key.clone(), size: meta.size, sha256, version: meta.version };
        Ok(Some(Outcome::AlreadyPresent(receipt)))
    }

    pub(crate) async fn resolve_taken(&self, key: &Key, digest: &Digest) -> Result<Option<String>, Error> {
        let conflict = |detail: String| Error::Conflict { key: key.to_string(), detail };
        let meta = match self.backend.head(key).await {
            Ok(meta) => meta,
            Err(Error::NotFound { .. }) => {
                return Err(conflict("another writer held the key and then removed it; retry".into()));
            }
            Err(err) => return Err(err),
        };
        if meta.size != digest.size {
            return Err(conflict(format!(
                "it holds {} bytes of other content, the new object has {} bytes",
                meta.size, digest.size
            )));
        }
        let existing = match meta.sha256 {
            Some(sha) => sha,
            None => self.digest_of(key).await?.sha256,
        };
        if existing == digest.sha256 {
            Ok(meta.version)
        } else {
            Err(conflict(format!("it holds sha256 {existing}, the new object has sha256 {}", digest.sha256)))
        }
    }
}
