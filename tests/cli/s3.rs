//! The CLI against a real S3 server (LocalStack, started by `tests/run`): races, crashes,
//! verification, doctor, and a server that ignores conditional writes.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use promote_tests::data;
use promote_tests::http_server::HttpServer;

use crate::support::*;

/// A fresh prefix in the test bucket, reached through `endpoint`.
struct Bucket {
    endpoint: String,
    prefix: String,
}

impl Bucket {
    fn new(name: &str) -> Self {
        Self::at(&var("PROMOTE_TEST_S3_ENDPOINT"), name)
    }

    fn at(endpoint: &str, name: &str) -> Self {
        Self { endpoint: endpoint.to_owned(), prefix: s3_prefix_for(name) }
    }
}

impl Remote for Bucket {
    /// `promote` configured for this bucket through the environment (as a user would).
    fn cmd(&self, s: &Scratch, args: &[&str]) -> Command {
        let mut cmd = s3_cmd(s, &self.prefix, args);
        // Through `endpoint` (a proxy in some tests), with small parts so multipart runs.
        cmd.env("PROMOTE_BACKEND__ENDPOINT", &self.endpoint)
            .env("PROMOTE_BACKEND__MULTIPART_THRESHOLD", "5MiB")
            .env("PROMOTE_BACKEND__PART_SIZE", "5MiB");
        cmd
    }
}

#[test]
fn eight_processes_race_multipart_one_winner() {
    let s = Scratch::new();
    let b = Bucket::new("race");
    let files = racer_files(&s, 200, 32 << 20);
    let (winner, _) = race_eight("s3 multipart", |i| b.cmd(&s, &["put", &format!("f{i}"), "big"]));
    assert!(b.get(&s, "big") == files[winner], "the object is the winner's bytes");
    assert!(b.leftovers(&s).is_empty(), "the losers' uploads were aborted");
}

#[test]
fn sigkill_mid_multipart_leaves_no_object_and_recover_aborts_the_upload() {
    let s = Scratch::new();
    sigkill_mid_upload("s3", &Bucket::new("crash"), &s, "multipart upload");
}

/// `recover --json` lines as (name, verdict), with "would remove" read as "removed".
fn verdicts(out: &std::process::Output) -> Vec<(String, String)> {
    assert_code(out, 0);
    let mut v: Vec<(String, String)> = stdout(out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|j| j["action"] != "summary")
        .map(|j| {
            (j["name"].as_str().unwrap().to_owned(), j["action"].as_str().unwrap().replace("would remove", "removed"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn recover_judges_uploads_by_their_newest_part_and_dry_runs_match_real_runs() {
    let s = Scratch::new();
    let b = Bucket::new("activity");
    let upload_of = |key: &str, min_bytes: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = b.leftovers(&s).into_iter().find(|l| {
                l["name"].as_str().unwrap().contains(&format!("/{key} ("))
                    && l["size"].as_u64().unwrap_or(0) >= min_bytes
            });
            if let Some(l) = found {
                return l;
            }
            assert!(Instant::now() < deadline, "no upload of {key} with {min_bytes} bytes in parts appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // A writer killed mid-upload: dead, so its upload goes at once.
    let mut dead = b.cmd(&s, &["put", "-", "dead"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    dead.stdin.as_mut().unwrap().write_all(&data::bytes(30, 6 << 20)).unwrap();
    upload_of("dead", 5 << 20);
    dead.kill().unwrap();
    dead.wait().unwrap();
    // A live writer that started long ago (for --older-than 3s) but sent a part just now.
    let body = data::bytes(31, 16 << 20);
    let mut live = b.cmd(&s, &["put", "-", "live"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = live.stdin.take().unwrap();
    stdin.write_all(&body[..6 << 20]).unwrap();
    upload_of("live", 5 << 20);
    // Until the server says the upload has been idle past --older-than (3s): by age alone,
    // recover would now take it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let idle = upload_of("live", 5 << 20)["idle_seconds"].as_u64().unwrap_or(0);
        if idle >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the live upload never looked idle for 4s (idle {idle}s)");
        std::thread::sleep(Duration::from_millis(250));
    }
    stdin.write_all(&body[6 << 20..12 << 20]).unwrap();
    let listed = upload_of("live", 10 << 20);
    assert!(listed["idle_seconds"].as_u64().unwrap() < 3, "idle counts from the newest part: {listed}");

    let dry = verdicts(&b.run(&s, &["recover", "--older-than", "3s", "--dry-run", "--json"]));
    let real = verdicts(&b.run(&s, &["recover", "--older-than", "3s", "--json"]));
    assert_eq!(dry, real, "a dry run shows exactly what the real run does");
    let verdict =
        |key: &str| real.iter().find(|(name, _)| name.contains(&format!("/{key} ("))).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(verdict("dead"), "removed");
    assert_eq!(verdict("live"), "kept", "an upload idle for 4s, then written to just now, is active");

    stdin.write_all(&body[12 << 20..]).unwrap();
    drop(stdin);
    let out = live.wait_with_output().unwrap();
    assert_code(&out, 0);
    assert!(b.get(&s, "live") == body);
    assert!(b.leftovers(&s).is_empty(), "{:?}", b.leftovers(&s));
}

#[test]
fn wrong_sha256_publishes_nothing_small_or_multipart() {
    let s = Scratch::new();
    let b = Bucket::new("verify");
    for (name, len) in [("small", 1000), ("large", 12 << 20)] {
        let bytes = data::bytes(10, len);
        s.file(name, &bytes);
        let out = b.run(&s, &["put", name, name, "--sha256", &sha(b"not these bytes")]);
        assert_code(&out, 4);
        assert_code(&b.run(&s, &["get", name, "-"]), 5);
        let out = b.run(&s, &["put", name, name, "--sha256", &sha(&bytes)]);
        assert_code(&out, 0);
        assert!(b.get(&s, name) == bytes);
        assert_code(&b.run(&s, &["verify", name, "--sha256", &sha(&bytes)]), 0);
        let out = b.run(&s, &["put", name, name, "--sha256", &sha(&bytes), "--json"]);
        assert_code(&out, 0);
        assert!(stdout(&out).contains("already-present"), "{}", stdout(&out));
    }
    assert!(b.leftovers(&s).is_empty());
}

#[test]
fn doctor_is_green_on_a_conditional_write_server() {
    let s = Scratch::new();
    let b = Bucket::new("doctor");
    let out = b.run(&s, &["doctor"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("ok   server refuses a second create-only PUT"), "{text}");
    assert!(text.contains("ok   server refuses a second create-only multipart completion"), "{text}");
    assert!(text.contains("server verifies x-amz-checksum-sha256"), "{text}");
}

/// A secret no output may contain. LocalStack accepts any secret, so commands still work.
const CANARY_SECRET: &str = "canary-S3cr3t-7f3a9c2e1b";

#[test]
fn the_secret_never_reaches_output_or_logs() {
    let s = Scratch::new();
    let b = Bucket::new("secret");
    let with_secret = |args: &[&str]| {
        b.cmd(&s, args).env("PROMOTE_BACKEND__SECRET_ACCESS_KEY", CANARY_SECRET).output().expect("run promote")
    };
    // The secret really is in the configuration: config show names its source.
    let shown = with_secret(&["config", "show"]);
    assert_code(&shown, 0);
    assert!(
        stdout(&shown).lines().any(|l| l.starts_with("backend.secret_access_key") && l.contains("SECRET_ACCESS_KEY")),
        "{}",
        stdout(&shown)
    );
    s.file("f", &data::bytes(22, 6 << 20));
    let mut outputs = vec![
        shown,
        with_secret(&["config", "show", "--json"]),
        with_secret(&["-vvv", "put", "f", "k"]),
        with_secret(&["-vvv", "ls"]),
        with_secret(&["-vvv", "get", "k", "-"]),
        with_secret(&["-vvv", "verify", "k"]),
        with_secret(&["-vvv", "doctor"]),
        with_secret(&["-vvv", "recover", "--dry-run"]),
        with_secret(&["-vvv", "get", "missing", "-"]),
    ];
    // Errors that involve the credentials: an unreachable server, a refused write.
    let closed = Bucket::at("http://127.0.0.1:9", "secret");
    outputs.push(
        closed.cmd(&s, &["-vvv", "ls"]).env("PROMOTE_BACKEND__SECRET_ACCESS_KEY", CANARY_SECRET).output().unwrap(),
    );
    let proxy = Proxy::start(&s, "secret", &["--read-only"]);
    let refused = Bucket { endpoint: proxy.endpoint.clone(), prefix: b.prefix.clone() };
    outputs.push(
        refused
            .cmd(&s, &["-vvv", "put", "f", "k2"])
            .env("PROMOTE_BACKEND__SECRET_ACCESS_KEY", CANARY_SECRET)
            .output()
            .unwrap(),
    );
    assert_code(&outputs[2], 0);
    assert_ne!(code(outputs.last().unwrap()), 0);
    for out in &outputs {
        let text = format!("{}{}", stdout(out), stderr(out));
        assert!(!text.contains(CANARY_SECRET), "the secret leaked:\n{text}");
    }
}

/// The test proxy (`tests/s3/ignore_conditions.py`) in front of the S3 server; stopped on drop.
pub(crate) struct Proxy {
    child: std::process::Child,
    pub(crate) endpoint: String,
    refused_log: std::path::PathBuf,
}

impl Proxy {
    /// `mode`: `[]` drops conditional headers; `["--read-only"]` refuses every write with 403.
    pub(crate) fn start(s: &Scratch, name: &str, mode: &[&str]) -> Self {
        Self::start_for(&var("PROMOTE_TEST_S3_ENDPOINT"), s, name, mode)
    }

    /// The same, in front of the server at `upstream` (its scheme, host and port).
    pub(crate) fn start_for(upstream: &str, s: &Scratch, name: &str, mode: &[&str]) -> Self {
        let port_file = s.path().join(format!("{name}.port"));
        let child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/s3/ignore_conditions.py"))
            .arg(upstream)
            .arg(&port_file)
            .args(mode)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start the test proxy");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(mut f) = std::fs::File::open(&port_file) {
                let mut p = String::new();
                f.read_to_string(&mut p).unwrap();
                break p;
            }
            assert!(Instant::now() < deadline, "the proxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let refused_log = s.path().join(format!("{name}.port.refused"));
        Self { child, endpoint: format!("http://127.0.0.1:{port}"), refused_log }
    }

    /// The writes the read-only proxy refused so far ("METHOD PATH" lines).
    pub(crate) fn refused(&self) -> Vec<String> {
        std::fs::read_to_string(&self.refused_log).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Every request the proxy received so far ("METHOD PATH" lines).
    pub(crate) fn requests(&self) -> Vec<String> {
        let log = self.refused_log.with_extension("requests");
        std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A completion whose answer is lost (the proxy closes the connection once the server has
/// completed the upload): object_store sends it again, the server, which has forgotten the
/// upload, answers `404 NoSuchUpload`, and promote finds the key holding exactly its upload (the
/// ETag of its parts), so the put reports the object it published instead of "not found".
#[test]
fn a_completion_whose_answer_is_lost_is_still_published() {
    let s = Scratch::new();
    let b = Bucket::new("lost-completion");
    let proxy = Proxy::start(&s, "lost", &["--lose-completion-of", "big.bin"]);
    let through = Bucket { endpoint: proxy.endpoint.clone(), prefix: b.prefix.clone() };
    let bytes = data::bytes(41, 12 << 20);
    s.file("big", &bytes);
    let out = through.run(&s, &["put", "big", "big.bin", "--sha256", &sha(&bytes), "--json"]);
    assert_code(&out, 0);
    let receipt: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("a JSON receipt");
    assert_eq!(receipt["outcome"], "promoted", "{receipt}");
    assert_once_lost_then_sent_again(&proxy);
    assert!(b.get(&s, "big.bin") == bytes, "the object is the bytes put");
    assert_code(&b.run(&s, &["verify", "big.bin", "--sha256", &sha(&bytes)]), 0);

    // A swap (`--if-version`) whose completion's answer is lost is a swap too, not a mismatch.
    let proxy = Proxy::start(&s, "lost-swap", &["--lose-completion-of", "big.bin"]);
    let through = Bucket { endpoint: proxy.endpoint.clone(), prefix: b.prefix.clone() };
    let swapped = data::bytes(42, 12 << 20);
    s.file("swapped", &swapped);
    let version = receipt["version"].as_str().expect("a version");
    let out = through.run(&s, &["put", "swapped", "big.bin", "--if-version", version]);
    assert_code(&out, 0);
    assert_once_lost_then_sent_again(&proxy);
    assert!(b.get(&s, "big.bin") == swapped, "the swap published the new bytes");
    assert!(b.leftovers(&s).is_empty(), "{:?}", b.leftovers(&s));
}

/// The proxy lost the answer to one commit of `big.bin`'s upload, which the server had made
/// (S3's completion answered 200, Azure's block list 201), and the commit was sent again.
pub(crate) fn assert_once_lost_then_sent_again(proxy: &Proxy) {
    let lost = proxy.refused();
    let answered =
        |line: &str| line.rsplit(' ').next().is_some_and(|status| status.len() == 3 && status.starts_with("20"));
    assert!(lost.len() == 1 && lost[0].starts_with("LOST ") && answered(&lost[0]), "{lost:?}");
    let commit = |r: &&String| {
        (r.starts_with("POST") && r.contains("big.bin?uploadId="))
            || (r.starts_with("PUT") && r.contains("big.bin?comp=blocklist"))
    };
    let commits = proxy.requests().iter().filter(commit).count();
    assert_eq!(commits, 2, "the commit was sent again: {:?}", proxy.requests());
}

#[test]
fn a_server_ignoring_conditions_is_red_and_create_is_refused() {
    let s = Scratch::new();
    let proxy = Proxy::start(&s, "unsafe", &[]);
    let b = Bucket::at(&proxy.endpoint, "unsafe");
    let out = b.run(&s, &["doctor"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("UNSAFE"), "{}", stdout(&out));

    s.file("f", b"bytes");
    let out = b.run(&s, &["put", "f", "k"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--replace") && stderr(&out).contains("If-None-Match"), "{}", stderr(&out));
    assert_code(&b.run(&s, &["put", "f", "k", "--replace"]), 0);
}

#[test]
fn multipart_objects_without_sha256_still_get_a_stored_digest_and_get_says_what_it_checked() {
    let s = Scratch::new();
    let b = Bucket::new("digests");
    let bytes = data::bytes(40, 12 << 20);
    s.file("large", &bytes);
    assert_code(&b.run(&s, &["put", "large", "with"]), 0);
    let out = b.run(&s, &["verify", "with"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("(checked against the stored digest)"), "{}", stdout(&out));
    let out = b.run(&s, &["get", "with", "with.out"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains(&format!("sha256:{} (checked against the stored digest)", sha(&bytes))));

    // The digest record could not be written (as after a crash right after completing): the
    // digest is unknown, and get says it checked the size only.
    let proxy = Proxy::start(&s, "no-digests", &["--refuse-writes-to", "/.promote/digests/"]);
    let through = Bucket { endpoint: proxy.endpoint.clone(), prefix: b.prefix.clone() };
    assert_code(&through.run(&s, &["put", "large", "without"]), 0);
    assert!(!proxy.refused().is_empty(), "the digest record was attempted");
    let out = b.run(&s, &["get", "without", "without.out"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("size checked only"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("checked against the stored digest"), "{}", stdout(&out));
    let out = b.run(&s, &["get", "without", "-"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("size checked only"), "{}", stderr(&out));
    let out = b.run(&s, &["verify", "without", "--sha256", &sha(&bytes)]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("no digest is stored"), "{}", stdout(&out));
}

#[test]
fn an_object_over_the_servers_maximum_is_refused_before_it_uploads() {
    let s = Scratch::new();
    let b = Bucket::new("max-size");
    let bytes = data::bytes(41, 12 << 20);
    s.file("f", &bytes);
    let capped = |args: &[&str]| {
        let mut cmd = b.cmd(&s, args);
        cmd.env("PROMOTE_BACKEND__MAX_OBJECT_SIZE", "10MiB");
        cmd
    };
    // Size known: refused before any request (through a proxy that fails every request).
    let proxy = Proxy::start(&s, "max-size", &["--fail", "500", "InternalError"]);
    let through = Bucket { endpoint: proxy.endpoint.clone(), prefix: b.prefix.clone() };
    let out = through
        .cmd(&s, &["put", "f", "k", "--size", &bytes.len().to_string()])
        .env("PROMOTE_BACKEND__MAX_OBJECT_SIZE", "10MiB")
        .env("PROMOTE_BACKEND__CONDITIONAL_WRITES", "trust")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("max_object_size"), "{}", stderr(&out));
    assert_eq!(proxy.refused(), Vec::<String>::new(), "no request was sent");
    // Size unknown (stdin): refused as soon as it passes the maximum; nothing is left.
    let mut child = capped(&["put", "-", "k"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(&bytes);
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("max_object_size"), "{}", stderr(&out));
    assert_code(&b.run(&s, &["get", "k", "-"]), 5);
    assert!(b.leftovers(&s).is_empty(), "{:?}", b.leftovers(&s));
    // Under the maximum, the same object goes up.
    assert_code(&b.cmd(&s, &["put", "f", "k"]).env("PROMOTE_BACKEND__MAX_OBJECT_SIZE", "12MiB").output().unwrap(), 0);
}

#[test]
fn the_create_only_probe_runs_once_per_process_before_the_first_create() {
    let s = Scratch::new();
    let proxy = Proxy::start(&s, "probe-count", &["--refuse-writes-to", "/nothing-refused/"]);
    let b = Bucket::at(&proxy.endpoint, "probe-count");
    for (i, name) in ["tree/a", "tree/b", "tree/sub/c"].iter().enumerate() {
        std::fs::create_dir_all(s.path().join(name).parent().unwrap()).unwrap();
        s.file(name, &data::bytes(50 + i as u64, 1000 + i));
    }
    // Each probe run writes under its own name in .promote/probe/.
    let probes = || {
        let mut names: Vec<String> = proxy
            .requests()
            .iter()
            .filter(|r| r.starts_with("PUT "))
            .filter_map(|r| r.split("/.promote/probe/").nth(1))
            .map(|n| n.split(['?', '-']).take(2).collect::<Vec<_>>().join("-"))
            .collect();
        names.dedup();
        names.sort();
        names.dedup();
        names
    };
    assert_code(&b.run(&s, &["ls"]), 0);
    assert!(probes().is_empty(), "ls probed: {:?}", proxy.requests());
    assert_code(&b.run(&s, &["put", "tree", "t"]), 0);
    assert_eq!(probes().len(), 1, "one probe for three creates: {:?}", probes());
    assert_code(&b.run(&s, &["put", "tree/a", "x", "--replace"]), 0);
    assert_eq!(probes().len(), 1, "--replace needs no probe");
}

#[test]
fn a_bad_prefix_is_a_configuration_error() {
    let s = Scratch::new();
    let b = Bucket::new("prefix");
    for bad in ["a//b", "../up", "team/.promote/x"] {
        let out = b.cmd(&s, &["ls"]).env("PROMOTE_BACKEND__PREFIX", bad).output().unwrap();
        assert_code(&out, 2);
        assert!(stderr(&out).contains("backend.prefix"), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn faults_are_retried_by_status_and_a_plain_4xx_is_not() {
    let s = Scratch::new();
    let requests = |status: &str, s3_code: &str| {
        let proxy = Proxy::start(&s, &format!("fail-{status}-{s3_code}"), &["--fail", status, s3_code]);
        let b = Bucket::at(&proxy.endpoint, "faults");
        let out = b.cmd(&s, &["ls"]).env("PROMOTE_BACKEND__MAX_RETRIES", "2").output().unwrap();
        assert_ne!(code(&out), 0);
        assert!(stderr(&out).contains(s3_code), "the error names the S3 code: {}", stderr(&out));
        proxy.refused().len()
    };
    assert_eq!(requests("400", "InvalidArgument"), 1, "a plain 400 is final");
    assert_eq!(requests("503", "SlowDown"), 3, "a 503 is tried 1 + max_retries times");
    assert_eq!(requests("400", "RequestTimeout"), 3, "S3's RequestTimeout (a 400) is retried");
}

#[test]
fn reads_never_write_and_work_with_read_only_credentials() {
    let s = Scratch::new();
    let direct = Bucket::new("read-only");
    let (small, large) = (data::bytes(20, 1000), data::bytes(21, 12 << 20));
    s.file("small", &small);
    s.file("large", &large);
    assert_code(&direct.run(&s, &["put", "small", "small"]), 0);
    assert_code(&direct.run(&s, &["put", "large", "dir/large"]), 0);

    let proxy = Proxy::start(&s, "read-only", &["--read-only"]);
    let b = Bucket { endpoint: proxy.endpoint.clone(), prefix: direct.prefix.clone() };
    let out = b.run(&s, &["ls", "-r"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("small") && stdout(&out).contains("dir/large"), "{}", stdout(&out));
    let out = b.run(&s, &["ls", "-l"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains(&sha(&small)) && stdout(&out).contains("dir/"), "{}", stdout(&out));
    assert!(b.get(&s, "small") == small);
    assert!(b.get(&s, "dir/large") == large);
    let out = b.run(&s, &["get", "dir/large", "copy"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("checked against the stored digest"), "{}", stdout(&out));
    assert!(std::fs::read(s.path().join("copy")).unwrap() == large);
    for key in ["small", "dir/large"] {
        let out = b.run(&s, &["verify", key]);
        assert_code(&out, 0);
        assert!(stdout(&out).contains("verified"), "{}", stdout(&out));
    }
    assert_code(&b.run(&s, &["config", "show"]), 0);
    assert_code(&b.run(&s, &["recover", "--dry-run"]), 0);
    assert_eq!(proxy.refused(), Vec::<String>::new(), "read-only commands sent writes");
    assert!(proxy.requests().len() >= 8, "the reads went through the proxy: {:?}", proxy.requests());

    // A put needs write access: it fails with a clear error, and the proxy saw it try.
    let out = b.run(&s, &["put", "small", "new"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    assert!(!proxy.refused().is_empty(), "the put never reached the proxy");
    assert_code(&direct.run(&s, &["get", "new", "-"]), 5);
}

#[test]
fn memory_stays_bounded_on_a_1_gib_object() {
    let s = Scratch::new();
    let b = Bucket::new("rss");
    // Default part size and concurrency (8 MiB × 4 in flight).
    let peak = |key: &str, mib: u64| {
        let mut child = b
            .cmd(&s, &["put", "-", key, "--size", &(mib << 20).to_string()])
            .env_remove("PROMOTE_BACKEND__PART_SIZE")
            .env_remove("PROMOTE_BACKEND__MULTIPART_THRESHOLD")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut stdin = child.stdin.take().unwrap();
        let block = data::bytes(11, 8 << 20);
        let mut peak_kib = 0u64;
        for _ in 0..mib / 8 {
            stdin.write_all(&block).unwrap();
            peak_kib = peak_kib.max(hwm_kib(pid));
        }
        drop(stdin);
        // VmHWM is the process's own peak; read it until the process is gone.
        while child.try_wait().unwrap().is_none() {
            peak_kib = peak_kib.max(hwm_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(child.wait().unwrap().success());
        peak_kib / 1024
    };
    let small = peak("sixty-four-mib", 64);
    let large = peak("one-gib", 1024);
    eprintln!("peak RSS of an S3 put: 64 MiB object {small} MiB, 1 GiB object {large} MiB");
    assert!(large <= small + 16, "memory grows with the object: {small} MiB for 64 MiB, {large} MiB for 1 GiB");
    assert!(large < 96, "peak RSS {large} MiB");
    let out = b.run(&s, &["ls", "--json"]);
    assert!(stdout(&out).contains(&format!("\"size\":{}", 1u64 << 30)), "{}", stdout(&out));
}

fn hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

// ---- claims (completion claims on multipart objects) ------------------------------------------

/// `--if-version` on an object above the multipart threshold: the right version swaps (the key
/// being taken is what a swap expects, never a conflict), a stale one exits 3 and leaves the
/// object alone; no claim is left behind.
#[test]
fn if_version_on_a_multipart_object_swaps_or_exits_3() {
    let s = Scratch::new();
    let b = Bucket::new("cas-multipart");
    let versions: Vec<Vec<u8>> = (0..3).map(|i| data::bytes(300 + i, 12 << 20)).collect();
    for (i, bytes) in versions.iter().enumerate() {
        s.file(&format!("v{i}"), bytes);
    }
    let version = |out: &std::process::Output| {
        let receipt: serde_json::Value = serde_json::from_str(stdout(out).trim()).expect("a JSON receipt");
        receipt["version"].as_str().expect("a version").to_owned()
    };
    let out = b.run(&s, &["put", "v0", "big", "--json"]);
    assert_code(&out, 0);
    let v0 = version(&out);
    let out = b.run(&s, &["put", "v1", "big", "--if-version", &v0, "--json"]);
    assert_code(&out, 0);
    assert!(b.get(&s, "big") == versions[1], "the swap published v1");
    let out = b.run(&s, &["put", "v2", "big", "--if-version", &v0]);
    assert_code(&out, 3);
    assert!(b.get(&s, "big") == versions[1], "a stale swap replaced nothing");
    assert!(b.leftovers(&s).is_empty(), "no upload or claim left: {:?}", b.leftovers(&s));
}

/// `promote run` of `m.jsonl` (one large item, `key`, served at `path`) into `bucket`, throttled
/// to 4 MiB/s, SIGKILLed once the ledger records a checkpoint of at least one 5 MiB part; then
/// the throttle is lifted. Checks that nothing of it is on local disk or visible in the bucket.
fn kill_mid_upload(s: &Scratch, server: &HttpServer, bucket: &Bucket, path: &str, key: &str) {
    use crate::run::{MIB, file_sizes, kill, ledger_count, wait_for};
    server.throttle(path, 4 * MIB);
    let mut child = bucket
        .cmd(s, &["run", "m.jsonl", "--out", "run"])
        .env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sql = "SELECT COUNT(*) FROM jobs WHERE cp_upload IS NOT NULL AND cp_offset >= ?1";
    let five = (5 * MIB).to_string();
    wait_for("a checkpoint of an uploaded part", || {
        assert!(child.try_wait().unwrap().is_none(), "promote run ended before the test could interrupt it");
        ledger_count(&s.path().join("run"), sql, &[&five]) == 1
    });
    kill(child);
    let partials = file_sizes(&s.path().join("run/partials"));
    assert!(partials.is_empty(), "a partial file on local disk: {partials:?}");
    let got = bucket.cmd(s, &["get", key, "-"]).output().unwrap();
    assert_ne!(got.status.code(), Some(0), "the object is visible before it is whole");
    server.throttle(path, 0);
}

/// `promote run m.jsonl --out run --report report.json` into `bucket` (resumable from 1 MiB),
/// which must succeed: the report's one item, and what the process wrote to local disk
/// (`write_bytes`, what reached the block layer).
fn run_into(s: &Scratch, bucket: &Bucket) -> (serde_json::Value, u64) {
    let script = "$PROMOTE run m.jsonl --out run --report report.json || exit 9; grep '^write_bytes' /proc/$$/io";
    let mut run = s.shell(script);
    for (k, v) in bucket.cmd(s, &[]).get_envs() {
        if let Some(v) = v {
            run.env(k, v);
        }
    }
    let out = run.env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB").output().unwrap();
    assert_code(&out, 0);
    let written: u64 = stdout(&out).trim().trim_start_matches("write_bytes:").trim().parse().unwrap();
    let report = crate::run::read_json(&s.path().join("report.json"));
    (report["items"][0].clone(), written)
}

/// A large download into S3 streams into a multipart upload whose parts are the checkpoint:
/// no partial file on local disk, and after a SIGKILL the rerun goes on from the last part
/// recorded (a range request from there), with the hash state kept, so the object is every
/// byte, verified against the manifest's SHA-256. The rerun's local writes (`write_bytes`,
/// what reached the block layer) are the ledger's only: a tenth of the object at most, where
/// a download through a partial file writes the object again.
#[test]
fn a_large_download_into_s3_resumes_from_its_uploaded_parts_after_sigkill() {
    use crate::run::{MIB, line, server, write_manifest};
    let s = Scratch::new();
    let server = server();
    let bucket = Bucket::new("upload-resume");
    let len = 24 * MIB;
    let bytes = data::bytes(41, len as usize);
    let sha = promote_core::Sha256::of(&bytes).to_string();
    server.add("/big", bytes.clone());
    write_manifest(&s, "m.jsonl", &[line(&server.url("/big"), "big", Some((&sha, len)))]);
    kill_mid_upload(&s, &server, &bucket, "/big", "big");

    let (item, written) = run_into(&s, &bucket);
    assert!(written <= len / 10, "the rerun wrote {written} bytes locally for a {len}-byte object");
    assert_eq!((item["outcome"].as_str(), item["decision"].as_str()), (Some("promoted"), Some("resume")), "{item}");
    let fetched = item["fetched_bytes"].as_u64().unwrap();
    assert!(fetched <= len - 5 * MIB, "the rerun fetched {fetched} of {len} bytes: it did not go on from the parts");
    let last = server.requests("/big").into_iter().rev().find(|r| r.method == "GET").expect("the rerun's GET");
    let from = len - fetched;
    assert_eq!(last.range, Some(format!("bytes={from}-")), "the rerun's request goes on after the parts: {last:?}");
    assert_eq!(last.status, 206);
    assert!(bucket.get(&s, "big") == bytes, "the object is not the source's bytes");
    assert!(bucket.leftovers(&s).is_empty(), "an upload or marker left: {:?}", bucket.leftovers(&s));
}

/// The kept parts are not gone on from when their upload is gone (`promote recover` aborted
/// it: its writer was killed) or the source changed since (its ETag): the rerun fetches the
/// whole object again into a new upload, the kept one is aborted, and the object is the
/// source's bytes as they are now.
#[test]
fn a_large_download_into_s3_starts_over_when_its_upload_is_gone_or_its_source_changed() {
    use crate::run::{MIB, line, server, write_manifest};
    let s = Scratch::new();
    let server = server();
    let bucket = Bucket::new("upload-restart");
    let len = 16 * MIB;
    for (case, path, key) in [("upload gone", "/gone", "gone"), ("source changed", "/changed", "changed")] {
        let bytes = data::bytes(43, len as usize);
        server.add(path, bytes.clone());
        write_manifest(&s, "m.jsonl", &[line(&server.url(path), key, None)]);
        kill_mid_upload(&s, &server, &bucket, path, key);
        let now = if case == "upload gone" {
            let swept = bucket.run(&s, &["recover"]);
            assert_code(&swept, 0);
            bytes
        } else {
            let changed = data::bytes(44, len as usize);
            server.change(path, changed.clone());
            changed
        };
        let (item, _) = run_into(&s, &bucket);
        assert_eq!(
            (item["outcome"].as_str(), item["decision"].as_str(), item["fetched_bytes"].as_u64()),
            (Some("promoted"), Some("discard"), Some(len)),
            "{case}: {item}"
        );
        assert!(bucket.get(&s, key) == now, "{case}: the object is not the source's bytes");
        assert!(bucket.leftovers(&s).is_empty(), "{case}: an upload or marker left: {:?}", bucket.leftovers(&s));
        std::fs::remove_dir_all(s.path().join("run")).unwrap();
    }
}

/// A connection dropped mid-body is resumed by the same run from the parts recorded: the
/// retry asks for the bytes after them, and the object is whole.
#[test]
fn a_dropped_connection_into_s3_resumes_from_the_recorded_parts() {
    use crate::run::{MIB, line, server, write_manifest};
    let s = Scratch::new();
    let server = server();
    let bucket = Bucket::new("upload-drop");
    let len = 20 * MIB;
    let bytes = data::bytes(45, len as usize);
    server.add("/big", bytes.clone());
    // Slow enough for a checkpoint (every 2 s) of the first 5 MiB part before the drop.
    server.throttle("/big", 4 * MIB);
    server.drop_after("/big", 12 * MIB, 1);
    write_manifest(&s, "m.jsonl", &[line(&server.url("/big"), "big", None)]);
    let (item, _) = run_into(&s, &bucket);
    assert_eq!((item["outcome"].as_str(), item["attempts"].as_u64()), (Some("promoted"), Some(2)), "{item}");
    let gets: Vec<_> = server.requests("/big").into_iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    let from: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("the retry without `Range: bytes=N-`: {:?}", gets[1]));
    assert!(from >= 5 * MIB && from.is_multiple_of(5 * MIB), "the retry goes on from a part end, not {from}");
    assert!(bucket.get(&s, "big") == bytes, "the object is not the source's bytes");
}
