//! The backend registry: `backend.kind` in the configuration picks a plugin.
//!
//! Adding a backend is one crate plus one [`Registry::register`] line in the binary.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use figment::Figment;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::Backend;
use crate::error::Error;

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

/// Reads a backend's configuration from the `backend` table of a figment.
pub type LoadFn = fn(&Figment) -> Result<Box<dyn BackendConfig>, Error>;

/// Extracts `C` from the `backend` table. Typos are errors naming the key and the file, as
/// long as `C` is `#[serde(deny_unknown_fields)]`.
///
/// # Errors
///
/// [`Error::Config`] naming each bad key and where it came from.
pub fn load<C>(figment: &Figment) -> Result<Box<dyn BackendConfig>, Error>
where
    C: BackendConfig + DeserializeOwned + Serialize + 'static,
{
    let config: C = figment.focus("backend").extract().map_err(|e| Error::from_figment(e, "backend"))?;
    Ok(Box::new(config))
}

/// Backends by kind.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, LoadFn>,
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
        let kind: String = figment.extract_inner("backend.kind").map_err(|e| Error::from_figment(e, "backend.kind"))?;
        let Some(load) = self.kinds.get(kind.as_str()) else {
            let source = figment
                .find_metadata("backend.kind")
                .map(|m| format!(" (from {})", crate::error::origin(m, "backend.kind")))
                .unwrap_or_default();
            let known: Vec<_> = self.kinds().collect();
            return Err(Error::config(format!(
                "unknown backend kind {kind:?}{source}; known kinds: {}",
                known.join(", ")
            )));
        };
        load(figment)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds()).finish()
    }
}
