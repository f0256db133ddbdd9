//! `promote copy SRC DST`: promotion between stages. SRC and DST are `TARGET:KEY` or
//! `TARGET:PREFIX/`, naming `[targets.NAME]` tables. Each object streams from the source,
//! verified against its stored digest, through the destination's create-only publish with that
//! digest as the expected SHA-256. A destination that already holds it (its stored digest says
//! so) is answered from one `head`: a rerun reads no source bytes.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use promote_core::{Error, Expected, Key, Meta, Mode, Outcome, PutOptions, Store};
use serde_json::json;

use super::{parse_key, usage};
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

/// One object to copy.
struct Job {
    src: Key,
    dst: Key,
}

/// What happened to one object.
enum Done {
    Copied(Outcome),
    /// Dry run: what a real run would do.
    Would(&'static str, Key, Meta),
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
    let jobs = match (&src.path, &dst.path) {
        (Path::Key(key), Path::Key(to)) => vec![Job { src: key.clone(), dst: to.clone() }],
        (Path::Key(key), Path::Prefix(to)) => vec![Job { src: key.clone(), dst: under(to, key.file_name())? }],
        (Path::Prefix(_), Path::Key(_)) => {
            return Err(usage("a source prefix (ending in `/`) needs a destination prefix (ending in `/`)"));
        }
        (Path::Prefix(from), Path::Prefix(to)) => {
            let listed = match from {
                Some(p) => format!("{p}/"),
                None => String::new(),
            };
            let mut jobs = Vec::new();
            for entry in src_store.list(&listed).await? {
                let rel = &entry.key.as_str()[listed.len()..];
                jobs.push(Job { dst: under(to, rel)?, src: entry.key });
            }
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
    let results = futures_util::stream::iter(&jobs)
        .map(|job| {
            let (src_store, dst_store) = (&src_store, dst_store.as_ref());
            async move { (job, copy_one(src_store, dst_store, job, args.dry_run).await) }
        })
        .buffered(open_files::fit(usize::from(args.jobs), open_files::PER_FILE, Some("--jobs")));
    let mut results = std::pin::pin!(results);
    let (mut copied, mut present, mut failed, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut first_failure = None;
    while let Some((job, result)) = results.next().await {
        match result {
            Ok(Done::Copied(outcome)) => {
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
            Ok(Done::Would(what, key, meta)) => {
                match what {
                    "would copy" => {
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

/// `rel` under `prefix`.
fn under(prefix: &Option<Key>, rel: &str) -> Result<Key, Error> {
    match prefix {
        Some(prefix) => Key::join(prefix, rel),
        None => Key::new(rel),
    }
}

/// Copies one object. The source's `head` gives its stored digest, which becomes the expected
/// SHA-256 of a create-only publish: core answers already-present from the destination's `head`
/// before the source stream is ever polled, so nothing is read from the source then.
async fn copy_one(src: &Store, dst: Option<&Store>, job: &Job, dry_run: bool) -> anyhow::Result<Done> {
    let meta = src.head(&job.src).await?;
    if meta.changed_since_promotion {
        return Err(Error::Modified { key: job.src.to_string() }.into());
    }
    let expected = Expected { size: Some(meta.size), sha256: meta.sha256 };
    // The source's content type where it reports one, else guessed from the destination key.
    let options = PutOptions::with_content_type(meta.content_type.clone());
    if dry_run {
        let Some(dst) = dst else { return Ok(Done::Would("would copy", job.dst.clone(), meta)) };
        let what = match dst.head(&job.dst).await {
            Ok(there) if meta.sha256.is_some() && there.sha256 == meta.sha256 && there.size == meta.size => {
                "already-present"
            }
            Ok(_) => "would conflict",
            Err(Error::NotFound { .. }) => "would copy",
            Err(err) => return Err(err.into()),
        };
        return Ok(Done::Would(what, job.dst.clone(), meta));
    }
    let (src, key) = (src.clone(), job.src.clone());
    // The source's own error (a damaged object: exit 4), kept whole past the io::Error the
    // publish sees.
    let source_error = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = std::sync::Arc::clone(&source_error);
    // Opened on first poll only: an already-present answer never opens the source.
    let chunks = futures_util::stream::once(async move { src.read_checked(&key, meta).await })
        .map_ok(|(_, stream)| stream)
        .try_flatten()
        .map_err(move |err: Error| {
            let text = err.to_string();
            *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
            std::io::Error::other(text)
        });
    let dst = dst.ok_or_else(|| anyhow::anyhow!("the destination store is not open"))?;
    let dst = dst.clone().with_put_options(options);
    match dst.promote_stream(&job.dst, chunks, &expected, Mode::Create).await {
        Ok(outcome) => Ok(Done::Copied(outcome)),
        Err(err) => {
            let source = source_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            Err(source.unwrap_or(err).into())
        }
    }
}
