//! Validated object keys.
//!
//! A [`Key`] is the name an object has inside a backend: `/`-separated segments, relative to the
//! backend's root. Every backend maps keys the same way, so a key valid for one is valid for all.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Longest accepted segment (the part between two `/`), in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Longest accepted key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Segment name reserved for staging data; no key may contain it as a segment.
pub const RESERVED_SEGMENT: &str = ".promote";

/// A validated object key.
///
/// Rules (each rejection is an [`Error::InvalidKey`] naming the key and the rule):
/// - not empty, at most [`MAX_KEY_BYTES`] bytes;
/// - relative: no leading `/`, no trailing `/`;
/// - no empty segment (`a//b`), no `.` or `..` segment;
/// - no NUL or other control character, no backslash;
/// - each segment at most [`MAX_SEGMENT_BYTES`] bytes;
/// - no segment named [`RESERVED_SEGMENT`] (that is where staging data lives).
///
/// Unicode, spaces and punctuation other than the above are fine.
///
/// # Examples
///
/// ```
/// use promote_core::Key;
/// let key = Key::new("papers/2024/attention is all you need.pdf").unwrap();
/// assert_eq!(key.file_name(), "attention is all you need.pdf");
/// assert!(Key::new("../etc/passwd").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Validates `key` and wraps it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] naming the rule the key breaks.
    pub fn new(key: impl Into<String>) -> Result<Self, Error> {
        let key = key.into();
        match check(&key) {
            Ok(()) => Ok(Self(key)),
            Err(reason) => Err(Error::InvalidKey { key, reason }),
        }
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments, first to last.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// This key under `prefix` (`prefix/self`); `prefix` must itself be a valid key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] when the joined key breaks a rule (length, mostly).
    pub fn join(prefix: &Self, rest: &str) -> Result<Self, Error> {
        Self::new(format!("{}/{rest}", prefix.0))
    }
}

fn check(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a key cannot be empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("longer than {MAX_KEY_BYTES} bytes ({} bytes)", key.len()));
    }
    if key.starts_with('/') {
        return Err("keys are relative: remove the leading '/'".into());
    }
    if key.ends_with('/') {
        return Err("a key cannot end with '/'".into());
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(format!("contains the control character {c:?}"));
    }
    if key.contains('\\') {
        return Err("contains a backslash; use '/' to separate segments".into());
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("contains an empty segment ('//')".into()),
            "." | ".." => return Err(format!("contains a '{segment}' segment")),
            RESERVED_SEGMENT => {
                return Err(format!("the segment name '{RESERVED_SEGMENT}' is reserved for staging data"));
            }
            s if s.len() > MAX_SEGMENT_BYTES => {
                return Err(format!(
                    "segment '{}…' is longer than {MAX_SEGMENT_BYTES} bytes",
                    s.chars().take(16).collect::<String>()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

impl FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for k in ["a", "a/b/c.txt", "日本語/ファイル", "with space/x y", "a.b/.hidden", "...", "a-b_c~d"] {
            Key::new(k).unwrap();
        }
    }

    /// A bad key is an [`Error::InvalidKey`] from [`Key::new`], saying so, and every call that
    /// reaches storage ([`crate::Store`], [`crate::Backend`]) takes a `&Key`: no bad key can get
    /// as far as any I/O. (Once here, for every backend; it was a conformance case that touched
    /// no store.)
    #[test]
    fn invalid_keys_rejected_before_io() {
        for bad in [
            "",
            "/abs",
            "../up",
            "a/../../b",
            "a//b",
            "a/./b",
            "nul\0byte",
            "back\\slash",
            ".promote/staging/x",
            "tab\there",
        ] {
            let err = Key::new(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidKey { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains("invalid key"), "{err}");
        }
    }

    #[test]
    fn rejects_each_rule() {
        let long_segment = "x".repeat(MAX_SEGMENT_BYTES + 1);
        let long_key = ["y"; 600].join("/");
        for k in [
            "",
            "/abs",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "./a",
            "a\0b",
            "a\nb",
            "a\\b",
            ".promote",
            "x/.promote/y",
            &long_segment,
            &long_key,
        ] {
            let err = Key::new(k).unwrap_err();
            assert!(matches!(err, Error::InvalidKey { .. }), "{k:?} -> {err}");
        }
    }
}
