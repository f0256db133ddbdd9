//! Attempts begun ahead: when an item of a shard starts and its attempt is not begun yet, the
//! attempts of the items about to follow it are begun with it, in one ledger transaction,
//! instead of one transaction each. The window is [`WINDOW`] items, or the number in flight
//! when larger: a job begun ahead shows as in flight under this worker a little before it is.

use std::collections::BTreeMap;

use crate::ledger::{Begin, Db, JobRow, now_ms};
use crate::shards::owner_alive;

/// Items whose attempts are begun together, at least.
pub(crate) const WINDOW: usize = 64;

/// The attempts begun ahead in one shard.
pub(crate) struct Ahead {
    /// Items begun together.
    window: usize,
    /// The shard's jobs, by item index in the shard.
    jobs: Vec<String>,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Item index (in the shard) → its row as it was before, and the attempt count, for attempts begun and
    /// not yet taken by their item.
    begun: BTreeMap<usize, (Option<JobRow>, u32)>,
    /// Items below this were in a window already.
    upto: usize,
}

/// An attempt begun ahead: the job's row before it began, and its attempt count.
pub(crate) type Begun = (Option<JobRow>, u32);

impl Ahead {
    /// Attempts begun ahead for the shard whose jobs are `jobs`, `window` at a time.
    pub(crate) fn new(window: usize, jobs: Vec<String>) -> Self {
        Self { window: window.max(1), jobs, state: tokio::sync::Mutex::new(State::default()) }
    }

    /// The attempt of the shard's item `index`, begun now with those of the window after it when not begun
    /// yet. `None` when it is not the caller's to begin (promoted, or in flight elsewhere) or
    /// the ledger failed: the item then begins (or fails) on its own, as without this.
    pub(crate) async fn take(&self, db: &Db, owner: &str, index: usize) -> Option<Begun> {
        let mut state = self.state.lock().await;
        if index < state.upto {
            return state.begun.remove(&index);
        }
        // At least `index + 1`: `index` is in the shard, and the window is at least 1.
        let upto = (index + self.window).min(self.jobs.len());
        let window: Vec<String> = self.jobs[index..upto].to_vec();
        let owner = owner.to_owned();
        let begun = match db.call(move |l| l.begin_attempts(&window, &owner, now_ms(), &owner_alive)).await {
            Ok(begun) => begun,
            Err(err) => {
                tracing::info!(error = %crate::error::chain(&err), "could not begin attempts ahead");
                return None;
            }
        };
        state.upto = upto;
        for (i, (row, begin)) in (index..upto).zip(begun) {
            if let Begin::Mine(attempts) = begin {
                state.begun.insert(i, (row, attempts));
            }
        }
        state.begun.remove(&index)
    }

    /// Items whose attempt was begun and never taken (their items stopped before starting):
    /// the caller gives these jobs back.
    pub(crate) async fn untaken(&self) -> Vec<usize> {
        std::mem::take(&mut self.state.lock().await.begun).into_keys().collect()
    }
}
