//! After `delete`: remove the directories a key leaves empty, so a store does not fill with
//! empty directories as objects come and go.
//!
//! Deepest first, each with `unlinkat(AT_REMOVEDIR)`, which only ever removes an empty
//! directory; the walk stops at the first one that is not empty (or not there). The root itself
//! is never removed. A put racing this into the same directory can find it gone and fail with an
//! I/O error naming the key: nothing is published or lost, and a retry succeeds.

use std::os::fd::OwnedFd;

use promote_core::Key;
use rustix::fs::AtFlags;

use crate::root::{Root, open_dir_at};

/// Removes `key`'s empty ancestor directories below the root; fsyncs each directory whose
/// entry was removed when `sync`.
pub(crate) fn empty_dirs(root: &Root, key: &Key, sync: bool) {
    let segments: Vec<&str> = key.segments().collect();
    let dirs = &segments[..segments.len() - 1];
    // Open the chain root → … → the key's parent, refusing links as every walk does.
    let mut chain: Vec<OwnedFd> = Vec::with_capacity(dirs.len());
    for segment in dirs {
        let opened = match chain.last() {
            Some(parent) => open_dir_at(parent, segment),
            None => open_dir_at(&root.dir, segment),
        };
        match opened {
            Ok(fd) => chain.push(fd),
            Err(_) => return,
        }
    }
    // chain[i] is dirs[i]; its parent is chain[i - 1] (or the root for i = 0).
    for i in (0..dirs.len()).rev() {
        let parent = if i == 0 { &root.dir } else { &chain[i - 1] };
        if rustix::fs::unlinkat(parent, dirs[i], AtFlags::REMOVEDIR).is_err() {
            return;
        }
        if sync {
            let _ = rustix::fs::fsync(parent);
        }
    }
}
