//! `promote status [DIR]`: what a run directory's ledger says.

use std::process::ExitCode;

use serde_json::json;

use crate::args::StatusArgs;
use crate::output::out;
use crate::settings::Loaded;
use promote_run::ledger::{Ledger, State, now_ms};
use promote_run::shards::owner_alive;

pub(crate) fn run(loaded: &Loaded, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| loaded.settings.run.out.clone());
    // Said in full: the default comes from the config or the working directory, not the user.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let ledger = Ledger::open_existing(&dir).map_err(|e| super::usage(format!("{:#}", anyhow::Error::new(e))))?;
    let now = now_ms();
    let version = ledger.schema_version()?;
    let counts = ledger.counts()?;
    let (live, expired) = ledger.claims(now, &owner_alive)?;
    let stuck = ledger.stuck(now, &owner_alive)?;
    let failures = ledger.failures()?;
    if args.json {
        let failures: Vec<_> = failures
            .iter()
            .map(|f| json!({ "key": f.key, "reason": f.reason, "attempts": f.attempts, "error": f.error }))
            .collect();
        let stuck: Vec<_> = stuck.iter().map(|(key, state)| json!({ "key": key, "state": state })).collect();
        out!(
            "{}",
            json!({
                "run_dir": dir.to_string_lossy(),
                "schema_version": version,
                "states": counts,
                "claims": { "live": live, "expired": expired },
                "stuck": stuck,
                "failures": failures,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    out!("run directory {} (ledger schema version {version})", crate::output::path(&dir));
    let states: Vec<String> =
        State::ALL.iter().filter_map(|s| counts.get(s.as_str()).map(|n| format!("{} {n}", s.as_str()))).collect();
    let total: u64 = counts.values().sum();
    out!("jobs: {total} ({})", if states.is_empty() { "none".into() } else { states.join(", ") });
    out!("claims: {live} live, {expired} expired");
    if !stuck.is_empty() {
        out!("stuck: {} job(s) in flight with no live claim (the next `promote run` takes them back)", stuck.len());
        for (key, state) in stuck.iter().take(LISTED) {
            out!("  {state:<9} {key}");
        }
        more(stuck.len())?;
    }
    if !failures.is_empty() {
        let mut reasons: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for f in &failures {
            *reasons.entry(f.reason.as_str()).or_default() += 1;
        }
        let reasons: Vec<String> = reasons.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
        out!("failures: {} ({})", failures.len(), reasons.join(", "));
        for f in failures.iter().take(LISTED) {
            out!(
                "  {:<20} {} ({} attempts){}",
                f.reason,
                f.key,
                f.attempts,
                f.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
        more(failures.len())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Jobs listed by name in each section at most (`--json` lists them all).
const LISTED: usize = 50;

/// Says how many of `n` jobs were not listed.
fn more(n: usize) -> anyhow::Result<()> {
    if n > LISTED {
        out!("  … and {} more (`promote status --json` lists them all)", n - LISTED);
    }
    Ok(())
}
