//! The staged handle: small objects wait in memory, large ones in a local staging file (see
//! `staging`); at publish, one OpenDAL write carries the mode's condition and the digest.
//!
//! - Create: `if_not_exists` — the service decides (only offered for services on the
//!   allowlist, see `services`).
//! - ReplaceIfVersion: `if_match: <etag>`.
//! - Replace: a plain write.
//!
//! A large object goes up as a multi-part write (S3 multipart upload, Azure blocks), whose
//! commit carries the condition. Where the allowlist says commits are serialized, the writer
//! holds the key's claim (see [`promote_core::kit::claims`]) from before the commit until it is
//! done, and fences it right before, so one conditional commit per key runs at a time.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use opendal::options::WriteOptions;
use promote_core::kit::claims::{Claims, HeldClaim};
use promote_core::{Bytes, Digest, Error, Key, Mode, StagedWrite, async_trait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::{DIGEST_METADATA, Inner};
use crate::control::OpendalControl;
use crate::errors;
use crate::staging::WriterDir;

/// Times a write refused with S3's 409 ConditionalRequestConflict is tried again.
const CONFLICT_RETRIES: u32 = 6;

pub(crate) struct OpendalStaged {
    inner: Arc<Inner>,
    key: Key,
    buf: BytesMut,
    file: Option<(WriterDir, tokio::fs::File)>,
    /// Sent with the write where the service stores one (`Content-Type`).
    content_type: String,
}

impl OpendalStaged {
    pub(crate) fn new(inner: Arc<Inner>, key: Key, content_type: String) -> Self {
        Self { inner, key, buf: BytesMut::new(), file: None, content_type }
    }

    /// A handle whose bytes are all in `dir`'s staging file already (moved there whole, see
    /// `Area::adopt`): published like a large object written through [`StagedWrite::write`].
    pub(crate) fn adopted(
        inner: Arc<Inner>,
        key: Key,
        content_type: String,
        dir: WriterDir,
        file: std::fs::File,
    ) -> Self {
        let file = Some((dir, tokio::fs::File::from_std(file)));
        Self { inner, key, buf: BytesMut::new(), file, content_type }
    }

    fn io(&self, what: &str, e: std::io::Error) -> Error {
        Error::io(
            format!("{what} the staged bytes of {:?} in {}", self.key.as_str(), self.inner.area.dir().display()),
            e,
        )
    }

    async fn append(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if let Some((_, file)) = self.file.as_mut() {
            let result = file.write_all(chunk).await;
            return result.map_err(|e| self.io("writing", e));
        }
        self.buf.extend_from_slice(chunk);
        if self.buf.len() as u64 <= self.inner.threshold {
            return Ok(());
        }
        let dir = self.inner.area.writer()?;
        let mut file = tokio::fs::File::create(dir.data()).await.map_err(|e| self.io("creating", e))?;
        let pending = std::mem::take(&mut self.buf);
        let result = file.write_all(&pending).await;
        self.file = Some((dir, file));
        result.map_err(|e| self.io("writing", e))
    }

    fn options(&self, mode: &Mode, digest: &Digest) -> WriteOptions {
        let mut opts = WriteOptions {
            chunk: Some(self.inner.part_size),
            concurrent: self.inner.concurrency,
            ..WriteOptions::default()
        };
        if self.inner.capability.write_with_user_metadata {
            opts.user_metadata = Some([(DIGEST_METADATA.to_owned(), digest.sha256.to_string())].into());
        }
        if self.inner.capability.write_with_content_type {
            opts.content_type = Some(self.content_type.clone());
        }
        match mode {
            Mode::Create => opts.if_not_exists = true,
            Mode::ReplaceIfVersion(v) => opts.if_match = Some(v.clone()),
            Mode::Replace => {}
        }
        opts
    }

    /// Maps a refused conditional write to what core expects.
    fn refused(&self, e: opendal::Error, mode: &Mode, what: &str) -> Error {
        let key = self.key.to_string();
        match mode {
            Mode::Create if errors::taken(&e) => Error::AlreadyExists { key },
            Mode::ReplaceIfVersion(v)
                if matches!(e.kind(), opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::NotFound) =>
            {
                Error::VersionMismatch { key, expected: v.clone() }
            }
            _ => self.inner.err(e, self.key.as_str(), what),
        }
    }

    async fn publish_small(&mut self, mode: &Mode, digest: &Digest) -> Result<opendal::Metadata, Error> {
        let body = std::mem::take(&mut self.buf).freeze();
        let path = self.inner.path(&self.key);
        let mut attempt = 0;
        // Bounded by `CONFLICT_RETRIES`; each write by the operator's timeout layer.
        loop {
            match self.inner.op.write_options(&path, body.clone(), self.options(mode, digest)).await {
                Ok(meta) => return Ok(meta),
                Err(e) if errors::conflicting(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(self.refused(e, mode, "publishing")),
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
    }

    async fn publish_large(
        &mut self,
        (dir, mut file): (WriterDir, tokio::fs::File),
        mode: &Mode,
        digest: &Digest,
    ) -> Result<opendal::Metadata, Error> {
        file.flush().await.map_err(|e| self.io("writing", e))?;
        drop(file);
        let mut file = tokio::fs::File::open(dir.data()).await.map_err(|e| self.io("reopening", e))?;
        let path = self.inner.path(&self.key);
        let writer = self
            .inner
            .op
            .writer_options(&path, self.options(mode, digest))
            .await
            .map_err(|e| self.inner.err(e, self.key.as_str(), "starting the upload of"))?;
        // Aborts the upload if this future is dropped (cancelled) before it ends.
        let mut upload = Upload(None);
        let writer = upload.0.insert(writer);
        let sent = async {
            // Bounded by the staged file: each pass reads a part, and the file ends.
            loop {
                let mut part = BytesMut::zeroed(self.inner.part_size);
                let n = read_full(&mut file, &mut part).await.map_err(|e| self.io("reading", e))?;
                if n == 0 {
                    return Ok(());
                }
                part.truncate(n);
                writer.write(part.freeze()).await.map_err(|e| self.inner.err(e, self.key.as_str(), "uploading"))?;
            }
        }
        .await;
        if let Err(e) = sent {
            let _ = writer.abort().await;
            return Err(e);
        }
        // One conditional commit per key at a time where the service needs it (see `services`).
        let serialize = self.inner.atomic.is_some_and(|a| a.serialize_multipart) && *mode != Mode::Replace;
        let claim = match serialize.then(|| self.claim(mode)) {
            Some(claim) => match claim.await {
                Ok(claim) => Some(claim),
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            },
            None => None,
        };
        if let Some(claim) = &claim
            && let Err(lost) = claim.fence().await
        {
            let _ = writer.abort().await;
            return Err(lost);
        }
        let closed = writer.close().await;
        if let Some(claim) = claim
            && let Err(e) = claim.release().await
        {
            tracing::warn!(key = %self.key, error = %e, "could not release a claim; it expires on its own");
        }
        drop(dir);
        match closed {
            Ok(meta) => {
                upload.0 = None;
                Ok(meta)
            }
            Err(e) => {
                let _ = writer.abort().await;
                // A completion whose answer was lost, sent again by the retry layer: the server
                // has forgotten the completed upload, or its condition no longer holds because of
                // that first attempt. The key holding the verified bytes says it went through.
                if (e.kind() == opendal::ErrorKind::NotFound || errors::taken(&e))
                    && let Some(meta) = self.holds(digest).await
                {
                    tracing::info!(key = %self.key, "the completion's answer was lost; the key holds the verified bytes");
                    return Ok(meta);
                }
                Err(self.refused(e, mode, "completing the upload of"))
            }
        }
    }

    /// The key's metadata when the object there is `digest`'s bytes, by the digest stored with
    /// it (services without user metadata never match).
    async fn holds(&self, digest: &Digest) -> Option<opendal::Metadata> {
        let meta = self.inner.op.stat(&self.inner.path(&self.key)).await.ok()?;
        let stored = meta.user_metadata()?.get(DIGEST_METADATA)?.parse::<promote_core::Sha256>().ok()?;
        (meta.content_length() == digest.size && stored == digest.sha256).then_some(meta)
    }

    /// Takes the key's claim, waiting for another holder; for a create-only commit, an object
    /// appearing at the key ends the wait with [`Error::AlreadyExists`].
    async fn claim(&self, mode: &Mode) -> Result<HeldClaim, Error> {
        let claims = Claims::new(Arc::new(OpendalControl::new(Arc::clone(&self.inner))));
        let exists = || async {
            match self.inner.op.stat(&self.inner.path(&self.key)).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(self.inner.err(e, self.key.as_str(), "claiming")),
            }
        };
        claims.acquire_commit(&self.key, mode, &format!("opendal {}", self.inner.scheme), exists).await
    }
}

/// An upload in progress; dropped unfinished, it is aborted in the background (see
/// [`promote_core::kit::cleanup`]), so a cancelled publish leaves no parts or blocks behind.
struct Upload(Option<opendal::Writer>);

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(mut writer) = self.0.take() {
            promote_core::kit::cleanup::spawn(async move {
                let _ = writer.abort().await;
            });
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[async_trait]
impl StagedWrite for OpendalStaged {
    async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        let result = self.append(&chunk).await;
        promote_core::kit::buffers::recycle(chunk);
        if result.is_err() {
            self.file = None;
        }
        result
    }

    async fn publish(mut self: Box<Self>, mode: &Mode, digest: &Digest) -> Result<Option<String>, Error> {
        let meta = if let Some(staged) = self.file.take() {
            self.publish_large(staged, mode, digest).await?
        } else {
            self.publish_small(mode, digest).await?
        };
        if let Some(etag) = meta.etag() {
            return Ok(Some(etag.to_owned()));
        }
        // Some services do not return the new version from a write; read it (informational).
        Ok(self.inner.op.stat(&self.inner.path(&self.key)).await.ok().and_then(|m| m.etag().map(str::to_owned)))
    }

    async fn abort(mut self: Box<Self>) -> Result<(), Error> {
        self.file = None;
        Ok(())
    }
}
