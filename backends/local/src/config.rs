//! `[backend]` settings for `kind = "local"`.

use std::path::PathBuf;
use std::sync::Arc;

use promote_core::{Backend, Error, async_trait};
use promote_settings::BackendConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LocalBackend;

/// Local-disk settings. Unknown keys are errors.
///
/// ```toml
/// [backend]
/// kind = "local"
/// root = "./promote-data"   # created if missing
/// durability = "each"       # or "batch" (group commit), or "none" (no fsync: scratch data only)
/// file_mode = "0644"        # permissions of published files (exact: the umask does not apply)
/// dir_mode = "0755"         # permissions of directories promote creates (exact)
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Always `"local"`.
    #[serde(default = "kind")]
    pub kind: String,
    /// Directory that holds the objects; staging lives in `<root>/.promote/staging`. A relative
    /// path read from a config file is relative to that file's directory (as in Cargo); from
    /// the environment or a flag, to the current directory. Must not be empty.
    #[serde(default = "root", deserialize_with = "root_in")]
    #[schemars(with = "PathBuf")]
    pub root: PathBuf,
    /// Whether publishing waits for the disk.
    #[serde(default)]
    pub durability: Durability,
    /// Permission bits of published files, octal. Exact: set with `fchmod`, so the umask does not
    /// apply.
    #[serde(default = "file_mode", serialize_with = "octal_out", deserialize_with = "octal_in")]
    #[schemars(schema_with = "octal_schema")]
    pub file_mode: u32,
    /// Permission bits of directories promote creates (the root and the directories of keys),
    /// octal. Exact, like `file_mode`. Directories that already exist are left as they are.
    #[serde(default = "dir_mode", serialize_with = "octal_out", deserialize_with = "octal_in")]
    #[schemars(schema_with = "octal_schema")]
    pub dir_mode: u32,
}

/// How hard publishing works to survive power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Each object on its own: fsync the staged file, publish, fsync the parent directory and
    /// every directory above it up to the root. A promoted object survives power loss once its
    /// receipt is out. (`"full"` is accepted as an older name.)
    #[default]
    #[serde(alias = "full")]
    Each,
    /// Group commit (see [`promote_core::kit::group_commit`]): concurrent promotions are staged
    /// without an fsync each, made durable together by one `syncfs` of the root's filesystem,
    /// then published with no-replace renames, then made durable again by a second `syncfs`.
    /// The same guarantee as `each` — a receipt means the object survives power loss, and a crash
    /// leaves every key absent or complete — for far fewer flushes.
    Batch,
    /// No fsync at all. Still atomic (nobody sees a partial object), but a power loss may lose
    /// recently promoted objects, or leave them empty. For scratch data you can re-create.
    None,
}

impl Durability {
    /// Whether promotions wait for the disk at all (`each` or `batch`).
    pub fn syncs(self) -> bool {
        self != Self::None
    }

    /// What a receipt guarantees after a power loss, in one line (for `promote doctor`).
    pub fn after_power_loss(self) -> &'static str {
        match self {
            Self::Each => {
                "each: every object fsynced, renamed, its directories fsynced before its receipt; \
                 after a power loss every reported object is there, every other key absent or complete"
            }
            Self::Batch => {
                "batch: objects staged without an fsync each, one syncfs, renamed, a second syncfs, \
                 then the receipts; after a power loss every reported object is there, \
                 every other key absent or complete (unreported ones may be lost; rerun the put)"
            }
            Self::None => {
                "none: no fsync; after a power loss reported objects may be missing or empty \
                 (atomic to readers, not durable; scratch data only)"
            }
        }
    }
}

fn kind() -> String {
    "local".into()
}
fn root() -> PathBuf {
    "./promote-data".into()
}
fn file_mode() -> u32 {
    0o644
}
fn dir_mode() -> u32 {
    0o755
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self { kind: kind(), root: root(), durability: Durability::Each, file_mode: file_mode(), dir_mode: dir_mode() }
    }
}

impl LocalConfig {
    /// Defaults, rooted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), ..Self::default() }
    }
}

/// A path resolved against the config file it was read from (figment's `RelativePathBuf`);
/// an empty path is an error rather than the current directory by accident.
fn root_in<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = figment::value::magic::RelativePathBuf::deserialize(d)?;
    if path.original().as_os_str().is_empty() {
        return Err(serde::de::Error::custom(
            "the root is empty; set it to the directory that holds the objects (e.g. \"./promote-data\")",
        ));
    }
    Ok(path.relative())
}

/// An octal mode as text (`"0644"`) or digits (`644`).
fn octal_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "integer"], "description": "octal permission bits, e.g. \"0644\"" })
}

fn octal_out<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// Accepts `"0644"`, `"644"`, `"0o644"`, or the integer 644 (digits read as octal, since that is
/// what `PROMOTE_BACKEND__FILE_MODE=0644` becomes).
fn octal_in<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Str(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Int(n) => n.to_string(),
        Raw::Str(s) => s,
    };
    let digits = text.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(serde::de::Error::custom(format!("{text:?} is not an octal permission mode like \"0644\""))),
    }
}

#[async_trait]
impl BackendConfig for LocalConfig {
    fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    async fn open(&self) -> Result<Arc<dyn Backend>, Error> {
        let config = self.clone();
        let backend = tokio::task::spawn_blocking(move || LocalBackend::open(config))
            .await
            .map_err(|e| Error::io("opening the local backend", std::io::Error::other(e)))??;
        Ok(Arc::new(backend))
    }

    async fn open_existing(&self) -> Result<Arc<dyn Backend>, Error> {
        let config = self.clone();
        let backend = tokio::task::spawn_blocking(move || LocalBackend::open_existing(config))
            .await
            .map_err(|e| Error::io("opening the local backend", std::io::Error::other(e)))??;
        Ok(Arc::new(backend))
    }
}
