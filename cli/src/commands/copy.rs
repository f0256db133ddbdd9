//! `promote copy SRC DST`: promotion between stages. SRC and DST are `TARGET:KEY` or
//! `TARGET:PREFIX/`, naming `[targets.NAME]` tables. Each object streams from the source,
//! verified against its stored digest, through the destination's create-only publish with that
//! digest as the expected SHA-256. A destination that already holds it (its stored digest says
//! so) is answered from one `head`: a rerun reads no source bytes. The engine is
//! `promote_tree::copy`; this file resolves the targets, opens the stores, prints receipts,
//! errors and the summary, and picks the exit code.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use futures_util::StreamExt;
use promote_core::{Error, Key, Mode, Outcome, Store};
use promote_tree::copy::{self as engine, Copied, Job};
use promote_tree::under;
use serde_json::json;

use super::{parse_key, tree_error, usage};
use crate::address::{self, Address};
use crate::args::CopyArgs;
use crate::exit;
use crate::open_files;
use crate::output::{self, out};
use crate::progress::Transfer;
use crate::settings::{self, Loaded};

/// One side of a copy: a target (or an address's store) and a key or a prefix (`None`: the
/// whole store).
struct Side {
    target: String,
    /// Set for `s3://BUCKET/KEY` and `az://CONTAINER/KEY` (see `address`).
    address: Option<Address>,
    path: Path,
}

impl Side {
    /// `TARGET:KEY`, or `s3://BUCKET/KEY`, for messages.
    fn shown(&self, key: &Key) -> String {
        match &self.address {
            Some(address) => format!("{}/{key}", address.store()),
            None => format!("{}:{key}", self.target),
        }
    }
}

enum Path {
    Key(Key),
    Prefix(Option<Key>),
}

/// `TARGET:KEY`, `TARGET:PREFIX/` or `TARGET:` (the whole store); or an address,
/// `s3://BUCKET/KEY` or `s3://BUCKET/PREFIX/` (see `address`).
fn side(text: &str) -> anyhow::Result<Side> {
    let address = Address::parse(text)?;
    let split = match &address {
        Some(address) => Some((address.store(), address.key_arg())),
        None => text.split_once(':').filter(|(t, _)| !t.is_empty()).map(|(t, r)| (t.to_owned(), r.to_owned())),
    };
    let Some((target, rest)) = split else {
        return Err(usage(format!("{:?} is not TARGET:KEY or TARGET:PREFIX/ (a target named in the config)", text)));
    };
    let path = match rest.as_str() {
        "/" => Path::Prefix(None),
        p if p.ends_with('/') => Path::Prefix(Some(parse_key(p.trim_end_matches('/'))?)),
        p => Path::Key(parse_key(p)?),
    };
    Ok(Side { target, address, path })
}

pub(crate) async fn run(loaded: &Loaded, args: CopyArgs) -> anyhow::Result<ExitCode> {
    let (src, dst) = (side(&args.src)?, side(&args.dst)?);
    // The source is only read: opening it creates nothing (a missing store is an error).
    let src_side = address::side_settings(loaded, src.address.as_ref(), &src.target)?;
    let src_config = src_side.config.as_ref();
    // A bad setting names its target's table (or the address) and source.
    let locate = |err: anyhow::Error, side: &address::Resolved| {
        settings::located_in(err, &side.figment, &side.table, side.config.as_ref())
    };
    let src_store = Store::new(
        src_config.open_existing().await.context("opening the source target").map_err(|err| locate(err, &src_side))?,
    );
    let dst_side = address::side_settings(loaded, dst.address.as_ref(), &dst.target)?;
    let dst_config = dst_side.config.as_ref();
    // A dry run creates nothing either: a destination store that does not exist yet is empty.
    let dst_store = if args.dry_run {
        match dst_config.open_existing().await {
            Ok(backend) => Some(Store::new(backend)),
            Err(Error::Config { message }) if message.contains("no store at") => None,
            Err(err) => {
                let err = anyhow::Error::new(err).context("opening the destination target");
                return Err(locate(err, &dst_side));
            }
        }
    } else {
        let opened = settings::open_config(dst_config).await;
        Some(opened.map_err(|err| locate(err, &dst_side))?)
    };
    if matches!(src.path, Path::Key(_)) {
        args.filters.refuse("one object (end the source with `/` for a prefix)")?;
    }
    let filter = args.filters.compile()?;
    let jobs = match (&src.path, &dst.path) {
        (Path::Key(key), Path::Key(to)) => vec![Job { src: key.clone(), dst: to.clone() }],
        (Path::Key(key), Path::Prefix(to)) => vec![Job { src: key.clone(), dst: under(to, key.file_name())? }],
        (Path::Prefix(_), Path::Key(_)) => {
            return Err(usage("a source prefix (ending in `/`) needs a destination prefix (ending in `/`)"));
        }
        (Path::Prefix(from), Path::Prefix(to)) => {
            let mut jobs = engine::jobs_under(&src_store, from, to).await.map_err(|e| tree_error(e, None))?;
            let base = from.as_ref().map_or(0, |p| p.as_str().len() + 1);
            jobs.retain(|job| filter.selects(&job.src.as_str()[base..]));
            jobs
        }
    };
    if let (false, Some(dst_store)) = (args.dry_run, &dst_store) {
        dst_store.ready_for(&Mode::Create).await?;
    }
    let started = Instant::now();
    let total = jobs.len();
    let progress = Transfer::new(None, Some(total as u64), Transfer::shown(args.progress, args.quiet, args.json));
    // -q: only failures (and --json records) print.
    let receipts = args.json || !args.quiet;
    let at_once = open_files::fit(usize::from(args.jobs), open_files::PER_FILE, Some("--jobs"));
    let results = engine::copy_all(&src_store, dst_store.as_ref(), &jobs, args.dry_run, at_once);
    let mut results = std::pin::pin!(results);
    let (mut copied, mut present, mut failed, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut first_failure = None;
    while let Some((job, result)) = results.next().await {
        match result {
            Ok(Copied::Done(outcome)) => {
                match &outcome {
                    Outcome::Promoted(r) => {
                        copied += 1;
                        bytes += r.size;
                    }
                    Outcome::AlreadyPresent(_) => present += 1,
                }
                progress.add_bytes(outcome.receipt().size);
                if receipts {
                    progress
                        .suspend(|| output::write_line(format_args!("{}", output::receipt(&outcome, args.json))))?;
                }
            }
            Ok(Copied::Would(would, key, meta)) => {
                let what = would.as_str();
                match would {
                    engine::Would::Copy => {
                        copied += 1;
                        bytes += meta.size;
                    }
                    _ => present += 1,
                }
                progress.suspend(|| {
                    if !receipts {
                        Ok(())
                    } else if args.json {
                        output::write_line(format_args!(
                            "{}",
                            json!({ "outcome": what, "key": key.as_str(), "size": meta.size })
                        ))
                    } else {
                        output::write_line(format_args!("{what:<15} {key}  {}", output::bytes(meta.size)))
                    }
                })?;
            }
            Err(err) => {
                failed += 1;
                let mut err = tree_error(err, None);
                if matches!(src.path, Path::Key(_)) {
                    let shown = src.shown(&job.src);
                    err = super::hint_prefix(err, &src_store, &job.src, |_| {
                        format!("end the source with `/` ({shown}/) to copy them")
                    })
                    .await;
                }
                let err = err.context(format!("{} -> {}", src.shown(&job.src), dst.shown(&job.dst)));
                let code = exit::code(&err);
                if args.json {
                    let line = exit::one_line(&err);
                    out!("{}", json!({ "outcome": "failed", "key": job.src.as_str(), "error": line, "exit": code }));
                }
                progress.suspend(|| eprintln!("promote: error: {}", exit::one_line(&err)));
                first_failure.get_or_insert(code);
            }
        }
        progress.file_done();
    }
    progress.finish();
    if !args.quiet {
        let (verb, skipped) =
            if args.dry_run { ("would copy", "already present") } else { ("copied", "already present") };
        eprintln!(
            "copy: {total} object{}: {copied} {verb}, {present} {skipped}, {failed} failed; {} in {:.1}s",
            if total == 1 { "" } else { "s" },
            output::bytes(bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, ExitCode::from))
}
