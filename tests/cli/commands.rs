//! The commands people reach for: stat, ls -l/-r, rm of many, get/verify -r, put to a prefix.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// A store holding `top/a`, `top/sub/b` and `c`.
fn populated() -> Scratch {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("d/sub")).unwrap();
    s.file("d/a", b"alpha");
    s.file("d/sub/b", b"bravo");
    s.file("c", b"charlie");
    assert_code(&s.run(&["put", "d", "top"]), 0);
    assert_code(&s.run(&["put", "c", "c"]), 0);
    s
}

#[test]
fn stat_shows_size_digest_version_and_time() {
    let s = populated();
    let out = s.run(&["stat", "top/a"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains(&sha(b"alpha")) && text.contains("5 B (5 bytes)") && text.contains("modified  20"), "{text}");
    let out = s.run(&["stat", "top/a", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["size"], 5);
    assert_eq!(v["sha256"], sha(b"alpha"));
    assert!(v["version"].is_string() && v["modified"].is_string(), "{v}");
    assert_code(&s.run(&["stat", "nope"]), 5);
}

#[test]
fn ls_lists_one_level_or_everything_and_long_has_columns() {
    let s = populated();
    let out = s.run(&["ls"]);
    assert_eq!(stdout(&out), "c\ntop/\n");
    assert_eq!(stdout(&s.run(&["ls", "top/"])), "top/a\ntop/sub/\n");
    assert_eq!(stdout(&s.run(&["ls", "-r"])), "c\ntop/a\ntop/sub/b\n");
    assert_eq!(stdout(&s.run(&["ls", "--recursive", "top/"])), "top/a\ntop/sub/b\n");
    let long = stdout(&s.run(&["ls", "-l", "-r"]));
    let line = long.lines().find(|l| l.ends_with("top/a")).unwrap();
    assert!(line.contains("5 B") && line.contains(&sha(b"alpha")) && line.contains("Z"), "{long}");
    // Columns line up: every key starts at the same offset.
    let starts: Vec<usize> = long.lines().map(|l| l.rfind("  ").unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{long}");
}

#[test]
fn rm_takes_many_keys_prefixes_and_force_and_prunes_empty_dirs() {
    let s = populated();
    let out = s.run(&["rm", "c", "top/a"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "removed c\nremoved top/a\n");
    assert_code(&s.run(&["rm", "c"]), 5);
    assert_code(&s.run(&["rm", "-f", "c"]), 0);
    let out = s.run(&["rm", "-r", "/"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--all"), "{}", stderr(&out));
    assert_code(&s.run(&["rm", "-r", "top/"]), 0);
    assert!(!s.root().join("top").exists(), "directories left empty are removed");
    assert!(s.root().exists(), "the root stays");

    let s = populated();
    assert_code(&s.run(&["rm", "-r", "--all", "/"]), 0);
    assert_eq!(stdout(&s.run(&["ls", "-r"])), "");
}

#[test]
fn get_recursive_copies_verified_files_with_cp_modes_and_never_clobbers() {
    let s = populated();
    let bin = env!("CARGO_BIN_EXE_promote");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask 027; exec {bin} get -r top/ out"))
        .current_dir(s.path())
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(std::fs::read(s.path().join("out/a")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(s.path().join("out/sub/b")).unwrap(), b"bravo");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.path().join("out/a")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "0666 less the umask, as cp gives");
    assert!(stderr(&out).contains("2 copied, 0 failed"), "{}", stderr(&out));

    s.file("out/a", b"mine");
    let out = s.run(&["get", "-r", "top/", "out"]);
    assert_code(&out, 3);
    assert_eq!(std::fs::read(s.path().join("out/a")).unwrap(), b"mine", "never clobbers without --force");
    assert_code(&s.run(&["get", "-r", "--force", "top/", "out"]), 0);
    assert_eq!(std::fs::read(s.path().join("out/a")).unwrap(), b"alpha");
}

#[test]
fn verify_recursive_summarises_and_fails_on_a_damaged_object() {
    let s = populated();
    let out = s.run(&["verify", "-r", "top/"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("2 verified, 0 failed"), "{}", stderr(&out));
    // Damage one in place, keeping its size and mtime.
    let path = s.root().join("top/sub/b");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(b"X", 0).unwrap();
    file.set_modified(mtime).unwrap();
    let out = s.run(&["verify", "-r", "top/"]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("1 verified, 1 failed"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("nothing was published"), "a read publishes nothing anyway: {}", stderr(&out));
}

#[test]
fn an_object_modified_since_promotion_is_not_verified() {
    let s = Scratch::new();
    s.file("f", b"original");
    assert_code(&s.run(&["put", "f", "k"]), 0);
    std::fs::write(s.root().join("k"), b"changed!!").unwrap();
    let out = s.run(&["verify", "k"]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("modified since it was promoted"), "{}", stderr(&out));
    let out = s.run(&["get", "k", "copy"]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("--force") && !s.path().join("copy").exists(), "{}", stderr(&out));
    assert_code(&s.run(&["get", "--force", "k", "copy"]), 0);
    assert_eq!(std::fs::read(s.path().join("copy")).unwrap(), b"changed!!");
    assert!(stdout(&s.run(&["stat", "k"])).contains("modified since promotion"));
    // A rerun re-hashes what is there: the original bytes now conflict, the new ones match.
    assert_code(&s.run(&["put", "f", "k"]), 3);
    s.file("g", b"changed!!");
    let out = s.run(&["put", "g", "k"]);
    assert_code(&out, 0);
    assert!(stdout(&out).starts_with("already-present"), "{}", stdout(&out));
}

#[test]
fn put_to_a_prefix_or_the_top_of_the_store() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("d")).unwrap();
    s.file("d/x", b"x");
    s.file("one", b"1");
    assert_code(&s.run(&["put", "d", "p/"]), 0);
    assert_code(&s.run(&["put", "d", "/"]), 0);
    assert_code(&s.run(&["put", "one", "q/"]), 0);
    assert_eq!(stdout(&s.run(&["ls", "-r"])), "p/x\nq/one\nx\n");
}

#[test]
fn symlinks_are_skipped_with_a_notice_or_followed_with_l() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("d")).unwrap();
    std::fs::create_dir_all(s.path().join("elsewhere")).unwrap();
    s.file("d/real", b"r");
    s.file("elsewhere/t", b"t");
    std::os::unix::fs::symlink("../elsewhere/t", s.path().join("d/link")).unwrap();
    std::os::unix::fs::symlink("../elsewhere", s.path().join("d/dirlink")).unwrap();
    let out = s.run(&["put", "d", "a"]);
    assert_code(&out, 0);
    assert_eq!(stderr(&out).matches("skipping symbolic link").count(), 2, "{}", stderr(&out));
    assert_eq!(stdout(&s.run(&["ls", "-r"])), "a/real\n");
    assert_code(&s.run(&["put", "-L", "d", "b"]), 0);
    assert_eq!(stdout(&s.run(&["ls", "-r", "b/"])), "b/dirlink/t\nb/link\nb/real\n");
}

#[test]
fn jobs_zero_is_refused_and_sizes_take_units() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("d")).unwrap();
    assert_code(&s.run(&["put", "d", "k", "--jobs", "0"]), 2);
    s.file("kib", &[1u8; 1024]);
    assert_code(&s.run(&["put", "kib", "k1", "--size", "1KiB"]), 0);
    let out = s.run(&["put", "kib", "k2", "--size", "1KB"]);
    assert_code(&out, 4);
    assert_code(&s.run(&["put", "kib", "k3", "--size", "1.5KiB"]), 2);
}

#[test]
fn a_rerun_with_the_stored_sha256_does_not_read_the_source() {
    let s = Scratch::new();
    s.file("f", b"payload");
    let digest = sha(b"payload");
    assert_code(&s.run(&["put", "f", "k", "--sha256", &digest]), 0);
    // A source that never ends: reading it would hang.
    let mut child =
        s.cmd(&["put", "-", "k", "--sha256", &digest]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"pay").unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the rerun read its source instead of answering from the stored digest");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(stdout(&out).starts_with("already-present"), "{}", stdout(&out));
}

#[test]
fn errors_say_what_to_do_and_escape_names() {
    let s = Scratch::new();
    s.file("a", b"a");
    s.file("b", b"b");
    assert_code(&s.run(&["put", "a", "k"]), 0);
    let out = s.run(&["put", "b", "k"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));

    std::fs::create_dir_all(s.path().join("d")).unwrap();
    s.file("d/back\\slash", b"x");
    s.file("d/new\nline", b"y");
    let out = s.run(&["put", "d", "p"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("back\\slash") && err.contains("backslash"), "{err}");
    assert!(err.contains("new\\nline") && !err.contains("new\nline"), "control characters escaped: {err}");
}

#[test]
fn directory_puts_end_with_a_summary_that_q_silences() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("d")).unwrap();
    s.file("d/new", b"new");
    s.file("d/old", b"old");
    s.file("d/back\\slash", b"x");
    s.file("old", b"old");
    assert_code(&s.run(&["put", "old", "p/old"]), 0);
    let out = s.run(&["put", "d", "p/"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    let summary = err.lines().last().unwrap();
    assert!(
        summary.starts_with("put: 3 files: 1 promoted, 1 already present, 1 failed; 6 B in ") && summary.ends_with('s'),
        "{err}"
    );
    let out = s.run(&["put", "d", "q/", "-q"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(!err.contains("put: ") && err.contains("backslash"), "-q drops the summary, not the errors: {err}");
    assert_eq!(stdout(&out).lines().count(), 0, "-q prints no receipts either: {}", stdout(&out));
    let out = s.run(&["get", "-r", "p/", "out"]);
    assert!(stderr(&out).contains("get: 2 objects: 2 copied, 0 failed; 6 B in "), "{}", stderr(&out));
    let out = s.run(&["get", "-r", "-q", "p/", "out2"]);
    assert_code(&out, 0);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}
