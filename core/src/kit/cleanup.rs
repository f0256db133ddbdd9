//! Clean-up that outlives the handle that needs it.
//!
//! Dropping a staged write must discard its data, but some backends can only do that with
//! network requests (abort an S3 multipart upload, release a claim), which a synchronous `Drop`
//! cannot await. Such a backend hands the work to [`spawn`]; a program about to exit (after
//! Ctrl-C, say) calls [`settle`] so that the work is done before the runtime goes away, instead
//! of being left to `promote recover`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

static PENDING: AtomicUsize = AtomicUsize::new(0);
static DONE: Notify = Notify::const_new();

/// Runs `work` in the background on the current tokio runtime and counts it until it ends.
/// Outside a runtime the work cannot run and is dropped (a later `recover` finds what it
/// would have removed); returns whether it was started.
pub fn spawn<F>(work: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return false };
    PENDING.fetch_add(1, Ordering::SeqCst);
    runtime.spawn(async move {
        struct Finished;
        impl Drop for Finished {
            fn drop(&mut self) {
                PENDING.fetch_sub(1, Ordering::SeqCst);
                DONE.notify_waiters();
            }
        }
        let _finished = Finished;
        work.await;
    });
    true
}

/// Counts a clean-up that runs elsewhere (a [`Workers`](crate::kit::blocking::Workers) thread
/// dropping its unfinished jobs) until the returned guard is dropped, so that [`settle`] waits
/// for it too.
pub(crate) fn hold() -> Held {
    PENDING.fetch_add(1, Ordering::SeqCst);
    Held(())
}

/// A clean-up counted by [`hold`]; dropping it marks it ended.
#[derive(Debug)]
pub(crate) struct Held(());

impl Drop for Held {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::SeqCst);
        DONE.notify_waiters();
    }
}

/// How many clean-ups are still running.
pub fn pending() -> usize {
    PENDING.load(Ordering::SeqCst)
}

/// Waits until every clean-up started by [`spawn`] has ended, or `limit` has passed; returns
/// how many are still running.
pub async fn settle(limit: Duration) -> usize {
    let wait = async {
        // Bounded by `limit` (the timeout below).
        loop {
            let done = DONE.notified();
            if pending() == 0 {
                return;
            }
            done.await;
        }
    };
    let _ = tokio::time::timeout(limit, wait).await;
    pending()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_waits_for_spawned_work() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(());
        }));
        assert_eq!(settle(Duration::from_secs(5)).await, 0);
        assert!(rx.await.is_ok(), "the work ran to its end before settle returned");
    }

    #[test]
    fn outside_a_runtime_nothing_starts() {
        assert!(!spawn(async {}));
    }
}
