//! OpenDAL's errors in core's terms, in one place.

use opendal::ErrorKind;
use promote_core::Error;

/// Maps `e`, raised while `what` (e.g. "reading") `key`, to core's error. Conditions are
/// mapped by the caller, which knows which condition it sent (see [`refused`]).
pub(crate) fn map(e: opendal::Error, scheme: &str, key: &str, what: &str) -> Error {
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound { key: key.to_owned() },
        ErrorKind::ConfigInvalid => Error::config(format!("OpenDAL {scheme} service: {e}")),
        _ => Error::Backend {
            backend: format!("opendal {scheme}"),
            context: format!("{what} {key:?}"),
            retryable: e.is_temporary() || matches!(e.kind(), ErrorKind::RateLimited) || conflicting(&e),
            source: Box::new(e),
        },
    }
}

/// A refused conditional write: `ConditionNotMatch` (412) or `AlreadyExists` (Azure's 409
/// BlobAlreadyExists) for a create-only write means the key is taken.
pub(crate) fn taken(e: &opendal::Error) -> bool {
    matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists)
}

/// S3's 409 ConditionalRequestConflict: another conditional write on the same key is in flight.
/// It says nothing about the key, so it is retried. OpenDAL keeps the S3 error code in the
/// error's message (it parses it from the response body), so that is where it is looked for.
pub(crate) fn conflicting(e: &opendal::Error) -> bool {
    e.kind() == ErrorKind::Unexpected && e.to_string().contains("ConditionalRequestConflict")
}

/// S3's 501 NotImplemented: the server does not support a header we sent (LocalStack and
/// `If-Match` on DeleteObject). Found, like [`conflicting`], by the S3 error code OpenDAL keeps
/// in the message.
pub(crate) fn not_implemented(e: &opendal::Error) -> bool {
    e.kind() == ErrorKind::Unexpected && e.to_string().contains("code: \"NotImplemented\"")
}
