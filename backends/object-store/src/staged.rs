//! The staged handle: small objects buffer in memory and go up in one conditional PUT; large
//! ones become a multipart upload whose completion carries the condition.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, UpdateVersion,
};
use promote_core::{Bytes, Digest, Error, Expected, Key, Mode, Sha256, StagedWrite, async_trait};
use tokio::task::JoinSet;

use crate::backend::{DIGEST_METADATA, Inner};
use crate::liveness::Owner;
use crate::parts::PartSizes;
use crate::uploads::{Marker, marker_path};
use crate::{claims, digests, errors, resume};

pub(crate) struct ObjectStaged {
    inner: Arc<Inner>,
    key: Key,
    path: Path,
    hint: Option<Sha256>,
    /// The object's `Content-Type`, sent with the PUT or when the multipart upload starts.
    content_type: String,
    /// The size of each part (see `parts`).
    sizes: PartSizes,
    /// Bytes written so far.
    written: u64,
    buf: BytesMut,
    upload: Option<Upload>,
    /// Begun by `stage_resumable`: the upload starts with the first byte, and
    /// [`StagedWrite::checkpoint`] hands out tokens (see `resume`).
    resumable: bool,
    /// A token names this upload (handed out, or resumed from): it is the caller's, so it is
    /// kept when the handle is dropped or a part fails, and removed only by publish, `abort`
    /// or the caller's `discard_resumable`.
    kept: bool,
}

struct Upload {
    /// The store the upload runs in (`inner.multipart`, which is `Some` for every backend that
    /// starts uploads).
    multipart: Arc<dyn MultipartStore>,
    id: String,
    marker: Path,
    parts: Vec<Option<PartId>>,
    tasks: JoinSet<(usize, object_store::Result<PartId>)>,
}

/// Times a write refused with 409 ConditionalRequestConflict is tried again.
const CONFLICT_RETRIES: u32 = 6;

/// S3's 409 ConditionalRequestConflict: another conditional write on the key is in flight. Not
/// an answer about the key; retried with backoff (see `faults`).
pub(crate) fn is_conflicting_operation(e: &object_store::Error) -> bool {
    crate::faults::find(e).is_some_and(crate::faults::Fault::is_conflicting_operation)
}

/// The refusal of an object larger than the server accepts.
pub(crate) fn too_large(inner: &Inner, key: &Key, size: u64) -> Error {
    Error::Unsupported {
        operation: format!(
            "objects over backend.max_object_size = {} bytes ({key:?} has {size}); raise it if the server accepts more",
            inner.max_object_size
        ),
        backend: inner.location.clone(),
    }
}

/// Refuses up front, before any request, an object whose declared size is over the limit.
pub(crate) fn size_allowed(inner: &Inner, key: &Key, expected: &Expected) -> Result<(), Error> {
    match expected.size.filter(|&size| size > inner.max_object_size) {
        Some(size) => Err(too_large(inner, key, size)),
        None => Ok(()),
    }
}

/// The object's attributes: its content type, and its digest where known.
fn attributes(content_type: &str, sha256: Option<&Sha256>) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, content_type.to_owned().into());
    if let Some(sha256) = sha256 {
        attributes.insert(Attribute::Metadata(DIGEST_METADATA.into()), sha256.to_string().into());
    }
    attributes
}

/// Records (or rewrites) the marker of upload `upload_id` of `path`, naming this process as
/// its writer (see `uploads`); returns where it is.
pub(crate) async fn mark(inner: &Inner, path: &Path, upload_id: &str) -> object_store::Result<Path> {
    let marker = marker_path(&inner.staging_dir(), upload_id);
    let body = Marker { key: path.to_string(), upload_id: upload_id.to_owned(), owner: Owner::me() };
    // A derived record of strings and integers always serializes.
    let body = serde_json::to_vec(&body).expect("marker serializes");
    inner.store.put(&marker, PutPayload::from(body)).await?;
    Ok(marker)
}

impl ObjectStaged {
    pub(crate) fn new(inner: Arc<Inner>, key: Key, expected: &Expected, content_type: String) -> Self {
        let path = inner.path(&key);
        let sizes = PartSizes::new(inner.part_size as u64, expected.size);
        let hint = expected.sha256;
        Self {
            inner,
            key,
            path,
            hint,
            content_type,
            sizes,
            written: 0,
            buf: BytesMut::new(),
            upload: None,
            resumable: false,
            kept: false,
        }
    }

    /// A resumable write (see `resume`): the upload starts with the first byte, and
    /// [`StagedWrite::checkpoint`] hands out tokens.
    pub(crate) fn resumable(inner: Arc<Inner>, key: Key, expected: &Expected, content_type: String) -> Self {
        let mut staged = Self::new(inner, key, expected, content_type);
        staged.resumable = true;
        staged
    }

    /// A resumable write going on with the upload `token` names, in `multipart`, whose marker
    /// (at `marker`) names this writer: it holds the token's parts and takes the next byte.
    pub(crate) fn going_on(
        inner: Arc<Inner>,
        key: Key,
        expected: &Expected,
        token: resume::Token,
        multipart: Arc<dyn MultipartStore>,
        marker: Path,
    ) -> Self {
        let mut staged = Self::resumable(inner, key, expected, token.content_type);
        let parts = token.parts.into_iter().map(|content_id| Some(PartId { content_id })).collect();
        staged.sizes = token.sizes;
        staged.hint = token.hint.as_deref().and_then(|h| h.parse::<Sha256>().ok());
        staged.written = token.offset;
        staged.upload = Some(Upload { multipart, id: token.upload_id, marker, parts, tasks: JoinSet::new() });
        staged.kept = true;
        staged
    }

    /// Bytes written so far (a write gone on with counts the token's).
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    fn err(&self, err: object_store::Error, what: &str) -> Error {
        errors::map(err, self.inner.kind, self.key.as_str(), what)
    }

    /// Starts the multipart upload in `multipart` and records its marker.
    async fn start_upload(&mut self, multipart: Arc<dyn MultipartStore>) -> Result<(), Error> {
        let attributes = attributes(&self.content_type, self.hint.as_ref());
        let opts = PutMultipartOptions { attributes, ..Default::default() };
        let id = multipart
            .create_multipart_opts(&self.path, opts)
            .await
            .map_err(|e| self.err(e, "starting a multipart upload for"))?;
        let marker = match mark(&self.inner, &self.path, &id).await {
            Ok(marker) => marker,
            Err(e) => {
                let _ = multipart.abort_multipart(&self.path, &id).await;
                return Err(self.err(e, "recording the staging marker for"));
            }
        };
        tracing::debug!(key = %self.key, upload_id = %id, "multipart upload started");
        self.upload = Some(Upload { multipart, id, marker, parts: Vec::new(), tasks: JoinSet::new() });
        Ok(())
    }

    /// Uploads `part` as the next part. At most `upload_concurrency` parts are in memory at
    /// once: those uploading plus the one filling (at least one of each).
    async fn send_part(&mut self, part: Bytes) -> Result<(), Error> {
        let concurrency = self.inner.concurrency.saturating_sub(1).max(1);
        let path = self.path.clone();
        // Only called once `start_upload` set the upload (from `fill`, and from
        // `publish_multipart`, which `publish` calls only with an upload).
        let upload = self.upload.as_mut().expect("an upload in progress");
        let multipart = Arc::clone(&upload.multipart);
        while upload.tasks.len() >= concurrency {
            Self::settle_one(upload)
                .await
                .map_err(|e| errors::map(e, self.inner.kind, self.key.as_str(), "uploading a part of"))?;
        }
        let idx = upload.parts.len();
        upload.parts.push(None);
        let id = upload.id.clone();
        upload.tasks.spawn(async move { (idx, multipart.put_part(&path, &id, idx, PutPayload::from(part)).await) });
        Ok(())
    }

    async fn settle_one(upload: &mut Upload) -> object_store::Result<()> {
        match upload.tasks.join_next().await {
            Some(Ok((idx, Ok(part)))) => {
                upload.parts[idx] = Some(part);
                Ok(())
            }
            Some(Ok((_, Err(e)))) => Err(e),
            Some(Err(join)) => Err(object_store::Error::Generic { store: "promote", source: Box::new(join) }),
            None => Ok(()),
        }
    }

    /// Aborts the upload (if any) and removes its marker.
    async fn discard_upload(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            upload.tasks.abort_all();
            self.inner.conditions.clear(&upload.id);
            let _ = upload.multipart.abort_multipart(&self.path, &upload.id).await;
            let _ = self.inner.store.delete(&upload.marker).await;
        }
    }

    async fn publish_single(&mut self, mode: &Mode, digest: &Digest) -> Result<Option<String>, Error> {
        let put_mode = match mode {
            Mode::Create => PutMode::Create,
            Mode::Replace => PutMode::Overwrite,
            Mode::ReplaceIfVersion(v) => PutMode::Update(UpdateVersion { e_tag: Some(v.clone()), version: None }),
        };
        let opts = PutOptions {
            mode: put_mode,
            attributes: attributes(&self.content_type, Some(&digest.sha256)),
            ..Default::default()
        };
        let payload = PutPayload::from(std::mem::take(&mut self.buf).freeze());
        let mut attempt = 0;
        // Bounded by `CONFLICT_RETRIES`; each request by the client's timeouts.
        loop {
            match self.inner.store.put_opts(&self.path, payload.clone(), opts.clone()).await {
                Ok(result) => return Ok(result.e_tag),
                Err(e) if is_conflicting_operation(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(self.refused(e, mode, "publishing")),
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
    }

    async fn publish_multipart(&mut self, mode: &Mode) -> Result<Option<String>, Error> {
        if !self.buf.is_empty() || self.upload.as_ref().is_some_and(|u| u.parts.is_empty()) {
            let last = std::mem::take(&mut self.buf).freeze();
            self.send_part(last).await?;
        }
        // `publish` calls this only with an upload in progress.
        let upload = self.upload.as_mut().expect("an upload in progress");
        while !upload.tasks.is_empty() {
            Self::settle_one(upload)
                .await
                .map_err(|e| errors::map(e, self.inner.kind, self.key.as_str(), "uploading a part of"))?;
        }
        // Every task was joined above, and `settle_one` filled its slot or returned the error.
        let parts: Vec<PartId> = upload.parts.iter().map(|p| p.clone().expect("every part settled")).collect();
        match mode {
            Mode::Create => {
                self.inner.conditions.set(&upload.id, http::header::IF_NONE_MATCH, http::HeaderValue::from_static("*"))
            }
            Mode::ReplaceIfVersion(v) => {
                let value = http::HeaderValue::from_str(v).map_err(|_| Error::InvalidKey {
                    key: self.key.to_string(),
                    reason: format!("{v:?} is not a valid version (ETag)"),
                })?;
                self.inner.conditions.set(&upload.id, http::header::IF_MATCH, value);
            }
            Mode::Replace => {}
        }
        let (id, marker, multipart) = (upload.id.clone(), upload.marker.clone(), Arc::clone(&upload.multipart));
        // One conditional completer at a time per key (see `claims`): held, renewed in the
        // background, and fenced right before the completion request. Dropping this future
        // (cancellation) drops the claim, which releases it in the background.
        let claim = match mode {
            Mode::Replace => None,
            _ => match claims::acquire(&self.inner, &self.key, mode).await {
                Ok(claim) => Some(claim),
                Err(err) => {
                    self.discard_upload().await;
                    return Err(err);
                }
            },
        };
        let completed = claims::fenced(claim.as_ref(), || async {
            let mut attempt = 0;
            // Bounded by `CONFLICT_RETRIES`; each request by the client's timeouts.
            loop {
                match multipart.complete_multipart(&self.path, &id, parts.clone()).await {
                    Err(e) if is_conflicting_operation(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
                    done => return done,
                }
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        })
        .await;
        self.inner.conditions.clear(&id);
        // Removes the claim only if it is still ours (a lost one belongs to its taker).
        if let Some(claim) = claim
            && let Err(e) = claim.release().await
        {
            tracing::warn!(key = %self.key, error = %e, "could not release a claim; it expires on its own");
        }
        let completed = match completed {
            Ok(completed) => completed,
            Err(lost) => {
                // The claim is not ours any more (or could not be proven ours): never complete.
                tracing::warn!(key = %self.key, error = %lost, "completion claim lost; aborting the upload");
                self.discard_upload().await;
                return Err(lost);
            }
        };
        let e = match completed {
            Ok(result) => {
                self.upload = None;
                let _ = self.inner.store.delete(&marker).await;
                return Ok(result.e_tag);
            }
            Err(e) => e,
        };
        // A retried completion whose first attempt went through, its answer lost (see
        // `completion`): the upload is gone (404), or the key no longer meets the condition (412)
        // because of that first attempt. The key holding exactly this upload's parts says so; the
        // upload is then discarded as any other (already gone once completed).
        let answer_lost = matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
        );
        if answer_lost
            && let Some(etag) =
                crate::completion::completed_earlier(self.inner.store.as_ref(), &self.path, &parts).await
        {
            tracing::info!(key = %self.key, "the completion's answer was lost; the key holds this upload");
            self.discard_upload().await;
            return Ok(Some(etag));
        }
        let err = self.refused(e, mode, "completing the multipart upload of");
        self.discard_upload().await;
        Err(err)
    }

    /// Buffers `data`; starts the multipart upload past the threshold, then sends each full
    /// part. Every part gets its own allocation of exactly its size (see `parts`), so a part in
    /// flight pins no more memory than its own bytes.
    async fn append(&mut self, data: &[u8]) -> Result<(), Error> {
        self.written += data.len() as u64;
        if self.written > self.inner.max_object_size {
            return Err(too_large(&self.inner, &self.key, self.written));
        }
        if self.upload.is_none() {
            self.buf.extend_from_slice(data);
            let Some(multipart) = &self.inner.multipart else { return Ok(()) };
            if self.buf.len() as u64 <= self.inner.threshold && !self.resumable {
                return Ok(());
            }
            let multipart = Arc::clone(multipart);
            self.start_upload(multipart).await?;
            let pending = std::mem::take(&mut self.buf);
            return self.fill(&pending).await;
        }
        self.fill(data).await
    }

    /// Appends `data` to the part being filled, sending each part once it is full.
    async fn fill(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let sent = self.upload.as_ref().map_or(0, |u| u.parts.len());
            let part_size = self.sizes.of(sent);
            if self.buf.capacity() == 0 {
                self.buf.reserve(part_size);
            }
            let take = (part_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == part_size {
                let part = std::mem::take(&mut self.buf).freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    /// Maps a refused conditional write to what core expects.
    fn refused(&self, e: object_store::Error, mode: &Mode, what: &str) -> Error {
        let key = self.key.to_string();
        match (e, mode) {
            (object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }, Mode::Create) => {
                Error::AlreadyExists { key }
            }
            (
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
                Mode::ReplaceIfVersion(v),
            ) => Error::VersionMismatch { key, expected: v.clone() },
            (e, _) => self.err(e, what),
        }
    }
}

#[async_trait]
impl StagedWrite for ObjectStaged {
    async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        let result = self.append(&chunk).await;
        promote_core::kit::buffers::recycle(chunk);
        if result.is_err() && !self.kept {
            self.discard_upload().await;
        }
        result
    }

    fn part_end(&self) -> Option<u64> {
        let sent = self.upload.as_ref().map_or(0, |u| u.parts.len());
        let start = self.written - self.buf.len() as u64;
        self.resumable.then(|| start + self.sizes.of(sent) as u64)
    }

    async fn checkpoint(&mut self) -> Result<(u64, String), Error> {
        if !self.resumable {
            return Err(Error::Unsupported {
                operation: "checkpoints of a staged write not begun as resumable".into(),
                backend: self.inner.location.clone(),
            });
        }
        if self.upload.is_none() {
            // Only `None` without a multipart store, which `stage_resumable` refuses.
            let multipart = self.inner.multipart.clone().expect("a resumable write has a multipart store");
            self.start_upload(multipart).await?;
        }
        let upload = self.upload.as_mut().expect("started above");
        while !upload.tasks.is_empty() {
            if let Err(e) = Self::settle_one(upload).await {
                return Err(errors::map(e, self.inner.kind, self.key.as_str(), "uploading a part of"));
            }
        }
        let token = resume::Token {
            upload_id: upload.id.clone(),
            // Every task was joined above, and `settle_one` filled its slot or returned the error.
            parts: upload.parts.iter().map(|p| p.clone().expect("every part settled").content_id).collect(),
            offset: self.written - self.buf.len() as u64,
            sizes: self.sizes,
            hint: self.hint.map(|h| h.to_string()),
            content_type: self.content_type.clone(),
        };
        self.kept = true;
        Ok((token.offset, token.encode()))
    }

    async fn publish(mut self: Box<Self>, mode: &Mode, digest: &Digest) -> Result<Option<String>, Error> {
        if self.upload.is_none() {
            return self.publish_single(mode, digest).await;
        }
        // The upload's metadata holds the digest only when it was known up front.
        let in_metadata = self.hint == Some(digest.sha256);
        let version = self.publish_multipart(mode).await?;
        if !in_metadata {
            digests::record(&self.inner, &self.key, version.as_deref(), &digest.sha256).await;
        }
        Ok(version)
    }

    async fn abort(mut self: Box<Self>) -> Result<(), Error> {
        self.discard_upload().await;
        Ok(())
    }
}

impl Drop for ObjectStaged {
    fn drop(&mut self) {
        if self.kept {
            // A checkpoint's token names the upload: it is the caller's to go on from. (Its
            // parts in flight are cancelled as the upload's tasks drop.)
            self.upload = None;
            return;
        }
        let Some(mut upload) = self.upload.take() else { return };
        upload.tasks.abort_all();
        let (inner, path) = (Arc::clone(&self.inner), self.path.clone());
        // Best effort: abort in the background (an exiting CLI waits for it, see
        // `promote_core::kit::cleanup`); `promote recover` finds what this misses.
        promote_core::kit::cleanup::spawn(async move {
            inner.conditions.clear(&upload.id);
            let _ = upload.multipart.abort_multipart(&path, &upload.id).await;
            let _ = inner.store.delete(&upload.marker).await;
        });
    }
}
