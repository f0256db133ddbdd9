//! Staging files on local disk (`src/staging.rs`): how a staging file is opened, how a sweep
//! names what it finds, and that a sweep never follows, removes or blocks on what a writer did
//! not put there (a symbolic link, a FIFO).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use promote_core::{Expected, Key, Leftover, Store};
use promote_local::{LocalBackend, LocalConfig};

/// The bound on every wait in these tests.
const BOUND: Duration = Duration::from_secs(10);

fn open(root: &Path) -> Store {
    Store::new(Arc::new(LocalBackend::open(LocalConfig::at(root)).expect("open")))
}

fn staging_dir(root: &Path) -> PathBuf {
    root.join(".promote/staging")
}

/// The names in the staging directory.
fn staging_files(root: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(staging_dir(root)).expect("staging dir");
    let mut names: Vec<_> = entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The `flags:` of this process's descriptor open on `path` (from `/proc/self/fdinfo`).
fn open_flags(path: &Path) -> u32 {
    let path = path.canonicalize().expect("canonical path");
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let fd = entry.expect("fd entry").file_name();
        if std::fs::read_link(Path::new("/proc/self/fd").join(&fd)).ok().as_deref() != Some(path.as_path()) {
            continue;
        }
        let info = std::fs::read_to_string(Path::new("/proc/self/fdinfo").join(&fd)).expect("fdinfo");
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).expect("a flags line");
        return u32::from_str_radix(flags.trim(), 8).expect("octal flags");
    }
    panic!("no descriptor of this process is open on {}", path.display());
}

/// A staging file is created private (0600), and its descriptor is write-only and
/// close-on-exec, so a program the writer starts does not inherit it (and with it the lock
/// that tells a sweep the writer lives). A dry run lists it under its path from the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_file_is_private_write_only_and_close_on_exec() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let staged = store.stage(&Key::new("a/b").expect("key"), &Expected::default()).await.expect("stage");
    let names = staging_files(dir.path());
    assert_eq!(names.len(), 1, "one staging file: {names:?}");
    assert!(names[0].ends_with(".part"), "{names:?}");
    let path = staging_dir(dir.path()).join(&names[0]);

    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "staging file mode {mode:o}");
    let flags = open_flags(&path);
    assert_eq!(flags & libc::O_ACCMODE as u32, libc::O_WRONLY as u32, "write-only; flags {flags:o}");
    assert_ne!(flags & libc::O_CLOEXEC as u32, 0, "close-on-exec; flags {flags:o}");

    let found = store.sweep_staging(Duration::from_secs(3600), true).await.expect("dry run");
    let names: Vec<_> = found.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, [format!(".promote/staging/{}", staging_files(dir.path())[0])], "{found:?}");
    assert!(found[0].live && !found[0].removed, "{found:?}");
    drop(staged);
}

/// A leftover whose writer is gone (no lock on it) is named by its path from the root; a dry
/// run says it would go and keeps it, a real sweep removes it, however young it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_without_a_writer_is_named_and_removed_however_young() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let name = "0123456789abcdef-1-0-00000000.part";
    std::fs::write(staging_dir(dir.path()).join(name), b"partial").expect("a crashed writer's leftover");
    let shown = format!(".promote/staging/{name}");

    let found = store.sweep_staging(Duration::from_secs(3600), true).await.expect("dry run");
    let expected = |removed| (shown.clone(), Some(7), false, removed);
    let seen = |l: &Leftover| (l.name.clone(), l.size, l.live, l.removed);
    assert_eq!(found.iter().map(seen).collect::<Vec<_>>(), [expected(true)], "{found:?}");
    assert_eq!(staging_files(dir.path()), [name], "a dry run removed it");

    let found = store.sweep_staging(Duration::from_secs(3600), false).await.expect("sweep");
    assert_eq!(found.iter().map(seen).collect::<Vec<_>>(), [expected(true)], "{found:?}");
    assert!(staging_files(dir.path()).is_empty(), "the leftover is still there");
}

/// Runs a sweep on a thread of its own and waits for it within [`BOUND`]; on time out,
/// `unstick` is called (to let the blocked thread go) and the test fails.
fn sweep_bounded(root: &Path, dry_run: bool, unstick: impl FnOnce()) -> Result<Vec<Leftover>, promote_core::Error> {
    let store = open(root);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _ = tx.send(runtime.block_on(store.sweep_staging(Duration::from_secs(3600), dry_run)));
    });
    match rx.recv_timeout(BOUND) {
        Ok(result) => result,
        Err(_) => {
            unstick();
            panic!("a sweep (dry run: {dry_run}) did not end within {BOUND:?}");
        }
    }
}

/// A FIFO in the staging directory (no writer's file) does not block a sweep, dry or real:
/// opening it never waits for a partner, and it is neither listed as a leftover nor removed.
#[test]
fn a_fifo_in_staging_never_blocks_a_sweep_and_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(open(dir.path()));
    let fifo = staging_dir(dir.path()).join("planted.part");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .expect("mkfifo");
    // Opens the other end without waiting, which wakes an open blocked on this one.
    let unstick = || {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
        let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
    };
    for dry_run in [true, false] {
        // A real sweep may refuse the entry with an error; either way it ends, and lists nothing
        // to remove.
        if let Ok(found) = sweep_bounded(dir.path(), dry_run, unstick) {
            assert!(found.is_empty(), "dry run {dry_run}: a FIFO listed as a leftover: {found:?}");
        }
        assert_eq!(staging_files(dir.path()), ["planted.part"], "dry run {dry_run}");
    }
}

/// A symbolic link in the staging directory is not followed: its target is not locked, listed
/// or touched, and the link is not removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_in_staging_is_not_followed_or_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    let store = open(&root);
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, b"not promote's").expect("target");
    let link = staging_dir(&root).join("planted.part");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    for dry_run in [true, false] {
        // The sweep may refuse the entry with an error; it must not act on what the link points to.
        if let Ok(found) = store.sweep_staging(Duration::ZERO, dry_run).await {
            assert!(found.is_empty(), "dry run {dry_run}: the link's target was listed: {found:?}");
        }
        assert!(std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()), "dry run {dry_run}");
        assert_eq!(std::fs::read(&target).expect("target"), b"not promote's", "dry run {dry_run}");
    }
}
