//! Files into a store: one file, a stream (stdin), or every file under a directory, several at
//! a time.
//!
//! A directory put walks the directory first ([`files_under`]), then promotes each file to
//! `prefix/<relative path>` ([`put_files`]): a file smaller than one chunk, when streaming, is
//! promoted start to end on one of a few worker threads, its blocking steps in place (no thread
//! hand-off per step); a larger one is read ahead on its own thread while its bytes are
//! written. Results come in path order.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{Stream, StreamExt};
use promote_core::kit::blocking::Workers;
use promote_core::{Expected, Key, Mode, Outcome, Store};
use tokio::io::AsyncRead;

use crate::error::{BadName, Error};
use crate::events::{Event, Events, Skip};

/// Files that may wait together for one group commit in a directory put.
pub const BATCH: usize = promote_core::kit::BATCH;

/// How bytes reach staging.
#[derive(Clone, Debug)]
pub struct Staging {
    /// Stream sources straight into staging; else copy each into `spool_dir` first.
    pub streaming: bool,
    /// Where the spool path keeps its temporary copies.
    pub spool_dir: PathBuf,
}

/// Every regular file under `dir`, relative, sorted. Symbolic links are skipped (an
/// [`Event::Skipped`] each), or followed with `follow` (a directory reached twice, through a
/// loop, is read once); so is anything that is not a regular file.
///
/// # Errors
///
/// [`Error::Unreadable`] for a directory or entry that cannot be read.
pub fn files_under(dir: &Path, follow: bool, events: &dyn Events) -> Result<Vec<PathBuf>, Error> {
    use std::os::unix::fs::MetadataExt;
    let unreadable = |path: &Path, error: std::io::Error| Error::Unreadable { path: path.to_owned(), error };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let meta = std::fs::metadata(&here).map_err(|e| unreadable(&here, e))?;
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        for entry in std::fs::read_dir(&here).map_err(|e| unreadable(&here, e))? {
            let entry = entry.map_err(|e| unreadable(&here, e))?;
            let path = entry.path();
            let mut kind = entry.file_type().map_err(|e| unreadable(&path, e))?;
            if kind.is_symlink() {
                if !follow {
                    events.event(Event::Skipped { path, why: Skip::SymbolicLink });
                    continue;
                }
                kind = std::fs::metadata(&path).map_err(|e| unreadable(&path, e))?.file_type();
            }
            let rel = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_file() {
                out.push(rel);
            } else {
                events.event(Event::Skipped { path, why: Skip::NotAFile });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Promotes `src` to `key`: streamed into staging, or spooled first, as `staging` says.
///
/// # Errors
///
/// The store's error ([`Error::Store`]).
pub async fn promote_reader<R>(
    store: &Store,
    key: &Key,
    src: R,
    expected: &Expected,
    mode: Mode,
    staging: &Staging,
) -> Result<Outcome, Error>
where
    R: AsyncRead + Unpin + Send,
{
    Ok(if staging.streaming {
        store.promote_reader(key, src, expected, mode).await?
    } else {
        store.promote_spooled(key, src, expected, mode, &staging.spool_dir).await?
    })
}

/// Promotes a local file to `key`, read ahead on its own thread when streaming. While core
/// reads it, `events` get an [`Event::Reading`] with a descriptor that follows the read.
///
/// # Errors
///
/// The store's error ([`Error::Store`]).
pub async fn promote_file(
    store: &Store,
    key: &Key,
    file: tokio::fs::File,
    expected: &Expected,
    mode: Mode,
    staging: &Staging,
    events: &dyn Events,
) -> Result<Outcome, Error> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let file = file.into_std().await;
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let followed = file.try_clone().ok().map(|dup| events.event(Event::Reading { id, file: Arc::new(dup) }));
    let result = if staging.streaming {
        store.promote_file(key, file, expected, mode).await.map_err(Into::into)
    } else {
        promote_reader(store, key, tokio::fs::File::from_std(file), expected, mode, staging).await
    };
    if followed.is_some() {
        events.event(Event::ReadDone { id });
    }
    result
}

/// Opens `path` on one of `workers` and, when it is smaller than one chunk (and streaming is
/// on), promotes it there start to end, its blocking steps in place (see
/// [`promote_core::kit::blocking`]). A larger file comes back open, for [`promote_file`], which
/// overlaps reading with writing.
async fn promote_small(
    store: &Store,
    workers: &Workers,
    key: &Key,
    path: PathBuf,
    mode: &Mode,
    streaming: bool,
) -> Result<Result<Outcome, std::fs::File>, Error> {
    let (store, key, mode) = (store.clone(), key.clone(), mode.clone());
    workers
        .run(async move {
            let file = std::fs::File::open(&path).map_err(|error| Error::Unreadable { path, error })?;
            let small = file.metadata().is_ok_and(|m| m.len() < promote_core::kit::CHUNK_SIZE as u64);
            if !(small && streaming) {
                return Ok(Err(file));
            }
            Ok(Ok(store.promote_file(&key, file, &Expected::default(), mode).await?))
        })
        .await?
}

/// Files promoted at once for `jobs` streaming at a time: `jobs`, or with group commit enough
/// to fill a batch (only `jobs` of them stream bytes at a time; the rest hold an open staging
/// file while they wait for a flush). A caller may lower it to fit its open-file limit.
pub fn in_flight(store: &Store, jobs: usize) -> usize {
    if store.batches_durability() { BATCH.max(jobs) } else { jobs }
}

/// A directory put.
#[derive(Clone, Debug)]
pub struct Tree {
    /// The directory.
    pub dir: PathBuf,
    /// Where its files go: `prefix/<relative path>` (`None`: the top of the store).
    pub prefix: Option<Key>,
    /// How each is published.
    pub mode: Mode,
    /// How bytes reach staging.
    pub staging: Staging,
    /// Threads for small files (a few, each driving its share of the files in flight).
    pub jobs: usize,
    /// Files in flight at once (see [`in_flight`]).
    pub in_flight: usize,
}

/// Promotes each of `files` (relative to `tree.dir`, from [`files_under`]) into `store`,
/// `tree.in_flight` at a time. The stream yields each file's result in the order of `files`;
/// one file's failure does not stop the others.
///
/// # Errors
///
/// When the worker threads cannot be started.
pub fn put_files<'a>(
    store: &'a Store,
    tree: &'a Tree,
    files: &'a [PathBuf],
    events: &'a dyn Events,
) -> Result<impl Stream<Item = (&'a PathBuf, Result<Outcome, Error>)> + 'a, Error> {
    let workers = Arc::new(Workers::new(tree.jobs)?);
    Ok(futures_util::stream::iter(files)
        .map(move |rel| {
            let workers = Arc::clone(&workers);
            async move { (rel, put_one(store, tree, &workers, rel, events).await) }
        })
        .buffered(tree.in_flight.max(1)))
}

async fn put_one(
    store: &Store,
    tree: &Tree,
    workers: &Workers,
    rel: &Path,
    events: &dyn Events,
) -> Result<Outcome, Error> {
    let bad = |why| Error::BadName { path: tree.dir.join(rel), why };
    let rel_str = rel.to_str().ok_or_else(|| bad(BadName::NotUtf8))?;
    if rel_str.contains('\\') {
        return Err(bad(BadName::Backslash));
    }
    let key = crate::under(&tree.prefix, rel_str)?;
    match promote_small(store, workers, &key, tree.dir.join(rel), &tree.mode, tree.staging.streaming).await? {
        Ok(outcome) => Ok(outcome),
        Err(file) => {
            let file = tokio::fs::File::from_std(file);
            promote_file(store, &key, file, &Expected::default(), tree.mode.clone(), &tree.staging, events).await
        }
    }
}
