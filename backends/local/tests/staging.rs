//! Staging files on local disk (`src/staging.rs`): how a staging file is opened, how a sweep
//! names what it finds, and that a sweep never follows, removes or blocks on what a writer did
//! not put there (a symbolic link, a FIFO, a directory), and is not failed by it either.
//!
//! Two tests run this test binary again as a child under `strace`, as `tests/syncs.rs` does: one
//! holds the child's lock calls back so that a sweep can remove its staging file between its
//! creation and its lock, one records the opens of a sweep. strace must be installed
//! (`tests/run` installs it); those tests fail, never skip, without it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use promote_core::{Bytes, Expected, Key, Leftover, Mode, Store};
use promote_local::{LocalBackend, LocalConfig};

/// The bound on every wait in these tests.
const BOUND: Duration = Duration::from_secs(10);

/// Set in a child (this test binary run again): what it does (`publish`, `sweep`).
const CHILD: &str = "PROMOTE_STAGING_TEST_CHILD";
/// Set in a child: the store's root.
const CHILD_ROOT: &str = "PROMOTE_STAGING_TEST_ROOT";

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

/// A FIFO in the staging directory (no writer's file) neither blocks nor fails a sweep, dry or
/// real: it is never opened, and it is neither listed as a leftover nor removed.
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
        let found = sweep_bounded(dir.path(), dry_run, unstick)
            .unwrap_or_else(|e| panic!("dry run {dry_run}: a FIFO failed the sweep: {e}"));
        assert!(found.is_empty(), "dry run {dry_run}: a FIFO listed as a leftover: {found:?}");
        assert_eq!(staging_files(dir.path()), ["planted.part"], "dry run {dry_run}");
    }
}

/// A symbolic link in the staging directory is not followed and does not fail a sweep: its
/// target is not locked, listed or touched, and the link is not removed.
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
        let found = store
            .sweep_staging(Duration::ZERO, dry_run)
            .await
            .unwrap_or_else(|e| panic!("dry run {dry_run}: a symbolic link failed the sweep: {e}"));
        assert!(found.is_empty(), "dry run {dry_run}: the link's target was listed: {found:?}");
        assert!(std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()), "dry run {dry_run}");
        assert_eq!(std::fs::read(&target).expect("target"), b"not promote's", "dry run {dry_run}");
    }
}

/// Runs a sweep on a thread of its own, its blocking steps on that thread (see
/// `promote_core::kit::blocking::here`) with its log captured, and waits for it within
/// [`BOUND`]. Returns the sweep's result and the log.
fn sweep_logged(root: &Path, dry_run: bool) -> (Result<Vec<Leftover>, promote_core::Error>, String) {
    #[derive(Clone, Default)]
    struct Log(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let store = open(root);
    let log = Log::default();
    let writer = log.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let found = promote_core::kit::blocking::here(|| {
            runtime.block_on(store.sweep_staging(Duration::from_secs(3600), dry_run))
        });
        let _ = tx.send(found);
    });
    let found =
        rx.recv_timeout(BOUND).unwrap_or_else(|_| panic!("a sweep (dry run: {dry_run}) did not end within {BOUND:?}"));
    let text = String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned();
    (found, text)
}

/// What is not a regular file in the staging directory (a FIFO, a directory, a symbolic
/// link) is not promote's: a dry run and a real sweep both succeed, leave each such entry as
/// it is (the link's target and the directory's content too), say so in a warning naming it,
/// and still deal with the real leftover next to them.
#[test]
fn a_sweep_leaves_what_is_not_a_regular_file_in_place_and_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    drop(open(&root));
    let staging = staging_dir(&root);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        staging.join("a-fifo.part"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    std::fs::create_dir(staging.join("a-dir.part")).expect("directory");
    std::fs::write(staging.join("a-dir.part/inside"), b"kept").expect("a file in the directory");
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, b"not promote's").expect("target");
    std::os::unix::fs::symlink(&target, staging.join("a-link.part")).expect("symlink");
    let leftover = "0123456789abcdef-1-0-00000000.part";
    std::fs::write(staging.join(leftover), b"partial").expect("a crashed writer's leftover");
    let foreign = ["a-dir.part", "a-fifo.part", "a-link.part"];

    for dry_run in [true, false] {
        let (found, log) = sweep_logged(&root, dry_run);
        let found = found.unwrap_or_else(|e| panic!("dry run {dry_run}: the sweep failed: {e}"));
        let seen: Vec<_> = found.iter().map(|l| (l.name.as_str(), l.removed)).collect();
        assert_eq!(seen, [(format!(".promote/staging/{leftover}").as_str(), true)], "dry run {dry_run}");
        for name in foreign {
            let line = log.lines().find(|l| l.contains(&format!(".promote/staging/{name}")));
            let line = line.unwrap_or_else(|| panic!("dry run {dry_run}: no warning names {name}:\n{log}"));
            assert!(line.contains("WARN") && line.contains("left in place"), "{line}");
        }
        let mut expected: Vec<&str> = foreign.to_vec();
        if dry_run {
            expected.push(leftover);
            expected.sort_unstable();
        }
        assert_eq!(staging_files(&root), expected, "dry run {dry_run}");
        assert!(std::fs::symlink_metadata(staging.join("a-link.part")).expect("link").file_type().is_symlink());
        assert_eq!(std::fs::read(&target).expect("target"), b"not promote's");
        assert_eq!(std::fs::read(staging.join("a-dir.part/inside")).expect("inside"), b"kept");
    }
}

/// A sweep of a staging directory that holds only promote's own files warns about nothing (not
/// about `.` and `..`, which it skips), dry or real.
#[test]
fn a_sweep_of_promotes_own_files_warns_about_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    drop(open(&root));
    let leftover = "0123456789abcdef-1-0-00000000.part";
    std::fs::write(staging_dir(&root).join(leftover), b"partial").expect("a crashed writer's leftover");
    for dry_run in [true, false] {
        let (found, log) = sweep_logged(&root, dry_run);
        let found = found.unwrap_or_else(|e| panic!("dry run {dry_run}: the sweep failed: {e}"));
        let names: Vec<_> = found.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, [format!(".promote/staging/{leftover}")], "dry run {dry_run}");
        assert!(!log.contains("WARN"), "dry run {dry_run}: a warning:\n{log}");
    }
}

/// Checks that `strace` is there (the tests that use it fail without it, never skip).
fn strace_installed() {
    let found = Command::new("strace").arg("-V").output();
    assert!(found.is_ok_and(|o| o.status.success()), "strace is not installed (apt-get install strace); never skipped");
}

/// Starts this test binary again, running only `test` as a child that does `role` on the store
/// at `root`, under `strace` with `strace_args`, and returns a receiver for its output.
fn spawn_traced(
    test: &str,
    role: &str,
    root: &Path,
    strace_args: &[&str],
) -> std::sync::mpsc::Receiver<std::io::Result<Output>> {
    strace_installed();
    let exe = std::env::current_exe().expect("the test binary");
    let child = Command::new("strace")
        .args(strace_args)
        .arg("--")
        .arg(exe)
        .args(["--exact", test, "--nocapture"])
        .env(CHILD, role)
        .env(CHILD_ROOT, root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run strace");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx
}

/// Waits within `bound` for a child started by [`spawn_traced`] and checks that it succeeded.
fn child_succeeded(rx: &std::sync::mpsc::Receiver<std::io::Result<Output>>, bound: Duration, what: &str) {
    let out = rx
        .recv_timeout(bound)
        .unwrap_or_else(|_| panic!("{what}: the child did not end within {bound:?}"))
        .expect("wait for the child");
    assert!(
        out.status.success(),
        "{what}: the child failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a child does, by `role`: `publish` promotes `swept/early` (create-only); `sweep` makes a
/// dry run and then a real sweep.
fn child(role: &str, root: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = open(root);
        match role {
            "publish" => {
                let key = Key::new("swept/early").expect("key");
                let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"kept"))]);
                store.promote_stream(&key, body, &Expected::default(), Mode::Create).await.expect("promote");
            }
            "sweep" => {
                for dry_run in [true, false] {
                    store.sweep_staging(Duration::from_secs(3600), dry_run).await.expect("sweep");
                }
            }
            other => panic!("no child role {other}"),
        }
    });
}

/// How long each of the child's `fcntl` calls is held back (microseconds, as strace takes it):
/// a second, far longer than the sweep here needs to see and remove the fresh staging file (a
/// few milliseconds; some tens on a loaded machine). strace cannot single out the lock among the
/// child's `fcntl` calls (a debug build also makes one to check each descriptor it closes), so
/// they all wait, about ten in all.
const FCNTL_HELD_BACK_US: &str = "1000000";

/// The bound on the wait for a child whose `fcntl` calls are held back.
const SLOW_CHILD_BOUND: Duration = Duration::from_secs(60);

/// A sweep can find a fresh staging file unlocked and remove it between its creation and its
/// writer taking the lock. The writer then does not go on with the removed file (its data
/// would land nowhere and its publish fail): it takes a fresh name, and its publish succeeds.
/// The writer runs in a child under strace, which holds each of its `fcntl` calls (the lock
/// among them) back; the sweep runs here as soon as the staging file appears.
#[test]
fn a_staging_file_swept_before_its_writer_locks_it_is_given_up() {
    const TEST: &str = "a_staging_file_swept_before_its_writer_locks_it_is_given_up";
    if let Ok(role) = std::env::var(CHILD) {
        child(&role, Path::new(&std::env::var(CHILD_ROOT).expect("root")));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let delay = format!("inject=fcntl:delay_enter={FCNTL_HELD_BACK_US}");
    let root = dir.path().join("root");
    drop(open(&root));
    let rx = spawn_traced(TEST, "publish", &root, &["-f", "-qq", "-o", "/dev/null", "-e", "trace=fcntl", "-e", &delay]);

    // The staging file appears when the child creates it; its lock is held back meanwhile.
    let started = std::time::Instant::now();
    let first = loop {
        if let Some(name) = staging_files(&root).into_iter().next() {
            break name;
        }
        assert!(started.elapsed() < SLOW_CHILD_BOUND, "no staging file within {SLOW_CHILD_BOUND:?}");
        std::thread::sleep(Duration::from_millis(1));
    };
    let appeared = std::time::Instant::now();
    let found = sweep_bounded(&root, false, || {}).expect("sweep");
    let seen: Vec<_> = found.iter().map(|l| (l.name.as_str(), l.live, l.removed)).collect();
    assert_eq!(
        seen,
        [(format!(".promote/staging/{first}").as_str(), false, true)],
        "the sweep, {:?} after the file appeared, found it unlocked and removed it",
        appeared.elapsed()
    );

    child_succeeded(&rx, SLOW_CHILD_BOUND, "publish after the sweep");
    assert_eq!(std::fs::read(root.join("swept/early")).expect("published"), b"kept");
    assert!(staging_files(&root).is_empty(), "{:?}", staging_files(&root));
}

/// Every descriptor a sweep opens in the staging directory, dry or real, is close-on-exec, so a
/// program started meanwhile inherits none (neither the directory nor a leftover, whose lock
/// would then live on in it); a leftover is opened without following a link and without
/// waiting (`O_NOFOLLOW`, `O_NONBLOCK`). Recorded by strace around a child's sweeps.
#[test]
fn a_sweep_opens_everything_close_on_exec() {
    const TEST: &str = "a_sweep_opens_everything_close_on_exec";
    if let Ok(role) = std::env::var(CHILD) {
        child(&role, Path::new(&std::env::var(CHILD_ROOT).expect("root")));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    drop(open(&root));
    let leftover = "0123456789abcdef-1-0-00000000.part";
    std::fs::write(staging_dir(&root).join(leftover), b"partial").expect("a crashed writer's leftover");
    let log = dir.path().join("sweep.strace");
    let log_arg = log.to_str().expect("a UTF-8 path");
    let rx = spawn_traced(TEST, "sweep", &root, &["-f", "-qq", "-y", "-e", "trace=openat", "-o", log_arg]);
    child_succeeded(&rx, BOUND, "sweep");
    assert!(staging_files(&root).is_empty(), "the real sweep left {:?}", staging_files(&root));

    // `openat(5</…/root/.promote/staging>, "name", FLAGS) = 6</…>`, after the thread id.
    let text = std::fs::read_to_string(&log).expect("strace log");
    let opens: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.trim()))
        .filter(|l| l.starts_with("openat("))
        .filter_map(|l| l.split_once("/.promote/staging>, \""))
        .filter_map(|(_, rest)| rest.split_once('"'))
        .collect();
    let of = |name: &str| opens.iter().filter(|(n, _)| *n == name).map(|(_, flags)| *flags).collect::<Vec<_>>();
    assert_eq!(of(".").len(), 2, "the directory opened once per sweep: {opens:?}");
    assert_eq!(of(leftover).len(), 2, "the leftover opened once per sweep: {opens:?}");
    for (name, flags) in &opens {
        assert!(flags.contains("O_CLOEXEC"), "{name} opened without O_CLOEXEC: {flags}");
    }
    for flags in of(leftover) {
        assert!(flags.contains("O_NOFOLLOW") && flags.contains("O_NONBLOCK"), "the leftover opened with {flags}");
    }
}
