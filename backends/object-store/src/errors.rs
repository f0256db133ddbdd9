//! The one place object_store's errors become promote's. Whether a failure is worth retrying
//! is decided from the HTTP status and S3 error code of the response (see `faults`) or the
//! kind of transport failure, never from an error message's text.

use object_store::client::HttpErrorKind;
use promote_core::Error;

use crate::faults;

/// A failed response the server may answer differently later (5xx, 429, throttling, a
/// conflicting conditional write), or a transport failure (connection refused or reset,
/// timeout). Everything else, a plain 4xx first of all, is final.
pub(crate) fn is_retryable(err: &object_store::Error) -> bool {
    if let Some(fault) = faults::find(err) {
        return fault.is_retryable();
    }
    matches!(
        faults::transport(err),
        Some(HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted)
    )
}

/// Maps an object_store error about `key` while doing `what`.
pub(crate) fn map(err: object_store::Error, backend: &str, key: &str, what: &str) -> Error {
    use object_store::Error as E;
    if let Some(fault) = faults::find(&err).filter(|f| f.is_missing_bucket()) {
        return missing_bucket(fault);
    }
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
            let retryable = is_retryable(&other);
            Error::Backend {
                backend: backend.to_owned(),
                context: format!("{what} {key:?}"),
                retryable,
                source: Box::new(other),
            }
        }
    }
}

/// S3's `NoSuchBucket` as [`Error::StorageMissing`]: the bucket and endpoint from the answer;
/// the setting as the backend knows it (the caller's configuration names its table and source).
fn missing_bucket(fault: &faults::Fault) -> Error {
    Error::StorageMissing {
        store: fault.bucket.as_ref().map_or_else(|| "the bucket".to_owned(), |b| format!("bucket {b:?}")),
        location: fault.endpoint.clone().unwrap_or_else(|| "the endpoint".to_owned()),
        setting: "backend.bucket".into(),
        origin: None,
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use object_store::client::HttpError;

    use super::*;
    use crate::faults::Fault;

    fn with_fault(status: u16, code: &str) -> object_store::Error {
        let fault = Fault {
            status: StatusCode::from_u16(status).unwrap(),
            code: Some(code.into()),
            message: None,
            bucket: None,
            endpoint: None,
        };
        object_store::Error::Generic { store: "S3", source: Box::new(HttpError::new(HttpErrorKind::Unknown, fault)) }
    }

    fn retryable(err: object_store::Error) -> bool {
        map(err, "s3", "k", "writing").is_retryable()
    }

    #[test]
    fn retryable_comes_from_status_code_and_transport_kind() {
        assert!(retryable(with_fault(503, "SlowDown")));
        assert!(retryable(with_fault(500, "InternalError")));
        assert!(retryable(with_fault(429, "TooManyRequests")));
        assert!(retryable(with_fault(409, "ConditionalRequestConflict")));
        assert!(!retryable(with_fault(400, "InvalidArgument")), "a plain 4xx is final");
        assert!(!retryable(with_fault(400, "EntityTooLarge")));
        let timeout = HttpError::new(HttpErrorKind::Timeout, std::io::Error::other("slow"));
        assert!(retryable(object_store::Error::Generic { store: "S3", source: Box::new(timeout) }));
        let decode = HttpError::new(HttpErrorKind::Decode, std::io::Error::other("bad xml"));
        assert!(!retryable(object_store::Error::Generic { store: "S3", source: Box::new(decode) }));
        // Words in a message decide nothing.
        let text = "Server returned non-2xx status code: 503 Service Unavailable: timed out connection";
        assert!(!retryable(object_store::Error::Generic { store: "S3", source: text.into() }));
        assert!(!retryable(object_store::Error::PermissionDenied { path: "k".into(), source: "403".into() }));
    }

    #[test]
    fn no_such_bucket_is_storage_missing_not_a_missing_key() {
        match map(with_fault(404, "NoSuchBucket"), "s3", "k", "reading") {
            Error::StorageMissing { setting, .. } => assert_eq!(setting, "backend.bucket"),
            other => panic!("{other:?}"),
        }
    }
}
