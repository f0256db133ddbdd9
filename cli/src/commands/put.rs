//! `promote put SRC KEY`: stream, verify, promote.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures_util::StreamExt;
use promote_core::{Expected, Key, Mode, Outcome, Store};
use tokio::io::AsyncRead;

use super::{parse_key, usage};
use crate::args::PutArgs;
use crate::settings::{self, Loaded};
use crate::{exit, output};

pub(crate) async fn run(loaded: &Loaded, args: PutArgs) -> anyhow::Result<ExitCode> {
    let key = parse_key(&args.key)?;
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
        let files = files_under(&args.src)?;
        let store = settings::open(loaded).await?;
        store.ready_for(&mode).await?;
        return put_tree(loaded, &store, &args, &key, &files, &mode).await;
    }
    let store = settings::open(loaded).await?;
    store.ready_for(&mode).await?;
    let outcome = if is_stdin {
        promote(loaded, &store, &key, tokio::io::stdin(), &expected, mode).await?
    } else {
        let file = open_source(&args.src).await?;
        promote_file(loaded, &store, &key, file, &expected, mode).await?
    };
    println!("{}", output::receipt(&outcome, args.json));
    Ok(ExitCode::SUCCESS)
}

async fn open_source(path: &Path) -> anyhow::Result<tokio::fs::File> {
    tokio::fs::File::open(path).await.map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
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

/// A local file: read ahead on its own thread when streaming.
async fn promote_file(
    loaded: &Loaded,
    store: &Store,
    key: &Key,
    file: tokio::fs::File,
    expected: &Expected,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    if loaded.settings.streaming {
        Ok(store.promote_file(key, file.into_std().await, expected, mode).await?)
    } else {
        promote(loaded, store, key, file, expected, mode).await
    }
}

/// Every regular file under `dir`, relative, sorted; symlinks are skipped with a warning.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries = std::fs::read_dir(&here).map_err(|e| usage(format!("cannot read {}: {e}", here.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| usage(format!("cannot read {}: {e}", here.display())))?;
            let kind = entry.file_type().map_err(|e| usage(format!("cannot read {}: {e}", entry.path().display())))?;
            let rel = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_file() {
                out.push(rel);
            } else {
                tracing::warn!(path = %entry.path().display(), "skipping: not a regular file");
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Promotes each file under `dir` to `prefix/<relative path>`, `jobs` at a time (receipts in
/// path order); reports every failure and exits with the first failure's code.
async fn put_tree(
    loaded: &Loaded,
    store: &Store,
    args: &PutArgs,
    prefix: &Key,
    files: &[PathBuf],
    mode: &Mode,
) -> anyhow::Result<ExitCode> {
    let (dir, json, jobs) = (args.src.as_path(), args.json, args.jobs);
    let results = futures_util::stream::iter(files)
        .map(|rel| async move {
            let result = async {
                let rel_str = rel.to_str().ok_or_else(|| usage(format!("{} is not valid UTF-8", rel.display())))?;
                let key = Key::join(prefix, rel_str)?;
                let file = open_source(&dir.join(rel)).await?;
                promote_file(loaded, store, &key, file, &Expected::default(), mode.clone()).await
            }
            .await;
            (rel, result)
        })
        .buffered(jobs.max(1));
    let mut results = std::pin::pin!(results);
    let mut first_failure = None;
    while let Some((rel, result)) = results.next().await {
        match result {
            Ok(outcome) => println!("{}", output::receipt(&outcome, json)),
            Err(err) => {
                let err = err.context(format!("{}", dir.join(rel).display()));
                eprintln!("promote: error: {}", exit::one_line(&err));
                first_failure.get_or_insert(exit::code(&err));
            }
        }
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, ExitCode::from))
}
