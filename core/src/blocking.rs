//! Where blocking steps run: on tokio's blocking pool, or on the calling thread when it may block.
//!
//! A backend runs each blocking step (a file system call, a write) through [`run`]. Normally that
//! is a trip to tokio's blocking pool, so the async workers never wait on a disk. Each trip costs
//! two thread wake-ups, and a small promotion makes half a dozen of them: on many small files the
//! wake-ups cost more than the work. So [`Store::promote_file_here`](crate::Store::promote_file_here)
//! runs a whole promotion on one thread of the blocking pool, marked with [`here`], and on that
//! thread [`run`] calls each step directly.

use std::cell::Cell;

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
}
