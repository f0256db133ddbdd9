//! Large files promoted by a kernel copy (`copy_file_range` here; reflinks on a real XFS are
//! tested end to end in `tests/cli/kernel_copy.rs`): every byte and the right digest, wrong
//! expectations abort with nothing left, and sources the kernel cannot copy (another filesystem,
//! a pipe) are declined with nothing staged, then streamed.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use promote_core::{Backend, Error, Expected, Key, Mode, Sha256, StagedCopy, Store};
use promote_local::{Durability, LocalBackend, LocalConfig};
use promote_tests::data::bytes;

/// A fresh store under a temp dir, and the temp dir (sources go next to the root: same
/// filesystem).
fn store(durability: Durability) -> (tempfile::TempDir, LocalBackend, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LocalConfig { durability, ..LocalConfig::at(dir.path().join("root")) };
    let backend = LocalBackend::open(config).expect("open");
    let store = Store::new(Arc::new(backend.clone()));
    (dir, backend, store)
}

fn write(path: &Path, content: &[u8]) -> std::fs::File {
    std::fs::write(path, content).expect("write source");
    std::fs::File::open(path).expect("open source")
}

fn staging(backend: &LocalBackend) -> Vec<PathBuf> {
    let dir = backend.root().join(".promote/staging");
    std::fs::read_dir(dir).expect("staging dir").map(|e| e.expect("entry").path()).collect()
}

fn key(k: &str) -> Key {
    Key::new(k).expect("key")
}

/// Runs `work` with debug logs captured (on this thread: the tests that use it run on a
/// current-thread runtime, where core's tasks log); returns its output and the log.
async fn logged<T>(work: impl std::future::Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Log(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = {
        let _guard = tracing::subscriber::set_default(subscriber);
        work.await
    };
    let text = String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned();
    (out, text)
}

/// The `kernel copy…` line core logged for `key`.
fn path_line<'a>(log: &'a str, key: &str) -> &'a str {
    let line = log.lines().find(|l| l.contains("kernel copy") && l.contains(&format!("key={key}")));
    line.unwrap_or_else(|| panic!("no `kernel copy` line for {key} in:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_file_range_stages_every_byte_of_a_multi_step_file_and_its_digest() {
    let (dir, backend, store) = store(Durability::Each);
    // 20 MiB and odd bytes after a 4 KiB header the copy starts past: a reflink clones whole
    // files only, so this takes copy_file_range on any filesystem, in three 8 MiB steps.
    let content = bytes(1, (20 << 20) + 12_345);
    let mut source = write(&dir.path().join("src.bin"), &content);
    source.seek(SeekFrom::Start(4096)).expect("seek");
    let want = &content[4096..];
    let k = key("big/copied.bin");
    let copied = backend.stage_copy(&k, &source, &Expected::default()).await.expect("stage_copy");
    let StagedCopy::Staged { staged, digest, method } = copied else { panic!("declined: {copied:?}") };
    assert_eq!(method, "copy_file_range");
    assert_eq!((digest.size, digest.sha256), (want.len() as u64, Sha256::of(want)));
    assert_eq!(source.stream_position().expect("offset"), content.len() as u64, "offset left after the copy");
    staged.publish(&Mode::Create, &digest).await.expect("publish");
    assert!(std::fs::read(backend.root().join("big/copied.bin")).expect("read back") == want, "content differs");
    let meta = store.head(&k).await.expect("head");
    assert_eq!((meta.size, meta.sha256), (want.len() as u64, Some(digest.sha256)), "stored digest");
    assert!(staging(&backend).is_empty(), "staging left: {:?}", staging(&backend));
}

#[tokio::test]
async fn promote_file_copies_a_large_file_in_the_kernel_and_streams_a_small_one() {
    let (dir, backend, store) = store(Durability::Each);
    let content = bytes(2, (9 << 20) + 7);
    let source = write(&dir.path().join("src.bin"), &content);
    let expected = Expected { size: Some(content.len() as u64), sha256: Some(Sha256::of(&content)) };
    let (outcome, log) = logged(store.promote_file(&key("whole.bin"), source, &expected, Mode::Create)).await;
    assert_eq!(outcome.expect("promote").receipt().sha256, Sha256::of(&content));
    // A reflink where the filesystem has them, else copy_file_range: never streamed.
    let line = path_line(&log, "whole.bin");
    assert!(line.contains("kernel copy: copy_file_range") || line.contains("kernel copy: reflink (FICLONE)"), "{line}");
    let small = bytes(3, (1 << 20) - 4096);
    let source = write(&dir.path().join("small.bin"), &small);
    let (outcome, log) =
        logged(store.promote_file(&key("small.bin"), source, &Expected::default(), Mode::Create)).await;
    assert_eq!(outcome.expect("promote").receipt().sha256, Sha256::of(&small));
    assert!(
        path_line(&log, "small.bin")
            .contains("kernel copy not used: the source (1020.0 KiB) is smaller than the 1.0 MiB threshold"),
        "{log}"
    );
    assert!(std::fs::read(backend.root().join("whole.bin")).expect("read back") == content, "content differs");
    assert!(staging(&backend).is_empty(), "staging left: {:?}", staging(&backend));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sha256_or_size_aborts_and_leaves_nothing() {
    let (dir, backend, store) = store(Durability::Each);
    let content = bytes(3, (3 << 20) + 1);
    let path = dir.path().join("src.bin");
    write(&path, &content);
    let len = content.len() as u64;
    let cases = [
        (Expected { size: Some(len), sha256: Some(Sha256::of(b"other")) }, "digest"),
        (Expected { size: Some(len - 1), sha256: None }, "too long"),
        (Expected { size: Some(len + 1), sha256: None }, "too short"),
    ];
    for (expected, case) in cases {
        let source = std::fs::File::open(&path).expect("open");
        let err = store.promote_file(&key("wrong.bin"), source, &expected, Mode::Create).await.expect_err(case);
        match case {
            "digest" => assert!(matches!(err, Error::DigestMismatch { .. }), "{case}: {err}"),
            _ => assert!(matches!(err, Error::SizeMismatch { .. }), "{case}: {err}"),
        }
        assert!(matches!(store.head(&key("wrong.bin")).await, Err(Error::NotFound { .. })), "{case}: published");
        assert!(staging(&backend).is_empty(), "{case}: staging left: {:?}", staging(&backend));
    }
    // The backend itself stops a too-long copy one byte past the expected size.
    let source = std::fs::File::open(&path).expect("open");
    let expected = Expected { size: Some(1 << 20), sha256: None };
    let err = backend.stage_copy(&key("wrong.bin"), &source, &expected).await.expect_err("too long");
    assert!(matches!(err, Error::SizeMismatch { actual, .. } if actual == (1 << 20) + 1), "{err}");
    assert!(staging(&backend).is_empty(), "staging left: {:?}", staging(&backend));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_on_another_filesystem_is_declined_untouched_then_streamed() {
    let (dir, backend, store) = store(Durability::Each);
    // /dev/shm is a tmpfs; the temp dir is not (here ext4).
    let other = tempfile::tempdir_in("/dev/shm").expect("a temp dir in /dev/shm (a tmpfs: another filesystem)");
    let dev = |p: &Path| std::fs::metadata(p).expect("stat").dev();
    assert_ne!(dev(other.path()), dev(dir.path()), "the test needs /dev/shm on another filesystem than the temp dir");
    let content = bytes(4, (2 << 20) + 3);
    let mut source = write(&other.path().join("src.bin"), &content);
    source.seek(SeekFrom::Start(10)).expect("seek");
    let k = key("other-fs.bin");
    let copied = backend.stage_copy(&k, &source, &Expected::default()).await.expect("stage_copy");
    let StagedCopy::Declined(reason) = copied else { panic!("not declined: {copied:?}") };
    assert!(reason.contains("EXDEV"), "{reason}");
    assert_eq!(source.stream_position().expect("offset"), 10, "the offset moved");
    assert!(staging(&backend).is_empty(), "staging left: {:?}", staging(&backend));
    source.rewind().expect("rewind");
    let expected = Expected::exactly(promote_core::Digest { size: content.len() as u64, sha256: Sha256::of(&content) });
    store.promote_file(&k, source, &expected, Mode::Create).await.expect("streamed");
    assert!(std::fs::read(backend.root().join("other-fs.bin")).expect("read back") == content, "content differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_is_declined_untouched_then_streamed() {
    let (_dir, backend, store) = store(Durability::Each);
    let content = bytes(5, 3 << 20);
    let (reader, mut writer) = std::io::pipe().expect("pipe");
    let source = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
    let copied = backend.stage_copy(&key("pipe.bin"), &source, &Expected::default()).await.expect("stage_copy");
    let StagedCopy::Declined(reason) = copied else { panic!("not declined: {copied:?}") };
    assert!(reason.contains("not a regular file"), "{reason}");
    assert!(staging(&backend).is_empty(), "staging left: {:?}", staging(&backend));
    let feeder = {
        let content = content.clone();
        std::thread::spawn(move || writer.write_all(&content))
    };
    let outcome = store.promote_file(&key("pipe.bin"), source, &Expected::default(), Mode::Create).await;
    feeder.join().expect("feeder").expect("write to the pipe");
    assert_eq!(outcome.expect("streamed").receipt().sha256, Sha256::of(&content));
    assert!(std::fs::read(backend.root().join("pipe.bin")).expect("read back") == content, "content differs");
}

#[tokio::test]
async fn group_commit_seals_and_publishes_kernel_copied_files() {
    let (dir, backend, store) = store(Durability::Batch);
    let files: Vec<(Key, Vec<u8>)> =
        (0..4u64).map(|i| (key(&format!("batch/{i}")), bytes(10 + i, (2 << 20) + i as usize))).collect();
    let promotions = files.iter().map(|(k, content)| {
        let source = write(&dir.path().join(format!("src-{}", k.file_name())), content);
        let expected = Expected { size: Some(content.len() as u64), sha256: Some(Sha256::of(content)) };
        let store = store.clone();
        let k = k.clone();
        async move { store.promote_file(&k, source, &expected, Mode::Create).await }
    });
    let (outcomes, log) = logged(futures_util::future::join_all(promotions)).await;
    for (outcome, (k, _)) in outcomes.into_iter().zip(&files) {
        outcome.expect("promote");
        assert!(path_line(&log, k.as_str()).contains("kernel copy: "), "{k} was streamed:\n{log}");
    }
    // Sealed, then made durable by the group's shared flush, not one fsync each.
    assert!(log.contains("group flush") && log.contains("phase=Staged"), "no group flush logged:\n{log}");
    for (k, content) in &files {
        assert!(std::fs::read(backend.root().join(k.as_str())).expect("read back") == *content, "{k} differs");
        assert_eq!(store.head(k).await.expect("head").sha256, Some(Sha256::of(content)), "{k}: stored digest");
    }
    assert!(staging(&backend).is_empty(), "staging left: {:?}", staging(&backend));
}
