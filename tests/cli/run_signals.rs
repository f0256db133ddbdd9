//! What `promote run` tells its user when items fail and when it is stopped: a line per failed
//! item as it fails, and on SIGINT or SIGTERM a true summary and `--report` before exiting 130
//! or 143, with a rerun finishing the rest. Real processes, real signals, the test HTTP server;
//! every wait is on something the run does (a ledger checkpoint, a line on stderr, an exit).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use promote_tests::data;
use promote_tests::http_server::HttpServer;
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};

use crate::run::{ledger_count, read_json, wait_for};
use crate::support::*;

/// How long any one wait may take before the test gives up.
const LIMIT: Duration = Duration::from_secs(60);

fn manifest(s: &Scratch, items: &[(String, String)]) -> PathBuf {
    let text: String = items.iter().map(|(url, key)| json!({ "source": url, "key": key }).to_string() + "\n").collect();
    s.file("manifest.jsonl", text.as_bytes())
}

/// Waits (up to [`LIMIT`]) for `child` to exit.
fn exited(child: &mut Child) -> ExitStatus {
    let mut status = None;
    wait_for("promote to exit", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.expect("exited")
}

/// Jobs of the run directory `out` whose key starts with `prefix` and that have a checkpoint in
/// the ledger (a partial download the next run can resume).
fn checkpointed(out: &Path, prefix: &str) -> u64 {
    ledger_count(out, "SELECT COUNT(*) FROM jobs WHERE key LIKE ?1 AND cp_offset > 0", &[&format!("{prefix}%")])
}

const FAST: usize = 24;
const SLOW: usize = 12;
/// Items in flight at once: the first `CONCURRENCY` slow items are cut short, the rest of them
/// never start.
const CONCURRENCY: usize = 3;
const SLOW_SIZE: usize = 2 << 20;

/// `FAST` small items served at full speed, then `SLOW` 2 MiB items served at 64 KiB/s; returns
/// (source path, key, bytes) for each, in manifest order.
fn fast_then_slow(server: &HttpServer, seed: u64) -> Vec<(String, String, Vec<u8>)> {
    let mut items = Vec::new();
    for i in 0..FAST {
        let bytes = data::bytes(seed * 1000 + i as u64, 1000 + i * 97);
        items.push((format!("/fast/{i:02}"), format!("fast/{i:02}"), bytes));
    }
    for i in 0..SLOW {
        let bytes = data::bytes(seed * 1000 + 500 + i as u64, SLOW_SIZE);
        let path = format!("/slow/{i:02}");
        server.throttle(&path, 64 << 10);
        items.push((path, format!("slow/{i:02}"), bytes));
    }
    for (path, _, bytes) in &items {
        server.add(path, bytes.clone());
    }
    items
}

fn run_cmd(s: &Scratch, report: &str) -> std::process::Command {
    let concurrency = CONCURRENCY.to_string();
    let mut cmd = s.cmd(&[
        "run",
        "manifest.jsonl",
        "--out",
        "run",
        "--report",
        report,
        "--concurrency",
        &concurrency,
        "--per-host",
        "8",
    ]);
    cmd.env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB");
    cmd
}

/// Starts a run of fast then slow items, waits until every fast item is done and the first slow
/// ones are in flight with a checkpoint, sends `signal`, and checks what the run said and did;
/// then reruns it and checks that the rerun finishes the rest, resuming the cut-short items.
fn interrupt_a_run(signal: Signal, name: &str, want: i32) {
    let s = Scratch::new();
    let server = HttpServer::start().expect("start the test HTTP server");
    let items = fast_then_slow(&server, 40 + u64::from(want == 143));
    let lines: Vec<(String, String)> = items.iter().map(|(p, k, _)| (server.url(p), k.clone())).collect();
    manifest(&s, &lines);

    let mut child = run_cmd(&s, "report.json").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    // Items start in manifest order and a slot is freed only after its item's result is
    // recorded: once CONCURRENCY slow items are fetching, every fast item is done.
    let out = s.path().join("run");
    wait_for("the first slow items to be in flight with a checkpoint", || {
        checkpointed(&out, "slow/") == CONCURRENCY as u64
    });
    kill_process(Pid::from_child(&child), signal).unwrap();
    let status = exited(&mut child);
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(want), "{signal:?}: {status:?}; stderr: {err}");

    // The summary says what happened, and it is what the store holds.
    let summary = err.lines().rev().find(|l| l.starts_with("run: ")).unwrap_or_else(|| panic!("no summary: {err}"));
    let not_started = SLOW - CONCURRENCY;
    assert!(
        summary.starts_with(&format!(
            "run: interrupted by {name}: {} items: {FAST} promoted, 0 already present, 0 failed, {SLOW} not done \
             ({CONCURRENCY} in flight, {not_started} not started);",
            FAST + SLOW
        )),
        "{summary}"
    );
    assert!(!err.contains("nothing published"), "an interrupted run published {FAST} items: {err}");
    for (_, key, bytes) in &items {
        let there = std::fs::read(s.root().join(key)).ok();
        if key.starts_with("fast/") {
            assert!(there.as_ref() == Some(bytes), "{key} is not promoted with its bytes");
        } else {
            assert!(there.is_none(), "{key} is in the store, but the summary says it was not done");
        }
    }
    // The report lists every item with its true outcome.
    let report = read_json(&s.path().join("report.json"));
    assert_eq!(report["interrupted"], json!(name), "{report}");
    assert_eq!(
        (&report["promoted"], &report["failed"], &report["not_done"]),
        (&json!(FAST), &json!(0), &json!(SLOW)),
        "{report}"
    );
    assert_eq!(report["failures"], json!({}), "{report}");
    let reported = report["items"].as_array().expect("items");
    assert_eq!(reported.len(), items.len(), "{report}");
    for (i, ((_, key, _), item)) in items.iter().zip(reported).enumerate() {
        assert_eq!((&item["line"], &item["key"]), (&json!(i + 1), &json!(key)), "{item}");
        let (outcome, reason) = match i {
            i if i < FAST => ("promoted", Value::Null),
            i if i < FAST + CONCURRENCY => ("not-done", json!("interrupted")),
            _ => ("not-done", json!("not-started")),
        };
        assert_eq!((&item["outcome"], &item["reason"]), (&json!(outcome), &reason), "{item}");
    }
    // The cut-short items keep their partial downloads.
    let partials = std::fs::read_dir(out.join("partials")).unwrap().count();
    assert!(partials >= CONCURRENCY, "{partials} partial downloads kept");

    // A rerun finishes the rest, resuming what was cut short.
    for (path, _, _) in &items {
        server.throttle(path, 0);
    }
    let rerun = run_cmd(&s, "rerun.json").output().unwrap();
    assert_code(&rerun, 0);
    for (_, key, bytes) in &items {
        let there = std::fs::read(s.root().join(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(&there == bytes, "wrong bytes at {key}");
    }
    let report = read_json(&s.path().join("rerun.json"));
    assert_eq!(
        (&report["already_present"], &report["promoted"], &report["resumed"]),
        (&json!(FAST), &json!(SLOW), &json!(CONCURRENCY)),
        "{report}"
    );
    assert!(report.get("interrupted").is_none(), "{report}");
    for item in &report["items"].as_array().expect("items")[FAST..FAST + CONCURRENCY] {
        assert_eq!((&item["outcome"], &item["decision"]), (&json!("promoted"), &json!("resume")), "{item}");
        assert!(item["fetched_bytes"].as_u64().unwrap() < SLOW_SIZE as u64, "fetched again in full: {item}");
    }
}

#[test]
fn sigint_mid_run_summarizes_reports_and_exits_130_and_a_rerun_resumes_the_rest() {
    interrupt_a_run(Signal::INT, "SIGINT", 130);
}

#[test]
fn sigterm_mid_run_summarizes_reports_and_exits_143_and_a_rerun_resumes_the_rest() {
    interrupt_a_run(Signal::TERM, "SIGTERM", 143);
}

#[test]
fn a_failed_item_is_said_on_stderr_as_it_fails_while_the_run_goes_on() {
    let s = Scratch::new();
    let server = HttpServer::start().expect("start the test HTTP server");
    let mut lines = vec![(server.url("/missing.bin"), "papers/missing.bin".to_owned())];
    let mut slow = Vec::new();
    for i in 0..3 {
        let path = format!("/slow/{i}");
        server.add(&path, data::bytes(70 + i, 256 << 10));
        server.throttle(&path, 16 << 10);
        lines.push((server.url(&path), format!("slow/{i}")));
        slow.push(path);
    }
    manifest(&s, &lines);
    let mut child = s
        .cmd(&["run", "manifest.jsonl", "--out", "run", "--concurrency", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let want = "promote: failed papers/missing.bin: http-404: the server answered 404 Not Found";
    let mut seen = Vec::new();
    let started = Instant::now();
    while !seen.iter().any(|l: &String| l == want) {
        let left = LIMIT.saturating_sub(started.elapsed());
        let line = rx.recv_timeout(left).unwrap_or_else(|e| panic!("no `{want}` ({e}); stderr so far: {seen:?}"));
        seen.push(line);
    }
    // Said while the other items are still downloading: the run goes on.
    assert!(child.try_wait().unwrap().is_none(), "the run had ended: {seen:?}");
    assert!(!seen.iter().any(|l| l.starts_with("run: ")), "the summary came first: {seen:?}");
    for path in &slow {
        server.throttle(path, 0);
    }
    let status = exited(&mut child);
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    assert_eq!(status.code(), Some(6), "{seen:?}");
    let summary = seen.iter().find(|l| l.starts_with("run: ")).unwrap_or_else(|| panic!("no summary: {seen:?}"));
    assert!(summary.starts_with("run: 4 items: 3 promoted, 0 already present, 1 failed (http-404: 1);"), "{summary}");
    assert_eq!(seen.iter().filter(|l| l.contains("promote: failed")).count(), 1, "{seen:?}");

    // An error is no chatter: `-q` keeps it (and drops the summary), as `put -q` does.
    let out = s.run(&["run", "manifest.jsonl", "--out", "run2", "-q"]);
    assert_code(&out, 6);
    let err = stderr(&out);
    assert!(err.lines().any(|l| l == want), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("run: ")), "{err}");
}
