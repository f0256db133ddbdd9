//! `[backend]` settings for `kind = "opendal"`: a scheme, the service's own options, and the
//! layers promote puts around it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use promote_core::{Backend, Error, async_trait};
use promote_settings::BackendConfig;
use serde::{Deserialize, Deserializer, Serialize};

use crate::backend::OpendalBackend;

/// Any OpenDAL service compiled into this build (see the crate's `services-*` features).
/// Unknown keys are errors; the service's own keys go under `[backend.options]` and are passed
/// to OpenDAL verbatim (OpenDAL rejects the ones it does not know).
///
/// ```toml
/// [backend]
/// kind = "opendal"
/// scheme = "azblob"
/// [backend.options]
/// container = "artifacts"
/// endpoint = "http://127.0.0.1:10000/devstoreaccount1"
/// account_name = "devstoreaccount1"
/// account_key = "…"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpendalConfig {
    /// Always `"opendal"`.
    #[serde(default = "opendal")]
    pub kind: String,
    /// The OpenDAL service: `memory`, `fs`, `s3`, `azblob`, `gcs`, …
    pub scheme: String,
    /// The service's options, as OpenDAL names them (`bucket`, `container`, `endpoint`, `root`,
    /// …). Secrets among them are redacted by `config show`. Values may be written as TOML
    /// strings, numbers or booleans (and come from environment variables as text); OpenDAL gets
    /// them as text.
    #[serde(default, deserialize_with = "options_in")]
    pub options: BTreeMap<String, String>,
    /// Objects larger than this are staged in a local file and sent as a multi-part upload
    /// (S3 multipart, Azure block list) when published; smaller ones are held in memory and
    /// sent in one request. Bytes, or "8MiB".
    #[serde(default = "part", with = "promote_settings::size")]
    pub multipart_threshold: u64,
    /// Size of each part of a multi-part upload. Bytes, or "8MiB".
    #[serde(default = "part", with = "promote_settings::size")]
    pub part_size: u64,
    /// Parts uploaded at once.
    #[serde(default = "concurrency")]
    pub upload_concurrency: usize,
    /// Where large objects are staged before they are published (default: the system's
    /// temporary directory). `promote recover` sweeps what crashed writers left there. A
    /// download run's partial on this filesystem is moved here whole instead of copied.
    #[serde(default)]
    pub staging_dir: Option<PathBuf>,
    /// The OpenDAL layers around the service.
    #[serde(default)]
    pub layers: LayersConfig,
}

/// `[backend.layers]`: OpenDAL's retry (each attempt under its own timeout), tracing, and a
/// limit on concurrent requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayersConfig {
    /// Retries of transient failures, with exponential backoff and jitter (0: none).
    #[serde(default = "retries")]
    pub retry_max_times: usize,
    /// Time limit of one attempt of a non-streaming request, inside the retry, e.g. "60s".
    #[serde(default = "timeout", with = "promote_settings::duration")]
    pub timeout: Duration,
    /// Time limit of one streaming read or write step, inside the retry, e.g. "30s".
    #[serde(default = "io_timeout", with = "promote_settings::duration")]
    pub io_timeout: Duration,
    /// Requests in flight at once through this backend (0: no limit).
    #[serde(default)]
    pub concurrent_limit: usize,
    /// Emit a tracing span per OpenDAL operation (shown with `-v`).
    #[serde(default = "yes")]
    pub tracing: bool,
}

impl Default for LayersConfig {
    fn default() -> Self {
        Self {
            retry_max_times: retries(),
            timeout: timeout(),
            io_timeout: io_timeout(),
            concurrent_limit: 0,
            tracing: true,
        }
    }
}

fn opendal() -> String {
    "opendal".into()
}
fn part() -> u64 {
    8 << 20
}
fn concurrency() -> usize {
    4
}
fn retries() -> usize {
    4
}
fn timeout() -> Duration {
    Duration::from_secs(60)
}
fn io_timeout() -> Duration {
    Duration::from_secs(30)
}
fn yes() -> bool {
    true
}

impl OpendalConfig {
    /// `scheme` with `options`, every other setting at its default.
    pub fn new(scheme: impl Into<String>, options: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            kind: opendal(),
            scheme: scheme.into(),
            options: options.into_iter().collect(),
            multipart_threshold: part(),
            part_size: part(),
            upload_concurrency: concurrency(),
            staging_dir: None,
            layers: LayersConfig::default(),
        }
    }

    /// Checks the numbers make sense, and that an `endpoint` option is an absolute `http://` or
    /// `https://` URL with a host (OpenDAL would quietly read `127.0.0.1:9000` as `https://…`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting; [`Error::BadSetting`] for a bad endpoint.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(value) = self.options.get("endpoint")
            && let Err(reason) = endpoint(value)
        {
            let setting = "backend.options.endpoint".into();
            return Err(Error::BadSetting { setting, value: value.clone(), origin: None, reason });
        }
        if self.scheme.trim().is_empty() {
            return Err(Error::config("backend.scheme is empty; name an OpenDAL service such as \"s3\" or \"azblob\""));
        }
        if self.part_size < 1 << 20 {
            return Err(Error::config(format!("backend.part_size = {} is too small (at least 1 MiB)", self.part_size)));
        }
        if self.upload_concurrency == 0 {
            return Err(Error::config("backend.upload_concurrency must be at least 1"));
        }
        Ok(())
    }
}

/// Whether `value` is an absolute `http://` or `https://` URL with a host; else why not.
fn endpoint(value: &str) -> Result<(), String> {
    const EXAMPLE: &str = "e.g. https://storage.example.com or http://127.0.0.1:9000";
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) || value.is_empty() {
        return Err(format!("an endpoint is a URL without spaces ({EXAMPLE})"));
    }
    let uri: http::Uri = value.parse().map_err(|e| format!("not a URL ({e}); {EXAMPLE}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Some("http" | "https") => Err(format!("no host in the URL; {EXAMPLE}")),
        None => Err(format!("no scheme: write https://{value} or http://{value}")),
        Some(other) => Err(format!("the scheme {other}:// is not supported; use https:// or http:// ({EXAMPLE})")),
    }
}

#[async_trait]
impl BackendConfig for OpendalConfig {
    fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn check(&self) -> Vec<Error> {
        self.validate().err().into_iter().collect()
    }

    async fn open(&self) -> Result<Arc<dyn Backend>, Error> {
        Ok(Arc::new(OpendalBackend::open(self)?))
    }
}

/// One option's value as OpenDAL wants it: text, whatever TOML or the environment made of it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Flag(bool),
    Whole(i64),
    Real(f64),
}

fn options_in<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(t) => t,
                Scalar::Flag(b) => b.to_string(),
                Scalar::Whole(n) => n.to_string(),
                Scalar::Real(x) => x.to_string(),
            };
            (k, text)
        })
        .collect())
}
