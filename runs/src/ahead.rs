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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::State;

    /// The attempts of a window begin together, in the order items take them: each item finds
    /// its own attempt (the first of its job), a promoted job's row without an attempt, a job in
    /// flight elsewhere nothing. The next window begins with the first item past this one, and
    /// what no item took is given back.
    #[tokio::test]
    async fn a_window_begins_together_and_each_item_takes_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).await.unwrap();
        let jobs: Vec<String> = (0..30).map(|n| format!("j{n}")).collect();
        let planned = jobs.clone();
        db.call(move |l| {
            l.plan(planned.iter().map(|j| (j.as_str(), j.as_str())), 1)?;
            l.promoted("j3", &promote_core::Sha256::of(b"3"), 1, 1)?;
            l.begin_attempt("j5", "elsewhere", 1, &|_| true).map(drop)
        })
        .await
        .unwrap();
        let row = |job: &'static str| {
            let db = db.clone();
            async move { db.call(move |l| l.job(job)).await.unwrap().unwrap() }
        };
        let ahead = Ahead::new(10, jobs[..20].to_vec());

        let (before, attempts) = ahead.take(&db, "me", 0).await.unwrap();
        assert_eq!((before.map(|r| r.state), attempts), (Some(State::Planned), Some(1)));
        let (nine, ten) = (row("j9").await, row("j10").await);
        assert_eq!((nine.state, nine.owner.as_deref()), (State::Fetching, Some("me")), "in the first window");
        assert_eq!(ten.state, State::Planned, "past the first window");

        let (promoted, attempts) = ahead.take(&db, "me", 3).await.unwrap();
        assert_eq!((promoted.map(|r| r.state), attempts), (Some(State::Promoted), None));
        assert_eq!(ahead.take(&db, "me", 5).await, None, "in flight elsewhere");
        let (_, attempts) = ahead.take(&db, "me", 1).await.unwrap();
        assert_eq!(attempts, Some(1), "begun once, with the window");

        let (_, attempts) = ahead.take(&db, "me", 10).await.unwrap();
        assert_eq!(attempts, Some(1), "the next window begins at the first item past the last");
        assert_eq!(row("j19").await.state, State::Fetching);
        assert_eq!(row("j20").await.state, State::Planned, "the shard ends at its last job");

        let untaken = ahead.untaken().await;
        let want: Vec<usize> = [2, 4, 6, 7, 8, 9].into_iter().chain(11..20).collect();
        assert_eq!(untaken, want, "begun and never taken (not the promoted one, nor the busy one)");
    }
}
