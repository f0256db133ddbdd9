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
    // Two live writers: one keeps writing, one stays idle. Two chunks each: a first chunk alone
    // is held in memory until the next one, so only a second makes both reach the file.
    const WRITTEN: u64 = 2 << 20;
    let mut live = store.stage(&Key::new("live").expect("key"), &Expected::default()).await.expect("stage");
    let mut idle = store.stage(&Key::new("idle").expect("key"), &Expected::default()).await.expect("stage");
    for (writer, byte) in [(&mut live, 1u8), (&mut idle, 2u8)] {
        for _ in 0..2 {
            writer.write(Bytes::from(vec![byte; 1 << 20])).await.expect("write");
        }
    }
    // Until both files hold their bytes (a write returns before they reach the file), so the
    // snapshot sees final sizes and times.
    let landed = async {
        loop {
            let files = snapshot(dir.path());
            if files.len() == 2 && files.iter().all(|(_, size, ..)| *size == WRITTEN) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), landed).await.expect("the staged writes never reached their files");

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
    live.promote(&Expected { size: Some(WRITTEN + 1000), sha256: None }, Mode::Create).await.expect("promote");

    // A real sweep by age removes the idle (but live) one, once it is older than the cut-off.
    let idle_for = || {
        let (_, _, (secs, nanos), _) = snapshot(dir.path()).pop().expect("the idle writer's file");
        let modified = std::time::UNIX_EPOCH + Duration::new(secs as u64, nanos as u32);
        std::time::SystemTime::now().duration_since(modified).unwrap_or_default()
    };
    let aged = async {
        while idle_for() < Duration::from_millis(150) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), aged).await.expect("the idle file never aged");
    let found = store.sweep_staging(Duration::from_millis(100), false).await.expect("sweep");
    assert!(found.len() == 1 && found[0].removed && found[0].live, "{found:?}");
    assert!(snapshot(dir.path()).is_empty());
    assert!(idle.promote(&Expected::default(), Mode::Create).await.is_err(), "its staging file is gone");
}
