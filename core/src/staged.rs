//! The staged handle: bytes in, hashed as they pass, then promoted or discarded.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use crate::backend::{Backend, StagedWrite};
use crate::error::Error;
use crate::key::Key;
use crate::mode::Mode;
use crate::outcome::{Outcome, Receipt};
use crate::store::Store;
use crate::verify::{Digest, Digester, Expected};

/// Bytes staged for one key, not yet visible there.
///
/// Get one from [`Store::stage`]. [`Staged::promote`] consumes it; dropping it without promoting
/// discards the staged data (best effort), like an aborted transaction.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(store: promote_core::Store) -> Result<(), promote_core::Error> {
/// use promote_core::{Expected, Key, Mode, Sha256};
/// let mut staged = store.stage(&Key::new("hello.txt")?, &Expected::default()).await?;
/// staged.write("hello\n".into()).await?;
/// let outcome = staged
///     .promote(&Expected { sha256: Some(Sha256::of(b"hello\n")), size: Some(6) }, Mode::Create)
///     .await?;
/// println!("{}: {}", outcome.label(), outcome.receipt().sha256);
/// # Ok(()) }
/// ```
pub struct Staged {
    key: Key,
    store: Store,
    inner: Box<dyn StagedWrite>,
    digester: Digester,
    started: Instant,
    /// The store's staging slot, if it limits staging; released once the bytes are sealed.
    slot: Option<OwnedSemaphorePermit>,
    /// Resumable writes only (see [`Store::stage_resumable`]): the digester as it stood at
    /// each part end written since the last checkpoint, oldest first.
    marks: Option<VecDeque<Digester>>,
}

/// Where a resumable staged write stands: what to record so that it goes on after its process
/// is gone ([`Store::stage_resumable`]). Every field is needed to go on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResumePoint {
    /// Bytes from the object's start that are durable in the backend.
    pub offset: u64,
    /// The SHA-256 state after those bytes ([`Digester::saved`]), so the final digest is
    /// computed over every byte exactly once, in order, across processes.
    pub hash_state: String,
    /// The backend's own handle on the staged bytes (for S3: the multipart upload and its
    /// parts), opaque to the caller.
    pub token: String,
}

impl Staged {
    pub(crate) fn new(key: Key, store: Store, inner: Box<dyn StagedWrite>, slot: Option<OwnedSemaphorePermit>) -> Self {
        tracing::info!(key = %key, backend = store.backend().kind(), "staged");
        Self { key, store, inner, digester: Digester::new(), started: Instant::now(), slot, marks: None }
    }

    /// A resumable staged write (see [`Store::stage_resumable`]) that already holds the bytes
    /// hashed by `digester`.
    pub(crate) fn resumable(key: Key, store: Store, inner: Box<dyn StagedWrite>, digester: Digester) -> Self {
        let mut staged = Self::new(key, store, inner, None);
        staged.digester = digester;
        // The first mark: where it starts (a checkpoint before its first part ends names it).
        staged.marks = Some(VecDeque::from([staged.digester.clone()]));
        staged
    }

    /// The key this will be promoted to.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.digester.size()
    }

    /// The size and SHA-256 of every byte written so far (for a resumed write, those written
    /// before it was resumed too). [`Staged::promote`] checks the same digest.
    pub fn digest(&self) -> Digest {
        self.digester.clone().finish()
    }

    /// Appends `chunk`, hashing it on the way.
    ///
    /// # Errors
    ///
    /// The backend's staging error (disk full, connection lost, …).
    pub async fn write(&mut self, mut chunk: Bytes) -> Result<(), Error> {
        if self.marks.is_none() {
            self.digester.update(&chunk);
            return self.inner.write(chunk).await;
        }
        // A resumable write: cut at each part end, and keep the hash state there. Each round
        // writes at least one byte (the backend's part end is past what was written).
        while !chunk.is_empty() {
            let end = self.inner.part_end().unwrap_or(u64::MAX);
            let room = end.saturating_sub(self.digester.size()).max(1);
            let piece = chunk.split_to(chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX)));
            self.digester.update(&piece);
            self.inner.write(piece).await?;
            if self.digester.size() == end
                && let Some(marks) = &mut self.marks
            {
                marks.push_back(self.digester.clone());
            }
        }
        Ok(())
    }

    /// Resumable writes only (see [`Store::stage_resumable`]): waits until the parts sent so
    /// far are durable in the backend and returns the point to go on from, in this process or
    /// another. The bytes it names stay staged when this handle is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a write that is not resumable; the backend's error when a
    /// part failed.
    pub async fn checkpoint(&mut self) -> Result<ResumePoint, Error> {
        let Some(marks) = self.marks.as_mut() else {
            return Err(Error::Unsupported {
                operation: "checkpoints of a staged write".into(),
                backend: self.store.backend().location(),
            });
        };
        let (offset, token) = self.inner.checkpoint().await?;
        while marks.front().is_some_and(|m| m.size() < offset) {
            marks.pop_front();
        }
        let state = match marks.front() {
            Some(mark) if mark.size() == offset => mark.saved(),
            _ => {
                return Err(Error::Backend {
                    backend: self.store.backend().kind().into(),
                    context: format!("checkpointing the staged write of {:?}", self.key.as_str()),
                    retryable: false,
                    source: format!("the backend named offset {offset}, which is not a part end written").into(),
                });
            }
        };
        tracing::debug!(key = %self.key, offset, "checkpoint");
        Ok(ResumePoint { offset, hash_state: state, token })
    }

    /// Verifies what was written against `expected`, then publishes it at the key per `mode`.
    ///
    /// On any error nothing is published and the staged data is removed.
    ///
    /// # Errors
    ///
    /// [`Error::SizeMismatch`]/[`Error::DigestMismatch`] when the bytes are not what was
    /// expected; [`Error::Conflict`] when create-only finds different bytes at the key;
    /// [`Error::Unsupported`] when the backend does not offer `mode`; backend errors.
    pub async fn promote(mut self, expected: &Expected, mode: Mode) -> Result<Outcome, Error> {
        let digest = std::mem::take(&mut self.digester).finish();
        self.promote_digested(digest, expected, mode).await
    }

    /// Appends a chunk that the caller hashes itself (see [`Store::promote_file`], which hashes
    /// on its reader thread while the data is still in cache).
    pub(crate) async fn write_prehashed(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.inner.write(chunk).await
    }

    /// [`Staged::promote`] with the digest of everything written computed elsewhere in core.
    pub(crate) async fn promote_digested(
        self,
        digest: Digest,
        expected: &Expected,
        mode: Mode,
    ) -> Result<Outcome, Error> {
        let Self { key, store, mut inner, started, slot, .. } = self;
        let backend = Arc::clone(store.backend());
        let ready = backend.ready_for(&mode).await;
        if let Err(err) = ready.and_then(|()| check_before_publish(backend.as_ref(), &key, expected, &mode, &digest)) {
            let _ = inner.abort().await;
            aborted(&key, &digest, started, &err);
            return Err(err);
        }
        tracing::info!(key = %key, bytes = digest.size, sha256 = %digest.sha256, "verified");
        let group = store.group().map(Arc::clone);
        if let Some(group) = &group {
            // Group commit: sealed, then durable with everyone else's, then published.
            let sealed = inner.seal(&digest).await;
            drop(slot);
            if let Err(err) = match sealed {
                Ok(()) => group.staged_durable().await,
                Err(err) => Err(err),
            } {
                let _ = inner.abort().await;
                aborted(&key, &digest, started, &err);
                return Err(err);
            }
        } else {
            drop(slot);
        }
        // With group commit, a receipt waits for the flush of the names published before it.
        let durable = |key: Key| {
            let group = group.clone();
            async move {
                match group {
                    Some(group) => group.published_durable(key).await,
                    None => Ok(()),
                }
            }
        };
        let receipt = |version| Receipt { key: key.clone(), size: digest.size, sha256: digest.sha256, version };
        match inner.publish(&mode, &digest).await {
            Ok(version) => {
                if let Err(err) = durable(key.clone()).await {
                    aborted(&key, &digest, started, &err);
                    return Err(err);
                }
                tracing::info!(
                    key = %key, bytes = digest.size, sha256 = %digest.sha256,
                    elapsed_ms = started.elapsed().as_millis() as u64, "promoted"
                );
                Ok(Outcome::Promoted(receipt(version)))
            }
            Err(Error::AlreadyExists { .. }) if mode == Mode::Create => {
                match store.resolve_taken(&key, &digest).await {
                    Ok(version) => {
                        // The object found may be another member's, published but not yet flushed.
                        if let Err(err) = durable(key.clone()).await {
                            aborted(&key, &digest, started, &err);
                            return Err(err);
                        }
                        tracing::info!(
                            key = %key, bytes = digest.size, sha256 = %digest.sha256,
                            elapsed_ms = started.elapsed().as_millis() as u64, "already-present"
                        );
                        Ok(Outcome::AlreadyPresent(receipt(version)))
                    }
                    Err(err) => {
                        aborted(&key, &digest, started, &err);
                        Err(err)
                    }
                }
            }
            Err(err) => {
                aborted(&key, &digest, started, &err);
                Err(err)
            }
        }
    }

    /// Discards the staged data.
    ///
    /// # Errors
    ///
    /// When it could not be removed; `promote recover` will find it.
    pub async fn abort(self) -> Result<(), Error> {
        tracing::debug!(key = %self.key, bytes = self.digester.size(), "aborted");
        self.inner.abort().await
    }
}

fn check_before_publish(
    backend: &dyn Backend,
    key: &Key,
    expected: &Expected,
    mode: &Mode,
    digest: &Digest,
) -> Result<(), Error> {
    backend.capabilities().check(mode, &backend.location())?;
    expected.check(key, digest)
}

fn aborted(key: &Key, digest: &Digest, started: Instant, err: &Error) {
    tracing::info!(
        key = %key, bytes = digest.size, sha256 = %digest.sha256,
        elapsed_ms = started.elapsed().as_millis() as u64, error = %err, "aborted"
    );
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("key", &self.key).field("bytes", &self.digester.size()).finish()
    }
}
