//! A control object's body carried in a metadata header too, so it can be read with a `HEAD`.
//!
//! Claims are read often (every contender polls) and removed while others poll. Reading one with
//! a `GET` races its removal on some servers: LocalStack's S3 keeps a read lock on the stored
//! object while it sends a body, and a `GET` that meets a concurrent `DELETE` can leave that lock
//! held for good, after which every write of that name (the next claim) waits forever. A `HEAD`
//! opens no body, so it takes no such lock anywhere, and it is one round trip with no payload.
//!
//! So a backend writes each small control object with its body also in the user-metadata entry
//! [`NAME`] (S3: `x-amz-meta-promotecontrol`, Azure: `x-ms-meta-promotecontrol`; one word,
//! because Azure takes only identifiers as metadata names and some proxies drop header names
//! with underscores), encoded by [`encode`], and reads it back from a `HEAD` with [`decode`]. A
//! body too large for metadata ([`MAX_BODY`], well under S3's 2 KiB limit for all user
//! metadata) is written without it and read with a `GET` as before.

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The user-metadata name that carries the body.
pub const NAME: &str = "promotecontrol";

/// Bodies up to this many bytes are carried in metadata.
pub const MAX_BODY: usize = 1024;

/// What is escaped: controls, space, `%` and everything outside ASCII (header values must be
/// visible ASCII on every S3 server); JSON's own punctuation stays readable.
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

/// The metadata value for `body`, or `None` when it does not fit ([`MAX_BODY`]) or is not text.
pub fn encode(body: &[u8]) -> Option<String> {
    if body.len() > MAX_BODY {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    Some(utf8_percent_encode(text, ESCAPED).to_string())
}

/// The body carried by a metadata `value` written by [`encode`].
pub fn decode(value: &str) -> Bytes {
    Bytes::from(percent_decode_str(value).collect::<Vec<u8>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_body_round_trips_and_stays_visible_ascii() {
        let body = br#"{"name":"claims/ab.json","owner":{"host":"h\u00e9te 1","pid":7},"note":"50% done"}"#;
        let value = encode(body).expect("small text fits");
        assert!(value.bytes().all(|b| b.is_ascii_graphic()), "{value}");
        assert_eq!(decode(&value), Bytes::from_static(body));
        let unicode = "{\"host\":\"hôte\"}".as_bytes();
        assert_eq!(decode(&encode(unicode).expect("fits")), Bytes::from_static(unicode));
    }

    #[test]
    fn large_or_binary_bodies_are_not_carried() {
        assert!(encode(&vec![b'a'; MAX_BODY + 1]).is_none());
        assert!(encode(&[0xff, 0xfe]).is_none());
        assert!(encode(&vec![b'a'; MAX_BODY]).is_some());
    }
}
