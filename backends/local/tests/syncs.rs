//! The syncs a publish makes at each `durability`, recorded by `strace` around a child process
//! (this test binary, run again): `each` fsyncs the staged data before the rename and the key's
//! directory and every one above it after; `batch` makes two `syncfs` (the data's, the name's)
//! and no fsync; `none` makes no sync at all.
//!
//! strace must be installed (`tests/run` installs it); the test fails, never skips, without it.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use promote_core::{Bytes, Expected, Key, Mode, Store};
use promote_local::{Durability, LocalBackend, LocalConfig};

/// Set in the child: `<durability>` (each, batch, none); the root follows in the next one.
const CHILD: &str = "PROMOTE_SYNCS_TEST_CHILD";
const CHILD_ROOT: &str = "PROMOTE_SYNCS_TEST_ROOT";

fn durability(name: &str) -> Durability {
    match name {
        "each" => Durability::Each,
        "batch" => Durability::Batch,
        "none" => Durability::None,
        other => panic!("no durability {other}"),
    }
}

/// In the child: publish `a/b/<durability>` once, create-only, at the given durability.
fn child(name: &str, root: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let config = LocalConfig { durability: durability(name), ..LocalConfig::at(root) };
        let store = Store::new(Arc::new(LocalBackend::open(config).expect("open")));
        let key = Key::new(format!("a/b/{name}")).expect("key");
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"synced?"))]);
        store.promote_stream(&key, body, &Expected::default(), Mode::Create).await.expect("promote");
    });
}

/// The traced sync calls of one child publish, as strace lines (`fsync(5</path>) = 0`).
fn traced(name: &str, root: &Path) -> Vec<String> {
    let log = root.parent().expect("a parent").join(format!("{name}.strace"));
    let found = Command::new("strace").arg("-V").output();
    assert!(found.is_ok_and(|o| o.status.success()), "strace is not installed (apt-get install strace); never skipped");
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new("strace")
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync,syncfs", "-o"])
        .arg(&log)
        .arg("--")
        .arg(exe)
        .args(["--exact", "each_batch_and_none_make_the_syncs_they_promise", "--nocapture"])
        .env(CHILD, name)
        .env(CHILD_ROOT, root)
        .output()
        .expect("run strace");
    assert!(out.status.success(), "{name}: the child failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&log).expect("strace log");
    text.lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.trim().to_owned()))
        .filter(|l| l.starts_with("fsync(") || l.starts_with("fdatasync(") || l.starts_with("syncfs("))
        .collect()
}

#[test]
fn each_batch_and_none_make_the_syncs_they_promise() {
    if let Ok(name) = std::env::var(CHILD) {
        child(&name, Path::new(&std::env::var(CHILD_ROOT).expect("root")));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    // The store exists before any traced run, so only the publish's own syncs are recorded.
    LocalBackend::open(LocalConfig::at(&root)).expect("create the store");
    let root = std::fs::canonicalize(&root).expect("root");
    let shown = root.display().to_string();
    let on = |lines: &[String], call: &str, path: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{call}(")) && l.contains(&format!("<{path}>")) && l.ends_with("= 0"))
    };
    let data = |lines: &[String]| {
        lines
            .iter()
            .any(|l| (l.starts_with("fsync(") || l.starts_with("fdatasync(")) && l.contains("/.promote/staging/"))
    };

    let each = traced("each", &root);
    assert!(data(&each), "each: no fsync of the staged data: {each:?}");
    for d in [format!("{shown}/a/b"), format!("{shown}/a"), shown.clone()] {
        assert!(on(&each, "fsync", &d), "each: no fsync of {d}: {each:?}");
    }
    assert!(!each.iter().any(|l| l.starts_with("syncfs(")), "each: a syncfs: {each:?}");

    // Two syncfs: the staged data's before the rename, the new name's after it (their order
    // against the rename is `tests/cli/batch.rs`); no fsync of the file or of a directory in
    // the store (opening the store may fsync the directory holding its root).
    let batch = traced("batch", &root);
    let syncfs = batch.iter().filter(|l| l.starts_with("syncfs(") && l.ends_with("= 0")).count();
    assert_eq!(syncfs, 2, "batch: not one syncfs for the data and one for the name: {batch:?}");
    assert!(!data(&batch), "batch: the staged data was fsynced on its own: {batch:?}");
    let under_root = |l: &&String| l.starts_with("fsync(") && l.contains(&format!("<{shown}"));
    assert!(!batch.iter().any(|l| under_root(&l)), "batch: an fsync in the store besides the two syncfs: {batch:?}");

    let none = traced("none", &root);
    assert!(none.is_empty(), "none: {} syncs: {none:?}", none.len());

    for name in ["each", "batch", "none"] {
        assert_eq!(std::fs::read(root.join("a/b").join(name)).expect("published"), b"synced?");
    }
}
