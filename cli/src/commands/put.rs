//! `promote put SRC KEY`: stream, verify, promote. SRC may be a file, `-` (stdin) or a
//! directory (every file under it, KEY as the prefix). The engine is `promote_tree::put`; this
//! file reads the flags, shows progress, prints receipts, errors and the summary, and picks
//! the exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use futures_util::StreamExt;
use promote_core::{Expected, Key, Mode, Outcome, PutOptions, Store};
use promote_tree::put::{self as engine, Staging, Tree};
use promote_tree::under;
use serde_json::json;

use super::{parse_key, tree_error, usage};
use crate::args::PutArgs;
use crate::exit;
use crate::open_files;
use crate::output::{self, out};
use crate::progress::{Transfer, notice};
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
        let mut files =
            engine::files_under(&args.src, args.follow_symlinks, &notice).map_err(|e| tree_error(e, None))?;
        let filter = args.filters.compile()?;
        files.retain(|rel| filter.selects(&rel.to_string_lossy()));
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
    args.filters.refuse("a single file")?;
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
        engine::promote_file(&store, &key, file, &expected, mode, &staging(loaded), &progress)
            .await
            .map_err(|e| tree_error(e, None))?
    } else {
        progress = Transfer::new(args.size, None, shown);
        let stdin = progress.counting(tokio::io::stdin());
        engine::promote_reader(&store, &key, stdin, &expected, mode, &staging(loaded))
            .await
            .map_err(|e| tree_error(e, None))?
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

/// How bytes reach staging, as configured.
fn staging(loaded: &Loaded) -> Staging {
    Staging { streaming: loaded.settings.streaming, spool_dir: loaded.spool_dir() }
}

/// Files promoted at once (see [`engine::in_flight`]), as many as the open-file limit allows.
fn in_flight(store: &Store, jobs: usize) -> usize {
    open_files::fit(engine::in_flight(store, jobs), open_files::PER_FILE, None)
}

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
    let tree = Tree {
        dir: dir.to_owned(),
        prefix: prefix.clone(),
        mode: mode.clone(),
        staging: staging(loaded),
        jobs,
        in_flight: in_flight(store, jobs),
    };
    let results = engine::put_files(store, &tree, files, &progress).map_err(|e| tree_error(e, None))?;
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
                let err = tree_error(err, None).context(output::path(&path));
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
