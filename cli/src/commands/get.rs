//! `promote get KEY DEST` and `promote get -r PREFIX/ DIR`: copy out, verifying each object
//! against its stored digest; a file appears at its destination only when whole and verified.
//! Each copy says what was checked: the stored SHA-256, or only the size when none is stored.
//! The engine is `promote_tree::get`; this file reads the flags, shows progress, prints what
//! was copied and what failed, and picks the exit code.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use futures_util::StreamExt;
use promote_core::{Error, Key, Meta, Store};
use promote_tree::get as engine;
use tokio::io::AsyncWriteExt;

use super::{tree_error, usage};
use crate::args::GetArgs;
use crate::exit;
use crate::output::{self, out};
use crate::progress::Transfer;
use crate::settings::Loaded;
use serde_json::json;

pub(crate) async fn run(loaded: &Loaded, args: GetArgs) -> anyhow::Result<ExitCode> {
    if args.json && args.dest.as_os_str() == "-" {
        return Err(usage("--json prints records on stdout, so DEST cannot be `-` (stdout) with it"));
    }
    if args.recursive {
        return get_tree(loaded, &args).await;
    }
    args.filters.refuse("one object (use -r with a prefix)")?;
    let key = super::parse_object_key(&args.key, "get -r")?;
    let store = super::open_existing(loaded).await?;
    let (meta, mut stream) = match open(&store, &key, args.force).await {
        Ok(opened) => opened,
        Err(err) => {
            return Err(
                super::hint_prefix(err, &store, &key, |p| format!("`promote get -r {p} DIR` copies them out")).await
            );
        }
    };
    let progress = Transfer::new(Some(meta.size), None, Transfer::shown(args.progress, args.quiet, args.json));
    if args.dest.as_os_str() == "-" {
        // stdout cannot be taken back: a mismatch is reported after the bytes went out.
        let mut out = tokio::io::stdout();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            progress.add_bytes(chunk.len() as u64);
            out.write_all(&chunk).await.map_err(output::stdout_error)?;
        }
        out.flush().await.map_err(output::stdout_error)?;
        progress.finish();
        if meta.sha256.is_none() {
            eprintln!("promote: {key}: {}", checked(&key, &meta));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dest = if args.dest.is_dir() { args.dest.join(key.file_name()) } else { args.dest.clone() };
    engine::write_file(stream, &dest, args.force, &progress).await.map_err(|e| get_error(e, &key))?;
    progress.finish();
    if args.json || !args.quiet {
        print(&key, &dest, &meta, args.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The line (or JSON record) for one object copied out.
fn print(key: &Key, dest: &Path, meta: &Meta, json: bool) -> anyhow::Result<()> {
    if json {
        let against = if meta.sha256.is_some() { "stored-digest" } else { "size" };
        out!(
            "{}",
            json!({ "outcome": "got", "key": key.as_str(), "dest": dest.to_string_lossy(), "size": meta.size,
                    "sha256": meta.sha256.map(|s| s.to_string()), "checked_against": against,
                    "modified_since_promotion": meta.changed_since_promotion })
        );
    } else {
        out!("got {key} -> {}  {}", output::path(dest), checked(key, meta));
    }
    Ok(())
}

/// What a copy was checked against, in words.
fn checked(key: &Key, meta: &Meta) -> String {
    match (meta.sha256, meta.changed_since_promotion) {
        (Some(sha), _) => format!("{}, sha256:{sha} (checked against the stored digest)", output::bytes(meta.size)),
        (None, true) => format!("{} (modified since promotion: size checked only)", output::bytes(meta.size)),
        (None, false) => format!(
            "{} (size checked only: no digest is stored; `promote verify {key} --sha256 HEX` checks the content)",
            output::bytes(meta.size)
        ),
    }
}

/// The object's verified stream (see [`engine::open`]).
async fn open(store: &Store, key: &Key, force: bool) -> anyhow::Result<(Meta, promote_core::ByteStream)> {
    engine::open(store, key, force, &crate::progress::notice).await.map_err(|e| get_error(e, key))
}

/// An engine error about `key` as `get` reports it: a change since promotion is refused with
/// the flag that allows copying it anyway.
fn get_error(err: promote_tree::Error, key: &Key) -> anyhow::Error {
    match err {
        promote_tree::Error::Store(err @ Error::Modified { .. }) => {
            anyhow::Error::new(err).context("refusing to copy it out (pass --force to copy it anyway)")
        }
        err => tree_error(err, Some(key)),
    }
}

/// Every object under the prefix KEY into the directory DEST, each at the part of its key after
/// the prefix: the prefix's contents go into DEST (`get -r ds/tree out` makes `out/a`, as
/// `put tree ds/tree` made `ds/tree/a`).
async fn get_tree(loaded: &Loaded, args: &GetArgs) -> anyhow::Result<ExitCode> {
    if args.dest.as_os_str() == "-" {
        return Err(usage("get -r copies into a directory, not to stdout"));
    }
    let prefix = super::parse_prefix(&args.key)?;
    let store = super::open_existing(loaded).await?;
    let filter = args.filters.compile()?;
    let mut entries = store.list(&prefix).await?;
    if entries.is_empty() {
        return Err(Error::NotFound { key: args.key.clone() }.into());
    }
    entries.retain(|e| filter.selects(&e.key.as_str()[prefix.len()..]));
    let started = Instant::now();
    let total = entries.iter().map(|e| e.size).sum();
    let shown = Transfer::shown(args.progress, args.quiet, args.json);
    let progress = Transfer::new(Some(total), Some(entries.len() as u64), shown);
    let (mut copied, mut bytes, mut first_failure) = (0u64, 0u64, None);
    let results = engine::get_tree(&store, &entries, &prefix, &args.dest, args.force, &progress);
    let mut results = std::pin::pin!(results);
    while let Some((entry, dest, result)) = results.next().await {
        progress.file_done();
        match result {
            Ok(meta) => {
                copied += 1;
                bytes += meta.size;
                if args.json || !args.quiet {
                    progress.suspend(|| print(&entry.key, &dest, &meta, args.json))?;
                }
            }
            Err(err) => {
                let err = get_error(err, &entry.key);
                let code = exit::code(&err);
                if args.json {
                    let record = json!({ "outcome": "failed", "key": entry.key.as_str(), "dest": dest.to_string_lossy(),
                                         "error": exit::one_line(&err), "exit": code });
                    out!("{record}");
                }
                progress.suspend(|| eprintln!("promote: error: {}", exit::one_line(&err)));
                first_failure.get_or_insert(code);
            }
        }
    }
    progress.finish();
    if !args.quiet {
        eprintln!(
            "get: {} objects: {copied} copied, {} failed; {} in {:.1}s",
            entries.len(),
            entries.len() as u64 - copied,
            output::bytes(bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, ExitCode::from))
}
