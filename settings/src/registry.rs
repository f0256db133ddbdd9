//! The backend registry: `kind` in a backend table (`[backend]`, or a named target's
//! `[targets.NAME]`) picks a plugin.
//!
//! Adding a backend is one crate plus one [`Registry::register`] line in the binary.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use figment::Figment;
use serde::Serialize;
use serde::de::DeserializeOwned;

use promote_core::{Backend, Error};

use crate::config_error::{config_error, origin, setting_origin};

/// A backend's parsed configuration: what it is (for `config show`) and how to open it.
#[async_trait]
pub trait BackendConfig: Send + Sync + fmt::Debug {
    /// The effective settings, defaults filled in, as a JSON object (secrets included: the
    /// caller redacts them).
    fn to_value(&self) -> serde_json::Value;

    /// Opens the backend (creates the root, builds the client, …).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for settings that turn out unusable; I/O or backend errors.
    async fn open(&self) -> Result<Arc<dyn Backend>, Error>;

    /// Checks everything that can be checked without touching storage (numbers in range,
    /// required settings present, secret files readable), for `promote config validate`.
    /// Returns every problem found: [`Error::Config`] (one line naming the setting as
    /// `backend.X`) or [`Error::BadSetting`]. Default: none.
    fn check(&self) -> Vec<Error> {
        Vec::new()
    }

    /// Settings left unset in the configuration whose effective value comes from a standard
    /// environment variable (S3: `AWS_REGION`, `AWS_BUCKET`, …): `(setting, variable, value)`,
    /// so `config show` can say where they came from. Never secrets. Default: none.
    fn environment_values(&self) -> Vec<(String, String, String)> {
        Vec::new()
    }

    /// Opens the backend for commands that only read (list, read, verify, a dry-run sweep):
    /// creates nothing, and a store that does not exist is an error rather than a new empty
    /// one. Writing through it may fail where [`BackendConfig::open`] would have prepared the
    /// store. Default: [`BackendConfig::open`], for backends whose opening creates nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when there is no store where the settings point; otherwise as
    /// [`BackendConfig::open`].
    async fn open_existing(&self) -> Result<Arc<dyn Backend>, Error> {
        self.open().await
    }
}

/// Reads a backend's configuration from a table of a figment (`backend`, `targets.archive`).
pub type LoadFn = fn(&Figment, &str) -> Result<Box<dyn BackendConfig>, Box<figment::Error>>;

/// Extracts `C` from the table at `table` (a dotted path). Typos are errors naming the key
/// (relative to the table) and the file, as long as `C` is `#[serde(deny_unknown_fields)]`.
///
/// # Errors
///
/// figment's errors; [`Registry::load_table`] turns them into [`Error::Config`].
pub fn load<C>(figment: &Figment, table: &str) -> Result<Box<dyn BackendConfig>, Box<figment::Error>>
where
    C: BackendConfig + DeserializeOwned + Serialize + 'static,
{
    let config: C = figment.focus(table).extract().map_err(Box::new)?;
    Ok(Box::new(config))
}

/// A backend table's JSON Schema (for `promote config schema`), as a JSON value.
pub type SchemaFn = fn() -> serde_json::Value;

/// Backends by kind.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, LoadFn>,
    schemas: BTreeMap<&'static str, SchemaFn>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `kind`; a later registration of the same kind replaces the earlier one.
    pub fn register(&mut self, kind: &'static str, load: LoadFn) -> &mut Self {
        self.kinds.insert(kind, load);
        self
    }

    /// Describes `kind`'s table with a JSON Schema (for editors); kinds without one are
    /// described as any table with that `kind`.
    pub fn describe(&mut self, kind: &'static str, schema: SchemaFn) -> &mut Self {
        self.schemas.insert(kind, schema);
        self
    }

    /// Each registered kind's table schema, sorted by kind.
    pub fn schemas(&self) -> Vec<(&'static str, serde_json::Value)> {
        self.kinds()
            .map(|kind| {
                let schema = self.schemas.get(kind).map_or_else(
                    || serde_json::json!({ "type": "object", "properties": { "kind": { "const": kind } }, "required": ["kind"] }),
                    |schema| schema(),
                );
                (kind, schema)
            })
            .collect()
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// Reads `backend.kind` and the rest of the `backend` table.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a missing or unknown kind (listing the known ones) or bad settings.
    pub fn load(&self, figment: &Figment) -> Result<Box<dyn BackendConfig>, Error> {
        self.load_table(figment, "backend")
    }

    /// Reads `<table>.kind` and the rest of the table at `table` (a dotted path, e.g.
    /// `targets.archive`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a missing or unknown kind (listing the known ones) or bad settings.
    pub fn load_table(&self, figment: &Figment, table: &str) -> Result<Box<dyn BackendConfig>, Error> {
        let kind_path = format!("{table}.kind");
        let kind: String = match figment.extract_inner(&kind_path) {
            Ok(kind) => kind,
            Err(e) if e.missing() => {
                let known: Vec<_> = self.kinds().collect();
                return Err(Error::config(format!("{kind_path} is not set; known kinds: {}", known.join(", "))));
            }
            Err(e) => return Err(config_error(e, &kind_path)),
        };
        let Some(load) = self.kinds.get(kind.as_str()) else {
            let source = figment
                .find_metadata(&kind_path)
                .map(|m| format!(" (from {})", origin(m, &kind_path)))
                .unwrap_or_default();
            let known: Vec<_> = self.kinds().collect();
            return Err(Error::config(format!(
                "unknown backend kind {kind:?} in {kind_path}{source}; known kinds: {}",
                known.join(", ")
            )));
        };
        load(figment, table).map_err(|e| config_error(*e, table))
    }
}

impl Registry {
    /// Every problem in the backend table at `table` (a dotted path): a missing or unknown kind,
    /// each bad key (see [`crate::problems::all`]), then what [`BackendConfig::check`] finds.
    /// Touches no storage.
    pub fn problems(&self, figment: &Figment, table: &str) -> Vec<crate::problems::Problem> {
        let kind_path = format!("{table}.kind");
        let config_problem = |key: &str, err: Error| crate::problems::Problem {
            key: key.to_owned(),
            message: err.to_string().trim_start_matches("configuration error: ").to_owned(),
        };
        let load = match figment.extract_inner::<String>(&kind_path) {
            Ok(kind) if self.kinds.contains_key(kind.as_str()) => self.kinds[kind.as_str()],
            _ => match self.load_table(figment, table) {
                Err(err) => return vec![config_problem(&kind_path, err)],
                Ok(_) => return Vec::new(),
            },
        };
        let (config, mut problems) = crate::problems::all(figment, table, |f| load(f, table));
        if let Some(config) = config {
            for err in config.check() {
                // `located` renames the settings a `Config` message names by the backend's own
                // table (`backend.X` → `targets.NAME.X`) and leaves its origin alone.
                let found = match err.located(table, |key| setting_origin(figment, key)) {
                    Error::Config { message } => crate::problems::Problem { key: table.to_owned(), message },
                    other => {
                        let key = match &other {
                            Error::BadSetting { setting, .. } => setting.clone(),
                            _ => table.to_owned(),
                        };
                        crate::problems::Problem { key, message: other.to_string() }
                    }
                };
                // A key already reported (`bucket = 42`: not text) is not reported again as
                // missing once dropped.
                if !problems.iter().any(|p| p.key != table && names(&found, &p.key)) {
                    problems.push(found);
                }
            }
        }
        problems
    }
}

/// Whether `problem` is about the setting `key` (its key, or the key as a whole name in its
/// message).
fn names(problem: &crate::problems::Problem, key: &str) -> bool {
    problem.key == key
        || problem.message.match_indices(key).any(|(at, _)| {
            let after = problem.message[at + key.len()..].chars().next();
            after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds()).finish()
    }
}
