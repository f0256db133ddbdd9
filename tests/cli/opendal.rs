//! The CLI with `kind = "opendal"`: against the S3 server (`scheme = "s3"`) and Azurite
//! (`scheme = "azblob"`) that `tests/run` starts, the same races, kills and digest checks as for
//! the S3 backend; and `scheme = "fs"`, where create-only is refused and `--replace` works.

use std::process::Command;

use promote_tests::data;

use crate::support::*;

/// A fresh root on one OpenDAL service, configured through the environment as a user would.
struct Target {
    env: Vec<(String, String)>,
}

impl Target {
    fn root(name: &str) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        format!("/cli-opendal/{name}-{}-{nanos}/", std::process::id())
    }

    fn new(scheme: &str, options: Vec<(&str, String)>) -> Self {
        let mut env = vec![
            ("PROMOTE_BACKEND__KIND".to_owned(), "opendal".to_owned()),
            ("PROMOTE_BACKEND__SCHEME".to_owned(), scheme.to_owned()),
            ("PROMOTE_BACKEND__MULTIPART_THRESHOLD".to_owned(), "5MiB".to_owned()),
            ("PROMOTE_BACKEND__PART_SIZE".to_owned(), "5MiB".to_owned()),
        ];
        for (k, v) in options {
            env.push((format!("PROMOTE_BACKEND__OPTIONS__{}", k.to_uppercase()), v));
        }
        Self { env }
    }

    fn s3(name: &str) -> Self {
        Self::s3_at(&var("PROMOTE_TEST_S3_ENDPOINT"), &Self::root(name))
    }

    /// `scheme = "s3"` through `endpoint` (the S3 server, or a proxy in front of it), at `root`.
    fn s3_at(endpoint: &str, root: &str) -> Self {
        Self::new(
            "s3",
            vec![
                ("bucket", var("PROMOTE_TEST_S3_BUCKET")),
                ("endpoint", endpoint.to_owned()),
                ("region", "us-east-1".into()),
                ("access_key_id", var("AWS_ACCESS_KEY_ID")),
                ("secret_access_key", var("AWS_SECRET_ACCESS_KEY")),
                ("disable_config_load", "true".into()),
                ("disable_ec2_metadata", "true".into()),
                ("root", root.to_owned()),
            ],
        )
    }

    fn azblob(name: &str) -> Self {
        Self::azblob_at(&var("PROMOTE_TEST_AZBLOB_ENDPOINT"), &Self::root(name))
    }

    /// `scheme = "azblob"` through `endpoint` (Azurite, or a proxy in front of it), at `root`.
    fn azblob_at(endpoint: &str, root: &str) -> Self {
        Self::new(
            "azblob",
            vec![
                ("container", var("PROMOTE_TEST_AZBLOB_CONTAINER")),
                ("endpoint", endpoint.to_owned()),
                ("account_name", var("PROMOTE_TEST_AZBLOB_ACCOUNT_NAME")),
                ("account_key", var("PROMOTE_TEST_AZBLOB_ACCOUNT_KEY")),
                ("root", root.to_owned()),
            ],
        )
    }

    fn both(name: &str) -> [(&'static str, Self); 2] {
        [("s3", Self::s3(name)), ("azblob", Self::azblob(name))]
    }
}

impl Remote for Target {
    /// `promote` on this target; its staging area in the scratch dir.
    fn cmd(&self, s: &Scratch, args: &[&str]) -> Command {
        let mut cmd = s.cmd(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v))).env("PROMOTE_BACKEND__STAGING_DIR", s.path().join("staging"));
        cmd
    }
}

/// 8 processes put different bytes to one key: exactly one wins, the others are conflicts.
fn race(name: &str, size: usize) {
    for (scheme, t) in Target::both(name) {
        let s = Scratch::new();
        let files = racer_files(&s, 300, size);
        let (winner, _) = race_eight(scheme, |i| t.cmd(&s, &["put", &format!("f{i}"), "key"]));
        assert!(t.get(&s, "key") == files[winner], "{scheme}: the object is the winner's bytes");
        assert!(t.leftovers(&s).is_empty(), "{scheme}: {:?}", t.leftovers(&s));
    }
}

#[test]
fn eight_processes_race_small_one_winner() {
    race("race-small", 100_000);
}

#[test]
fn eight_processes_race_multipart_one_winner() {
    race("race-multipart", 12 << 20);
}

#[test]
fn sigkill_mid_upload_leaves_no_object_and_recover_removes_the_staging() {
    for (scheme, t) in Target::both("crash") {
        sigkill_mid_upload(scheme, &t, &Scratch::new(), "staged file");
    }
}

#[test]
fn wrong_sha256_publishes_nothing_small_or_multipart() {
    for (scheme, t) in Target::both("verify") {
        let s = Scratch::new();
        for (name, len) in [("small", 1000), ("large", 12 << 20)] {
            let bytes = data::bytes(10, len);
            s.file(name, &bytes);
            let out = t.run(&s, &["put", name, name, "--sha256", &sha(b"not these bytes")]);
            assert_code(&out, 4);
            assert_code(&t.run(&s, &["get", name, "-"]), 5);
            let out = t.run(&s, &["put", name, name, "--sha256", &sha(&bytes)]);
            assert_code(&out, 0);
            assert!(t.get(&s, name) == bytes, "{scheme} {name}");
            assert_code(&t.run(&s, &["verify", name, "--sha256", &sha(&bytes)]), 0);
            let out = t.run(&s, &["put", name, name, "--sha256", &sha(&bytes), "--json"]);
            assert_code(&out, 0);
            assert!(stdout(&out).contains("already-present"), "{scheme} {name}: {}", stdout(&out));
        }
        assert!(t.leftovers(&s).is_empty(), "{scheme}");
    }
}

#[test]
fn doctor_is_green_and_races_a_probe_key() {
    for (scheme, t) in Target::both("doctor") {
        let s = Scratch::new();
        let out = t.run(&s, &["doctor"]);
        let text = stdout(&out);
        assert_code(&out, 0);
        assert!(text.contains("ok   service refuses a second create-only write"), "{scheme}: {text}");
        assert!(text.contains("ok   8 concurrent create-only writes have exactly one winner"), "{scheme}: {text}");
    }
}

#[test]
fn the_account_key_is_redacted_in_config_show() {
    let s = Scratch::new();
    let t = Target::azblob("show");
    let out = t.run(&s, &["config", "show"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("backend.options.account_key = \"***redacted***\""), "{text}");
    assert!(!text.contains(&var("PROMOTE_TEST_AZBLOB_ACCOUNT_KEY")), "{text}");
}

#[test]
fn fs_refuses_create_only_naming_the_service_and_replace_works() {
    let s = Scratch::new();
    let root = s.path().join("fs-root");
    std::fs::create_dir_all(&root).unwrap();
    let t = Target::new("fs", vec![("root", root.display().to_string())]);
    s.file("f", b"bytes for fs");
    let out = t.run(&s, &["put", "f", "k"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("\"fs\"") && err.contains("kind = \"local\"") && err.contains("--replace"), "{err}");
    assert_code(&t.run(&s, &["get", "k", "-"]), 5);
    let out = t.run(&s, &["put", "f", "k", "--replace"]);
    assert_code(&out, 0);
    assert!(t.get(&s, "k") == b"bytes for fs");
    assert_eq!(std::fs::read(root.join("k")).unwrap(), b"bytes for fs");
}

/// A large download into an OpenDAL service is written to local disk once: its partial, hashed
/// as it came in, is moved into the backend's staging area (not copied into it) and uploaded
/// from there. Counted by the kernel for the process (`write_bytes`, what reached the block
/// layer): within 10% of the object, where a copy into staging writes it twice.
#[test]
fn a_large_download_is_written_to_local_disk_once() {
    use crate::run::{MIB, big_file, line, sha_file, write_manifest};
    let s = Scratch::new();
    let server = promote_tests::http_server::HttpServer::start().expect("start the test HTTP server on 127.0.0.1");
    let len = 32 * MIB;
    let source = s.path().join("big.src");
    let sha = big_file(&source, 13, len);
    server.add_file("/big.bin", source.clone()).unwrap();
    for (scheme, t) in Target::both("written-once") {
        write_manifest(&s, "m.jsonl", &[line(&server.url("/big.bin"), "big.bin", Some((&sha, len)))]);
        let script = format!("$PROMOTE run -q m.jsonl --out run-{scheme} || exit 9; grep '^write_bytes' /proc/$$/io");
        let mut run = s.shell(&script);
        for (k, v) in t.cmd(&s, &[]).get_envs() {
            if let Some(v) = v {
                run.env(k, v);
            }
        }
        let out = run.env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB").output().unwrap();
        assert_code(&out, 0);
        let written: u64 = stdout(&out).trim().trim_start_matches("write_bytes:").trim().parse().unwrap();
        let what = format!("{scheme}: wrote {written} bytes for a {len}-byte object");
        assert!(written >= len * 9 / 10, "{what}: is the counter blind here?");
        assert!(written <= len * 11 / 10, "{what}: copied into staging, not written once");
        s.file("got.bin", &t.get(&s, "big.bin"));
        assert_eq!(sha_file(&s.path().join("got.bin")), sha, "{scheme}: the object is the source's bytes");
        let partials = std::fs::read_dir(s.path().join(format!("run-{scheme}/partials"))).unwrap().count();
        assert_eq!(partials, 0, "{scheme}: a partial left behind");
        assert!(t.leftovers(&s).is_empty(), "{scheme}: {:?}", t.leftovers(&s));
    }
}

/// A multi-part commit whose answer is lost (the test proxy closes the connection once the
/// server has committed: S3's CompleteMultipartUpload, Azure's Put Block List): OpenDAL's retry
/// sends it again, the server has forgotten the upload or finds the key taken, and promote finds
/// the key holding the bytes it verified (their SHA-256 in the object's metadata), so the put
/// reports its publish, not an error.
#[test]
fn a_completion_whose_answer_is_lost_is_still_published() {
    let bytes = data::bytes(43, 12 << 20);
    for scheme in ["s3", "azblob"] {
        let s = Scratch::new();
        s.file("big", &bytes);
        let root = Target::root("lost-completion");
        let (endpoint, at): (_, fn(&str, &str) -> Target) = match scheme {
            "s3" => (var("PROMOTE_TEST_S3_ENDPOINT"), Target::s3_at),
            _ => (var("PROMOTE_TEST_AZBLOB_ENDPOINT"), Target::azblob_at),
        };
        // The proxy forwards to the server's host and port; the path (Azurite's account) stays.
        let (origin, path) = match endpoint.splitn(4, '/').collect::<Vec<_>>()[..] {
            [scheme, "", host, path] => (format!("{scheme}//{host}"), format!("/{path}")),
            _ => (endpoint.clone(), String::new()),
        };
        let proxy = crate::s3::Proxy::start_for(&origin, &s, "lost", &["--lose-completion-of", "big.bin"]);
        let through = at(&format!("{}{path}", proxy.endpoint), &root);
        let out = through.run(&s, &["put", "big", "big.bin", "--sha256", &sha(&bytes), "--json"]);
        assert_code(&out, 0);
        let receipt: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("a JSON receipt");
        assert_eq!(receipt["outcome"], "promoted", "{scheme}: {receipt}");
        crate::s3::assert_once_lost_then_sent_again(&proxy);
        let direct = at(&endpoint, &root);
        assert!(direct.get(&s, "big.bin") == bytes, "{scheme}: the object is the bytes put");
        assert!(direct.leftovers(&s).is_empty(), "{scheme}: {:?}", direct.leftovers(&s));
    }
}
