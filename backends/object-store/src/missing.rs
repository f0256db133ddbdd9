//! A missing key or a missing bucket? A HEAD's 404 has no body, so it cannot say which. On that
//! answer, until the bucket has been seen once, one listing under the key asks: a missing bucket
//! answers `NoSuchBucket` (a typed fault, see `faults`), which then is the error. Anything else
//! leaves the key missing, and marks the bucket seen so later 404s cost nothing more.

use std::sync::atomic::Ordering;

use object_store::path::Path;
use promote_core::Error;

use crate::backend::Inner;
use crate::errors;
use crate::faults::{self, Fault};

/// The error for a failed HEAD of `path` (the object behind `key`) while doing `what`.
pub(crate) async fn after_head(inner: &Inner, path: &Path, err: object_store::Error, key: &str, what: &str) -> Error {
    if matches!(err, object_store::Error::NotFound { .. }) && !inner.bucket_seen.load(Ordering::Relaxed) {
        match inner.store.list_with_delimiter(Some(path)).await {
            Ok(_) => inner.bucket_seen.store(true, Ordering::Relaxed),
            Err(listing) if faults::find(&listing).is_some_and(Fault::is_missing_bucket) => {
                return errors::map(listing, inner.kind, key, what);
            }
            Err(_) => {}
        }
    }
    errors::map(err, inner.kind, key, what)
}
