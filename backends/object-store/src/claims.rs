//! Claims: one completer at a time per key, for multipart uploads.
//!
//! S3 checks `If-None-Match` / `If-Match` on CompleteMultipartUpload atomically, but not every
//! S3-compatible server does (LocalStack, for one, checks and then assembles the parts, so
//! racing completions can all succeed). Every server tested does hold conditional *single*
//! PUTs atomically. So before completing a conditional multipart upload, a writer takes a claim
//! on the key: a small object `<prefix>/.promote/claims/<key-hash>` created with
//! `If-None-Match: *`. Only the claim's holder completes; it still sends the condition, so an
//! object already at the key is never replaced; then it removes the claim.
//!
//! A writer that finds the claim taken waits for the holder: when the object appears it reports
//! the key as taken (core then compares digests); when the claim disappears it tries again. A
//! claim whose holder died (same machine) or that is older than [`LEASE`] is taken over with a
//! conditional `If-Match` PUT, so a crash never blocks a key for good.
//!
//! Cost: two small requests (claim, release) per conditional multipart completion; none for
//! single PUTs, whose condition every server holds atomically on its own.

use std::time::{Duration, Instant, SystemTime};

use object_store::path::Path;
use object_store::{GetOptions, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use promote_core::{Error, Key};
use serde::{Deserialize, Serialize};

use crate::backend::Inner;
use crate::errors;
use crate::liveness::Owner;

/// A claim older than this is considered abandoned and may be taken over.
pub(crate) const LEASE: Duration = Duration::from_secs(15 * 60);
/// How long a writer waits for another claim holder before giving up (retryable).
const PATIENCE: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ClaimBody {
    pub(crate) key: String,
    pub(crate) owner: Owner,
}

/// A held claim; release it after completing.
pub(crate) struct Claim {
    path: Path,
}

/// Where `key`'s claim lives.
pub(crate) fn claim_path(inner: &Inner, key: &Key) -> Path {
    let hash = promote_core::Sha256::of(key.as_str().as_bytes()).to_string();
    crate::backend::verbatim(&format!("{}/{}.json", inner.claims_dir(), &hash[..32]))
}

/// Takes `key`'s claim, waiting for another holder if needed.
///
/// # Errors
///
/// [`Error::AlreadyExists`] when an object appears at the key while waiting (core compares
/// digests); backend errors; a retryable error when the holder takes longer than PATIENCE.
pub(crate) async fn acquire(inner: &Inner, key: &Key) -> Result<Claim, Error> {
    let path = claim_path(inner, key);
    let body = serde_json::to_vec(&ClaimBody { key: key.to_string(), owner: Owner::me() }).expect("claim serializes");
    let err = |e| errors::map(e, inner.kind, key.as_str(), "claiming");
    let started = Instant::now();
    loop {
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        match inner.store.put_opts(&path, PutPayload::from(body.clone()), create).await {
            Ok(_) => return Ok(Claim { path }),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {}
            Err(e) => return Err(err(e)),
        }
        // Taken. If the object is already there, there is nothing to wait for.
        match inner.store.head(&inner.path(key)).await {
            Ok(_) => return Err(Error::AlreadyExists { key: key.to_string() }),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(err(e)),
        }
        // Take over an abandoned claim, atomically (only one taker wins the If-Match).
        if let Some(etag) = abandoned(inner, &path).await {
            let update = PutOptions {
                mode: PutMode::Update(UpdateVersion { e_tag: Some(etag), version: None }),
                ..Default::default()
            };
            match inner.store.put_opts(&path, PutPayload::from(body.clone()), update).await {
                Ok(_) => {
                    tracing::info!(key = %key, "took over an abandoned claim");
                    return Ok(Claim { path });
                }
                Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(err(e)),
            }
        }
        if started.elapsed() > PATIENCE {
            return Err(Error::Backend {
                backend: inner.kind.into(),
                context: format!("waiting for another writer to finish {key:?}"),
                retryable: true,
                source: "another writer holds the key's claim".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The claim's ETag if its holder is gone or its lease ran out.
async fn abandoned(inner: &Inner, path: &Path) -> Option<String> {
    let got = inner.store.get_opts(path, GetOptions::default()).await.ok()?;
    let (etag, modified) = (got.meta.e_tag.clone(), got.meta.last_modified);
    let body: ClaimBody = serde_json::from_slice(&got.bytes().await.ok()?).ok()?;
    let age = SystemTime::now().duration_since(modified.into()).unwrap_or_default();
    (body.owner.alive() == Some(false) || age > LEASE).then_some(etag).flatten()
}

impl Claim {
    /// Gives the key back.
    pub(crate) async fn release(self, inner: &Inner) {
        if let Err(e) = inner.store.delete(&self.path).await {
            tracing::warn!(claim = %self.path, error = %e, "could not release a claim; it expires on its own");
        }
    }
}
