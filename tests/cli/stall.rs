//! A server that stops answering never holds promote forever: `put`, `get`, `ls` against an S3
//! endpoint that stalls, and `run` against an HTTP source that stalls, each end within their
//! bound with one clear error line (exit 6), having tried again on a new connection.
//!
//! The stalling server (`promote_tests::stall`) accepts, reads the request, then either sends
//! nothing at all or sends `200 OK` headers and never the body.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use promote_tests::stall::{Mode, Stall};

use crate::support::*;

/// Settings for an S3 target at the stalling server: short timeouts, one retry.
fn s3_at(s: &Scratch, stall: &Stall, args: &[&str]) -> Command {
    let mut cmd = s.cmd(args);
    cmd.env("PROMOTE_BACKEND__KIND", "s3")
        .env("PROMOTE_BACKEND__BUCKET", "stalled")
        .env("PROMOTE_BACKEND__ENDPOINT", stall.url())
        .env("PROMOTE_BACKEND__ALLOW_HTTP", "true")
        .env("PROMOTE_BACKEND__REGION", "us-east-1")
        .env("PROMOTE_BACKEND__ACCESS_KEY_ID", "test")
        .env("PROMOTE_BACKEND__SECRET_ACCESS_KEY", "test")
        .env("PROMOTE_BACKEND__CONDITIONAL_WRITES", "trust")
        .env("PROMOTE_BACKEND__CONNECT_TIMEOUT", "1s")
        .env("PROMOTE_BACKEND__READ_TIMEOUT", "1s")
        .env("PROMOTE_BACKEND__REQUEST_TIMEOUT", "120s")
        .env("PROMOTE_BACKEND__MAX_RETRIES", "1")
        .env("PROMOTE_BACKEND__RETRY_TIMEOUT", "10s");
    cmd
}

/// Runs `cmd`, killing it (and failing) if it is still running after `limit`.
fn bounded(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child: Child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn promote");
    loop {
        if child.try_wait().expect("wait").is_some() {
            let elapsed = started.elapsed();
            return (child.wait_with_output().expect("output"), elapsed);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.wait();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("still running after {limit:?}: it hangs on a stalled server; stderr so far: {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One error line, exit 6, within the bound; a stalled read (`retried`) was tried again on a new
/// connection. (A create-only PUT is not repeated blindly: a repeat cannot tell its own landed
/// write from another writer's, so it ends after one attempt, saying it may be retried.)
#[track_caller]
fn gave_up(what: &str, out: &Output, elapsed: Duration, stall: &Stall, retried: bool) {
    assert_code(out, 6);
    let err = stderr(out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("promote: error:")).collect();
    assert_eq!(errors.len(), 1, "{what}: one error line: {err}");
    assert!(errors[0].contains("timed out") || errors[0].contains("timeout"), "{what}: says it timed out: {err}");
    // Bound: two attempts of at most a few seconds each, with backoff; far below "forever".
    assert!(elapsed < Duration::from_secs(30), "{what}: gave up only after {elapsed:?}");
    if retried {
        assert!(stall.connections() >= 2, "{what}: the stuck request was retried on a new connection");
    }
}

const LIMIT: Duration = Duration::from_secs(40);

#[test]
fn put_get_ls_end_when_the_s3_server_never_answers() {
    let s = Scratch::new();
    s.file("a.bin", b"some bytes");
    for (what, args) in [
        ("put", &["put", "a.bin", "k/a.bin"][..]),
        ("get", &["get", "k/a.bin", "out.bin"][..]),
        ("ls", &["ls", "k/"][..]),
    ] {
        let stall = Stall::start(Mode::Silent).expect("stall server");
        let (out, elapsed) = bounded(s3_at(&s, &stall, args), LIMIT);
        gave_up(what, &out, elapsed, &stall, what != "put");
    }
    assert!(!s.path().join("out.bin").exists(), "nothing was written by the failed get");
}

#[test]
fn get_and_ls_end_when_the_s3_server_sends_headers_and_no_body() {
    let s = Scratch::new();
    for (what, args) in [("get", &["get", "k/a.bin", "out.bin"][..]), ("ls", &["ls", "k/"][..])] {
        let stall = Stall::start(Mode::HeadersOnly).expect("stall server");
        let (out, elapsed) = bounded(s3_at(&s, &stall, args), LIMIT);
        gave_up(what, &out, elapsed, &stall, true);
    }
    assert!(!s.path().join("out.bin").exists(), "nothing was written by the failed get");
}

#[test]
fn run_ends_when_a_source_stalls() {
    for mode in [Mode::Silent, Mode::HeadersOnly] {
        let s = Scratch::new();
        let stall = Stall::start(mode).expect("stall server");
        let line = serde_json::json!({ "source": format!("{}/paper.pdf", stall.url()), "key": "papers/paper.pdf" });
        s.file("manifest.jsonl", format!("{line}\n").as_bytes());
        let mut cmd = s.cmd(&["run", "manifest.jsonl", "--out", "run", "--report", "report.json"]);
        cmd.env("PROMOTE_RUN__CONNECT_TIMEOUT", "1s")
            .env("PROMOTE_RUN__READ_TIMEOUT", "1s")
            .env("PROMOTE_RUN__RETRIES", "1");
        let (out, elapsed) = bounded(cmd, LIMIT);
        assert_ne!(code(&out), 0, "{mode:?}: {}", stderr(&out));
        assert!(elapsed < Duration::from_secs(30), "{mode:?}: gave up only after {elapsed:?}");
        assert!(stall.connections() >= 2, "{mode:?}: the stuck request was tried again on a new connection");
        let report = std::fs::read_to_string(s.path().join("report.json")).expect("report written");
        assert!(report.contains("timed out"), "{mode:?}: the report says the source timed out: {report}");
        assert!(!s.root().join("papers/paper.pdf").exists(), "{mode:?}: nothing promoted");
    }
}
