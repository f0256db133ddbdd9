//! Settings that cannot work, and arguments that are most likely mistakes: each is one error
//! line naming the setting (or argument) and where it came from, with its documented exit code
//! (never a panic's 101), and nothing is written. The S3 cases run against the test server
//! (LocalStack, started by `tests/run`).

use std::process::{Command, Output};

use crate::support::*;

/// A unique name part, so runs never see each other's keys or buckets.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Where a target's settings come from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// `./promote.toml`, `[targets.archive]`.
    File,
    /// `PROMOTE_TARGETS__ARCHIVE__*`.
    Env,
}

/// The S3 target `archive`: the test server and bucket under a fresh prefix, fast to give up,
/// with `changes` (setting, value) applied; set through `source`.
struct Target {
    settings: Vec<(String, String)>,
}

impl Target {
    fn new(prefix: &str, changes: &[(&str, &str)]) -> Self {
        let mut settings: Vec<(String, String)> = [
            ("kind", "s3".to_owned()),
            ("bucket", var("PROMOTE_TEST_S3_BUCKET")),
            ("endpoint", var("PROMOTE_TEST_S3_ENDPOINT")),
            ("allow_http", "true".into()),
            ("prefix", prefix.to_owned()),
            ("request_timeout", "5s".into()),
            ("max_retries", "0".into()),
            ("retry_timeout", "5s".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in changes {
            match settings.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = (*value).to_owned(),
                None => settings.push(((*key).to_owned(), (*value).to_owned())),
            }
        }
        Self { settings }
    }

    /// The same target with `key` unset.
    fn without(mut self, key: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self
    }

    /// `promote ARGS` with this target in force, its settings from `source`.
    fn cmd(&self, s: &Scratch, source: Source, args: &[&str]) -> Command {
        let mut cmd = s.cmd(args);
        match source {
            Source::File => {
                let mut text = "default_target = \"archive\"\n[targets.archive]\n".to_owned();
                for (key, value) in &self.settings {
                    let value = if value == "true" || value == "false" || value.parse::<u64>().is_ok() {
                        value.clone()
                    } else {
                        format!("{value:?}")
                    };
                    text.push_str(&format!("{key} = {value}\n"));
                }
                s.file("promote.toml", text.as_bytes());
            }
            Source::Env => {
                let _ = std::fs::remove_file(s.path().join("promote.toml"));
                cmd.env("PROMOTE_DEFAULT_TARGET", "archive");
                for (key, value) in &self.settings {
                    cmd.env(format!("PROMOTE_TARGETS__ARCHIVE__{}", key.to_uppercase()), value);
                }
            }
        }
        cmd
    }

    fn run(&self, s: &Scratch, source: Source, args: &[&str]) -> Output {
        self.cmd(s, source, args).output().expect("run promote")
    }
}

/// How an error names where `setting` (of `[targets.archive]`) came from.
fn named_source(s: &Scratch, source: Source, setting: &str) -> String {
    match source {
        Source::File => format!("from {}", s.path().join("promote.toml").display()),
        Source::Env => format!("from environment variable PROMOTE_TARGETS__ARCHIVE__{}", setting.to_uppercase()),
    }
}

/// The lines of `text` that mention `needle`: exactly one, returned.
#[track_caller]
fn one_line_with<'a>(text: &'a str, needle: &str, out: &Output) -> &'a str {
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "one line with {needle:?}; stdout: {}\nstderr: {}", stdout(out), stderr(out));
    lines[0]
}

/// Runs ls, put, get, doctor and `config validate` with a target whose `setting` is `value`
/// (from `source`): each refuses with its code (2 for the commands, a failed check for doctor,
/// 7 for validate) and one line naming the setting, its value and its source.
fn refused_everywhere(s: &Scratch, target: &Target, source: Source, setting: &str, value: &str) {
    let name = format!("targets.archive.{setting} = {value:?}");
    let from = named_source(s, source, setting);
    let check = |out: &Output, code: i32, text: &str| {
        assert_code(out, code);
        let line = one_line_with(text, &name, out);
        assert!(line.contains(&from), "{setting}={value:?} via {source:?}: the source is named: {line}");
    };
    for args in [&["ls"][..], &["put", "a", "k"], &["get", "k", "out"]] {
        let out = target.run(s, source, args);
        check(&out, 2, &stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "one error line: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
    let out = target.run(s, source, &["doctor"]);
    check(&out, 1, &stdout(&out));
    assert!(one_line_with(&stdout(&out), &name, &out).starts_with("FAIL backend:"), "{}", stdout(&out));
    let out = target.run(s, source, &["config", "validate"]);
    check(&out, 7, &stderr(&out));
    assert!(!s.path().join("out").exists(), "get wrote nothing");
}

/// Nothing under the target's prefix on the server.
fn nothing_written(s: &Scratch, prefix: &str) {
    let good = Target::new(prefix, &[]);
    let out = good.run(s, Source::Env, &["ls", "-r"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "", "nothing was written under {prefix}");
}

#[test]
fn bad_endpoints_regions_and_bucket_names_are_one_line_naming_the_setting_never_a_panic() {
    let s = Scratch::new();
    s.file("a", b"the bytes");
    let prefix = unique("bad-settings");
    let cases = [
        ("endpoint", "127.0.0.1:9000"),
        ("endpoint", "ftp://x"),
        ("endpoint", "http://exa mple.com"),
        ("endpoint", ""),
        ("region", ""),
        ("region", "us east 1"),
        ("bucket", "bad bucket"),
        ("bucket", "ab"),
        ("bucket", "-dash-"),
    ];
    for (setting, value) in cases {
        let target = Target::new(&prefix, &[(setting, value)]);
        for source in [Source::File, Source::Env] {
            refused_everywhere(&s, &target, source, setting, value);
        }
    }
    nothing_written(&s, &prefix);
}

#[test]
fn plain_http_needs_allow_http() {
    let s = Scratch::new();
    let target = Target::new(&unique("http"), &[("allow_http", "false")]);
    let out = target.run(&s, Source::File, &["ls"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("targets.archive.endpoint") && stderr(&out).contains("allow_http = true"));
}

#[test]
fn a_missing_bucket_is_named_with_its_endpoint_and_source_once() {
    let s = Scratch::new();
    s.file("a", b"the bytes");
    let bucket = unique("promote-missing");
    let endpoint = var("PROMOTE_TEST_S3_ENDPOINT");
    for source in [Source::File, Source::Env] {
        let want = format!(
            "bucket {bucket:?} does not exist at {endpoint} (targets.archive.bucket, {})",
            named_source(&s, source, "bucket")
        );
        let missing = Target::new("team", &[("bucket", &bucket)]);
        let trusting = Target::new("team", &[("bucket", &bucket), ("conditional_writes", "trust")]);
        // ls lists, put probes (PUT) or writes straight away, get and stat ask HEAD first.
        let runs = [
            (&missing, &["ls"][..]),
            (&missing, &["put", "a", "k"]),
            (&trusting, &["put", "a", "k"]),
            (&missing, &["get", "papers/a.bin", "out"]),
            (&missing, &["stat", "papers/a.bin"]),
        ];
        for (target, args) in runs {
            let out = target.run(&s, source, args);
            assert_code(&out, 6);
            assert_eq!(stderr(&out), format!("promote: error: {want}; create it or correct the setting\n"), "{args:?}");
        }
        let out = missing.run(&s, source, &["doctor"]);
        assert_code(&out, 1);
        assert_eq!(
            one_line_with(&stdout(&out), "does not exist", &out),
            format!("FAIL backend: {want}; create it or correct the setting")
        );
        let out = missing.run(&s, source, &["config", "validate", "--live"]);
        assert_code(&out, 1);
        one_line_with(&stdout(&out), &want, &out);
    }
    assert!(!s.path().join("out").exists(), "get wrote nothing");
    // Still missing: no command created it.
    let out = Target::new("team", &[("bucket", &bucket)]).run(&s, Source::Env, &["ls"]);
    assert_code(&out, 6);
}

#[test]
fn an_empty_key_or_prefix_is_a_usage_error_and_slash_is_the_top() {
    let s = Scratch::new();
    s.file("a", b"the bytes");
    let empty_key = "the key is empty (an unset variable?); use / for the top of the store";
    let empty_prefix = "the prefix is empty (an unset variable?); use / for the top of the store";
    let cases: [(&[&str], &str); 12] = [
        (&["put", "a", ""], empty_key),
        (&["get", "", "out"], empty_key),
        (&["get", "-r", "", "dir"], empty_prefix),
        (&["ls", ""], empty_prefix),
        (&["stat", ""], empty_key),
        (&["verify", ""], empty_key),
        (&["verify", "-r", ""], empty_prefix),
        (&["rm", ""], empty_key),
        (&["rm", "-r", ""], empty_prefix),
        (&["rm", "-r", "--all", ""], empty_prefix),
        (&["copy", "src:", "dst:k"], empty_key),
        (&["copy", "src:k", "dst:"], empty_key),
    ];
    for (args, message) in cases {
        let out = s.run(args);
        assert_code(&out, 2);
        assert_eq!(stderr(&out), format!("promote: error: {message}\n"), "{args:?}");
    }
    assert!(!s.root().exists(), "nothing was written");
    // `/` is the top of the store.
    assert_code(&s.run(&["put", "a", "/"]), 0);
    assert_eq!(stdout(&s.run(&["ls", "/"])), "a\n");
    assert_eq!(stdout(&s.run(&["ls"])), "a\n");
    let out = s.run(&["rm", "-r", "/"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--all"), "{}", stderr(&out));
    assert_code(&s.run(&["rm", "-r", "--all", "/"]), 0);
    assert_eq!(stdout(&s.run(&["ls", "-r"])), "");
}

#[test]
fn a_value_from_an_aws_variable_names_that_variable() {
    let s = Scratch::new();
    let target = Target::new(&unique("aws-vars"), &[]).without("endpoint");
    let out = target.cmd(&s, Source::File, &["ls"]).env("AWS_ENDPOINT_URL", "127.0.0.1:9000").output().unwrap();
    assert_code(&out, 2);
    let want = "targets.archive.endpoint = \"127.0.0.1:9000\" (from environment variable AWS_ENDPOINT_URL)";
    one_line_with(&stderr(&out), want, &out);

    let bucket = unique("promote-missing");
    let target = Target::new("team", &[]).without("bucket");
    let out = target.cmd(&s, Source::Env, &["ls"]).env("AWS_BUCKET", &bucket).output().unwrap();
    assert_code(&out, 6);
    one_line_with(&stderr(&out), "(targets.archive.bucket, from environment variable AWS_BUCKET)", &out);
}

#[test]
fn copy_names_the_target_whose_setting_is_bad() {
    let s = Scratch::new();
    s.file("a", b"the bytes");
    let config = "[targets.src]\nkind = \"local\"\nroot = \"src\"\n\n\
                  [targets.dst]\nkind = \"s3\"\nbucket = \"promote-test\"\nendpoint = \"127.0.0.1:9000\"\n";
    let file = s.file("promote.toml", config.as_bytes());
    assert_code(&s.run(&["--target", "src", "put", "a", "k"]), 0);
    let out = s.run(&["copy", "src:k", "dst:k"]);
    assert_code(&out, 2);
    let want = format!("targets.dst.endpoint = \"127.0.0.1:9000\" (from {})", file.display());
    one_line_with(&stderr(&out), &want, &out);
}
