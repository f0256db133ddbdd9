//! Resumable staged writes: a multipart upload whose parts are the checkpoint.
//!
//! A checkpoint waits for every part sent so far and hands out a token naming the upload, its
//! parts' ETags, the bytes they hold and the part sizes. Going on from a token checks with the
//! server that the upload is still there holding those parts (ListParts), takes its marker over
//! for this writer, and sends the next part with the next number. The parts are S3's, so a
//! crash loses at most the part being filled; the caller keeps the hash state at the token's
//! offset (core's `ResumePoint`).

use std::sync::Arc;

use object_store::ObjectStoreExt;
use promote_core::{Error, Expected, Key, PutOptions};
use serde::{Deserialize, Serialize};

use crate::backend::Inner;
use crate::parts::PartSizes;
use crate::staged::ObjectStaged;
use crate::uploads::{self, marker_path};

/// What a checkpoint's token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Token {
    /// The multipart upload.
    pub(crate) upload_id: String,
    /// Its parts' ETags, part 1 first.
    pub(crate) parts: Vec<String>,
    /// The bytes in those parts.
    pub(crate) offset: u64,
    /// The part sizes the upload started with.
    pub(crate) sizes: PartSizes,
    /// The SHA-256 in the upload's metadata (the caller's, when given up front).
    pub(crate) hint: Option<String>,
    /// The upload's content type.
    pub(crate) content_type: String,
}

impl Token {
    pub(crate) fn encode(&self) -> String {
        // A derived record of strings and integers always serializes.
        serde_json::to_string(self).expect("token serializes")
    }

    /// Whether the parts hold exactly `offset` bytes in the token's part sizes.
    fn consistent(&self) -> bool {
        let held: u64 = (0..self.parts.len()).map(|i| self.sizes.of(i) as u64).sum();
        held == self.offset
    }
}

/// A handle that goes on from `token` (or a new resumable one); `None` when the backend has
/// no multipart uploads or the token's upload is gone or not what it says.
pub(crate) async fn stage(
    inner: &Arc<Inner>,
    key: &Key,
    expected: &Expected,
    options: &PutOptions,
    from: Option<&str>,
) -> Result<Option<ObjectStaged>, Error> {
    let Some(multipart) = inner.multipart.clone() else { return Ok(None) };
    let Some(from) = from else {
        let staged = ObjectStaged::resumable(Arc::clone(inner), key.clone(), expected, options.content_type_for(key));
        return Ok(Some(staged));
    };
    let token = match serde_json::from_str::<Token>(from) {
        Ok(token) if token.consistent() => token,
        _ => {
            tracing::warn!(key = %key, "a resume token that is not one; starting over");
            return Ok(None);
        }
    };
    let path = inner.path(key);
    if let (Some(signer), Some(http)) = (&inner.signer, &inner.http) {
        let listed =
            uploads::parts(signer.as_ref(), http, &path, &token.upload_id).await.map_err(|e| Error::Backend {
                backend: inner.kind.into(),
                context: format!("checking the multipart upload of {:?} to resume", key.as_str()),
                retryable: true,
                source: e.into(),
            })?;
        let Some(listed) = listed else {
            tracing::info!(key = %key, upload_id = %token.upload_id, "the upload to resume is gone; starting over");
            return Ok(None);
        };
        let holds = token
            .parts
            .iter()
            .enumerate()
            .all(|(i, etag)| listed.iter().any(|part| part.number == i as u64 + 1 && part.etag == etag_of(etag)));
        if !holds {
            tracing::warn!(key = %key, upload_id = %token.upload_id, "the upload's parts are not the checkpoint's; starting over");
            discard(inner, key, from).await?;
            return Ok(None);
        }
    }
    // Take the marker over: the writer named there is this process now.
    let marker = crate::staged::mark(inner, &path, &token.upload_id)
        .await
        .map_err(|e| crate::errors::map(e, inner.kind, key.as_str(), "recording the staging marker for"))?;
    let staged = ObjectStaged::going_on(Arc::clone(inner), key.clone(), expected, token, multipart, marker);
    tracing::info!(key = %key, offset = staged.written(), "going on with a multipart upload");
    Ok(Some(staged))
}

/// The ETag in a part's id: object_store's S3 ids are the ETag, or with per-part checksums a
/// `<PartMetadata>` holding it in `<e_tag>`.
pub(crate) fn etag_of(content_id: &str) -> &str {
    let inner = content_id
        .split_once("<e_tag>")
        .and_then(|(_, rest)| rest.split_once("</e_tag>"))
        .map_or(content_id, |(etag, _)| etag);
    inner.trim_matches('"').trim_start_matches("&quot;").trim_end_matches("&quot;")
}

/// Aborts the upload `token` names and removes its marker. An upload already gone is fine.
pub(crate) async fn discard(inner: &Inner, key: &Key, token: &str) -> Result<(), Error> {
    let (Some(multipart), Ok(token)) = (&inner.multipart, serde_json::from_str::<Token>(token)) else {
        return Ok(());
    };
    let path = inner.path(key);
    inner.conditions.clear(&token.upload_id);
    match multipart.abort_multipart(&path, &token.upload_id).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(crate::errors::map(e, inner.kind, key.as_str(), "aborting the multipart upload of")),
    }
    let _ = inner.store.delete(&marker_path(&inner.staging_dir(), &token.upload_id)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_holds_exactly_its_parts_bytes() {
        let mib = 1 << 20;
        let token = Token {
            upload_id: "u".into(),
            parts: vec!["a".into(), "b".into()],
            offset: 16 * mib,
            sizes: PartSizes::Fixed(8 * mib),
            hint: None,
            content_type: "application/octet-stream".into(),
        };
        assert!(token.consistent());
        assert_eq!(serde_json::from_str::<Token>(&token.encode()).unwrap(), token);
        assert!(!Token { offset: 16 * mib - 1, ..token.clone() }.consistent(), "a byte short");
        assert!(!Token { parts: vec!["a".into()], ..token }.consistent(), "a part short");
    }

    #[test]
    fn a_parts_etag_is_found_in_its_id() {
        assert_eq!(etag_of("\"abc\""), "abc");
        let with_checksum =
            "<PartMetadata><e_tag>\"93b2\"</e_tag><checksum_sha256>T/CX=</checksum_sha256></PartMetadata>";
        assert_eq!(etag_of(with_checksum), "93b2");
        assert_eq!(etag_of("<PartMetadata><e_tag>&quot;x&quot;</e_tag></PartMetadata>"), "x");
    }
}
