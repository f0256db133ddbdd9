//! [`OpendalBackend`]: an OpenDAL operator behind promote's `Backend` contract.
//!
//! This file opens the operator and answers `head`, `read`, `delete`, `list` and the sweep;
//! staging and publishing are in `staged`, control objects (claims) in `control`, the doctor's
//! live checks in `probe`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer, TracingLayer};
use opendal::{HttpTransporter, Operator};
use promote_core::kit::claims::{CLAIMS_PREFIX, ControlStore};
use promote_core::{
    Backend, ByteStream, Capabilities, Entry, Error, Expected, Key, Leftover, Meta, PutOptions, RESERVED_SEGMENT,
    StagedWrite, async_trait,
};

use crate::clock::{DateTransport, ServerClock};
use crate::config::OpendalConfig;
use crate::control::OpendalControl;
use crate::services::{self, Atomic};
use crate::staged::OpendalStaged;
use crate::staging::{self, Area};
use crate::{errors, probe};

/// User metadata under which an object's SHA-256 is stored (letters and digits only, so every
/// service accepts the name: Azure wants C# identifiers, S3 lower-case header names).
pub(crate) const DIGEST_METADATA: &str = "promotesha256";

/// A backend over any OpenDAL service. Create-only only where [`services::ATOMIC`] says the
/// service's conditional write is atomic; see the crate docs.
#[derive(Clone, Debug)]
pub struct OpendalBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) op: Operator,
    pub(crate) scheme: String,
    pub(crate) location: String,
    pub(crate) atomic: Option<&'static Atomic>,
    pub(crate) capability: opendal::Capability,
    pub(crate) threshold: u64,
    pub(crate) part_size: usize,
    pub(crate) concurrency: usize,
    pub(crate) area: Area,
    pub(crate) clock: ServerClock,
    /// Whether deletes of control objects carry `If-Match`: the service declares it, until the
    /// server answers 501 NotImplemented (LocalStack), after which plain deletes are sent.
    pub(crate) conditional_delete: AtomicBool,
}

/// The services compiled into this build.
pub fn compiled_services() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "services-memory") {
        out.push("memory");
    }
    if cfg!(feature = "services-fs") {
        out.push("fs");
    }
    if cfg!(feature = "services-s3") {
        out.push("s3");
    }
    if cfg!(feature = "services-azblob") {
        out.push("azblob");
    }
    if cfg!(feature = "services-gcs") {
        out.push("gcs");
    }
    out
}

impl Inner {
    /// The object path of `key` (verbatim under the service's root).
    pub(crate) fn path(&self, key: &Key) -> String {
        key.as_str().to_owned()
    }

    /// The object path of a control object.
    pub(crate) fn control_path(&self, name: &str) -> String {
        format!("{RESERVED_SEGMENT}/{}", name.trim_matches('/'))
    }

    pub(crate) fn err(&self, e: opendal::Error, key: &str, what: &str) -> Error {
        errors::map(e, &self.scheme, key, what)
    }

    /// Whether create-only is offered, and if not, why.
    pub(crate) fn create_refused(&self) -> Option<String> {
        match self.atomic {
            Some(_) if self.capability.write_with_if_not_exists => None,
            Some(_) => Some(format!("the OpenDAL service {:?} declares no conditional create", self.scheme)),
            None => Some(services::refusal(&self.scheme)),
        }
    }

    /// Whether the service has what claims need: atomic create and compare-and-swap.
    pub(crate) fn has_control(&self) -> bool {
        self.atomic.is_some() && self.capability.write_with_if_not_exists && self.capability.write_with_if_match
    }
}

impl OpendalBackend {
    /// Opens `config.scheme` with `config.options`, wrapped in the configured layers. Sends no
    /// request.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unknown or not compiled-in scheme, or options OpenDAL rejects.
    pub fn open(config: &OpendalConfig) -> Result<Self, Error> {
        config.validate()?;
        opendal::init_default_registry();
        let scheme = config.scheme.trim().to_owned();
        if !compiled_services().contains(&scheme.as_str()) {
            return Err(Error::config(format!(
                "backend.scheme = {scheme:?} is not an OpenDAL service compiled into this build (compiled in: {}); \
                 rebuild promote with the promote-opendal feature \"services-{scheme}\"",
                compiled_services().join(", ")
            )));
        }
        let op = Operator::via_iter(&scheme, config.options.clone())
            .map_err(|e| Error::config(format!("backend.options for the OpenDAL service {scheme:?}: {e}")))?;
        let clock = ServerClock::default();
        let ctx = op.context().with_http_transport(HttpTransporter::new(DateTransport::new(clock.clone())));
        let layers = &config.layers;
        let mut op = op
            .with_context(ctx)
            .layer(TimeoutLayer::new().with_timeout(layers.timeout).with_io_timeout(layers.io_timeout));
        if layers.retry_max_times > 0 {
            op = op.layer(RetryLayer::new().with_max_times(layers.retry_max_times).with_jitter());
        }
        if layers.concurrent_limit > 0 {
            op = op.layer(ConcurrentLimitLayer::new(layers.concurrent_limit));
        }
        if layers.tracing {
            op = op.layer(TracingLayer::default());
        }
        let info = op.info();
        let mut location = format!("opendal:{scheme}://{}{}", info.name(), info.root());
        if let Some(endpoint) = config.options.get("endpoint") {
            location.push_str(&format!(" at {endpoint}"));
        }
        // Each in-memory service is its own storage: give it its own staging area.
        let area_name = if scheme == "memory" {
            format!("{location} {}", promote_core::kit::Owner::me().nonce)
        } else {
            location.clone()
        };
        let staging_root = config.staging_dir.clone().unwrap_or_else(std::env::temp_dir);
        let inner = Inner {
            capability: info.capability(),
            atomic: services::atomic(&scheme),
            op,
            scheme,
            location,
            threshold: config.multipart_threshold,
            part_size: usize::try_from(config.part_size).unwrap_or(usize::MAX),
            concurrency: config.upload_concurrency,
            area: Area::new(&staging_root, &area_name),
            clock,
            conditional_delete: AtomicBool::new(info.capability().delete_with_if_match),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The OpenDAL operator underneath (layers included).
    pub fn operator(&self) -> &Operator {
        &self.inner.op
    }

    /// The OpenDAL scheme.
    pub fn scheme(&self) -> &str {
        &self.inner.scheme
    }
}

#[async_trait]
impl Backend for OpendalBackend {
    fn kind(&self) -> &'static str {
        "opendal"
    }

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let cap = &self.inner.capability;
        let trusted = self.inner.atomic.is_some();
        Capabilities {
            create_refused: self.inner.create_refused(),
            // A plain write replaces atomically: object stores swap the whole object, OpenDAL's
            // fs writes a temporary file and renames it over the old one.
            replace: cap.write,
            replace_if_version: trusted && cap.write_with_if_match,
            stored_digest: cap.write_with_user_metadata,
            durable: !matches!(self.inner.scheme.as_str(), "memory" | "fs"),
            staging_outlives_writer: true,
        }
    }

    async fn stage(&self, key: &Key, expected: &Expected) -> Result<Box<dyn StagedWrite>, Error> {
        self.stage_with(key, expected, &PutOptions::default()).await
    }

    async fn stage_with(
        &self,
        key: &Key,
        _expected: &Expected,
        options: &PutOptions,
    ) -> Result<Box<dyn StagedWrite>, Error> {
        let content_type = options.content_type_for(key);
        Ok(Box::new(OpendalStaged::new(Arc::clone(&self.inner), key.clone(), content_type)))
    }

    /// Takes a complete file larger than `multipart_threshold` on the staging area's filesystem
    /// as a large object's staging file (a rename), so a download run's partial is not copied
    /// into staging before its upload. Smaller files are declined: their copy is held in memory
    /// and sent in one request, with no local write.
    async fn adopt(
        &self,
        key: &Key,
        path: &Path,
        file: std::fs::File,
        size: u64,
    ) -> Result<Option<Box<dyn StagedWrite>>, Error> {
        let whole = file.metadata().is_ok_and(|m| m.is_file() && m.len() == size);
        if size <= self.inner.threshold || !whole {
            return Ok(None);
        }
        let Some(dir) = self.inner.area.adopt(path)? else {
            return Ok(None);
        };
        let content_type = PutOptions::default().content_type_for(key);
        Ok(Some(Box::new(OpendalStaged::adopted(Arc::clone(&self.inner), key.clone(), content_type, dir, file))))
    }

    async fn head(&self, key: &Key) -> Result<Meta, Error> {
        let meta = self
            .inner
            .op
            .stat(&self.inner.path(key))
            .await
            .map_err(|e| self.inner.err(e, key.as_str(), "reading metadata of"))?;
        if meta.is_dir() {
            return Err(Error::NotFound { key: key.to_string() });
        }
        let sha256 = meta.user_metadata().and_then(|m| m.get(DIGEST_METADATA)).and_then(|v| v.parse().ok());
        Ok(Meta {
            size: meta.content_length(),
            sha256,
            version: meta.etag().map(str::to_owned),
            modified: meta.last_modified().map(Into::into),
            changed_since_promotion: false,
            content_type: meta.content_type().map(str::to_owned),
        })
    }

    async fn read(&self, key: &Key) -> Result<ByteStream, Error> {
        self.head(key).await?;
        let path = self.inner.path(key);
        let reader = self.inner.op.reader(&path).await.map_err(|e| self.inner.err(e, key.as_str(), "reading"))?;
        let stream = reader.into_bytes_stream(..).await.map_err(|e| self.inner.err(e, key.as_str(), "reading"))?;
        let key = key.to_string();
        Ok(stream.map_err(move |e| Error::io(format!("reading {key:?}"), e)).boxed())
    }

    async fn delete(&self, key: &Key) -> Result<(), Error> {
        self.head(key).await?;
        self.inner.op.delete(&self.inner.path(key)).await.map_err(|e| self.inner.err(e, key.as_str(), "removing"))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        // List the prefix's directory recursively, then filter by the plain string prefix.
        let dir = prefix.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
        if dir.contains("//") {
            return Ok(Vec::new());
        }
        let entries = match self.inner.op.list_with(&dir).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.inner.err(e, prefix, "listing")),
        };
        let local = matches!(self.inner.scheme.as_str(), "memory" | "fs");
        let mut out = Vec::new();
        for entry in entries {
            let name = entry.path().trim_start_matches('/');
            if !entry.metadata().is_file()
                || !name.starts_with(prefix)
                || name.split('/').any(|s| s == RESERVED_SEGMENT)
            {
                continue;
            }
            let Ok(key) = Key::new(name) else { continue };
            let size = if local {
                // Local services list names only; their stat is a local call.
                match self.inner.op.stat(name).await {
                    Ok(meta) => meta.content_length(),
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
                    Err(e) => return Err(self.inner.err(e, name, "listing")),
                }
            } else {
                entry.metadata().content_length()
            };
            out.push(Entry { key, size });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn sweep_staging(&self, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
        let mut found = staging::sweep(&self.inner.area, older_than, dry_run)?;
        if let Some(control) = self.control() {
            found.extend(promote_core::kit::Claims::new(control).sweep(CLAIMS_PREFIX, older_than, dry_run).await?);
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    fn control(&self) -> Option<Arc<dyn ControlStore>> {
        self.inner
            .has_control()
            .then(|| Arc::new(OpendalControl::new(Arc::clone(&self.inner))) as Arc<dyn ControlStore>)
    }

    async fn self_check(&self) -> Vec<promote_core::Check> {
        probe::checks(&self.inner).await
    }
}
