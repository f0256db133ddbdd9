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
    // A relative root from a file is relative to the file's directory, shown absolute.
    assert_eq!(v["backend.root"]["value"], s.path().join("A").to_str().unwrap());
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

#[test]
fn a_relative_root_in_a_file_is_relative_to_the_file_and_a_flag_to_the_cwd() {
    let s = Scratch::new();
    std::fs::create_dir(s.path().join("etc")).unwrap();
    std::fs::write(s.path().join("etc/p.toml"), "[backend]\nkind = \"local\"\nroot = \"data\"\n").unwrap();
    s.file("f", b"bytes");
    assert_code(&s.run(&["--config", "etc/p.toml", "put", "f", "k"]), 0);
    assert!(s.path().join("etc/data/k").is_file(), "the root resolves against etc/");
    assert!(!s.path().join("data").exists());
    let out = s.run(&["--config", "etc/p.toml", "config", "show"]);
    let want = format!("backend.root = \"{}\"", s.path().join("etc/data").display());
    assert!(stdout(&out).contains(&want), "{}", stdout(&out));
    // A flag and an environment variable stay relative to the current directory.
    assert_code(&s.run(&["--config", "etc/p.toml", "--root", "here", "put", "f", "k"]), 0);
    assert!(s.path().join("here/k").is_file());
    let out = s.cmd(&["--config", "etc/p.toml", "put", "f", "k"]).env("PROMOTE_BACKEND__ROOT", "env").output().unwrap();
    assert_code(&out, 0);
    assert!(s.path().join("env/k").is_file());
}

#[test]
fn an_empty_root_is_a_configuration_error_naming_the_key_and_the_file() {
    let s = Scratch::new();
    std::fs::write(s.path().join("promote.toml"), "[backend]\nroot = \"\"\n").unwrap();
    let out = s.run(&["ls"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("backend.root") && err.contains("promote.toml") && err.contains("empty"), "{err}");
    let out = s.cmd(&["ls"]).env("PROMOTE_BACKEND__ROOT", "").output().unwrap();
    assert_code(&out, 2);
}

#[test]
fn aws_variables_show_in_config_show_with_their_source() {
    let s = Scratch::new();
    let show = |extra: &[(&str, &str)]| {
        let mut cmd = s.cmd(&["config", "show", "--json", "--backend", "s3"]);
        for var in ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_BUCKET"] {
            cmd.env_remove(var);
        }
        cmd.envs(extra.iter().copied());
        let out = cmd.output().unwrap();
        assert_code(&out, 0);
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let v =
        show(&[("AWS_REGION", "eu-north-1"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"), ("AWS_BUCKET", "env-bucket")]);
    assert_eq!(v["backend.region"], serde_json::json!({"value": "eu-north-1", "source": "env AWS_REGION"}));
    assert_eq!(
        v["backend.endpoint"],
        serde_json::json!({"value": "http://127.0.0.1:9", "source": "env AWS_ENDPOINT_URL"})
    );
    assert_eq!(v["backend.bucket"], serde_json::json!({"value": "env-bucket", "source": "env AWS_BUCKET"}));
    let v = show(&[("AWS_DEFAULT_REGION", "ap-south-1")]);
    assert_eq!(v["backend.region"], serde_json::json!({"value": "ap-south-1", "source": "env AWS_DEFAULT_REGION"}));
    // A value in the configuration wins, and says so.
    let out = s
        .cmd(&["config", "show", "--json", "--backend", "s3"])
        .env("PROMOTE_BACKEND__REGION", "us-west-2")
        .env("AWS_REGION", "eu-north-1")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["backend.region"], serde_json::json!({"value": "us-west-2", "source": "env PROMOTE_BACKEND__REGION"}));
}

#[test]
fn missing_s3_credentials_say_where_promote_looked() {
    let s = Scratch::new();
    let mut cmd = s.cmd(&["ls"]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .env("PROMOTE_BACKEND__KIND", "s3")
        .env("PROMOTE_BACKEND__BUCKET", "bucket")
        .env("PROMOTE_BACKEND__ENDPOINT", "http://127.0.0.1:9")
        .env("PROMOTE_BACKEND__ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    for place in ["secret_access_key_file", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_WEB_IDENTITY_TOKEN_FILE"]
    {
        assert!(err.contains(place), "{place} missing from: {err}");
    }
    assert!(!err.contains("169.254") && !err.to_lowercase().contains("metadata endpoint"), "{err}");
}
