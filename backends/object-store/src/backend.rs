//! [`ObjectStoreBackend`]: the `Backend` trait over an object_store store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::client::{ClientOptions, HttpClient, HttpConnector, ReqwestConnector};
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use promote_core::claims::ControlStore;
use promote_core::{
    Backend, ByteStream, Capabilities, Entry, Error, Expected, Key, Leftover, Meta, RESERVED_SEGMENT, StagedWrite,
    async_trait,
};

use crate::claims::CLAIMS;
use crate::conditional::{ConditionalConnector, Conditions};
use crate::control::ObjectControl;
use crate::config::{ConditionalWrites, S3Config};
use crate::staged::ObjectStaged;
use crate::uploads::{self, Marker};
use crate::{errors, probe};

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
    pub(crate) create_refused: Option<String>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("kind", &self.kind).field("location", &self.location).finish_non_exhaustive()
    }
}

impl Inner {
    /// The store path of `key`: the key verbatim under the prefix (no percent-encoding, so
    /// other S3 tools see the same names).
    pub(crate) fn path(&self, key: &Key) -> Path {
        // Keys have no empty, `.` or `..` segments and no control characters, so this parses.
        Path::parse(self.with_prefix(key.as_str())).expect("a valid key is a valid object path")
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

    /// Where probes write.
    pub(crate) fn probe_dir(&self) -> String {
        self.with_prefix(&format!("{RESERVED_SEGMENT}/probe"))
    }
}

impl ObjectStoreBackend {
    /// An S3 (or S3-compatible) backend. With `conditional_writes = "probe"` (the default) this
    /// checks live, with a few small requests under `<prefix>/.promote/probe/`, that the server
    /// refuses a second create-only write, both as a single PUT and as a multipart completion.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for unusable settings; backend errors when the probe cannot run.
    pub async fn s3(config: &S3Config) -> Result<Self, Error> {
        config.validate()?;
        let conditions = Conditions::default();
        let client = ClientOptions::new().with_timeout(config.request_timeout).with_allow_http(config.allow_http);
        let retry =
            RetryConfig { max_retries: config.max_retries, retry_timeout: config.retry_timeout, ..Default::default() };
        let mut builder = AmazonS3Builder::from_env()
            .with_http_connector(ConditionalConnector { conditions: conditions.clone() })
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(client.clone())
            .with_retry(retry)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted_style);
        // Settings given in the config win over the AWS_* environment.
        let given = [
            (AmazonS3ConfigKey::Bucket, &config.bucket),
            (AmazonS3ConfigKey::Endpoint, &config.endpoint),
            (AmazonS3ConfigKey::Region, &config.region),
            (AmazonS3ConfigKey::AccessKeyId, &config.access_key_id),
            (AmazonS3ConfigKey::SecretAccessKey, &config.secret_access_key),
            (AmazonS3ConfigKey::Token, &config.session_token),
        ];
        for (key, value) in given {
            if let Some(value) = value {
                builder = builder.with_config(key, value);
            }
        }
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
        let mut inner = Inner {
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
            create_refused: None,
        };
        inner.create_refused = match config.conditional_writes {
            ConditionalWrites::Trust => None,
            ConditionalWrites::Off => Some("backend.conditional_writes = \"off\"".into()),
            ConditionalWrites::Probe => probe::conditions(&inner).await?.refusal(),
        };
        if let Some(why) = &inner.create_refused {
            tracing::warn!(location = %inner.location, "create-only refused: {why}");
        }
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
                create_refused: None,
            }),
        }
    }

    fn err(&self, e: object_store::Error, key: &str, what: &str) -> Error {
        errors::map(e, self.inner.kind, key, what)
    }

    /// Every small bookkeeping object under `dir` (claims, markers): path, age and contents.
    async fn bookkeeping(&self, dir: String, what: &str) -> Result<Vec<(Path, Duration, bytes::Bytes)>, Error> {
        let dir = Path::from(dir);
        let objects: Vec<_> =
            self.inner.store.list(Some(&dir)).try_collect().await.map_err(|e| self.err(e, dir.as_ref(), what))?;
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
    /// only if unchanged since read, judged by the server's clock (see `promote_core::claims`).
    async fn sweep_claims(&self, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
        let control = Arc::new(ObjectControl::new(Arc::clone(&self.inner)));
        promote_core::Claims::new(control).sweep(CLAIMS, older_than, dry_run).await
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
            create_refused: self.inner.create_refused.clone(),
            replace: true,
            replace_if_version: true,
            stored_digest: true,
            durable: self.inner.kind == "s3",
            staging_outlives_writer: self.inner.multipart.is_some(),
        }
    }

    async fn stage(&self, key: &Key, expected: &Expected) -> Result<Box<dyn StagedWrite>, Error> {
        Ok(Box::new(ObjectStaged::new(Arc::clone(&self.inner), key.clone(), expected.sha256)))
    }

    async fn head(&self, key: &Key) -> Result<Meta, Error> {
        let path = self.inner.path(key);
        let got = self
            .inner
            .store
            .get_opts(&path, GetOptions::new().with_head(true))
            .await
            .map_err(|e| self.err(e, key.as_str(), "reading metadata of"))?;
        let sha256 =
            got.attributes.get(&Attribute::Metadata(DIGEST_METADATA.into())).and_then(|v| v.as_ref().parse().ok());
        Ok(Meta { size: got.meta.size, sha256, version: got.meta.e_tag })
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
        self.inner.store.delete(&path).await.map_err(|e| self.err(e, key.as_str(), "removing"))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        // object_store lists by whole segments: list the prefix's directory, filter by string.
        let dir = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let dir_path = Path::from(self.inner.with_prefix(dir).trim_matches('/'));
        let strip = if self.inner.prefix.is_empty() { String::new() } else { format!("{}/", self.inner.prefix) };
        let objects: Vec<_> =
            self.inner.store.list(Some(&dir_path)).try_collect().await.map_err(|e| self.err(e, prefix, "listing"))?;
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
        let pending = uploads::list(signer.as_ref(), http, &list_prefix).await.map_err(|e| Error::Backend {
            backend: self.inner.kind.into(),
            context: "listing in-progress multipart uploads".into(),
            retryable: true,
            source: e.into(),
        })?;
        let mut found = Vec::new();
        for upload in pending {
            let marker = markers.remove(&upload.upload_id);
            let alive = marker.as_ref().and_then(|(_, m, _)| m.owner.alive());
            let age = upload
                .initiated
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .or(marker.as_ref().map(|(_, _, age)| *age))
                .unwrap_or_default();
            let removable = alive == Some(false) || age >= older_than;
            let removed = removable && !dry_run;
            if removed {
                let path = Path::from(upload.key.as_str());
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
                size: None,
                age: Some(age),
                live: alive == Some(true),
                removed,
            });
        }
        // Markers whose upload is already gone (a crash between completing and cleaning up).
        for (_, (path, marker, age)) in markers {
            let alive = marker.owner.alive();
            let removed = (alive != Some(true) || age >= older_than) && !dry_run;
            if removed {
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
        match probe::conditions(&self.inner).await {
            Ok(report) => report.checks(),
            Err(e) => vec![promote_core::Check::fail("conditional writes probe", e.to_string())],
        }
    }
}
