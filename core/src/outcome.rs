//! What a successful promotion reports.

use crate::key::Key;
use crate::verify::Sha256;

/// Proof of what now stands at a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: Sha256,
    /// The backend's version of it, if the backend has versions.
    pub version: Option<String>,
}

/// A successful promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// These bytes were published at the key by this call.
    Promoted(Receipt),
    /// Identical bytes were already at the key (create-only rerun); nothing changed.
    AlreadyPresent(Receipt),
}

impl Outcome {
    /// The receipt, whichever the outcome.
    pub fn receipt(&self) -> &Receipt {
        match self {
            Self::Promoted(r) | Self::AlreadyPresent(r) => r,
        }
    }

    /// `"promoted"` or `"already-present"`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Promoted(_) => "promoted",
            Self::AlreadyPresent(_) => "already-present",
        }
    }
}
