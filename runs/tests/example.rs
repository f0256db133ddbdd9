//! The crate's example (`examples/run_manifest.rs`), run as a test so it cannot rot: twice on
//! one directory, on a current-thread runtime.

#[allow(dead_code)]
#[path = "../examples/run_manifest.rs"]
mod example;

#[tokio::test]
async fn the_example_runs_and_a_rerun_finds_everything_present() {
    let dir = tempfile::tempdir().unwrap();
    let first = example::demo(dir.path()).await.unwrap();
    assert_eq!((first.promoted, first.already_present, first.failed), (3, 0, 0), "{first:?}");
    assert_eq!(std::fs::read_to_string(dir.path().join("store/letters/b.txt")).unwrap(), "bravo\n");
    let again = example::demo(dir.path()).await.unwrap();
    assert_eq!((again.promoted, again.already_present, again.failed), (0, 3, 0), "{again:?}");
}
