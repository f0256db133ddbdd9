//! The progress bar of `put` and `get`: on a terminal for transfers longer than about a
//! second, with bytes, rate and ETA (and files done of total for a directory); never on a
//! pipe, never with `-q` or `--json`.

use crate::support::*;

/// A directory of `n` small files.
fn tree(s: &Scratch, name: &str, n: usize) {
    let dir = s.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("a-file-with-a-long-name-to-fill-the-pipe-{i:05}")), format!("{i}\n")).unwrap();
    }
}

/// A directory put whose receipts go to a reader that waits two seconds: the receipts fill
/// the pipe, so the put takes over a second.
const SLOW_TREE_PUT: &str = "PROMOTE_BACKEND__DURABILITY=none $PROMOTE put d k/ FLAGS | (sleep 2; cat >/dev/null)";
/// A 4 MiB get to a reader that waits two seconds.
const SLOW_GET: &str = "$PROMOTE get big - FLAGS | (sleep 2; cat >/dev/null)";
/// A put from a source that pauses for two seconds.
const SLOW_STDIN_PUT: &str = "(printf abc; sleep 2; printf def) | $PROMOTE put - KEY FLAGS";

fn setup() -> Scratch {
    let s = Scratch::new();
    tree(&s, "d", 600);
    s.file("big", &vec![5u8; 4 << 20]);
    assert_code(&s.run(&["put", "big", "big"]), 0);
    s
}

#[test]
fn a_slow_put_or_get_on_a_terminal_shows_a_progress_bar() {
    let s = setup();
    let out = s.on_terminal(&SLOW_TREE_PUT.replace("FLAGS", ""));
    assert_code(&out, 0);
    let screen = stdout(&out);
    assert!(screen.contains("/ 600 files") && screen.contains("/s") && screen.contains("eta"), "{screen:?}");
    assert!(screen.contains("put: 600 files: 600 promoted"), "the summary follows: {screen:?}");

    let out = s.on_terminal(&SLOW_GET.replace("FLAGS", ""));
    assert_code(&out, 0);
    let screen = stdout(&out);
    assert!(screen.contains(" / 4.0 MiB") && screen.contains("/s") && screen.contains("eta"), "{screen:?}");

    let out = s.on_terminal(&SLOW_STDIN_PUT.replace("KEY", "slow").replace("FLAGS", ""));
    assert_code(&out, 0);
    let screen = stdout(&out);
    assert!(screen.contains("3 B  "), "bytes read so far: {screen:?}");
}

#[test]
fn no_progress_bar_with_quiet_or_json_or_off_a_terminal() {
    let s = setup();
    for flags in ["-q", "--json"] {
        let out = s.on_terminal(&SLOW_TREE_PUT.replace("FLAGS", flags));
        assert_code(&out, 0);
        assert!(!stdout(&out).contains("files  "), "{flags}: {:?}", stdout(&out));
        let out = s.on_terminal(&SLOW_GET.replace("FLAGS", flags));
        assert_code(&out, 0);
        assert!(!stdout(&out).contains("eta"), "{flags}: {:?}", stdout(&out));
        let out = s.on_terminal(&SLOW_STDIN_PUT.replace("KEY", &format!("k{flags}")).replace("FLAGS", flags));
        assert_code(&out, 0);
        assert!(!stdout(&out).contains("/s"), "{flags}: {:?}", stdout(&out));
    }
    // The same commands with stderr on a pipe: no bar, no carriage returns.
    for (i, script) in [
        SLOW_TREE_PUT.replace("FLAGS", ""),
        SLOW_GET.replace("FLAGS", ""),
        SLOW_STDIN_PUT.replace("KEY", "p").replace("FLAGS", ""),
    ]
    .iter()
    .enumerate()
    {
        let out = std::process::Command::new("sh")
            .args(["-c", script])
            .env("PROMOTE", env!("CARGO_BIN_EXE_promote"))
            .current_dir(s.path())
            .output()
            .unwrap();
        assert_code(&out, 0);
        let err = stderr(&out);
        assert!(!err.contains('\r') && !err.contains("eta") && !err.contains("/s"), "script {i}: {err:?}");
    }
}
