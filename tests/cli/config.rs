//! Layered configuration: defaults < TOML < PROMOTE_* < flags.

use crate::support::*;

#[test]
fn env_beats_toml_and_config_show_says_so() {
    let s = Scratch::new();
    std::fs::write(s.path().join("promote.toml"), "[backend]\nkind = \"local\"\nroot = \"A\"\n").unwrap();
    s.file("f", b"data");
    let out = s.cmd(&["put", "f", "k"]).env("PROMOTE_BACKEND__ROOT", "B").output().unwrap();
    assert_code(&out, 0);
    assert!(s.path().join("B/k").exists() && !s.path().join("A/k").exists());
    let out = s.cmd(&["config", "show"]).env("PROMOTE_BACKEND__ROOT", "B").output().unwrap();
    assert_code(&out, 0);
    let line = stdout(&out).lines().find(|l| l.starts_with("backend.root")).unwrap().to_owned();
    assert!(line.contains("\"B\"") && line.contains("env PROMOTE_BACKEND__ROOT"), "{line}");
    let out = s.run(&["config", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["backend.root"]["value"], "A");
    assert!(v["backend.root"]["source"].as_str().unwrap().ends_with("promote.toml"), "{v}");
    // A flag beats both.
    let out = s.cmd(&["config", "show", "--json", "--root", "C"]).env("PROMOTE_BACKEND__ROOT", "B").output().unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["backend.root"]["value"], "C");
    assert_eq!(v["backend.root"]["source"], "command-line flag");
}

#[test]
fn embedded_default_is_local_promote_data() {
    let s = Scratch::new();
    s.file("f", b"x");
    assert_code(&s.run(&["put", "f", "k"]), 0);
    assert!(s.path().join("promote-data/k").exists());
    let out = s.run(&["config", "show"]);
    assert!(stdout(&out).contains("backend.kind = \"local\""), "{}", stdout(&out));
}

#[test]
fn config_errors_name_the_key_and_the_source() {
    let s = Scratch::new();
    std::fs::write(s.path().join("promote.toml"), "[backend]\nroott = \"x\"\n").unwrap();
    let out = s.run(&["ls"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("backend.roott") && err.contains("promote.toml"), "{err}");
    std::fs::remove_file(s.path().join("promote.toml")).unwrap();

    let out = s.run(&["--config", "missing.toml", "ls"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));

    let out = s.cmd(&["ls"]).env("PROMOTE_BACKEND__KIND", "ftp").output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("known kinds: local"), "{}", stderr(&out));

    let out = s.cmd(&["ls"]).env("PROMOTE_ENABLE_STREAMING", "perhaps").output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("PROMOTE_ENABLE_STREAMING"), "{}", stderr(&out));
}

#[test]
fn doctor_is_green_on_local_disk() {
    let s = Scratch::new();
    // doctor reads: a store that does not exist yet is a failed check (see readonly.rs).
    s.file("f", b"x");
    assert_code(&s.run(&["put", "f", "k"]), 0);
    let out = s.run(&["doctor"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("second create refused"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("FAIL"));
    let out = s.cmd(&["doctor"]).env("PROMOTE_BACKEND__ROOT", "/proc/promote-cannot-be-here").output().unwrap();
    assert_code(&out, 1);
}
