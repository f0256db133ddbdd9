//! `sweep_staging` on local disk: a dry run changes nothing and never disturbs a live writer; a
//! live writer idle for `older_than` is swept by age.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use promote_core::{Bytes, Expected, Key, Mode, Store};
use promote_local::{LocalBackend, LocalConfig};

fn open(root: &Path) -> Store {
    Store::new(Arc::new(LocalBackend::open(LocalConfig::at(root)).expect("open")))
}

/// A staging file's name, size, mtime and ctime (seconds, nanoseconds).
type Seen = (String, u64, (i64, i64), (i64, i64));

/// Every staging file with its size, mtime and ctime (to the nanosecond).
fn snapshot(root: &Path) -> Vec<Seen> {
    let mut files: Vec<_> = std::fs::read_dir(root.join(".promote/staging"))
        .expect("staging dir")
        .map(|e| {
            let e = e.expect("entry");
            let m = e.metadata().expect("stat");
            (
                e.file_name().to_string_lossy().into_owned(),
                m.size(),
                (m.mtime(), m.mtime_nsec()),
                (m.ctime(), m.ctime_nsec()),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_and_leaves_a_live_writer_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    // Two live writers: one keeps writing, one stays idle.
    let mut live = store.stage(&Key::new("live").expect("key"), &Expected::default()).await.expect("stage");
    live.write(Bytes::from(vec![1u8; 1 << 20])).await.expect("write");
    let mut idle = store.stage(&Key::new("idle").expect("key"), &Expected::default()).await.expect("stage");
    idle.write(Bytes::from(vec![2u8; 1 << 20])).await.expect("write");
    // Let the writes land, so the snapshot sees final sizes and times.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let before = snapshot(dir.path());
    assert_eq!(before.len(), 2);
    for _ in 0..3 {
        let found = store.sweep_staging(Duration::from_secs(3600), true).await.expect("dry run");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|l| l.live && !l.removed), "both writers are live and young, kept: {found:?}");
        assert_eq!(snapshot(dir.path()), before, "a dry run changed a staging file");
    }
    // A dry run with everything stale by age says both would be removed, and removes nothing
    // (`removed` is the verdict a real run would act on).
    let found = store.sweep_staging(Duration::ZERO, true).await.expect("dry run");
    assert!(found.len() == 2 && found.iter().all(|l| l.live && l.removed), "{found:?}");
    assert_eq!(snapshot(dir.path()), before);

    // The live writer goes on and publishes.
    live.write(Bytes::from(vec![3u8; 1000])).await.expect("write after dry runs");
    live.promote(&Expected { size: Some((1 << 20) + 1000), sha256: None }, Mode::Create).await.expect("promote");

    // A real sweep by age removes the idle (but live) one.
    let found = store.sweep_staging(Duration::from_millis(100), false).await.expect("sweep");
    assert!(found.len() == 1 && found[0].removed && found[0].live, "{found:?}");
    assert!(snapshot(dir.path()).is_empty());
    assert!(idle.promote(&Expected::default(), Mode::Create).await.is_err(), "its staging file is gone");
}
