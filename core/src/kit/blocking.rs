//! Where blocking steps run: on tokio's blocking pool, or on the calling thread when it may block.
//!
//! A backend runs each blocking step (a file system call, a write) through [`run`]. Normally that
//! is a trip to tokio's blocking pool, so the async workers never wait on a disk. Each trip costs
//! two thread wake-ups, and a small promotion makes half a dozen of them: on many small files the
//! wake-ups cost more than the work. So a caller with many small promotions runs them on a
//! [`Workers`] pool: a few threads marked with [`here`], each driving many promotions at once,
//! and on those threads [`run`] calls each step directly. A promotion waiting for something (a
//! group commit's flush, a staging slot) lets the others on its thread go on, and one wake-up
//! resumes every promotion that waited for the same flush.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc, oneshot};

use crate::error::Error;

thread_local! {
    /// Set while this thread runs a promotion that may block it (see [`here`]).
    static HERE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with blocking steps marked as allowed on this thread: [`run`] then calls its step
/// directly instead of sending it to the blocking pool. Only for a thread that may block (one of
/// tokio's blocking pool, or a thread of the caller's own), never an async worker.
pub fn here<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            HERE.with(|here| here.set(self.0));
        }
    }
    let _reset = Reset(HERE.with(|here| here.replace(true)));
    f()
}

/// Whether this thread may block (inside [`here`]).
pub fn is_here() -> bool {
    HERE.with(Cell::get)
}

/// Runs the blocking step `f`: directly inside [`here`], else on tokio's blocking pool.
///
/// # Errors
///
/// [`Error::Io`] when the pool's task panicked or was cancelled.
pub async fn run<T, F>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if is_here() {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::io("a blocking step", std::io::Error::other(e)))
}

/// Blocking tasks that last a whole file (a read-ahead, a copy inside the kernel) running at
/// once in this process. Each holds one of tokio's blocking threads (512 by default) until its
/// file is done, and a read-ahead waits for its writer, whose writes need that pool too: left
/// unbounded, a few hundred large files at once could take every thread and wait forever for
/// writes that cannot start. 64 leaves most of the pool to the short steps.
pub const LONG_TASKS: usize = 64;

/// See [`LONG_TASKS`].
static LONG: Semaphore = Semaphore::const_new(LONG_TASKS);

/// Waits for a slot to run a blocking task that lasts a whole file (see [`LONG_TASKS`]); the
/// slot is free again when the permit is dropped. Take it after any staging slot, never before,
/// so the two are always taken in the same order.
///
/// # Errors
///
/// None in practice: [`Error::Io`] if the slots were closed, which nothing does.
pub async fn long_task_slot() -> Result<SemaphorePermit<'static>, Error> {
    LONG.acquire().await.map_err(|_| Error::io("waiting for a reader slot", std::io::ErrorKind::BrokenPipe.into()))
}

/// A job for a [`Workers`] thread.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A few threads of promote's own (named `promote-worker-N`), each driving many futures at once
/// with blocking steps run in place (see the module docs). Dropping it drops every job not
/// finished yet (a dropped promotion discards what it staged), and the threads end.
///
/// The threads are not taken from tokio's blocking pool: each would hold one of its threads
/// (512 by default) for as long as the pool lives, and a pool asked for more than tokio has
/// would wait forever for the rest. Their number is capped ([`Workers::cap`]) whatever the
/// caller asks for: the files in flight are futures, any number of them per thread. A thread
/// counts as a clean-up ([`crate::kit::cleanup::settle`] waits for it) until it has dropped its
/// last job.
#[derive(Debug)]
pub struct Workers {
    threads: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `n` threads, at least one and at most [`Workers::cap`]. Must be called inside a
    /// tokio runtime: the jobs run on its timers and I/O.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when not even one thread can be started (a thread that fails to start
    /// after the first leaves the pool smaller).
    pub fn new(n: usize) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::current();
        let mut threads = Vec::new();
        for i in 0..n.clamp(1, Self::cap()) {
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            let runtime = runtime.clone();
            // Counted until the thread has dropped its last job: a program about to exit waits
            // for it in `cleanup::settle`, so no promotion is cut off halfway by the exit.
            let held = crate::kit::cleanup::hold();
            let started = std::thread::Builder::new().name(format!("promote-worker-{i}")).spawn(move || {
                let _held = held;
                drive(&runtime, rx);
            });
            match started {
                Ok(_) => threads.push(tx),
                Err(err) if threads.is_empty() => return Err(Error::io("starting a worker thread", err)),
                Err(err) => {
                    tracing::debug!(error = %err, started = threads.len(), "fewer worker threads than asked for");
                    break;
                }
            }
        }
        Ok(Self { threads, next: AtomicUsize::new(0) })
    }

    /// The most threads a pool starts: 64, promote's own bound (tokio's blocking pool, which
    /// other work shares, holds 512 at most).
    ///
    /// A worker thread hashes (CPU) and makes blocking calls in place (open, write, rename, and
    /// with `durability = "each"` an fsync per file), so it spends much of its time asleep in
    /// the kernel: up to 64 let that many fsyncs overlap, one per `--jobs` as before. Past that
    /// the disk's queue and the directory locks, not threads, limit the rate, and more
    /// concurrency comes from the futures each thread drives.
    pub fn cap() -> usize {
        64
    }

    /// How many threads this pool runs.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Runs `job` on one of the threads (in turn); resolves to its output.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the job panicked or its thread is gone.
    pub async fn run<T, F>(&self, job: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::pin(async move {
            let _ = tx.send(job.await);
        });
        let thread = &self.threads[self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len()];
        let gone = || Error::io("a worker thread", std::io::Error::other("the worker thread ended"));
        thread.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

/// A worker thread's loop: runs every job it is sent, many at once, until the pool is dropped.
fn drive(runtime: &tokio::runtime::Handle, mut rx: mpsc::UnboundedReceiver<Job>) {
    here(|| {
        runtime.block_on(async move {
            let mut running = FuturesUnordered::new();
            loop {
                tokio::select! {
                    job = rx.recv() => match job {
                        Some(job) => running.push(job),
                        // The pool was dropped: whoever waited for what still runs has given
                        // up (Ctrl-C, an error), so it is dropped too, like any abandoned future.
                        None => break,
                    },
                    Some(()) = running.next(), if !running.is_empty() => {}
                }
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_run_in_place_only_inside_here() {
        let caller = std::thread::current().id();
        let elsewhere = run(move || std::thread::current().id() != caller).await.unwrap();
        assert!(elsewhere, "outside `here`, a step goes to the blocking pool");
        let handle = tokio::runtime::Handle::current();
        let in_place = tokio::task::spawn_blocking(move || {
            let caller = std::thread::current().id();
            here(|| handle.block_on(run(move || std::thread::current().id() == caller))).unwrap()
        })
        .await
        .unwrap();
        assert!(in_place, "inside `here`, a step runs on the calling thread");
        assert!(!is_here(), "the mark ends with `here`");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_run_many_jobs_per_thread_with_steps_in_place() {
        let workers = Workers::new(2).unwrap();
        // Twenty jobs that all wait for one signal: with two threads, they can only all be
        // waiting at once if each thread drives many of them.
        let (go, _) = tokio::sync::broadcast::channel::<()>(1);
        let waiting = std::sync::Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..20)
            .map(|_| {
                let (mut wait, waiting) = (go.subscribe(), std::sync::Arc::clone(&waiting));
                workers.run(async move {
                    let thread = std::thread::current().id();
                    waiting.fetch_add(1, Ordering::SeqCst);
                    let _ = wait.recv().await;
                    let step = run(move || std::thread::current().id()).await.unwrap();
                    (thread, step)
                })
            })
            .collect();
        let signal = async {
            let started = std::time::Instant::now();
            while waiting.load(Ordering::SeqCst) < 20 {
                let now = waiting.load(Ordering::SeqCst);
                assert!(started.elapsed().as_secs() < 10, "only {now} of 20 jobs could wait at once");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            go.send(()).unwrap();
        };
        let (done, ()) = tokio::join!(futures_util::future::join_all(jobs), signal);
        let threads: std::collections::HashSet<_> = done.iter().map(|r| r.as_ref().unwrap().0).collect();
        assert!(threads.len() <= 2, "20 jobs ran on {} threads", threads.len());
        assert!(done.iter().all(|r| r.as_ref().is_ok_and(|(t, s)| t == s)), "a step left its job's thread");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pool_asked_for_more_threads_than_its_cap_starts_the_cap_and_runs_every_job() {
        // More than tokio's 512 blocking threads: a pool taking one of those per thread would
        // never start the rest, and their jobs would never run.
        let asked = 1000;
        let workers = Workers::new(asked).unwrap();
        assert_eq!(workers.threads(), Workers::cap(), "asked for {asked} threads");
        // Every job waits for all the others to start: they can only finish if all of them are
        // in flight at once, many per thread.
        let all = std::sync::Arc::new(tokio::sync::Barrier::new(asked));
        let jobs: Vec<_> = (0..asked)
            .map(|_| {
                let all = std::sync::Arc::clone(&all);
                workers.run(async move {
                    all.wait().await;
                    std::thread::current().name().map(str::to_owned)
                })
            })
            .collect();
        let done = tokio::time::timeout(std::time::Duration::from_secs(30), futures_util::future::join_all(jobs))
            .await
            .expect("1000 jobs did not all run at once within 30 s");
        let names: std::collections::HashSet<_> = done.into_iter().map(|r| r.unwrap()).collect();
        assert!(names.len() <= Workers::cap(), "the jobs ran on {} threads: {names:?}", names.len());
        assert!(
            names.iter().all(|n| n.as_deref().is_some_and(|n| n.starts_with("promote-worker-"))),
            "jobs ran off the pool's own threads: {names:?}"
        );
    }

    #[test]
    fn dropping_the_workers_drops_their_unfinished_jobs() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let workers = Workers::new(1).unwrap();
                let flag = Flag(std::sync::Arc::clone(&dropped));
                let job = workers.run(async move {
                    let _flag = flag;
                    std::future::pending::<()>().await;
                });
                // Started, then abandoned by its caller, then the pool goes.
                let _ = tokio::time::timeout(std::time::Duration::from_millis(100), job).await;
                drop(workers);
                let started = std::time::Instant::now();
                while !dropped.load(Ordering::SeqCst) {
                    assert!(started.elapsed().as_secs() < 5, "a dropped pool kept running its unfinished job");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            });
        }));
        // A pool thread that never ends must fail this test, not hang it.
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        if let Err(panic) = checked {
            std::panic::resume_unwind(panic);
        }
    }
}
