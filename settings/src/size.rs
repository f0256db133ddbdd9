//! Sizes as people write them: `512`, `1KiB`, `8MiB`, `2GB` — one parser for the config file
//! and the command line.
//!
//! Printing a size for humans (`1.5 MiB`) is not configuration: it is
//! [`promote_core::kit::format_size`], which core's own messages use too.

/// Parses bytes, or a number with a unit: `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000),
/// `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), case-insensitive, a space allowed before it.
///
/// # Errors
///
/// A message naming the text when it is not a size or overflows 64 bits.
pub fn parse(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size like 1048576, \"512KiB\" or \"8MiB\"");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    digits.parse::<u64>().ok().and_then(|n| n.checked_mul(scale)).ok_or_else(bad)
}

/// Serde `with` module half: a size is written as people write it in the config file, exactly:
/// `"8MiB"` for 8388608, `"2GB"`, and bytes as a number when no unit divides them (`1000000`
/// is `"1MB"`, `1500` stays `1500`). [`deserialize`] reads every form back to the same bytes.
///
/// # Errors
///
/// The serializer's.
pub fn serialize<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    match exact(*n) {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_u64(*n),
    }
}

/// `n` with the largest unit that divides it exactly (`"2GB"`, not `"1953125KiB"`), if any does.
fn exact(n: u64) -> Option<String> {
    const UNITS: [(u64, &str); 8] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
        (1_000_000_000_000, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1000, "KB"),
    ];
    if n == 0 {
        return None;
    }
    UNITS
        .iter()
        .filter(|(scale, _)| n.is_multiple_of(*scale))
        .max_by_key(|(scale, _)| *scale)
        .map(|(scale, unit)| format!("{}{unit}", n / scale))
}

/// Serde `with` module half: a size is bytes (`1048576`) or text with a unit (`"8MiB"`), as
/// [`parse`] reads it.
///
/// # Errors
///
/// A message naming the text when it is not a size.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match <Raw as serde::Deserialize>::deserialize(d)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_written_as_they_are_documented_and_read_back_exactly() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct T {
            #[serde(with = "super")]
            n: u64,
        }
        for (n, text) in [(8 << 20, r#""8MiB""#), (5 << 40, r#""5TiB""#), (2_000_000_000, r#""2GB""#), (1500, "1500")] {
            let written = serde_json::to_string(&T { n }).unwrap();
            assert_eq!(written, format!(r#"{{"n":{text}}}"#));
            assert_eq!(serde_json::from_str::<T>(&written).unwrap().n, n);
        }
    }

    #[test]
    fn units() {
        assert_eq!(parse("1KiB"), Ok(1024));
        assert_eq!(parse("8 MiB"), Ok(8 << 20));
        assert_eq!(parse("2GB"), Ok(2_000_000_000));
        assert_eq!(parse("17"), Ok(17));
        assert!(parse("1.5MiB").is_err());
        assert!(parse("MiB").is_err());
        assert!(parse("99999999999TiB").is_err());
    }
}
