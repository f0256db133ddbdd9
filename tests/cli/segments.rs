//! `run.segments`: a large item fetched by parallel range requests, against the test HTTP
//! server on 127.0.0.1 throttled per connection (as a far server is): faster than one
//! connection, each byte fetched and written once, resumed per segment after a SIGKILL or a
//! dropped connection, and one stream where the server takes no ranges.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use promote_tests::data;
use promote_tests::http_server::HttpServer;
use serde_json::{Value, json};

use crate::run::{kill, ledger_count, line, read_json, server, wait_for, write_manifest};
use crate::support::*;

const MIB: usize = 1 << 20;

/// `promote run` of `manifest.jsonl` into run directory `out`, large items (resumable) from
/// 1 MiB, `--segments n`; its output, report and how long it took.
fn run(s: &Scratch, out: &str, n: u32) -> (Output, Value, Duration) {
    let mut cmd = s.cmd(&["run", "manifest.jsonl", "--out", out, "--report", "report.json"]);
    cmd.args(["--segments", &n.to_string()]).env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB");
    let started = Instant::now();
    let output = output_within(cmd, Duration::from_secs(120));
    let took = started.elapsed();
    let report = read_json(&s.path().join("report.json"));
    (output, report, took)
}

/// `promote run` of `manifest.jsonl` into `run` with four segments, started and left running.
fn started(s: &Scratch) -> std::process::Child {
    s.cmd(&["run", "manifest.jsonl", "--out", "run", "--segments", "4"])
        .env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The server serves `/obj` (`len` bytes of seed `seed`) and the manifest lists it as `key`.
fn object(s: &Scratch, server: &HttpServer, seed: u64, len: usize, key: &str) -> Vec<u8> {
    let bytes = data::bytes(seed, len);
    server.add("/obj", bytes.clone());
    write_manifest(s, "manifest.jsonl", &[line(&server.url("/obj"), key, None)]);
    bytes
}

#[track_caller]
fn assert_promoted(s: &Scratch, out: &Output, report: &Value, key: &str, bytes: &[u8]) {
    assert_code(out, 0);
    let got = std::fs::read(s.root().join(key)).unwrap_or_else(|e| panic!("{key}: {e}; {}", stderr(out)));
    assert!(got == bytes, "wrong bytes at {key}");
    let item = &report["items"][0];
    assert_eq!((&item["outcome"], &item["sha256"]), (&json!("promoted"), &json!(sha(bytes))), "{item}");
    assert_eq!(item["fetched_bytes"], json!(bytes.len()), "each byte fetched once: {item}");
}

/// Four segments over a server that sends 2 MiB/s per connection beat one connection by at
/// least 2× (4× in theory) on 12 MiB; the object is split into four ranges, each asked once.
#[test]
fn four_segments_beat_one_connection_by_at_least_twice() {
    let s = Scratch::new();
    let server = server();
    let bytes = object(&s, &server, 31, 12 * MIB, "one");
    server.throttle("/obj", 2 * MIB as u64);
    let (out, report, one) = run(&s, "run1", 1);
    assert_promoted(&s, &out, &report, "one", &bytes);
    assert_eq!((server.gets("/obj"), server.ranges("/obj").len()), (1, 0), "one stream, no ranges");

    write_manifest(&s, "manifest.jsonl", &[line(&server.url("/obj"), "four", None)]);
    let (out, report, four) = run(&s, "run4", 4);
    assert_promoted(&s, &out, &report, "four", &bytes);
    // The item's own request reads the first 3 MiB; the others are asked for by range.
    let mut ranges = server.ranges("/obj");
    ranges.sort();
    let want: Vec<String> = (1..4).map(|k| format!("bytes={}-{}", k * 3 * MIB, (k + 1) * 3 * MIB - 1)).collect();
    assert_eq!(ranges, want);
    assert_eq!(server.gets("/obj"), 5, "one GET for the first run, four for the second");
    let speedup = one.as_secs_f64() / four.as_secs_f64();
    eprintln!("one connection {one:?}, four segments {four:?}: {speedup:.2}x");
    assert!(speedup >= 2.0, "four segments {four:?} against one connection {one:?}: only {speedup:.2}x");
}

/// A server that says nothing of ranges (no `Accept-Ranges`) gets one stream, as before.
#[test]
fn a_server_without_ranges_gets_one_stream() {
    let s = Scratch::new();
    let server = server();
    let bytes = object(&s, &server, 32, 6 * MIB, "obj");
    server.ignore_ranges("/obj", true);
    let (out, report, _) = run(&s, "run", 4);
    assert_promoted(&s, &out, &report, "obj", &bytes);
    assert_eq!((server.gets("/obj"), server.ranges("/obj").len()), (1, 0), "{:?}", server.requests("/obj"));
}

/// Connections dropped mid-segment: each dropped segment is taken up again from the byte
/// where it stopped (by another connection of the same attempt, or the next attempt), so
/// every byte is fetched once.
#[test]
fn a_dropped_segment_resumes_where_it_stopped() {
    let s = Scratch::new();
    let server = server();
    let bytes = object(&s, &server, 33, 8 * MIB, "obj");
    // The first two requests (the item's own and one range) break after 512 KiB.
    server.drop_after("/obj", 512 << 10, 2);
    let (out, report, _) = run(&s, "run", 4);
    assert_promoted(&s, &out, &report, "obj", &bytes);
    let ranges = server.ranges("/obj");
    assert_eq!(ranges.len(), 5, "three segments, then the two dropped ones again: {ranges:?}");
    assert!(ranges.contains(&format!("bytes={}-{}", 512 << 10, 2 * MIB - 1)), "the first segment resumed: {ranges:?}");
    let resumed = ranges.iter().filter(|r| r.starts_with(&format!("bytes={}", (512 << 10) + 2 * MIB))).count()
        + ranges.iter().filter(|r| r.starts_with(&format!("bytes={}", (512 << 10) + 4 * MIB))).count()
        + ranges.iter().filter(|r| r.starts_with(&format!("bytes={}", (512 << 10) + 6 * MIB))).count();
    assert_eq!(resumed, 1, "one of the other segments resumed at its 512 KiB: {ranges:?}");
}

/// SIGKILL mid-download, then a rerun: every segment continues from its own checkpoint (a
/// range starting past the segment's first byte), so far less than the object is fetched
/// again, and the object is whole.
#[test]
fn after_sigkill_every_segment_resumes_from_its_checkpoint() {
    let s = Scratch::new();
    let server = server();
    // 4 s a segment: the first checkpoints (a second apart) come well before the end.
    let bytes = object(&s, &server, 34, 16 * MIB, "obj");
    server.throttle("/obj", MIB as u64);
    let mut child = started(&s);
    // A checkpoint with at least 1 MiB of the first segment (each connection is paced alike).
    wait_for("a segmented checkpoint past 1 MiB", || {
        assert!(child.try_wait().unwrap().is_none(), "promote run ended before the test could interrupt it");
        let sql = "SELECT count(*) FROM jobs WHERE cp_segments IS NOT NULL AND cp_offset >= ?1";
        ledger_count(&s.path().join("run"), sql, &[&MIB.to_string()]) == 1
    });
    kill(child);
    let first = server.bytes_sent("/obj");
    assert!(!s.root().join("obj").exists(), "promoted before the kill: the test needs it unfinished");
    server.throttle("/obj", 0);
    let before = server.ranges("/obj").len();

    let (out, report, _) = run(&s, "run", 4);
    assert_code(&out, 0);
    assert!(std::fs::read(s.root().join("obj")).unwrap() == bytes, "wrong bytes at obj");
    let item = &report["items"][0];
    assert_eq!((&item["outcome"], &item["decision"]), (&json!("promoted"), &json!("resume")), "{item}");
    let again = item["fetched_bytes"].as_u64().unwrap();
    let ranges = &server.ranges("/obj")[before..];
    assert_eq!(ranges.len(), 4, "one range per segment: {ranges:?}");
    for (k, range) in (0..4).map(|k| (k, ranges.iter().find(|r| range_end(r) == (k + 1) * 4 * MIB - 1))) {
        let range = range.unwrap_or_else(|| panic!("no range for segment {k}: {ranges:?}"));
        assert!(range_start(range) >= k * 4 * MIB + MIB / 2, "segment {k} started over: {range}");
    }
    eprintln!("first run sent {first} bytes; the rerun fetched {again}");
    assert!(again <= (bytes.len() - 2 * MIB) as u64, "the rerun fetched {again} of {} bytes", bytes.len());
}

/// After a SIGKILL the object changed: the ranges come back whole (`If-Range` no longer
/// matches), so the kept segments are discarded and the new object fetched from the start.
#[test]
fn a_changed_object_discards_the_segments() {
    let s = Scratch::new();
    let server = server();
    object(&s, &server, 35, 16 * MIB, "obj");
    server.throttle("/obj", MIB as u64);
    let mut child = started(&s);
    wait_for("a segmented checkpoint", || {
        assert!(child.try_wait().unwrap().is_none(), "promote run ended before the test could interrupt it");
        ledger_count(&s.path().join("run"), "SELECT count(*) FROM jobs WHERE cp_segments IS NOT NULL", &[]) == 1
    });
    kill(child);
    server.throttle("/obj", 0);
    let new = data::bytes(36, 8 * MIB);
    server.change("/obj", new.clone());
    let (out, report, _) = run(&s, "run", 4);
    assert_code(&out, 0);
    assert!(std::fs::read(s.root().join("obj")).unwrap() == new, "the object is not the changed one");
    let item = &report["items"][0];
    assert_eq!((&item["outcome"], &item["decision"]), (&json!("promoted"), &json!("discard")), "{item}");
}

fn range_start(range: &str) -> usize {
    range.trim_start_matches("bytes=").split('-').next().unwrap().parse().unwrap()
}

fn range_end(range: &str) -> usize {
    range.rsplit('-').next().unwrap().parse().unwrap()
}

/// `run.segments` outside 1 to 16 is one error line naming it and where it came from, and
/// `--segments` outside them a usage error: exit 2 both; nothing is fetched or written.
#[test]
fn segments_out_of_range_are_refused_before_anything_is_fetched() {
    let s = Scratch::new();
    let server = server();
    object(&s, &server, 37, 2 * MIB, "obj");
    let out = s.cmd(&["run", "manifest.jsonl", "--out", "run"]).env("PROMOTE_RUN__SEGMENTS", "0").output().unwrap();
    assert_code(&out, 2);
    let want = "promote: error: configuration error: run.segments: 0 is not between 1 and 16 \
                (from env PROMOTE_RUN__SEGMENTS)";
    assert_eq!(stderr(&out).trim(), want);
    let out = s.run(&["run", "manifest.jsonl", "--out", "run", "--segments", "17"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--segments"), "{}", stderr(&out));
    assert_eq!(server.total_gets(), 0);
    assert!(!s.path().join("run").exists(), "a run directory was created");
}
