//! `promote run` when workers meet, each case one that broke before jobs had owners: two
//! manifests sharing an item on one run directory, a line repeated in a manifest, a worker
//! paused (SIGSTOP) past its lease; and on S3, three machines with one paused and one killed,
//! then an object deleted and a 404 fixed before a rerun. Real processes and signals; every wait
//! is on something the run does (a partial on disk, a ledger row, a line on stderr, an exit).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

use crate::run::{
    MIB, assert_all_promoted, big_file, file_sizes, items_by_key, kill, ledger_count, line, lines, read_json, server,
    sha_file, smalls, status, wait_for, write_manifest,
};
use crate::support::*;

/// A partial download of at least `bytes` in run directory `out`.
fn partial_of(s: &Scratch, out: &str, bytes: u64) -> bool {
    file_sizes(&s.path().join(out).join("partials")).iter().any(|(_, n)| *n >= bytes)
}

fn signal(child: &Child, signal: Signal) {
    kill_process(Pid::from_child(child), signal).expect("signal promote");
}

/// The outcome the report at `path` gives `key`.
fn outcome(path: &Path, key: &str) -> Value {
    items_by_key(&read_json(path))[key]["outcome"].clone()
}

/// Two runs of different manifests on one `--out` that share a large item: the second waits
/// for the first's job instead of truncating its partial, and finds the object present.
#[test]
fn two_manifests_sharing_an_item_on_one_run_dir_fetch_and_promote_it_once() {
    let s = Scratch::new();
    let server = server();
    let sha = big_file(&s.path().join("big.src"), 7, 64 * MIB);
    server.add_file("/big.bin", s.path().join("big.src")).unwrap();
    server.throttle("/big.bin", 32 * MIB);
    server.add("/a.txt", b"a".to_vec());
    server.add("/b.txt", b"b".to_vec());
    let big = line(&server.url("/big.bin"), "big", None);
    write_manifest(&s, "a.jsonl", &[big.clone(), line(&server.url("/a.txt"), "a", None)]);
    write_manifest(&s, "b.jsonl", &[big, line(&server.url("/b.txt"), "b", None)]);
    let run = |manifest: &str, report: &str| {
        let mut cmd = s.cmd(&["run", manifest, "--out", "run", "--report", report]);
        cmd.env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB");
        cmd
    };
    let a = run("a.jsonl", "ra.json").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for("the first run's partial download", || partial_of(&s, "run", 2 * MIB));
    let b = run("b.jsonl", "rb.json").output().unwrap();
    let a = a.wait_with_output().unwrap();
    assert_code(&a, 0);
    assert_code(&b, 0);
    assert_eq!(sha_file(&s.root().join("big")), sha, "the object is the source's bytes");
    assert_eq!(server.gets("/big.bin"), 1, "the shared item was fetched once");
    let mut outcomes = [outcome(&s.path().join("ra.json"), "big"), outcome(&s.path().join("rb.json"), "big")];
    outcomes.sort_by_key(Value::to_string);
    assert_eq!(outcomes, [Value::from("already-present"), Value::from("promoted")]);
    assert_all_promoted(&status(s.cmd(&["status", "run", "--json"])), 3);
}

/// A repeated line is one job: fetched once, promoted once, recorded promoted, and both lines
/// report it.
#[test]
fn a_line_repeated_in_a_manifest_is_one_job() {
    let s = Scratch::new();
    let server = server();
    let sha = big_file(&s.path().join("big.src"), 8, 8 * MIB);
    server.add_file("/big.bin", s.path().join("big.src")).unwrap();
    server.add("/small.txt", b"small".to_vec());
    let (big, small) = (line(&server.url("/big.bin"), "big", None), line(&server.url("/small.txt"), "small", None));
    write_manifest(&s, "m.jsonl", &[big.clone(), small.clone(), big, small]);
    let out = s
        .cmd(&["run", "m.jsonl", "--out", "run", "--report", "r.json"])
        .env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB")
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(sha_file(&s.root().join("big")), sha);
    assert_eq!((server.gets("/big.bin"), server.gets("/small.txt")), (1, 1), "each source fetched once");
    let report = read_json(&s.path().join("r.json"));
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "every line is reported: {report}");
    for item in items {
        assert_eq!(item["outcome"], "promoted", "{item}");
    }
    assert_eq!((items[0]["sha256"].clone(), items[2]["line"].clone()), (items[2]["sha256"].clone(), Value::from(3)));
    assert_all_promoted(&status(s.cmd(&["status", "run", "--json"])), 2);
}

/// A worker paused past its lease: the worker that takes its shard over waits for the job
/// instead of working on the same partial; the paused one, continued, finds its lease lost,
/// stops and gives the job back; the taker resumes from its checkpoint. One promotion, a
/// truthful ledger.
#[test]
fn a_worker_paused_past_its_lease_gives_its_job_back() {
    let s = Scratch::new();
    let server = server();
    let sha = big_file(&s.path().join("big.src"), 9, 32 * MIB);
    server.add_file("/big.bin", s.path().join("big.src")).unwrap();
    server.throttle("/big.bin", 4 * MIB);
    write_manifest(&s, "m.jsonl", &[line(&server.url("/big.bin"), "big", None)]);
    let run = |report: &str| {
        let mut cmd = s.cmd(&["-v", "run", "m.jsonl", "--out", "run", "--report", report]);
        cmd.env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB").env("PROMOTE_RUN__LEASE", "3s");
        cmd
    };
    let paused = run("paused.json").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("a partial download of 2 MiB", || partial_of(&s, "run", 2 * MIB));
    signal(&paused, Signal::STOP);
    let mut taker = run("taker.json").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = BufReader::new(taker.stderr.take().unwrap()).lines();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The taker's lease on the shard comes once the paused worker's has expired; then it meets
    // the job in flight.
    let waiting = rx
        .iter()
        .find(|l| l.contains("has the job in flight; waiting"))
        .expect("the taker waits for the paused worker's job");
    signal(&paused, Signal::CONT);
    server.throttle("/big.bin", 0);
    let (paused, taker) = (paused.wait_with_output().unwrap(), taker.wait_with_output().unwrap());
    assert_code(&paused, 0);
    assert_code(&taker, 0);
    assert!(!waiting.is_empty());
    assert_eq!(sha_file(&s.root().join("big")), sha, "the object is the source's bytes");
    let taker = &items_by_key(&read_json(&s.path().join("taker.json")))["big"];
    assert_eq!((taker["outcome"].as_str(), taker["decision"].as_str()), (Some("promoted"), Some("resume")), "{taker}");
    assert_eq!(outcome(&s.path().join("paused.json"), "big"), "already-present");
    assert_all_promoted(&status(s.cmd(&["status", "run", "--json"])), 1);
}

/// Promoted jobs in the ledger of run directory `out` (read-only, while the run writes it).
fn promoted_in(out: &Path) -> u64 {
    ledger_count(out, "SELECT COUNT(*) FROM states WHERE state = 'promoted'", &[])
}

/// Three machines (run directories) on one bucket, one paused past its lease and one killed;
/// then an object deleted and a 404 fixed on the server before a rerun. Every key is promoted
/// once with the right bytes, nothing is left looking in flight, the rerun fetches exactly the
/// deleted object and the fixed one, and ends with every job promoted.
#[test]
fn three_machines_one_paused_one_killed_then_a_rerun_finds_what_changed() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 11, 120);
    for it in &items {
        server.throttle(&it.path, 100 << 10);
    }
    let mut manifest = lines(&server, &items);
    manifest.push(line(&server.url("/fixed-later.bin"), "fixed-later.bin", None));
    write_manifest(&s, "m.jsonl", &manifest);
    let prefix = s3_prefix();
    let start = |i: usize| {
        let (out, report) = (format!("run{i}"), format!("r{i}.json"));
        let mut cmd = s3_cmd(&s, &prefix, &["run", "m.jsonl", "--out", &out, "--report", &report]);
        cmd.env("PROMOTE_RUN__LEASE", "3s").stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn promote run")
    };
    let (first, paused, killed) = (start(0), start(1), start(2));
    wait_for("the second machine to promote", || promoted_in(&s.path().join("run1")) >= 2);
    signal(&paused, Signal::STOP);
    wait_for("the third machine to promote", || promoted_in(&s.path().join("run2")) >= 2);
    kill(killed);
    let first: Output = first.wait_with_output().unwrap();
    signal(&paused, Signal::CONT);
    let paused: Output = paused.wait_with_output().unwrap();
    // The 404 fails: exit 6 on both, with the reason, wherever it failed.
    for (out, report) in [(&first, "r0.json"), (&paused, "r1.json")] {
        assert_code(out, 6);
        let item = &items_by_key(&read_json(&s.path().join(report)))["fixed-later.bin"];
        assert_eq!(item["reason"], "http-404", "{item}");
    }
    // Each key promoted by at most one of the reports, and every object right.
    let mut promoted = std::collections::BTreeMap::<String, u32>::new();
    for report in ["r0.json", "r1.json"] {
        for item in read_json(&s.path().join(report))["items"].as_array().unwrap() {
            if item["outcome"] == "promoted" {
                *promoted.entry(item["key"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
    }
    assert!(promoted.values().all(|n| *n == 1), "promoted twice: {promoted:?}");
    for it in &items {
        let out = s3_cmd(&s, &prefix, &["get", &it.key, "-"]).output().unwrap();
        assert_code(&out, 0);
        assert!(out.stdout == it.bytes, "wrong bytes at {}", it.key);
    }
    for out in ["run0", "run1"] {
        let st = status(s.cmd(&["status", out, "--json"]));
        assert_eq!(st["stuck"], Value::Array(vec![]), "{out}: {st}");
        for state in ["fetching", "verified", "claimed"] {
            assert!(st["states"].get(state).is_none(), "{out}: jobs left {state}: {st}");
        }
        let failures = st["failures"].as_array().unwrap();
        assert!(failures.iter().any(|f| f["key"] == "fixed-later.bin" && f["reason"] == "http-404"), "{out}: {st}");
    }
    // Between runs: one object deleted from the bucket, the 404 fixed on the server.
    let deleted = &items[7];
    assert_code(&s3_cmd(&s, &prefix, &["rm", &deleted.key]).output().unwrap(), 0);
    server.add("/fixed-later.bin", b"here now".to_vec());
    for it in &items {
        server.throttle(&it.path, 0);
    }
    let gets = server.total_gets();
    let deleted_gets = server.gets(&deleted.path);
    let mut rerun = s3_cmd(&s, &prefix, &["run", "m.jsonl", "--out", "run0", "--report", "again.json"]);
    let rerun = rerun.env("PROMOTE_RUN__LEASE", "3s").output().unwrap();
    assert_code(&rerun, 0);
    let again = items_by_key(&read_json(&s.path().join("again.json")));
    assert_eq!(again[&deleted.key]["outcome"], "promoted", "the deleted object is fetched again");
    assert_eq!(again["fixed-later.bin"]["outcome"], "promoted", "the fixed 404 is tried again");
    assert_eq!(server.gets(&deleted.path), deleted_gets + 1);
    assert_eq!(server.total_gets(), gets + 2, "only the deleted and the fixed item are fetched");
    let out = s3_cmd(&s, &prefix, &["get", &deleted.key, "-"]).output().unwrap();
    assert!(out.stdout == deleted.bytes, "wrong bytes at {}", deleted.key);
    assert_all_promoted(&status(s.cmd(&["status", "run0", "--json"])), items.len() as u64 + 1);
}

/// The ledger costs little per item: a first run's transitions are group-committed (each
/// transaction shares the pages of the items around it), and a rerun that finds every item
/// present rewrites no row to say what it already says. Counted by the kernel for the process:
/// `wchar` (bytes passed to write calls: the ledger, its WAL, and the objects' 7 bytes each)
/// and `write_bytes` (what reached the block layer).
#[test]
fn the_ledger_writes_little_per_item_and_nothing_on_a_rerun() {
    let s = Scratch::new();
    let mut lines = Vec::new();
    std::fs::create_dir(s.path().join("src")).unwrap();
    let count = 2000;
    for i in 0..count {
        let path = s.file(&format!("src/f{i}"), format!("file {i}\n").as_bytes());
        lines.push(line(path.to_str().unwrap(), &format!("k/{i}"), None));
    }
    write_manifest(&s, "m.jsonl", &lines);
    // Through a shell, whose /proc/self/io counts the reaped child's writes too.
    let written = || {
        let script = "$PROMOTE run -q m.jsonl --out run --durability none || exit 9; \
                      grep -E '^(wchar|write_bytes)' /proc/$$/io";
        let out = s.shell(script).output().unwrap();
        assert_code(&out, 0);
        let value = |name: &str| {
            let line = stdout(&out).lines().find(|l| l.starts_with(name)).map(str::to_owned).expect("a counter");
            line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).expect("a number")
        };
        (value("wchar:"), value("write_bytes:"))
    };
    let (first, _) = written();
    // Before group commit, each item's two transitions wrote ~27 KiB; now about 0.9 KiB.
    assert!(first < count * 1536, "a first run of {count} items made {first} bytes of write calls");
    let (_, again) = written();
    assert!(again < 2 << 20, "a rerun of {count} present items wrote {again} bytes");
}
