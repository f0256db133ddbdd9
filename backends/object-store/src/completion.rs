//! A completion whose answer was lost: the server completed the upload, but the answer never
//! reached promote (a dropped connection, a timeout), so object_store sent
//! `CompleteMultipartUpload` again, and the server, which forgets a completed upload, answered
//! `404 NoSuchUpload`. Reported as it is, that would be "not found" for an object promote did
//! publish.
//!
//! The same retry may instead meet the condition the first attempt fulfilled: `If-None-Match: *`
//! on a key that now exists, `If-Match` on a version just replaced (`412`), which would read as
//! a conflict.
//!
//! So a completion answered "not found" or "precondition failed" looks at the key: S3 names a
//! multipart object by the MD5 of its parts' MD5s and their count (`"<md5>-<n>"`), computed here
//! from the parts' own ETags. An object under that ETag holds exactly this upload's parts, in
//! this order: it is this upload, completed (or another upload of the very same parts, which
//! published the same bytes). Anything else (no object, another ETag, a server whose ETags are
//! not MD5s) leaves the error as it was.

use md5::{Digest, Md5};
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

/// The ETag S3 gives the object completed from `parts`; `None` when a part's ETag is not an
/// MD5 (some servers name parts otherwise).
pub(crate) fn multipart_etag(parts: &[PartId]) -> Option<String> {
    let mut md5s = Md5::new();
    for part in parts {
        let md5: [u8; 16] = hex::decode(crate::resume::etag_of(&part.content_id)).ok()?.try_into().ok()?;
        md5s.update(md5);
    }
    Some(format!("{}-{}", hex::encode(md5s.finalize()), parts.len()))
}

/// The ETag of the object at `path` when it is the one completed from `parts`.
pub(crate) async fn completed_earlier(store: &dyn ObjectStore, path: &Path, parts: &[PartId]) -> Option<String> {
    let expected = multipart_etag(parts)?;
    let etag = store.head(path).await.ok()?.e_tag?;
    (etag.trim_matches('"') == expected).then_some(etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(etag: &str) -> PartId {
        PartId { content_id: etag.to_owned() }
    }

    #[test]
    fn the_etag_is_the_md5_of_the_parts_md5s_and_their_count() {
        // Two parts, "a" and "b": S3 answers "<md5(md5(a) || md5(b))>-2".
        let (a, b) = ("\"0cc175b9c0f1b6a831c399e269772661\"", "\"92eb5ffee6ae2fec3ad71c777531578f\"");
        assert_eq!(multipart_etag(&[part(a), part(b)]).as_deref(), Some("96e024ba2074fe77e8e965ba43a704be-2"));
        // With per-part checksums, object_store wraps the ETag in `<PartMetadata>`.
        let wrapped = format!("<PartMetadata><e_tag>{a}</e_tag><checksum_sha256>x=</checksum_sha256></PartMetadata>");
        assert_eq!(multipart_etag(&[part(&wrapped), part(b)]), multipart_etag(&[part(a), part(b)]));
        assert_ne!(multipart_etag(&[part(b), part(a)]), multipart_etag(&[part(a), part(b)]), "the order counts");
    }

    #[tokio::test]
    async fn a_key_without_this_upload_is_no_earlier_completion() {
        use object_store::memory::InMemory;
        let store = InMemory::new();
        let path = Path::from("k");
        let parts = [part("\"0cc175b9c0f1b6a831c399e269772661\"")];
        assert_eq!(completed_earlier(&store, &path, &parts).await, None, "no object at the key");
        store.put(&path, "other bytes".into()).await.expect("put");
        assert_eq!(completed_earlier(&store, &path, &parts).await, None, "an object of another ETag");
    }

    #[test]
    fn a_part_etag_that_is_no_md5_gives_none() {
        assert_eq!(multipart_etag(&[part("\"not-an-md5\"")]), None);
        assert_eq!(multipart_etag(&[part("\"0cc175b9c0f1b6a831c399e2697726\"")]), None, "15 bytes");
    }
}
