//! `promote doctor`: is this configuration safe to use? Checks it live.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use promote_core::{Error, Expected, Key, Mode, Outcome, Sha256, Store};
use serde_json::json;

use crate::args::DoctorArgs;
use crate::exit;
use crate::output::{self, out};
use crate::settings::{self, Loaded};
use promote_run::ledger::{self, Ledger, now_ms};
use promote_run::shards::owner_alive;

struct Report {
    json: bool,
    failures: usize,
    /// Set when stdout was closed; the command then stops quietly.
    closed: Option<anyhow::Error>,
}

impl Report {
    fn check(&mut self, name: &str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        let detail = result.unwrap_or_else(|e| e);
        if !ok {
            self.failures += 1;
        }
        let written = if self.json {
            output::write_line(format_args!("{}", json!({ "check": name, "ok": ok, "detail": detail })))
        } else {
            output::write_line(format_args!("{} {name}: {detail}", if ok { "ok  " } else { "FAIL" }))
        };
        if let Err(err) = written {
            self.closed.get_or_insert(err);
        }
        ok
    }

    /// A problem that does not make the store unsafe: printed, not counted as a failure.
    fn warn(&mut self, name: &str, detail: &str) {
        let written = if self.json {
            output::write_line(format_args!("{}", json!({ "check": name, "ok": true, "warning": detail })))
        } else {
            output::write_line(format_args!("warn {name}: {detail}"))
        };
        if let Err(err) = written {
            self.closed.get_or_insert(err);
        }
    }
}

pub(crate) async fn run(loaded: &Loaded, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report { json: args.json, failures: 0, closed: None };
    let kind = loaded.backend.to_value().get("kind").and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    let path = if loaded.settings.streaming { "streaming" } else { "spool" };
    report.check("config", Ok(format!("backend kind {kind}, {path} path")));
    ledger(loaded, &mut report);
    let store = match super::open_existing(loaded).await {
        Ok(store) => store,
        Err(err) => return Ok(unusable(loaded, &mut report, err)),
    };
    let backend = store.backend();
    // Live checks first (S3: the create-only probe), so the capabilities below are what they found.
    if let Err(err) = backend.ready_for(&Mode::Create).await {
        if matches!(err, Error::StorageMissing { .. }) {
            return Ok(unusable(loaded, &mut report, err.into()));
        }
        report.check("live checks", Err(err.to_string()));
    }
    let caps = backend.capabilities();
    report.check("backend", Ok(backend.location()));
    let mut modes = vec![];
    match &caps.create_refused {
        None => modes.push("create-only".to_owned()),
        Some(why) => modes.push(format!("NO create-only ({why})")),
    }
    if caps.replace {
        modes.push("replace".into());
    }
    if caps.replace_if_version {
        modes.push("compare-and-swap".into());
    }
    let extras = format!(
        "{}; digest {}; {}",
        modes.join(", "),
        if caps.stored_digest { "stored with each object" } else { "not stored (recomputed by reading)" },
        if caps.durable { "durable" } else { "NOT durable (no fsync)" }
    );
    report.check("capabilities", if caps.create_refused.is_none() { Ok(extras) } else { Err(extras) });
    let listed = store.list("promote-doctor/").await;
    if let Err(err @ Error::StorageMissing { .. }) = listed {
        return Ok(unusable(loaded, &mut report, err.into()));
    }
    report.check(
        "reachable",
        listed.map(|l| format!("listing works ({} probe objects)", l.len())).map_err(|e| e.to_string()),
    );
    report.check(
        "staging",
        store
            .sweep_staging(Duration::from_secs(3600), true)
            .await
            .map(|l| format!("{} leftover(s); `promote recover` removes crash leftovers", l.len()))
            .map_err(|e| e.to_string()),
    );
    for check in backend.self_check().await {
        if let (true, Err(detail)) = (check.warning_only, &check.result) {
            report.warn(&check.name, detail);
        } else {
            report.check(&check.name, check.result);
        }
    }
    if caps.create_refused.is_none() {
        probe(&store, &mut report).await;
    }
    if let Some(err) = report.closed {
        return Err(err);
    }
    if report.failures == 0 {
        if !report.json {
            out!("all checks passed");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        if !report.json {
            out!("{} check(s) failed", report.failures);
        }
        Ok(ExitCode::from(exit::CHECK_FAILED))
    }
}

/// A backend that cannot be opened, or whose storage does not exist: one failed check naming
/// the setting and where it came from, and nothing further to check.
fn unusable(loaded: &Loaded, report: &mut Report, err: anyhow::Error) -> ExitCode {
    report.check("backend", Err(exit::one_line(&settings::located(err, loaded))));
    ExitCode::from(exit::CHECK_FAILED)
}

/// The run ledger in the configured run directory, when there is one: schema version,
/// SQLite's integrity check, jobs stuck in flight with no live lease.
fn ledger(loaded: &Loaded, report: &mut Report) {
    let dir = &loaded.settings.run.out;
    if !dir.join(ledger::FILE).is_file() {
        return;
    }
    let ledger = match Ledger::open_existing(dir) {
        Ok(ledger) => ledger,
        Err(err) => {
            report.check("ledger", Err(chain(err)));
            return;
        }
    };
    let version = match ledger.schema_version() {
        Ok(v) if v <= ledger::SCHEMA_VERSION => Ok(format!("{} schema version {v}", dir.display())),
        Ok(v) => Err(format!(
            "{} has schema version {v}, newer than this promote understands ({})",
            dir.display(),
            ledger::SCHEMA_VERSION
        )),
        Err(err) => Err(chain(err)),
    };
    report.check("ledger", version);
    report.check(
        "ledger integrity",
        match ledger.integrity_check() {
            Ok(text) if text == "ok" => Ok("integrity_check ok".into()),
            Ok(text) => Err(format!("integrity_check: {text}")),
            Err(err) => Err(chain(err)),
        },
    );
    match ledger.stuck(now_ms(), &owner_alive) {
        Ok(stuck) if stuck.is_empty() => {
            report.check("ledger jobs", Ok("no job stuck in flight".into()));
        }
        Ok(stuck) => {
            let detail = format!(
                "{} job(s) in flight with no live lease (e.g. {}); the next `promote run` takes them back",
                stuck.len(),
                stuck[0].0
            );
            report.warn("ledger jobs", &detail);
        }
        Err(err) => {
            report.check("ledger jobs", Err(chain(err)));
        }
    }
}

/// A ledger error with its causes, on one line.
fn chain(err: ledger::LedgerError) -> String {
    format!("{:#}", anyhow::Error::new(err))
}

/// Live: create-only publish, a second create refused, a rerun already present, read back, clean up.
async fn probe(store: &Store, report: &mut Report) {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    // Plain ASCII segments (a prefix, a pid and a number) always make a valid key.
    let key = Key::new(format!("promote-doctor/probe-{}-{nanos}", std::process::id())).expect("valid probe key");
    let first = format!("promote doctor probe {nanos}\n").into_bytes();
    let second = format!("a different probe {nanos}\n").into_bytes();
    let put = |bytes: Vec<u8>| {
        let (store, key) = (store.clone(), key.clone());
        async move {
            let expected = Expected { size: Some(bytes.len() as u64), sha256: Some(Sha256::of(&bytes)) };
            store.promote_reader(&key, &bytes[..], &expected, Mode::Create).await
        }
    };
    let first_put = put(first.clone()).await;
    if let Err(Error::Unsupported { .. }) = &first_put {
        // Opened read-only and never written to: probing would create its staging area.
        report.warn("probe", "skipped: nothing was ever written to this store (the first `promote put` prepares it)");
        return;
    }
    let created = report.check(
        "probe: create-only publish",
        match first_put {
            Ok(Outcome::Promoted(r)) => Ok(format!("{key} promoted ({})", output::bytes(r.size))),
            Ok(other) => Err(format!("unexpected {}", other.label())),
            Err(e) => Err(e.to_string()),
        },
    );
    if created {
        report.check(
            "probe: second create refused",
            match put(second).await {
                Err(Error::Conflict { .. }) => Ok("the backend refused to replace the object".into()),
                Ok(_) => {
                    Err("the backend REPLACED an object on a create-only write: create-only is not safe here".into())
                }
                Err(e) => Err(e.to_string()),
            },
        );
        report.check(
            "probe: identical rerun",
            match put(first.clone()).await {
                Ok(Outcome::AlreadyPresent(_)) => Ok("already present (reruns are idempotent)".into()),
                Ok(other) => Err(format!("unexpected {}", other.label())),
                Err(e) => Err(e.to_string()),
            },
        );
        report.check("probe: read back verified", read_back(store, &key, &first).await);
        report.check(
            "probe: cleanup",
            store.delete(&key).await.map(|()| format!("{key} removed")).map_err(|e| e.to_string()),
        );
    }
}

async fn read_back(store: &Store, key: &Key, want: &[u8]) -> Result<String, String> {
    let (_, mut stream) = store.read_verified(key).await.map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    if got == want { Ok("bytes and digest match".into()) } else { Err("the bytes read back differ".into()) }
}
