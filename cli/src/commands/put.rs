//! `promote put SRC KEY`: stream, verify, promote. SRC may be a file, `-` (stdin) or a
//! directory (every file under it, KEY as the prefix).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use futures_util::StreamExt;
use promote_core::kit::blocking::Workers;
use promote_core::{Expected, Key, Mode, Outcome, PutOptions, Store};
use serde_json::json;
use tokio::io::AsyncRead;

use super::{parse_key, usage};
use crate::args::PutArgs;
use crate::exit;
use crate::open_files;
use crate::output::{self, out};
use crate::progress::Transfer;
use crate::settings::{self, Loaded};

/// Where a put lands: one key, or (for a directory, or a file put to `dir/`) under a prefix.
enum Target {
    /// Exactly this key.
    Key(Key),
    /// Under this prefix (`None`: the top of the store, from KEY `/` or `""`).
    Prefix(Option<Key>),
}

/// KEY as typed: `a/b` is a key, `a/b/` a prefix (as rclone and `aws s3` read it), `/` the top
/// of the store; an empty KEY is a usage error (see `parse_key`).
fn target(key: &str) -> anyhow::Result<Target> {
    Ok(match key {
        "/" => Target::Prefix(None),
        k if k.ends_with('/') => Target::Prefix(Some(parse_key(k.trim_end_matches('/'))?)),
        k => Target::Key(parse_key(k)?),
    })
}

/// `rel` under `prefix`.
fn under(prefix: &Option<Key>, rel: &str) -> Result<Key, promote_core::Error> {
    match prefix {
        Some(prefix) => Key::join(prefix, rel),
        None => Key::new(rel),
    }
}

pub(crate) async fn run(loaded: &Loaded, args: PutArgs) -> anyhow::Result<ExitCode> {
    let target = target(&args.key)?;
    let mode = match (&args.if_version, args.replace) {
        (Some(v), _) => Mode::ReplaceIfVersion(v.clone()),
        (None, true) => Mode::Replace,
        (None, false) => Mode::Create,
    };
    let expected = Expected { size: args.size, sha256: args.sha256 };
    let is_stdin = args.src.as_os_str() == "-";
    if !is_stdin && args.src.is_dir() {
        if expected != Expected::default() {
            return Err(usage("--sha256 and --size apply to a single file, not to a directory"));
        }
        let prefix = match target {
            Target::Key(key) => Some(key),
            Target::Prefix(prefix) => prefix,
        };
        let files = files_under(&args.src, args.follow_symlinks)?;
        let jobs = open_files::fit(usize::from(args.jobs), open_files::PER_FILE, Some("--jobs"));
        let created = settings::new_local_root(loaded.backend.as_ref());
        let mut store = settings::open(loaded).await?.with_put_options(put_options(&args));
        notice_created(created, &args);
        if store.batches_durability() {
            // `--jobs` files stream at once; many more wait, sealed, for one shared flush.
            store = store.limit_staging(jobs);
        }
        store.ready_for(&mode).await?;
        return put_tree(loaded, &store, &args, jobs, &prefix, &files, &mode).await;
    }
    let key = match target {
        Target::Key(key) => key,
        Target::Prefix(prefix) => {
            let name = args.src.file_name().and_then(|n| n.to_str()).filter(|_| !is_stdin);
            let name =
                name.ok_or_else(|| usage("a KEY ending in `/` needs a named source file to take the name from"))?;
            under(&prefix, name)?
        }
    };
    // The source is opened before the store, so a missing file creates nothing.
    let source = if is_stdin { None } else { Some(open_source(&args.src).await?) };
    let created = settings::new_local_root(loaded.backend.as_ref());
    let store = settings::open(loaded).await?.with_put_options(put_options(&args));
    notice_created(created, &args);
    store.ready_for(&mode).await?;
    let shown = Transfer::shown(args.progress, args.quiet, args.json);
    let progress;
    let outcome = if let Some(file) = source {
        let size = file.metadata().await.ok().map(|m| m.len());
        progress = Transfer::new(size, None, shown);
        promote_file(loaded, &store, &key, file, &expected, mode, &progress).await?
    } else {
        progress = Transfer::new(args.size, None, shown);
        promote(loaded, &store, &key, progress.counting(tokio::io::stdin()), &expected, mode).await?
    };
    progress.finish();
    if args.json || !args.quiet {
        out!("{}", output::receipt(&outcome, args.json));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line on stderr when this put created the store (a new local root), naming it in full:
/// a mistyped root shows at once. Not with `-q` or `--json`.
fn notice_created(created: Option<PathBuf>, args: &PutArgs) {
    if let Some(root) = created
        && root.exists()
        && !args.quiet
        && !args.json
    {
        eprintln!("promote: created a new store at {}", output::path(&root));
    }
}

/// `--content-type`, else guessed from each key.
fn put_options(args: &PutArgs) -> PutOptions {
    PutOptions::with_content_type(args.content_type.clone())
}

async fn open_source(path: &Path) -> anyhow::Result<tokio::fs::File> {
    tokio::fs::File::open(path).await.map_err(|e| usage(format!("cannot read {}: {e}", output::path(path))))
}

/// The streaming path or the spool path, as configured.
async fn promote<R>(
    loaded: &Loaded,
    store: &Store,
    key: &Key,
    src: R,
    expected: &Expected,
    mode: Mode,
) -> anyhow::Result<Outcome>
where
    R: AsyncRead + Unpin + Send,
{
    Ok(if loaded.settings.streaming {
        store.promote_reader(key, src, expected, mode).await?
    } else {
        store.promote_spooled(key, src, expected, mode, &loaded.spool_dir()).await?
    })
}

/// A local file: read ahead on its own thread when streaming. `progress` follows the file's
/// offset while it is read.
async fn promote_file(
    loaded: &Loaded,
    store: &Store,
    key: &Key,
    file: tokio::fs::File,
    expected: &Expected,
    mode: Mode,
    progress: &Transfer,
) -> anyhow::Result<Outcome> {
    let file = file.into_std().await;
    let followed = progress.follow(&file);
    let result = if loaded.settings.streaming {
        store.promote_file(key, file, expected, mode).await.map_err(Into::into)
    } else {
        promote(loaded, store, key, tokio::fs::File::from_std(file), expected, mode).await
    };
    progress.unfollow(followed);
    result
}

/// Opens `path` on one of `workers` and, when it is smaller than one chunk (and streaming is on),
/// promotes it there start to end, its blocking steps in place (see
/// [`promote_core::kit::blocking`]): a small file then costs no thread hand-off per step. A larger
/// file comes back open, for [`promote_file`], which overlaps reading with writing.
async fn promote_small(
    loaded: &Loaded,
    store: &Store,
    workers: &Workers,
    key: &Key,
    path: PathBuf,
    mode: &Mode,
) -> anyhow::Result<Result<Outcome, std::fs::File>> {
    let (store, key, mode, streaming) = (store.clone(), key.clone(), mode.clone(), loaded.settings.streaming);
    workers
        .run(async move {
            let file =
                std::fs::File::open(&path).map_err(|e| usage(format!("cannot read {}: {e}", output::path(&path))))?;
            let small = file.metadata().is_ok_and(|m| m.len() < promote_core::kit::CHUNK_SIZE as u64);
            if !(small && streaming) {
                return Ok(Err(file));
            }
            Ok(Ok(store.promote_file(&key, file, &Expected::default(), mode).await?))
        })
        .await?
}

/// Every regular file under `dir`, relative, sorted. Symbolic links are skipped with a notice,
/// or followed with `follow` (a directory reached twice, through a loop, is read once).
fn files_under(dir: &Path, follow: bool) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let unreadable = |path: &Path, e: std::io::Error| usage(format!("cannot read {}: {e}", output::path(path)));
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
                    eprintln!("promote: skipping symbolic link {} (pass -L to follow links)", output::path(&path));
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
                eprintln!("promote: skipping {}: not a regular file", output::path(&path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Files promoted at once: `jobs`, or with group commit enough to fill a batch (only `jobs` of
/// them stream bytes at a time; the rest hold an open staging file while they wait for a flush),
/// as many as the open-file limit allows.
fn in_flight(store: &Store, jobs: usize) -> usize {
    let wanted = if store.batches_durability() { BATCH.max(jobs) } else { jobs };
    open_files::fit(wanted, open_files::PER_FILE, None)
}

/// Files that may wait together for one group commit in a directory put.
const BATCH: usize = 256;

/// Promotes each file under `dir` to `prefix/<relative path>`, `jobs` at a time (`--jobs`, as
/// the open-file limit allows; receipts in path order); reports every failure and exits with the
/// first failure's code; ends with a summary line on stderr. With -q only failures (and --json
/// records) print.
async fn put_tree(
    loaded: &Loaded,
    store: &Store,
    args: &PutArgs,
    jobs: usize,
    prefix: &Option<Key>,
    files: &[PathBuf],
    mode: &Mode,
) -> anyhow::Result<ExitCode> {
    let (dir, json) = (args.src.as_path(), args.json);
    let started = Instant::now();
    let shown = Transfer::shown(args.progress, args.quiet, json);
    let total =
        shown.then(|| files.iter().map(|rel| std::fs::metadata(dir.join(rel)).map_or(0, |m| m.len())).sum::<u64>());
    let progress = Transfer::new(total, Some(files.len() as u64), shown);
    let following = &progress;
    // Threads for the small files: a few (not one per job), each driving its share of the files
    // in flight.
    let workers = &Workers::new(jobs)?;
    let results = futures_util::stream::iter(files)
        .map(|rel| async move {
            let result = async {
                let rel_str = rel.to_str().ok_or_else(|| usage("the file name is not valid UTF-8"))?;
                if rel_str.contains('\\') {
                    return Err(usage("the file name contains a backslash, which keys cannot"));
                }
                let key = under(prefix, rel_str)?;
                match promote_small(loaded, store, workers, &key, dir.join(rel), mode).await? {
                    Ok(outcome) => Ok(outcome),
                    Err(file) => {
                        let file = tokio::fs::File::from_std(file);
                        promote_file(loaded, store, &key, file, &Expected::default(), mode.clone(), following).await
                    }
                }
            }
            .await;
            (rel, result)
        })
        .buffered(in_flight(store, jobs));
    let mut results = std::pin::pin!(results);
    let (mut promoted, mut present, mut failed, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut first_failure = None;
    while let Some((rel, result)) = results.next().await {
        match result {
            Ok(outcome) => {
                match outcome {
                    Outcome::Promoted(_) => promoted += 1,
                    Outcome::AlreadyPresent(_) => present += 1,
                }
                bytes += outcome.receipt().size;
                progress.add_bytes(outcome.receipt().size);
                progress.file_done();
                if json || !args.quiet {
                    progress.suspend(|| output::write_line(format_args!("{}", output::receipt(&outcome, json))))?;
                }
            }
            Err(err) => {
                failed += 1;
                progress.file_done();
                let path = dir.join(rel);
                let err = err.context(output::path(&path));
                let code = exit::code(&err);
                if json {
                    let line = exit::one_line(&err);
                    out!(
                        "{}",
                        json!({ "outcome": "failed", "path": path.to_string_lossy(), "error": line, "exit": code })
                    );
                }
                progress.suspend(|| eprintln!("promote: error: {}", exit::one_line(&err)));
                first_failure.get_or_insert(code);
            }
        }
    }
    progress.finish();
    if !args.quiet {
        eprintln!(
            "put: {} files: {promoted} promoted, {present} already present, {failed} failed; {} in {:.1}s",
            files.len(),
            output::bytes(bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, ExitCode::from))
}
