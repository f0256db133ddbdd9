//! The backend's control objects (claims) under `.promote/`, for [`promote_core::kit::claims`].
//!
//! Only for allowlisted services with both conditional create and compare-and-swap writes.
//! - **create**: a write with `if_not_exists`; **replace**: a write with `if_match: <etag>`.
//! - **read**: the object's ETag, `Last-Modified` and body from one `stat` (every write carries
//!   the body in a metadata entry too, see [`promote_core::kit::control_metadata`], so no read opens
//!   a body that a concurrent removal could leave locked on the server), and the server's clock
//!   from the newest response `Date` (see `clock`). A body too large for metadata is read with
//!   `if_match` on the stat's ETag, so body and tag belong together.
//! - **remove**: re-reads the tag and compares it, then deletes — conditionally (`If-Match`)
//!   where the service declares it (Azure, S3). A server that answers 501 NotImplemented to
//!   that header (LocalStack) gets plain deletes from then on: the window is the time between
//!   the re-read and the delete, as [`ControlStore::remove`] allows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use opendal::ErrorKind;
use opendal::options::{DeleteOptions, WriteOptions};
use promote_core::kit::claims::{ControlObject, ControlStore, Tag};
use promote_core::kit::control_metadata;
use promote_core::{Error, RESERVED_SEGMENT, async_trait};

use crate::backend::Inner;
use crate::errors;

/// Control objects of one backend.
#[derive(Debug)]
pub(crate) struct OpendalControl {
    inner: Arc<Inner>,
}

impl OpendalControl {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    fn err(&self, e: opendal::Error, name: &str, what: &str) -> Error {
        errors::map(e, &self.inner.scheme, &self.inner.control_path(name), what)
    }

    /// The user metadata that carries `body` (see [`control_metadata`]), when it fits and the
    /// service takes user metadata.
    fn carried(&self, body: &Bytes) -> Option<std::collections::HashMap<String, String>> {
        if !self.inner.capability.write_with_user_metadata {
            return None;
        }
        control_metadata::encode(body).map(|value| [(control_metadata::NAME.to_owned(), value)].into())
    }

    fn tag(&self, meta: &opendal::Metadata, name: &str) -> Result<Tag, Error> {
        meta.etag().map(|t| Tag(t.to_owned())).ok_or_else(|| Error::Backend {
            backend: format!("opendal {}", self.inner.scheme),
            context: format!("writing control object {name:?}: the service returned no ETag"),
            retryable: false,
            source: "no ETag".into(),
        })
    }

    async fn written_tag(&self, meta: opendal::Metadata, name: &str) -> Result<Tag, Error> {
        if meta.etag().is_some() {
            return self.tag(&meta, name);
        }
        let meta =
            self.inner.op.stat(&self.inner.control_path(name)).await.map_err(|e| self.err(e, name, "reading"))?;
        self.tag(&meta, name)
    }
}

#[async_trait]
impl ControlStore for OpendalControl {
    async fn create(&self, name: &str, body: Bytes) -> Result<Tag, Error> {
        let opts = WriteOptions { if_not_exists: true, user_metadata: self.carried(&body), ..WriteOptions::default() };
        match self.inner.op.write_options(&self.inner.control_path(name), body, opts).await {
            Ok(meta) => self.written_tag(meta, name).await,
            Err(e) if errors::taken(&e) => Err(Error::AlreadyExists { key: self.inner.control_path(name) }),
            Err(e) => Err(self.err(e, name, "creating")),
        }
    }

    async fn replace(&self, name: &str, body: Bytes, tag: &Tag) -> Result<Tag, Error> {
        let opts = WriteOptions {
            if_match: Some(tag.0.clone()),
            user_metadata: self.carried(&body),
            ..WriteOptions::default()
        };
        match self.inner.op.write_options(&self.inner.control_path(name), body, opts).await {
            Ok(meta) => self.written_tag(meta, name).await,
            Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::NotFound) => {
                Err(Error::VersionMismatch { key: self.inner.control_path(name), expected: tag.0.clone() })
            }
            Err(e) => Err(self.err(e, name, "replacing")),
        }
    }

    async fn read(&self, name: &str) -> Result<Option<ControlObject>, Error> {
        let path = self.inner.control_path(name);
        for _ in 0..4 {
            let meta = match self.inner.op.stat(&path).await {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.err(e, name, "reading")),
            };
            let tag = self.tag(&meta, name)?;
            let inline = meta.user_metadata().and_then(|m| m.get(control_metadata::NAME));
            let body = match inline {
                Some(value) => control_metadata::decode(value),
                None => match self.inner.op.read_with(&path).if_match(&tag.0).await {
                    Ok(body) => body.to_bytes(),
                    // Replaced or removed since the stat: look again.
                    Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::NotFound) => continue,
                    Err(e) => return Err(self.err(e, name, "reading")),
                },
            };
            let server_now = self.inner.clock.now();
            let modified = meta.last_modified().map(Into::into).ok_or_else(|| Error::Backend {
                backend: format!("opendal {}", self.inner.scheme),
                context: format!("reading control object {path:?}: the service returned no Last-Modified"),
                retryable: false,
                source: "no Last-Modified".into(),
            })?;
            return Ok(Some(ControlObject { body, tag, modified, server_now: server_now.max(modified) }));
        }
        Err(Error::Backend {
            backend: format!("opendal {}", self.inner.scheme),
            context: format!("reading control object {path:?}: it kept changing while read; retry"),
            retryable: true,
            source: "control object changing".into(),
        })
    }

    async fn remove(&self, name: &str, tag: &Tag) -> Result<(), Error> {
        let path = self.inner.control_path(name);
        match self.inner.op.stat(&path).await {
            Ok(meta) if meta.etag() == Some(tag.0.as_str()) => {}
            Ok(_) => return Err(Error::VersionMismatch { key: path, expected: tag.0.clone() }),
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(Error::NotFound { key: path }),
            Err(e) => return Err(self.err(e, name, "removing")),
        }
        let mut opts = DeleteOptions::default();
        if self.inner.conditional_delete.load(Ordering::Acquire) {
            opts.if_match = Some(tag.0.clone());
        }
        let conditional = opts.if_match.is_some();
        match self.inner.op.delete_options(&path, opts).await {
            Ok(()) => Ok(()),
            Err(e) if conditional && errors::not_implemented(&e) => {
                tracing::debug!(scheme = %self.inner.scheme, "the server refuses If-Match on DELETE; deleting after the re-read");
                self.inner.conditional_delete.store(false, Ordering::Release);
                self.inner.op.delete(&path).await.map_err(|e| self.err(e, name, "removing"))
            }
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {
                Err(Error::VersionMismatch { key: path, expected: tag.0.clone() })
            }
            Err(e) => Err(self.err(e, name, "removing")),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let base = format!("{RESERVED_SEGMENT}/");
        let dir = match prefix.rsplit_once('/') {
            Some((d, _)) => format!("{base}{d}/"),
            None => base.clone(),
        };
        let entries = match self.inner.op.list_with(&dir).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e, prefix, "listing")),
        };
        let mut names: Vec<String> = entries
            .iter()
            .filter(|e| e.metadata().is_file())
            .filter_map(|e| e.path().trim_start_matches('/').strip_prefix(&base).map(str::to_owned))
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }
}
