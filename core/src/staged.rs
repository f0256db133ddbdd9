//! The staged handle: bytes in, hashed as they pass, then promoted or discarded.

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
}

impl Staged {
    pub(crate) fn new(key: Key, store: Store, inner: Box<dyn StagedWrite>, slot: Option<OwnedSemaphorePermit>) -> Self {
        tracing::info!(key = %key, backend = store.backend().kind(), "staged");
        Self { key, store, inner, digester: Digester::new(), started: Instant::now(), slot }
    }

    /// The key this will be promoted to.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.digester.size()
    }

    /// Appends `chunk`, hashing it on the way.
    ///
    /// # Errors
    ///
    /// The backend's staging error (disk full, connection lost, …).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.digester.update(&chunk);
        self.inner.write(chunk).await
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
