//! One conditional multipart completer at a time per key.
//!
//! S3 checks `If-None-Match` / `If-Match` on CompleteMultipartUpload atomically, but not every
//! S3-compatible server does (LocalStack, for one, checks and then assembles the parts, so
//! racing completions can all succeed). Every server tested does hold conditional *single*
//! PUTs atomically. So before completing a conditional multipart upload, a writer takes the
//! key's claim (`<prefix>/.promote/claims/<key-hash>.json`, see [`promote_core::claims`] for
//! the protocol and [`crate::control`] for its S3 requests), keeps it renewed while it
//! completes, fences right before the CompleteMultipartUpload (which still carries the
//! condition, so an object already at the key is never replaced), then releases it.
//!
//! A create-only writer that finds the claim taken waits for the holder: when an object appears
//! at the key it reports the key as taken (core then compares digests). A compare-and-swap
//! (`ReplaceIfVersion`) writer just waits: an object at the key is what it expects, and the
//! version is checked by the server's `If-Match` on the completion. A claim whose holder died
//! (same host and pid namespace) is taken over at once, one whose lease ([`LEASE`], judged by
//! the server's clock) ran out after that; a live holder renews it every lease/3.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStoreExt;
use promote_core::claims::{Claims, HeldClaim};
use promote_core::{Error, Key, Mode};

use crate::backend::Inner;
use crate::control::ObjectControl;
use crate::errors;

/// A completion claim expires this long after its last renewal (by the server's clock).
pub(crate) const LEASE: Duration = Duration::from_secs(60);
/// How long a writer waits for another claim holder before giving up (retryable).
const PATIENCE: Duration = Duration::from_secs(20 * 60);
/// How often a waiting writer looks again.
const POLL: Duration = Duration::from_millis(100);

/// The claims directory, as a control-object prefix.
pub(crate) const CLAIMS: &str = "claims/";

/// The name of `key`'s completion claim.
pub(crate) fn claim_name(key: &Key) -> String {
    let hash = promote_core::Sha256::of(key.as_str().as_bytes()).to_string();
    format!("{CLAIMS}{}.json", &hash[..32])
}

/// Takes `key`'s claim for a `mode` completion, waiting for another holder if needed, and keeps
/// it renewed in the background.
///
/// # Errors
///
/// [`Error::AlreadyExists`] when, for a create-only completion, an object appears at the key
/// while waiting (core compares digests); backend errors; a retryable error when the holder
/// takes longer than PATIENCE.
pub(crate) async fn acquire(inner: &Arc<Inner>, key: &Key, mode: &Mode) -> Result<HeldClaim, Error> {
    let claims = Claims::new(Arc::new(ObjectControl::new(Arc::clone(inner))));
    let name = claim_name(key);
    let started = tokio::time::Instant::now();
    loop {
        match claims.try_acquire(&name, LEASE).await {
            Ok(Some(mut held)) => {
                held.keep_alive();
                return Ok(held);
            }
            Ok(None) => {}
            Err(e) if e.is_retryable() => tracing::debug!(key = %key, error = %e, "claiming; will retry"),
            Err(e) => return Err(e),
        }
        // Create-only: once an object is there, there is nothing to wait for.
        if matches!(mode, Mode::Create) {
            match inner.store.head(&inner.path(key)).await {
                Ok(_) => return Err(Error::AlreadyExists { key: key.to_string() }),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(errors::map(e, inner.kind, key.as_str(), "claiming")),
            }
        }
        if started.elapsed() > PATIENCE {
            return Err(Error::Backend {
                backend: inner.kind.into(),
                context: format!("waiting for another writer to finish {key:?}; retry later"),
                retryable: true,
                source: "another writer holds the key's claim".into(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
