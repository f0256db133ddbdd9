//! Promises of `promote run` that had no test of their own (see docs/promises.md): the request
//! limits, configured headers, the exit codes of a conflict and of a failed verification, and
//! doctor's ledger checks. Each runs the real binary against the test HTTP server.

use std::time::Duration;

use promote_tests::data;
use serde_json::json;

use crate::run::{items_by_key, line, read_json, server, smalls, write_manifest};
use crate::support::*;

/// `--per-host` caps the requests one host serves at once, and `--concurrency` the items
/// fetching: the server counts its requests in flight, and each run reaches its cap and never
/// passes it (slow bodies keep every request open long enough to overlap). Under group commit
/// more items are in flight, waiting for a shared flush, but no more fetch at once.
#[test]
fn per_host_and_concurrency_cap_the_requests_in_flight() {
    for (run, concurrency, per_host, cap, durability) in
        [("a", "8", "2", 2, "each"), ("b", "3", "8", 3, "each"), ("c", "3", "8", 3, "batch")]
    {
        let s = Scratch::new();
        let server = server();
        let items = smalls(&server, 40 + cap, 12);
        let mut manifest = Vec::new();
        for it in &items {
            // 40 KiB at most, at 64 KiB/s: each body takes a good part of a second.
            server.throttle(&it.path, 64 << 10);
            manifest.push(line(&server.url(&it.path), &it.key, None));
        }
        write_manifest(&s, "m.jsonl", &manifest);
        let out = output_within(
            s.cmd(&[
                "run",
                "m.jsonl",
                "--out",
                run,
                "--concurrency",
                concurrency,
                "--per-host",
                per_host,
                "--durability",
                durability,
            ]),
            Duration::from_secs(120),
        );
        assert_code(&out, 0);
        for it in &items {
            assert_eq!(std::fs::read(s.root().join(&it.key)).unwrap(), it.bytes, "{}", it.key);
        }
        let most = server.max_in_flight();
        assert_eq!(
            most, cap,
            "--concurrency {concurrency} --per-host {per_host} --durability {durability}: at most {most} requests \
             at once, the cap is {cap}"
        );
    }
}

/// `[run.headers."HOST"]` values are sent with every request to that host, from an environment
/// variable or literally, and never printed: not by `-vvv`, not by `config show` (which says
/// where a value comes from, or redacts it).
#[test]
fn configured_headers_are_sent_and_never_printed() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 60, 3);
    let token = "Bearer canary-token-4f1c9e";
    let literal = "canary-literal-77ab";
    s.file(
        "promote.toml",
        format!(
            "[run.headers.\"127.0.0.1\"]\nAuthorization = {{ env = \"RUN_PROMISES_TOKEN\" }}\nX-Canary = \"{literal}\"\n"
        )
        .as_bytes(),
    );
    let manifest: Vec<String> = items.iter().map(|it| line(&server.url(&it.path), &it.key, None)).collect();
    write_manifest(&s, "m.jsonl", &manifest);
    let mut outputs = Vec::new();
    for args in [&["-vvv", "run", "m.jsonl", "--out", "run"][..], &["config", "show"], &["config", "show", "--json"]] {
        let out = s.cmd(args).env("RUN_PROMISES_TOKEN", token).output().expect("run promote");
        assert_code(&out, 0);
        outputs.push((args, out));
    }
    for it in &items {
        let requests = server.requests(&it.path);
        assert!(!requests.is_empty(), "{}: never requested", it.path);
        for r in &requests {
            assert_eq!(r.header("authorization"), Some(token), "{}: {r:?}", it.path);
            assert_eq!(r.header("x-canary"), Some(literal), "{}: {r:?}", it.path);
        }
    }
    for (args, out) in &outputs {
        for text in [stdout(out), stderr(out)] {
            assert!(
                !text.contains("canary-token") && !text.contains(literal),
                "{args:?} printed a header value: {text}"
            );
        }
    }
    let shown = stdout(&outputs[1].1);
    assert!(shown.contains("RUN_PROMISES_TOKEN") && shown.contains("redacted"), "config show: {shown}");
}

/// A manifest `sha256` the bytes do not have fails the item with exit 4 and publishes nothing;
/// a key that holds other bytes is a conflict, exit 3, and keeps them; with both in one run the
/// higher code wins.
#[test]
fn a_failed_verification_exits_4_and_a_conflict_exits_3() {
    let s = Scratch::new();
    let server = server();
    let good = data::bytes(70, 5000);
    let other = data::bytes(71, 5000);
    server.add("/good.bin", good.clone());
    s.file("other", &other);
    assert_code(&s.run(&["put", "other", "taken.bin"]), 0);
    let wrong = line(&server.url("/good.bin"), "wrong.bin", Some((&sha(b"not these bytes"), 5000)));
    let conflict = line(&server.url("/good.bin"), "taken.bin", None);
    let fine = line(&server.url("/good.bin"), "fine.bin", Some((&sha(&good), 5000)));
    for (name, lines, want) in [
        ("verify", vec![wrong.clone(), fine.clone()], 4),
        ("conflict", vec![conflict.clone(), fine.clone()], 3),
        ("both", vec![conflict, wrong, fine], 4),
    ] {
        write_manifest(&s, &format!("{name}.jsonl"), &lines);
        let report = format!("{name}.json");
        let out = s.run(&["run", &format!("{name}.jsonl"), "--out", &format!("run-{name}"), "--report", &report]);
        assert_code(&out, want);
        let items = items_by_key(&read_json(&s.path().join(&report)));
        assert_eq!(items["fine.bin"]["outcome"], json!("promoted"), "{name}: {}", items["fine.bin"]);
        if name != "conflict" {
            assert_eq!(items["wrong.bin"]["outcome"], "failed", "{}", items["wrong.bin"]);
        }
        assert!(!s.root().join("wrong.bin").exists(), "{name}: bytes that failed verification were published");
        assert_eq!(
            std::fs::read(s.root().join("taken.bin")).unwrap(),
            other,
            "{name}: the conflict replaced the object"
        );
        // Later runs find fine.bin already present.
        let _ = std::fs::remove_file(s.root().join("fine.bin"));
    }
}

/// `doctor` checks the ledger of the configured run directory: its schema version, SQLite's
/// integrity check, and jobs stuck in flight with no live lease (a warning naming one). `status`
/// lists the same stuck jobs.
#[test]
fn doctor_checks_the_ledger_and_status_shows_stuck_jobs() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 80, 3);
    let manifest: Vec<String> = items.iter().map(|it| line(&server.url(&it.path), &it.key, None)).collect();
    write_manifest(&s, "m.jsonl", &manifest);
    assert_code(&s.run(&["run", "m.jsonl", "--out", "run"]), 0);
    let doctor = || s.cmd(&["doctor"]).env("PROMOTE_RUN__OUT", "run").output().expect("run doctor");
    let out = doctor();
    assert_code(&out, 0);
    for check in ["schema version", "integrity_check ok", "no job stuck in flight"] {
        assert!(stdout(&out).contains(check), "doctor says nothing of {check:?}: {}", stdout(&out));
    }
    // A job left in flight by an owner that is gone: what a crash mid-item leaves.
    let ledger = rusqlite::Connection::open(s.path().join("run/ledger.sqlite3")).expect("open the ledger");
    let stuck = &items[1].key;
    ledger.execute("INSERT INTO owners (record) VALUES ('gone-host/1/1/1')", []).expect("add an owner");
    let changed = ledger
        .execute(
            "UPDATE states SET state = 'fetching', owner_id = last_insert_rowid()
             WHERE id = (SELECT id FROM jobs WHERE key = ?1)",
            [stuck],
        )
        .expect("mark a job in flight");
    assert_eq!(changed, 1);
    drop(ledger);
    let out = doctor();
    assert!(
        stdout(&out).contains("1 job(s) in flight with no live lease") && stdout(&out).contains(stuck.as_str()),
        "doctor did not warn of the stuck job: {}",
        stdout(&out)
    );
    let status = s.run(&["status", "run", "--json"]);
    assert_code(&status, 0);
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).expect("status --json");
    let listed = status["stuck"].as_array().map(|a| a.iter().any(|j| j.to_string().contains(stuck.as_str())));
    assert_eq!(listed, Some(true), "status does not list {stuck} as stuck: {status}");
    // A damaged ledger fails the integrity check.
    let path = s.path().join("run/ledger.sqlite3");
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..] {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let out = doctor();
    assert_code(&out, 1);
    assert!(stdout(&out).contains("ledger"), "doctor passed a damaged ledger: {}", stdout(&out));
}

/// `streaming = false` (`--streaming false`): every HTTP item, however small, downloads into
/// `partials/` in the run directory before it is promoted (strace shows the files created there);
/// with streaming, small items create none. The objects are the same either way.
#[test]
fn streaming_false_downloads_every_item_into_the_run_directory_first() {
    for (streaming, out_dir) in [("false", "spooled"), ("true", "streamed")] {
        let s = Scratch::new();
        let server = server();
        let items = smalls(&server, 90, 4);
        let manifest: Vec<String> = items.iter().map(|it| line(&server.url(&it.path), &it.key, None)).collect();
        write_manifest(&s, "m.jsonl", &manifest);
        let log = s.path().join("openat.strace");
        let out = s
            .strace(&log, "openat", &["run", "m.jsonl", "--out", out_dir, "--streaming", streaming])
            .output()
            .expect("run strace");
        assert_code(&out, 0);
        for it in &items {
            assert_eq!(std::fs::read(s.root().join(&it.key)).unwrap(), it.bytes, "{streaming}: {}", it.key);
        }
        let partials = trace(&log)
            .iter()
            .filter(|(_, l)| l.contains(&format!("{out_dir}/partials/")) && l.contains("O_CREAT"))
            .count();
        if streaming == "false" {
            assert!(partials >= items.len(), "streaming = false: {partials} partial files for {} items", items.len());
        } else {
            assert_eq!(partials, 0, "small items streamed straight into staging made partial files");
        }
    }
}

/// `status` counts the lease of a shard a live run is working on as live, with nothing stuck;
/// once that run is killed, the lease counts as expired (its owner is gone) and the job it had
/// in flight is listed as stuck, for the next run to take back.
#[test]
fn status_shows_a_running_shards_lease_live_then_expired_once_its_owner_is_killed() {
    use std::process::Stdio;

    use crate::run::{MIB, kill, ledger_count, status, wait_for};
    let s = Scratch::new();
    let server = server();
    server.add("/slow.bin", data::bytes(31, (2 * MIB) as usize));
    // 2 MiB at 128 KiB/s: the item stays in flight for about 16 s.
    server.throttle("/slow.bin", 128 << 10);
    write_manifest(&s, "m.jsonl", &[line(&server.url("/slow.bin"), "slow", None)]);
    let child = s.cmd(&["run", "m.jsonl", "--out", "run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let out = s.path().join("run");
    wait_for("the job in flight", || {
        ledger_count(&out, "SELECT COUNT(*) FROM states WHERE state = 'fetching'", &[]) == 1
    });
    let running = status(s.cmd(&["status", "run", "--json"]));
    assert_eq!(running["claims"]["live"], 1, "the running shard's lease is not live: {running}");
    assert_eq!(running["claims"]["expired"], 0, "{running}");
    assert_eq!(running["stuck"].as_array().map(Vec::len), Some(0), "a live job listed as stuck: {running}");
    kill(child);
    let after = status(s.cmd(&["status", "run", "--json"]));
    assert_eq!((after["claims"]["live"].as_u64(), after["claims"]["expired"].as_u64()), (Some(0), Some(1)), "{after}");
    let stuck = after["stuck"].as_array().cloned().unwrap_or_default();
    assert!(stuck.len() == 1 && stuck[0].to_string().contains("slow"), "the killed run's job is not stuck: {after}");
}
