//! Daily use, round two: `-q` is quiet, `--progress`, stray variables warn, the exit codes
//! `--help` lists, `recover --json` always answers, `status` names its directory, config words.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::support::*;

/// A directory of `n` small files.
fn tree(s: &Scratch, name: &str, n: usize) {
    let dir = s.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("f{i:03}")), format!("file {i}\n")).unwrap();
    }
}

/// Asserts a successful command printed nothing at all.
#[track_caller]
fn silent(out: &Output, what: &str) {
    assert_code(out, 0);
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{what}: stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

/// Two local targets, `a` (the default) and `b`.
const TWO_TARGETS: &[u8] = b"default_target = \"a\"\n\
    [targets.a]\nkind = \"local\"\nroot = \"store-a\"\ndurability = \"none\"\n\
    [targets.b]\nkind = \"local\"\nroot = \"store-b\"\ndurability = \"none\"\n";

#[test]
fn quiet_commands_print_nothing_on_success_but_json_records_and_errors_still_print() {
    let s = Scratch::new();
    s.file("promote.toml", TWO_TARGETS);
    tree(&s, "tree", 30);
    s.file("f", b"hello");
    silent(&s.run(&["put", "tree", "other/", "-q"]), "put DIR -q");
    assert_eq!(std::fs::read_dir(s.path().join("store-a/other")).unwrap().count(), 30, "the files were promoted");
    silent(&s.run(&["put", "f", "k", "-q"]), "put FILE -q");
    silent(&s.run(&["get", "k", "got", "-q"]), "get -q");
    assert_eq!(std::fs::read(s.path().join("got")).unwrap(), b"hello");
    silent(&s.run(&["get", "-r", "other/", "out", "-q"]), "get -r -q");
    silent(&s.run(&["verify", "k", "-q"]), "verify -q");
    silent(&s.run(&["verify", "-r", "other/", "-q"]), "verify -r -q");
    silent(&s.run(&["copy", "a:other/", "b:other/", "-q"]), "copy -q");
    let source = s.path().join("f").to_string_lossy().into_owned();
    s.file("manifest.jsonl", format!("{}\n", serde_json::json!({ "source": source, "key": "from-run" })).as_bytes());
    silent(&s.run(&["run", "manifest.jsonl", "--out", "rd", "-q"]), "run -q");
    assert!(s.path().join("store-a/from-run").exists(), "run promoted its item");

    // --json output is data: -q keeps it, one record a file.
    let out = s.run(&["put", "tree", "again/", "-q", "--json"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).lines().filter(|l| l.contains("\"outcome\":\"promoted\"")).count(), 30, "{}", stdout(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    // Errors still go to stderr, with their exit code.
    s.file("g", b"other bytes");
    let out = s.run(&["put", "g", "k", "-q"]);
    assert_code(&out, 3);
    assert!(out.stdout.is_empty() && stderr(&out).contains("promote: error:"), "{}", stderr(&out));

    // The help says what -q keeps.
    let help = stdout(&s.run(&["put", "--help"]));
    assert!(help.contains("--json records still print"), "{help}");
}

/// `promote put - KEY` whose stdin sends a byte, pauses past the bar's one-second delay, then ends.
fn slow_stdin_put(s: &Scratch, key: &str, flags: &[&str]) -> Output {
    let mut args = vec!["put", "-", key];
    args.extend_from_slice(flags);
    let mut child =
        s.cmd(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start put");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(b"a").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1600));
    input.write_all(b"bc").unwrap();
    drop(input);
    child.wait_with_output().expect("put")
}

#[test]
fn progress_always_draws_off_a_terminal_and_never_hides_it_on_one() {
    let s = Scratch::new();
    let out = slow_stdin_put(&s, "auto", &[]);
    assert_code(&out, 0);
    assert!(!stderr(&out).contains("/s"), "auto, off a terminal: no bar: {:?}", stderr(&out));
    let out = slow_stdin_put(&s, "always", &["--progress", "always"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("1 B") && stderr(&out).contains("/s"), "a bar on a pipe: {:?}", stderr(&out));
    let out = slow_stdin_put(&s, "always-q", &["--progress", "always", "-q"]);
    silent(&out, "-q wins over --progress always");

    let slow = "(printf abc; sleep 2; printf def) | $PROMOTE put - KEY FLAGS";
    let out = s.on_terminal(&slow.replace("KEY", "t-auto").replace("FLAGS", ""));
    assert_code(&out, 0);
    assert!(stdout(&out).contains("/s"), "auto on a terminal shows the bar: {:?}", stdout(&out));
    let out = s.on_terminal(&slow.replace("KEY", "t-never").replace("FLAGS", "--progress never"));
    assert_code(&out, 0);
    assert!(!stdout(&out).contains("/s"), "never: no bar: {:?}", stdout(&out));

    let help = stdout(&s.run(&["run", "--help"]));
    assert!(help.contains("--progress <WHEN>") && help.contains("always"), "{help}");
}

#[test]
fn a_variable_near_a_setting_is_a_one_line_warning_but_a_bad_key_in_a_real_table_is_an_error() {
    let s = Scratch::new();
    s.file("f", b"hello");
    std::fs::create_dir(s.root()).unwrap();
    let out = s.cmd(&["put", "f", "k"]).env("PROMOTE_BIN", "/usr/local/bin/promote").output().unwrap();
    assert_code(&out, 0);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("warning") && err.contains("PROMOTE_BIN") && err.contains("`run`"), "{err}");
    assert!(s.root().join("k").exists());

    for var in ["PROMOTE_HOME", "PROMOTE_ENV", "PROMOTE_STREAMNG"] {
        let out = s.cmd(&["ls"]).env(var, "x").output().unwrap();
        assert_code(&out, 0);
        assert!(stdout(&out).contains('k'), "{var}: {}", stdout(&out));
    }

    let out = s.cmd(&["ls"]).env("PROMOTE_BACKEND__ROTO", "/data").output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("PROMOTE_BACKEND__ROTO") && stderr(&out).contains("error"), "{}", stderr(&out));
}

#[test]
fn help_lists_the_signal_exit_codes_and_the_readme_table_matches_it() {
    let s = Scratch::new();
    let help = stdout(&s.run(&["--help"]));
    let codes: Vec<(u32, String)> = help
        .lines()
        .skip_while(|l| !l.starts_with("Exit codes:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (code, what) = l.trim().split_once("  ")?;
            Some((code.parse().ok()?, what.to_owned()))
        })
        .collect();
    for (code, signal) in [(130, "SIGINT"), (141, "SIGPIPE"), (143, "SIGTERM")] {
        let found = codes.iter().find(|(c, _)| *c == code);
        assert!(found.is_some_and(|(_, what)| what.contains(signal)), "{code} ({signal}) in: {help}");
    }
    assert_eq!(codes.len(), 11, "0-7 and the three signal codes: {codes:?}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table = readme.split("### Exit codes").nth(1).expect("an exit-code section");
    for (code, _) in &codes {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with('|') && l.split('|').nth(1).is_some_and(|c| c.contains(&code.to_string()))),
            "README's exit-code table lacks {code}"
        );
    }
}

#[test]
fn recover_json_answers_with_a_summary_even_when_nothing_was_found() {
    let s = Scratch::new();
    s.file("f", b"hello");
    assert_code(&s.run(&["put", "f", "k"]), 0);
    let out = s.run(&["recover", "--json"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let summary: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(summary["action"], "summary");
    assert_eq!(summary["found"], 0);
    assert_eq!(summary["removed_count"], 0);
}

#[test]
fn status_names_the_run_directory_it_read_in_full() {
    let s = Scratch::new();
    s.file("f", b"hello");
    let source = s.path().join("f").to_string_lossy().into_owned();
    s.file("manifest.jsonl", format!("{}\n", serde_json::json!({ "source": source, "key": "k" })).as_bytes());
    assert_code(&s.run(&["run", "manifest.jsonl", "-q"]), 0);
    let full = s.path().canonicalize().unwrap().join("promote-run");
    let out = s.run(&["status"]);
    assert_code(&out, 0);
    let first = stdout(&out).lines().next().unwrap_or_default().to_owned();
    assert!(first.starts_with(&format!("run directory {} ", full.display())), "{first}");
    let out = s.run(&["status", "promote-run", "--json"]);
    assert_code(&out, 0);
    let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(status["run_dir"], full.to_string_lossy().as_ref());
}

/// A named S3 target with `extra` lines, and no AWS credentials in the environment.
fn s3_target(s: &Scratch, extra: &str) {
    let text =
        format!("default_target = \"archive\"\n[targets.archive]\nkind = \"s3\"\nregion = \"eu-west-1\"\n{extra}\n");
    s.file("promote.toml", text.as_bytes());
}

fn without_aws(mut cmd: std::process::Command) -> Output {
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BUCKET", "AWS_ENDPOINT_URL"] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

#[test]
fn config_words_are_the_ones_the_flags_take_and_the_docs_show() {
    let s = Scratch::new();
    assert_code(&s.run(&["config", "init"]), 0);
    let text = std::fs::read_to_string(s.path().join("promote.toml")).unwrap();
    let word = text
        .lines()
        .find_map(|l| l.strip_prefix("durability = "))
        .expect("config init sets durability")
        .trim_matches('"')
        .to_owned();
    s.file("f", b"hello");
    let out = s.run(&["put", "f", "k", "--durability", &word]);
    assert_code(&out, 0);
    // The older word still works in a config file.
    std::fs::write(s.path().join("promote.toml"), text.replace(&format!("\"{word}\""), "\"full\"")).unwrap();
    assert_code(&s.run(&["put", "f", "k2"]), 0);

    // Sizes and durations print as they are written.
    s3_target(&s, "bucket = \"my-artifacts\"");
    let out = s.run(&["config", "show"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("multipart_threshold = \"8MiB\""), "{}", stdout(&out));
    assert!(stdout(&out).contains("request_timeout = \"5m\""), "{}", stdout(&out));
    assert!(!stdout(&out).contains("8388608"), "{}", stdout(&out));

    // Types in words; one problem per bad key.
    s3_target(&s, "bucket = 42\nupload_concurrency = \"x\"");
    let out = s.run(&["config", "validate"]);
    assert_code(&out, 7);
    let err = stderr(&out);
    assert!(err.contains("`targets.archive.bucket` must be text, not the whole number 42"), "{err}");
    assert!(err.contains("`targets.archive.upload_concurrency` must be a whole number"), "{err}");
    assert!(!err.contains("usize") && !err.contains("signed int"), "{err}");
    assert!(err.contains("2 problems"), "{err}");

    // A credentials error names the target's own keys.
    s3_target(&s, "bucket = \"my-artifacts\"\naccess_key_id = \"AKIAEXAMPLE\"");
    let out = without_aws(s.cmd(&["ls"]));
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("targets.archive.secret_access_key") && !err.contains("backend."), "{err}");
    s3_target(&s, "bucket = \"my-artifacts\"");
    let out = without_aws(s.cmd(&["ls"]));
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("targets.archive.access_key_id") && !err.contains("backend."), "{err}");
}

/// A store another user made readable to all: a reader who is not its writer lists and gets
/// its objects without the writer's private staging area, and a put says in one line why it
/// cannot write there.
#[test]
fn a_reader_who_is_not_the_writer_reads_the_store_and_a_put_says_why_it_cannot() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    s.file("x", b"shared bytes");
    assert_code(&s.run(&["put", "x", "data/x"]), 0);
    // World-readable, as its owner would make it; the staging area stays private (0700).
    for dir in [s.path().to_owned(), s.root(), s.root().join("data")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(s.root().join("data/x"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let staging = s.root().join(".promote/staging");
    assert_eq!(std::fs::metadata(&staging).unwrap().permissions().mode() & 0o777, 0o700);
    let out = s.as_nobody(&["ls", "-r", "/"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("data/x"), "{}", stdout(&out));
    let out = s.as_nobody(&["get", "data/x", "-"]);
    assert_code(&out, 0);
    assert_eq!(out.stdout, b"shared bytes");
    let out = s.as_nobody(&["verify", "data/x"]);
    assert_code(&out, 0);
    let out = s.as_nobody(&["put", "x", "data/y"]);
    assert_code(&out, 6);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("belongs to user 0") && err.contains("only they can write"), "{err}");
    assert!(!s.root().join("data/y").exists());
}

/// Bit rot that keeps the size and the mtime, found by `verify` or by `get`: from then on the
/// stored digest no longer vouches for the object, so a `put` of the right bytes is a conflict
/// (with the hint to `--replace`), never `already-present`; `--replace` repairs it.
#[test]
fn damage_found_by_verify_or_get_stops_the_stored_digest_answering_already_present() {
    let s = Scratch::new();
    let bytes = promote_tests::data::bytes(5, 10_000);
    s.file("f", &bytes);
    let right = sha(&bytes);
    for (key, finder) in [("by-verify", vec!["verify", "by-verify"]), ("by-get", vec!["get", "by-get", "-"])] {
        assert_code(&s.run(&["put", "f", key]), 0);
        let path = s.root().join(key);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut rotten = bytes.clone();
        rotten[5000] ^= 0x40;
        std::fs::write(&path, &rotten).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        // Before it is found, the record still vouches (nothing has read the bytes).
        assert_code(&s.run(&["put", "f", key, "--sha256", &right]), 0);
        assert_code(&s.run(&finder), 4);
        let out = s.run(&["put", "f", key, "--sha256", &right]);
        assert_code(&out, 3);
        assert!(stderr(&out).contains("--replace"), "{key}: {}", stderr(&out));
        assert_code(&s.run(&["put", "--replace", "f", key]), 0);
        assert_code(&s.run(&["verify", key]), 0);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{key}: repaired");
    }
}

/// A put validates its source before creating anything, and says once, in full, when it
/// created a store, so a mistyped root shows at once.
#[test]
fn a_put_creates_a_store_only_for_a_real_source_and_says_so() {
    let s = Scratch::new();
    s.file("x", b"x");
    let fresh = s.path().join("nonexistent-dir-xyz/sub");
    let root = fresh.to_str().unwrap();
    let out = s.run(&["--root", root, "put", "missing.bin", "k"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("missing.bin"), "{}", stderr(&out));
    assert!(!s.path().join("nonexistent-dir-xyz").exists(), "a put of a missing file created the store");
    let out = s.run(&["--root", root, "put", "x", "k"]);
    assert_code(&out, 0);
    let abs = std::fs::canonicalize(&fresh).unwrap();
    assert_eq!(stderr(&out).trim_end(), format!("promote: created a new store at {}", abs.display()));
    let again = s.run(&["--root", root, "put", "x", "k2"]);
    assert_code(&again, 0);
    assert!(stderr(&again).is_empty(), "the notice comes once: {}", stderr(&again));
    let quiet = s.path().join("quiet");
    silent(&s.run(&["--root", quiet.to_str().unwrap(), "put", "-q", "x", "k"]), "put -q into a new store");
    assert!(quiet.join("k").exists());
}

/// Once every byte of a put is in, the bar says the storage is completing instead of an
/// "eta 0s" that does not end (here: stdin holds the put open after its announced size).
#[test]
fn a_bar_whose_bytes_are_all_in_says_completing() {
    use std::io::Read;
    let s = Scratch::new();
    let mut child = s
        .cmd(&["put", "-", "k", "--size", "3", "--progress", "always"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start put");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(b"abc").unwrap();
    input.flush().unwrap();
    // The bar appears after a second; read until it says completing (bounded by its redraws).
    let mut err = child.stderr.take().expect("stderr");
    let (mut seen, mut buf) = (String::new(), [0u8; 4096]);
    let started = std::time::Instant::now();
    while !seen.contains("completing") {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no `completing` in {seen:?}");
        let n = err.read(&mut buf).expect("read stderr");
        assert!(n > 0, "stderr closed before `completing`: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(!seen.contains("eta 0s"), "{seen:?}");
    drop(input);
    assert!(child.wait().unwrap().success());
}

/// One rule for slashes: a prefix is a whole path (`ds/tree` never reaches `ds/tree2/…`), a
/// source directory or prefix means its contents (put and get -r mirror each other), and a
/// single-object command that finds objects under `KEY/` or is given `KEY/` says how to reach
/// them.
#[test]
fn prefixes_are_whole_paths_sources_mean_their_contents_and_misses_get_hints() {
    let s = Scratch::new();
    s.file("promote.toml", TWO_TARGETS);
    for (rel, text) in [("tree/a", "a"), ("tree/sub/b", "b")] {
        std::fs::create_dir_all(s.path().join(rel).parent().unwrap()).unwrap();
        std::fs::write(s.path().join(rel), text).unwrap();
    }
    for key in ["ds/tree", "ds/tree2"] {
        assert_code(&s.run(&["put", "-q", "tree", key]), 0);
    }
    let lines = |out: &Output| stdout(out).lines().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(lines(&s.run(&["ls", "ds/tree"])), ["ds/tree/a", "ds/tree/sub/"]);
    assert_eq!(lines(&s.run(&["ls", "-r", "ds/tree/"])), ["ds/tree/a", "ds/tree/sub/b"]);
    // get -r mirrors put: the prefix's contents into the directory.
    assert_code(&s.run(&["get", "-q", "-r", "ds/tree", "out"]), 0);
    assert_eq!(std::fs::read_to_string(s.path().join("out/sub/b")).unwrap(), "b");
    assert!(!s.path().join("out/tree").exists() && !s.path().join("out/tree2").exists());
    let out = s.run(&["verify", "-r", "ds/tree"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("2 objects"), "{}", stderr(&out));
    // A typo'd prefix removes nothing, not everything that starts with it.
    let out = s.run(&["rm", "-r", "ds/tre"]);
    assert_code(&out, 5);
    assert_eq!(lines(&s.run(&["ls", "-r", "/"])).len(), 4, "rm -r ds/tre removed something");
    // Misses and prefixes where one object was meant: a hint naming the command.
    for (args, hint) in [
        (vec!["rm", "ds/tree"], "`promote rm -r ds/tree/`"),
        (vec!["get", "ds/tree", "x"], "`promote get -r ds/tree/ DIR`"),
        (vec!["stat", "ds/tree"], "`promote ls ds/tree/`"),
        (vec!["verify", "ds/tree"], "`promote verify -r ds/tree/`"),
        (vec!["copy", "a:ds/tree", "b:x"], "(a:ds/tree/)"),
    ] {
        let out = s.run(&args);
        assert_code(&out, 5);
        assert!(
            stderr(&out).contains("there are 2 objects under ds/tree/") && stderr(&out).contains(hint),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = s.run(&["rm", "ds/tree/"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("names a prefix") && stderr(&out).contains("`promote rm -r ds/tree/`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lines(&s.run(&["ls", "-r", "/"])).len(), 4, "nothing was removed");
}

/// `--include`/`--exclude` select what a directory put, `ls`, `get -r`, `verify -r`, `copy` and
/// `rm -r` act on: names at any depth, paths from the top, exclude winning.
#[test]
fn include_and_exclude_select_files_and_objects_everywhere() {
    let s = Scratch::new();
    s.file("promote.toml", TWO_TARGETS);
    for rel in ["tree/a.pdf", "tree/b.txt", "tree/raw/c.pdf", "tree/raw/tmp/d.pdf"] {
        std::fs::create_dir_all(s.path().join(rel).parent().unwrap()).unwrap();
        std::fs::write(s.path().join(rel), rel).unwrap();
    }
    let keys = |args: &[&str]| stdout(&s.run(args)).lines().map(str::to_owned).collect::<Vec<_>>();
    assert_code(&s.run(&["put", "-q", "tree", "x", "--include", "*.pdf", "--exclude", "**/tmp/**"]), 0);
    assert_eq!(keys(&["ls", "-r", "x"]), ["x/a.pdf", "x/raw/c.pdf"]);
    assert_code(&s.run(&["put", "-q", "tree", "y"]), 0);
    assert_eq!(keys(&["ls", "-r", "y", "--include", "raw/**"]), ["y/raw/c.pdf", "y/raw/tmp/d.pdf"]);
    assert_eq!(keys(&["ls", "y", "--exclude", "raw/**"]), ["y/a.pdf", "y/b.txt"]);
    assert_code(&s.run(&["get", "-q", "-r", "y", "out", "--exclude", "*.pdf"]), 0);
    assert_eq!(std::fs::read_to_string(s.path().join("out/b.txt")).unwrap(), "tree/b.txt");
    assert!(!s.path().join("out/a.pdf").exists() && !s.path().join("out/raw").exists());
    let out = s.run(&["verify", "-r", "y", "--include", "*.txt"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("1 objects"), "{}", stderr(&out));
    assert_code(&s.run(&["copy", "-q", "a:y/", "b:z/", "--include", "*.txt"]), 0);
    assert_eq!(keys(&["--target", "b", "ls", "-r", "/"]), ["z/b.txt"]);
    assert_code(&s.run(&["rm", "-r", "y", "--include", "*.pdf"]), 0);
    assert_eq!(keys(&["ls", "-r", "y"]), ["y/b.txt"]);
    // A bad pattern, and filters where they select nothing, are usage errors.
    let out = s.run(&["ls", "-r", "--include", "a[", "/"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--include \"a[\""), "{}", stderr(&out));
    assert_code(&s.run(&["put", "tree/b.txt", "k", "--include", "*.txt"]), 2);
    assert_code(&s.run(&["rm", "y/b.txt", "--exclude", "*.pdf"]), 2);
}

/// A run whose manifest sizes every item measures bytes: a large item moves the bar (and its
/// ETA) while it downloads; without sizes the bar counts items and promises no ETA.
#[test]
fn the_run_bar_measures_bytes_when_the_manifest_gives_sizes() {
    let s = Scratch::new();
    let server = crate::run::server();
    let big = promote_tests::data::bytes(21, 8 << 20);
    server.add("/big.bin", big.clone());
    server.throttle("/big.bin", 3 << 20);
    server.add("/small.txt", b"small".to_vec());
    let sized = |path: &str, key: &str, bytes: &[u8]| {
        serde_json::json!({ "source": server.url(path), "key": key, "size": bytes.len() }).to_string()
    };
    crate::run::write_manifest(
        &s,
        "sized.jsonl",
        &[sized("/big.bin", "big", &big), sized("/small.txt", "small", b"small")],
    );
    let out = s
        .cmd(&["run", "sized.jsonl", "--out", "run", "--progress", "always"])
        .env("PROMOTE_RUN__RESUME_THRESHOLD", "1MiB")
        .output()
        .unwrap();
    assert_code(&out, 0);
    let err = stderr(&out);
    let frames: Vec<&str> = err.split(['\r', '\n']).filter(|f| f.contains(" / 8.0 MiB")).collect();
    assert!(
        frames.iter().any(|f| f.contains("eta") && !f.contains(" 0 B / ") && !f.contains("8.0 MiB / 8.0 MiB")),
        "no frame partway through the big item, in bytes: {err:?}"
    );
    server.throttle("/big.bin", 0);
    let no_sizes = [crate::run::line(&server.url("/small.txt"), "small2", None)];
    crate::run::write_manifest(&s, "unsized.jsonl", &no_sizes);
    let out = s.run(&["run", "unsized.jsonl", "--out", "run2", "--progress", "always"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("items") && !stderr(&out).contains("eta"), "{:?}", stderr(&out));
}

/// Many failures: `status` counts them by reason and names the first 50, saying how many more
/// `--json` lists (which lists them all).
#[test]
fn status_counts_many_failures_by_reason_and_names_the_first_fifty() {
    let s = Scratch::new();
    let missing = s.path().join("missing");
    let lines: String = (0..60)
        .map(|i| {
            format!("{}\n", serde_json::json!({ "source": missing.join(format!("f{i}")), "key": format!("k{i}") }))
        })
        .collect();
    s.file("manifest.jsonl", lines.as_bytes());
    let out = s.run(&["run", "manifest.jsonl", "-q"]);
    assert_ne!(code(&out), 0, "every source is missing");
    let out = s.run(&["status"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let failures = text.lines().find(|l| l.starts_with("failures: ")).unwrap_or_else(|| panic!("{text}"));
    assert!(failures.starts_with("failures: 60 ("), "{failures}");
    let named = text.lines().filter(|l| l.contains(" k")).count();
    assert_eq!(named, 50, "{text}");
    assert!(text.contains("  … and 10 more (`promote status --json` lists them all)"), "{text}");
    let out = s.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(status["failures"].as_array().map(Vec::len), Some(60));
}
