//! `promote run --report FILE.jsonl`: the report as JSON Lines, a line per manifest line then
//! one of totals, written as items end, so a run killed mid-way leaves the lines of what it
//! finished.

use std::process::Stdio;

use promote_tests::data;
use serde_json::{Value, json};

use crate::run::{MIB, kill, line, server, smalls, wait_for, write_manifest};
use crate::support::*;

/// The report's lines, each parsed.
fn lines(s: &Scratch, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(s.path().join(name)).unwrap_or_default();
    // Only whole lines: the last one may still be being written.
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Every manifest line (a bad one, a repeated one, one past `--max` included) has one line,
/// then the totals, which agree with the item lines.
#[test]
fn a_jsonl_report_has_a_line_per_manifest_line_then_the_totals() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 41, 5);
    let mut manifest: Vec<String> = items.iter().map(|i| line(&server.url(&i.path), &i.key, None)).collect();
    manifest.insert(2, "not json".into());
    manifest.push(manifest[0].clone());
    manifest.push(line(&server.url(&items[0].path), "past-max", None));
    write_manifest(&s, "m.jsonl", &manifest);
    let out = s.run(&["run", "m.jsonl", "--out", "run", "--max", "5", "--report", "r.jsonl"]);
    assert_code(&out, 2);
    let all = lines(&s, "r.jsonl");
    let (totals, items) = all.split_last().expect("lines");
    let mut numbers: Vec<u64> = items.iter().map(|i| i["line"].as_u64().expect("a line number")).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>(), "one line per manifest line: {all:?}");
    let count = |outcome: &str| items.iter().filter(|i| i["outcome"] == outcome).count();
    let totals = &totals["totals"];
    // The repeated line reports its job's outcome; the line past `--max` is skipped.
    assert_eq!((count("promoted"), count("failed"), count("skipped")), (6, 1, 1), "{all:?}");
    assert_eq!(
        (&totals["promoted"], &totals["failed"], &totals["skipped"]),
        (&json!(6), &json!(1), &json!(1)),
        "{totals}"
    );
    assert_eq!(totals["failures"]["bad-manifest-line"], 1, "{totals}");
    assert!(totals.get("items").is_none(), "{totals}");
}

/// A run killed while its big item downloads leaves the lines of the items it finished (each
/// whole JSON); a rerun writes the report anew.
#[test]
fn a_killed_run_leaves_the_lines_of_what_it_finished() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 42, 3);
    server.add("/big", data::bytes(43, 8 * MIB as usize));
    server.throttle("/big", MIB);
    let mut manifest: Vec<String> = items.iter().map(|i| line(&server.url(&i.path), &i.key, None)).collect();
    manifest.push(line(&server.url("/big"), "big", None));
    write_manifest(&s, "m.jsonl", &manifest);
    let mut child = s
        .cmd(&["run", "m.jsonl", "--out", "run", "--report", "r.jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the small items' lines in the report", || {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before the test could kill it");
        lines(&s, "r.jsonl").len() == 3
    });
    kill(child);
    let left = lines(&s, "r.jsonl");
    assert!(left.iter().all(|l| l["outcome"] == "promoted" && l["key"] != "big"), "{left:?}");
    server.throttle("/big", 0);
    let out = s.run(&["run", "m.jsonl", "--out", "run", "--report", "r.jsonl"]);
    assert_code(&out, 0);
    let again = lines(&s, "r.jsonl");
    assert_eq!(again.len(), 5, "four items and the totals: {again:?}");
    assert_eq!(again[4]["totals"]["promoted"], 1, "{again:?}");
}

/// A report path that cannot be created fails the run before anything is fetched.
#[test]
fn a_jsonl_report_that_cannot_be_created_stops_the_run_first() {
    let s = Scratch::new();
    let server = server();
    let items = smalls(&server, 44, 1);
    write_manifest(&s, "m.jsonl", &[line(&server.url(&items[0].path), &items[0].key, None)]);
    let out = s.run(&["run", "m.jsonl", "--out", "run", "--report", "no/such/dir/r.jsonl"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("creating the report"), "{}", stderr(&out));
    assert_eq!(server.total_gets(), 0, "fetched before failing");
}
