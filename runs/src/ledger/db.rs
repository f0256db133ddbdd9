//! The ledger shared by a run's tasks, group-committed.
//!
//! Every call waits in a queue; whoever takes the ledger next runs everything queued in one
//! `BEGIN IMMEDIATE` transaction, each call inside a savepoint of its own (a failed call undoes
//! only its own changes), commits once, and then answers each caller. So the transitions of
//! items in flight together share one commit (and the pages they touch are written once), and
//! no caller hears of a change before it is committed.

use std::sync::{Arc, Mutex};

use super::{Ledger, LedgerError, Result};
use crate::lock;

/// A queued call: runs on the ledger, says whether it succeeded, and returns what answers its
/// caller once the transaction's fate is known.
type Call = Box<dyn FnOnce(&mut Ledger) -> (bool, Answer) + Send>;

/// Answers a caller: `Ok` when the call's changes were committed (or it ran on its own), else
/// why they were not.
type Answer = Box<dyn FnOnce(std::result::Result<(), &Failed>) + Send>;

/// How long a [`Db::record`] waits for other calls to share its transaction.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a batch's changes were not kept.
#[derive(Clone, Debug)]
enum Failed {
    Commit(Arc<rusqlite::Error>),
    RolledBack,
}

impl Failed {
    fn error(&self) -> LedgerError {
        match self {
            Self::Commit(e) => LedgerError::Commit(Arc::clone(e)),
            Self::RolledBack => LedgerError::RolledBack,
        }
    }
}

/// The ledger shared by a run's tasks: each call runs on the blocking pool, so a busy ledger
/// (another process writing) never stalls the async workers, and calls made together share
/// one transaction (see the module's docs).
#[derive(Clone)]
pub struct Db(Arc<Shared>);

struct Shared {
    ledger: Mutex<Ledger>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    calls: Vec<Call>,
    /// A timer will run the queue (see [`Db::record`]): records made meanwhile need none of
    /// their own. Only the timer clears it, so at most one timer is pending at a time.
    armed: bool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Wraps an open ledger.
    pub fn new(ledger: Ledger) -> Self {
        Self(Arc::new(Shared { ledger: Mutex::new(ledger), queue: Mutex::new(Queue::default()) }))
    }

    /// Opens (creating if needed) the ledger in run directory `dir`, as [`Ledger::open`], on the
    /// blocking pool: opening may wait for another process's lock. Works on any tokio runtime,
    /// a current-thread one included.
    ///
    /// # Errors
    ///
    /// As [`Ledger::open`]; when the blocking pool could not run it.
    pub async fn open(dir: &std::path::Path) -> Result<Self> {
        let dir = dir.to_owned();
        let ledger =
            promote_core::kit::blocking::run(move || Ledger::open(&dir)).await.map_err(LedgerError::Blocking)??;
        Ok(Self::new(ledger))
    }

    /// Queues `f` for the next transaction without waiting for it: for the record of an
    /// item's end (promoted, failed, given back), which the storage can always tell again, so
    /// it rides with the next calls instead of costing a commit of its own. It is committed by
    /// the next [`Self::call`] (or [`Self::flush`]), or within [`LINGER`] when none comes; if
    /// it fails, `failed` is told why (to log it).
    pub fn record<F>(&self, f: F, failed: impl FnOnce(&LedgerError) + Send + 'static)
    where
        F: FnOnce(&mut Ledger) -> Result<()> + Send + 'static,
    {
        let call: Call = Box::new(move |ledger| {
            let result = f(ledger);
            let ok = result.is_ok();
            let answer: Answer = Box::new(move |kept| match (kept, result) {
                (_, Err(e)) => failed(&e),
                (Err(batch), Ok(())) => failed(&batch.error()),
                (Ok(()), Ok(())) => {}
            });
            (ok, answer)
        });
        let arm = {
            let mut queue = lock(&self.0.queue);
            queue.calls.push(call);
            !std::mem::replace(&mut queue.armed, true)
        };
        if !arm {
            return;
        }
        let shared = Arc::clone(&self.0);
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            // From here a new record arms a timer of its own: this one may take it or not.
            lock(&shared.queue).armed = false;
            // Nothing to do when a call took it meanwhile; a blocking pool that cannot run it
            // (the runtime shutting down) leaves it to `flush`, which the run awaits.
            let _ = tokio::task::spawn_blocking(move || shared.run_queued()).await;
        });
    }

    /// Commits everything queued so far (see [`Self::record`]).
    ///
    /// # Errors
    ///
    /// When the ledger's blocking task could not run.
    pub async fn flush(&self) -> Result<()> {
        self.call(|_| Ok(())).await
    }

    /// Runs `f` on the ledger, atomically, in the next transaction; answers once it is
    /// committed.
    ///
    /// # Errors
    ///
    /// `f`'s error (its changes are undone); [`LedgerError::Commit`] or
    /// [`LedgerError::RolledBack`] when the transaction was not kept.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ledger) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let call: Call = Box::new(move |ledger| {
            let result = f(ledger);
            let ok = result.is_ok();
            let answer: Answer = Box::new(move |kept| {
                let result = match (kept, result) {
                    (Err(failed), Ok(_)) => Err(failed.error()),
                    (_, result) => result,
                };
                // The caller may have gone (its item was cancelled): nobody to tell.
                let _ = tx.send(result);
            });
            (ok, answer)
        });
        lock(&self.0.queue).calls.push(call);
        let shared = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || shared.run_queued()).await.map_err(LedgerError::Task)?;
        // Answered by the batch that took the call: this task's, or an earlier one's that ran
        // to its end before this task got the ledger. A call that panicked drops its sender.
        rx.await.map_err(|_| LedgerError::RolledBack)?
    }
}

impl Shared {
    /// Runs every queued call in one transaction (nothing when an earlier batch took them).
    fn run_queued(&self) {
        let mut ledger = lock(&self.ledger);
        let calls = std::mem::take(&mut lock(&self.queue).calls);
        if calls.is_empty() {
            return;
        }
        if !ledger.conn.is_autocommit() {
            // Left open by a call that panicked: none of it was answered as kept.
            let _ = ledger.control("ROLLBACK");
        }
        if calls.len() == 1 || ledger.control("BEGIN IMMEDIATE").is_err() {
            // Alone, or the write lock is not to be had now: each call on its own, as atomic
            // as it is by itself (each takes the lock in its own transaction, waiting for it).
            for call in calls {
                let (_, answer) = call(&mut ledger);
                answer(Ok(()));
            }
            return;
        }
        let mut answers: Vec<Answer> = Vec::with_capacity(calls.len());
        let mut calls = calls.into_iter();
        let mut failed = None;
        for call in calls.by_ref() {
            let fenced = ledger.control("SAVEPOINT call").is_ok();
            let (ok, answer) = call(&mut ledger);
            answers.push(answer);
            let ended = match (fenced, ok) {
                (true, true) => ledger.control("RELEASE call"),
                (true, false) => ledger.control("ROLLBACK TO call").and_then(|()| ledger.control("RELEASE call")),
                (false, _) => Err(rusqlite::Error::InvalidQuery),
            };
            if ended.is_err() || ledger.conn.is_autocommit() {
                // The transaction is gone (SQLite rolled it back after an error), or a failed
                // call's changes could not be undone alone: keep nothing of this batch.
                failed = Some(Failed::RolledBack);
                break;
            }
        }
        let kept = match failed {
            Some(failed) => Err(failed),
            None => ledger.control("COMMIT").map_err(|e| Failed::Commit(Arc::new(e))),
        };
        if kept.is_err() && !ledger.conn.is_autocommit() {
            let _ = ledger.control("ROLLBACK");
        }
        for answer in answers {
            answer(kept.as_ref().map(|_| ()));
        }
        // Calls not run because the batch ended early: each on its own.
        for call in calls {
            let (_, answer) = call(&mut ledger);
            answer(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ledger::State;

    /// A call as the tests queue it.
    type TestCall<T> = Box<dyn FnOnce(&mut Ledger) -> Result<T> + Send>;

    /// A ledger with no jobs, in a temporary run directory.
    fn open_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        (dir, Db::new(ledger))
    }

    /// Frames in the ledger's write-ahead log (one per page per commit), all copied into the
    /// database by the checkpoint this makes: the next commit starts the log over.
    fn wal_frames(db: &Db) -> i64 {
        lock(&db.0.ledger).conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).unwrap()
    }

    /// Runs `calls` as queued together, in this order: the ledger is held by another thread
    /// until all are in the queue, so the first task to get it runs them in one batch.
    async fn queued_together<T: Send + 'static>(db: &Db, calls: Vec<TestCall<T>>) -> Vec<Result<T>> {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let db = db.clone();
            std::thread::spawn(move || {
                let _ledger = lock(&db.0.ledger);
                held_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(Duration::from_secs(10));
            })
        };
        held_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut tasks = Vec::new();
        // In order: each call is in the queue before the next is made.
        for (queued, call) in calls.into_iter().enumerate() {
            let db2 = db.clone();
            tasks.push(tokio::spawn(async move { db2.call(call).await }));
            // Bounded by `deadline`.
            while lock(&db.0.queue).calls.len() <= queued {
                assert!(std::time::Instant::now() < deadline, "the calls were not queued");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        let mut results = Vec::new();
        for task in tasks {
            results.push(tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap());
        }
        results
    }

    fn plan(job: &'static str) -> TestCall<()> {
        Box::new(move |l: &mut Ledger| l.plan([(job, job)], 1))
    }

    fn planned(db: &Db, job: &str) -> bool {
        lock(&db.0.ledger).job(job).unwrap().is_some_and(|row| row.state == State::Planned)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_queued_together_share_one_commit_and_a_failed_one_is_undone_alone() {
        let (_dir, db) = open_db();
        wal_frames(&db);
        let failing: TestCall<()> = Box::new(|l: &mut Ledger| {
            l.plan([("b", "b")], 1)?;
            Err(LedgerError::UnknownJob("b".into()))
        });
        let results = queued_together(&db, vec![plan("a"), failing, plan("c"), plan("d"), plan("e")]).await;
        assert!(matches!(results[1], Err(LedgerError::UnknownJob(_))), "{:?}", results[1]);
        assert!(results.iter().enumerate().all(|(i, r)| i == 1 || r.is_ok()), "{results:?}");
        assert!(planned(&db, "a") && planned(&db, "c") && planned(&db, "e"));
        assert!(!planned(&db, "b"), "the failed call's change was kept");
        // Four jobs planned one commit each would rewrite their pages four times.
        let one_commit = wal_frames(&db);
        let (_dir2, alone) = open_db();
        wal_frames(&alone);
        for job in ["a", "c", "d", "e"] {
            alone.call(move |l| l.plan([(job, job)], 1)).await.unwrap();
        }
        let four_commits = wal_frames(&alone);
        assert!(one_commit < four_commits, "together {one_commit} frames, apart {four_commits}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_sqlite_rolled_back_is_answered_as_not_kept() {
        let (_dir, db) = open_db();
        // Ends the batch's transaction under it, as SQLite does after some errors.
        let rollback: TestCall<()> = Box::new(|l: &mut Ledger| Ok(l.conn.execute_batch("ROLLBACK")?));
        let results = queued_together(&db, vec![plan("a"), rollback, plan("c")]).await;
        assert!(matches!(results[0], Err(LedgerError::RolledBack)), "{:?}", results[0]);
        assert!(matches!(results[1], Err(LedgerError::RolledBack)), "{:?}", results[1]);
        assert!(results[2].is_ok(), "a call after the batch ended runs on its own: {:?}", results[2]);
        assert!(!planned(&db, "a") && planned(&db, "c"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_is_committed_by_the_next_call_or_after_its_linger() {
        let (_dir, db) = open_db();
        db.call(|l| l.plan([("a", "a"), ("b", "b")], 1)).await.unwrap();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let failed = |failures: &Arc<Mutex<Vec<String>>>| {
            let failures = Arc::clone(failures);
            move |e: &LedgerError| lock(&failures).push(e.to_string())
        };
        db.record(|l| l.forget_promoted("a", 2).and_then(|()| l.plan([("r1", "r1")], 2)), failed(&failures));
        assert!(!planned(&db, "r1"), "committed before any call");
        db.flush().await.unwrap();
        assert!(planned(&db, "r1"), "a flush commits what was recorded");
        // With no call after it, the timer commits it.
        let started = std::time::Instant::now();
        db.record(|l| l.plan([("r2", "r2")], 3), failed(&failures));
        // Bounded: 10 s.
        while !planned(&db, "r2") {
            assert!(started.elapsed() < Duration::from_secs(10), "a record was never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(started.elapsed() >= LINGER, "committed before its linger");
        // A record that fails is told so.
        db.record(|_| Err(LedgerError::UnknownJob("x".into())), failed(&failures));
        db.flush().await.unwrap();
        assert_eq!(lock(&failures).as_slice(), ["job x is not in the ledger"]);
    }

    #[test]
    fn a_db_debugs_without_its_ledger() {
        let (_dir, db) = open_db();
        assert_eq!(format!("{db:?}"), "Db { .. }");
    }

    /// Whether another connection sees `job` planned (that is, whether it was committed).
    fn committed(dir: &std::path::Path, job: &str) -> bool {
        Ledger::open_existing(dir).unwrap().job(job).unwrap().is_some()
    }

    /// A call that ends the batch's savepoint itself leaves the batch's transaction open but
    /// unusable: nothing of the batch is kept, the transaction is rolled back, and the calls
    /// after it run on their own and are committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_lost_its_savepoint_is_rolled_back_and_the_rest_committed() {
        let (dir, db) = open_db();
        let release: TestCall<()> = Box::new(|l: &mut Ledger| Ok(l.conn.execute_batch("RELEASE call")?));
        let results = queued_together(&db, vec![plan("a"), release, plan("c")]).await;
        assert!(matches!(results[0], Err(LedgerError::RolledBack)), "{:?}", results[0]);
        assert!(matches!(results[1], Err(LedgerError::RolledBack)), "{:?}", results[1]);
        assert!(results[2].is_ok(), "{:?}", results[2]);
        assert!(!committed(dir.path(), "a"), "a rolled-back batch's call was kept");
        assert!(committed(dir.path(), "c"), "the call after the batch was answered but not committed");
    }

    /// A call that panicked inside a transaction of its own: its caller hears of it, nothing
    /// of it is kept, and the next call is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_panicked_mid_transaction_leaves_nothing_behind() {
        let (dir, db) = open_db();
        let result = db
            .call(|l: &mut Ledger| -> Result<()> {
                l.conn.execute_batch("BEGIN IMMEDIATE")?;
                l.plan([("lost", "lost")], 1)?;
                panic!("a ledger call that panics mid-transaction");
            })
            .await;
        assert!(matches!(result, Err(LedgerError::Task(_))), "{result:?}");
        db.call(|l| l.plan([("kept", "kept")], 2)).await.unwrap();
        assert!(committed(dir.path(), "kept"), "the next call was answered but not committed");
        assert!(!committed(dir.path(), "lost"), "the panicked call's change was kept");
    }

    /// The very first record, with no call after it, arms a timer of its own and is committed
    /// by it (bounded: 10 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_first_record_is_committed_by_its_own_timer() {
        let (_dir, db) = open_db();
        let started = std::time::Instant::now();
        db.record(|l| l.plan([("r", "r")], 1), |e: &LedgerError| panic!("the record failed: {e}"));
        while !planned(&db, "r") {
            assert!(started.elapsed() < Duration::from_secs(10), "a lone record was never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
