//! `promote doctor` on the local backend: the filesystem type, the publish method, and the
//! warnings that go with them, on the test machine's real filesystem and on a tmpfs mount.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The detail doctor prints for check `name`, and whether it was a warning.
fn check<'a>(out: &'a str, name: &str) -> (&'a str, bool) {
    for line in out.lines() {
        for (tag, warn) in [("ok   ", false), ("warn ", true), ("FAIL ", false)] {
            if let Some(rest) =
                line.strip_prefix(tag).and_then(|r| r.strip_prefix(name)).and_then(|r| r.strip_prefix(": "))
            {
                return (rest, warn);
            }
        }
    }
    panic!("no {name:?} check in:\n{out}");
}

/// What `stat -f` calls the filesystem of `path`, in doctor's words.
fn fs_name(path: &Path) -> String {
    let out = Command::new("stat").args(["-f", "-c", "%T"]).arg(path).output().expect("coreutils stat");
    match String::from_utf8_lossy(&out.stdout).trim() {
        "ext2/ext3" => "ext4".into(),
        "overlayfs" => "overlay".into(),
        other => other.to_owned(),
    }
}

#[test]
fn doctor_names_the_filesystem_and_the_publish_method() {
    let s = Scratch::new();
    s.file("f", b"x");
    assert_code(&s.run(&["put", "f", "k"]), 0);
    let out = s.run(&["doctor"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let (fs, _) = check(&text, "filesystem");
    assert!(fs.starts_with(&fs_name(&s.root())), "doctor says {fs:?}, stat -f says {:?}", fs_name(&s.root()));
    let (method, warn) = check(&text, "publish method");
    assert!(!warn && (method.starts_with("renameat2") || method.starts_with("link + unlink")), "{method}");

    // JSON carries the same checks.
    let out = s.run(&["doctor", "--json"]);
    assert_code(&out, 0);
    let records: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for name in ["filesystem", "publish method"] {
        assert!(records.iter().any(|r| r["check"] == name), "{name} missing: {}", stdout(&out));
    }
}

#[test]
fn doctor_warns_that_tmpfs_is_not_durable() {
    let s = Scratch::new();
    let mount = Mounted::tmpfs(&s.path().join("mem"), "16m");
    let root = mount.0.join("store");
    s.file("f", b"x");
    let root = root.to_str().unwrap();
    assert_code(&s.run(&["--root", root, "put", "f", "k"]), 0);
    let out = s.run(&["--root", root, "doctor"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let (fs, warn) = check(&text, "filesystem");
    assert!(warn && fs.starts_with("tmpfs") && fs.contains("NOT durable across a reboot"), "{text}");
    // tmpfs has RENAME_NOREPLACE.
    assert_eq!(check(&text, "publish method"), ("renameat2 (RENAME_NOREPLACE)", false), "{text}");
    drop(mount);
}
