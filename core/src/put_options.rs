//! [`PutOptions`]: how a promoted object is described to other readers, beside its bytes.
//!
//! The bytes and their SHA-256 are the contract ([`Expected`](crate::Expected)); these options
//! are what other tools see when they fetch the object (a browser, `curl`, `aws s3 cp`). A
//! backend stores what it has a place for and ignores the rest: the S3 and OpenDAL backends
//! send the content type with the upload; local disk keeps none.

use crate::key::Key;

/// The content type of an object whose key has no known extension.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Options of a promotion that are not about its bytes. Given to the backend when staging
/// ([`Backend::stage_with`](crate::Backend::stage_with)); set on a [`Store`](crate::Store) with
/// [`Store::with_put_options`](crate::Store::with_put_options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// The object's media type (`Content-Type`); `None`: guessed from the key's extension
    /// (see [`PutOptions::content_type_for`]).
    pub content_type: Option<String>,
}

impl PutOptions {
    /// Options with this content type (`None`: guess from the key).
    pub fn with_content_type(content_type: Option<String>) -> Self {
        Self { content_type }
    }

    /// Checks a content type given by a user (`text/plain`, `application/json; charset=utf-8`):
    /// a media type as HTTP writes it, returned as given.
    ///
    /// # Errors
    ///
    /// What is wrong with it, in words.
    pub fn parse_content_type(text: &str) -> Result<String, String> {
        match text.parse::<mime_guess::mime::Mime>() {
            // `mime` reads `text/` as a type with an empty subtype; HTTP does not.
            Ok(m)
                if !m.subtype().as_str().is_empty() && text.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) =>
            {
                Ok(text.to_owned())
            }
            _ => Err(format!("{text:?} is not a media type (TYPE/SUBTYPE, e.g. text/plain or application/json)")),
        }
    }

    /// The content type to store for `key`: the one given, else the type its extension names
    /// (`a.json` → `application/json`, from `mime_guess`'s table), else
    /// [`DEFAULT_CONTENT_TYPE`].
    pub fn content_type_for(&self, key: &Key) -> String {
        match &self.content_type {
            Some(given) => given.clone(),
            None => mime_guess::from_path(key.file_name()).first_raw().unwrap_or(DEFAULT_CONTENT_TYPE).to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_given_type_wins_else_the_extension_names_it() {
        let key = |k: &str| Key::new(k).expect("key");
        let guessed = PutOptions::default();
        assert_eq!(guessed.content_type_for(&key("a/b.json")), "application/json");
        assert_eq!(guessed.content_type_for(&key("a/page.HTML")), "text/html");
        assert_eq!(guessed.content_type_for(&key("a/no-extension")), DEFAULT_CONTENT_TYPE);
        assert_eq!(guessed.content_type_for(&key("dir.json/file")), DEFAULT_CONTENT_TYPE);
        let given = PutOptions::with_content_type(Some("text/plain".into()));
        assert_eq!(given.content_type_for(&key("a/b.json")), "text/plain");
        assert!(PutOptions::parse_content_type("application/json; charset=utf-8").is_ok());
        for bad in ["", "json", "text/", "a b/c", "text/plain\n"] {
            assert!(PutOptions::parse_content_type(bad).is_err(), "{bad:?}");
        }
    }
}
