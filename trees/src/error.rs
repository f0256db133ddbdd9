//! Why an object (or a whole operation) failed.

use std::path::PathBuf;

/// A failure of one object, or of listing what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local file or directory could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why (in the message).
        error: std::io::Error,
    },
    /// A file name that cannot be part of a key.
    #[error("the file name {}", why.as_str())]
    BadName {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: BadName,
    },
    /// The destination file exists and replacing it was not asked for.
    #[error("{} exists", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// No temporary file could be created in the destination's directory.
    #[error("cannot write in {}: {error}", dir.display())]
    Unwritable {
        /// The directory.
        dir: PathBuf,
        /// Why (in the message).
        error: std::io::Error,
    },
    /// Writing a destination file (or creating its directory) failed.
    #[error("{what} {}", path.display())]
    Local {
        /// `writing`, `creating`.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The store failed or refused (a conflict, a digest mismatch, a missing object, …).
    #[error(transparent)]
    Store(#[from] promote_core::Error),
}

/// What makes a file name unusable as part of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadName {
    /// Not valid UTF-8.
    NotUtf8,
    /// A backslash, which keys cannot hold.
    Backslash,
}

impl BadName {
    /// In words, after "the file name".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotUtf8 => "is not valid UTF-8",
            Self::Backslash => "contains a backslash, which keys cannot",
        }
    }
}
