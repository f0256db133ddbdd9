//! `promote rm KEY…`, `promote rm -r PREFIX/…`.

use std::process::ExitCode;

use promote_core::{Error, Key, Store};
use serde_json::json;

use super::{hint_prefix, parse_object_key, parse_prefix, usage};
use crate::args::RmArgs;
use crate::exit;
use crate::output::out;
use crate::settings::Loaded;

pub(crate) async fn run(loaded: &Loaded, args: RmArgs) -> anyhow::Result<ExitCode> {
    // Every argument is checked before anything is removed.
    let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
    if !args.recursive {
        args.filters.refuse("keys (use -r with a prefix)")?;
    }
    let filter = args.filters.compile()?;
    for arg in &args.keys {
        if args.recursive {
            let prefix = parse_prefix(arg)?;
            if prefix.is_empty() && !args.all {
                return Err(usage("rm -r / would remove everything in the store; add --all if you mean it"));
            }
            prefixes.push((arg, prefix));
            continue;
        }
        keys.push(parse_object_key(arg, "rm -r")?);
    }
    let store = super::open_existing(loaded).await?;
    if args.recursive {
        for (arg, prefix) in prefixes {
            let listed = store.list(&prefix).await?;
            if listed.is_empty() && !args.force {
                return Err(Error::NotFound { key: arg.clone() }.into());
            }
            keys.extend(listed.into_iter().filter(|e| filter.selects(&e.key.as_str()[prefix.len()..])).map(|e| e.key));
        }
    }
    let mut first_failure = None;
    for key in &keys {
        match remove(&store, key, args.force || args.recursive).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                let err = hint_prefix(err, &store, key, |p| format!("`promote rm -r {p}` removes them")).await;
                let err = crate::settings::located(err, loaded);
                let code = exit::code(&err);
                if args.json {
                    out!(
                        "{}",
                        json!({ "key": key.as_str(), "ok": false, "error": exit::one_line(&err), "exit": code })
                    );
                }
                eprintln!("promote: error: {}", exit::one_line(&err));
                first_failure.get_or_insert(code);
                continue;
            }
        }
        if args.json {
            out!("{}", json!({ "removed": key.as_str() }));
        } else {
            out!("removed {key}");
        }
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, ExitCode::from))
}

/// Removes `key`: `Ok(true)` when removed; with `missing_ok`, `Ok(false)` when it was not there.
async fn remove(store: &Store, key: &Key, missing_ok: bool) -> anyhow::Result<bool> {
    match store.delete(key).await {
        Ok(()) => Ok(true),
        Err(Error::NotFound { .. }) if missing_ok => Ok(false),
        Err(err) => Err(err.into()),
    }
}
