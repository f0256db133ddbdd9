//! Durations as people write them: `"30s"`, `"5m"`, `"1h 30m"`, or a number of seconds — one
//! serde format for every config table.

use std::time::Duration;

/// Serde `with` module half: a duration is written as text (`"1m 30s"`).
///
/// # Errors
///
/// The serializer's.
pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Serde `with` module half: a duration is whole seconds (`30`) or text (`"30s"`, `"5m"`).
///
/// # Errors
///
/// A message naming the text when it is not a duration.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match <Raw as serde::Deserialize>::deserialize(d)? {
        Raw::Secs(n) => Ok(Duration::from_secs(n)),
        Raw::Text(text) => humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration like \"30s\" or \"5m\": {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
    }

    #[test]
    fn seconds_or_text_in_and_text_out() {
        let t: T = serde_json::from_str(r#"{"d": 90}"#).unwrap();
        assert_eq!(t.d, Duration::from_secs(90));
        let t: T = serde_json::from_str(r#"{"d": "1m 30s"}"#).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"d":"1m 30s"}"#);
        let err = serde_json::from_str::<T>(r#"{"d": "soon"}"#).err().unwrap().to_string();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
    }
}
