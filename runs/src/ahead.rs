//! Attempts begun ahead: when an item of a shard starts and its attempt is not begun yet, the
//! attempts of the items about to follow it are begun with it, in one ledger transaction,
//! instead of one transaction each. The window is [`WINDOW`] items, or the number in flight
//! when larger: a job begun ahead shows as in flight under this worker a little before it is.
//! The rows of jobs found promoted are kept for their items too, which then look at the storage
//! without reading the ledger again: a rerun reads the ledger once per window.

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
    /// Item index (in the shard) → what its item takes ([`Begun`]): attempts begun, and rows
    /// of jobs found promoted, not taken yet.
    begun: BTreeMap<usize, Begun>,
    /// Items below this were in a window already.
    upto: usize,
}

/// What an item finds begun ahead: the job's row as it was read, and the attempt count when the
/// attempt is the item's (`None`: the job was promoted already, nothing was begun; the item
/// looks at the storage with the row, without reading it again).
pub(crate) type Begun = (Option<JobRow>, Option<u32>);

impl Ahead {
    /// Attempts begun ahead for the shard whose jobs are `jobs`, `window` at a time.
    pub(crate) fn new(window: usize, jobs: Vec<String>) -> Self {
        Self { window: window.max(1), jobs, state: tokio::sync::Mutex::new(State::default()) }
    }

    /// What the shard's item `index` finds begun ahead ([`Begun`]), the window after it begun
    /// now when it was not yet. `None` when the job is in flight elsewhere or the ledger
    /// failed: the item then begins (or fails) on its own, as without this.
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
            match begin {
                Begin::Mine(attempts) => state.begun.insert(i, (row, Some(attempts))),
                Begin::Promoted => state.begun.insert(i, (row, None)),
                Begin::Busy { .. } => None,
            };
        }
        state.begun.remove(&index)
    }

    /// Items whose attempt was begun and never taken (their items stopped before starting):
    /// the caller gives these jobs back.
    pub(crate) async fn untaken(&self) -> Vec<usize> {
        let begun = std::mem::take(&mut self.state.lock().await.begun);
        begun.into_iter().filter(|(_, (_, attempts))| attempts.is_some()).map(|(index, _)| index).collect()
    }
}
