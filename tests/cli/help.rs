//! Each command's help lists only the options that apply to it.

use crate::support::*;

fn help(s: &Scratch, command: &str) -> String {
    let out = s.run(&[command, "--help"]);
    assert_code(&out, 0);
    stdout(&out)
}

#[test]
fn subcommand_help_lists_only_what_applies() {
    let s = Scratch::new();
    let ls = help(&s, "ls");
    for absent in ["--streaming", "--sha256", "--jobs", "--replace"] {
        assert!(!ls.contains(absent), "ls --help mentions {absent}:\n{ls}");
    }
    assert!(ls.contains("Global options:") && ls.contains("--root"), "{ls}");
    let put = help(&s, "put");
    assert!(put.contains("--streaming") && put.contains("--sha256"), "{put}");
    for command in ["get", "stat", "verify", "rm", "recover", "doctor", "status"] {
        assert!(!help(&s, command).contains("--streaming"), "{command} --help mentions --streaming");
    }
    assert!(help(&s, "run").contains("--streaming"));
    // The flag goes where it applies.
    s.file("f", b"x");
    assert_code(&s.run(&["put", "f", "k", "--streaming", "false"]), 0);
    assert_code(&s.run(&["--streaming", "false", "ls"]), 2);
}

#[test]
fn backend_help_lists_the_kinds() {
    let s = Scratch::new();
    let ls = help(&s, "ls");
    let line = ls.lines().find(|l| l.contains("--backend")).expect("--backend in ls --help");
    assert!(line.contains("local") && line.contains("s3"), "{line}");
    let out = s.run(&["--backend", "nope", "ls"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("local") && stderr(&out).contains("s3"), "{}", stderr(&out));
}
