//! Reads never create anything: a read-only command on a missing root is an error, and
//! `doctor` leaves nothing behind.

use std::path::Path;

use crate::support::*;

/// Every path under `dir`, relative, sorted.
fn tree_of(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if path.is_dir() && !path.is_symlink() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn read_only_commands_on_a_missing_root_fail_and_create_nothing() {
    let s = Scratch::new();
    s.file("f", b"hello");
    let typo = s.path().join("typo");
    let root = typo.to_str().unwrap();
    let reads: [&[&str]; 7] = [
        &["ls"],
        &["ls", "-l", "-r", "--json"],
        &["get", "k", "out"],
        &["stat", "k"],
        &["verify", "k"],
        &["recover", "--dry-run"],
        &["rm", "k"],
    ];
    for args in reads {
        let out = s.run(&[&["--root", root][..], args].concat());
        assert_code(&out, 2);
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.contains(&format!("no store at {root}")) && err.contains("`promote put` or mkdir"),
            "{args:?}: {err}"
        );
        assert!(!typo.exists(), "{args:?} created the root");
    }
    // doctor reports it as a failed check, and creates nothing either.
    let out = s.run(&["--root", root, "doctor"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("FAIL backend") && stdout(&out).contains("no store at"), "{}", stdout(&out));
    assert!(!typo.exists(), "doctor created the root");
    assert!(!s.path().join("out").exists());

    // Writes still create the root.
    let out = s.run(&["--root", root, "put", "f", "k"]);
    assert_code(&out, 0);
    assert!(typo.join("k").is_file());
    let out = s.run(&["--root", root, "stat", "k"]);
    assert_code(&out, 0);
}

#[test]
fn recover_without_dry_run_still_creates_the_root() {
    let s = Scratch::new();
    let root = s.path().join("fresh");
    let out = s.run(&["--root", root.to_str().unwrap(), "recover"]);
    assert_code(&out, 0);
    assert!(root.join(".promote/staging").is_dir());
}

#[test]
fn reads_of_a_plain_directory_create_no_staging_area() {
    let s = Scratch::new();
    let plain = s.path().join("plain");
    std::fs::create_dir_all(plain.join("sub")).unwrap();
    std::fs::write(plain.join("sub/a"), b"a").unwrap();
    let before = tree_of(&plain);
    let root = plain.to_str().unwrap();
    for args in [&["ls", "-r"][..], &["stat", "sub/a"], &["verify", "sub/a"], &["recover", "--dry-run"], &["doctor"]] {
        let out = s.run(&[&["--root", root][..], args].concat());
        assert_code(&out, 0);
        assert_eq!(tree_of(&plain), before, "{args:?} changed the store");
    }
    let out = s.run(&["--root", root, "ls", "-r"]);
    assert_eq!(stdout(&out), "sub/a\n");
    let out = s.run(&["--root", root, "doctor"]);
    assert!(stdout(&out).contains("warn probe: skipped"), "{}", stdout(&out));
}

#[test]
fn doctor_leaves_nothing_behind_in_a_store() {
    let s = Scratch::new();
    s.file("f", b"hello");
    assert_code(&s.run(&["put", "f", "k"]), 0);
    let before = tree_of(&s.root());
    let out = s.run(&["doctor"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("ok   probe: cleanup"), "{}", stdout(&out));
    assert_eq!(tree_of(&s.root()), before, "doctor left something behind");
}
