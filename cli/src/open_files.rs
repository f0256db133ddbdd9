//! The open-file limit (`ulimit -n`): raised to the hard limit when promote starts, and then
//! respected by every command that opens many files at once (`put DIR --jobs`, `copy --jobs`,
//! `run --concurrency`), which lowers its concurrency to fit instead of failing files with
//! "too many open files".

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors one file in flight may hold at once. Measured with `/proc/<pid>/fd` on local
/// disk: a small file holds its source and its staging file (one or two: a file waiting for a
/// group commit holds only its staging file); a large file copied inside the kernel holds four,
/// its source twice (the caller's and the copy's duplicate) and its staging file twice (written,
/// and read back to be hashed); a directory being fsynced is open for a moment. In `promote run`
/// a socket or partial download takes the place of the source.
pub(crate) const PER_FILE: usize = 4;

/// Descriptors kept for everything else: stdio, the runtime (epoll, its wake-up and signal
/// pipes), the store's own (root, staging directory): 12 or 13 measured for a put; a run's
/// ledger (database, WAL, shared memory), a progress bar's terminal and the few a library opens
/// on its own fit in the rest.
const RESERVE: usize = 32;

/// Raises the soft open-file limit to the hard one. Best effort: when it cannot (the hard limit
/// is unlimited, which Linux refuses as a soft limit, or the call fails), the soft limit stays
/// and [`fit`] works within it.
pub(crate) fn raise_limit() {
    let limit = getrlimit(Resource::Nofile);
    if limit.maximum.is_some() && limit.current < limit.maximum {
        let raised = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
        if let Err(err) = raised {
            tracing::debug!(error = %err, "the open-file limit could not be raised");
        }
    }
}

/// `asked` things at once, each holding up to `per_item` descriptors, lowered (never below one)
/// so that they fit the soft open-file limit with [`RESERVE`] to spare. When `flag` is given
/// and it lowers `asked`, says so on stderr in one line naming the flag.
pub(crate) fn fit(asked: usize, per_item: usize, flag: Option<&str>) -> usize {
    let Some(limit) = getrlimit(Resource::Nofile).current else {
        return asked;
    };
    let room = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(RESERVE) / per_item.max(1);
    let fits = asked.min(room.max(1));
    if let Some(flag) = flag
        && fits < asked
    {
        eprintln!("promote: warning: {flag} {asked} lowered to {fits}: the open-file limit is {limit} (ulimit -n)");
    }
    fits
}
