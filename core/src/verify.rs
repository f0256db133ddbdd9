//! SHA-256 and size verification, done once, in core, while bytes flow.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

use crate::error::Error;
use crate::key::Key;

/// A SHA-256 digest. Parses from and prints as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?} is not a SHA-256 digest (expected 64 hex digits)")]
pub struct ParseSha256Error(String);

impl FromStr for Sha256 {
    type Err = ParseSha256Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        let trimmed = s.strip_prefix("sha256:").unwrap_or(s);
        hex::decode_to_slice(trimmed, &mut out).map_err(|_| ParseSha256Error(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// What a finished stream of bytes was: its length and SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    /// Bytes counted.
    pub size: u64,
    /// Their SHA-256.
    pub sha256: Sha256,
}

/// Counts and hashes bytes as they pass.
#[derive(Clone, Default)]
pub struct Digester {
    hasher: sha2::Sha256,
    size: u64,
}

impl Digester {
    /// A fresh digester.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashing state after the bytes added so far, as hex: what [`Digester::resume`] goes
    /// on from, in this process or a later one. It holds the hash's running state and up to
    /// one block of unhashed bytes, so it reveals that much of the data.
    pub fn saved(&self) -> String {
        hex::encode(self.hasher.serialize())
    }

    /// A digester that goes on where the one whose [`Digester::saved`] state is `state` stopped,
    /// after `size` bytes: the digest it finishes with is of every byte, those before included,
    /// exactly as if one digester had seen them all.
    ///
    /// # Errors
    ///
    /// When `state` is not a saved state, or says a different number of bytes than `size`.
    pub fn resume(state: &str, size: u64) -> Result<Self, String> {
        let bad = || format!("{state:?} is not a saved SHA-256 state");
        let bytes = hex::decode(state).map_err(|_| bad())?;
        let array = SerializedState::<sha2::Sha256>::try_from(bytes.as_slice()).map_err(|_| bad())?;
        let hasher = sha2::Sha256::deserialize(&array).map_err(|_| bad())?;
        let resumed = Self { hasher, size };
        if resumed.hasher.serialize() != array || resumed.counted() != Some(size) {
            return Err(format!("the saved SHA-256 state does not cover {size} bytes"));
        }
        Ok(resumed)
    }

    /// The byte count the hash's own state holds: full blocks (a little-endian count after the
    /// eight 32-bit words of the state) times 64, plus the buffered bytes (the byte after that
    /// count says how many).
    fn counted(&self) -> Option<u64> {
        let state = self.hasher.serialize();
        let blocks = u64::from_le_bytes(state.get(32..40)?.try_into().ok()?);
        let buffered = u64::from(*state.get(40)?);
        blocks.checked_mul(64)?.checked_add(buffered)
    }

    /// The size and digest of everything added.
    pub fn finish(self) -> Digest {
        Digest { size: self.size, sha256: Sha256(self.hasher.finalize().into()) }
    }
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester").field("size", &self.size).finish_non_exhaustive()
    }
}

/// What the caller promises the bytes are. Unset fields are not checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Exact byte count.
    pub size: Option<u64>,
    /// Exact SHA-256.
    pub sha256: Option<Sha256>,
}

impl Expected {
    /// Expect exactly this digest and size.
    pub fn exactly(digest: Digest) -> Self {
        Self { size: Some(digest.size), sha256: Some(digest.sha256) }
    }

    /// Checks `got` against the promise; size first, then digest.
    ///
    /// # Errors
    ///
    /// [`Error::SizeMismatch`] or [`Error::DigestMismatch`], naming `key`.
    pub fn check(&self, key: &Key, got: &Digest) -> Result<(), Error> {
        if let Some(expected) = self.size
            && expected != got.size
        {
            return Err(Error::SizeMismatch { key: key.to_string(), expected, actual: got.size });
        }
        if let Some(expected) = self.sha256
            && expected != got.sha256
        {
            return Err(Error::DigestMismatch { key: key.to_string(), expected, actual: got.sha256 });
        }
        Ok(())
    }

    /// Whether a bytes count already seen exceeds the promised size (checked while streaming, so a
    /// too-long source stops early).
    pub fn too_long(&self, seen: u64) -> bool {
        self.size.is_some_and(|s| seen > s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_known_value() {
        let empty: Sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(Sha256::of(b""), empty);
        assert_eq!(empty.to_string().parse::<Sha256>().unwrap(), empty);
        assert!("xyz".parse::<Sha256>().is_err());
        assert!("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855".parse::<Sha256>().is_ok());
    }

    #[test]
    fn check_reports_size_then_digest() {
        let key = Key::new("k").unwrap();
        let mut d = Digester::new();
        d.update(b"abc");
        let got = d.finish();
        assert!(Expected::default().check(&key, &got).is_ok());
        let e = Expected { size: Some(4), sha256: Some(Sha256::of(b"x")) };
        assert!(matches!(e.check(&key, &got), Err(Error::SizeMismatch { expected: 4, actual: 3, .. })));
        let e = Expected { size: Some(3), sha256: Some(Sha256::of(b"x")) };
        assert!(matches!(e.check(&key, &got), Err(Error::DigestMismatch { .. })));
        assert!(Expected::exactly(got).check(&key, &got).is_ok());
    }

    /// A digester resumed from a saved state, at any offset (a block boundary or not), finishes
    /// with the digest of every byte; a state that is not one, or that covers another number
    /// of bytes, is refused.
    #[test]
    fn a_saved_state_resumes_to_the_digest_of_every_byte() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for at in [0, 1, 63, 64, 65, 500, 1000] {
            let mut first = Digester::new();
            first.update(&data[..at]);
            let state = first.saved();
            let mut resumed = Digester::resume(&state, at as u64).unwrap();
            resumed.update(&data[at..]);
            assert_eq!(resumed.finish(), Digest { size: 1000, sha256: Sha256::of(&data) }, "resumed at {at}");
            assert!(Digester::resume(&state, at as u64 + 1).is_err(), "{at} bytes claimed as {}", at + 1);
        }
        assert!(Digester::resume("zz", 0).is_err());
        assert!(Digester::resume("00", 0).is_err(), "too short");
    }
}
