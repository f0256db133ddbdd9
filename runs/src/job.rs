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
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let sha = item.expected.sha256.map_or_else(|| "null".to_owned(), |s| text(&s.to_string()));
    let size = item.expected.size.map_or_else(|| "null".to_owned(), |n| n.to_string());
    format!(
        "{{\"key\":{},\"sha256\":{sha},\"size\":{size},\"source\":{},\"v\":{VERSION}}}",
        text(item.key.as_str()),
        text(&item.source_text)
    )
}

/// The job key of `item`: 64 hex digits.
pub fn key(item: &Item) -> String {
    hex::encode(Sha256::digest(canonical(item).as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest;

    fn item(line: &str) -> Item {
        manifest::parse(line, Path::new("/m")).remove(0).expect("valid line")
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
