//! Group commit for `durability = "batch"`: the two flushes core's
//! [`GroupCommit`](promote_core::kit::GroupCommit) asks for.
//!
//! - **Staged data**: one `syncfs` of the root's filesystem. It writes back and waits for every
//!   dirty page and inode there, so every staged file sealed before it began (bytes,
//!   permissions, digest xattr) is on disk before any of them is renamed into place.
//! - **Published names**: every distinct directory that holds a published key, and every
//!   directory above it up to the root, fsynced once, whether a publish created it or found it.

use std::collections::BTreeSet;
use std::sync::Arc;

use promote_core::kit::GroupCommit;
use promote_core::{Error, Key, async_trait};
use rustix::io::Errno;

use crate::backend::Inner;
use crate::root::{io_err, open_dir_at};

/// The local backend's group commit.
#[derive(Debug)]
pub(crate) struct LocalGroup {
    inner: Arc<Inner>,
}

impl LocalGroup {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    async fn blocking<F>(&self, f: F) -> Result<(), Error>
    where
        F: FnOnce(&Inner) -> Result<(), Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::io("local group commit", std::io::Error::other(e)))?
    }
}

#[async_trait]
impl GroupCommit for LocalGroup {
    async fn flush_staged(&self) -> Result<(), Error> {
        self.blocking(|inner| {
            if !inner.root.staging.exists() {
                // No staging area: nothing was staged, so nothing to flush.
                return Ok(());
            }
            rustix::fs::syncfs(&inner.root.staging).map_err(|e| {
                io_err(
                    format!(
                        "syncfs of the filesystem of {} (nothing of this batch was published; retry)",
                        inner.root.path.display()
                    ),
                    e,
                )
            })
        })
        .await
    }

    async fn flush_published(&self, keys: Vec<Key>) -> Result<(), Error> {
        self.blocking(move |inner| {
            for dir in directories(&keys) {
                let shown = if dir.is_empty() { ".".to_owned() } else { dir.join("/") };
                let failed = |e: Errno| {
                    io_err(
                        format!(
                            "fsync of directory '{shown}' under {} (its new objects are visible, but may not survive a power loss)",
                            inner.root.path.display()
                        ),
                        e,
                    )
                };
                match dir.split_first() {
                    None => rustix::fs::fsync(&inner.root.dir).map_err(failed)?,
                    Some((first, rest)) => {
                        let mut fd = open_dir_at(&inner.root.dir, first).map_err(failed)?;
                        for segment in rest {
                            fd = open_dir_at(&fd, segment).map_err(failed)?;
                        }
                        rustix::fs::fsync(&fd).map_err(failed)?;
                    }
                }
            }
            Ok(())
        })
        .await
    }
}

/// Every directory holding one of `keys`, and every directory above those, up to and including
/// the root (the empty path), each once.
fn directories(keys: &[Key]) -> BTreeSet<Vec<String>> {
    let mut dirs = BTreeSet::new();
    for key in keys {
        let segments: Vec<String> = key.segments().map(str::to_owned).collect();
        for depth in 0..segments.len() {
            dirs.insert(segments[..depth].to_vec());
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_directory_once_with_every_ancestor() {
        let keys: Vec<Key> = ["a/b/1", "a/b/2", "a/c/3", "top"].iter().map(|k| Key::new(*k).unwrap()).collect();
        let dirs: Vec<String> = directories(&keys).into_iter().map(|d| d.join("/")).collect();
        assert_eq!(dirs, ["", "a", "a/b", "a/c"]);
    }
}
