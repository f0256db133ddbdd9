//! Running out of open files while staging is an error that says what to do. (Its own test
//! binary: it lowers the process-wide open-file limit.)

use std::sync::Arc;

use promote_core::{Expected, Key, Store};
use promote_local::{LocalBackend, LocalConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_open_files_says_raise_the_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::new(Arc::new(LocalBackend::open(LocalConfig::at(dir.path())).expect("open")));
    let limit = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: Some(64), maximum: limit.maximum }).expect("lower the limit");
    let mut held = Vec::new();
    let err = loop {
        assert!(held.len() < 64, "64 staged writes fit under a limit of 64 open files");
        match store.stage(&Key::new(format!("k{}", held.len())).expect("key"), &Expected::default()).await {
            Ok(staged) => held.push(staged),
            Err(err) => break err,
        }
    };
    let text = err.to_string();
    assert!(text.contains("ulimit -n"), "{text}");
    let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("Too many open files"), "{text}: {cause}");
    drop(held);
}
