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
        tracing::debug!(key = %key, "kernel copy not used: the source is read as a stream (stdin, a pipe, a spool file)");
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
    /// promote a large file. A regular file of at least [`STAGE_COPY_MIN`](crate::kit::STAGE_COPY_MIN)
    /// bytes is first offered to the backend to copy itself
    /// ([`Backend::stage_copy`](crate::Backend::stage_copy); see `file_copy.rs`).
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
        let meta = file.metadata();
        if let Some(outcome) = self.promote_by_copy(key, &file, meta.as_ref(), expected, &mode).await? {
            return Ok(outcome);
        }
        // Staged first: the store's staging slot (see `Store::limit_staging`) bounds the readers.
        let mut staged = self.stage(key, expected).await?;
        let size = meta.map_or(CHUNK_SIZE as u64, |m| m.len());
        let mut source = FileSource::new(key, file, size, expected);
        if crate::kit::blocking::is_here() {
            // Already on a thread that may block: read, hash and write in turn. Ends at the end of
            // the file (or past the expected size: `FileSource` refuses it).
            loop {
                let step = match source.next() {
                    Ok(Some(chunk)) => staged.write_prehashed(chunk).await,
                    Ok(None) => break,
                    Err(err) => Err(err),
                };
                if let Err(err) = step {
                    tracing::info!(key = %key, error = %err, "aborted");
                    let _ = staged.abort().await;
                    return Err(err);
                }
            }
            return staged.promote_digested(source.digest(), expected, mode).await;
        }
        // The reader holds a blocking thread until the file is read: one of a bounded few.
        let slot = match crate::kit::blocking::long_task_slot().await {
            Ok(slot) => slot,
            Err(err) => {
                let _ = staged.abort().await;
                return Err(err);
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(READ_AHEAD);
        // Read and hash on one thread, so each chunk is hashed while it is still in cache.
        let reader = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = source.next()? {
                if tx.blocking_send(chunk).is_err() {
                    return Err(Error::io("staging stopped", std::io::ErrorKind::BrokenPipe.into()));
                }
            }
            Ok(source.digest())
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
        drop(slot);
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

/// A local file read in chunks and hashed as it is read, checked against the expected size.
struct FileSource {
    key: Key,
    file: std::fs::File,
    /// The file's size when opened: it sizes the buffers (a small file takes a small one); the
    /// bytes read decide, however the file changes meanwhile.
    size: u64,
    digester: Digester,
    limits: Expected,
    done: bool,
}

impl FileSource {
    fn new(key: &Key, file: std::fs::File, size: u64, expected: &Expected) -> Self {
        Self { key: key.clone(), file, size, digester: Digester::new(), limits: *expected, done: false }
    }

    /// The next chunk, hashed; `None` at the end of the file.
    fn next(&mut self) -> Result<Option<Bytes>, Error> {
        if self.done {
            return Ok(None);
        }
        let left = self.size.saturating_sub(self.digester.size());
        let chunk = read_chunk_blocking(&mut self.file, left)
            .map_err(|e| Error::io(format!("reading the source for {:?}", self.key), e))?;
        // A short chunk is the end of the file.
        self.done = chunk.len() < CHUNK_SIZE;
        if chunk.is_empty() {
            return Ok(None);
        }
        self.digester.update(&chunk);
        if self.limits.too_long(self.digester.size()) {
            let (expected, actual) = (self.limits.size.unwrap_or_default(), self.digester.size());
            return Err(Error::SizeMismatch { key: self.key.to_string(), expected, actual });
        }
        Ok(Some(chunk))
    }

    /// The digest of everything read.
    fn digest(self) -> crate::verify::Digest {
        self.digester.finish()
    }
}

/// Reads the next chunk of `file`: up to [`CHUNK_SIZE`] bytes, fewer only at the end of the file.
/// `left` is what the file's size says remains: a file that fits in less than a chunk is read
/// into a buffer of its own size, never zeroed first; a larger one into a recycled chunk buffer.
/// Generic over the reader so that the tests can script short and interrupted reads.
fn read_chunk_blocking<R: std::io::Read>(file: &mut R, left: u64) -> std::io::Result<Bytes> {
    use std::io::Read;
    if left < CHUNK_SIZE as u64 {
        // `read_to_end` reads into the spare capacity without initialising it, and past the
        // expected end only into a small probe: the buffer grows only if the file did.
        let mut buf = Vec::with_capacity(left as usize);
        file.take(CHUNK_SIZE as u64).read_to_end(&mut buf)?;
        return Ok(Bytes::from(buf));
    }
    let mut buf = crate::kit::buffers::take();
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

#[cfg(test)]
#[path = "promote_tests.rs"]
mod tests;
