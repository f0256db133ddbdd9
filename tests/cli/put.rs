//! put / get / verify / ls / rm and their exit codes.

use promote_tests::data;

use crate::support::*;

#[test]
fn put_then_rerun_then_conflict() {
    let s = Scratch::new();
    let a = data::bytes(1, 10_000);
    s.file("a.bin", &a);
    let out = s.run(&["put", "a.bin", "k/a.bin", "--sha256", &sha(&a), "--size", "10000"]);
    assert_code(&out, 0);
    assert!(stdout(&out).starts_with("promoted"), "{}", stdout(&out));
    assert_eq!(std::fs::read(s.root().join("k/a.bin")).unwrap(), a);

    let out = s.run(&["put", "a.bin", "k/a.bin", "--json"]);
    assert_code(&out, 0);
    let receipt: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(receipt["outcome"], "already-present");
    assert_eq!(receipt["sha256"], sha(&a));

    s.file("b.bin", b"other bytes");
    let out = s.run(&["put", "b.bin", "k/a.bin"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("k/a.bin") && stderr(&out).lines().count() == 1, "{}", stderr(&out));
    assert_eq!(std::fs::read(s.root().join("k/a.bin")).unwrap(), a, "old bytes intact");

    assert_code(&s.run(&["put", "b.bin", "k/a.bin", "--replace"]), 0);
    assert_eq!(std::fs::read(s.root().join("k/a.bin")).unwrap(), b"other bytes");
    assert!(s.staging_files().is_empty());
}

#[test]
fn verification_failures_publish_nothing() {
    let s = Scratch::new();
    s.file("a.bin", b"abc");
    let out = s.run(&["put", "a.bin", "x", "--sha256", &sha(b"abd")]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("SHA-256 mismatch"), "{}", stderr(&out));
    let out = s.run(&["put", "a.bin", "x", "--size", "4"]);
    assert_code(&out, 4);
    assert!(!s.root().join("x").exists());
    assert!(s.staging_files().is_empty());
    // Same through the spool path.
    let out = s
        .cmd(&["put", "a.bin", "x", "--sha256", &sha(b"abd")])
        .env("PROMOTE_ENABLE_STREAMING", "false")
        .output()
        .unwrap();
    assert_code(&out, 4);
    assert!(!s.root().join("x").exists());
}

#[test]
fn both_paths_promote_from_stdin() {
    let s = Scratch::new();
    let bytes = data::bytes(2, 3 << 20);
    for (streaming, key) in [("true", "streamed"), ("false", "spooled")] {
        // strace shows which path was taken: the spool path creates and removes a spool file.
        let log = s.path().join(format!("{key}.strace"));
        let mut child = s
            .strace(&log, "openat,unlink,unlinkat", &["put", "-", key, "--sha256", &sha(&bytes)])
            .env("PROMOTE_ENABLE_STREAMING", streaming)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_code(&out, 0);
        assert_eq!(std::fs::read(s.root().join(key)).unwrap(), bytes, "{key}");
        let lines = trace(&log);
        let spool = |call: &str, also: &str| {
            lines.iter().any(|(_, l)| l.starts_with(call) && l.contains(".spool/.promote-spool-") && l.contains(also))
        };
        let (created, removed) = (spool("openat(", "O_CREAT"), spool("unlink", ""));
        if streaming == "true" {
            assert!(!created, "the streaming path made a spool file");
        } else {
            assert!(created && removed, "streaming = false: no spool file created ({created}) and removed ({removed})");
        }
        let left: Vec<_> = std::fs::read_dir(s.path().join(".spool")).unwrap().collect();
        assert!(left.is_empty(), "{key}: spool files left: {left:?}");
    }
}

#[test]
fn directory_put_get_verify_ls_rm() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("src/sub")).unwrap();
    s.file("src/one.txt", b"one");
    s.file("src/sub/two.txt", b"two");
    let out = s.run(&["put", "src", "set"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 2);
    let out = s.run(&["ls", "-r", "set/"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("set/one.txt") && stdout(&out).contains("set/sub/two.txt"));

    assert_code(&s.run(&["verify", "set/one.txt", "--sha256", &sha(b"one")]), 0);
    assert_code(&s.run(&["verify", "set/one.txt", "--sha256", &sha(b"two")]), 4);
    assert_code(&s.run(&["get", "set/sub/two.txt", "copy.txt"]), 0);
    assert_eq!(std::fs::read(s.path().join("copy.txt")).unwrap(), b"two");
    assert_code(&s.run(&["get", "set/sub/two.txt", "copy.txt"]), 3);
    let out = s.run(&["get", "set/one.txt", "-"]);
    assert_code(&out, 0);
    assert_eq!(out.stdout, b"one");

    assert_code(&s.run(&["rm", "set/one.txt"]), 0);
    assert_code(&s.run(&["rm", "set/one.txt"]), 5);
    assert_code(&s.run(&["get", "set/one.txt", "-"]), 5);
    assert_code(&s.run(&["verify", "nothing/here"]), 5);
}

#[test]
fn bit_rot_is_caught_on_get_and_verify() {
    let s = Scratch::new();
    let bytes = data::bytes(3, 100_000);
    s.file("a.bin", &bytes);
    assert_code(&s.run(&["put", "a.bin", "rot"]), 0);
    // Flip one byte in place, keeping size and mtime, as a failing disk would.
    let path = s.root().join("rot");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut rotten = bytes.clone();
    rotten[5000] ^= 0x40;
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&rotten, 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let out = s.run(&["get", "rot", "out.bin"]);
    assert_code(&out, 4);
    assert!(!s.path().join("out.bin").exists(), "a corrupt object is not copied out");
    assert_code(&s.run(&["verify", "rot"]), 4);
    // To stdout the bytes go out as they are read; the mismatch is reported after them (exit 4).
    // (A fresh object: damage once found is remembered, and then `get` refuses it up front.)
    assert_code(&s.run(&["put", "a.bin", "rot2"]), 0);
    let path = s.root().join("rot2");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&rotten, 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let out = s.run(&["get", "rot2", "-"]);
    assert_code(&out, 4);
    assert!(out.stdout == rotten, "get - wrote {} bytes, not the whole (damaged) object", out.stdout.len());
    assert!(stderr(&out).contains("rot2"), "{}", stderr(&out));
}

#[test]
fn bad_input_is_one_line_and_usage_code() {
    let s = Scratch::new();
    s.file("a", b"a");
    for args in [
        vec!["put", "a", "../escape"],
        vec!["put", "a", "/abs"],
        vec!["put", "a", "a//b"],
        vec!["put", "missing-file", "k"],
        vec!["put", "a", "k", "--sha256", "nothex"],
        vec!["put", "a", "k", "--if-version", "1"],
        vec!["get", "bad\\key", "-"],
        vec!["frobnicate"],
    ] {
        let out = s.run(&args);
        assert_code(&out, 2);
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = s.run(&["put", "a", ".promote/staging/x"]);
    assert_code(&out, 2);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("reserved"), "{}", stderr(&out));
}
