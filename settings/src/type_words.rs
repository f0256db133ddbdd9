//! Config value types in words a user of the config file knows: `a whole number`, `text`,
//! `true or false`, rather than serde's `usize`, `signed int` or `a borrowed string`.

use figment::error::Actual;

/// What a setting wants, from serde's `expected` text (`usize`, `a string`, `a boolean`, …).
/// Text serde did not name as a primitive comes back unchanged.
pub(crate) fn expected(serde: &str) -> String {
    let words = match serde {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => {
            "a whole number"
        }
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a character" | "a char" | "a string or path" => "text",
        "a boolean" | "bool" => "true or false",
        "a sequence" | "a tuple" => "a list",
        "a map" | "map" => "a table",
        other if other.starts_with("struct ") => "a table",
        other => return other.to_owned(),
    };
    words.to_owned()
}

/// What was found instead, with its value where it has one: `the whole number 42`, `the text
/// "x"`, `true`, `a list`.
pub(crate) fn actual(found: &Actual) -> String {
    match found {
        Actual::Bool(v) => v.to_string(),
        Actual::Unsigned(v) => format!("the whole number {v}"),
        Actual::Signed(v) => format!("the whole number {v}"),
        Actual::Float(v) => format!("the number {v}"),
        Actual::Char(v) => format!("the text {:?}", v.to_string()),
        Actual::Str(v) => format!("the text {v:?}"),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        Actual::Unit | Actual::Option => "nothing".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(expected("usize"), "a whole number");
        assert_eq!(expected("a string"), "text");
        assert_eq!(expected("f64"), "a number");
        assert_eq!(expected("struct LocalConfig"), "a table");
        assert_eq!(actual(&Actual::Signed(42)), "the whole number 42");
        assert_eq!(actual(&Actual::Str("x".into())), "the text \"x\"");
    }
}
