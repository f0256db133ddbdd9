//! The three engines end to end on local stores, on a current-thread runtime (`tokio::test`),
//! where `block_in_place` would panic.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use promote_core::{Key, Mode, Outcome, Store};
use promote_local::{LocalBackend, LocalConfig};
use promote_tree::copy::{self, Copied, Would};
use promote_tree::events::Skip;
use promote_tree::put::{self, Staging, Tree};
use promote_tree::{Event, Events, get};

fn store(root: PathBuf) -> Store {
    Store::new(Arc::new(LocalBackend::open(LocalConfig::at(root)).unwrap()))
}

#[derive(Default)]
struct Seen(Mutex<Vec<Event>>);

impl Events for Seen {
    fn event(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

#[tokio::test]
async fn put_a_directory_get_it_back_and_copy_it_to_another_store() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a"), "alpha").unwrap();
    std::fs::write(src.join("sub/b"), vec![7u8; 3 << 20]).unwrap();
    std::os::unix::fs::symlink("a", src.join("link")).unwrap();
    std::fs::write(src.join("back\\slash"), "x").unwrap();
    let seen = Seen::default();

    // Put: the link is skipped (said in an event), the backslash refused, the rest promoted.
    let files = put::files_under(&src, false, &seen).unwrap();
    assert_eq!(files, vec![PathBuf::from("a"), PathBuf::from("back\\slash"), PathBuf::from("sub/b")]);
    assert!(matches!(&seen.0.lock().unwrap()[..], [Event::Skipped { why: Skip::SymbolicLink, .. }]));
    let one = store(dir.path().join("one"));
    let tree = Tree {
        dir: src.clone(),
        prefix: Some(Key::new("up").unwrap()),
        mode: Mode::Create,
        staging: Staging { streaming: true, spool_dir: dir.path().to_owned() },
        jobs: 2,
        in_flight: 4,
    };
    let results: Vec<_> = put::put_files(&one, &tree, &files, &seen).unwrap().collect().await;
    assert!(matches!(results[0].1, Ok(Outcome::Promoted(_))), "{:?}", results[0].1);
    assert!(
        matches!(results[1].1, Err(promote_tree::Error::BadName { why: promote_tree::error::BadName::Backslash, .. })),
        "{:?}",
        results[1].1
    );
    assert!(matches!(results[2].1, Ok(Outcome::Promoted(_))), "{:?}", results[2].1);
    let again: Vec<_> = put::put_files(&one, &tree, &files[..1], &seen).unwrap().collect().await;
    assert!(matches!(again[0].1, Ok(Outcome::AlreadyPresent(_))), "a rerun is already present");
    // The large file was read by core on its own, followed through a duplicate descriptor.
    let reads = seen.0.lock().unwrap().iter().filter(|e| matches!(e, Event::Reading { .. })).count();
    assert_eq!(reads, 1, "one file above a chunk");

    // Get: every object under the prefix, verified, into place; a second get refuses to replace.
    let entries = one.list("up/").await.unwrap();
    let out = dir.path().join("out");
    let got: Vec<_> = get::get_tree(&one, &entries, "up/", &out, false, &seen).collect().await;
    assert!(got.iter().all(|(_, _, r)| r.is_ok()), "{got:?}");
    assert_eq!(std::fs::read(out.join("sub/b")).unwrap().len(), 3 << 20);
    let written: u64 = seen.0.lock().unwrap().iter().map(|e| if let Event::Bytes { n } = e { *n } else { 0 }).sum();
    assert_eq!(written, (3 << 20) + 5);
    let twice: Vec<_> = get::get_tree(&one, &entries, "up/", &out, false, &seen).collect().await;
    assert!(matches!(twice[0].2, Err(promote_tree::Error::Exists { .. })), "{:?}", twice[0].2);

    // Copy: a dry run says what it would do, a real one does it, a rerun finds it present.
    let two = store(dir.path().join("two"));
    let jobs = copy::jobs_under(&one, &Some(Key::new("up").unwrap()), &None).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.dst.as_str()).collect::<Vec<_>>(), vec!["a", "sub/b"]);
    let dry: Vec<_> = copy::copy_all(&one, Some(&two), &jobs, true, 2).collect().await;
    assert!(dry.iter().all(|(_, r)| matches!(r, Ok(Copied::Would(Would::Copy, ..)))), "{dry:?}");
    let real: Vec<_> = copy::copy_all(&one, Some(&two), &jobs, false, 2).collect().await;
    assert!(real.iter().all(|(_, r)| matches!(r, Ok(Copied::Done(Outcome::Promoted(_))))), "{real:?}");
    let rerun: Vec<_> = copy::copy_all(&one, Some(&two), &jobs, false, 2).collect().await;
    assert!(rerun.iter().all(|(_, r)| matches!(r, Ok(Copied::Done(Outcome::AlreadyPresent(_))))), "{rerun:?}");
}
