//! Group commit: many promotions made durable by a few shared flushes instead of one fsync each.
//!
//! A backend configured to batch its durability (the local backend's `durability = "batch"`)
//! returns a [`GroupCommit`] from [`Backend::group_commit`](crate::Backend::group_commit). Core
//! then runs every promotion on that store through the same sequence:
//!
//! 1. the staged bytes are written and verified, and the backend **seals** them
//!    ([`StagedWrite::seal`](crate::StagedWrite::seal)): data and metadata final, nothing synced;
//! 2. **flush the staged data**: one [`GroupCommit::flush_staged`] covers every promotion sealed
//!    before it started (the local backend: one `syncfs`);
//! 3. **publish** (no-replace rename), with no per-object fsync;
//! 4. **flush the published names**: one [`GroupCommit::flush_published`] for every key published
//!    before it started (the local backend: each distinct directory fsynced once);
//! 5. only then does the promotion return its receipt.
//!
//! Callers do nothing special: concurrent promotions on one [`Store`](crate::Store) (a directory
//! put, a `promote run`) join the same flushes. A promotion that arrives while a flush runs waits
//! for the next one, so the number of flushes follows the disk's speed, not the number of files.
//! Flushes run on their own tasks: a caller that gives up (a dropped future) never strands the
//! others.
//!
//! # Atomicity
//!
//! - Nothing is published before its bytes are durable (step 2 precedes step 3), so after a
//!   crash or power loss every key is either absent or complete; the staging files of
//!   promotions that had not been published are left for `sweep_staging` (`promote recover`).
//! - A receipt means durable, exactly as with a per-object fsync: it is returned only after the
//!   flush of step 4 covering its key succeeded. A failed flush fails every promotion that was
//!   waiting for it.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::key::Key;

/// A backend's half of group commit: two flushes, each covering everything done before it began.
#[async_trait]
pub trait GroupCommit: Send + Sync + fmt::Debug + 'static {
    /// Makes the data and metadata of every object sealed so far durable.
    ///
    /// # Errors
    ///
    /// When the flush fails; none of the waiting objects may then be published.
    async fn flush_staged(&self) -> Result<(), Error>;

    /// Makes the names under which `keys` were published durable (each directory once).
    ///
    /// # Errors
    ///
    /// When the flush fails; the objects are visible but may not survive a power loss.
    async fn flush_published(&self, keys: Vec<Key>) -> Result<(), Error>;
}

/// The two flush queues of one store.
#[derive(Debug)]
pub(crate) struct Group {
    staged: Arc<Queue<()>>,
    published: Arc<Queue<Key>>,
}

impl Group {
    pub(crate) fn new(backend: Arc<dyn GroupCommit>) -> Self {
        Self {
            staged: Arc::new(Queue::new(Arc::clone(&backend), Phase::Staged)),
            published: Arc::new(Queue::new(backend, Phase::Published)),
        }
    }

    /// Waits for a flush of staged data that began after this call.
    pub(crate) async fn staged_durable(&self) -> Result<(), Error> {
        Queue::join(&self.staged, ()).await
    }

    /// Waits for a flush of published names, covering `key`, that began after this call.
    pub(crate) async fn published_durable(&self, key: Key) -> Result<(), Error> {
        Queue::join(&self.published, key).await
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Staged,
    Published,
}

type Waiter = oneshot::Sender<Result<(), Error>>;

/// Items waiting for the next flush, and whether a flush task is running.
struct Queue<T> {
    backend: Arc<dyn GroupCommit>,
    phase: Phase,
    state: Mutex<(Vec<(T, Waiter)>, bool)>,
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("phase", &self.phase).finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Queue<T>
where
    Self: Flush<T>,
{
    fn new(backend: Arc<dyn GroupCommit>, phase: Phase) -> Self {
        Self { backend, phase, state: Mutex::new((Vec::new(), false)) }
    }

    /// Queues `item` and waits for the flush that takes it. Starts the flush task if none runs.
    async fn join(this: &Arc<Self>, item: T) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut state = this.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.0.push((item, tx));
            !std::mem::replace(&mut state.1, true)
        };
        if start {
            tokio::spawn(Arc::clone(this).drain());
        }
        rx.await.unwrap_or_else(|_| {
            Err(Error::io("group commit", std::io::Error::other("the flush task ended without an answer")))
        })
    }

    /// Flushes round after round until nobody waits.
    async fn drain(self: Arc<Self>) {
        // Ends when a flush finds nobody new waiting; each round answers everyone it took.
        loop {
            let round = {
                let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if state.0.is_empty() {
                    state.1 = false;
                    return;
                }
                std::mem::take(&mut state.0)
            };
            let (items, waiters): (Vec<T>, Vec<Waiter>) = round.into_iter().unzip();
            let n = waiters.len();
            let result = self.flush(items).await;
            tracing::debug!(phase = ?self.phase, members = n, ok = result.is_ok(), "group flush");
            for waiter in waiters {
                let _ = waiter.send(result.as_ref().copied().map_err(shared));
            }
        }
    }
}

/// The backend call behind each queue.
#[async_trait]
trait Flush<T> {
    async fn flush(&self, items: Vec<T>) -> Result<(), Error>;
}

#[async_trait]
impl Flush<()> for Queue<()> {
    async fn flush(&self, _items: Vec<()>) -> Result<(), Error> {
        self.backend.flush_staged().await
    }
}

#[async_trait]
impl Flush<Key> for Queue<Key> {
    async fn flush(&self, keys: Vec<Key>) -> Result<(), Error> {
        self.backend.flush_published(keys).await
    }
}

/// A copy of a flush error for each promotion that waited for it.
fn shared(err: &Error) -> Error {
    match err {
        Error::Io { context, source } => {
            Error::io(context.clone(), std::io::Error::new(source.kind(), source.to_string()))
        }
        other => Error::io("group commit", std::io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Default)]
    struct Counting {
        staged: AtomicUsize,
        published: Mutex<Vec<usize>>,
        fail: bool,
    }

    #[async_trait]
    impl GroupCommit for Counting {
        async fn flush_staged(&self) -> Result<(), Error> {
            self.staged.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.fail { Err(Error::io("flushing", std::io::ErrorKind::Other.into())) } else { Ok(()) }
        }
        async fn flush_published(&self, keys: Vec<Key>) -> Result<(), Error> {
            self.published.lock().unwrap().push(keys.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_members_share_few_flushes() {
        let backend = Arc::new(Counting::default());
        let group = Arc::new(Group::new(Arc::clone(&backend) as Arc<dyn GroupCommit>));
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let group = Arc::clone(&group);
                tokio::spawn(async move {
                    group.staged_durable().await?;
                    group.published_durable(Key::new(format!("k{i}"))?).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let staged = backend.staged.load(Ordering::SeqCst);
        let published = backend.published.lock().unwrap().clone();
        assert!(staged <= 3, "100 concurrent members took {staged} data flushes");
        assert!(published.len() <= 3, "100 concurrent members took {} name flushes", published.len());
        assert_eq!(published.iter().sum::<usize>(), 100, "every key reaches a name flush once");
    }

    /// A backend that logs every step of every promotion, in order.
    #[derive(Debug, Default)]
    struct Logged {
        log: Arc<Mutex<Vec<String>>>,
    }

    struct LoggedWrite {
        key: Key,
        log: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl GroupCommit for Logged {
        async fn flush_staged(&self) -> Result<(), Error> {
            self.log.lock().unwrap().push("flush_staged".into());
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        }
        async fn flush_published(&self, keys: Vec<Key>) -> Result<(), Error> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut log = self.log.lock().unwrap();
            log.extend(keys.iter().map(|k| format!("flushed {k}")));
            Ok(())
        }
    }

    #[async_trait]
    impl crate::StagedWrite for LoggedWrite {
        async fn write(&mut self, _chunk: bytes::Bytes) -> Result<(), Error> {
            Ok(())
        }
        async fn seal(&mut self, _digest: &crate::Digest) -> Result<(), Error> {
            self.log.lock().unwrap().push(format!("seal {}", self.key));
            Ok(())
        }
        async fn publish(self: Box<Self>, _mode: &crate::Mode, _d: &crate::Digest) -> Result<Option<String>, Error> {
            self.log.lock().unwrap().push(format!("publish {}", self.key));
            Ok(None)
        }
        async fn abort(self: Box<Self>) -> Result<(), Error> {
            Ok(())
        }
    }

    #[async_trait]
    impl crate::Backend for Logged {
        fn kind(&self) -> &'static str {
            "logged"
        }
        fn location(&self) -> String {
            "logged:".into()
        }
        fn capabilities(&self) -> crate::Capabilities {
            crate::Capabilities {
                create_refused: None,
                replace: false,
                replace_if_version: false,
                stored_digest: false,
                durable: true,
                staging_outlives_writer: false,
            }
        }
        fn group_commit(&self) -> Option<Arc<dyn GroupCommit>> {
            Some(Arc::new(Self { log: Arc::clone(&self.log) }))
        }
        async fn stage(&self, key: &Key, _e: &crate::Expected) -> Result<Box<dyn crate::StagedWrite>, Error> {
            Ok(Box::new(LoggedWrite { key: key.clone(), log: Arc::clone(&self.log) }))
        }
        async fn head(&self, key: &Key) -> Result<crate::Meta, Error> {
            Err(Error::NotFound { key: key.to_string() })
        }
        async fn read(&self, key: &Key) -> Result<crate::ByteStream, Error> {
            Err(Error::NotFound { key: key.to_string() })
        }
        async fn delete(&self, key: &Key) -> Result<(), Error> {
            Err(Error::NotFound { key: key.to_string() })
        }
        async fn list(&self, _prefix: &str) -> Result<Vec<crate::Entry>, Error> {
            Ok(Vec::new())
        }
        async fn sweep_staging(&self, _o: Duration, _d: bool) -> Result<Vec<crate::Leftover>, Error> {
            Ok(Vec::new())
        }
    }

    /// The order that makes a batch crash-safe: sealed, then a data flush, then published, then a
    /// flush of the names, then the receipt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_promotion_is_flushed_before_publish_and_again_before_its_receipt() {
        let backend = Logged::default();
        let log = Arc::clone(&backend.log);
        let store = crate::Store::new(Arc::new(backend)).limit_staging(2);
        assert!(store.batches_durability());
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (store, log) = (store.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    let key = Key::new(format!("k{i}")).unwrap();
                    let body = futures_util::stream::iter([Ok(bytes::Bytes::from(vec![i as u8; 10]))]);
                    store.promote_stream(&key, body, &crate::Expected::default(), crate::Mode::Create).await.unwrap();
                    log.lock().unwrap().push(format!("receipt {key}"));
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let log = log.lock().unwrap().clone();
        let at = |entry: &str| log.iter().position(|e| e == entry).unwrap_or_else(|| panic!("no {entry:?} in {log:?}"));
        let flushes: Vec<usize> =
            log.iter().enumerate().filter(|(_, e)| *e == "flush_staged").map(|(i, _)| i).collect();
        for i in 0..20 {
            let (seal, publish) = (at(&format!("seal k{i}")), at(&format!("publish k{i}")));
            let (flushed, receipt) = (at(&format!("flushed k{i}")), at(&format!("receipt k{i}")));
            assert!(flushes.iter().any(|&f| seal < f && f < publish), "k{i} published without a data flush: {log:?}");
            assert!(publish < flushed && flushed < receipt, "k{i}'s receipt before its name flush: {log:?}");
        }
        assert!(flushes.len() < 20, "20 concurrent promotions took {} data flushes", flushes.len());
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_member() {
        let backend = Arc::new(Counting { fail: true, ..Counting::default() });
        let group = Arc::new(Group::new(backend as Arc<dyn GroupCommit>));
        let (a, b) = tokio::join!(group.staged_durable(), group.staged_durable());
        assert!(a.is_err() && b.is_err());
    }
}
