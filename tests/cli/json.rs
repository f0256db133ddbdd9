//! `--json` on every command that prints, and failures as JSON records with it.

use serde_json::Value;

use crate::support::*;

/// Each stdout line parsed as JSON (panics on a line that is not).
fn records(out: &std::process::Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\nstderr: {}", stderr(out))))
        .collect()
}

#[test]
fn every_command_that_prints_has_json() {
    let s = Scratch::new();
    s.file("f", b"hello");
    std::fs::create_dir_all(s.path().join("d/sub")).unwrap();
    s.file("d/sub/a", b"a");
    s.file("m.jsonl", b"{\"source\": \"f\", \"key\": \"fromrun\"}\n");
    let commands: [&[&str]; 15] = [
        &["put", "f", "k", "--json"],
        &["put", "d", "tree/", "--json"],
        &["get", "k", "out", "--json"],
        &["get", "-r", "tree/", "outdir", "--json"],
        &["verify", "k", "--json"],
        &["verify", "-r", "tree/", "--json"],
        &["ls", "--json"],
        &["ls", "-l", "-r", "--json"],
        &["stat", "k", "--json"],
        &["recover", "--json"],
        &["doctor", "--json"],
        &["run", "m.jsonl", "--out", "run", "--json"],
        &["status", "run", "--json"],
        &["config", "show", "--json"],
        &["rm", "k", "--json"],
    ];
    for args in commands {
        let out = s.run(args);
        assert_code(&out, 0);
        let records = records(&out);
        assert!(!records.is_empty(), "{args:?} printed nothing");
        assert!(records.iter().all(|r| r.get("ok") != Some(&Value::Bool(false))), "{args:?}: {records:?}");
    }
    let out = s.run(&["get", "tree/sub/a", "out2", "--json"]);
    let got = &records(&out)[0];
    assert_eq!((got["outcome"].as_str(), got["size"].as_u64()), (Some("got"), Some(1)), "{got}");
    assert_eq!(got["sha256"], sha(b"a"));
    let out = s.run(&["run", "--dry-run", "m.jsonl", "--json"]);
    assert_eq!(records(&out)[0]["skipped"], 1);
}

#[test]
fn with_json_failures_are_json_records() {
    let s = Scratch::new();
    s.file("f", b"hello");
    assert_code(&s.run(&["put", "f", "k"]), 0);
    let cases: [(&[&str], i32); 10] = [
        (&["put", "nope", "k2", "--json"], 2),
        (&["get", "missing", "out", "--json"], 5),
        (&["get", "-r", "missing/", "out", "--json"], 5),
        (&["verify", "missing", "--json"], 5),
        (&["stat", "missing", "--json"], 5),
        (&["rm", "missing", "--json"], 5),
        (&["ls", "--root", "no-such-root", "--json"], 2),
        (&["recover", "--dry-run", "--root", "no-such-root", "--json"], 2),
        (&["run", "no-manifest.jsonl", "--json"], 2),
        (&["status", "no-run-dir", "--json"], 2),
    ];
    for (args, want) in cases {
        let out = s.run(args);
        assert_eq!(code(&out), want, "{args:?}: {}", stderr(&out));
        let records = records(&out);
        let last = records.last().unwrap_or_else(|| panic!("{args:?}: no JSON record: {}", stderr(&out)));
        assert_eq!(last["ok"], false, "{args:?}: {last}");
        assert_eq!(last["exit"], want, "{args:?}: {last}");
        assert!(last["error"].as_str().is_some_and(|e| !e.is_empty()), "{args:?}: {last}");
        assert!(stderr(&out).contains("promote: error:"), "{args:?}: stderr keeps the line: {}", stderr(&out));
    }
    // A usage error that clap finds is a record too.
    let out = s.run(&["put", "f", "--json"]);
    assert_code(&out, 2);
    let usage = &records(&out)[0];
    assert!(
        usage["ok"] == false && usage["exit"] == 2 && usage["error"].as_str().unwrap().contains("<KEY>"),
        "{usage}"
    );
    // A bad configuration, with config show --json.
    s.file("bad.toml", b"streaming = [1]\n");
    let out = s.run(&["--config", "bad.toml", "config", "show", "--json"]);
    assert_code(&out, 2);
    assert_eq!(records(&out)[0]["ok"], false);
    // doctor --json reports its failed checks as records.
    let out = s.run(&["--root", "no-such-root", "doctor", "--json"]);
    assert_code(&out, 1);
    assert!(records(&out).iter().any(|r| r["check"] == "backend" && r["ok"] == false), "{}", stdout(&out));
    // rm of several keys: each failure is a record, the removals too.
    let out = s.run(&["rm", "k", "missing", "--json"]);
    assert_code(&out, 5);
    let records = records(&out);
    assert_eq!(records[0]["removed"], "k");
    assert_eq!((records[1]["key"].as_str(), records[1]["ok"].as_bool()), (Some("missing"), Some(false)));
}
