//! Download runs as a library: every item of a JSON Lines manifest into a promote
//! [`Store`](promote_core::Store), each exactly once, resumably, with several workers (processes
//! sharing a run directory, or machines sharing an S3 bucket) splitting the work.
//!
//! ```no_run
//! # async fn example(store: promote_core::Store) -> Result<(), promote_run::RunError> {
//! use std::sync::Arc;
//! use promote_run::{Event, Options, Plan};
//!
//! let plan = Plan::read(Options::new("manifest.jsonl", "promote-run"))?;
//! let events = Arc::new(|event: Event| eprintln!("{event:?}"));
//! let summary = plan.run(store, events, std::future::pending()).await?;
//! println!("{} promoted, {} failed", summary.promoted, summary.failed);
//! # Ok(()) }
//! ```
//!
//! The engine prints nothing: what happens reaches the caller as [`Event`]s (through any
//! [`Events`] sink: a closure, or a tokio `mpsc` sender), failures as typed errors ([`RunError`]
//! for the run, [`Failure`] with its [`FailureKind`] for one item), and the end as a
//! [`Summary`]. Stopping is the caller's: the `cancel` future given to [`Plan::run`] (a signal,
//! a deadline) stops the run cleanly — no new item starts, the ones in flight are dropped
//! (staged writes discard themselves; partial downloads, and uploads a checkpoint names, stay
//! with their checkpoints) — and the summary says what was done. Nothing here assumes a
//! multi-threaded runtime: blocking steps (SQLite, fsync, hashing a partial back) go to tokio's
//! blocking pool.
//!
//! The pieces, one file each: [`manifest`] (JSON Lines in), `index` (where each job's line is,
//! so a shard's items are read back when it starts), [`job`] (job keys), [`ledger`]
//! (SQLite: job states, checkpoints, shard leases), [`shards`] (sizing and leases), `bucket`
//! (leases shared through the bucket), [`fetch`] (HTTP client, per-host limits and headers,
//! retries), [`resume`] (partial files and decisions), `upload` (large downloads straight into
//! the backend's resumable staged write: S3 multipart parts), [`item`] (one item start to finish),
//! [`report`] (per-item reports and the summary), [`events`] (what the caller hears),
//! [`options`] (what the caller asks for) and `plan` (planning the run and driving the shards).
//!
//! # Atomicity
//!
//! Each item goes through core's verified, create-only promotion: a key is published whole or
//! not at all, and never over different bytes. The ledger records `promoted` only after the
//! backend's publish returned, so a crash between the two is found again as already present.

mod ahead;
mod bucket;
mod dry_run;
mod error;
pub mod events;
pub mod fetch;
mod index;
pub mod item;
pub mod job;
pub mod ledger;
pub mod manifest;
pub mod options;
mod plan;
pub mod report;
pub mod resume;
mod segments;
pub mod shards;
mod upload;

pub use error::RunError;
pub use events::{Event, Events};
pub use item::{Failure, FailureKind, Outcome};
pub use options::Options;
pub use plan::Plan;
pub use report::{ItemReport, Summary};
pub use resume::Decision;

/// Locks `mutex` even when a panic elsewhere poisoned it: every holder here leaves what it
/// guards whole, so a panicking task does not take the rest of the run down with it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
