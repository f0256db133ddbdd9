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
//!    before it started (the local backend: a second `syncfs`);
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

/// Promotions a caller keeps in flight to fill a flush under group commit: with fewer, each
/// flush covers only what happens to be in flight, and the flushes, not the bytes, set the pace.
/// Only the store's staging limit ([`crate::Store::limit_staging`]) of them stream bytes at a
/// time; the rest wait, sealed, for the next flush.
pub const BATCH: usize = 256;

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

    use tokio::sync::Semaphore;

    use super::*;

    /// Every wait in these tests is bounded: a flush that never comes fails the test, never hangs it.
    const BOUND: Duration = Duration::from_secs(10);

    /// A backend whose flushes each wait at a gate the test opens, one flush at a time, so the test
    /// decides who joins which flush. Counts the flushes and the keys each name flush covered.
    #[derive(Debug)]
    struct Gated {
        staged: AtomicUsize,
        published: Mutex<Vec<Vec<Key>>>,
        /// A permit per flush that began.
        began: Semaphore,
        /// A permit per flush allowed to end.
        gate: Semaphore,
        /// The flushes (counted from 1, across both kinds) that fail, and with what.
        fail: Mutex<Vec<(usize, Error)>>,
    }

    impl Gated {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                staged: AtomicUsize::new(0),
                published: Mutex::new(Vec::new()),
                began: Semaphore::new(0),
                gate: Semaphore::new(0),
                fail: Mutex::new(Vec::new()),
            })
        }

        async fn flush(&self, n: usize) -> Result<(), Error> {
            self.began.add_permits(1);
            self.gate.acquire().await.expect("gate open").forget();
            let mut fail = self.fail.lock().unwrap();
            match fail.iter().position(|(at, _)| *at == n) {
                Some(i) => Err(fail.remove(i).1),
                None => Ok(()),
            }
        }

        fn flushes(&self) -> usize {
            self.staged.load(Ordering::SeqCst) + self.published.lock().unwrap().len()
        }

        /// Waits until a flush has begun (it then waits at the gate).
        async fn began(&self) {
            let permit = tokio::time::timeout(BOUND, self.began.acquire()).await;
            permit.expect("no flush began within the bound").expect("semaphore").forget();
        }

        /// Lets one flush end.
        fn open_one(&self) {
            self.gate.add_permits(1);
        }
    }

    #[async_trait]
    impl GroupCommit for Gated {
        async fn flush_staged(&self) -> Result<(), Error> {
            let n = self.flushes() + 1;
            self.staged.fetch_add(1, Ordering::SeqCst);
            self.flush(n).await
        }
        async fn flush_published(&self, keys: Vec<Key>) -> Result<(), Error> {
            let n = {
                let mut published = self.published.lock().unwrap();
                published.push(keys);
                self.staged.load(Ordering::SeqCst) + published.len()
            };
            self.flush(n).await
        }
    }

    fn gated_group(backend: &Arc<Gated>) -> Arc<Group> {
        Arc::new(Group::new(Arc::clone(backend) as Arc<dyn GroupCommit>))
    }

    /// Waits until `n` members wait in `queue` for its next flush.
    async fn queued<T>(queue: &Queue<T>, n: usize) {
        let waited = tokio::time::timeout(BOUND, async {
            while queue.state.lock().unwrap().0.len() < n {
                tokio::task::yield_now().await;
            }
        });
        waited.await.unwrap_or_else(|_| panic!("{n} members never queued for the next flush"));
    }

    async fn answer<T>(task: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(BOUND, task).await.expect("no answer within the bound").expect("member task")
    }

    fn key(i: usize) -> Key {
        Key::new(format!("k{i}")).unwrap()
    }

    /// Members that arrive while a flush runs are not covered by it: they wait, and all of them
    /// share the next flush (one flush for 99 members, not one each).
    #[tokio::test]
    async fn members_arriving_during_a_flush_share_the_next_one_and_are_not_answered_by_it() {
        let backend = Gated::new();
        let group = gated_group(&backend);
        let first = tokio::spawn({
            let group = Arc::clone(&group);
            async move { group.staged_durable().await }
        });
        backend.began().await;
        let later: Vec<_> = (0..99)
            .map(|_| {
                let group = Arc::clone(&group);
                tokio::spawn(async move { group.staged_durable().await })
            })
            .collect();
        queued(&group.staged, 99).await;
        backend.open_one();
        answer(first).await.expect("the first member's flush");
        backend.began().await;
        assert!(later.iter().all(|t| !t.is_finished()), "a member was answered by a flush that began before it came");
        backend.open_one();
        for task in later {
            answer(task).await.expect("a later member's flush");
        }
        assert_eq!(backend.staged.load(Ordering::SeqCst), 2, "100 members: one flush for the first, one for the rest");

        // The same for the names: the second flush covers the 99 keys, each once.
        let first = tokio::spawn({
            let group = Arc::clone(&group);
            async move { group.published_durable(key(0)).await }
        });
        backend.began().await;
        let later: Vec<_> = (1..100)
            .map(|i| {
                let group = Arc::clone(&group);
                tokio::spawn(async move { group.published_durable(key(i)).await })
            })
            .collect();
        queued(&group.published, 99).await;
        backend.open_one();
        answer(first).await.expect("the first name flush");
        backend.began().await;
        assert!(later.iter().all(|t| !t.is_finished()), "a key was answered by a name flush that began before it");
        backend.open_one();
        for task in later {
            answer(task).await.expect("a later name flush");
        }
        let published = backend.published.lock().unwrap().clone();
        assert_eq!(published.len(), 2, "{published:?}");
        assert_eq!(published[0], [key(0)]);
        let mut second: Vec<String> = published[1].iter().map(ToString::to_string).collect();
        second.sort();
        let mut want: Vec<String> = (1..100).map(|i| key(i).to_string()).collect();
        want.sort();
        assert_eq!(second, want, "the second name flush covers each later key once");
    }

    /// A failed flush fails every member that shared it, with its kind and context, and the next
    /// flush starts afresh (its members succeed): for the data flush and for the name flush.
    #[tokio::test]
    async fn a_failed_flush_fails_every_member_that_shared_it_and_only_those() {
        let backend = Gated::new();
        let group = gated_group(&backend);
        backend.fail.lock().unwrap().push((1, Error::io("syncfs of /data", std::io::ErrorKind::StorageFull.into())));
        let (a, b, ()) = tokio::join!(group.staged_durable(), group.staged_durable(), async {
            backend.began().await;
            backend.open_one();
        });
        assert_eq!(backend.staged.load(Ordering::SeqCst), 1, "both members shared one flush");
        for err in [a.expect_err("failed flush"), b.expect_err("failed flush")] {
            match err {
                Error::Io { context, source } => {
                    assert_eq!(context, "syncfs of /data");
                    assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
                }
                other => panic!("not the flush's I/O error: {other}"),
            }
        }
        let (next, ()) = tokio::join!(group.staged_durable(), async {
            backend.began().await;
            backend.open_one();
        });
        next.expect("the data flush after a failed one succeeds");

        // A failed name flush (here a backend's own error, not I/O): each member gets it as an
        // I/O error of the group commit that says what failed.
        let backend = Gated::new();
        let group = gated_group(&backend);
        backend.fail.lock().unwrap().push((1, Error::Unsupported { operation: "fsync".into(), backend: "x".into() }));
        let (c, d, ()) = tokio::join!(group.published_durable(key(1)), group.published_durable(key(2)), async {
            backend.began().await;
            backend.open_one();
        });
        assert_eq!(backend.published.lock().unwrap().len(), 1, "both keys shared one name flush");
        for err in [c.expect_err("failed name flush"), d.expect_err("failed name flush")] {
            let said = matches!(&err, Error::Io { context, source }
                if context == "group commit" && source.to_string().contains("fsync"));
            assert!(said, "not the flush's error, as I/O of the group commit: {err:?}");
        }
        let (next, ()) = tokio::join!(group.published_durable(key(3)), async {
            backend.began().await;
            backend.open_one();
        });
        next.expect("the name flush after a failed one succeeds");
    }

    /// A caller that gives up (its future dropped) never strands the others: not the one whose
    /// arrival started the flush task, not one waiting for the next flush.
    #[tokio::test]
    async fn a_dropped_caller_strands_nobody() {
        let backend = Gated::new();
        let group = gated_group(&backend);
        let starter = tokio::spawn({
            let group = Arc::clone(&group);
            async move { group.staged_durable().await }
        });
        backend.began().await;
        let quitter = tokio::spawn({
            let group = Arc::clone(&group);
            async move { group.staged_durable().await }
        });
        let stayer = tokio::spawn({
            let group = Arc::clone(&group);
            async move { group.staged_durable().await }
        });
        queued(&group.staged, 2).await;
        starter.abort();
        quitter.abort();
        backend.open_one();
        backend.began().await;
        backend.open_one();
        answer(stayer).await.expect("the member that stayed is answered");
        assert_eq!(backend.staged.load(Ordering::SeqCst), 2);
        // The queue is idle again, and a new member starts a new flush.
        let again = tokio::spawn({
            let group = Arc::clone(&group);
            async move { group.staged_durable().await }
        });
        backend.began().await;
        backend.open_one();
        answer(again).await.expect("a member after the drops");
        assert_eq!(backend.staged.load(Ordering::SeqCst), 3);
        assert!(format!("{:?}", group.staged).contains("Staged"), "the queue's Debug names its phase");
    }

    /// A backend that logs every step of every promotion, in order.
    #[derive(Debug, Default)]
    struct Logged {
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Logged {
        /// Waits (bounded) until every member's log has an entry starting with `step`.
        async fn until(&self, step: &str) {
            let all = async {
                while self.log.lock().unwrap().iter().filter(|e| e.starts_with(step)).count() < MEMBERS {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(BOUND, all).await.unwrap_or_else(|_| panic!("not every member reached {step:?}"));
        }
    }

    /// How many promotions the ordering test runs at once.
    const MEMBERS: usize = 20;

    struct LoggedWrite {
        key: Key,
        log: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl GroupCommit for Logged {
        // Gates, not pauses: a data flush ends once every promotion has sealed, a name flush once
        // every one has published, so later members pile up behind the first flush of each kind.
        async fn flush_staged(&self) -> Result<(), Error> {
            self.log.lock().unwrap().push("flush_staged".into());
            self.until("seal ").await;
            Ok(())
        }
        async fn flush_published(&self, keys: Vec<Key>) -> Result<(), Error> {
            self.until("publish ").await;
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
        let tasks: Vec<_> = (0..MEMBERS)
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
            answer(task).await;
        }
        let log = log.lock().unwrap().clone();
        let at = |entry: &str| log.iter().position(|e| e == entry).unwrap_or_else(|| panic!("no {entry:?} in {log:?}"));
        let flushes: Vec<usize> =
            log.iter().enumerate().filter(|(_, e)| *e == "flush_staged").map(|(i, _)| i).collect();
        for i in 0..MEMBERS {
            let (seal, publish) = (at(&format!("seal k{i}")), at(&format!("publish k{i}")));
            let (flushed, receipt) = (at(&format!("flushed k{i}")), at(&format!("receipt k{i}")));
            assert!(flushes.iter().any(|&f| seal < f && f < publish), "k{i} published without a data flush: {log:?}");
            assert!(publish < flushed && flushed < receipt, "k{i}'s receipt before its name flush: {log:?}");
        }
        // The first data flush waits until all have sealed, so the rest share at most a few more.
        assert!(flushes.len() <= 3, "{MEMBERS} concurrent promotions took {} data flushes", flushes.len());
    }
}
