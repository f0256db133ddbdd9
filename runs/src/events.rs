//! What a run tells its caller while it works: typed [`Event`]s, delivered to an [`Events`]
//! sink given to [`Plan::run`](crate::Plan::run). The engine draws nothing and prints nothing;
//! a command-line tool turns these into a progress bar and lines, a service into metrics.
//!
//! Events come from the run's tasks as things happen, so a sink is called from several tasks
//! at once and must return quickly (count, print a line, or forward to a channel).

use std::time::Duration;

use promote_core::Key;

use crate::item::{Failure, Outcome};
use crate::report::ItemReport;

/// Something that happened in a run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The run is planned: `items` to process (after `max`), cut into `shards` of `shard_size`.
    Planned {
        /// Items this run processes (repeated lines and lines past `max` not included).
        items: u64,
        /// Their bytes, when the manifest gives every one of them a size.
        bytes: Option<u64>,
        /// Shards.
        shards: u64,
        /// Items per shard.
        shard_size: usize,
        /// The run's identity (see [`crate::shards::run_id`]).
        run: String,
    },
    /// This worker leased a shard whose previous holder's lease had expired (or who is gone).
    LeaseTakenOver {
        /// The shard.
        shard: u64,
        /// The previous holder (an owner record, see [`crate::shards::owner`]).
        from: String,
    },
    /// This worker lost a shard's lease to another worker: its items stop at their next step
    /// and are left to the new holder.
    LeaseLost {
        /// The shard.
        shard: u64,
    },
    /// An item took a slot and is being worked on.
    ItemStarted {
        /// Its manifest line.
        line: usize,
        /// Its destination key.
        key: Key,
    },
    /// Bytes fetched for an item (counted as they arrive; a retried item may count again).
    Bytes {
        /// The item's manifest line.
        line: usize,
        /// How many.
        n: u64,
    },
    /// An attempt at an item failed in a way worth another one, which starts after `wait`.
    Retrying {
        /// The item's manifest line.
        line: usize,
        /// Its destination key.
        key: Key,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// How long until the next one.
        wait: Duration,
        /// Why it failed.
        failure: Failure,
    },
    /// An item ended: promoted, already present, or failed (`failure` says why).
    ItemDone {
        /// Its manifest line.
        line: usize,
        /// Its destination key.
        key: Key,
        /// How it ended.
        outcome: Outcome,
        /// Why it failed, when it did.
        failure: Option<Failure>,
        /// Its size: the manifest's, else what is at the key, when known.
        size: Option<u64>,
    },
    /// A manifest line's report (see [`ItemReport`]), sent once for every line: a bad line's
    /// as the items start, an item's when it ends (right after [`Event::ItemDone`]), the rest
    /// (lines past `max`, repeated lines, items finished by other workers or not done) when the
    /// run ends. For a report written as the run goes; the summary keeps them only when asked
    /// ([`Options::keep_items`](crate::Options::keep_items)).
    Reported(Box<ItemReport>),
    /// An item stopped without an outcome because its shard's lease was lost: the worker that
    /// took the shard over reports it.
    ItemGivenBack {
        /// Its manifest line.
        line: usize,
        /// Its destination key.
        key: Key,
    },
    /// The system has no root certificates: HTTPS sources are checked against the Mozilla roots
    /// bundled into promote. Sent once, when the HTTP client is built.
    BundledRoots,
}

/// Where a run's events go. Implemented for closures (`Fn(Event)`) and for tokio `mpsc`
/// senders (events sent after the receiver is gone are dropped).
pub trait Events: Send + Sync {
    /// Takes one event. Called from the run's tasks; must not block for long.
    fn event(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> Events for F {
    fn event(&self, event: Event) {
        self(event);
    }
}

impl Events for tokio::sync::mpsc::UnboundedSender<Event> {
    fn event(&self, event: Event) {
        let _ = self.send(event);
    }
}
