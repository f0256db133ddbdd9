//! The local staged handle. Each chunk is written by its own short blocking task at its own
//! offset (`pwrite`), with at most [`IN_FLIGHT`] chunks outstanding per handle: hashing (in core)
//! and writing overlap, memory stays bounded, and an idle handle holds no thread — so any number
//! of handles can be open at once (tokio's blocking pool only caps how many chunks are being
//! written at the same moment, never how many handles exist).
//!
//! A small object (a first chunk of at most [`HOLD`] bytes that no other chunk follows) is not
//! written on a task of its own: the handle holds it, and the blocking call that seals or
//! publishes writes it first. A many-file put saves a thread hand-off per file that way.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use promote_core::{Bytes, Digest, Error, Key, Mode, StagedWrite, async_trait};
use tokio::task::JoinHandle;

use crate::backend::Inner;
use crate::{publish, staging, writeback};

/// Chunks being written at once, per handle. One: writes to one file take its inode lock in
/// turn, so a second concurrent `pwrite` only spins on that lock (measured: about a tenth of a
/// 1 GiB put's CPU with four, BENCHMARKS.md §1), burning the CPU the reader and hasher need.
/// Reading and hashing the next chunks still overlap the write (core reads ahead).
const IN_FLIGHT: usize = 1;

/// The largest first chunk the handle holds until it seals or publishes (see the module docs):
/// one whole chunk, so an object of one chunk is written by the call that seals or publishes it.
const HOLD: usize = promote_core::kit::CHUNK_SIZE;

pub(crate) struct LocalStaged {
    inner: Arc<Inner>,
    key: Key,
    name: String,
    file: Option<Arc<File>>,
    /// Writes started and not yet awaited, oldest first.
    pending: VecDeque<JoinHandle<std::io::Result<()>>>,
    /// Bytes handed to writes so far (the offset of the next chunk).
    offset: u64,
    /// Offset up to which writeback has been started.
    hinted: u64,
    /// Set once sealed for a group commit: the file's status after its metadata was set.
    sealed: Option<rustix::fs::Stat>,
    /// A small first chunk, not yet written: it belongs at offset 0.
    held: Option<Bytes>,
}

impl LocalStaged {
    pub(crate) fn start(inner: Arc<Inner>, key: Key, name: String, file: File) -> Self {
        Self {
            inner,
            key,
            name,
            file: Some(Arc::new(file)),
            pending: VecDeque::new(),
            offset: 0,
            hinted: 0,
            sealed: None,
            held: None,
        }
    }

    /// A handle on staging file `name` that already holds `len` bytes, put there by other means
    /// than [`StagedWrite::write`] (a kernel copy: [`crate::kernel_copy`]).
    pub(crate) fn written(inner: Arc<Inner>, key: Key, name: String, file: File, len: u64) -> Self {
        let mut staged = Self::start(inner, key, name, file);
        (staged.offset, staged.hinted) = (len, len);
        staged
    }

    fn context(&self) -> String {
        format!("writing staged data for {:?} to {}", self.key, staging::shown(&self.name))
    }

    /// A failed write, with what to do when the disk is full.
    fn write_error(&self, e: std::io::Error) -> Error {
        write_failed(self.context(), &self.inner.root.path, e)
    }

    /// Waits for the oldest outstanding write.
    async fn settle_one(&mut self) -> Result<(), Error> {
        let Some(task) = self.pending.pop_front() else { return Ok(()) };
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.write_error(e)),
            Err(join) => Err(Error::io(self.context(), std::io::Error::other(join))),
        }
    }

    /// Waits for every outstanding write: the file, fully written.
    async fn finish_writing(&mut self) -> Result<File, Error> {
        while !self.pending.is_empty() {
            self.settle_one().await?;
        }
        let Some(file) = self.file.take() else {
            return Err(Error::io(
                format!("{}: the staged write already failed", self.context()),
                std::io::ErrorKind::BrokenPipe.into(),
            ));
        };
        // Every task holding a clone has finished.
        Arc::try_unwrap(file).map_err(|_| Error::io(self.context(), std::io::Error::other("a write is still running")))
    }

    /// Starts writing `chunk` at offset `at` on a blocking task, with a writeback hint when due.
    fn start_write(&mut self, chunk: Bytes, at: u64) -> Result<(), Error> {
        let Some(file) = self.file.as_ref().map(Arc::clone) else {
            return Err(Error::io(
                format!("{}: the staged write already failed", self.context()),
                std::io::ErrorKind::BrokenPipe.into(),
            ));
        };
        let end = at + chunk.len() as u64;
        let hint = (self.inner.config.durability.syncs() && end.saturating_sub(self.hinted) >= writeback::EVERY)
            .then(|| (std::mem::replace(&mut self.hinted, end), end));
        self.pending.push_back(tokio::task::spawn_blocking(move || {
            file.write_all_at(&chunk, at)?;
            promote_core::kit::buffers::recycle(chunk);
            if let Some((from, to)) = hint {
                writeback::start(&file, from, to - from);
            }
            Ok(())
        }));
        Ok(())
    }

    /// Removes the staging file; nothing is left to do on drop.
    fn discard(&mut self) -> Result<(), Error> {
        self.file = None;
        let name = std::mem::take(&mut self.name);
        if name.is_empty() { Ok(()) } else { staging::remove(&self.inner.root, &name) }
    }

    /// Fails the handle: its staging file is removed at once.
    fn fail(&mut self, err: Error) -> Error {
        for task in self.pending.drain(..) {
            task.abort();
        }
        let _ = self.discard();
        err
    }
}

#[async_trait]
impl StagedWrite for LocalStaged {
    async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        if self.offset == 0 && self.held.is_none() && chunk.len() <= HOLD {
            self.offset = chunk.len() as u64;
            self.held = Some(chunk);
            return Ok(());
        }
        // A second chunk: the held one goes first, like any other.
        if let Some(first) = self.held.take() {
            self.start_write(first, 0)?;
        }
        if self.pending.len() >= IN_FLIGHT
            && let Err(err) = self.settle_one().await
        {
            return Err(self.fail(err));
        }
        let at = self.offset;
        self.offset += chunk.len() as u64;
        self.start_write(chunk, at)
    }

    async fn seal(&mut self, digest: &Digest) -> Result<(), Error> {
        let file = match self.finish_writing().await {
            Ok(file) => Arc::new(file),
            Err(err) => return Err(self.fail(err)),
        };
        self.file = Some(Arc::clone(&file));
        let (config, name, digest, held) = (self.inner.config.clone(), self.name.clone(), *digest, self.held.take());
        let (context, root) = (self.context(), self.inner.root.path.clone());
        let sealed = promote_core::kit::blocking::run(move || {
            if let Some(chunk) = held {
                file.write_all_at(&chunk, 0).map_err(|e| write_failed(context, &root, e))?;
            }
            publish::seal(&config, &file, &name, &digest)
        })
        .await
        .and_then(|r| r);
        match sealed {
            Ok(st) => {
                self.sealed = Some(st);
                Ok(())
            }
            Err(err) => Err(self.fail(err)),
        }
    }

    async fn publish(mut self: Box<Self>, mode: &Mode, digest: &Digest) -> Result<Option<String>, Error> {
        let file = match self.finish_writing().await {
            Ok(file) => file,
            Err(err) => return Err(self.fail(err)),
        };
        let (context, held) = (self.context(), self.held.take());
        let name = std::mem::take(&mut self.name);
        let (inner, key, mode, digest, sealed) =
            (Arc::clone(&self.inner), self.key.clone(), mode.clone(), *digest, self.sealed);
        promote_core::kit::blocking::run(move || {
            if let Some(chunk) = held
                && let Err(e) = file.write_all_at(&chunk, 0)
            {
                drop(file);
                let _ = staging::remove(&inner.root, &name);
                return Err(write_failed(context, &inner.root.path, e));
            }
            publish::publish(&inner.root, &inner.config, &key, &name, file, &mode, &digest, sealed)
        })
        .await?
    }

    async fn abort(mut self: Box<Self>) -> Result<(), Error> {
        // Let running writes end before the file goes, so none outlives the handle.
        while !self.pending.is_empty() {
            let _ = self.settle_one().await;
        }
        self.discard()
    }
}

/// A failed write of staged data (`context`) under `root`, with what to do when the disk is full.
pub(crate) fn write_failed(context: String, root: &std::path::Path, e: std::io::Error) -> Error {
    let full = e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::EDQUOT);
    if full {
        Error::io(format!("{context}: the filesystem of {} is full (free space there, then retry)", root.display()), e)
    } else {
        Error::io(context, e)
    }
}

impl Drop for LocalStaged {
    fn drop(&mut self) {
        if let Err(err) = self.discard() {
            tracing::warn!(key = %self.key, error = %err, "could not discard staged data; `promote recover` will");
        }
    }
}
