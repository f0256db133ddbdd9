//! Job keys: what identifies one item across runs, processes and machines.
//!
//! A job key is the SHA-256 (hex) of a canonical JSON of what the item asks for —
//! `{"key":…,"sha256":…|null,"size":…|null,"source":…,"v":1}`, keys sorted, no spaces — so the
//! same line in any manifest, on any machine, names the same job, and changing any of its fields
//! (or the format version) makes it a different job.

use sha2::{Digest as _, Sha256};

use crate::manifest::Item;

/// The job-key format version.
const VERSION: u32 = 1;

/// The canonical JSON of `item` that its job key hashes.
pub fn canonical(item: &Item) -> String {
    String::from_utf8(canonical_bytes(item)).expect("JSON written from strings is UTF-8")
}

/// [`canonical`] as bytes, written in one buffer (a million items are hashed before a run
/// starts).
fn canonical_bytes(item: &Item) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(96 + item.key.as_str().len() + item.source_text.len());
    // Writing JSON strings into a Vec cannot fail.
    let text = |out: &mut Vec<u8>, s: &str| serde_json::to_writer(out, s).expect("a string serializes");
    out.extend_from_slice(b"{\"key\":");
    text(&mut out, item.key.as_str());
    out.extend_from_slice(b",\"sha256\":");
    match item.expected.sha256 {
        Some(sha) => text(&mut out, &sha.to_string()),
        None => out.extend_from_slice(b"null"),
    }
    match item.expected.size {
        Some(size) => write!(out, ",\"size\":{size}").expect("writing to a Vec"),
        None => out.extend_from_slice(b",\"size\":null"),
    }
    out.extend_from_slice(b",\"source\":");
    text(&mut out, &item.source_text);
    write!(out, ",\"v\":{VERSION}}}").expect("writing to a Vec");
    out
}

/// The job key of `item`: 64 hex digits.
pub fn key(item: &Item) -> String {
    hex(&digest(item))
}

/// The 32 bytes [`key`] is the hex of.
pub(crate) fn digest(item: &Item) -> [u8; 32] {
    Sha256::digest(canonical_bytes(item)).into()
}

/// Hashing for sets of job keys' bytes: they are SHA-256 digests, evenly spread already, so
/// their first 8 bytes serve as the hash (no need to hash them again).
pub(crate) type Spread = std::hash::BuildHasherDefault<FirstBytes>;

/// The [`Spread`] hasher: the first 8 bytes written.
#[derive(Default)]
pub(crate) struct FirstBytes(u64);

impl std::hash::Hasher for FirstBytes {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A digest's bytes (a length written before them is a usize, taken by `write_usize`).
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, _length: usize) {}
}

/// A job key's 64 hex digits from its 32 bytes.
pub(crate) fn hex(digest: &[u8; 32]) -> String {
    let mut digits = [0u8; 64];
    hex::encode_to_slice(digest, &mut digits).expect("64 digits for 32 bytes");
    String::from_utf8(digits.to_vec()).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest;

    fn item(line: &str) -> Item {
        manifest::parse(line, Path::new("/m")).next().expect("a line").expect("valid line")
    }

    #[test]
    fn canonical_json_is_sorted_compact_and_versioned() {
        let a = item(r#"{"size": 3, "key": "k/\"q\"", "source": "https://h/x?a=1"}"#);
        assert_eq!(canonical(&a), r#"{"key":"k/\"q\"","sha256":null,"size":3,"source":"https://h/x?a=1","v":1}"#);
        let sha = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        let b = item(&format!(r#"{{"source": "f", "key": "k", "sha256": "{sha}"}}"#));
        assert_eq!(
            canonical(&b),
            format!(r#"{{"key":"k","sha256":"{}","size":null,"source":"f","v":1}}"#, sha.to_lowercase())
        );
    }

    /// The same bytes as the canonical JSON the job keys of earlier versions hashed: serde_json's
    /// escaping of each string, as a `Value` writes it.
    #[test]
    fn canonical_json_escapes_as_serde_json_does() {
        let a = item(r#"{"key": "d/é\u00e9\u2028", "source": "https://h/\u0001\ttab\"q\"\\b?x=é", "size": 0}"#);
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let want = format!(
            "{{\"key\":{},\"sha256\":null,\"size\":0,\"source\":{},\"v\":1}}",
            text(a.key.as_str()),
            text(&a.source_text)
        );
        assert_eq!(canonical(&a), want);
        assert_eq!(key(&a), ::hex::encode(Sha256::digest(want.as_bytes())));
    }

    #[test]
    fn field_order_does_not_matter_but_every_field_does() {
        let base = key(&item(r#"{"source": "s", "key": "k", "size": 1}"#));
        assert_eq!(base, key(&item(r#"{"size": 1, "key": "k", "source": "s"}"#)));
        assert_eq!(base.len(), 64);
        for other in [
            r#"{"source": "s2", "key": "k", "size": 1}"#,
            r#"{"source": "s", "key": "k2", "size": 1}"#,
            r#"{"source": "s", "key": "k", "size": 2}"#,
            r#"{"source": "s", "key": "k"}"#,
        ] {
            assert_ne!(base, key(&item(other)), "{other}");
        }
    }
}
