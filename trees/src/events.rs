//! What the engines tell their caller while they work (besides each object's result, which
//! comes in their result streams).

use std::path::PathBuf;
use std::sync::Arc;

use promote_core::Key;

/// Something that happened while objects moved.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A directory entry left out of a put.
    Skipped {
        /// The entry.
        path: PathBuf,
        /// Why.
        why: Skip,
    },
    /// Core started reading a local file on its own: `file` is a duplicate of its descriptor,
    /// sharing its offset, so its position says how far the read has got, until
    /// [`Event::ReadDone`] with the same `id`. (The file's bytes are not counted otherwise
    /// until its object is done.)
    Reading {
        /// Pairs it with its [`Event::ReadDone`].
        id: u64,
        /// The duplicate descriptor.
        file: Arc<std::fs::File>,
    },
    /// The read announced by [`Event::Reading`] ended.
    ReadDone {
        /// As in [`Event::Reading`].
        id: u64,
    },
    /// Bytes written out (a get) or read from a stream.
    Bytes {
        /// How many.
        n: u64,
    },
    /// An object modified since it was promoted is copied out anyway, as asked (`force`),
    /// checked against its size only.
    ModifiedCopied {
        /// The object.
        key: Key,
    },
}

/// Why a directory entry was left out of a put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A symbolic link, and links are not followed.
    SymbolicLink,
    /// Not a regular file (a socket, a device, a FIFO).
    NotAFile,
}

/// Where events go. Implemented for closures (`Fn(Event)`).
pub trait Events: Send + Sync {
    /// Takes one event; must return quickly.
    fn event(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> Events for F {
    fn event(&self, event: Event) {
        self(event);
    }
}
