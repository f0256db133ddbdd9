//! The local staged handle: chunks go to a blocking writer task through a small bounded queue,
//! so hashing (in core) and writing overlap while memory stays bounded.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use promote_core::{Bytes, Digest, Error, Key, Mode, StagedWrite, async_trait};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backend::Inner;
use crate::config::Durability;
use crate::{publish, staging, writeback};

/// Chunks queued between the caller and the writer task.
const QUEUE: usize = 4;

pub(crate) struct LocalStaged {
    inner: Arc<Inner>,
    key: Key,
    name: String,
    queue: Option<mpsc::Sender<Bytes>>,
    worker: Option<JoinHandle<std::io::Result<File>>>,
}

impl LocalStaged {
    pub(crate) fn start(inner: Arc<Inner>, key: Key, name: String, mut file: File) -> Self {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let durable = inner.config.durability == Durability::Full;
        let worker = tokio::task::spawn_blocking(move || {
            let (mut written, mut hinted) = (0u64, 0u64);
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
                promote_core::buffers::recycle(chunk);
                if durable && written - hinted >= writeback::EVERY {
                    writeback::start(&file, hinted, written - hinted);
                    hinted = written;
                }
            }
            Ok(file)
        });
        Self { inner, key, name, queue: Some(tx), worker: Some(worker) }
    }

    /// Closes the queue and waits for the writer: the file, fully written.
    async fn finish_writing(&mut self) -> Result<File, Error> {
        self.queue = None;
        let Some(worker) = self.worker.take() else {
            return Err(Error::io("the staged writer already stopped", std::io::ErrorKind::BrokenPipe.into()));
        };
        let context = || format!("writing staged data for {:?} to {}", self.key, staging::shown(&self.name));
        match worker.await {
            Ok(Ok(file)) => Ok(file),
            Ok(Err(e)) => Err(Error::io(context(), e)),
            Err(join) => Err(Error::io(context(), std::io::Error::other(join))),
        }
    }

    /// Removes the staging file; nothing is left to do on drop.
    fn discard(&mut self) -> Result<(), Error> {
        self.queue = None;
        let name = std::mem::take(&mut self.name);
        if name.is_empty() { Ok(()) } else { staging::remove(&self.inner.root, &name) }
    }
}

#[async_trait]
impl StagedWrite for LocalStaged {
    async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        let Some(queue) = self.queue.as_ref() else {
            return Err(Error::io(
                format!("writing staged data for {:?}: the staged write already failed", self.key),
                std::io::ErrorKind::BrokenPipe.into(),
            ));
        };
        if queue.send(chunk).await.is_ok() {
            return Ok(());
        }
        // The writer stopped: it failed. Report why.
        let err = match self.finish_writing().await {
            Err(err) => err,
            Ok(_) => Error::io("staged writer stopped", std::io::ErrorKind::BrokenPipe.into()),
        };
        let _ = self.discard();
        Err(err)
    }

    async fn publish(mut self: Box<Self>, mode: &Mode, digest: &Digest) -> Result<Option<String>, Error> {
        let file = match self.finish_writing().await {
            Ok(file) => file,
            Err(err) => {
                let _ = self.discard();
                return Err(err);
            }
        };
        let name = std::mem::take(&mut self.name);
        let (inner, key, mode, digest) = (Arc::clone(&self.inner), self.key.clone(), mode.clone(), *digest);
        tokio::task::spawn_blocking(move || {
            publish::publish(&inner.root, &inner.config, &key, &name, file, &mode, &digest)
        })
        .await
        .map_err(|e| Error::io("publishing", std::io::Error::other(e)))?
    }

    async fn abort(mut self: Box<Self>) -> Result<(), Error> {
        if self.worker.is_some() {
            let _ = self.finish_writing().await;
        }
        self.discard()
    }
}

impl Drop for LocalStaged {
    fn drop(&mut self) {
        if let Err(err) = self.discard() {
            tracing::warn!(key = %self.key, error = %err, "could not discard staged data; `promote recover` will");
        }
    }
}
