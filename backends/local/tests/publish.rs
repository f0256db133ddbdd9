//! What a publish finds at its key when something appeared there after staging began (the race a
//! create-only publish decides): a directory is a conflict, a symbolic link is refused and never
//! followed, a file is resolved by its digest; and the receipt carries the version `head` reports.

use std::sync::Arc;

use promote_core::{Bytes, Error, Expected, Key, Mode, Outcome, Sha256, Store};
use promote_local::{LocalBackend, LocalConfig};

fn open(root: &std::path::Path) -> Store {
    Store::new(Arc::new(LocalBackend::open(LocalConfig::at(root)).expect("open")))
}

/// Stages `bytes` for `key`, lets `meanwhile` put something at the key's path, then promotes.
async fn promote_after(
    store: &Store,
    key: &str,
    bytes: &'static [u8],
    mode: Mode,
    meanwhile: impl FnOnce(),
) -> Result<Outcome, Error> {
    let key = Key::new(key).expect("key");
    let expected = Expected { size: Some(bytes.len() as u64), sha256: Some(Sha256::of(bytes)) };
    let mut staged = store.stage(&key, &expected).await.expect("stage");
    staged.write(Bytes::from_static(bytes)).await.expect("write");
    meanwhile();
    staged.promote(&expected, mode).await
}

fn staging_left(root: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(root.join(".promote/staging"))
        .expect("staging dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_appears_at_the_key_is_a_conflict_in_either_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    for (mode, key) in [(Mode::Create, "d/create"), (Mode::Replace, "d/replace")] {
        let path = dir.path().join(key);
        let err = promote_after(&store, key, b"bytes", mode.clone(), || {
            std::fs::create_dir_all(path.join("inside")).expect("a directory in the way");
        })
        .await
        .expect_err("a directory stands at the key");
        assert!(matches!(&err, Error::Conflict { detail, .. } if detail.contains("directory")), "{mode:?}: {err}");
        assert!(path.join("inside").is_dir(), "{mode:?}: the directory was disturbed");
        assert!(staging_left(dir.path()).is_empty(), "{mode:?}: staging left: {:?}", staging_left(dir.path()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_that_appears_at_the_key_is_refused_and_not_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let outside = dir.path().join("outside");
    let link = dir.path().join("s/link");
    std::fs::create_dir_all(dir.path().join("s")).expect("dir");
    let err = promote_after(&store, "s/link", b"bytes", Mode::Create, || {
        std::os::unix::fs::symlink(&outside, &link).expect("a link in the way");
    })
    .await
    .expect_err("a symbolic link stands at the key");
    assert!(matches!(&err, Error::InvalidKey { reason, .. } if reason.contains("symbolic link")), "{err}");
    assert!(std::fs::symlink_metadata(&link).expect("the link").file_type().is_symlink(), "the link was replaced");
    assert!(!outside.exists(), "the link was followed");
    assert!(staging_left(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_appears_at_the_key_is_already_present_when_identical_else_a_conflict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    std::fs::create_dir_all(dir.path().join("f")).expect("dir");
    let same = dir.path().join("f/same");
    let outcome = promote_after(&store, "f/same", b"these bytes", Mode::Create, || {
        std::fs::write(&same, b"these bytes").expect("identical bytes in the way");
    })
    .await
    .expect("identical bytes are already present");
    assert!(matches!(outcome, Outcome::AlreadyPresent(_)), "{outcome:?}");
    let other = dir.path().join("f/other");
    let err = promote_after(&store, "f/other", b"these bytes", Mode::Create, || {
        std::fs::write(&other, b"other bytes").expect("other bytes in the way");
    })
    .await
    .expect_err("different bytes conflict");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(std::fs::read(&other).expect("read"), b"other bytes", "the conflict replaced the old bytes");
    assert!(staging_left(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_carries_the_version_head_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let outcome = promote_after(&store, "v/k", b"versioned", Mode::Create, || {}).await.expect("promote");
    let version = outcome.receipt().version.clone().expect("a version in the receipt");
    let head = store.head(&Key::new("v/k").expect("key")).await.expect("head");
    assert_eq!(head.version.as_deref(), Some(version.as_str()), "receipt and head disagree on the version");
    assert!(version.contains('-') && version.contains('.'), "an inode-mtime version, not {version:?}");
}
