//! Keys never escape the root: not through `..`, not through symlinks inside the root.

use std::os::unix::fs::symlink;

use crate::support::*;

#[test]
fn symlinked_directory_inside_root_is_refused() {
    let s = Scratch::new();
    let outside = s.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(s.root()).unwrap();
    symlink(&outside, s.root().join("link")).unwrap();
    s.file("f", b"payload");
    for args in [vec!["put", "f", "link/x"], vec!["put", "f", "link/deeper/x"], vec!["put", "f", "link/x", "--replace"]]
    {
        let out = s.run(&args);
        assert_code(&out, 2);
        assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside the root");
    assert_code(&s.run(&["get", "link/x", "-"]), 2);
}

#[test]
fn symlink_at_final_path_is_never_followed() {
    let s = Scratch::new();
    let target = s.path().join("victim.txt");
    std::fs::write(&target, b"precious").unwrap();
    std::fs::create_dir_all(s.root()).unwrap();
    symlink(&target, s.root().join("k")).unwrap();
    s.file("f", b"attacker");
    let out = s.run(&["put", "f", "k"]);
    assert_code(&out, 2);
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert_code(&s.run(&["get", "k", "-"]), 2);
    // Replace swaps the link itself for a file; the link's target is untouched.
    assert_code(&s.run(&["put", "f", "k", "--replace"]), 0);
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert_eq!(std::fs::read(s.root().join("k")).unwrap(), b"attacker");
}

#[test]
fn traversal_writes_nothing() {
    let s = Scratch::new();
    s.file("f", b"payload");
    for key in ["../f2", "a/../../f2", "/tmp/f2", "./f2", "a\\..\\f2"] {
        assert_code(&s.run(&["put", "f", key]), 2);
    }
    assert!(!s.path().join("f2").exists());
    assert!(!s.root().exists() || std::fs::read_dir(s.root()).unwrap().all(|e| e.unwrap().file_name() == ".promote"));
}
