//! Many objects at once, as a library: every file under a directory into a store ([`put`]),
//! every object under a prefix into a directory ([`get`]), and objects from one store into
//! another ([`copy`]). Each object goes through core's verified, create-only promotion (or, out
//! of the store, a verified read into a temporary file moved into place), so each one is
//! whole or absent.
//!
//! The engines print nothing. Each one's results come as a stream of per-object results, in
//! order, that the caller drives (stop reading it and the work stops); what happens meanwhile
//! (bytes moved, files skipped, a warning) reaches the caller as [`Event`]s through an
//! [`Events`] sink. Failures are typed ([`Error`]); a caller turns them into messages and exit
//! codes. Nothing here assumes a multi-threaded runtime.
//!
//! One file each: [`put`] (directory walk, small files on worker threads, large ones read
//! ahead), [`get`] (verified reads into place), [`copy`] (store to store, answered from one
//! `head` when the destination already holds the object), [`events`] and [`error`].

pub mod copy;
pub mod error;
pub mod events;
pub mod get;
pub mod put;

pub use error::Error;
pub use events::{Event, Events};

use promote_core::Key;

/// `rel` under `prefix` (`None`: the top of the store).
///
/// # Errors
///
/// When the result is not a valid key.
pub fn under(prefix: &Option<Key>, rel: &str) -> Result<Key, promote_core::Error> {
    match prefix {
        Some(prefix) => Key::join(prefix, rel),
        None => Key::new(rel),
    }
}
