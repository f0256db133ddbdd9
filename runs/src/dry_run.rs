//! `--dry-run`: what a run would do with each item, decided by looking, never by doing.
//!
//! Each item gets the decision a run would start from: `already-complete` when its key holds the
//! manifest's digest (a `head`), `resume` when the run directory keeps a partial download of it,
//! `fresh` otherwise; a key holding other bytes than the manifest asks for is reported as the
//! conflict it would be. A key that is taken when the manifest gives no digest is `fresh`: the
//! fetch and the create-only promotion decide (already present if identical, else a conflict).
//! Nothing is fetched, created or written; the items stay `skipped`.

use std::path::Path;

use promote_core::{Error, Store};

use crate::item::{Done, Failure, FailureKind};
use crate::job;
use crate::manifest::Item;
use crate::resume::Decision;

/// The decision for `item`, looking at `store` (when there is one to look at) and at the
/// partial downloads kept in `partials`.
pub(crate) async fn decide(store: Option<&Store>, item: &Item, partials: &Path) -> Done {
    let mut done = Done::skipped();
    let kept = std::fs::metadata(partials.join(job::key(item))).is_ok_and(|m| m.len() > 0);
    done.decision = Some(if kept { Decision::Resume } else { Decision::Fresh });
    let Some(store) = store else { return done };
    match store.head(&item.key).await {
        Ok(meta) => match (item.expected.sha256, meta.sha256) {
            (Some(want), Some(have)) if want == have && item.expected.size.is_none_or(|s| s == meta.size) => {
                done.decision = Some(Decision::AlreadyComplete);
                (done.sha256, done.size) = (Some(have), Some(meta.size));
            }
            (Some(want), Some(have)) => {
                done.decision = None;
                done.failure = Some(Failure::new(
                    "conflict",
                    FailureKind::Conflict,
                    format!("key {:?} holds sha256 {have}, not the expected {want}", item.key.as_str()),
                ));
            }
            // No digest to compare: the fetch decides.
            _ => {}
        },
        Err(Error::NotFound { .. }) => {}
        Err(err) => {
            done.decision = None;
            done.failure = Some(Failure::new("backend", FailureKind::Io, format!("cannot look: {err}")));
        }
    }
    done
}
