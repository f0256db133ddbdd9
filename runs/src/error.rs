//! What stops a run as a whole (an item's failure does not: see [`crate::Failure`]).

use std::path::PathBuf;

use crate::ledger::LedgerError;
use crate::shards::LeaseError;

/// Why a run could not start or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The manifest file could not be read.
    #[error("cannot read the manifest {}: {error}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why (in the message, so no separate cause).
        error: std::io::Error,
    },
    /// The store refused the run (it cannot publish create-only, say).
    #[error(transparent)]
    Store(#[from] promote_core::Error),
    /// A directory of the run directory could not be created.
    #[error("creating {}", path.display())]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ledger failed (it cannot be opened, or a write failed mid-run).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Shard leases failed (the bucket's control objects, or the ledger's lease table).
    #[error(transparent)]
    Lease(Box<LeaseError>),
}

impl From<LeaseError> for RunError {
    fn from(err: LeaseError) -> Self {
        Self::Lease(Box::new(err))
    }
}

/// `err` and its causes on one line (for logs), without repeating a cause a message includes.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    with_causes(err.to_string(), err.source())
}

/// `text`, then each of `cause` and its causes that `text` does not already say, `: `-separated.
pub(crate) fn with_causes(mut text: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
