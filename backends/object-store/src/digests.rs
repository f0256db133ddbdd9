//! Stored digests for multipart objects whose SHA-256 was not known when their upload began.
//!
//! An object's digest normally lives in its own metadata (`x-amz-meta-promote-sha256`), but S3
//! fixes a multipart upload's metadata when the upload starts, before any byte is hashed. When
//! the caller did not give the digest up front (`--sha256`), promote records it after the
//! completion in a small sidecar object, `<prefix>/.promote/digests/<key-hash>.json`, naming the
//! key, the object's ETag and its SHA-256.
//!
//! `head` trusts a sidecar only while the object's current ETag is the one it names: an object
//! replaced since (by promote or any other tool) has another ETag, and its digest is then
//! reported as unknown (core hashes the bytes when it needs them), never as the old one. A
//! crash between completing the upload and writing the sidecar leaves the digest unknown too.
//! Cost: one small PUT per such multipart object; one small GET in `head` when the object's
//! metadata has no digest.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use promote_core::{Key, Sha256};
use serde::{Deserialize, Serialize};

use crate::backend::{Inner, verbatim};

/// What a sidecar says.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    key: String,
    etag: String,
    sha256: String,
}

/// Where `key`'s sidecar lives.
fn sidecar_path(inner: &Inner, key: &Key) -> Path {
    let hash = Sha256::of(key.as_str().as_bytes()).to_string();
    verbatim(&format!("{}/{}.json", inner.digests_dir(), &hash[..32]))
}

/// Records that the object now at `key`, with ETag `etag`, has SHA-256 `sha256`. Best effort:
/// without it the digest is reported unknown, which is honest.
pub(crate) async fn record(inner: &Inner, key: &Key, etag: Option<&str>, sha256: &Sha256) {
    let Some(etag) = etag else { return };
    let body = Sidecar { key: key.to_string(), etag: etag.to_owned(), sha256: sha256.to_string() };
    // A derived record of three strings always serializes.
    let body = serde_json::to_vec(&body).expect("a sidecar serializes");
    if let Err(e) = inner.store.put(&sidecar_path(inner, key), PutPayload::from(body)).await {
        tracing::warn!(key = %key, error = %e, "could not record the digest; it will be recomputed when needed");
    }
}

/// The recorded SHA-256 of the object at `key`, if its sidecar names the object's current
/// `etag`.
pub(crate) async fn lookup(inner: &Inner, key: &Key, etag: &str) -> Option<Sha256> {
    let got = inner.store.get(&sidecar_path(inner, key)).await.ok()?;
    let sidecar: Sidecar = serde_json::from_slice(&got.bytes().await.ok()?).ok()?;
    (sidecar.key == key.as_str() && sidecar.etag == etag).then(|| sidecar.sha256.parse().ok()).flatten()
}

/// Forgets `key`'s sidecar (after the object was removed). Best effort: a stale sidecar never
/// matches another object's ETag.
pub(crate) async fn forget(inner: &Inner, key: &Key) {
    let _ = inner.store.delete(&sidecar_path(inner, key)).await;
}

#[cfg(test)]
mod tests {
    use promote_core::Backend;

    use super::*;
    use crate::ObjectStoreBackend;

    #[tokio::test]
    async fn a_sidecar_counts_only_for_the_etag_it_names() {
        let backend = ObjectStoreBackend::memory();
        let inner = backend.inner();
        let (key, other) = (Key::new("a/b").unwrap(), Key::new("a/c").unwrap());
        let sha = Sha256::of(b"bytes");
        record(inner, &key, Some("\"etag-1\""), &sha).await;
        assert_eq!(lookup(inner, &key, "\"etag-1\"").await, Some(sha));
        assert_eq!(lookup(inner, &key, "\"etag-2\"").await, None, "the object was replaced since");
        assert_eq!(lookup(inner, &other, "\"etag-1\"").await, None, "another key");
        forget(inner, &key).await;
        assert_eq!(lookup(inner, &key, "\"etag-1\"").await, None);
        assert!(backend.list("").await.unwrap().is_empty(), "sidecars are never listed");
    }
}
