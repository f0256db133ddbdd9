//! Publish modes and the capabilities that decide which a backend may be asked for.

use std::fmt;

use crate::error::Error;

/// How a promotion treats an object already at the key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Never replace anything (the default). A taken key resolves to
    /// [`Outcome::AlreadyPresent`](crate::Outcome::AlreadyPresent) when its bytes are identical,
    /// else [`Error::Conflict`].
    #[default]
    Create,
    /// Overwrite whatever is there, atomically.
    Replace,
    /// Overwrite only if the object is still at this version (compare-and-swap); otherwise
    /// [`Error::VersionMismatch`].
    ReplaceIfVersion(String),
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create => f.write_str("create-only"),
            Self::Replace => f.write_str("replace"),
            Self::ReplaceIfVersion(v) => write!(f, "replace-if-version {v}"),
        }
    }
}

/// What a backend can do safely. Declared by each backend, checked once, in core, before any
/// byte moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Create-only publish that is atomic against concurrent writers (no check-then-act).
    /// `None` when it is; `Some(reason)` when it is not, e.g. a server that ignores
    /// `If-None-Match`.
    pub create_refused: Option<String>,
    /// Atomic overwrite.
    pub replace: bool,
    /// Compare-and-swap on a version.
    pub replace_if_version: bool,
    /// The SHA-256 is stored with each object, so `head` returns it without reading data.
    pub stored_digest: bool,
    /// Published objects survive power loss once `promote` returns.
    pub durable: bool,
    /// Staged data lives outside the writer's process, so a crash can leave some behind for
    /// [`Backend::sweep_staging`](crate::Backend::sweep_staging) to find. `false` for backends
    /// that stage in the writer's memory only.
    pub staging_outlives_writer: bool,
}

impl Capabilities {
    /// Whether `mode` is offered.
    pub fn supports(&self, mode: &Mode) -> bool {
        match mode {
            Mode::Create => self.create_refused.is_none(),
            Mode::Replace => self.replace,
            Mode::ReplaceIfVersion(_) => self.replace_if_version,
        }
    }

    /// Refuses a mode this backend does not offer.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] naming the mode and the backend, with the reason.
    pub fn check(&self, mode: &Mode, backend: &str) -> Result<(), Error> {
        if self.supports(mode) {
            return Ok(());
        }
        let operation = match mode {
            Mode::Create => format!(
                "create-only promotion ({}); refusing rather than risking an overwrite — pass \
                 --replace to opt in to overwrite semantics explicitly",
                self.create_refused.as_deref().unwrap_or("not atomic")
            ),
            Mode::Replace => "replace".to_owned(),
            Mode::ReplaceIfVersion(_) => "compare-and-swap (replace-if-version)".to_owned(),
        };
        Err(Error::Unsupported { operation, backend: backend.to_owned() })
    }
}
