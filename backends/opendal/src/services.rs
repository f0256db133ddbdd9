//! Which OpenDAL services promote trusts with create-only, and why.
//!
//! OpenDAL services declare `write_with_if_not_exists`, but a declaration says nothing about
//! *how*: OpenDAL's `fs` service checks whether the file exists and then renames a temporary
//! file over it, so two racing writers can both "win". promote only offers create-only
//! ([`Mode::Create`](promote_core::Mode::Create)) for services on [`ATOMIC`], each with the
//! reason its conditional write is decided by the server in one step. Everything else gets the
//! capability refused, with [`refusal`] saying what to use instead.

/// A service whose conditional writes promote trusts.
#[derive(Clone, Copy, Debug)]
pub struct Atomic {
    /// The OpenDAL scheme (`"s3"`, `"azblob"`, …).
    pub scheme: &'static str,
    /// Why its create-only write is atomic.
    pub why: &'static str,
    /// Whether a multi-part commit (S3 CompleteMultipartUpload, Azure Put Block List) is
    /// serialized per key with promote's claims before it is sent: `true` where the commit's
    /// condition has been seen, or may be, checked separately from the commit on some servers.
    pub serialize_multipart: bool,
}

/// The allowlist. A service is here only when its conditional create is decided atomically by
/// the storage itself.
pub const ATOMIC: &[Atomic] = &[
    Atomic {
        scheme: "s3",
        why: "PutObject and CompleteMultipartUpload with If-None-Match: * are decided by the server \
              (AWS S3 since 2024); LocalStack checks a multipart completion's condition before \
              assembling it, so multipart commits are also serialized with claims",
        serialize_multipart: true,
    },
    Atomic {
        scheme: "azblob",
        why: "Put Blob and Put Block List with If-None-Match: * are decided by the Blob service; \
              block-list commits are also serialized with claims because the emulator's commit \
              has not been proven atomic",
        serialize_multipart: true,
    },
    Atomic {
        scheme: "gcs",
        why: "uploads with ifGenerationMatch=0 are decided by Cloud Storage atomically, for \
              single and resumable uploads alike",
        serialize_multipart: false,
    },
    Atomic {
        scheme: "memory",
        why: "one map behind one mutex in this process: the check and the insert happen under \
              the same lock",
        serialize_multipart: false,
    },
];

/// The allowlist entry for `scheme`, if any.
pub fn atomic(scheme: &str) -> Option<&'static Atomic> {
    ATOMIC.iter().find(|a| a.scheme == scheme)
}

/// Why create-only is refused on `scheme`, naming what to use instead.
pub fn refusal(scheme: &str) -> String {
    let instead = match scheme {
        "fs" => {
            "OpenDAL's fs service checks for the file and then renames over it, which races; \
                 use kind = \"local\" for a filesystem (no-replace rename)"
        }
        _ => "its conditional write is not on promote's list of atomic services",
    };
    format!("the OpenDAL service {scheme:?} cannot create-only safely: {instead}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_is_not_trusted_and_the_refusal_says_what_to_use() {
        assert!(atomic("fs").is_none());
        let why = refusal("fs");
        assert!(why.contains("\"fs\"") && why.contains("kind = \"local\""), "{why}");
        for scheme in ["s3", "azblob", "gcs", "memory"] {
            assert!(atomic(scheme).is_some(), "{scheme}");
        }
    }
}
