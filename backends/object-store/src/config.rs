//! `[backend]` settings for `kind = "s3"` and `kind = "memory"`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use promote_core::{Backend, Error, async_trait};
use promote_settings::BackendConfig;
use serde::{Deserialize, Deserializer, Serialize};

use crate::backend::ObjectStoreBackend;
use crate::profile::AwsProfile;

/// S3 or any S3-compatible server. Unknown keys are errors. Unset credentials, region, bucket
/// and endpoint fall back to the standard `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_BUCKET`, `AWS_ALLOW_HTTP`, …).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Always `"s3"`.
    #[serde(default = "s3")]
    pub kind: String,
    /// Bucket name (else `AWS_BUCKET`).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Key prefix inside the bucket; promote's objects and staging markers live under it.
    #[serde(default)]
    pub prefix: String,
    /// Endpoint URL for S3-compatible servers, e.g. `http://127.0.0.1:9000` (else
    /// `AWS_ENDPOINT_URL`, else AWS).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region (else `AWS_REGION`, else `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Access key id (else `AWS_ACCESS_KEY_ID`).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key (else `AWS_SECRET_ACCESS_KEY`). Never printed.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Session token (else `AWS_SESSION_TOKEN`). Never printed.
    #[serde(default)]
    pub session_token: Option<String>,
    /// A file holding the access key id (read at start, surrounding whitespace trimmed), so the
    /// id need not be in the config file. Relative to the config file's directory.
    #[serde(default, deserialize_with = "path_in")]
    #[schemars(with = "Option<PathBuf>")]
    pub access_key_id_file: Option<PathBuf>,
    /// A file holding the secret access key (e.g. `/run/secrets/s3`). Warned about when group-
    /// or world-readable.
    #[serde(default, deserialize_with = "path_in")]
    #[schemars(with = "Option<PathBuf>")]
    pub secret_access_key_file: Option<PathBuf>,
    /// A file holding the session token.
    #[serde(default, deserialize_with = "path_in")]
    #[schemars(with = "Option<PathBuf>")]
    pub session_token_file: Option<PathBuf>,
    /// When no credentials are configured (keys, `*_file`, `AWS_ACCESS_KEY_ID`, web identity,
    /// container credentials), ask the EC2 instance metadata endpoint. Off by default, so a
    /// missing credential is one clear error rather than a metadata-endpoint timeout.
    #[serde(default)]
    pub instance_metadata: bool,
    /// Allow plain `http://` endpoints (else `AWS_ALLOW_HTTP=true`).
    #[serde(default)]
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.host`) instead of path style (`host/bucket`).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Objects larger than this go up as multipart uploads. Bytes, or "8MiB".
    #[serde(default = "part", with = "promote_settings::size")]
    #[schemars(schema_with = "size_schema")]
    pub multipart_threshold: u64,
    /// Multipart part size (at least 5 MiB, S3's minimum). Bytes, or "8MiB".
    #[serde(default = "part", with = "promote_settings::size")]
    #[schemars(schema_with = "size_schema")]
    pub part_size: u64,
    /// Largest object the server accepts (S3: 5 TiB). An object whose size is known up front
    /// (`--size`) and larger is refused before any byte moves. Bytes, or "5TiB".
    #[serde(default = "max_object", with = "promote_settings::size")]
    #[schemars(schema_with = "size_schema")]
    pub max_object_size: u64,
    /// Parts in memory at once, uploading or filling (at least 2 are used). Memory in flight
    /// per object is at most part_size × upload_concurrency (default 32 MiB).
    #[serde(default = "concurrency")]
    pub upload_concurrency: usize,
    /// Time limit for one request, start to end (body included), e.g. "5m".
    #[serde(default = "timeout", with = "promote_settings::duration")]
    #[schemars(with = "String")]
    pub request_timeout: Duration,
    /// Time limit for connecting to the server, e.g. "10s".
    #[serde(default = "connect_timeout", with = "promote_settings::duration")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// Longest silence on a connection, e.g. "60s": waiting for the first byte of an answer or
    /// for the next bytes of its body. A server that stops answering is abandoned after this (and
    /// the request retried on a new connection), long before `request_timeout`. Raise it on links
    /// too slow to send one part (`part_size`) in this time.
    #[serde(default = "read_timeout", with = "promote_settings::duration")]
    #[schemars(with = "String")]
    pub read_timeout: Duration,
    /// Retries of transient failures (5xx, timeouts, connection errors), with backoff.
    #[serde(default = "retries")]
    pub max_retries: usize,
    /// Give up retrying one request after this long, e.g. "3m".
    #[serde(default = "retry_timeout", with = "promote_settings::duration")]
    #[schemars(with = "String")]
    pub retry_timeout: Duration,
    /// Send `x-amz-checksum-sha256` with every PUT and part, so servers that verify it reject
    /// bytes corrupted on the way.
    #[serde(default = "yes")]
    pub checksum: bool,
    /// Whether the server's conditional writes are trusted: see [`ConditionalWrites`].
    #[serde(default)]
    pub conditional_writes: ConditionalWrites,
}

/// The settings with the credentials redacted: a config printed with `{:?}` (a log line, a
/// panic) never shows a secret.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        for secret in ["access_key_id", "secret_access_key", "session_token"] {
            if !value[secret].is_null() {
                value[secret] = "***redacted***".into();
            }
        }
        write!(f, "S3Config {value}")
    }
}

/// How promote learns whether the server honours `If-None-Match: *` (create-only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConditionalWrites {
    /// Check live before the first create-only publish of a process, and in `doctor` (a few
    /// small requests under `<prefix>/.promote/probe/`); a server that ignores the condition gets
    /// create-only refused. Reads never trigger it.
    #[default]
    Probe,
    /// Assume the server honours them (AWS S3 does since 2024); no probe.
    Trust,
    /// The server does not honour them: create-only is refused; use `--replace` explicitly.
    Off,
}

fn s3() -> String {
    "s3".into()
}
fn part() -> u64 {
    8 << 20
}
fn max_object() -> u64 {
    5 << 40
}
fn concurrency() -> usize {
    4
}
fn timeout() -> Duration {
    Duration::from_secs(300)
}
fn connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn read_timeout() -> Duration {
    Duration::from_secs(60)
}
fn retries() -> usize {
    10
}
fn retry_timeout() -> Duration {
    Duration::from_secs(180)
}
fn yes() -> bool {
    true
}

impl S3Config {
    /// Defaults for `bucket`; everything else from the environment.
    pub fn for_bucket(bucket: impl Into<String>) -> Self {
        Self {
            kind: s3(),
            bucket: Some(bucket.into()),
            prefix: String::new(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            access_key_id_file: None,
            secret_access_key_file: None,
            session_token_file: None,
            instance_metadata: false,
            allow_http: false,
            virtual_hosted_style: false,
            multipart_threshold: part(),
            part_size: part(),
            max_object_size: max_object(),
            upload_concurrency: concurrency(),
            request_timeout: timeout(),
            connect_timeout: connect_timeout(),
            read_timeout: read_timeout(),
            max_retries: retries(),
            retry_timeout: retry_timeout(),
            checksum: true,
            conditional_writes: ConditionalWrites::Probe,
        }
    }

    /// Checks the numbers make sense, and that the endpoint, region and bucket in force (from
    /// the config, else the `AWS_*` environment) are ones S3 accepts.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting; [`Error::BadSetting`] for an endpoint, region or
    /// bucket that cannot work (see `names`).
    pub fn validate(&self) -> Result<(), Error> {
        AwsProfile::current()?;
        const MIN_PART: u64 = 5 << 20;
        const MAX_PART: u64 = 5 << 30;
        if !(MIN_PART..=MAX_PART).contains(&self.part_size) {
            return Err(Error::config(format!(
                "backend.part_size = {} is outside S3's limits (5 MiB to 5 GiB)",
                self.part_size
            )));
        }
        if self.multipart_threshold > MAX_PART {
            return Err(Error::config("backend.multipart_threshold may be at most 5 GiB (S3's single-PUT limit)"));
        }
        if self.upload_concurrency == 0 {
            return Err(Error::config("backend.upload_concurrency must be at least 1"));
        }
        if self.max_object_size == 0 {
            return Err(Error::config("backend.max_object_size must be more than 0"));
        }
        let prefix = self.prefix.trim_matches('/');
        if !prefix.is_empty()
            && let Err(Error::InvalidKey { reason, .. }) = promote_core::Key::new(prefix)
        {
            return Err(Error::config(format!(
                "backend.prefix = {:?} is not usable: {reason} (a prefix follows the key rules)",
                self.prefix
            )));
        }
        match self.bad_settings().into_iter().next() {
            Some(bad) => Err(bad),
            None => Ok(()),
        }
    }
}

/// Variables object_store reads for the endpoint, the region and the bucket, in order.
const ENDPOINT_VARS: &[&str] = &["AWS_ENDPOINT_URL", "AWS_ENDPOINT"];
const REGION_VARS: &[&str] = &["AWS_REGION", "AWS_DEFAULT_REGION"];
const BUCKET_VARS: &[&str] = &["AWS_BUCKET", "AWS_BUCKET_NAME"];

/// The value in force: the config's (origin unknown here: the caller's configuration knows),
/// else the first of `vars` that is set, with that variable as its origin, else the AWS
/// profile's value of `setting` (see `profile`), with its file as its origin.
fn in_force(given: &Option<String>, vars: &[&str], setting: &str) -> Option<(String, Option<String>)> {
    match given {
        Some(value) => Some((value.clone(), None)),
        None => vars
            .iter()
            .find_map(|v| env(v).map(|value| (value, Some(format!("environment variable {v}")))))
            .or_else(|| {
                let found = AwsProfile::current().ok()?.setting(setting)?;
                Some((found.value.clone(), Some(found.origin.clone())))
            }),
    }
}

impl S3Config {
    /// The endpoint, region and bucket in force that S3 would not accept, each an
    /// [`Error::BadSetting`].
    fn bad_settings(&self) -> Vec<Error> {
        let mut bad = Vec::new();
        let mut check =
            |name: &str, found: Option<(String, Option<String>)>, verdict: &dyn Fn(&str) -> Result<(), String>| {
                if let Some((value, origin)) = found
                    && let Err(reason) = verdict(&value)
                {
                    bad.push(Error::BadSetting { setting: format!("backend.{name}"), value, origin, reason });
                }
            };
        let allow_http = self.allows_http();
        check("endpoint", in_force(&self.endpoint, ENDPOINT_VARS, "endpoint"), &|v| {
            crate::names::endpoint(v, allow_http)
        });
        check("region", in_force(&self.region, REGION_VARS, "region"), &crate::names::region);
        check("bucket", in_force(&self.bucket, BUCKET_VARS, "bucket"), &crate::names::bucket);
        bad
    }
}

/// The credentials an [`S3Config`] names, read from the config or the `*_file` settings.
#[derive(Default)]
pub(crate) struct Secrets {
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
}

/// Variables through which the AWS SDKs (and object_store) find credentials without keys.
const AMBIENT_CREDENTIALS: &[&str] =
    &["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret from a file: its contents, surrounding whitespace trimmed. Warns (never fails) when
/// the file is readable by group or others.
fn read_secret(setting: &str, path: &Path) -> Result<String, Error> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("{setting} = {:?}: cannot read it: {e}", path.display().to_string())))?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o044 != 0
    {
        tracing::warn!(
            "secret file {} ({setting}) is readable by group or others (mode {:04o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o7777
        );
    }
    let value = text.trim().to_owned();
    if value.is_empty() {
        return Err(Error::config(format!("{setting} = {:?}: the file is empty", path.display().to_string())));
    }
    Ok(value)
}

impl S3Config {
    /// The credentials given in the config, each from its setting or its `*_file`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a setting and its `*_file` are both given, or a file is unreadable
    /// or empty. The message names the setting and the file, never the value.
    pub(crate) fn secrets(&self) -> Result<Secrets, Error> {
        let pick = |name: &str, value: &Option<String>, file: &Option<PathBuf>| match (value, file) {
            (Some(_), Some(_)) => {
                Err(Error::config(format!("backend.{name} and backend.{name}_file are both set; keep one")))
            }
            (Some(value), None) => Ok(Some(value.clone())),
            (None, Some(path)) => read_secret(&format!("backend.{name}_file"), path).map(Some),
            (None, None) => Ok(None),
        };
        Ok(Secrets {
            access_key_id: pick("access_key_id", &self.access_key_id, &self.access_key_id_file)?,
            secret_access_key: pick("secret_access_key", &self.secret_access_key, &self.secret_access_key_file)?,
            session_token: pick("session_token", &self.session_token, &self.session_token_file)?,
        })
    }

    /// Whether some credential source exists; else an error saying everywhere promote looked.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] with the list of places looked.
    pub(crate) fn check_credentials(&self, secrets: &Secrets) -> Result<(), Error> {
        let profile = AwsProfile::current()?;
        let keys = secrets.access_key_id.is_some()
            || env("AWS_ACCESS_KEY_ID").is_some()
            || profile.credentials_origin().is_some();
        let secret = secrets.secret_access_key.is_some() || env("AWS_SECRET_ACCESS_KEY").is_some();
        if keys && !secret {
            return Err(Error::config(
                "S3 access key id given but no secret access key: set backend.secret_access_key_file (or \
                 backend.secret_access_key, or AWS_SECRET_ACCESS_KEY)",
            ));
        }
        if keys || self.instance_metadata || AMBIENT_CREDENTIALS.iter().any(|v| env(v).is_some()) {
            return Ok(());
        }
        Err(Error::config(
            "no S3 credentials found; promote looked at backend.access_key_id/secret_access_key, \
             backend.access_key_id_file/secret_access_key_file, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
             AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI and the AWS \
             profile files (~/.aws/credentials, ~/.aws/config; AWS_PROFILE); set one, or instance_metadata = true \
             on EC2",
        ))
    }

    /// Whether plain `http://` endpoints are allowed: `allow_http`, else `AWS_ALLOW_HTTP=true`
    /// (object_store's variable).
    pub(crate) fn allows_http(&self) -> bool {
        self.allow_http || env("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }

    /// The bucket in force: the setting, else `AWS_BUCKET` / `AWS_BUCKET_NAME`.
    fn effective_bucket(&self) -> Option<String> {
        in_force(&self.bucket, BUCKET_VARS, "bucket").map(|(bucket, _)| bucket)
    }
}

#[async_trait]
impl BackendConfig for S3Config {
    fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn check(&self) -> Vec<Error> {
        let mut problems = self.bad_settings();
        if let Err(err) = AwsProfile::current() {
            problems.push(err);
        }
        if let Err(err @ Error::Config { .. }) = self.validate() {
            problems.push(err);
        }
        if self.effective_bucket().is_none() {
            problems.push(Error::config("backend.bucket is not set (nor AWS_BUCKET); name the bucket"));
        }
        // Secret files and credentials belong to the machine that runs promote, not to the
        // config (CI validates without them); only contradictions are problems here.
        for name in ["access_key_id", "secret_access_key", "session_token"] {
            let value = serde_json::to_value(self).unwrap_or_default();
            if !value[name].is_null() && !value[format!("{name}_file")].is_null() {
                problems.push(Error::config(format!("backend.{name} and backend.{name}_file are both set; keep one")));
            }
        }
        problems
    }

    fn environment_values(&self) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        let mut first = |setting: &str, given: &Option<String>, vars: &[&str]| {
            if given.is_none()
                && let Some((var, value)) = vars.iter().find_map(|v| env(v).map(|value| (*v, value)))
            {
                found.push((setting.to_owned(), var.to_owned(), value));
            }
        };
        first("bucket", &self.bucket, BUCKET_VARS);
        first("region", &self.region, REGION_VARS);
        first("endpoint", &self.endpoint, ENDPOINT_VARS);
        // Then the AWS profile files, for what neither the configuration nor a variable sets;
        // the origin is the file (`file /home/u/.aws/config (profile dev)`).
        if let Ok(profile) = AwsProfile::current() {
            for (setting, given, vars) in
                [("region", &self.region, REGION_VARS), ("endpoint", &self.endpoint, ENDPOINT_VARS)]
            {
                if given.is_none()
                    && !vars.iter().any(|v| env(v).is_some())
                    && let Some(value) = profile.setting(setting)
                {
                    found.push((setting.to_owned(), value.origin.clone(), value.value.clone()));
                }
            }
            let keys_given = self.access_key_id.is_some() || self.access_key_id_file.is_some();
            if let (false, None, Some(origin)) = (keys_given, env("AWS_ACCESS_KEY_ID"), profile.credentials_origin()) {
                for secret in ["access_key_id", "secret_access_key"] {
                    found.push((secret.to_owned(), origin.to_owned(), "***redacted***".to_owned()));
                }
            }
        }
        found
    }

    async fn open(&self) -> Result<Arc<dyn Backend>, Error> {
        Ok(Arc::new(ObjectStoreBackend::s3(self).await?))
    }
}

/// An in-memory store (object_store's `InMemory`): for tests and trials. Everything is gone
/// when the process exits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Always `"memory"`.
    #[serde(default = "memory")]
    pub kind: String,
}

fn memory() -> String {
    "memory".into()
}

#[async_trait]
impl BackendConfig for MemoryConfig {
    fn to_value(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "memory" })
    }

    async fn open(&self) -> Result<Arc<dyn Backend>, Error> {
        Ok(Arc::new(ObjectStoreBackend::memory()))
    }
}

/// A path resolved against the config file it was read from (figment's `RelativePathBuf`).
fn path_in<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let path = Option::<figment::value::magic::RelativePathBuf>::deserialize(d)?;
    Ok(path.map(|p| p.relative()))
}

/// A size: bytes, or text with a unit.
fn size_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["integer", "string"], "description": "bytes, or with a unit: \"8MiB\", \"5TiB\"" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_prefix_is_a_config_error_not_a_panic() {
        for bad in ["a//b", "../up", "x/./y", "tab\there", "team/.promote/x", "nul\0"] {
            let config = S3Config { prefix: bad.into(), ..S3Config::for_bucket("bucket") };
            match config.validate() {
                Err(Error::Config { message }) => assert!(message.contains("backend.prefix"), "{bad:?}: {message}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        for good in ["", "/", "team/", "/team/runs/", "with space/a~b#c%d[e]f{g}h^i|j"] {
            let config = S3Config { prefix: good.into(), ..S3Config::for_bucket("bucket") };
            config.validate().unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
    }

    #[test]
    fn endpoint_region_and_bucket_are_checked_and_named() {
        let cases = [
            ("endpoint", S3Config { endpoint: Some("127.0.0.1:9000".into()), ..S3Config::for_bucket("bucket") }),
            ("region", S3Config { region: Some("us east".into()), ..S3Config::for_bucket("bucket") }),
            ("bucket", S3Config::for_bucket("bad bucket")),
        ];
        for (name, config) in cases {
            match config.validate() {
                Err(Error::BadSetting { setting, origin: None, .. }) => assert_eq!(setting, format!("backend.{name}")),
                other => panic!("{name}: {other:?}"),
            }
            assert_eq!(config.check().len(), 1, "{name}: config validate reports it");
        }
    }

    #[test]
    fn debug_output_never_shows_credentials() {
        let config = S3Config {
            access_key_id: Some("AKIDSENTINEL".into()),
            secret_access_key: Some("SECRETSENTINEL".into()),
            session_token: Some("TOKENSENTINEL".into()),
            ..S3Config::for_bucket("b")
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("SENTINEL") && shown.contains("\"b\""), "{shown}");
    }

    #[test]
    fn sizes_take_units_up_to_tib() {
        let config: S3Config = serde_json::from_value(serde_json::json!({"max_object_size": "5TiB"})).unwrap();
        assert_eq!(config.max_object_size, 5 << 40);
        assert_eq!(S3Config::for_bucket("b").max_object_size, 5 << 40);
    }
}
