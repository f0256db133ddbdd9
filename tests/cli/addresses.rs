//! Reaching storage the way S3 users already do: `s3://BUCKET/KEY` (and `az://CONTAINER/KEY`)
//! on the command line with no config file, the AWS profile files, and content types. Against
//! the S3 server and Azurite that `tests/run` starts.

use std::process::Command;

use promote_tests::data;

use crate::support::*;

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with tests/run (it starts S3 and Azurite)"))
}

/// A fresh key prefix in the test bucket.
fn fresh(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("cli/addr-{name}-{}-{nanos}", std::process::id())
}

/// `promote ARGS` with no AWS settings at all but what `aws` itself would read from the
/// environment: `AWS_ENDPOINT_URL` (the test server), `AWS_ALLOW_HTTP`, the keys and the region;
/// `HOME` is the scratch dir, so no profile file of the machine's is read.
fn aws_env(s: &Scratch, args: &[&str]) -> Command {
    let mut cmd = s.cmd(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("HOME", s.path())
        .env("AWS_ENDPOINT_URL", var("PROMOTE_TEST_S3_ENDPOINT"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID"))
        .env("AWS_SECRET_ACCESS_KEY", var("AWS_SECRET_ACCESS_KEY"))
        .env("AWS_REGION", "us-east-1");
    cmd
}

fn run(mut cmd: Command) -> std::process::Output {
    cmd.output().expect("run promote")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert_code(out, 0);
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// One line on stderr, exit 2, saying `needles`.
#[track_caller]
fn one_line_usage(out: &std::process::Output, needles: &[&str]) {
    assert_code(out, 2);
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}

#[test]
fn s3_addresses_work_in_every_command_with_no_config_file() {
    let s = Scratch::new();
    let bucket = var("PROMOTE_TEST_S3_BUCKET");
    let p = fresh("cmds");
    let at = |key: &str| format!("s3://{bucket}/{p}/{key}");
    s.file("a.json", b"{\"a\": 1}\n");
    s.file("b.bin", b"bbb");
    let out = run(aws_env(&s, &["put", "a.json", &at("a.json")]));
    assert_code(&out, 0);
    assert!(stdout(&out).contains(&format!("{p}/a.json")), "the receipt names the key in the bucket: {}", stdout(&out));
    // A key ending in `/` is a prefix, as everywhere.
    assert_code(&run(aws_env(&s, &["put", "b.bin", &at("sub/")])), 0);
    assert_eq!(run(aws_env(&s, &["get", &at("a.json"), "-"])).stdout, b"{\"a\": 1}\n");
    assert_code(&run(aws_env(&s, &["get", &at("sub/b.bin"), "got.bin"])), 0);
    assert_eq!(std::fs::read(s.path().join("got.bin")).unwrap(), b"bbb");
    let listed = stdout(&run(aws_env(&s, &["ls", "-r", &format!("s3://{bucket}/{p}/")])));
    assert_eq!(listed.lines().collect::<Vec<_>>(), [format!("{p}/a.json"), format!("{p}/sub/b.bin")], "{listed}");
    let stat = json(&run(aws_env(&s, &["stat", "--json", &at("a.json")])));
    assert_eq!(stat["sha256"], sha(b"{\"a\": 1}\n"));
    assert_code(&run(aws_env(&s, &["verify", &at("a.json"), "--sha256", &sha(b"{\"a\": 1}\n")])), 0);
    assert_code(&run(aws_env(&s, &["verify", "-r", &at("")])), 0);

    // copy: an address on either side, a named target on the other.
    s.file("promote.toml", b"[targets.archive]\nkind = \"local\"\nroot = \"archive\"\ndurability = \"none\"\n");
    let out = run(aws_env(&s, &["copy", &at(""), "archive:x/"]));
    assert_code(&out, 0);
    assert_eq!(std::fs::read(s.path().join("archive/x/sub/b.bin")).unwrap(), b"bbb");
    assert_code(&run(aws_env(&s, &["--target", "archive", "put", "b.bin", "local-b"])), 0);
    assert_code(&run(aws_env(&s, &["copy", "archive:local-b", &at("from-local")])), 0);
    assert_eq!(run(aws_env(&s, &["get", &at("from-local"), "-"])).stdout, b"bbb");

    // rm, several keys of one bucket; then they are gone.
    let out = run(aws_env(&s, &["rm", &at("a.json"), &at("sub/b.bin"), &at("from-local")]));
    assert_code(&out, 0);
    assert_code(&run(aws_env(&s, &["stat", &at("a.json")])), 5);
    assert_eq!(stdout(&run(aws_env(&s, &["ls", "-r", &at("")]))), "");
}

#[test]
fn bad_addresses_are_one_line_errors_naming_what_works() {
    let s = Scratch::new();
    s.file("f", b"x");
    // No GCS service is built in: say so, and what is.
    let out = run(aws_env(&s, &["put", "f", "gs://bucket/k"]));
    one_line_usage(&out, &["gs://", "not built", "s3://BUCKET/KEY", "az://CONTAINER/KEY"]);
    one_line_usage(&run(aws_env(&s, &["ls", "ftp://host/k"])), &["ftp://", "s3://BUCKET/KEY"]);
    one_line_usage(&run(aws_env(&s, &["get", "s3:///k", "-"])), &["no bucket"]);
    // A bucket S3 would refuse: the existing one-line error, naming the address.
    let out = run(aws_env(&s, &["ls", "s3://no_such..bucket/"]));
    one_line_usage(&out, &["bucket", "no_such..bucket", "s3://no_such..bucket/", "S3 bucket names are"]);
    // One command, one store.
    let out = run(aws_env(&s, &["rm", "s3://bucket-a/k", "s3://bucket-b/k"]));
    one_line_usage(&out, &["s3://bucket-a", "s3://bucket-b"]);
    one_line_usage(&run(aws_env(&s, &["rm", "s3://bucket-a/k", "plain"])), &["s3://bucket-a", "plain keys"]);
}

#[test]
fn az_addresses_reach_azure_blob_from_the_azure_variables() {
    let s = Scratch::new();
    let container = var("PROMOTE_TEST_AZBLOB_CONTAINER");
    let p = fresh("az");
    let az = |args: &[&str]| {
        let mut cmd = s.cmd(args);
        cmd.env("AZURE_STORAGE_ACCOUNT_NAME", var("PROMOTE_TEST_AZBLOB_ACCOUNT_NAME"))
            .env("AZURE_STORAGE_ACCOUNT_KEY", var("PROMOTE_TEST_AZBLOB_ACCOUNT_KEY"))
            .env("AZURE_STORAGE_ENDPOINT", var("PROMOTE_TEST_AZBLOB_ENDPOINT"));
        run(cmd)
    };
    s.file("page.html", b"<p>hi</p>");
    let key = format!("az://{container}/{p}/page.html");
    assert_code(&az(&["put", "page.html", &key]), 0);
    assert_eq!(az(&["get", &key, "-"]).stdout, b"<p>hi</p>");
    let stat = json(&az(&["stat", "--json", &key]));
    assert_eq!(
        (stat["key"].as_str().unwrap(), &stat["content_type"]),
        (format!("{p}/page.html").as_str(), &serde_json::json!("text/html"))
    );
    let listed = stdout(&az(&["ls", "-r", &format!("az://{container}/{p}/")]));
    assert_eq!(listed.trim(), format!("{p}/page.html"));
}

/// Writes `~/.aws/config` and `~/.aws/credentials` under the scratch dir's `home`.
fn aws_files(s: &Scratch, config: &str, credentials: &str) -> std::path::PathBuf {
    let home = s.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(home.join(".aws/config"), config).unwrap();
    std::fs::write(home.join(".aws/credentials"), credentials).unwrap();
    home
}

/// `promote ARGS` with no AWS_* variable but `AWS_ALLOW_HTTP` and `extra`, and HOME at `home`.
fn profile_cmd(s: &Scratch, home: &std::path::Path, extra: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = s.cmd(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("HOME", home).env("AWS_ALLOW_HTTP", "true").envs(extra.iter().copied());
    cmd
}

#[test]
fn the_aws_profile_files_give_endpoint_region_and_keys_and_config_show_names_them() {
    let s = Scratch::new();
    let endpoint = var("PROMOTE_TEST_S3_ENDPOINT");
    let config = format!(
        "# as `aws configure` writes it\n[default]\nregion = ap-south-1\n\n[profile dev]\nregion = us-east-1\n\
         endpoint_url = {endpoint}\ns3 =\n  addressing_style = path\n"
    );
    let credentials = format!(
        "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = DEFAULTSECRET\n\n[dev]\n\
         aws_access_key_id = {}\naws_secret_access_key = SECRETSENTINEL{}\n",
        var("AWS_ACCESS_KEY_ID"),
        var("AWS_SECRET_ACCESS_KEY"),
    );
    let home = aws_files(&s, &config, &credentials);
    let dev = [("AWS_PROFILE", "dev")];
    let key = format!("s3://{}/{}/p.txt", var("PROMOTE_TEST_S3_BUCKET"), fresh("profile"));
    s.file("p.txt", b"from a profile");
    let out = run(profile_cmd(&s, &home, &dev, &["put", "p.txt", &key]));
    assert_code(&out, 0);
    assert_eq!(run(profile_cmd(&s, &home, &dev, &["get", &key, "-"])).stdout, b"from a profile");

    // config show: each value with the file and profile it came from; secrets redacted.
    let show = |extra: &[(&str, &str)]| {
        let mut all = dev.to_vec();
        all.extend_from_slice(extra);
        let out = run(profile_cmd(&s, &home, &all, &["config", "show", "--json", "--backend", "s3"]));
        assert!(!stdout(&out).contains("SENTINEL") && !stderr(&out).contains("SENTINEL"), "{}", stdout(&out));
        json(&out)
    };
    let v = show(&[]);
    let config_file = format!("file {} (profile dev)", home.join(".aws/config").display());
    let credentials_file = format!("file {} (profile dev)", home.join(".aws/credentials").display());
    assert_eq!(v["backend.endpoint"], serde_json::json!({ "value": endpoint, "source": config_file }));
    assert_eq!(v["backend.region"], serde_json::json!({ "value": "us-east-1", "source": config_file }));
    assert_eq!(
        v["backend.secret_access_key"],
        serde_json::json!({ "value": "***redacted***", "source": credentials_file })
    );
    assert_eq!(v["backend.access_key_id"]["value"], "***redacted***");
    // Precedence: PROMOTE_* > AWS_* variables > the profile files.
    assert_eq!(show(&[("AWS_REGION", "eu-north-1")])["backend.region"]["source"], "env AWS_REGION");
    let v = show(&[("AWS_REGION", "eu-north-1"), ("PROMOTE_BACKEND__REGION", "us-west-2")]);
    assert_eq!(
        v["backend.region"],
        serde_json::json!({ "value": "us-west-2", "source": "env PROMOTE_BACKEND__REGION" })
    );
    // Keys in the environment win as a whole: nothing of the profile's is shown for them.
    let v = show(&[("AWS_ACCESS_KEY_ID", "envkey"), ("AWS_SECRET_ACCESS_KEY", "envsecret")]);
    assert_eq!(v["backend.secret_access_key"]["value"], serde_json::Value::Null);
    // Without AWS_PROFILE, the default profile.
    let out = run(profile_cmd(&s, &home, &[], &["config", "show", "--json", "--backend", "s3"]));
    assert_eq!(json(&out)["backend.region"]["value"], "ap-south-1");

    // The files can live elsewhere (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE).
    let elsewhere = s.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("c"), &config).unwrap();
    std::fs::write(elsewhere.join("k"), &credentials).unwrap();
    let nowhere = s.path().join("empty-home");
    let (c, k) = (elsewhere.join("c").display().to_string(), elsewhere.join("k").display().to_string());
    let moved = [("AWS_PROFILE", "dev"), ("AWS_CONFIG_FILE", c.as_str()), ("AWS_SHARED_CREDENTIALS_FILE", k.as_str())];
    assert_eq!(run(profile_cmd(&s, &nowhere, &moved, &["get", &key, "-"])).stdout, b"from a profile");

    // A profile named but defined nowhere: one line naming it and the files.
    let out = run(profile_cmd(&s, &home, &[("AWS_PROFILE", "nope")], &["ls", &key]));
    one_line_usage(&out, &["AWS_PROFILE", "nope", ".aws/config", ".aws/credentials"]);
}

#[test]
fn content_types_come_from_the_extension_or_the_flag_and_copies_keep_them() {
    let s = Scratch::new();
    let at = {
        let (bucket, p) = (var("PROMOTE_TEST_S3_BUCKET"), fresh("types"));
        move |key: &str| format!("s3://{bucket}/{p}/{key}")
    };
    // The s3 table in force (PROMOTE_BACKEND__*) still applies to an address: here its
    // multipart threshold, so the large object below goes up in parts.
    let cmd = |args: &[&str]| {
        let mut cmd = aws_env(&s, args);
        cmd.env("PROMOTE_BACKEND__KIND", "s3")
            .env("PROMOTE_BACKEND__MULTIPART_THRESHOLD", "5MiB")
            .env("PROMOTE_BACKEND__PART_SIZE", "5MiB");
        run(cmd)
    };
    let content_type = |key: &str| json(&cmd(&["stat", "--json", &at(key)]))["content_type"].clone();
    s.file("a.json", b"{}");
    s.file("big.json", &data::bytes(7, 11 << 20));
    assert_code(&cmd(&["put", "a.json", &at("k.json")]), 0);
    assert_eq!(content_type("k.json"), "application/json");
    assert_code(&cmd(&["put", "a.json", &at("plain.json"), "--content-type", "text/plain"]), 0);
    assert_eq!(content_type("plain.json"), "text/plain");
    assert_code(&cmd(&["put", "a.json", &at("no-extension")]), 0);
    assert_eq!(content_type("no-extension"), "application/octet-stream");
    // Multipart (11 MiB over a 5 MiB threshold), with and without the flag.
    assert_code(&cmd(&["put", "big.json", &at("big.json")]), 0);
    assert_eq!(content_type("big.json"), "application/json");
    assert_code(&cmd(&["put", "big.json", &at("big.txt"), "--content-type", "application/x-ndjson"]), 0);
    assert_eq!(content_type("big.txt"), "application/x-ndjson");
    // A copy keeps the source's type, whatever the destination key's extension says.
    assert_code(&cmd(&["copy", &at("plain.json"), &at("copied.json")]), 0);
    assert_eq!(content_type("copied.json"), "text/plain");
    // A type that is not one is a usage error before anything is sent.
    let out = cmd(&["put", "a.json", &at("bad"), "--content-type", "json"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("not a media type"), "{}", stderr(&out));
    // Local disk keeps none, and says so.
    let out = s.run(&["put", "a.json", "local.json"]);
    assert_code(&out, 0);
    assert_eq!(json(&s.run(&["stat", "--json", "local.json"]))["content_type"], serde_json::Value::Null);
}
