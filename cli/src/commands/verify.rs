//! `promote verify KEY`, `promote verify -r PREFIX/`: re-read, recompute, compare.

use std::process::ExitCode;
use std::time::Instant;

use promote_core::{Digest, Expected, Key, Meta, Store};
use serde_json::json;

use super::{hint_prefix, parse_object_key};
use crate::args::VerifyArgs;
use crate::exit;
use crate::output::{self, out};
use crate::settings::Loaded;

pub(crate) async fn run(loaded: &Loaded, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let expected = Expected { size: None, sha256: args.sha256 };
    if !args.recursive {
        args.filters.refuse("one object (use -r with a prefix)")?;
        let key = parse_object_key(&args.key, "verify -r")?;
        let store = super::open_existing(loaded).await?;
        let (meta, digest) = match store.verify(&key, &expected).await {
            Ok(verified) => verified,
            Err(err) => {
                return Err(
                    hint_prefix(err.into(), &store, &key, |p| format!("`promote verify -r {p}` checks them")).await
                );
            }
        };
        print(&key, &meta, &digest, &args)?;
        return Ok(ExitCode::SUCCESS);
    }
    let prefix = super::parse_prefix(&args.key)?;
    let store = super::open_existing(loaded).await?;
    let started = Instant::now();
    let (mut ok, mut failed, mut bytes, mut first_failure) = (0u64, 0u64, 0u64, None);
    let filter = args.filters.compile()?;
    let listed = store.list(&prefix).await?;
    for entry in listed.into_iter().filter(|e| filter.selects(&e.key.as_str()[prefix.len()..])) {
        match verify_one(&store, &entry.key, &expected).await {
            Ok((meta, digest)) => {
                ok += 1;
                bytes += digest.size;
                print(&entry.key, &meta, &digest, &args)?;
            }
            Err(err) => {
                failed += 1;
                let code = exit::code(&err);
                if args.json {
                    out!(
                        "{}",
                        json!({ "key": entry.key.as_str(), "ok": false, "error": exit::one_line(&err), "exit": code })
                    );
                }
                eprintln!("promote: error: {}", exit::one_line(&err));
                first_failure.get_or_insert(code);
            }
        }
    }
    if !args.quiet {
        eprintln!(
            "verify: {} objects under {:?}: {ok} verified, {failed} failed; {} in {:.1}s",
            ok + failed,
            args.key,
            output::bytes(bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, ExitCode::from))
}

async fn verify_one(store: &Store, key: &Key, expected: &Expected) -> anyhow::Result<(Meta, Digest)> {
    Ok(store.verify(key, expected).await?)
}

fn print(key: &Key, meta: &Meta, digest: &Digest, args: &VerifyArgs) -> anyhow::Result<()> {
    let against = match (meta.sha256.is_some(), args.sha256.is_some()) {
        (true, true) => "the stored digest and --sha256",
        (true, false) => "the stored digest",
        (false, true) => "--sha256 (no digest is stored)",
        (false, false) => "its size only: no digest is stored and no --sha256 was given",
    };
    let verified = meta.sha256.is_some() || args.sha256.is_some();
    if args.quiet && !args.json {
        return Ok(());
    }
    if args.json {
        let v = json!({ "key": key.as_str(), "ok": true, "verified": verified, "size": digest.size,
                        "sha256": digest.sha256.to_string(),
                        "stored_sha256": meta.sha256.map(|s| s.to_string()), "checked_against": against });
        out!("{v}");
    } else {
        let word = if verified { "verified" } else { "read" };
        out!("{word} {key}  {}  sha256:{}  (checked against {against})", output::bytes(digest.size), digest.sha256);
    }
    Ok(())
}
