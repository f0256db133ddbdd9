//! The one error type every backend and the CLI speak.
//!
//! Variants carry meaning, not origin: a caller decides what to do from the variant alone
//! (`Conflict` → someone else owns that key; `DigestMismatch` → the source is not what you
//! expected; `is_retryable()` → try again later). Each backend keeps its own private error and
//! converts it into this one in a single place.

use std::io;

use crate::verify::Sha256;

/// A boxed error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while staging, verifying, promoting or reading an object.
///
/// Messages are one line: what happened, to which key, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key breaks a naming rule, or resolves through something promote never follows.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A create-only publish found the key taken. Backends return this from
    /// [`StagedWrite::publish`](crate::StagedWrite::publish); core resolves it into
    /// [`Outcome::AlreadyPresent`](crate::Outcome::AlreadyPresent) or [`Error::Conflict`].
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The taken key.
        key: String,
    },
    /// The key holds different content (or something in the way); nothing was replaced.
    #[error("key {key:?} conflicts: {detail}; nothing was replaced")]
    Conflict {
        /// The contested key.
        key: String,
        /// What is there and why that blocks the write.
        detail: String,
    },
    /// A compare-and-swap found another version than the one expected; nothing was replaced.
    #[error("key {key:?} is no longer at version {expected}; nothing was replaced (re-read it and retry)")]
    VersionMismatch {
        /// The key.
        key: String,
        /// The version the caller expected.
        expected: String,
    },
    /// The bytes' SHA-256 is not the expected one; nothing was published.
    #[error("{key:?}: SHA-256 mismatch: expected {expected}, got {actual}; nothing was published")]
    DigestMismatch {
        /// The key being written or read.
        key: String,
        /// The digest the caller or the stored object promised.
        expected: Sha256,
        /// The digest of the bytes that actually flowed.
        actual: Sha256,
    },
    /// The byte count is not the expected one; nothing was published.
    #[error("{key:?}: size mismatch: expected {expected} bytes, got {actual}; nothing was published")]
    SizeMismatch {
        /// The key being written or read.
        key: String,
        /// The size the caller or the stored object promised.
        expected: u64,
        /// The bytes that actually flowed.
        actual: u64,
    },
    /// The backend cannot do this safely, so core refuses before any byte moves.
    #[error("the {backend} backend does not support {operation}")]
    Unsupported {
        /// What was asked (e.g. "compare-and-swap (ReplaceIfVersion)").
        operation: String,
        /// Which backend, and why if useful.
        backend: String,
    },
    /// A stored object's bytes are not what its stored digest (or the caller) says they are:
    /// it was damaged or changed after it was promoted. Nothing was changed by the read.
    #[error("{key:?}: the stored object does not match {detail}")]
    Damaged {
        /// The key read.
        key: String,
        /// What it was checked against and what was found.
        detail: String,
    },
    /// The object was changed by something other than promote since it was promoted (local:
    /// its size or modification time differ from those recorded with its digest), so its
    /// stored digest no longer vouches for it.
    #[error("{key:?} was modified since it was promoted; its stored digest no longer applies")]
    Modified {
        /// The key.
        key: String,
    },
    /// No object at that key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// The configuration is wrong: names the setting and where it came from.
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong and where.
        message: String,
    },
    /// A setting's value cannot work (an endpoint that is no URL, a bucket name S3 refuses):
    /// caught before any request. A backend names the setting by its own table (`backend.X`);
    /// [`Error::located`] names it by its place in the configuration and its source.
    #[error("{setting} = {value:?}{}: {reason}", from_origin(origin))]
    BadSetting {
        /// The dotted setting, e.g. `targets.archive.endpoint`.
        setting: String,
        /// The value as given.
        value: String,
        /// Where the value came from (a file, a variable), when known.
        origin: Option<String>,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// The store the settings point at does not exist (an S3 bucket); nothing was read or
    /// written. Known from the server's answer (S3's `NoSuchBucket`), never from its wording.
    #[error("{store} does not exist at {location} ({setting}{}); create it or correct the setting", from_comma(origin))]
    StorageMissing {
        /// What is missing, e.g. `bucket "archive"`.
        store: String,
        /// Where it was looked for (the endpoint).
        location: String,
        /// The setting that names it, e.g. `targets.archive.bucket`.
        setting: String,
        /// Where that setting's value came from, when known.
        origin: Option<String>,
    },
    /// A local I/O operation failed.
    #[error("{context}")]
    Io {
        /// What promote was doing, naming the key or path.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A remote backend failed.
    #[error("{backend}: {context}")]
    Backend {
        /// Which backend.
        backend: String,
        /// What promote was doing, naming the key.
        context: String,
        /// Whether repeating the same call may succeed.
        retryable: bool,
        /// The client library's error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    /// An [`Error::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config { message: message.into() }
    }

    /// Whether repeating the same operation may succeed (a transient network or server fault).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            Self::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// ` (from ORIGIN)`, or nothing.
fn from_origin(origin: &Option<String>) -> String {
    origin.as_ref().map(|o| format!(" (from {o})")).unwrap_or_default()
}

/// `, from ORIGIN`, or nothing.
fn from_comma(origin: &Option<String>) -> String {
    origin.as_ref().map(|o| format!(", from {o}")).unwrap_or_default()
}

impl Error {
    /// Names a backend's setting by its place in the configuration: in a
    /// [`BadSetting`](Error::BadSetting) or [`StorageMissing`](Error::StorageMissing),
    /// `backend.bucket` becomes `targets.archive.bucket` for `table = "targets.archive"`, and a
    /// missing origin is asked of `origin_of` (given the full dotted setting). Every other error
    /// comes back unchanged. A [`Config`](Error::Config) message's settings are renamed the same
    /// way (`backend.access_key_id` → `targets.archive.access_key_id`).
    #[must_use]
    pub fn located(mut self, table: &str, origin_of: impl FnOnce(&str) -> Option<String>) -> Self {
        if let Self::Config { message } = &mut self {
            *message = in_table(message, table);
            return self;
        }
        if let Self::BadSetting { setting, origin, .. } | Self::StorageMissing { setting, origin, .. } = &mut self {
            if let Some(rest) = setting.strip_prefix("backend.") {
                *setting = format!("{table}.{rest}");
            }
            if origin.is_none() {
                *origin = origin_of(setting);
            }
        }
        self
    }
}

/// `message` with each setting a backend names by its own table (`backend.bucket`) named by its
/// place in the configuration, `table` (`targets.archive.bucket`). Only whole names are renamed:
/// `backend.` at the start of a word, followed by a setting's name.
pub(crate) fn in_table(message: &str, table: &str) -> String {
    const OWN: &str = "backend.";
    if table == "backend" {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(OWN) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + OWN.len()..].chars().next();
        let word_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        out.push_str(&rest[..at]);
        if word_start && after.is_some_and(|c| c.is_ascii_lowercase()) {
            out.push_str(table);
            out.push('.');
        } else {
            out.push_str(OWN);
        }
        rest = &rest[at + OWN.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_renamed_but_other_words_are_not() {
        let message = "set backend.secret_access_key_file (or backend.secret_access_key); the backend. Xbackend.a";
        assert_eq!(
            in_table(message, "targets.a"),
            "set targets.a.secret_access_key_file (or targets.a.secret_access_key); the backend. Xbackend.a"
        );
        assert_eq!(in_table(message, "backend"), message);
    }
}
