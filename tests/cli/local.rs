//! Local disk under real conditions: the syscalls of a publish, in order (strace); a dry-run
//! `recover` that takes no lock; a full disk (a small tmpfs); an unreadable directory in `ls`.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use promote_tests::data;

use crate::support::*;

/// The lines of an strace log, without the pid column.
fn trace_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("strace output");
    text.lines().map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).trim().to_owned()).collect()
}

/// Index of the first line at or after `from` that starts with one of `calls` and whose first
/// argument is the descriptor of `path` (strace -y prints `fd</path>`).
fn find(lines: &[String], from: usize, calls: &[&str], path: &str) -> Option<usize> {
    (from..lines.len()).find(|&i| {
        calls.iter().any(|c| lines[i].starts_with(&format!("{c}(")) && lines[i].contains(&format!("<{path}>)")))
    })
}

/// Puts `key` under strace and checks: data fsync of the staged file, then the no-replace
/// rename, then an fsync of the parent and of every directory up to the root. Returns the trace.
fn check_publish_order(s: &Scratch, key: &str) -> Vec<String> {
    let log = s.path().join(format!("strace-{}.txt", key.replace('/', "_")));
    let calls = "fsync,fdatasync,renameat2,rename,renameat,link,linkat,openat";
    let out = s.strace(&log, calls, &["put", "data.bin", key]).output().expect("run strace");
    assert_code(&out, 0);
    let lines = trace_lines(&log);
    let root = std::fs::canonicalize(s.root()).expect("root").display().to_string();
    let (leaf_dir, leaf) = key.rsplit_once('/').expect("a key with directories");
    // Under `strace -f` a call another thread interrupts prints as `<unfinished ...>` first.
    let target = format!("<{root}/{leaf_dir}>, \"{leaf}\", RENAME_NOREPLACE");
    let rename = lines
        .iter()
        .position(|l| {
            l.starts_with("renameat2(")
                && (l.ends_with(&format!("{target}) = 0")) || l.ends_with(&format!("{target} <unfinished ...>")))
        })
        .unwrap_or_else(|| panic!("no renameat2(RENAME_NOREPLACE) onto {key}:\n{}", lines.join("\n")));
    // The staged file's path, from the rename's first two arguments: `fd</…/staging>, "name"`.
    let staged = {
        let l = &lines[rename];
        let dir = &l[l.find('<').expect("dir") + 1..l.find('>').expect("dir")];
        let name = l.split('"').nth(1).expect("staged name");
        format!("{dir}/{name}")
    };
    let data_sync = find(&lines, 0, &["fsync", "fdatasync"], &staged)
        .unwrap_or_else(|| panic!("the staged data of {key} was never fsynced:\n{}", lines.join("\n")));
    assert!(data_sync < rename, "the staged data of {key} was fsynced after the rename:\n{}", lines.join("\n"));
    let mut dir = format!("{root}/{leaf_dir}");
    loop {
        assert!(
            find(&lines, rename + 1, &["fsync"], &dir).is_some(),
            "{dir} was not fsynced after publishing {key}:\n{}",
            lines.join("\n")
        );
        if dir == root {
            break;
        }
        dir = Path::new(&dir).parent().expect("parent").display().to_string();
    }
    lines
}

#[test]
fn publish_syncs_data_then_renames_then_syncs_every_directory_up_to_the_root() {
    let s = Scratch::new();
    s.file("data.bin", &data::bytes(1, 3 << 20));
    // Directories created by this put (and the store itself: opening it created the root, its
    // `.promote` and `.promote/staging`, so the directories holding them are fsynced)...
    let first = check_publish_order(&s, "a/b/c/first");
    let scratch = std::fs::canonicalize(s.path()).expect("scratch").display().to_string();
    for dir in [scratch.clone(), format!("{scratch}/promote-data"), format!("{scratch}/promote-data/.promote")] {
        assert!(
            find(&first, 0, &["fsync"], &dir).is_some(),
            "opening a new store did not fsync {dir}:\n{}",
            first.join("\n")
        );
    }
    // ...and found by the next one (a concurrent writer may have just created them).
    check_publish_order(&s, "a/b/c/second");
}

/// Starts `promote put - KEY`, feeds it 2 MiB (two whole chunks) and waits until its staging
/// file holds all of them; returns it with its stdin, still open.
fn start_slow_writer(s: &Scratch, key: &str, seed: u64) -> (Child, std::process::ChildStdin) {
    const FED: u64 = 2 << 20;
    let before = s.staging_files();
    let mut child = s.cmd(&["put", "-", key]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&data::bytes(seed, FED as usize)).expect("feed the writer");
    stdin.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(20);
    let landed = || {
        s.staging_files()
            .into_iter()
            .filter(|name| !before.contains(name))
            .any(|name| std::fs::metadata(s.root().join(".promote/staging").join(name)).is_ok_and(|m| m.size() >= FED))
    };
    while !landed() {
        assert!(Instant::now() < deadline, "no staging file of {key} reached {FED} bytes within 20s");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, stdin)
}

/// Every staging file with size, mtime and ctime (nanoseconds).
fn staging_snapshot(s: &Scratch) -> Vec<(String, u64, i64, i64, i64, i64)> {
    let mut all: Vec<_> = s
        .staging_files()
        .into_iter()
        .map(|name| {
            let m = std::fs::metadata(s.root().join(".promote/staging").join(&name)).expect("stat");
            (name, m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
        })
        .collect();
    all.sort();
    all
}

#[test]
fn recover_dry_run_takes_no_lock_changes_nothing_and_leaves_a_live_writer_alone() {
    let s = Scratch::new();
    let (mut dead, dead_stdin) = start_slow_writer(&s, "dead", 1);
    dead.kill().expect("SIGKILL");
    dead.wait().expect("reap");
    drop(dead_stdin);
    let (mut live, mut live_stdin) = start_slow_writer(&s, "live", 2);
    let before = staging_snapshot(&s);
    assert_eq!(before.len(), 2, "{before:?}");

    let log = s.path().join("strace-recover.txt");
    let out = s.strace(&log, "flock,fcntl", &["recover", "--dry-run"]).output().expect("run strace");
    assert_code(&out, 0);
    let text = stdout(&out);
    let verdicts = |verb: &str| text.lines().filter(|l| l.starts_with(verb)).count();
    assert_eq!(verdicts("would remove"), 1, "the dead writer's file would go:\n{text}");
    assert_eq!(verdicts("kept"), 1, "the live writer's file is kept:\n{text}");
    let lines = trace_lines(&log);
    let taking: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("flock(") || l.contains("F_SETLK") || l.contains("F_OFD_SETLK"))
        .collect();
    assert!(taking.is_empty(), "a dry run took locks: {taking:?}");
    let tested = lines.iter().filter(|l| l.contains("F_OFD_GETLK")).count();
    assert_eq!(tested, 2, "a dry run tests each staging file's lock without taking it:\n{}", lines.join("\n"));
    assert_eq!(staging_snapshot(&s), before, "a dry run changed a staging file");

    // The live writer was not disturbed: it finishes and publishes.
    live_stdin.write_all(b"the end").expect("write more");
    drop(live_stdin);
    assert!(live.wait().expect("wait").success(), "the live writer failed after a dry run");
    assert!(s.root().join("live").exists());
    let out = s.run(&["recover"]);
    assert_code(&out, 0);
    assert!(s.staging_files().is_empty(), "{}", stdout(&out));
}

#[test]
fn disk_full_is_one_clear_error_and_leaves_nothing() {
    let s = Scratch::new();
    let small = Mounted::tmpfs(&s.path().join("small"), "4m");
    let root = small.0.join("root");
    // An existing store, so the put's only line is its error (no "created a new store").
    std::fs::create_dir(&root).unwrap();
    s.file("big.bin", &data::bytes(3, 8 << 20));
    for (args, key) in
        [(["put", "big.bin", "full/streamed"], "full/streamed"), (["put", "-", "full/stdin"], "full/stdin")]
    {
        let mut cmd = s.cmd(&args);
        cmd.env("PROMOTE_BACKEND__ROOT", &root);
        if args[1] == "-" {
            cmd.stdin(std::fs::File::open(s.path().join("big.bin")).expect("open"));
        }
        let out = cmd.output().expect("run promote");
        assert_code(&out, 6);
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(key) && err.contains("No space left on device") && err.contains("is full"), "{err}");
        assert!(!root.join(key).exists(), "nothing published at {key}");
        let staging: Vec<_> = std::fs::read_dir(root.join(".promote/staging")).expect("staging").collect();
        assert!(staging.is_empty(), "staging left after a full disk: {staging:?}");
    }
    // Space is back once the failed put is gone: a small put still works.
    s.file("small.bin", b"fits");
    let out = s.cmd(&["put", "small.bin", "fits"]).env("PROMOTE_BACKEND__ROOT", &root).output().expect("run");
    assert_code(&out, 0);
}

#[test]
fn ls_fails_naming_a_directory_it_cannot_read() {
    let s = Scratch::new();
    s.file("x", b"x");
    for key in ["open/a", "closed/b"] {
        assert_code(&s.run(&["put", "x", key]), 0);
    }
    // Readable by a user other than root, except one directory. (The staging area stays
    // private to its owner: reading needs none of it.)
    for dir in [s.path().to_owned(), s.root(), s.root().join("open")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::set_permissions(s.root().join("closed"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let out = s.as_nobody(&["ls", "open/"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("open/a"));
    let out = s.as_nobody(&["ls"]);
    assert_code(&out, 6);
    let err = stderr(&out);
    assert!(err.contains("closed") && err.contains("Permission denied"), "{err}");
    assert!(stdout(&out).is_empty(), "no partial listing: {}", stdout(&out));
}
