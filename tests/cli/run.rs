//! `promote run` end to end: a real `promote` binary fetching from the test HTTP server on
//! 127.0.0.1 (ranges, validators, faults, counters), real SIGKILL, concurrent processes on one
//! run directory, and run directories sharing one S3 bucket.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use promote_core::Digester;
use promote_tests::data;
use promote_tests::http_server::HttpServer;
use serde_json::{Value, json};

use crate::support::*;

pub(crate) const MIB: u64 = 1 << 20;
/// The big item: at least 256 MiB, as the issue asks.
const BIG: u64 = 256 * MIB;

pub(crate) fn server() -> HttpServer {
    HttpServer::start().expect("start the test HTTP server on 127.0.0.1")
}

/// One small object served from memory.
pub(crate) struct Small {
    pub(crate) path: String,
    pub(crate) key: String,
    pub(crate) bytes: Vec<u8>,
}

/// `n` small objects of 1 byte to ~40 KiB (a few empty-ish and odd sizes), served by `server`.
pub(crate) fn smalls(server: &HttpServer, seed: u64, n: usize) -> Vec<Small> {
    (0..n)
        .map(|i| {
            let len = (seed as usize).wrapping_add(i * 7919) % (40 << 10) + 1;
            let bytes = data::bytes(seed * 10_000 + i as u64, len);
            let path = format!("/files/{seed}/{i:04}.bin");
            server.add(&path, bytes.clone());
            Small { path, key: format!("items/{i:04}.bin"), bytes }
        })
        .collect()
}

/// One manifest line; `expect` adds the sha256 and size.
pub(crate) fn line(source: &str, key: &str, expect: Option<(&str, u64)>) -> String {
    let mut item = json!({ "source": source, "key": key });
    if let Some((sha256, size)) = expect {
        item["sha256"] = json!(sha256);
        item["size"] = json!(size);
    }
    item.to_string()
}

/// Manifest lines for `items`, every other one with its sha256 and size.
pub(crate) fn lines(server: &HttpServer, items: &[Small]) -> Vec<String> {
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let sha256 = sha(&it.bytes);
            line(&server.url(&it.path), &it.key, (i % 2 == 0).then_some((&sha256, it.bytes.len() as u64)))
        })
        .collect()
}

pub(crate) fn write_manifest(s: &Scratch, name: &str, lines: &[String]) -> PathBuf {
    let mut text = lines.join("\n");
    text.push('\n');
    s.file(name, text.as_bytes())
}

/// A deterministic file of `len` bytes (distinct 1 MiB blocks, fast to make); its SHA-256.
pub(crate) fn big_file(path: &Path, seed: u64, len: u64) -> String {
    let block = data::bytes(seed, MIB as usize);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create big file"));
    let mut digester = Digester::new();
    let mut chunk = block.clone();
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(MIB) as usize;
        // Every block differs (its first 8 bytes carry its index), so a wrong offset shows.
        chunk[..8].copy_from_slice(&(at / MIB).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        file.write_all(&chunk[..n]).expect("write big file");
        digester.update(&chunk[..n]);
        at += n as u64;
    }
    file.flush().expect("flush big file");
    digester.finish().sha256.to_string()
}

/// SHA-256 of a file, read in chunks.
pub(crate) fn sha_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut digester = Digester::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            return digester.finish().sha256.to_string();
        }
        digester.update(&buf[..n]);
    }
}

pub(crate) fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

/// `promote status OUT --json`, which must succeed.
pub(crate) fn status(cmd: Command) -> Value {
    let mut cmd = cmd;
    let out = cmd.output().expect("run promote status");
    assert_code(&out, 0);
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("status --json: {e}: {}", stdout(&out)))
}

/// Asserts that the ledger holds `n` promoted jobs and nothing in flight, failed or stuck.
#[track_caller]
pub(crate) fn assert_all_promoted(status: &Value, n: u64) {
    let states = status["states"].as_object().expect("states");
    for (state, count) in states {
        let count = count.as_u64().expect("a count");
        if state == "promoted" {
            assert_eq!(count, n, "promoted jobs in {status}");
        } else {
            assert_eq!(count, 0, "jobs left in state {state}: {status}");
        }
    }
    assert_eq!(status["failures"].as_array().map(Vec::len), Some(0), "failures in {status}");
    assert!(status.get("stuck").is_none_or(|s| s.as_array().is_some_and(Vec::is_empty)), "stuck jobs: {status}");
}

/// Report items by key.
pub(crate) fn items_by_key(report: &Value) -> HashMap<String, Value> {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| Some((i["key"].as_str()?.to_owned(), i.clone())))
        .collect()
}

/// Sizes of the files under `dir` (recursively), or nothing when it does not exist.
pub(crate) fn file_sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries {
        let entry = entry.expect("dir entry");
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            out.extend(file_sizes(&entry.path()));
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    out
}

/// Asserts every small item is at its key in the local root with the right bytes.
#[track_caller]
fn assert_smalls_promoted(s: &Scratch, items: &[Small]) {
    for it in items {
        let got = std::fs::read(s.root().join(&it.key)).unwrap_or_else(|e| panic!("{}: {e}", it.key));
        assert!(got == it.bytes, "wrong bytes at {}", it.key);
    }
}

pub(crate) fn summary_line(out: &Output) -> String {
    let err = stderr(out);
    err.lines()
        .rev()
        .find(|l| l.starts_with("run: "))
        .unwrap_or_else(|| panic!("no `run: ` summary in {err}"))
        .to_owned()
}

pub(crate) fn kill(mut child: Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// `SELECT COUNT(*) …` on the ledger of run directory `out`, opened read-only (a run may be
/// writing it); 0 while there is no ledger yet.
pub(crate) fn ledger_count(out: &Path, sql: &str, params: &[&str]) -> u64 {
    let Ok(ledger) = rusqlite::Connection::open_with_flags(
        out.join("ledger.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return 0;
    };
    let _ = ledger.busy_timeout(Duration::from_secs(5));
    ledger.query_row(sql, rusqlite::params_from_iter(params), |row| row.get::<_, u64>(0)).unwrap_or(0)
}

/// Waits (up to 60 s) until `ready` holds, panicking with `what` otherwise.
pub(crate) fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_few_hundred_items_and_a_256_mib_one_are_promoted_and_reported() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 1, 300);
    let big_sha = big_file(&s.path().join("big.src"), 1, BIG);
    server.add_file("/big.bin", s.path().join("big.src")).unwrap();
    let mut manifest = vec![line(&server.url("/big.bin"), "big.bin", Some((&big_sha, BIG)))];
    manifest.extend(lines(&server, &items));
    write_manifest(&s, "manifest.jsonl", &manifest);

    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--report", "report.json"]);
    assert_code(&out, 0);
    assert!(stdout(&out).is_empty(), "run prints nothing on stdout: {}", stdout(&out));
    assert!(summary_line(&out).starts_with("run: 301 items: 301 promoted"), "{}", summary_line(&out));
    assert_smalls_promoted(&s, &items);
    assert_eq!(sha_file(&s.root().join("big.bin")), big_sha);
    // Each source fetched exactly once, the big one in one piece.
    assert_eq!(server.total_gets(), 301);
    assert_eq!(server.bytes_sent("/big.bin"), BIG);

    let report = read_json(&s.path().join("report.json"));
    let small_bytes: u64 = items.iter().map(|i| i.bytes.len() as u64).sum();
    for (field, want) in
        [("promoted", 301), ("already_present", 0), ("failed", 0), ("skipped", 0), ("resumed", 0), ("discarded", 0)]
    {
        assert_eq!(report[field], json!(want), "{field} in the report");
    }
    assert_eq!(report["failures"], json!({}));
    assert_eq!(report["bytes"], json!(BIG + small_bytes));
    assert!(report["elapsed_secs"].as_f64().is_some_and(|s| s > 0.0), "elapsed_secs: {}", report["elapsed_secs"]);
    let entries = report["items"].as_array().expect("items");
    assert_eq!(entries.len(), 301);
    let expected = std::iter::once(("big.bin".to_owned(), server.url("/big.bin"), big_sha.clone(), BIG))
        .chain(items.iter().map(|i| (i.key.clone(), server.url(&i.path), sha(&i.bytes), i.bytes.len() as u64)));
    for (n, (entry, (key, source, sha256, size))) in entries.iter().zip(expected).enumerate() {
        let want = json!({
            "line": n + 1, "key": key, "source": source, "outcome": "promoted", "decision": "fresh",
            "sha256": sha256, "size": size, "fetched_bytes": size, "attempts": 1, "error": null,
        });
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&entry[field], value, "{field} of report item {}: {entry}", n + 1);
        }
    }
    assert_all_promoted(&status(s.cmd(&["status", "run", "--json"])), 301);
    assert!(file_sizes(&s.path().join("run/partials")).is_empty(), "partials left");
    assert!(s.staging_files().is_empty(), "staging left: {:?}", s.staging_files());

    // A rerun finds everything done and touches no source.
    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--report", "again.json"]);
    assert_code(&out, 0);
    assert_eq!(server.total_gets(), 301, "the rerun fetched something");
    let again = read_json(&s.path().join("again.json"));
    assert_eq!((again["already_present"].clone(), again["promoted"].clone()), (json!(301), json!(0)));
    assert!(again["items"].as_array().unwrap().iter().all(|i| i["decision"] == "already-complete"), "{again}");
}

#[test]
fn sigkill_at_random_moments_then_each_key_is_promoted_once_and_the_big_item_resumed() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 2, 200);
    let big_sha = big_file(&s.path().join("big.src"), 2, BIG);
    server.add_file("/big.bin", s.path().join("big.src")).unwrap();
    // Slow enough that the kills land mid-body: about 8 s for the whole object.
    server.throttle("/big.bin", 32 * MIB);
    let mut manifest = vec![line(&server.url("/big.bin"), "big.bin", Some((&big_sha, BIG)))];
    manifest.extend(lines(&server, &items));
    write_manifest(&s, "manifest.jsonl", &manifest);

    let mut seed = u64::from(std::process::id()) ^ Instant::now().elapsed().as_nanos() as u64 ^ 0x5DEE_CE66;
    let (mut mid_body, mut with_partial) = (0, 0);
    for round in 0..6 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis(300 + (seed >> 33) % 1700);
        let before = server.bytes_sent("/big.bin");
        let child = s
            .cmd(&["run", "manifest.jsonl", "--out", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let partial = file_sizes(&s.path().join("run/partials")).iter().map(|(_, n)| *n).max().unwrap_or(0);
        let during = server.bytes_sent("/big.bin");
        kill(child);
        if during > before && during < BIG {
            mid_body += 1;
        }
        if partial > 0 {
            with_partial += 1;
        }
        // Never a partial object: a key is absent or complete.
        for it in &items {
            match std::fs::read(s.root().join(&it.key)) {
                Ok(got) => assert!(got == it.bytes, "round {round}: partial or wrong object at {}", it.key),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("{}: {e}", it.key),
            }
        }
        let big = s.root().join("big.bin");
        if big.exists() {
            assert_eq!(sha_file(&big), big_sha, "round {round}: partial big object");
        }
        eprintln!("round {round}: killed after {delay:?}; big bytes sent {during}, partial {partial}");
    }
    assert!(mid_body >= 2, "only {mid_body} of 6 kills landed while the big item was downloading");
    assert!(with_partial >= 1, "no kill left a partial download in run/partials");

    server.throttle("/big.bin", 0);
    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--report", "report.json"]);
    assert_code(&out, 0);
    assert_smalls_promoted(&s, &items);
    assert_eq!(sha_file(&s.root().join("big.bin")), big_sha);
    let report = read_json(&s.path().join("report.json"));
    assert_eq!(report["failed"], json!(0), "{report}");
    assert_eq!(report["promoted"].as_u64().unwrap() + report["already_present"].as_u64().unwrap(), 201, "{report}");
    assert_all_promoted(&status(s.cmd(&["status", "run", "--json"])), 201);
    assert!(
        file_sizes(&s.path().join("run/partials")).is_empty(),
        "partials left: {:?}",
        file_sizes(&s.path().join("run/partials"))
    );
    // Killed writers leave staging files (never objects); `recover` finds and removes them all.
    assert_code(&s.run(&["recover"]), 0);
    assert!(s.staging_files().is_empty(), "staging left after recover: {:?}", s.staging_files());
    let sent = server.bytes_sent("/big.bin");
    assert!(sent * 10 < BIG * 13, "the big item's bytes were sent {sent} times over (≥ 1.3 × {BIG})");
    assert!(!server.ranges("/big.bin").is_empty(), "the big item was never resumed with a Range");
    eprintln!(
        "big item: {sent} bytes sent for {BIG} ({:.3}×), ranges {:?}",
        sent as f64 / BIG as f64,
        server.ranges("/big.bin")
    );

    let gets = server.total_gets();
    let out = s.run(&["run", "manifest.jsonl", "--out", "run"]);
    assert_code(&out, 0);
    assert_eq!(server.total_gets(), gets, "a rerun after completion made a GET");
}

/// Three `promote run` processes, each with `cmd(i)`; their outputs.
fn three(cmd: impl Fn(usize) -> Command) -> Vec<Output> {
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = cmd(i);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn promote run")
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect()
}

/// Asserts that across `reports` every key of `items` was promoted exactly once, nothing failed.
#[track_caller]
fn assert_promoted_once(reports: &[Value], items: &[Small]) {
    let mut promoted: BTreeMap<String, usize> = BTreeMap::new();
    for report in reports {
        assert_eq!(report["failed"], json!(0), "a process had failures: {report}");
        for item in report["items"].as_array().expect("items") {
            if item["outcome"] == "promoted" {
                *promoted.entry(item["key"].as_str().expect("key").to_owned()).or_default() += 1;
            }
        }
    }
    for it in items {
        assert_eq!(promoted.get(&it.key), Some(&1), "{} promoted {:?} times", it.key, promoted.get(&it.key));
    }
    assert_eq!(promoted.len(), items.len());
}

#[test]
fn three_processes_on_one_run_dir_promote_each_key_once_and_fetch_each_source_about_once() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 3, 300);
    // A little latency per item, so the three processes really overlap.
    for it in &items {
        server.throttle(&it.path, 200 << 10);
    }
    write_manifest(&s, "manifest.jsonl", &lines(&server, &items));
    let outs = three(|i| s.cmd(&["run", "manifest.jsonl", "--out", "run", "--report", &format!("r{i}.json")]));
    for out in &outs {
        assert_code(out, 0);
    }
    let reports: Vec<Value> = (0..3).map(|i| read_json(&s.path().join(format!("r{i}.json")))).collect();
    assert_promoted_once(&reports, &items);
    let working = reports.iter().filter(|r| r["promoted"].as_u64().unwrap_or(0) > 0).count();
    assert!(working >= 2, "only {working} of 3 processes promoted anything: the work was not split");
    assert_smalls_promoted(&s, &items);
    let gets = server.total_gets();
    assert!(gets * 10 <= items.len() as u64 * 11, "{gets} GETs for {} items", items.len());
    assert_all_promoted(&status(s.cmd(&["status", "run", "--json"])), items.len() as u64);
}

#[test]
fn three_run_dirs_sharing_one_bucket_promote_each_key_once() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 4, 150);
    for it in &items {
        server.throttle(&it.path, 200 << 10);
    }
    write_manifest(&s, "manifest.jsonl", &lines(&server, &items));
    let prefix = s3_prefix();
    let s3 = |args: &[&str]| s3_cmd(&s, &prefix, args);
    let outs =
        three(|i| s3(&["run", "manifest.jsonl", "--out", &format!("run{i}"), "--report", &format!("r{i}.json")]));
    for out in &outs {
        assert_code(out, 0);
    }
    let reports: Vec<Value> = (0..3).map(|i| read_json(&s.path().join(format!("r{i}.json")))).collect();
    assert_promoted_once(&reports, &items);
    let gets = server.total_gets();
    assert!(gets * 10 <= items.len() as u64 * 11, "{gets} GETs for {} items", items.len());
    for it in &items {
        let out = s3(&["get", &it.key, "-"]).output().expect("run promote get");
        assert_code(&out, 0);
        assert!(out.stdout == it.bytes, "wrong bytes at {}", it.key);
    }
    // A rerun from any of the run directories fetches nothing.
    let out = s3(&["run", "manifest.jsonl", "--out", "run1"]).output().unwrap();
    assert_code(&out, 0);
    assert_eq!(server.total_gets(), gets, "a rerun after completion made a GET");
}

/// A run directory holding a partial download of `/obj` (8 MiB, resumable): starts `promote
/// run` throttled, waits for a checkpointed partial, kills it. Returns the object's bytes.
fn interrupted(s: &Scratch, server: &HttpServer, seed: u64) -> Vec<u8> {
    let bytes = data::bytes(seed, 8 * MIB as usize);
    server.add("/obj", bytes.clone());
    write_manifest(s, "manifest.jsonl", &[line(&server.url("/obj"), "obj", None)]);
    kill_mid_download(s, server);
    bytes
}

/// Runs `manifest.jsonl` into `run` (resumable from 1 MiB) with `/obj` served at 2 MiB/s, waits
/// for a partial download of 3 MiB (past the first checkpoint, at most 1 s or 8 MiB apart, well
/// before the end), SIGKILLs the run, and lifts the throttle.
pub(crate) fn kill_mid_download(s: &Scratch, server: &HttpServer) {
    server.throttle("/obj", 2 * MIB);
    let mut child = s
        .cmd(&["run", "manifest.jsonl", "--out", "run"])
        .env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a partial download of 3 MiB", || {
        assert!(child.try_wait().unwrap().is_none(), "promote run ended before the test could interrupt it");
        file_sizes(&s.path().join("run/partials")).iter().any(|(_, n)| *n >= 3 * MIB)
    });
    kill(child);
    assert!(!s.root().join("obj").exists(), "promoted before the kill: the test needs it unfinished");
    server.throttle("/obj", 0);
}

fn rerun(s: &Scratch) -> (Output, Value) {
    let out = s
        .cmd(&["run", "manifest.jsonl", "--out", "run", "--report", "report.json"])
        .env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB")
        .output()
        .unwrap();
    let report = read_json(&s.path().join("report.json"));
    (out, report)
}

#[test]
fn an_interrupted_download_resumes_with_range_and_if_range() {
    let s = Scratch::new();
    let server = server();
    let bytes = interrupted(&s, &server, 11);
    let etag = server.etag("/obj").unwrap();
    let before = server.requests("/obj").len();
    let (out, report) = rerun(&s);
    assert_code(&out, 0);
    assert_eq!(std::fs::read(s.root().join("obj")).unwrap(), bytes);
    let item = &report["items"][0];
    assert_eq!((&item["outcome"], &item["decision"]), (&json!("promoted"), &json!("resume")), "{item}");
    assert_eq!(report["resumed"], json!(1));
    let gets: Vec<_> = server.requests("/obj").into_iter().skip(before).filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    let resume = &gets[0];
    let from: u64 = resume
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("resume without `Range: bytes=N-`: {resume:?}"));
    assert!(from > 0, "resumed from 0");
    // The server's strong ETag, exactly (preferred to any Last-Modified).
    assert_eq!(resume.if_range.as_deref(), Some(etag.as_str()), "If-Range of {resume:?}");
    assert_eq!(resume.status, 206);
    assert_eq!(item["fetched_bytes"], json!(bytes.len() as u64 - from), "{item}");
    let sent = server.bytes_sent("/obj");
    assert!(sent * 10 < bytes.len() as u64 * 13, "{sent} bytes sent for {}", bytes.len());
}

#[test]
fn a_changed_object_is_discarded_and_fetched_fresh() {
    let s = Scratch::new();
    let server = server();
    let old = interrupted(&s, &server, 12);
    let new = data::bytes(13, 6 * MIB as usize);
    assert_ne!(old[..6 * MIB as usize], new[..]);
    server.change("/obj", new.clone());
    let (out, report) = rerun(&s);
    assert_code(&out, 0);
    assert!(std::fs::read(s.root().join("obj")).unwrap() == new, "the object is not the changed one");
    let item = &report["items"][0];
    assert_eq!((&item["outcome"], &item["decision"]), (&json!("promoted"), &json!("discard")), "{item}");
    assert_eq!(item["fetched_bytes"], json!(new.len()), "{item}");
    assert_eq!(report["discarded"], json!(1));
}

#[test]
fn a_server_that_ignores_range_is_handled_by_discarding() {
    let s = Scratch::new();
    let server = server();
    let bytes = interrupted(&s, &server, 14);
    server.ignore_ranges("/obj", true);
    let before = server.gets("/obj");
    let (out, report) = rerun(&s);
    assert_code(&out, 0);
    assert!(std::fs::read(s.root().join("obj")).unwrap() == bytes, "wrong bytes");
    let item = &report["items"][0];
    assert_eq!((&item["outcome"], &item["decision"]), (&json!("promoted"), &json!("discard")), "{item}");
    // The full 200 body is taken from its start, not fetched a second time.
    assert_eq!(server.gets("/obj") - before, 1, "{:?}", server.requests("/obj"));
    assert_eq!(report["discarded"], json!(1));
}

#[test]
fn retries_429_and_503_with_retry_after_and_a_dropped_connection_then_succeed() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 5, 4);
    let (busy, unavailable, dropped) = (&items[0].path, &items[1].path, &items[2].path);
    server.fail_with(busy, 429, Some(1), 2);
    server.fail_with(unavailable, 503, Some(1), 1);
    let drop_at = items[2].bytes.len() as u64 / 2;
    server.drop_after(dropped, drop_at, 2);
    write_manifest(&s, "manifest.jsonl", &lines(&server, &items));
    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--report", "report.json"]);
    assert_code(&out, 0);
    assert_smalls_promoted(&s, &items);
    let report = items_by_key(&read_json(&s.path().join("report.json")));
    for (it, gets) in items.iter().zip([3, 2, 3, 1]) {
        assert_eq!(server.gets(&it.path), gets, "GETs of {}: {:?}", it.path, server.requests(&it.path));
        assert_eq!(report[&it.key]["attempts"], json!(gets), "{}", report[&it.key]);
        assert_eq!(report[&it.key]["outcome"], "promoted");
    }
    // Retry-After: 1 was honoured.
    for path in [busy, unavailable] {
        let times: Vec<Instant> = server.requests(path).iter().map(|r| r.at).collect();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(950), "{path}: retried after {gap:?} despite Retry-After: 1");
        }
    }
}

#[test]
fn a_404_fails_that_item_only_with_reason_http_404() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 6, 5);
    let mut manifest = lines(&server, &items);
    manifest.insert(2, line(&server.url("/missing.bin"), "missing.bin", None));
    write_manifest(&s, "manifest.jsonl", &manifest);
    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--report", "report.json"]);
    assert_code(&out, 6);
    assert_smalls_promoted(&s, &items);
    assert!(!s.root().join("missing.bin").exists());
    assert_eq!(server.gets("/missing.bin"), 1, "a 404 is not retried");
    let report = read_json(&s.path().join("report.json"));
    assert_eq!((&report["promoted"], &report["failed"]), (&json!(5), &json!(1)));
    assert_eq!(report["failures"], json!({ "http-404": 1 }));
    let item = &items_by_key(&report)["missing.bin"];
    assert_eq!((&item["line"], &item["outcome"]), (&json!(3), &json!("failed")), "{item}");
    assert!(summary_line(&out).contains("http-404: 1"), "{}", summary_line(&out));
    let status = status(s.cmd(&["status", "run", "--json"]));
    let failures = status["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{status}");
    assert_eq!((&failures[0]["key"], &failures[0]["reason"]), (&json!("missing.bin"), &json!("http-404")));
}

#[test]
fn bad_manifest_lines_are_reported_by_line_number_and_the_rest_proceed() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 7, 3);
    let good = lines(&server, &items);
    let url = server.url(&items[0].path);
    let manifest = [
        good[0].clone(),                                                    // 1
        String::new(),                                                      // 2: blank, ignored
        "not json at all".to_owned(),                                       // 3
        good[1].clone(),                                                    // 4
        json!({ "source": url, "key": "k5", "colour": "red" }).to_string(), // 5: unknown field
        json!({ "source": url, "key": "../up" }).to_string(),               // 6: bad key
        json!({ "source": url, "key": "k7", "sha256": "xyz" }).to_string(), // 7: bad sha256
        json!({ "key": "k8" }).to_string(),                                 // 8: no source
        good[2].clone(),                                                    // 9
    ];
    write_manifest(&s, "manifest.jsonl", &manifest);
    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--report", "report.json"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    for n in [3, 5, 6, 7, 8] {
        assert!(err.contains(&format!("manifest.jsonl:{n}: ")), "line {n} not reported: {err}");
    }
    for n in [1, 2, 4, 9] {
        assert!(!err.contains(&format!("manifest.jsonl:{n}: ")), "line {n} reported: {err}");
    }
    assert_smalls_promoted(&s, &items);
    for key in ["k5", "k7", "k8", "up"] {
        assert!(!s.root().join(key).exists(), "{key} promoted from a bad line");
    }
    let report = read_json(&s.path().join("report.json"));
    assert_eq!((&report["promoted"], &report["failed"]), (&json!(3), &json!(5)), "{report}");
    assert_eq!(report["failures"], json!({ "bad-manifest-line": 5 }));
    let lines: Vec<_> =
        report["items"].as_array().unwrap().iter().map(|i| (i["line"].clone(), i["outcome"].clone())).collect();
    let want: Vec<_> = [
        (1, "promoted"),
        (3, "failed"),
        (4, "promoted"),
        (5, "failed"),
        (6, "failed"),
        (7, "failed"),
        (8, "failed"),
        (9, "promoted"),
    ]
    .into_iter()
    .map(|(l, o)| (json!(l), json!(o)))
    .collect();
    assert_eq!(lines, want);
}

#[test]
fn max_stops_after_n_items() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 8, 10);
    write_manifest(&s, "manifest.jsonl", &lines(&server, &items));
    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--max", "4", "--report", "report.json"]);
    assert_code(&out, 0);
    assert_smalls_promoted(&s, &items[..4]);
    for it in &items[4..] {
        assert!(!s.root().join(&it.key).exists(), "{} promoted past --max 4", it.key);
        assert_eq!(server.gets(&it.path), 0, "{} fetched past --max 4", it.path);
    }
    let report = read_json(&s.path().join("report.json"));
    assert_eq!((&report["promoted"], &report["failed"]), (&json!(4), &json!(0)), "{report}");
}

#[test]
fn dry_run_fetches_and_writes_nothing() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 9, 10);
    write_manifest(&s, "manifest.jsonl", &lines(&server, &items));
    // One key already holds its item (the manifest gives its digest), one holds other bytes.
    let (present, taken) = (&items[0], &items[2]);
    s.file("present.bin", &present.bytes);
    s.file("other.bin", b"other bytes");
    assert_code(&s.run(&["put", "present.bin", &present.key]), 0);
    assert_code(&s.run(&["put", "other.bin", &taken.key]), 0);
    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--dry-run", "--report", "report.json"]);
    assert_code(&out, 0);
    assert_eq!(server.total_gets(), 0, "a dry run fetched");
    assert!(!s.path().join("run").exists(), "a dry run created its run directory");
    // One line per item: what a run would do, the key, the source.
    let listing = stdout(&out);
    let line_of = |key: &str| listing.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{key}: {listing}"));
    assert!(line_of(&present.key).starts_with("already-complete "), "{listing}");
    assert!(line_of(&taken.key).starts_with("conflict "), "{listing}");
    assert!(
        line_of(&items[1].key).starts_with("fresh ") && line_of(&items[1].key).contains(&items[1].path),
        "{listing}"
    );
    assert_eq!(listing.lines().count(), 10, "{listing}");
    assert_eq!(std::fs::read(s.root().join(&taken.key)).unwrap(), b"other bytes", "a dry run changed an object");
    let report = read_json(&s.path().join("report.json"));
    assert_eq!((&report["promoted"], &report["skipped"]), (&json!(0), &json!(10)), "{report}");
    assert!(report["items"].as_array().unwrap().iter().all(|i| i["outcome"] == "skipped"), "{report}");
    // The report carries what the manifest says of each item.
    assert_eq!(report["items"][0]["manifest_size"], json!(present.bytes.len()), "{report}");
    assert_eq!(report["items"][0]["manifest_sha256"], json!(sha(&present.bytes)), "{report}");
    assert_eq!(report["items"][1]["manifest_size"], Value::Null, "{report}");
}
