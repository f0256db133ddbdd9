//! One conditional multipart completer at a time per key.
//!
//! S3 checks `If-None-Match` / `If-Match` on CompleteMultipartUpload atomically, but not every
//! S3-compatible server does (LocalStack, for one, checks and then assembles the parts, so
//! racing completions can all succeed). Every server tested does hold conditional *single*
//! PUTs atomically. So before completing a conditional multipart upload, a writer takes the
//! key's claim (`<prefix>/.promote/claims/<key-hash>.json`, see [`promote_core::kit::claims`] for
//! the protocol and [`crate::control`] for its S3 requests), keeps it renewed while it
//! completes, fences right before the CompleteMultipartUpload (which still carries the
//! condition, so an object already at the key is never replaced), then releases it.
//!
//! A create-only writer that finds the claim taken waits for the holder: when an object appears
//! at the key it reports the key as taken (core then compares digests). A compare-and-swap
//! (`ReplaceIfVersion`) writer just waits: an object at the key is what it expects, and the
//! version is checked by the server's `If-Match` on the completion. A claim whose holder died
//! (same host and pid namespace) is taken over at once, one whose lease
//! ([`promote_core::kit::claims::COMMIT_LEASE`], judged by
//! the server's clock) ran out after that; a live holder renews it every lease/3.

use std::future::Future;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use promote_core::kit::claims::{Claims, HeldClaim};
use promote_core::{Error, Key, Mode};

use crate::backend::Inner;
use crate::control::ObjectControl;
use crate::errors;

/// Takes `key`'s claim for a `mode` completion ([`Claims::acquire_commit`]: waiting for another
/// holder, renewed in the background).
///
/// # Errors
///
/// [`Error::AlreadyExists`] when, for a create-only completion, an object appears at the key
/// while waiting (core compares digests); backend errors; a retryable error when the holder
/// takes longer than [`promote_core::kit::claims::COMMIT_PATIENCE`].
pub(crate) async fn acquire(inner: &Arc<Inner>, key: &Key, mode: &Mode) -> Result<HeldClaim, Error> {
    let claims = Claims::new(Arc::new(ObjectControl::new(Arc::clone(inner))));
    let exists = || async {
        match inner.store.head(&inner.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(errors::map(e, inner.kind, key.as_str(), "claiming")),
        }
    };
    claims.acquire_commit(key, mode, inner.kind, exists).await
}

/// Runs `complete` (the completion request, with its own retries) only after fencing `claim`:
/// proving, right before, that the claim is still ours. Without a claim (`Mode::Replace`) it
/// just runs it.
///
/// # Errors
///
/// The fence's error (retryable "claim lost", or a backend error) without running `complete`.
pub(crate) async fn fenced<T, F, Fut>(claim: Option<&HeldClaim>, complete: F) -> Result<T, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    if let Some(claim) = claim {
        claim.fence().await?;
    }
    Ok(complete().await)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use promote_core::Backend;

    use super::*;
    use crate::ObjectStoreBackend;

    #[test]
    fn a_lost_claim_never_completes() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        runtime.block_on(async {
            let control = ObjectStoreBackend::memory().control().expect("memory has control objects");
            let elsewhere =
                promote_core::kit::Owner { host: "elsewhere.example".into(), ..promote_core::kit::Owner::me() };
            let lease = Duration::from_millis(200);
            let stale = Claims::new(Arc::clone(&control)).as_owner(elsewhere).try_acquire("claims/k.json", lease).await;
            let stale = stale.expect("acquire").expect("free");
            let ran = AtomicBool::new(false);
            fenced(Some(&stale), || async { ran.store(true, Ordering::SeqCst) }).await.expect("fenced while held");
            assert!(ran.swap(false, Ordering::SeqCst), "a held claim completes");
            tokio::time::sleep(lease * 2).await;
            let taker = Claims::new(control).try_acquire("claims/k.json", lease).await.expect("try");
            assert!(taker.is_some(), "the expired claim is taken over");
            let err = fenced(Some(&stale), || async { ran.store(true, Ordering::SeqCst) }).await.expect_err("lost");
            assert!(err.is_retryable(), "{err}");
            assert!(!ran.load(Ordering::SeqCst), "a writer that lost its claim never completes");
        });
    }
}
