//! Config-driven deployments: profiles, named targets, secrets from files, `config validate`,
//! `config init`, `promote copy` between targets, and the examples in examples/deploy.

use std::path::PathBuf;

use crate::support::*;

/// The issue's file shape: one file, `dev` (local) and `prod` (S3) profiles.
const STAGES: &str = r#"
[default]
default_target = "scratch"

[default.targets.scratch]
kind = "local"
root = "runs/scratch"

[dev.targets.archive]
kind = "local"
root = "runs/archive"

[prod.targets.archive]
kind = "s3"
bucket = "papers"
region = "eu-west-1"
access_key_id_file = "/run/secrets/s3-key-id"
secret_access_key_file = "/run/secrets/s3-secret"
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_owned()
}

fn show(s: &Scratch, args: &[&str], envs: &[(&str, &str)]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["config", "show", "--json"]);
    let out = s.cmd(&all).envs(envs.iter().copied()).output().unwrap();
    assert_code(&out, 0);
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn profiles_and_targets_choose_the_backend_and_config_show_says_how() {
    let s = Scratch::new();
    s.file("promote.toml", STAGES.as_bytes());
    s.file("f", b"stage me");
    // Default profile, default target.
    assert_code(&s.run(&["put", "f", "a"]), 0);
    assert!(s.path().join("runs/scratch/a").is_file());
    // dev: the archive is local.
    let out = s.cmd(&["--target", "archive", "put", "f", "a"]).env("PROMOTE_PROFILE", "dev").output().unwrap();
    assert_code(&out, 0);
    assert!(s.path().join("runs/archive/a").is_file());
    let out =
        s.cmd(&["put", "f", "b"]).env("PROMOTE_PROFILE", "dev").env("PROMOTE_TARGET", "archive").output().unwrap();
    assert_code(&out, 0);
    assert!(s.path().join("runs/archive/b").is_file());

    let v = show(&s, &["--target", "archive"], &[("PROMOTE_PROFILE", "dev")]);
    assert_eq!(v["profile"], serde_json::json!({"value": "dev", "source": "PROMOTE_PROFILE"}));
    assert_eq!(v["target"], serde_json::json!({"value": "archive", "source": "--target"}));
    assert_eq!(v["config_file"]["value"], s.path().join("promote.toml").to_str().unwrap());
    let file_source = format!("file {}", s.path().join("promote.toml").display());
    assert_eq!(v["targets.archive.root"]["source"], file_source.as_str());
    assert_eq!(v["targets.archive.root"]["value"], s.path().join("runs/archive").to_str().unwrap());
    assert_eq!(v["targets.archive.durability"]["source"], "default");

    // prod: the archive is S3; the environment reaches into targets; secret paths are shown,
    // as paths.
    let v = show(&s, &["--profile", "prod", "--target", "archive"], &[("PROMOTE_TARGETS__ARCHIVE__BUCKET", "other")]);
    assert_eq!(v["profile"]["source"], "--profile");
    assert_eq!(v["targets.archive.kind"]["value"], "s3");
    assert_eq!(
        v["targets.archive.bucket"],
        serde_json::json!({"value": "other", "source": "env PROMOTE_TARGETS__ARCHIVE__BUCKET"})
    );
    assert_eq!(v["targets.archive.secret_access_key_file"]["value"], "/run/secrets/s3-secret");

    // Unknown names are configuration errors that list what exists.
    let out = s.cmd(&["ls"]).env("PROMOTE_PROFILE", "staging").output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("\"staging\"") && stderr(&out).contains("dev, prod"), "{}", stderr(&out));
    let out = s.run(&["--target", "archive", "ls"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("unknown target \"archive\"") && stderr(&out).contains("scratch"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unrelated_promote_variables_break_nothing() {
    let s = Scratch::new();
    s.file("promote.toml", STAGES.as_bytes());
    s.file("f", b"x");
    let out = s
        .cmd(&["put", "f", "k"])
        .env("PROMOTE_TO_PROD", "1")
        .env("PROMOTE_PROFILE", "dev")
        .env("PROMOTE_TARGET", "archive")
        .env("PROMOTE_BUILD_ID", "42")
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(s.path().join("runs/archive/k").is_file());
    // A near-miss of a setting is still caught.
    let out = s.cmd(&["ls"]).env("PROMOTE_TARGTS__ARCHIVE__ROOT", "x").output().unwrap();
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("PROMOTE_TARGTS__ARCHIVE__ROOT") && stderr(&out).contains("targets"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_search_path_reaches_xdg_config_home_after_the_current_directory() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join(".xdg/promote")).unwrap();
    s.file(".xdg/promote/promote.toml", b"[backend]\nkind = \"local\"\nroot = \"xdg-data\"\n");
    let v = show(&s, &[], &[]);
    let xdg_file = s.path().join(".xdg/promote/promote.toml");
    assert_eq!(v["config_file"], serde_json::json!({"value": xdg_file.to_str().unwrap(), "source": "search path"}));
    assert_eq!(v["backend.root"]["value"], s.path().join(".xdg/promote/xdg-data").to_str().unwrap());
    s.file("promote.toml", b"[backend]\nroot = \"cwd-data\"\n");
    let v = show(&s, &[], &[]);
    assert_eq!(v["config_file"]["value"], s.path().join("promote.toml").to_str().unwrap());
    let v = show(&s, &[], &[("PROMOTE_CONFIG", xdg_file.to_str().unwrap())]);
    assert_eq!(v["config_file"]["source"], "PROMOTE_CONFIG");
}

#[test]
fn validate_reports_every_problem_at_once_with_a_distinct_exit_code() {
    let s = Scratch::new();
    let bad = r#"default_target = "scratch"
streaming = [1]

[targets.scratch]
kind = "local"
rot = "runs"

[prod]
default_target = "archiv"

[prod.targets.archive]
kind = "s3"
region = "eu-west-1"
"#;
    s.file("promote.toml", bad.as_bytes());
    let out = s.run(&["config", "validate"]);
    assert_code(&out, 7);
    let err = stderr(&out);
    let file = s.path().join("promote.toml").display().to_string();
    assert!(
        err.contains(&format!("{file}:6:")) && err.contains("targets.scratch.rot") && err.contains("`root`"),
        "typo: {err}"
    );
    assert!(err.contains(&format!("{file}:2:")) && err.contains("streaming"), "wrong type: {err}");
    assert!(err.contains(&format!("{file}:11:")) && err.contains("targets.archive.bucket is not set"), "bucket: {err}");
    assert!(err.contains("unknown target \"archiv\""), "target: {err}");
    assert!(err.contains("4 problems"), "{err}");
    assert!(stdout(&out).is_empty());
    // Nothing was created.
    assert!(!s.path().join("runs").exists() && !s.root().exists());
    // The same file, fixed, is fine.
    let good = bad
        .replace("[1]", "true")
        .replace("rot =", "root =")
        .replace("archiv\"", "archive\"")
        .replace("region = \"eu-west-1\"", "region = \"eu-west-1\"\nbucket = \"bucket\"");
    s.file("promote.toml", good.as_bytes());
    let out = s.run(&["config", "validate"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("profiles: default, prod"), "{}", stdout(&out));
    // A syntax error is one problem with its line.
    s.file("promote.toml", b"[backend\nkind = 1\n");
    let out = s.run(&["config", "validate"]);
    assert_code(&out, 7);
    assert!(stderr(&out).contains("line 1"), "{}", stderr(&out));
}

#[test]
fn every_example_config_validates() {
    let mut files = Vec::new();
    for dir in ["config", "examples/deploy"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 5, "{files:?}");
    let s = Scratch::new();
    for file in files {
        let out = s.run(&["--config", file.to_str().unwrap(), "config", "validate"]);
        assert_code(&out, 0);
    }
    // The ConfigMap in the Kubernetes example holds the same config as k8s-promote.toml.
    let yaml = std::fs::read_to_string(repo().join("examples/deploy/cronjob.yaml")).unwrap();
    let toml = std::fs::read_to_string(repo().join("examples/deploy/k8s-promote.toml")).unwrap();
    let body: String =
        toml.lines().filter(|l| !l.starts_with('#')).map(|l| format!("    {l}\n").replace("    \n", "\n")).collect();
    assert!(yaml.contains(body.trim()), "cronjob.yaml's ConfigMap differs from k8s-promote.toml");
}

#[test]
fn config_init_writes_a_starter_that_validates_and_never_overwrites() {
    let s = Scratch::new();
    for kind in ["local", "s3"] {
        let name = format!("{kind}.toml");
        assert_code(&s.run(&["config", "init", "--kind", kind, "--path", &name]), 0);
        let out = s.run(&["--config", &name, "config", "validate"]);
        assert_code(&out, 0);
        std::fs::write(s.path().join(&name), "mine").unwrap();
        let out = s.run(&["config", "init", "--kind", kind, "--path", &name]);
        assert_code(&out, 2);
        assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(s.path().join(&name)).unwrap(), "mine");
    }
    assert_code(&s.run(&["config", "init"]), 0);
    assert!(s.path().join("promote.toml").is_file());
}

/// Two local targets with a tree of objects in the first.
fn two_stores(s: &Scratch) {
    s.file(
        "promote.toml",
        b"[targets.local]\nkind = \"local\"\nroot = \"src\"\n\n[targets.archive]\nkind = \"local\"\nroot = \"dst\"\n",
    );
    std::fs::create_dir_all(s.path().join("tree/sub")).unwrap();
    for (name, bytes) in [("a", &b"alpha"[..]), ("b", b"bravo bravo"), ("sub/c", b"charlie")] {
        s.file(&format!("tree/{name}"), bytes);
    }
    assert_code(&s.run(&["--target", "local", "put", "tree", "papers/"]), 0);
}

#[test]
fn copy_between_targets_verifies_and_a_rerun_reads_no_source_bytes() {
    let s = Scratch::new();
    two_stores(&s);
    let out = s.run(&["copy", "--dry-run", "local:papers/", "archive:papers/"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).matches("would copy").count(), 3, "{}", stdout(&out));
    assert!(!s.path().join("dst").exists(), "a dry run copies and creates nothing");

    let out = s.run(&["copy", "local:papers/", "archive:papers/"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).matches("promoted").count(), 3, "{}", stdout(&out));
    assert!(stderr(&out).contains("3 objects: 3 copied, 0 already present, 0 failed"), "{}", stderr(&out));
    assert_eq!(std::fs::read(s.path().join("dst/papers/sub/c")).unwrap(), b"charlie");
    let out = s.run(&["--target", "archive", "verify", "-r", "papers/"]);
    assert_code(&out, 0);

    // The rerun: every object answered from its stored digest; no source object is read.
    let trace = s.path().join("trace");
    let out = s.strace(&trace, "read,pread64,readv", &["copy", "local:papers/", "archive:papers/"]).output().unwrap();
    assert_code(&out, 0);
    assert_eq!(stdout(&out).matches("already-present").count(), 3, "{}", stdout(&out));
    assert!(stderr(&out).contains("0 copied, 3 already present"), "{}", stderr(&out));
    let trace = std::fs::read_to_string(&trace).unwrap();
    let src = s.path().join("src/papers").display().to_string();
    let reads: Vec<&str> = trace.lines().filter(|l| l.contains(&src)).collect();
    assert!(reads.is_empty(), "the rerun read source objects: {reads:?}");
    // The same trace does show reads of the source on a copy that needs them.
    let trace2 = s.path().join("trace2");
    let out = s.strace(&trace2, "read,pread64,readv", &["copy", "local:papers/a", "archive:fresh/a"]).output().unwrap();
    assert_code(&out, 0);
    assert!(std::fs::read_to_string(&trace2).unwrap().lines().any(|l| l.contains(&src)), "strace saw no source read");

    // A destination holding other bytes is a conflict, reported and not replaced.
    std::fs::create_dir_all(s.path().join("other")).unwrap();
    s.file("other/a", b"not alpha");
    assert_code(&s.run(&["--target", "archive", "put", "other/a", "clash/a"]), 0);
    let out = s.run(&["copy", "local:papers/a", "archive:clash/a"]);
    assert_code(&out, 3);
    assert_eq!(std::fs::read(s.path().join("dst/clash/a")).unwrap(), b"not alpha");
    // Bad arguments are usage errors.
    assert_code(&s.run(&["copy", "papers/", "archive:papers/"]), 2);
    assert_code(&s.run(&["copy", "local:papers/", "archive:one"]), 2);
    // Copying back the other way is no error: every object is already there, with its digest.
    let out = s.run(&["copy", "archive:papers/", "local:papers/"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("0 copied, 3 already present, 0 failed"), "{}", stderr(&out));
    // A source store that does not exist is an error (exit 2), and is not created.
    let out = s
        .cmd(&["copy", "local:papers/", "archive:papers/"])
        .env("PROMOTE_TARGETS__LOCAL__ROOT", "gone")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no store at"), "{}", stderr(&out));
    assert!(!s.path().join("gone").exists());
    let out = s.run(&["copy", "nowhere:papers/", "archive:papers/"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("unknown target \"nowhere\""), "{}", stderr(&out));
}

#[test]
fn copy_refuses_a_source_object_that_no_longer_matches_its_digest() {
    let s = Scratch::new();
    two_stores(&s);
    // Same size, same mtime, other bytes: only reading it can tell.
    let path = s.path().join("src/papers/a");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, b"ALPHA").unwrap();
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    let out = s.run(&["copy", "local:papers/a", "archive:papers/a"]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("papers/a"), "{}", stderr(&out));
    assert!(!s.path().join("dst/papers/a").exists(), "nothing was published");
}

/// The S3 test server as the `prod` archive of the deploy example, credentials from files.
struct Prod {
    s: Scratch,
    prefix: String,
    secret: String,
}

impl Prod {
    fn new() -> Self {
        let s = Scratch::new();
        std::fs::copy(repo().join("examples/deploy/promote.toml"), s.path().join("promote.toml")).unwrap();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let secret = format!("sentinel-secret-{nanos}");
        std::fs::create_dir(s.path().join("secrets")).unwrap();
        s.file("secrets/key-id", format!("{}\n", var("AWS_ACCESS_KEY_ID")).as_bytes());
        s.file("secrets/secret", format!("{secret}\n").as_bytes());
        for f in ["key-id", "secret"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(s.path().join("secrets").join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Self { s, prefix: format!("deploy/{}-{nanos}", std::process::id()), secret }
    }

    /// `PROMOTE_PROFILE=prod promote …`, the archive pointed at the test server; no AWS_* keys.
    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.s.cmd(args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        let secrets = self.s.path().join("secrets");
        cmd.env("PROMOTE_PROFILE", "prod")
            .env("PROMOTE_TARGETS__ARCHIVE__BUCKET", var("PROMOTE_TEST_S3_BUCKET"))
            .env("PROMOTE_TARGETS__ARCHIVE__ENDPOINT", var("PROMOTE_TEST_S3_ENDPOINT"))
            .env("PROMOTE_TARGETS__ARCHIVE__ALLOW_HTTP", "true")
            .env("PROMOTE_TARGETS__ARCHIVE__REGION", "us-east-1")
            .env("PROMOTE_TARGETS__ARCHIVE__PREFIX", &self.prefix)
            .env("PROMOTE_TARGETS__ARCHIVE__CONDITIONAL_WRITES", "probe")
            .env("PROMOTE_TARGETS__ARCHIVE__ACCESS_KEY_ID_FILE", secrets.join("key-id"))
            .env("PROMOTE_TARGETS__ARCHIVE__SECRET_ACCESS_KEY_FILE", secrets.join("secret"));
        cmd
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().unwrap()
    }
}

#[test]
fn the_deploy_example_runs_end_to_end_on_local_disk_and_s3() {
    let p = Prod::new();
    let s = &p.s;
    s.file("results.tar", b"night results");
    // dev: both targets on local disk, next to the config file.
    let out = s
        .cmd(&["--target", "archive", "put", "results.tar", "runs/results.tar"])
        .env("PROMOTE_PROFILE", "dev")
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(s.path().join("runs/archive/runs/results.tar").is_file());
    // prod: the archive is the bucket.
    let out = p.run(&["--target", "archive", "put", "results.tar", "runs/results.tar"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("promoted"), "{}", stdout(&out));
    let out = p.run(&["--target", "archive", "get", "runs/results.tar", "-"]);
    assert_code(&out, 0);
    assert_eq!(out.stdout, b"night results");
    let out = p.run(&["--target", "archive", "config", "show"]);
    assert_code(&out, 0);
    let shown = stdout(&out);
    assert!(shown.contains("profile = \"prod\"") && shown.contains("# PROMOTE_PROFILE"), "{shown}");
    assert!(shown.contains("targets.archive.kind = \"s3\""), "{shown}");
    // Promotion between stages: scratch (local) to archive (S3), then a rerun that copies nothing.
    std::fs::create_dir_all(s.path().join("papers")).unwrap();
    s.file("papers/one", b"first paper");
    s.file("papers/two", &vec![7u8; 300_000]);
    assert_code(&p.run(&["put", "papers", "papers/"]), 0);
    let out = p.run(&["copy", "scratch:papers/", "archive:papers/"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("2 copied"), "{}", stderr(&out));
    let out = p.run(&["copy", "scratch:papers/", "archive:papers/"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("0 copied, 2 already present"), "{}", stderr(&out));
    let out = p.run(&["--target", "archive", "verify", "-r", "papers/"]);
    assert_code(&out, 0);
}

#[test]
fn a_secret_given_only_as_a_file_works_and_never_appears_in_any_output() {
    let p = Prod::new();
    let s = &p.s;
    s.file("f", b"secret test");
    let mut outputs = Vec::new();
    for args in [
        &["--target", "archive", "put", "f", "k"][..],
        &["--target", "archive", "put", "f", "k", "--json"],
        &["-vvv", "--target", "archive", "put", "f", "k2"],
        &["--target", "archive", "get", "missing", "-"],
        &["--target", "archive", "stat", "k", "--json"],
        &["--target", "archive", "config", "show"],
        &["--target", "archive", "config", "show", "--json"],
        &["--target", "archive", "doctor"],
        &["config", "validate"],
    ] {
        outputs.push((args, p.run(args)));
    }
    // Each command did what it should (an early error exit could hide the secret by printing
    // nothing): the second put finds the same bytes, `get` of a missing key is exit 5, and
    // `config validate` checks every profile, where the S3 variables meet the [dev] profile's
    // local archive and are listed as problems (exit 7), naming the variables, not their values.
    let want = [0, 0, 0, 5, 0, 0, 0, 0, 7];
    for ((args, out), want) in outputs.iter().zip(want) {
        assert_eq!(code(out), want, "{args:?}: stdout: {}\nstderr: {}", stdout(out), stderr(out));
    }
    for (args, out) in &outputs {
        for text in [stdout(out), stderr(out)] {
            assert!(!text.contains(&p.secret), "{args:?} printed the secret: {text}");
        }
    }
    // The file really is what authenticates: an unreadable one stops the command, naming it.
    std::fs::remove_file(s.path().join("secrets/secret")).unwrap();
    let out = p.run(&["--target", "archive", "ls"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("secret_access_key_file") && stderr(&out).contains("secrets/secret"),
        "{}",
        stderr(&out)
    );
    // A secret file others can read gets a warning.
    s.file("secrets/secret", format!("{}\n", p.secret).as_bytes());
    let out = p.run(&["--target", "archive", "ls"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("readable by group or others"), "{}", stderr(&out));
}

#[test]
fn config_schema_describes_settings_profiles_and_every_backend_kind() {
    let s = Scratch::new();
    let out = s.run(&["config", "schema"]);
    assert_code(&out, 0);
    let schema: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(schema["$schema"].as_str().unwrap().contains("2020-12"), "{schema}");
    for key in ["streaming", "spool_dir", "run", "backend", "targets", "default_target"] {
        assert!(schema["properties"][key].is_object(), "top-level {key} missing");
    }
    // Any other top-level table is a profile holding the same settings.
    assert_eq!(schema["additionalProperties"]["$ref"], "#/$defs/Profile");
    assert_eq!(schema["$defs"]["Profile"]["additionalProperties"], false);
    assert_eq!(schema["properties"]["targets"]["additionalProperties"]["$ref"], "#/$defs/Backend");
    let kinds: Vec<&str> =
        schema["$defs"]["Backend"]["oneOf"].as_array().unwrap().iter().map(|r| r["$ref"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["#/$defs/backend-local", "#/$defs/backend-memory", "#/$defs/backend-opendal", "#/$defs/backend-s3"]
    );
    // Every key the example configs use is described, with its kind pinned.
    let s3 = &schema["$defs"]["backend-s3"];
    assert_eq!(s3["additionalProperties"], false);
    assert_eq!(s3["properties"]["kind"]["const"], "s3");
    for file in ["config/s3.toml", "config/s3-compatible.toml", "config/local.toml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let kind = if file.contains("s3") { "backend-s3" } else { "backend-local" };
        let in_backend = text.split("[backend]").nth(1).unwrap();
        for line in in_backend.lines().filter(|l| l.contains('=') && !l.trim_start().starts_with('#')) {
            let key = line.split('=').next().unwrap().trim();
            assert!(schema["$defs"][kind]["properties"][key].is_object(), "{file}: {key} is not in the schema");
        }
    }
    for key in ["access_key_id_file", "secret_access_key_file", "session_token_file"] {
        assert!(s3["properties"][key].is_object(), "{key}");
    }
}

#[test]
fn validate_live_runs_doctor_on_each_target_and_relative_secret_files_follow_the_config_file() {
    let s = Scratch::new();
    std::fs::create_dir(s.path().join("etc")).unwrap();
    s.file(
        "etc/p.toml",
        b"[targets.a]\nkind = \"local\"\nroot = \"a\"\n\n[targets.b]\nkind = \"local\"\nroot = \"b\"\n\n\
          [targets.s3]\nkind = \"s3\"\nbucket = \"x\"\nsecret_access_key_file = \"keys/secret\"\n",
    );
    let v = show(&s, &["--config", "etc/p.toml", "--target", "s3"], &[]);
    assert_eq!(v["targets.s3.secret_access_key_file"]["value"], s.path().join("etc/keys/secret").to_str().unwrap());
    s.file(
        "etc/p.toml",
        b"[targets.a]\nkind = \"local\"\nroot = \"a\"\n\n[targets.b]\nkind = \"local\"\nroot = \"b\"\n",
    );
    // doctor checks stores that exist (it creates none).
    std::fs::create_dir_all(s.path().join("etc/a")).unwrap();
    std::fs::create_dir_all(s.path().join("etc/b")).unwrap();
    let out = s.run(&["--config", "etc/p.toml", "config", "validate", "--live"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("== target a") && text.contains("== target b"), "{text}");
    assert_eq!(text.matches("all checks passed").count(), 2, "{text}");
    // A target doctor finds broken fails the live check.
    let out = s
        .cmd(&["--config", "etc/p.toml", "config", "validate", "--live"])
        .env("PROMOTE_TARGETS__B__ROOT", "/proc/promote-cannot-be-here")
        .output()
        .unwrap();
    assert_code(&out, 1);
    // Without --live nothing is touched, and an unknown PROMOTE_TARGET is one of the problems.
    let out = s.cmd(&["--config", "etc/p.toml", "config", "validate"]).env("PROMOTE_TARGET", "c").output().unwrap();
    assert_code(&out, 7);
    assert!(stderr(&out).contains("unknown target \"c\" (from PROMOTE_TARGET)"), "{}", stderr(&out));
}

/// The Kubernetes fleet example: a Job of pods running `promote run` against one bucket.
const FLEET: &str = "examples/deploy/fleet-job.yaml";

/// Every YAML document in `text`, parsed.
fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|doc| serde_json::Value::deserialize(doc).map_err(|e| format!("not YAML: {e}")))
        .collect()
}

/// Fails with `msg` unless `cond` holds.
fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

/// What the fleet example must be for its README to be true: every document parses; a
/// ConfigMap holds a promote config that `config validate` accepts and a manifest that
/// `run --dry-run` accepts; a Job of several pods, each running `promote run MANIFEST --out DIR`
/// with DIR on an emptyDir, the config and manifest mounted from those ConfigMaps, S3 keys from
/// a Secret, and time to stop cleanly on SIGTERM.
fn check_fleet(s: &Scratch, text: &str) -> Result<(), String> {
    let docs = yaml_documents(text)?;
    for doc in &docs {
        ensure(
            doc["apiVersion"].is_string() && doc["kind"].is_string() && doc["metadata"]["name"].is_string(),
            || format!("a document without apiVersion, kind or name: {doc}"),
        )?;
    }
    let config_maps: Vec<&serde_json::Value> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
    let jobs: Vec<&serde_json::Value> = docs.iter().filter(|d| d["kind"] == "Job").collect();
    ensure(jobs.len() == 1, || format!("{} Job documents, not one", jobs.len()))?;
    let job = jobs[0];
    ensure(job["apiVersion"] == "batch/v1", || format!("Job apiVersion {}", job["apiVersion"]))?;

    // Several workers, each finishing once.
    let spec = &job["spec"];
    let (completions, parallelism) = (spec["completions"].as_u64(), spec["parallelism"].as_u64());
    ensure(parallelism.is_some_and(|p| p >= 2) && completions == parallelism, || {
        format!("completions {completions:?} and parallelism {parallelism:?}: want the same number, at least 2")
    })?;
    let mode = &spec["completionMode"];
    ensure(mode.is_null() || mode == "Indexed" || mode == "NonIndexed", || format!("completionMode {mode}"))?;
    ensure(spec["backoffLimit"].is_u64(), || "no backoffLimit".into())?;
    let pod = &spec["template"]["spec"];
    ensure(pod["restartPolicy"] == "Never" || pod["restartPolicy"] == "OnFailure", || {
        format!("restartPolicy {}", pod["restartPolicy"])
    })?;
    // promote waits up to 15 s for clean-up (aborting uploads, releasing claims) after SIGTERM.
    let grace = pod["terminationGracePeriodSeconds"].as_u64();
    ensure(grace.is_some_and(|g| g >= 30), || format!("terminationGracePeriodSeconds {grace:?}: want at least 30"))?;

    let containers = pod["containers"].as_array().ok_or("no containers")?;
    ensure(containers.len() == 1, || format!("{} containers", containers.len()))?;
    let c = &containers[0];
    let words: Vec<&str> = c["command"]
        .as_array()
        .into_iter()
        .chain(c["args"].as_array())
        .flatten()
        .map(|w| w.as_str().ok_or_else(|| format!("a command word that is not text: {w}")))
        .collect::<Result<_, _>>()?;
    ensure(words.len() >= 3 && words[0] == "promote" && words[1] == "run", || format!("command {words:?}"))?;
    let manifest = words[2];
    let out = words.windows(2).find(|w| w[0] == "--out").map(|w| w[1]).ok_or_else(|| format!("no --out: {words:?}"))?;
    ensure(out.starts_with('/'), || format!("--out {out} is not absolute"))?;

    // Mounts: the volume a path in the container lives on.
    let mounts = c["volumeMounts"].as_array().ok_or("no volumeMounts")?;
    let volumes = pod["volumes"].as_array().ok_or("no volumes")?;
    let volume_at = |path: &str| -> Result<&serde_json::Value, String> {
        let mount = mounts
            .iter()
            .filter_map(|m| Some((m["mountPath"].as_str()?.trim_end_matches('/'), m)))
            .filter(|(at, _)| path == *at || path.starts_with(&format!("{at}/")))
            .max_by_key(|(at, _)| at.len())
            .map(|(_, m)| m)
            .ok_or_else(|| format!("{path} is on no volume mount"))?;
        volumes.iter().find(|v| v["name"] == mount["name"]).ok_or_else(|| format!("no volume {}", mount["name"]))
    };
    let run_dir = volume_at(out)?;
    ensure(run_dir["emptyDir"].is_object(), || format!("the run directory {out} is not on an emptyDir: {run_dir}"))?;
    ensure(mounts.iter().any(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(out)), || {
        format!("the emptyDir is not mounted at --out {out}")
    })?;

    // A file from a ConfigMap in this example: its text.
    let from_config_map = |path: &str| -> Result<String, String> {
        let volume = volume_at(path)?;
        let name = volume["configMap"]["name"].as_str().ok_or_else(|| format!("{path} is not from a ConfigMap"))?;
        let map = config_maps
            .iter()
            .find(|m| m["metadata"]["name"] == name)
            .ok_or_else(|| format!("ConfigMap {name} is not in the example"))?;
        let key = path.rsplit('/').next().unwrap_or_default();
        map["data"][key].as_str().map(str::to_owned).ok_or_else(|| format!("ConfigMap {name} has no {key}"))
    };
    let env = c["env"].as_array().ok_or("no env")?;
    let env_var = |name: &str| env.iter().find(|e| e["name"] == name);
    let config_path = env_var("PROMOTE_CONFIG")
        .and_then(|e| e["value"].as_str())
        .ok_or("PROMOTE_CONFIG does not name the config file")?;
    s.file("fleet.toml", from_config_map(config_path)?.as_bytes());
    let out = s.run(&["--config", "fleet.toml", "config", "validate"]);
    ensure(code(&out) == 0, || format!("config validate: {}", stderr(&out)))?;
    let shown = s.run(&["--config", "fleet.toml", "config", "show", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&shown)).map_err(|e| e.to_string())?;
    ensure(shown["backend.kind"]["value"] == "s3", || format!("the config's backend is {}", shown["backend.kind"]))?;
    s.file("fleet.jsonl", from_config_map(manifest)?.as_bytes());
    let out = s.run(&["run", "fleet.jsonl", "--dry-run", "--out", "fleet-run"]);
    ensure(code(&out) == 0, || format!("the manifest: {}", stderr(&out)))?;

    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        let secret = env_var(name).map(|e| &e["valueFrom"]["secretKeyRef"]);
        ensure(secret.is_some_and(|r| r["name"].is_string() && r["key"].is_string()), || {
            format!("{name} is not from a Secret (valueFrom.secretKeyRef)")
        })?;
    }
    for limit in ["requests", "limits"] {
        ensure(c["resources"][limit]["memory"].is_string(), || format!("no resources.{limit}.memory"))?;
    }
    Ok(())
}

#[test]
fn the_kubernetes_fleet_example_parses_and_its_config_validates() {
    let text = std::fs::read_to_string(repo().join(FLEET)).unwrap();
    let s = Scratch::new();
    check_fleet(&s, &text).unwrap();
    assert_eq!(yaml_documents(&text).unwrap().len(), 3);
    // The other Kubernetes examples parse too.
    let mut parsed = 0;
    for entry in std::fs::read_dir(repo().join("examples/deploy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let docs = yaml_documents(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert!(!docs.is_empty() && docs.iter().all(|d| d["kind"].is_string()), "{}", path.display());
            parsed += 1;
        }
    }
    assert!(parsed >= 2, "{parsed} YAML files in examples/deploy");
    // Each check can fail: a broken copy of the example is refused, for the reason broken.
    let breakages = [
        ("parallelism: 4", "parallelism: [4", "not YAML"),
        ("kind: Job", "kind: Deployment", "0 Job documents"),
        ("parallelism: 4", "parallelism: 1", "parallelism"),
        ("completionMode: Indexed", "completionMode: Indexd", "completionMode"),
        ("  restartPolicy: Never", "  restartPolicy: Always", "restartPolicy"),
        ("terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 5", "terminationGracePeriodSeconds"),
        ("command: [\"promote\"]", "command: [\"sh\"]", "command"),
        ("[\"run\", ", "[\"status\", ", "command"),
        ("\"--out\", ", "\"--output\", ", "no --out"),
        ("\"/var/lib/promote\"]", "\"/var/lib/other\"]", "on no volume mount"),
        ("emptyDir:\n            sizeLimit: 20Gi", "persistentVolumeClaim:\n            claimName: nfs", "emptyDir"),
        ("mountPath: /var/lib/promote\n", "mountPath: /var/lib\n", "not mounted at --out"),
        ("value: /etc/promote/promote.toml", "value: /etc/promote/config.toml", "has no config.toml"),
        ("    bucket = \"papers\"", "    buckt = \"papers\"", "config validate"),
        (
            "    kind = \"s3\"\n    bucket = \"papers\"\n    region = \"eu-west-1\"\n    prefix = \"archive\"\n    conditional_writes",
            "    kind = \"local\"\n    root = \"/data\"\n    # conditional_writes",
            "backend is",
        ),
        ("\"key\": \"papers/a.pdf\"", "\"ky\": \"papers/a.pdf\"", "the manifest"),
        ("name: promote-manifest\ndata:", "name: promote-urls\ndata:", "ConfigMap promote-manifest is not"),
        (
            "secretKeyRef:\n                  name: promote-s3\n                  key: access-key-id",
            "configMapKeyRef:\n                  name: promote-s3\n                  key: access-key-id",
            "AWS_ACCESS_KEY_ID",
        ),
        ("key: secret-access-key", "optional: true", "AWS_SECRET_ACCESS_KEY"),
        ("memory: 1Gi", "cpu: 2", "resources.limits.memory"),
    ];
    for (from, to, why) in breakages {
        assert_eq!(text.matches(from).count(), 1, "{from:?} is not once in {FLEET}");
        let err = check_fleet(&s, &text.replacen(from, to, 1)).expect_err(&format!("{from:?} → {to:?} passed"));
        assert!(err.contains(why), "{from:?} → {to:?}: {err}");
    }
}
