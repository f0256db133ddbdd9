//! Layered configuration: built-in defaults < TOML file < `PROMOTE_*` environment < flags.
//!
//! The file may hold profiles (`[default]`, `[dev]`, `[prod]`, … as figment and Rocket use them;
//! the top-level settings belong to `default`), and named backends (`[targets.NAME]`) beside
//! the unnamed `[backend]`. The profile comes from `--profile` / `PROMOTE_PROFILE`, the target
//! from `--target` / `PROMOTE_TARGET`, else `default_target`, else `[backend]`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use promote_core::Error;
use promote_settings::{BackendConfig, config_error};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::args::Global;
use crate::backends;

/// Name of the defaults layer in `config show`.
pub(crate) const DEFAULT: &str = "default";
/// Name of the flags layer in `config show`.
const FLAG: &str = "command-line flag";

/// Top-level settings (the `backend` table belongs to the backend's own config type).
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// Stream sources straight into staging (`PROMOTE_ENABLE_STREAMING`), or spool first.
    #[serde(default = "yes", deserialize_with = "flexible_bool")]
    #[schemars(with = "bool")]
    pub(crate) streaming: bool,
    /// Where the spool path keeps its temporary copies (default: the system temp dir).
    #[serde(default)]
    pub(crate) spool_dir: Option<PathBuf>,
    /// `promote run` settings (the `[run]` table).
    #[serde(default)]
    pub(crate) run: RunSettings,
    /// Read by the backend's config type.
    #[serde(default, skip_serializing)]
    #[allow(dead_code)]
    #[schemars(skip)]
    backend: Option<figment::value::Value>,
    /// Named backends (`[targets.NAME]`), each read by its kind's config type.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub(crate) targets: std::collections::BTreeMap<String, figment::value::Value>,
    /// The target used when neither `--target` nor `PROMOTE_TARGET` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default_target: Option<String>,
}

/// The top-level settings (everything else at the top of a config file is a profile).
pub(crate) const SETTING_KEYS: &[&str] = &["streaming", "spool_dir", "run", "backend", "targets", "default_target"];

/// The `[run]` table: how `promote run` downloads (see the README, "Download runs").
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RunSettings {
    /// The run directory (ledger, partial downloads), relative to the current directory.
    pub(crate) out: PathBuf,
    /// Items fetched at once.
    pub(crate) concurrency: usize,
    /// Requests to one host at once.
    pub(crate) per_host: usize,
    /// Stop after this many items.
    pub(crate) max: Option<u64>,
    /// Time allowed to connect to a host.
    #[serde(with = "promote_settings::duration")]
    #[schemars(schema_with = "text_or_number")]
    pub(crate) connect_timeout: std::time::Duration,
    /// Time allowed between two reads of a response body.
    #[serde(with = "promote_settings::duration")]
    #[schemars(schema_with = "text_or_number")]
    pub(crate) read_timeout: std::time::Duration,
    /// Retries of a transient failure per item, counting only attempts in a row that made no
    /// progress (a partial download further than before resets the count); 0: no retries.
    pub(crate) retries: u32,
    /// Items at least this large download into a resumable partial file in the run directory.
    #[serde(with = "promote_settings::size")]
    #[schemars(schema_with = "text_or_number")]
    pub(crate) resume_threshold: u64,
    /// Parallel range requests per large item (1: one stream; at most 16), for servers that take
    /// byte ranges; connections beyond an item's first count against `per_host`.
    pub(crate) segments: usize,
    /// Items per shard lease (smaller for small manifests, so several processes share work).
    pub(crate) shard_size: usize,
    /// How long a shard lease lasts without renewal.
    #[serde(with = "promote_settings::duration")]
    #[schemars(schema_with = "text_or_number")]
    pub(crate) lease: std::time::Duration,
    /// Request headers per host: header name → value source. Values are never printed.
    pub(crate) headers: std::collections::BTreeMap<String, std::collections::BTreeMap<String, HeaderSource>>,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            out: PathBuf::from("promote-run"),
            concurrency: 8,
            per_host: 4,
            max: None,
            connect_timeout: std::time::Duration::from_secs(10),
            read_timeout: std::time::Duration::from_secs(60),
            retries: 5,
            resume_threshold: 16 << 20,
            segments: 1,
            shard_size: 256,
            lease: std::time::Duration::from_secs(60),
            headers: Default::default(),
        }
    }
}

/// Where a request header's value comes from.
#[derive(Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum HeaderSource {
    /// `{ env = "VAR" }`: the value of an environment variable.
    Env {
        /// The variable.
        env: String,
    },
    /// `{ file = "/path" }`: a file's contents, surrounding whitespace trimmed.
    File {
        /// The file.
        file: PathBuf,
    },
    /// `"value"`: the value itself.
    Literal(String),
}

impl std::fmt::Debug for HeaderSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env { env } => write!(f, "env {env}"),
            Self::File { file } => write!(f, "file {}", file.display()),
            Self::Literal(_) => f.write_str("literal (redacted)"),
        }
    }
}

impl HeaderSource {
    /// The value, read now.
    ///
    /// # Errors
    ///
    /// When the variable is unset or the file unreadable (the message never shows a value).
    pub(crate) fn resolve(&self) -> Result<String, String> {
        match self {
            Self::Env { env } => std::env::var(env).map_err(|_| format!("environment variable {env} is not set")),
            Self::File { file } => std::fs::read_to_string(file)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", file.display())),
            Self::Literal(value) => Ok(value.clone()),
        }
    }

    /// What `config show` prints: where the value comes from, never the value.
    pub(crate) fn shown(&self) -> String {
        match self {
            Self::Env { env } => format!("env {env}"),
            Self::File { file } => format!("file {}", file.display()),
            Self::Literal(_) => "***redacted***".into(),
        }
    }
}

/// Durations (`"10s"` or seconds) and sizes (`"16MiB"` or bytes) in the schema.
fn text_or_number(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "integer"] })
}

fn yes() -> bool {
    true
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`: environment variables are spelled many ways.
fn flexible_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Int(i64),
        Str(String),
        Other(figment::value::Value),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(b) => Ok(b),
        Raw::Int(0) => Ok(false),
        Raw::Int(1) => Ok(true),
        Raw::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("{s:?} is not a boolean (use true or false)"))),
        },
        Raw::Int(n) => Err(serde::de::Error::custom(format!("{n} is not a boolean (use true or false)"))),
        Raw::Other(value) => {
            Err(serde::de::Error::custom(format!("expected a boolean (true or false), found {}", value.to_actual())))
        }
    }
}

/// Everything loaded: the layered figment, the top-level settings and the backend's config.
pub(crate) struct Loaded {
    pub(crate) figment: Figment,
    pub(crate) settings: Settings,
    pub(crate) backend: Box<dyn BackendConfig>,
    /// Where the configuration came from: the file, the profile and the target in force.
    pub(crate) origin: Origin,
}

/// The file, profile and target in force, each with what chose it.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    /// The config file (absolute) and what named it (`--config`, `PROMOTE_CONFIG`, `search path`).
    pub(crate) file: Option<(PathBuf, &'static str)>,
    /// The profile and what chose it.
    pub(crate) profile: (String, &'static str),
    /// The named target (`None`: the `[backend]` table) and what chose it.
    pub(crate) target: Option<(String, &'static str)>,
}

impl Origin {
    /// The table the backend is read from: `backend` or `targets.NAME`.
    pub(crate) fn table(&self) -> String {
        match &self.target {
            Some((name, _)) => format!("targets.{name}"),
            None => "backend".into(),
        }
    }
}

impl Loaded {
    /// The spool directory, defaulted.
    pub(crate) fn spool_dir(&self) -> PathBuf {
        self.settings.spool_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// A provider under a name of our choosing (so `config show` can say where a value came from).
struct Named<P> {
    name: &'static str,
    inner: P,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// The places searched for a config file when none is named, in order: `./promote.toml`,
/// `$XDG_CONFIG_HOME/promote/promote.toml` (`~/.config` when unset), `/etc/promote/promote.toml`.
pub(crate) fn search_path() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("promote.toml")];
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config")));
    if let Some(xdg) = xdg {
        paths.push(xdg.join("promote/promote.toml"));
    }
    paths.push(PathBuf::from("/etc/promote/promote.toml"));
    paths
}

/// Which config file applies, if any, made absolute, and what chose it. A file named explicitly
/// (`--config`, `PROMOTE_CONFIG`) must exist; otherwise the first file of [`search_path`].
pub(crate) fn config_file(global: &Global) -> anyhow::Result<Option<(PathBuf, &'static str)>> {
    let explicit = match &global.config {
        Some(path) => Some((path.clone(), "--config")),
        None => std::env::var_os("PROMOTE_CONFIG").map(|p| (PathBuf::from(p), "PROMOTE_CONFIG")),
    };
    let found = match explicit {
        Some((path, origin)) => {
            std::fs::metadata(&path)
                .map_err(|e| Error::config(format!("config file {} (from {origin}): {e}", path.display())))?;
            Some((path, origin))
        }
        None => search_path().into_iter().find(|p| p.is_file()).map(|p| (p, "search path")),
    };
    Ok(found.map(|(path, origin)| (std::path::absolute(&path).unwrap_or(path), origin)))
}

/// A config file read as figment profiles: the top-level settings and `[default]` make the
/// default profile, `[global]` the global one, and every other top-level table a profile.
pub(crate) struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Provider for ConfigFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", figment::Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut flat = Toml::file_exact(&self.path).data()?;
        let top = flat.remove(&Profile::Default).unwrap_or_default();
        let mut out: Map<Profile, Dict> = Map::new();
        for (key, value) in top {
            let profile = match (&value, key.as_str()) {
                (_, k) if SETTING_KEYS.contains(&k) => None,
                (figment::value::Value::Dict(..), "default") => Some(Profile::Default),
                (figment::value::Value::Dict(..), "global") => Some(Profile::Global),
                (figment::value::Value::Dict(..), name) => Some(Profile::new(name)),
                _ => None,
            };
            match (profile, value) {
                (Some(profile), figment::value::Value::Dict(_, dict)) => {
                    let entry = out.entry(profile).or_default();
                    for (k, v) in dict {
                        entry.insert(k, v);
                    }
                }
                (_, value) => {
                    out.entry(Profile::Default).or_default().insert(key, value);
                }
            }
        }
        Ok(out)
    }
}

/// The profiles a config file defines (besides `default`), sorted.
///
/// # Errors
///
/// The file's syntax error, with its line and column.
pub(crate) fn file_profiles(path: &Path) -> Result<Vec<String>, Error> {
    let data = ConfigFile::new(path.to_owned()).data().map_err(|e| config_error(e, ""))?;
    Ok(data
        .keys()
        .filter(|p| **p != Profile::Default && **p != Profile::Global)
        .map(|p| p.as_str().to_string())
        .collect())
}

/// The top-level settings an environment variable may set (`PROMOTE_<NAME>` or
/// `PROMOTE_<NAME>__<FIELD>`). Every other `PROMOTE_*` variable is left alone, so a CI variable
/// that happens to share the prefix (`PROMOTE_TO_PROD`) breaks nothing.
const ENV_SETTINGS: &[&str] = SETTING_KEYS;

/// Variables with the prefix that are not settings: the config file's name, the log level, the
/// test suite's own.
const ENV_RESERVED: &[&str] = &["config", "log", "profile", "target"];

/// What `PROMOTE_<rest>` is to the configuration.
#[derive(Debug, PartialEq, Eq)]
enum EnvVar {
    /// It sets this setting (a dotted path).
    Setting(String),
    /// Not ours: left alone.
    Other,
    /// Not ours, but one or two edits from a top-level setting (`PROMOTE_STREAMNG`): left alone
    /// with a warning naming the variable and the setting, since scripts set `PROMOTE_BIN` or
    /// `PROMOTE_HOME` for their own use.
    NearMiss(&'static str),
}

/// What `var` is to the configuration (see [`EnvVar`]). A variable under a real table
/// (`PROMOTE_BACKEND__ROTO`), or under a near miss of one (`PROMOTE_BACKNED__ROOT`), is a
/// setting: its unknown key is an error later, where the fields are known.
fn env_setting(var: &str) -> EnvVar {
    let Some(rest) = var.strip_prefix("PROMOTE_") else { return EnvVar::Other };
    let key = rest.to_ascii_lowercase();
    if key == "enable_streaming" {
        return EnvVar::Setting("streaming".into());
    }
    if ENV_RESERVED.contains(&key.as_str()) || key.starts_with("test_") {
        return EnvVar::Other;
    }
    let head = key.split("__").next().unwrap_or_default();
    if ENV_SETTINGS.contains(&head) {
        return EnvVar::Setting(key.replace("__", "."));
    }
    match ENV_SETTINGS.iter().find(|known| strsim::damerau_levenshtein(head, known) <= 2) {
        // `PROMOTE_BACKNED__ROOT` addresses a field of a table: a misspelt setting, not a
        // script's own variable. Ignoring it could put objects somewhere else, so it goes in as
        // a setting and the unknown key is an error naming the variable.
        Some(_) if key.contains("__") => EnvVar::Setting(key.replace("__", ".")),
        Some(known) => EnvVar::NearMiss(known),
        None => EnvVar::Other,
    }
}

/// The one-line warning for a near-miss variable.
fn near_miss_warning(var: &str, known: &str) -> String {
    format!(
        "promote: warning: environment variable {var} is not a setting (ignored); did you mean `{known}` (PROMOTE_{})?",
        known.to_ascii_uppercase()
    )
}

/// The environment layer: `PROMOTE_BACKEND__ROOT` → `backend.root`, `PROMOTE_ENABLE_STREAMING` →
/// `streaming`; only variables that map to settings (see [`env_setting`]). Near misses are
/// warned about once per process, on stderr.
fn environment() -> Env {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        for (var, _) in std::env::vars_os() {
            if let Some(var) = var.to_str()
                && let EnvVar::NearMiss(known) = env_setting(var)
            {
                eprintln!("{}", near_miss_warning(var, known));
            }
        }
    });
    Env::prefixed("PROMOTE_")
        .filter_map(|key| match env_setting(&format!("PROMOTE_{}", key.as_str().to_ascii_uppercase())) {
            EnvVar::Setting(path) => Some(path.into()),
            EnvVar::Other | EnvVar::NearMiss(_) => None,
        })
        .global()
}

/// The env var that sets `path`.
pub(crate) fn env_var_for(path: &str) -> String {
    if path == "streaming" && std::env::var_os("PROMOTE_ENABLE_STREAMING").is_some() {
        return "PROMOTE_ENABLE_STREAMING".into();
    }
    format!("PROMOTE_{}", path.replace('.', "__").to_uppercase())
}

/// The profile in force: `--profile`, else `PROMOTE_PROFILE`, else `default`; and what chose it.
pub(crate) fn profile(global: &Global) -> (String, &'static str) {
    match (&global.profile, std::env::var("PROMOTE_PROFILE").ok().filter(|p| !p.is_empty())) {
        (Some(p), _) => (p.clone(), "--profile"),
        (None, Some(p)) => (p, "PROMOTE_PROFILE"),
        (None, None) => (DEFAULT.into(), DEFAULT),
    }
}

/// The layered figment before any flag that sets a backend setting, with the profile selected.
///
/// # Errors
///
/// A named config file that does not exist.
pub(crate) fn base(global: &Global, file: Option<&Path>, profile: &str) -> anyhow::Result<Figment> {
    let defaults = json!({ "streaming": true, "backend": { "kind": "local" } });
    let mut figment = Figment::from(Named { name: DEFAULT, inner: Serialized::defaults(defaults) });
    if let Some(path) = file {
        figment = figment.merge(ConfigFile::new(path.to_owned()));
    }
    figment = figment.merge(environment());
    if let Some(streaming) = global.streaming {
        figment = figment.merge(Named { name: FLAG, inner: Serialized::global("streaming", streaming) });
    }
    Ok(figment.select(profile))
}

/// `--backend` and `--root` set the table in force (`backend`, or the selected target's).
fn with_backend_flags(figment: Figment, global: &Global, table: &str) -> Figment {
    let mut backend = serde_json::Map::new();
    if let Some(kind) = &global.backend {
        backend.insert("kind".into(), json!(kind));
    }
    if let Some(root) = &global.root {
        backend.insert("root".into(), json!(root));
    }
    if let Some(durability) = &global.durability {
        backend.insert("durability".into(), json!(durability));
    }
    if backend.is_empty() {
        return figment;
    }
    figment.merge(Named { name: FLAG, inner: Serialized::global(table, Value::Object(backend)) })
}

/// Extracts the top-level settings, naming each bad key and its source.
pub(crate) fn settings(figment: &Figment) -> Result<Settings, Error> {
    figment.extract().map_err(|e| {
        // The environment layer knows `streaming` by its documented name.
        let message = config_error(e, "").to_string().replace("PROMOTE_STREAMING", &env_var_for("streaming"));
        Error::config(message.trim_start_matches("configuration error: "))
    })
}

/// The named target in force (`--target`, else `PROMOTE_TARGET`, else `default_target`), or
/// `None` for the `[backend]` table.
///
/// # Errors
///
/// A name no `[targets.NAME]` table defines (listing the defined ones).
pub(crate) fn target(
    global: &Global,
    settings: &Settings,
    profile: &str,
) -> Result<Option<(String, &'static str)>, Error> {
    let chosen = match (&global.target, std::env::var("PROMOTE_TARGET").ok().filter(|t| !t.is_empty())) {
        (Some(t), _) => Some((t.clone(), "--target")),
        (None, Some(t)) => Some((t, "PROMOTE_TARGET")),
        (None, None) => settings.default_target.clone().map(|t| (t, "default_target")),
    };
    let Some((name, origin)) = chosen else { return Ok(None) };
    if !settings.targets.contains_key(&name) {
        return Err(unknown_target(&name, origin, settings, profile));
    }
    Ok(Some((name, origin)))
}

/// "unknown target", with the targets that profile defines.
pub(crate) fn unknown_target(name: &str, origin: &str, settings: &Settings, profile: &str) -> Error {
    let known: Vec<&str> = settings.targets.keys().map(String::as_str).collect();
    let known = if known.is_empty() {
        "no [targets.NAME] table is defined".to_owned()
    } else {
        format!("defined targets: {}", known.join(", "))
    };
    Error::config(format!("unknown target {name:?} (from {origin}) in profile {profile:?}; {known}"))
}

/// Loads and validates everything (no I/O on the storage yet).
pub(crate) fn load(global: &Global) -> anyhow::Result<Loaded> {
    let file = config_file(global)?;
    let profile = profile(global);
    if profile.0 != DEFAULT && profile.0 != "global" {
        let defined = match &file {
            Some((path, _)) => file_profiles(path)?,
            None => Vec::new(),
        };
        if !defined.contains(&profile.0) {
            let file = file.as_ref().map_or("no config file".to_owned(), |(p, _)| p.display().to_string());
            return Err(Error::config(format!(
                "profile {:?} (from {}) is not defined in {file}; defined profiles: default{}",
                profile.0,
                profile.1,
                defined.iter().map(|p| format!(", {p}")).collect::<String>()
            ))
            .into());
        }
    }
    let figment = base(global, file.as_ref().map(|(p, _)| p.as_path()), &profile.0)?;
    let settings = settings(&figment)?;
    let target = target(global, &settings, &profile.0)?;
    let origin = Origin { file, profile, target };
    let figment = with_backend_flags(figment, global, &origin.table());
    let backend = backends::registry().load_table(&figment, &origin.table())?;
    Ok(Loaded { figment, settings, backend, origin })
}

/// The configuration with another named target in force (for `promote copy`).
///
/// # Errors
///
/// An unknown target, or its table's errors.
pub(crate) fn with_target(loaded: &Loaded, name: &str) -> Result<Box<dyn BackendConfig>, Error> {
    if !loaded.settings.targets.contains_key(name) {
        return Err(unknown_target(name, "the command line", &loaded.settings, &loaded.origin.profile.0));
    }
    backends::registry().load_table(&loaded.figment, &format!("targets.{name}"))
}

/// Where the value at `path` came from, for humans.
pub(crate) fn source_of(figment: &Figment, path: &str) -> String {
    match figment.find_metadata(path) {
        None => DEFAULT.into(),
        Some(meta) => match &meta.source {
            Some(figment::Source::File(file)) => format!("file {}", shown(file)),
            _ if meta.name.contains("environment") => format!("env {}", env_var_for(path)),
            _ => meta.name.to_string(),
        },
    }
}

fn shown(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned()).display().to_string()
}

/// The effective configuration as one JSON tree (secrets not yet redacted). The backend in
/// force sits at its table's path (`backend`, or `targets.NAME`).
pub(crate) fn effective(loaded: &Loaded) -> Value {
    let mut tree = json!({
        "streaming": loaded.settings.streaming,
        "spool_dir": loaded.spool_dir(),
        "run": run_shown(&loaded.settings.run),
    });
    if let Some(name) = &loaded.settings.default_target {
        tree["default_target"] = json!(name);
    }
    match &loaded.origin.target {
        Some((name, _)) => tree["targets"] = json!({ name.as_str(): loaded.backend.to_value() }),
        None => tree["backend"] = loaded.backend.to_value(),
    }
    tree
}

/// The `[run]` table for `config show`: header values replaced by where they come from.
fn run_shown(run: &RunSettings) -> Value {
    let mut value = serde_json::to_value(run).unwrap_or(Value::Null);
    let headers: serde_json::Map<String, Value> = run
        .headers
        .iter()
        .map(|(host, names)| {
            let names = names.iter().map(|(name, source)| (name.clone(), json!(source.shown()))).collect();
            (host.clone(), Value::Object(names))
        })
        .collect();
    value["headers"] = Value::Object(headers);
    value
}

/// Whether a setting's name marks it as a secret. `*_file` settings name a file, not a secret.
pub(crate) fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !name.ends_with("_file")
        && ["secret", "password", "token", "credential", "access_key", "account_key", "api_key", "private_key"]
            .iter()
            .any(|s| name.contains(s))
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The error with a storage setting it names ([`Error::BadSetting`], [`Error::StorageMissing`])
/// named by the table in force (`targets.archive.bucket`) and the setting's source; any other
/// error unchanged.
pub(crate) fn located(err: anyhow::Error, loaded: &Loaded) -> anyhow::Error {
    located_in(err, &loaded.figment, &loaded.origin.table(), loaded.backend.as_ref())
}

/// [`located`] for the backend `config` read from `table` of `figment`.
pub(crate) fn located_in(
    mut err: anyhow::Error,
    figment: &Figment,
    table: &str,
    config: &dyn BackendConfig,
) -> anyhow::Error {
    if let Some(core) = err.downcast_mut::<Error>() {
        let taken = std::mem::replace(core, Error::config(String::new()));
        *core = taken.located(table, |key| {
            promote_settings::setting_origin(figment, key).or_else(|| {
                // Not in the configuration: a standard variable (`AWS_BUCKET`) may have set it.
                let name = key.rsplit('.').next().unwrap_or(key);
                let found = config.environment_values().into_iter().find(|(setting, _, _)| setting == name);
                found.map(|(_, var, _)| match var.strip_prefix("file ") {
                    Some(file) => file.to_owned(),
                    None => format!("environment variable {var}"),
                })
            })
        });
    }
    err
}

/// Opens the configured backend.
pub(crate) async fn open(loaded: &Loaded) -> anyhow::Result<promote_core::Store> {
    open_config(loaded.backend.as_ref()).await
}

/// Opens a backend from its config.
pub(crate) async fn open_config(config: &dyn BackendConfig) -> anyhow::Result<promote_core::Store> {
    let backend = config.open().await.context("opening the storage backend")?;
    Ok(promote_core::Store::new(backend))
}

/// The root of a local-disk backend that does not exist yet (opening it for writing creates
/// it), absolute; `None` for other backends and existing roots.
pub(crate) fn new_local_root(config: &dyn BackendConfig) -> Option<PathBuf> {
    let value = config.to_value();
    if value.get("kind").and_then(Value::as_str) != Some("local") {
        return None;
    }
    let root = PathBuf::from(value.get("root")?.as_str()?);
    let root = std::path::absolute(&root).unwrap_or(root);
    (!root.exists()).then_some(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_level_setting_can_come_from_the_environment() {
        let settings: Settings = Figment::from(Serialized::defaults(json!({}))).extract().expect("defaults");
        let Value::Object(fields) = serde_json::to_value(&settings).expect("serializes") else { panic!("an object") };
        for field in fields.keys().map(String::as_str).chain(["backend"]) {
            assert!(ENV_SETTINGS.contains(&field), "PROMOTE_{} would be ignored", field.to_uppercase());
        }
        assert_eq!(env_setting("PROMOTE_RUN__RESUME_THRESHOLD"), EnvVar::Setting("run.resume_threshold".into()));
        assert_eq!(env_setting("PROMOTE_TO_PROD"), EnvVar::Other);
        assert_eq!(env_setting("PROMOTE_BACKNED__ROOT"), EnvVar::Setting("backned.root".into()));
        assert_eq!(env_setting("PROMOTE_BIN"), EnvVar::NearMiss("run"));
        assert_eq!(env_setting("PROMOTE_BIN"), EnvVar::NearMiss("run"));
    }
}
