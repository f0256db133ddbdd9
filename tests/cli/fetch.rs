//! `promote run`'s HTTP side end to end, against the test HTTP server on 127.0.0.1: the retry
//! budget that resets on progress, resume validators (a Last-Modified only when strong), and
//! the HTTP client built lazily, with bundled roots where the system has none.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use promote_tests::data;
use promote_tests::http_server::{HttpServer, http_date};
use serde_json::{Value, json};

use crate::support::*;

const MIB: usize = 1 << 20;
/// The warning a run prints when the system has no root certificates.
const BUNDLED: &str = "promote: no CA certificates on this system; using the bundled Mozilla roots";
/// Longest any run here may take.
const LIMIT: Duration = Duration::from_secs(120);

fn server() -> HttpServer {
    HttpServer::start().expect("start the test HTTP server on 127.0.0.1")
}

fn manifest(s: &Scratch, items: &[(String, &str)]) {
    let text: String =
        items.iter().map(|(source, key)| format!("{}\n", json!({ "source": source, "key": key }))).collect();
    s.file("manifest.jsonl", text.as_bytes());
}

/// `promote run manifest.jsonl --out run --report report.json` with large-item resume from
/// 1 MiB, run to the end (at most [`LIMIT`]); its output and report.
fn run(s: &Scratch, env: &[(&str, &str)]) -> (Output, Value) {
    let mut cmd = s.cmd(&["run", "manifest.jsonl", "--out", "run", "--report", "report.json"]);
    cmd.env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = output_within(cmd, LIMIT);
    let path = s.path().join("report.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; {}", path.display(), stderr(&out)));
    (out, serde_json::from_str(&text).expect("report JSON"))
}

fn item<'a>(report: &'a Value, key: &str) -> &'a Value {
    let items = report["items"].as_array().expect("items");
    items.iter().find(|i| i["key"] == key).unwrap_or_else(|| panic!("no {key} in {report}"))
}

#[test]
fn a_connection_that_drops_every_mib_finishes_on_more_attempts_than_the_retries() {
    let s = Scratch::new();
    let server = server();
    // 8 MiB whose connection drops after each MiB, 7 times: 8 attempts, each one further.
    let big = data::bytes(21, 8 * MIB);
    server.add("/big", big.clone());
    server.drop_after("/big", MIB as u64, 7);
    // And one that never gets a byte: its attempts without progress spend the budget.
    server.add("/stuck", data::bytes(22, 2 * MIB));
    server.drop_after("/stuck", 0, 1000);
    manifest(&s, &[(server.url("/big"), "big"), (server.url("/stuck"), "stuck")]);

    let (out, report) = run(&s, &[("PROMOTE_RUN__RETRIES", "2")]);
    assert_code(&out, 6);
    let got = std::fs::read(s.root().join("big")).unwrap_or_else(|e| panic!("big: {e}; {}", stderr(&out)));
    assert!(got == big, "wrong bytes at big");
    let entry = item(&report, "big");
    assert_eq!((&entry["outcome"], &entry["sha256"]), (&json!("promoted"), &json!(sha(&big))), "{entry}");
    assert_eq!(entry["attempts"], json!(8), "{entry}");
    assert_eq!(entry["fetched_bytes"], json!(big.len()), "each byte fetched once: {entry}");
    let ranges = server.ranges("/big");
    let want: Vec<String> = (1..8).map(|n| format!("bytes={}-", n * MIB)).collect();
    assert_eq!(ranges, want, "each attempt resumes where the last one stopped");

    // Still bounded: 2 retries without progress, then the item fails.
    let entry = item(&report, "stuck");
    assert_eq!((&entry["outcome"], &entry["attempts"]), (&json!("failed"), &json!(3)), "{entry}");
    assert_eq!(server.gets("/stuck"), 3);
    assert!(!s.root().join("stuck").exists());
}

/// Sizes of the files in `dir` (none when it does not exist).
/// A run directory holding a checkpointed partial download of `/obj` (8 MiB, served without an
/// ETag and with `Date` = `Last-Modified` + `date_after` seconds): starts `promote run`
/// throttled, waits for 3 MiB in the partial, kills it. Returns the object's bytes.
fn interrupted(s: &Scratch, server: &HttpServer, seed: u64, date_after: u64) -> Vec<u8> {
    let bytes = data::bytes(seed, 8 * MIB);
    server.add("/obj", bytes.clone());
    server.omit_etag("/obj", true);
    let modified = server.last_modified("/obj").expect("just added");
    server.pin_date("/obj", Some(modified + date_after));
    manifest(s, &[(server.url("/obj"), "obj")]);
    crate::run::kill_mid_download(s, server);
    bytes
}

#[test]
fn a_last_modified_as_new_as_the_date_is_no_validator_so_the_kept_bytes_are_discarded() {
    let s = Scratch::new();
    let server = server();
    // Date = Last-Modified: the file may change again within that second (RFC 9110 §8.8.2.2).
    let old = interrupted(&s, &server, 23, 0);
    let modified = server.last_modified("/obj").unwrap();
    // Rewritten within the same second: same size, same Last-Modified, other bytes.
    let new = data::bytes(24, old.len());
    server.rewrite("/obj", new.clone());
    assert_eq!(server.last_modified("/obj"), Some(modified));
    let before = server.requests("/obj").len();

    let (out, report) = run(&s, &[]);
    assert_code(&out, 0);
    assert!(std::fs::read(s.root().join("obj")).unwrap() == new, "the promoted object mixes the old and new bytes");
    let entry = item(&report, "obj");
    assert_eq!((&entry["outcome"], &entry["decision"]), (&json!("promoted"), &json!("discard")), "{entry}");
    let gets: Vec<_> = server.requests("/obj").into_iter().skip(before).filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!((&gets[0].range, &gets[0].if_range, gets[0].status), (&None, &None, 200), "{gets:?}");
}

#[test]
fn a_last_modified_a_second_older_than_the_date_resumes_with_that_exact_date() {
    let s = Scratch::new();
    let server = server();
    let bytes = interrupted(&s, &server, 25, 1);
    let modified = server.last_modified("/obj").unwrap();
    let before = server.requests("/obj").len();

    let (out, report) = run(&s, &[]);
    assert_code(&out, 0);
    assert!(std::fs::read(s.root().join("obj")).unwrap() == bytes, "wrong bytes at obj");
    let entry = item(&report, "obj");
    assert_eq!((&entry["outcome"], &entry["decision"]), (&json!("promoted"), &json!("resume")), "{entry}");
    let gets: Vec<_> = server.requests("/obj").into_iter().skip(before).filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].if_range.as_deref(), Some(http_date(modified).as_str()), "{gets:?}");
    assert!(gets[0].range.as_deref().is_some_and(|r| r != "bytes=0-"), "{gets:?}");
    assert_eq!(gets[0].status, 206);
}

/// An empty certificate directory, and the variables that make it the system's only one.
fn no_system_roots(s: &Scratch) -> Vec<(&'static str, PathBuf)> {
    let empty = s.path().join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    vec![("SSL_CERT_DIR", empty.clone()), ("SSL_CERT_FILE", empty.join("none.pem"))]
}

fn run_without_roots(s: &Scratch) -> Output {
    let mut cmd: Command = s.cmd(&["run", "manifest.jsonl", "--out", "run"]);
    for (name, value) in no_system_roots(s) {
        cmd.env(name, value);
    }
    output_within(cmd, LIMIT)
}

#[test]
fn a_run_of_local_files_needs_no_ca_certificates() {
    let s = Scratch::new();
    s.file("a.txt", b"alpha");
    s.file("b.txt", b"beta");
    manifest(&s, &[("a.txt".into(), "a"), ("b.txt".into(), "b")]);
    let out = run_without_roots(&s);
    assert_code(&out, 0);
    assert_eq!(std::fs::read(s.root().join("a")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(s.root().join("b")).unwrap(), b"beta");
    // No HTTP source, no HTTP client: nothing to say about certificates.
    assert!(!stderr(&out).contains("CA certificates"), "{}", stderr(&out));
}

#[test]
fn http_items_without_ca_certificates_use_the_bundled_roots_and_say_so_once() {
    let s = Scratch::new();
    let server = server();
    let items: Vec<(String, Vec<u8>)> =
        (0..3).map(|i| (format!("/f{i}"), data::bytes(30 + i, 1000 + i as usize))).collect();
    for (path, bytes) in &items {
        server.add(path, bytes.clone());
    }
    let keys = ["f0", "f1", "f2"];
    let lines: Vec<(String, &str)> = items.iter().zip(keys).map(|((path, _), key)| (server.url(path), key)).collect();
    manifest(&s, &lines);
    let out = run_without_roots(&s);
    assert_code(&out, 0);
    for ((_, bytes), key) in items.iter().zip(keys) {
        assert!(std::fs::read(s.root().join(key)).unwrap() == *bytes, "wrong bytes at {key}");
    }
    let err = stderr(&out);
    assert_eq!(err.lines().filter(|l| *l == BUNDLED).count(), 1, "the warning, once: {err}");
}

/// A large download on local disk is written once: its partial, hashed as it came in, becomes
/// the staged write and is renamed into place, never copied; fetched in one stream or in four
/// segments (each written where it belongs). Counted by the kernel for the process
/// (`write_bytes`, what reached the block layer): within 10% of the object, where a copy writes
/// it twice.
#[test]
fn a_large_download_on_local_disk_is_written_once() {
    use crate::run::{MIB, big_file, line, sha_file, write_manifest};
    let s = Scratch::new();
    let server = HttpServer::start().expect("start the test HTTP server on 127.0.0.1");
    let len = 48 * MIB;
    let sha = big_file(&s.path().join("big.src"), 11, len);
    server.add_file("/big.bin", s.path().join("big.src")).unwrap();
    for segments in [1, 4] {
        let key = format!("big{segments}");
        write_manifest(&s, "m.jsonl", &[line(&server.url("/big.bin"), &key, Some((&sha, len)))]);
        let script = format!(
            "$PROMOTE run -q m.jsonl --out run{segments} --segments {segments} --durability none || exit 9; \
             grep '^write_bytes' /proc/$$/io"
        );
        let out = s.shell(&script).output().unwrap();
        assert_code(&out, 0);
        let written: u64 = stdout(&out).trim().trim_start_matches("write_bytes:").trim().parse().unwrap();
        assert_eq!(sha_file(&s.root().join(&key)), sha, "the object is the source's bytes");
        // At least the object: the counter sees this filesystem's writes (it would not on tmpfs).
        let what = format!("{segments} segment(s): wrote {written} bytes for a {len}-byte object");
        assert!(written >= len * 9 / 10, "{what}: is the counter blind here?");
        assert!(written <= len * 11 / 10, "{what}: copied, not written once");
        assert!(s.staging_files().is_empty(), "staging left behind");
        let partials = std::fs::read_dir(s.path().join(format!("run{segments}/partials"))).unwrap().count();
        assert_eq!(partials, 0, "a partial left behind");
    }
    assert_eq!(server.ranges("/big.bin").len(), 3, "the second run asked for three segments by range");
}
