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
        let inner = self.read(key).await?;
        let expected = Expected { size: Some(meta.size), sha256: meta.sha256 };
        let stream = Verifying { key: key.clone(), inner, expected, digester: Some(Digester::new()) };
        Ok((meta, stream.boxed()))
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
        let digest = self.digest_of(key).await?;
        Expected { size: Some(meta.size), sha256: meta.sha256 }.check(key, &digest)?;
        expected.check(key, &digest)?;
        Ok((meta, digest))
    }
}

struct Verifying {
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
                    Some(Err(err)) => Poll::Ready(Some(Err(err))),
                    _ => Poll::Ready(None),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
