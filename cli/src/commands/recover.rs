//! `promote recover`: find and remove what crashed writers left in staging.

use std::process::ExitCode;

use serde_json::json;

use crate::args::RecoverArgs;
use crate::output::bytes;
use crate::output::out;
use crate::settings::{self, Loaded};

pub(crate) async fn run(loaded: &Loaded, args: RecoverArgs) -> anyhow::Result<ExitCode> {
    // A dry run changes nothing, so it does not create the store either.
    let store = if args.dry_run { super::open_existing(loaded).await? } else { settings::open(loaded).await? };
    let mut leftovers = store.sweep_staging(args.older_than, args.dry_run).await?;
    // Spool copies (streaming = false) of killed processes, by age.
    let spool_dir = loaded.spool_dir();
    leftovers.extend(promote_core::kit::sweep_spool(&spool_dir, args.older_than, args.dry_run)?);
    let (mut removed, mut kept, mut freed) = (0, 0, 0);
    for l in &leftovers {
        // The backend's verdict, the same on a dry run (`removed` then means "would be").
        let verb = match (l.removed, args.dry_run) {
            (true, false) => "removed",
            (true, true) => "would remove",
            (false, _) => "kept",
        };
        if l.removed {
            removed += 1;
            freed += l.size.unwrap_or(0);
        } else {
            kept += 1;
        }
        if args.json {
            let v = json!({ "action": verb, "name": l.name, "size": l.size, "idle_seconds": l.age.map(|a| a.as_secs()), "live_writer": l.live });
            out!("{v}");
        } else {
            let idle =
                l.age.map(|a| humantime::format_duration(std::time::Duration::from_secs(a.as_secs())).to_string());
            let owner = if l.live { "a live writer holds it" } else { "its writer is gone" };
            out!(
                "{verb:<12} {}  ({}, idle {}, {owner})",
                l.name,
                l.size.map_or("size unknown".into(), bytes),
                idle.as_deref().unwrap_or("unknown"),
            );
        }
    }
    if args.json {
        // The last record, also when nothing was found: a script always gets an answer.
        let v = json!({ "action": "summary", "found": leftovers.len(), "removed_count": removed, "kept_count": kept,
                        "freed_bytes": freed, "dry_run": args.dry_run, "location": store.backend().location() });
        out!("{v}");
    } else {
        out!(
            "{} leftover(s) found in {}: {removed} {} ({}), {kept} kept",
            leftovers.len(),
            store.backend().location(),
            if args.dry_run { "would be removed" } else { "removed" },
            bytes(freed)
        );
    }
    Ok(ExitCode::SUCCESS)
}
