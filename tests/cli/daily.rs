//! Daily use: closed pipes, stray environment variables, signals, colours, config messages.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::support::*;

/// A directory of `n` small files in the scratch dir.
fn tree(s: &Scratch, name: &str, n: usize) -> std::path::PathBuf {
    let dir = s.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("file-{i:05}-with-a-long-name-so-listings-overflow-a-pipe")),
            format!("file {i}\n"),
        )
        .unwrap();
    }
    dir
}

#[test]
fn a_closed_pipe_ends_put_and_ls_quietly_and_leaves_no_staging() {
    let s = Scratch::new();
    tree(&s, "d", 3000);
    // The reader takes one line and goes away, like `| head -1`.
    let mut child = s
        .cmd(&["put", "d", "k", "--json"])
        .env("PROMOTE_BACKEND__DURABILITY", "none")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"outcome\":\"promoted\""), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 141, "stderr: {}", stderr(&out));
    assert!(!stderr(&out).contains("panicked") && stderr(&out).is_empty(), "stderr: {}", stderr(&out));
    assert!(s.staging_files().is_empty(), "staging left: {:?}", s.staging_files());

    // Fill the store so that a listing overflows the pipe, then list into a closed pipe.
    let out = s.cmd(&["put", "d", "all"]).env("PROMOTE_BACKEND__DURABILITY", "none").output().unwrap();
    assert_code(&out, 0);
    for args in [&["ls", "-r", "--json"][..], &["ls", "-r"][..]] {
        let mut child = s.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 141, "{args:?}: stderr: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?}: stderr: {}", stderr(&out));
    }
}

#[test]
fn unrelated_promote_variables_break_nothing() {
    let s = Scratch::new();
    s.file("f", b"hello");
    assert_code(&s.cmd(&["put", "f", "k"]).env("PROMOTE_TO_PROD", "1").output().unwrap(), 0);
    let out = s.cmd(&["ls"]).env("PROMOTE_TO_PROD", "1").env("PROMOTE_BUILD_NUMBER", "7").output().unwrap();
    assert_code(&out, 0);
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), ["k"], "ls lists exactly the one object");
    assert_eq!(std::fs::read(s.root().join("k")).unwrap(), b"hello", "the put stored its bytes");
}

#[test]
fn a_near_miss_of_a_setting_names_the_variable_and_the_setting() {
    let s = Scratch::new();
    let out = s.cmd(&["ls"]).env("PROMOTE_BACKEND__ROTO", "/data").output().unwrap();
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("PROMOTE_BACKEND__ROTO") && err.contains("did you mean `root`"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // A near miss of a top-level setting is a warning: the command still runs.
    let out = s.cmd(&["config", "show"]).env("PROMOTE_STREAMNG", "1").output().unwrap();
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("warning")
            && stderr(&out).contains("PROMOTE_STREAMNG")
            && stderr(&out).contains("PROMOTE_STREAMING"),
        "{}",
        stderr(&out)
    );

    let out = s.cmd(&["ls"]).env("PROMOTE_BACKEND__KIND", "s4").output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("environment variable PROMOTE_BACKEND__KIND"), "{}", stderr(&out));
}

#[test]
fn config_file_errors_name_the_key_the_type_and_the_place() {
    let s = Scratch::new();
    s.file("promote.toml", b"streaming = [1]\n");
    let out = s.run(&["ls"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("`streaming`") && stderr(&out).contains("boolean"), "{}", stderr(&out));

    s.file("promote.toml", b"[backend]\nkind = \"local\"\nrot = \"x\"\n");
    let out = s.run(&["ls"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("unknown key `backend.rot` (did you mean `root`?)"), "{}", stderr(&out));

    // A syntax error keeps its line, column and caret on lines of their own.
    s.file("promote.toml", b"streaming = \n");
    let out = s.run(&["ls"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("line 1, column 13\n"), "{err}");
    assert!(err.lines().any(|l| l.trim_end().ends_with('^')), "{err}");
}

#[test]
fn promote_log_sets_the_level_and_v_shows_the_lifecycle_without_colour_off_a_terminal() {
    let s = Scratch::new();
    s.file("f", b"hello");
    let out = s.cmd(&["put", "f", "a"]).env("PROMOTE_LOG", "info").output().unwrap();
    assert_code(&out, 0);
    assert!(stderr(&out).contains("promoted"), "{}", stderr(&out));

    let out = s.run(&["put", "f", "b"]);
    assert!(stderr(&out).is_empty(), "quiet by default: {}", stderr(&out));

    let out = s.run(&["-v", "put", "f", "c"]);
    let err = stderr(&out);
    for event in [" staged ", " verified ", " promoted "] {
        assert!(err.contains(event), "{event:?} missing: {err}");
    }
    assert!(!err.contains('\x1b'), "colour codes off a terminal: {err:?}");
}

/// Runs `promote ARGS` under a pseudo-terminal (util-linux `script`), returning what it wrote.
fn on_a_terminal(s: &Scratch, args: &str, no_color: bool) -> String {
    let bin = env!("CARGO_BIN_EXE_promote");
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{bin} {args}"), "/dev/null"]).current_dir(s.path()).stdin(Stdio::null());
    cmd.env_remove("NO_COLOR");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("util-linux `script` is needed for the terminal tests");
    assert_code(&out, 0);
    stdout(&out)
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let s = Scratch::new();
    s.file("f", b"hello");
    assert!(on_a_terminal(&s, "-v put f a", false).contains('\x1b'), "a terminal gets colour");
    let plain = on_a_terminal(&s, "-v put f b", true);
    assert!(plain.contains("promoted") && !plain.contains('\x1b'), "NO_COLOR honoured: {plain:?}");
}

/// Starts `promote put - KEY` fed by a pipe that stays open, waits until its staging file has
/// bytes, sends `signal`, and returns the result.
fn interrupt_a_put(s: &Scratch, key: &str, signal: Signal) -> std::process::Output {
    let mut child = s.cmd(&["put", "-", key]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let chunk = vec![7u8; 1 << 16];
        // Until the child goes away (then the pipe breaks).
        while stdin.write_all(&chunk).is_ok() {
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    // Until a whole chunk (1 MiB) has been written to the staging file.
    let started = Instant::now();
    let has_bytes = || {
        s.staging_files().iter().any(|name| {
            std::fs::metadata(s.root().join(".promote/staging").join(name)).is_ok_and(|m| m.len() >= 1 << 20)
        })
    };
    while !has_bytes() {
        assert!(started.elapsed() < Duration::from_secs(20), "no staging file with a chunk in it appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_process(Pid::from_child(&child), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

#[test]
fn ctrl_c_and_sigterm_discard_the_staged_write() {
    let s = Scratch::new();
    for (signal, key, want) in [(Signal::INT, "int", 130), (Signal::TERM, "term", 143)] {
        let out = interrupt_a_put(&s, key, signal);
        assert_eq!(code(&out), want, "stderr: {}", stderr(&out));
        assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
        assert!(s.staging_files().is_empty(), "staging left after {signal:?}: {:?}", s.staging_files());
        assert!(!s.root().join(key).exists(), "nothing is published");
    }
}
