//! The one place object_store's errors become promote's.

use promote_core::Error;

/// Maps an object_store error about `key` while doing `what`.
pub(crate) fn map(err: object_store::Error, backend: &str, key: &str, what: &str) -> Error {
    use object_store::Error as E;
    match err {
        E::NotFound { .. } => Error::NotFound { key: key.to_owned() },
        E::AlreadyExists { .. } => Error::AlreadyExists { key: key.to_owned() },
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::Backend {
            backend: backend.to_owned(),
            context: format!("{what} {key:?}: access denied; check the credentials and the bucket policy"),
            retryable: false,
            source: Box::new(err),
        },
        other => {
            let text = other.to_string();
            let retryable = [
                "timed out",
                "timeout",
                "connection",
                "error sending request",
                "Server returned",
                "BadDigest",
                "SlowDown",
                "InternalError",
                "ServiceUnavailable",
            ]
            .iter()
            .any(|t| text.contains(t));
            Error::Backend {
                backend: backend.to_owned(),
                context: format!("{what} {key:?}"),
                retryable,
                source: Box::new(other),
            }
        }
    }
}
