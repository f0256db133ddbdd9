//! The promotion helpers: any byte source → stage → stream → verify → promote, or abort.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::Error;
use crate::key::Key;
use crate::mode::Mode;
use crate::outcome::Outcome;
use crate::store::Store;
use crate::verify::{Digester, Expected};

/// Bytes read from a source per chunk.
pub const CHUNK_SIZE: usize = 1 << 20;

impl Store {
    /// Streams `reader` into a staged handle for `key`, verifies it against `expected` and
    /// promotes it per `mode`. Memory stays bounded by a few chunks whatever the size.
    ///
    /// # Atomicity
    ///
    /// Either the whole verified object appears at `key`, or nothing does: a read error, a
    /// size or digest mismatch, or a refused mode aborts the staged data.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] before anything is staged when the backend does not offer `mode`;
    /// [`Error::Io`] when the source fails; everything [`Staged::promote`](crate::Staged::promote)
    /// returns.
    pub async fn promote_reader<R>(
        &self,
        key: &Key,
        reader: R,
        expected: &Expected,
        mode: Mode,
    ) -> Result<Outcome, Error>
    where
        R: AsyncRead + Unpin + Send,
    {
        let chunks = futures_util::stream::unfold(reader, |mut reader| async move {
            match read_chunk(&mut reader).await {
                Ok(chunk) if chunk.is_empty() => None,
                Ok(chunk) => Some((Ok(chunk), reader)),
                Err(err) => Some((Err(err), reader)),
            }
        });
        self.promote_stream(key, chunks, expected, mode).await
    }

    /// Like [`Store::promote_reader`], for a local file: a dedicated thread reads ahead while
    /// this task hashes and the backend writes, so the three overlap. The fastest way to
    /// promote a file.
    ///
    /// # Errors
    ///
    /// As [`Store::promote_reader`].
    pub async fn promote_file(
        &self,
        key: &Key,
        file: std::fs::File,
        expected: &Expected,
        mode: Mode,
    ) -> Result<Outcome, Error> {
        self.ready_for(&mode).await?;
        if let Some(outcome) = self.already_present(key, expected, &mode).await? {
            return Ok(outcome);
        }
        let mut staged = self.stage(key, expected).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(READ_AHEAD);
        let (read_key, limits) = (key.clone(), *expected);
        // Read and hash on one thread, so each chunk is hashed while it is still in cache.
        let reader = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut digester = Digester::new();
            loop {
                let chunk = read_chunk_blocking(&mut file)
                    .map_err(|e| Error::io(format!("reading the source for {read_key:?}"), e))?;
                if chunk.is_empty() {
                    return Ok(digester.finish());
                }
                digester.update(&chunk);
                if limits.too_long(digester.size()) {
                    let (expected, actual) = (limits.size.unwrap_or_default(), digester.size());
                    return Err(Error::SizeMismatch { key: read_key.to_string(), expected, actual });
                }
                if tx.blocking_send(chunk).is_err() {
                    return Err(Error::io("staging stopped", std::io::ErrorKind::BrokenPipe.into()));
                }
            }
        });
        let mut written = Ok(());
        while let Some(chunk) = rx.recv().await {
            written = staged.write_prehashed(chunk).await;
            if written.is_err() {
                break;
            }
        }
        drop(rx);
        let read = reader.await.map_err(|e| Error::io("reading the source", std::io::Error::other(e)));
        match (written, read) {
            (Ok(()), Ok(Ok(digest))) => staged.promote_digested(digest, expected, mode).await,
            (Err(err), _) | (Ok(()), Err(err) | Ok(Err(err))) => {
                tracing::info!(key = %key, error = %err, "aborted");
                let _ = staged.abort().await;
                Err(err)
            }
        }
    }

    /// Like [`Store::promote_reader`], for a stream of chunks (an HTTP body, say).
    ///
    /// # Errors
    ///
    /// As [`Store::promote_reader`]; a stream item's error aborts the promotion.
    pub async fn promote_stream<S>(
        &self,
        key: &Key,
        chunks: S,
        expected: &Expected,
        mode: Mode,
    ) -> Result<Outcome, Error>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        self.ready_for(&mode).await?;
        if let Some(outcome) = self.already_present(key, expected, &mode).await? {
            return Ok(outcome);
        }
        let mut chunks = std::pin::pin!(chunks);
        let mut staged = self.stage(key, expected).await?;
        while let Some(next) = chunks.next().await {
            let step = match next {
                Ok(chunk) if expected.too_long(staged.bytes_written() + chunk.len() as u64) => {
                    Err(Error::SizeMismatch {
                        key: key.to_string(),
                        expected: expected.size.unwrap_or_default(),
                        actual: staged.bytes_written() + chunk.len() as u64,
                    })
                }
                Ok(chunk) => staged.write(chunk).await,
                Err(err) => Err(Error::io(format!("reading the source for {key:?}"), err)),
            };
            if let Err(err) = step {
                tracing::info!(key = %key, bytes = staged.bytes_written(), error = %err, "aborted");
                let _ = staged.abort().await;
                return Err(err);
            }
        }
        staged.promote(expected, mode).await
    }
}

/// Chunks read ahead of hashing by [`Store::promote_file`].
const READ_AHEAD: usize = 4;

fn read_chunk_blocking(file: &mut std::fs::File) -> std::io::Result<Bytes> {
    use std::io::Read;
    let mut buf = crate::buffers::take();
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

/// Reads up to [`CHUNK_SIZE`] bytes; empty at end of input.
pub(crate) async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
    while buf.len() < CHUNK_SIZE {
        if reader.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}
