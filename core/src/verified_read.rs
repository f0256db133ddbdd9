//! Reading objects back with their stored digest checked.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::backend::{ByteStream, Meta};
use crate::error::Error;
use crate::key::Key;
use crate::store::Store;
use crate::verify::{Digest, Digester, Expected};

impl Store {
    /// The object's bytes, hashed as they pass; the stream ends with
    /// [`Error::DigestMismatch`]/[`Error::SizeMismatch`] instead of its last `None` when the
    /// bytes are not what `head` promised. Write them somewhere invisible until the stream ends.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] and backend errors.
    pub async fn read_verified(&self, key: &Key) -> Result<(Meta, ByteStream), Error> {
        let meta = self.head(key).await?;
        if meta.changed_since_promotion {
            return Err(Error::Modified { key: key.to_string() });
        }
        self.read_checked(key, meta).await
    }

    /// Like [`Store::read_verified`], for an object already known (by `meta`) — also one
    /// modified since promotion, whose bytes are then checked against its size only.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] and backend errors.
    pub async fn read_checked(&self, key: &Key, meta: Meta) -> Result<(Meta, ByteStream), Error> {
        let inner = self.read(key).await?;
        let expected = Expected { size: Some(meta.size), sha256: meta.sha256 };
        let stream =
            Verifying { store: self.clone(), key: key.clone(), inner, expected, digester: Some(Digester::new()) };
        Ok((meta, stream.boxed()))
    }

    /// Makes `key`'s stored digest stop vouching for its bytes, after a read found them damaged
    /// (see [`crate::Backend::forget_digest`]); a failure is logged, never returned, since the
    /// caller is already reporting the damage.
    pub async fn forget_digest(&self, key: &Key) {
        match self.backend().forget_digest(key).await {
            Ok(()) => tracing::info!(key = %key, "damaged: its stored digest no longer vouches for it"),
            Err(err) => tracing::warn!(key = %key, error = %err, "could not mark a damaged object's stored digest"),
        }
    }

    /// Reads the whole object and returns what it really is.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] and backend errors.
    pub async fn digest_of(&self, key: &Key) -> Result<Digest, Error> {
        let mut stream = self.read(key).await?;
        let mut digester = Digester::new();
        while let Some(chunk) = stream.next().await {
            digester.update(&chunk?);
        }
        Ok(digester.finish())
    }

    /// Re-reads the object, recomputes its digest and compares it with the stored one (when the
    /// backend stores one) and with `expected`.
    ///
    /// # Errors
    ///
    /// [`Error::DigestMismatch`]/[`Error::SizeMismatch`] naming the key; [`Error::NotFound`].
    pub async fn verify(&self, key: &Key, expected: &Expected) -> Result<(Meta, Digest), Error> {
        let meta = self.head(key).await?;
        if meta.changed_since_promotion {
            return Err(Error::Modified { key: key.to_string() });
        }
        let digest = self.digest_of(key).await?;
        let stored = Expected { size: Some(meta.size), sha256: meta.sha256 };
        if let Err(err) = stored.check(key, &digest) {
            self.forget_digest(key).await;
            return Err(damaged(err, "its stored size and digest"));
        }
        expected.check(key, &digest).map_err(|e| damaged(e, "what was expected"))?;
        Ok((meta, digest))
    }
}

/// A mismatch found on reading a stored object: the object is damaged, nothing was published.
fn damaged(err: Error, against: &str) -> Error {
    match err {
        Error::DigestMismatch { key, expected, actual } => {
            Error::Damaged { key, detail: format!("{against}: expected sha256 {expected}, read {actual}") }
        }
        Error::SizeMismatch { key, expected, actual } => {
            Error::Damaged { key, detail: format!("{against}: expected {expected} bytes, read {actual}") }
        }
        other => other,
    }
}

struct Verifying {
    store: Store,
    key: Key,
    inner: ByteStream,
    expected: Expected,
    digester: Option<Digester>,
}

impl Stream for Verifying {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(digester) = this.digester.as_mut() else { return Poll::Ready(None) };
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                digester.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.digester = None;
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                let digest = this.digester.take().map(Digester::finish);
                match digest.map(|d| this.expected.check(&this.key, &d)) {
                    Some(Err(err)) => {
                        // Damaged: its stored digest must stop vouching for it. Handed to the
                        // clean-up tasks, which an exiting program waits for.
                        let (store, key) = (this.store.clone(), this.key.clone());
                        crate::kit::cleanup::spawn(async move { store.forget_digest(&key).await });
                        Poll::Ready(Some(Err(damaged(err, "its stored size and digest"))))
                    }
                    _ => Poll::Ready(None),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
