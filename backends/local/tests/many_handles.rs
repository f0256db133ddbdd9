//! No design limit on concurrent staged handles: 2,000 open at once in one process, each written
//! to, then all published. (A handle that parked a blocking thread would deadlock here: tokio's
//! blocking pool holds 512 threads.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use promote_core::{Bytes, Expected, Key, Mode, Outcome, Sha256, Store};
use promote_local::{LocalBackend, LocalConfig};

const HANDLES: usize = 2000;

/// 2,000 staging files are 2,000 descriptors: raise the soft limit to the hard one, as a
/// program holding that many files must.
fn enough_descriptors() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let want = (HANDLES + 200) as u64;
    if limit.current.is_some_and(|c| c >= want) {
        return;
    }
    assert!(
        limit.maximum.is_none_or(|m| m >= want),
        "this test needs {want} open files; the hard limit is {:?} (raise it with ulimit -Hn)",
        limit.maximum
    );
    setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum })
        .expect("raise RLIMIT_NOFILE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_staged_handles_at_once() {
    enough_descriptors();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::new(Arc::new(LocalBackend::open(LocalConfig::at(dir.path())).expect("open")));
    let started = Instant::now();
    let work = async {
        let mut handles = Vec::with_capacity(HANDLES);
        for i in 0..HANDLES {
            let key = Key::new(format!("many/{}/{i}", i % 50)).expect("key");
            let mut staged = store.stage(&key, &Expected::default()).await.expect("stage");
            staged.write(Bytes::from(format!("object {i}\n"))).await.expect("write");
            handles.push(staged);
        }
        // All 2,000 are open now; write to each once more, then publish them all at once.
        for (i, staged) in handles.iter_mut().enumerate() {
            staged.write(Bytes::from(vec![b'x'; 1000 + i])).await.expect("second write");
        }
        let expected = Expected::default();
        let outcomes =
            futures_util::future::join_all(handles.into_iter().map(|staged| staged.promote(&expected, Mode::Create)))
                .await;
        for outcome in outcomes {
            assert!(matches!(outcome, Ok(Outcome::Promoted(_))), "{outcome:?}");
        }
    };
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("2,000 staged handles did not finish in 2 minutes: handles are limited by threads");
    eprintln!("{HANDLES} handles staged, written and published in {:?}", started.elapsed());
    let listed = store.list("many/").await.expect("list");
    assert_eq!(listed.len(), HANDLES);
    let k = Key::new("many/7/1957").expect("key");
    let mut want = b"object 1957\n".to_vec();
    want.extend(vec![b'x'; 1000 + 1957]);
    assert_eq!(store.head(&k).await.expect("head").sha256, Some(Sha256::of(&want)));
    assert!(store.sweep_staging(Duration::ZERO, true).await.expect("sweep").is_empty(), "no staging left");
}
