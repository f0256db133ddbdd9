//! `file_mode` and `dir_mode` are exact: the umask does not apply. (Its own test binary, because
//! the umask is process-wide.)

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use promote_core::{Expected, Key, Mode, Store};
use promote_local::{LocalBackend, LocalConfig};

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_are_exact_whatever_the_umask() {
    // A umask that would strip group and other bits from anything created.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("new/root");
    let config = LocalConfig { file_mode: 0o664, dir_mode: 0o2775, ..LocalConfig::at(&root) };
    let store = Store::new(Arc::new(LocalBackend::open(config).expect("open")));
    let key = Key::new("a/b/object").expect("key");
    let mut staged = store.stage(&key, &Expected::default()).await.expect("stage");
    staged.write("bytes".into()).await.expect("write");
    staged.promote(&Expected::default(), Mode::Create).await.expect("promote");

    assert_eq!(mode_of(&root.join("a/b/object")), 0o664, "file_mode");
    for created in ["new", "new/root", "new/root/a", "new/root/a/b"] {
        assert_eq!(mode_of(&dir.path().join(created)), 0o2775, "dir_mode of {created}");
    }
    // The staging area stays private.
    assert_eq!(mode_of(&root.join(".promote")), 0o700);
    assert_eq!(mode_of(&root.join(".promote/staging")), 0o700);
}
