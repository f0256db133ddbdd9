//! [`ObjectStoreBackend`]: the `Backend` trait over an object_store store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::client::{ClientOptions, HttpClient, HttpConnector, ReqwestConnector};
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use promote_core::kit::claims::ControlStore;
use promote_core::{
    Backend, ByteStream, Capabilities, Entry, Error, Expected, Key, Leftover, Meta, Mode, PutOptions, RESERVED_SEGMENT,
    StagedWrite, async_trait,
};

use crate::conditional::{ConditionalConnector, Conditions};
use crate::config::{ConditionalWrites, S3Config};
use crate::control::ObjectControl;
use crate::staged::ObjectStaged;
use crate::uploads::{self, Marker};
use crate::{digests, errors, missing, probe};

/// The user-metadata name the SHA-256 is stored under (`x-amz-meta-promote-sha256` on S3).
pub(crate) const DIGEST_METADATA: &str = "promote-sha256";

/// Objects in an object store: S3 and S3-compatible servers, or memory. See the crate docs.
#[derive(Clone, Debug)]
pub struct ObjectStoreBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) kind: &'static str,
    pub(crate) location: String,
    pub(crate) store: Arc<dyn ObjectStore>,
    /// `None`: never multipart (memory, whose multipart completion cannot be conditional).
    pub(crate) multipart: Option<Arc<dyn MultipartStore>>,
    pub(crate) signer: Option<Arc<dyn Signer>>,
    pub(crate) http: Option<HttpClient>,
    pub(crate) conditions: Conditions,
    /// Key prefix, without a trailing `/` (empty: the bucket root).
    pub(crate) prefix: String,
    pub(crate) threshold: u64,
    pub(crate) part_size: usize,
    pub(crate) concurrency: usize,
    /// The server answered 501 to `If-Match` on DELETE (see `control`).
    pub(crate) delete_ignores_if_match: AtomicBool,
    /// The bucket answered once, so a HEAD's 404 means a missing key (see `missing`).
    pub(crate) bucket_seen: AtomicBool,
    /// Largest object the server accepts (S3: 5 TiB); a larger known size is refused up front.
    pub(crate) max_object_size: u64,
    /// How create-only is decided (`Probe`: by `probe`, on the first create-only publish).
    pub(crate) conditional_writes: ConditionalWrites,
    /// What the create-only probe found, once it ran (once per process).
    pub(crate) probe: tokio::sync::OnceCell<probe::Report>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("kind", &self.kind).field("location", &self.location).finish_non_exhaustive()
    }
}

/// The object path of `name` exactly as written: every path promote uses (keys, listing
/// prefixes, markers, claims, probes) goes through here, so nothing is percent-encoded on one
/// side and verbatim on the other (object_store's `Path::from` would encode `~ # % [ ] { } ^ |`;
/// its listings return keys verbatim). `name` is a valid key, or a reserved path under the
/// configured prefix, which [`S3Config::validate`] checked with the key rules.
pub(crate) fn verbatim(name: &str) -> Path {
    Path::parse(name).unwrap_or_else(|e| unreachable!("{name:?} is built from validated keys: {e}"))
}

impl Inner {
    /// Why create-only is refused, as far as known: before the probe ran, nothing is known and
    /// `ready_for` runs it before the first create-only publish.
    fn create_refused(&self) -> Option<String> {
        match self.conditional_writes {
            ConditionalWrites::Trust => None,
            ConditionalWrites::Off => Some("backend.conditional_writes = \"off\"".into()),
            ConditionalWrites::Probe => self.probe.get().and_then(probe::Report::refusal),
        }
    }

    /// Runs the create-only probe unless it already ran in this process.
    async fn probed(&self) -> Result<&probe::Report, Error> {
        self.probe
            .get_or_try_init(|| async {
                let report = probe::conditions(self).await?;
                if let Some(why) = report.refusal() {
                    tracing::warn!(location = %self.location, "create-only refused: {why}");
                }
                Ok(report)
            })
            .await
    }

    /// The store path of `key`: the key verbatim under the prefix (no percent-encoding, so
    /// other S3 tools see the same names).
    pub(crate) fn path(&self, key: &Key) -> Path {
        verbatim(&self.with_prefix(key.as_str()))
    }

    fn with_prefix(&self, rest: &str) -> String {
        if self.prefix.is_empty() { rest.to_owned() } else { format!("{}/{rest}", self.prefix) }
    }

    /// Where staging markers live.
    pub(crate) fn staging_dir(&self) -> String {
        self.with_prefix(&format!("{RESERVED_SEGMENT}/staging"))
    }

    /// Where control objects (claims) live (see `control`).
    pub(crate) fn control_dir(&self) -> String {
        self.with_prefix(RESERVED_SEGMENT)
    }

    /// Where digest sidecars live (see `digests`).
    pub(crate) fn digests_dir(&self) -> String {
        self.with_prefix(&format!("{RESERVED_SEGMENT}/digests"))
    }

    /// Every object under `dir`. object_store retries a listing request that fails, but not a
    /// response body that stalls or breaks halfway; a listing that broke on the connection (no
    /// answer, a body cut off or silent: no HTTP status to go by) is started over once. A failed
    /// status (a 503) was already retried by object_store and is not.
    pub(crate) async fn list_all(&self, dir: &Path) -> object_store::Result<Vec<object_store::ObjectMeta>> {
        match self.store.list(Some(dir)).try_collect().await {
            Err(e) if crate::faults::find(&e).is_none() && errors::is_retryable(&e) => {
                tracing::debug!(dir = %dir, error = %e, "a listing broke off; listing again");
                self.store.list(Some(dir)).try_collect().await
            }
            done => done,
        }
    }

    /// Where probes write.
    pub(crate) fn probe_dir(&self) -> String {
        self.with_prefix(&format!("{RESERVED_SEGMENT}/probe"))
    }
}

impl ObjectStoreBackend {
    /// An S3 (or S3-compatible) backend. Opening sends no request. With
    /// `conditional_writes = "probe"` (the default) the first create-only publish of the process
    /// (and `doctor`) first checks live, with a few small requests under
    /// `<prefix>/.promote/probe/`, that the server refuses a second create-only write, both as a
    /// single PUT and as a multipart completion; reads never write.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for unusable settings.
    pub async fn s3(config: &S3Config) -> Result<Self, Error> {
        config.validate()?;
        let mut secrets = config.secrets()?;
        let profile = crate::profile::AwsProfile::current()?;
        profile.fill(&mut secrets);
        config.check_credentials(&secrets)?;
        let allow_http = config.allows_http();
        let conditions = Conditions::default();
        // Every request is bounded three ways: connecting, each silence, and start to end.
        let client = ClientOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.connect_timeout)
            .with_read_timeout(config.read_timeout)
            .with_allow_http(allow_http);
        let retry =
            RetryConfig { max_retries: config.max_retries, retry_timeout: config.retry_timeout, ..Default::default() };
        let mut builder = AmazonS3Builder::from_env()
            .with_http_connector(ConditionalConnector { conditions: conditions.clone() })
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(client.clone())
            .with_retry(retry)
            .with_allow_http(allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted_style);
        // Settings given in the config win over the AWS_* environment.
        let given = [
            (AmazonS3ConfigKey::Bucket, &config.bucket),
            (AmazonS3ConfigKey::Endpoint, &config.endpoint),
            (AmazonS3ConfigKey::Region, &config.region),
            (AmazonS3ConfigKey::AccessKeyId, &secrets.access_key_id),
            (AmazonS3ConfigKey::SecretAccessKey, &secrets.secret_access_key),
            (AmazonS3ConfigKey::Token, &secrets.session_token),
        ];
        for (key, value) in given {
            if let Some(value) = value {
                builder = builder.with_config(key, value);
            }
        }
        // The AWS profile files last: below the configuration and the AWS_* variables.
        builder = profile.apply(builder);
        if config.checksum {
            builder = builder.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
        }
        let bucket = builder
            .get_config_value(&AmazonS3ConfigKey::Bucket)
            .ok_or_else(|| Error::config("backend.bucket is not set (nor AWS_BUCKET)"))?;
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let s3 = Arc::new(builder.build().map_err(|e| Error::config(format!("S3 settings: {e}")))?);
        let http =
            ReqwestConnector::default().connect(&client).map_err(|e| Error::config(format!("HTTP client: {e}")))?;
        let prefix = config.prefix.trim_matches('/').to_owned();
        let mut location = format!("s3://{bucket}/{prefix}");
        if let Some(endpoint) = endpoint {
            location.push_str(&format!(" at {endpoint}"));
        }
        let inner = Inner {
            kind: "s3",
            location,
            store: Arc::clone(&s3) as Arc<dyn ObjectStore>,
            multipart: Some(Arc::clone(&s3) as Arc<dyn MultipartStore>),
            signer: Some(s3 as Arc<dyn Signer>),
            http: Some(http),
            conditions,
            prefix,
            threshold: config.multipart_threshold,
            part_size: config.part_size as usize,
            concurrency: config.upload_concurrency,
            delete_ignores_if_match: AtomicBool::new(false),
            bucket_seen: AtomicBool::new(false),
            max_object_size: config.max_object_size,
            conditional_writes: config.conditional_writes,
            probe: tokio::sync::OnceCell::new(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// A fresh, empty in-memory backend.
    pub fn memory() -> Self {
        let store = Arc::new(InMemory::new());
        Self {
            inner: Arc::new(Inner {
                kind: "memory",
                location: "memory:".into(),
                store,
                multipart: None,
                signer: None,
                http: None,
                conditions: Conditions::default(),
                prefix: String::new(),
                threshold: u64::MAX,
                part_size: 8 << 20,
                concurrency: 1,
                delete_ignores_if_match: AtomicBool::new(false),
                bucket_seen: AtomicBool::new(false),
                max_object_size: u64::MAX,
                conditional_writes: ConditionalWrites::Trust,
                probe: tokio::sync::OnceCell::new(),
            }),
        }
    }

    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    fn err(&self, e: object_store::Error, key: &str, what: &str) -> Error {
        errors::map(e, self.inner.kind, key, what)
    }

    /// Every small bookkeeping object under `dir` (claims, markers): path, age and contents.
    async fn bookkeeping(&self, dir: String, what: &str) -> Result<Vec<(Path, Duration, bytes::Bytes)>, Error> {
        let dir = verbatim(&dir);
        let objects: Vec<_> = self.inner.list_all(&dir).await.map_err(|e| self.err(e, dir.as_ref(), what))?;
        let mut out = Vec::new();
        for object in objects {
            let age = SystemTime::now().duration_since(object.last_modified.into()).unwrap_or_default();
            let Ok(got) = self.inner.store.get(&object.location).await else { continue };
            let Ok(bytes) = got.bytes().await else { continue };
            out.push((object.location, age, bytes));
        }
        Ok(out)
    }

    /// Claims left by writers that died between claiming a key and releasing it: each removed
    /// only if unchanged since read, judged by the server's clock (see `promote_core::kit::claims`).
    async fn sweep_claims(&self, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
        let control = Arc::new(ObjectControl::new(Arc::clone(&self.inner)));
        promote_core::kit::Claims::new(control)
            .sweep(promote_core::kit::claims::CLAIMS_PREFIX, older_than, dry_run)
            .await
    }

    /// Staging markers by upload id, with their age.
    async fn markers(&self) -> Result<HashMap<String, (Path, Marker, Duration)>, Error> {
        let mut out = HashMap::new();
        for (path, age, bytes) in self.bookkeeping(self.inner.staging_dir(), "listing staging markers in").await? {
            match serde_json::from_slice::<Marker>(&bytes) {
                Ok(marker) => {
                    out.insert(marker.upload_id.clone(), (path, marker, age));
                }
                Err(_) => tracing::warn!(marker = %path, "unreadable staging marker"),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Backend for ObjectStoreBackend {
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            create_refused: self.inner.create_refused(),
            replace: true,
            replace_if_version: true,
            stored_digest: true,
            durable: self.inner.kind == "s3",
            staging_outlives_writer: self.inner.multipart.is_some(),
        }
    }

    async fn ready_for(&self, mode: &Mode) -> Result<(), Error> {
        if *mode == Mode::Create && self.inner.conditional_writes == ConditionalWrites::Probe {
            self.inner.probed().await?;
        }
        Ok(())
    }

    async fn stage(&self, key: &Key, expected: &Expected) -> Result<Box<dyn StagedWrite>, Error> {
        self.stage_with(key, expected, &PutOptions::default()).await
    }

    async fn stage_with(
        &self,
        key: &Key,
        expected: &Expected,
        options: &PutOptions,
    ) -> Result<Box<dyn StagedWrite>, Error> {
        crate::staged::size_allowed(&self.inner, key, expected)?;
        let content_type = options.content_type_for(key);
        Ok(Box::new(ObjectStaged::new(Arc::clone(&self.inner), key.clone(), expected, content_type)))
    }

    async fn stage_resumable(
        &self,
        key: &Key,
        expected: &Expected,
        options: &PutOptions,
        from: Option<&str>,
    ) -> Result<Option<Box<dyn StagedWrite>>, Error> {
        crate::staged::size_allowed(&self.inner, key, expected)?;
        let staged = crate::resume::stage(&self.inner, key, expected, options, from).await?;
        Ok(staged.map(|staged| Box::new(staged) as Box<dyn StagedWrite>))
    }

    async fn discard_resumable(&self, key: &Key, token: &str) -> Result<(), Error> {
        crate::resume::discard(&self.inner, key, token).await
    }

    async fn head(&self, key: &Key) -> Result<Meta, Error> {
        let path = self.inner.path(key);
        let got = match self.inner.store.get_opts(&path, GetOptions::new().with_head(true)).await {
            Ok(got) => got,
            Err(e) => return Err(missing::after_head(&self.inner, &path, e, key.as_str(), "reading metadata of").await),
        };
        self.inner.bucket_seen.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut sha256 =
            got.attributes.get(&Attribute::Metadata(DIGEST_METADATA.into())).and_then(|v| v.as_ref().parse().ok());
        if let (None, Some(etag), Some(_)) = (&sha256, &got.meta.e_tag, &self.inner.multipart) {
            sha256 = digests::lookup(&self.inner, key, etag).await;
        }
        Ok(Meta {
            size: got.meta.size,
            sha256,
            version: got.meta.e_tag,
            modified: Some(got.meta.last_modified.into()),
            changed_since_promotion: false,
            content_type: got.attributes.get(&Attribute::ContentType).map(|v| v.as_ref().to_owned()),
        })
    }

    async fn read(&self, key: &Key) -> Result<ByteStream, Error> {
        let path = self.inner.path(key);
        let got = self.inner.store.get(&path).await.map_err(|e| self.err(e, key.as_str(), "reading"))?;
        let (kind, key) = (self.inner.kind, key.to_string());
        Ok(got.into_stream().map_err(move |e| errors::map(e, kind, &key, "reading")).boxed())
    }

    async fn delete(&self, key: &Key) -> Result<(), Error> {
        self.head(key).await?;
        let path = self.inner.path(key);
        self.inner.store.delete(&path).await.map_err(|e| self.err(e, key.as_str(), "removing"))?;
        digests::forget(&self.inner, key).await;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        // object_store lists by whole segments: list the prefix's directory, filter by string.
        let dir = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        // A prefix that is no valid path (`a//`, `./`) matches no key.
        let Ok(dir_path) = Path::parse(self.inner.with_prefix(dir)) else { return Ok(Vec::new()) };
        let strip = if self.inner.prefix.is_empty() { String::new() } else { format!("{}/", self.inner.prefix) };
        let objects: Vec<_> = self.inner.list_all(&dir_path).await.map_err(|e| self.err(e, prefix, "listing"))?;
        let mut out = Vec::new();
        for object in objects {
            let Some(name) = object.location.as_ref().strip_prefix(&strip) else { continue };
            if !name.starts_with(prefix) || name.split('/').any(|s| s == RESERVED_SEGMENT) {
                continue;
            }
            if let Ok(key) = Key::new(name) {
                out.push(Entry { key, size: object.size });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn sweep_staging(&self, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
        let (Some(multipart), Some(signer), Some(http)) = (&self.inner.multipart, &self.inner.signer, &self.inner.http)
        else {
            return Ok(Vec::new()); // memory: staging never outlives its writer
        };
        let mut markers = self.markers().await?;
        let list_prefix = if self.inner.prefix.is_empty() { String::new() } else { format!("{}/", self.inner.prefix) };
        let backend_err = |context: String, retryable, source: String| Error::Backend {
            backend: self.inner.kind.into(),
            context,
            retryable,
            source: source.into(),
        };
        let listing = uploads::list(signer.as_ref(), http, &list_prefix)
            .await
            .map_err(|e| backend_err("listing in-progress multipart uploads".into(), true, e))?;
        // Ages on the server's clock, like the timestamps they are computed from.
        let now = listing.server_now.unwrap_or_else(SystemTime::now);
        let mut found = Vec::new();
        for upload in listing.uploads {
            let marker = markers.remove(&upload.upload_id);
            let alive = marker.as_ref().and_then(|(_, m, _)| m.owner.alive());
            let path = Path::parse(&upload.key).map_err(|e| {
                backend_err(format!("reading the multipart upload of {:?}", upload.key), false, e.to_string())
            })?;
            let activity = uploads::activity(signer.as_ref(), http, &path, &upload)
                .await
                .map_err(|e| backend_err(format!("listing the parts of {:?}", upload.key), true, e))?;
            let idle = activity
                .last
                .and_then(|t| now.duration_since(t).ok())
                .or(marker.as_ref().map(|(_, _, age)| *age))
                .unwrap_or_default();
            let removed = uploads::stale(alive, idle, older_than);
            if removed && !dry_run {
                match multipart.abort_multipart(&path, &upload.upload_id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(e, &upload.key, "aborting a stale multipart upload of")),
                }
                if let Some((marker_path, _, _)) = &marker {
                    let _ = self.inner.store.delete(marker_path).await;
                }
            }
            found.push(Leftover {
                name: format!("multipart upload of {} ({})", upload.key, upload.upload_id),
                size: Some(activity.bytes),
                age: Some(idle),
                live: alive == Some(true),
                removed,
            });
        }
        // Markers whose upload is already gone (a crash between completing and cleaning up).
        for (_, (path, marker, age)) in markers {
            // Its upload is gone, so only a live writer (about to clean up) keeps it.
            let alive = marker.owner.alive();
            let removed = alive != Some(true) || age >= older_than;
            if removed && !dry_run {
                let _ = self.inner.store.delete(&path).await;
            }
            found.push(Leftover {
                name: format!("staging marker {path}"),
                size: None,
                age: Some(age),
                live: alive == Some(true),
                removed,
            });
        }
        found.extend(self.sweep_claims(older_than, dry_run).await?);
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    fn control(&self) -> Option<Arc<dyn ControlStore>> {
        Some(Arc::new(ObjectControl::new(Arc::clone(&self.inner))))
    }

    async fn self_check(&self) -> Vec<promote_core::Check> {
        if self.inner.kind != "s3" {
            return Vec::new();
        }
        let mut checks = match self.inner.probed().await {
            Ok(report) => report.checks(),
            Err(e) => vec![promote_core::Check::fail("conditional writes probe", e.to_string())],
        };
        checks.push(probe::checksum_check(&self.inner).await);
        checks
    }
}
