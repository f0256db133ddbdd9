//! Group commit for `durability = "batch"`: the two flushes core's
//! [`GroupCommit`](promote_core::kit::GroupCommit) asks for.
//!
//! - **Staged data**: one `syncfs` of the root's filesystem. It writes back and waits for every
//!   dirty page and inode there, so every staged file sealed before it began (bytes,
//!   permissions, digest xattr) is on disk before any of them is renamed into place.
//! - **Published names**: another `syncfs` of the same filesystem. It commits the renames and
//!   every directory a publish created, whatever directories they are in. Each key was renamed
//!   from the staging directory into its place, which only succeeds within one filesystem, so
//!   the staging directory's filesystem holds every published name and every directory above
//!   it up to the root.
//!
//!   One `syncfs` rather than an fsync of each distinct directory and of every one above it:
//!   a batch spread over many directories (a run's manifest, in its own order) took several
//!   fsyncs per flush, and on a journaled filesystem each could wait for a journal commit of
//!   its own while the next batch's renames kept dirtying the directories (BENCHMARKS §8).

use std::sync::Arc;

use promote_core::kit::GroupCommit;
use promote_core::{Error, Key, async_trait};

use crate::backend::Inner;
use crate::root::io_err;

/// The local backend's group commit.
#[derive(Debug)]
pub(crate) struct LocalGroup {
    inner: Arc<Inner>,
}

impl LocalGroup {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// One `syncfs` of the staging area's filesystem; `then` says, in its error, what a failure
    /// means for the batch.
    async fn syncfs(&self, then: &'static str) -> Result<(), Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            rustix::fs::syncfs(&inner.root.staging)
                .map_err(|e| io_err(format!("syncfs of the filesystem of {} ({then})", inner.root.path.display()), e))
        })
        .await
        .map_err(|e| Error::io("local group commit", std::io::Error::other(e)))?
    }
}

#[async_trait]
impl GroupCommit for LocalGroup {
    async fn flush_staged(&self) -> Result<(), Error> {
        if !self.inner.root.staging.exists() {
            // No staging area: nothing was staged, so nothing to flush.
            return Ok(());
        }
        self.syncfs("nothing of this batch was published; retry").await
    }

    async fn flush_published(&self, _keys: Vec<Key>) -> Result<(), Error> {
        // Core flushes only for keys it published, each staged first: the staging area exists.
        self.syncfs("its new objects are visible, but may not survive a power loss").await
    }
}
