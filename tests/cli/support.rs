//! Running the real binary in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use promote_core::Sha256;

/// The value of the environment variable `name`, which `tests/run` sets when it starts the test
/// servers (S3, Azurite). Panics, never skips, when it is missing.
#[track_caller]
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with tests/run (it starts the S3 and Azure test servers)")
    })
}

/// A prefix of its own in the test bucket, for one test (`name` says which).
pub fn s3_prefix_for(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("cli/{name}-{}-{nanos}", std::process::id())
}

/// A prefix of its own in the test bucket for one `promote run` test.
pub fn s3_prefix() -> String {
    s3_prefix_for("run")
}

/// `promote ARGS` in `s` against the test bucket (tests/run starts S3), under `prefix`,
/// configured through the environment as a user would.
pub fn s3_cmd(s: &Scratch, prefix: &str, args: &[&str]) -> Command {
    let mut cmd = s.cmd(args);
    cmd.env("PROMOTE_BACKEND__KIND", "s3")
        .env("PROMOTE_BACKEND__BUCKET", var("PROMOTE_TEST_S3_BUCKET"))
        .env("PROMOTE_BACKEND__ENDPOINT", var("PROMOTE_TEST_S3_ENDPOINT"))
        .env("PROMOTE_BACKEND__ALLOW_HTTP", "true")
        .env("PROMOTE_BACKEND__PREFIX", prefix);
    cmd
}

/// A scratch working directory with its own config-free environment.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default storage root (`./promote-data`).
    pub fn root(&self) -> PathBuf {
        self.path().join("promote-data")
    }

    /// A `promote` command running in the scratch dir, with no PROMOTE_* from the outside.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promote"));
        cmd.args(args);
        self.prepare(cmd)
    }

    /// A `promote` command run under `strace -f -y -e trace=<calls> -o <out>`. Panics (never
    /// skips) when strace is not installed.
    pub fn strace(&self, out: &Path, calls: &str, args: &[&str]) -> Command {
        let found = Command::new("strace").arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "strace is not installed: this test records syscalls with it (apt-get install strace); it never skips"
        );
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-y", "-e", &format!("trace={calls}"), "-o"]).arg(out).arg("--");
        cmd.arg(env!("CARGO_BIN_EXE_promote")).args(args);
        self.prepare(cmd)
    }

    /// `sh -c SCRIPT` under a pseudo-terminal (util-linux `script`), with `$PROMOTE` naming the
    /// binary: what the terminal showed is the output's stdout. Panics (never skips) without
    /// `script`.
    pub fn on_terminal(&self, script: &str) -> Output {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &format!("sh -c '{script}'"), "/dev/null"]).env("PROMOTE", env!("CARGO_BIN_EXE_promote"));
        self.prepare(cmd).output().expect("util-linux `script` is needed for the terminal tests")
    }

    /// A `promote` command run with the open-file limit (soft and hard) lowered to `limit`
    /// (`ulimit -n` in `sh`, then `exec`), so it cannot raise it again.
    pub fn with_open_file_limit(&self, limit: u32, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("ulimit -n {limit} && exec \"$0\" \"$@\"")]).arg(env!("CARGO_BIN_EXE_promote"));
        cmd.args(args);
        self.prepare(cmd)
    }

    fn prepare(&self, mut cmd: Command) -> Command {
        cmd.current_dir(self.path()).stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PROMOTE_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        // Spool files stay in the scratch dir, so tests never see each other's.
        let spool = self.path().join(".spool");
        std::fs::create_dir_all(&spool).expect("spool dir");
        cmd.env("PROMOTE_SPOOL_DIR", spool);
        // The config search path reaches $XDG_CONFIG_HOME: keep the user's own file out.
        cmd.env("XDG_CONFIG_HOME", self.path().join(".xdg"));
        cmd
    }

    /// `bash -c SCRIPT` in the scratch dir, prepared as [`Scratch::cmd`] prepares promote (the
    /// script names the binary as `$PROMOTE`).
    pub fn shell(&self, script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(script).env("PROMOTE", env!("CARGO_BIN_EXE_promote"));
        self.prepare(cmd)
    }

    /// `promote ARGS` run as the user `nobody` (uid 65534) in the scratch dir, through
    /// `setpriv` (util-linux).
    pub fn as_nobody(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(env!("CARGO_BIN_EXE_promote"));
        cmd.args(args).current_dir(self.path()).env("PROMOTE_SPOOL_DIR", "/tmp");
        cmd.output().expect("run setpriv (util-linux)")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run promote")
    }

    /// Writes a file in the scratch dir.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, bytes).expect("write file");
        path
    }

    /// Files left in the local backend's staging area.
    pub fn staging_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.root().join(".promote/staging")) {
            Ok(entries) => entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Runs `cmd` to the end with its output captured, but for at most `limit`: a command still
/// running then is killed and the test fails, saying what it printed so far.
#[track_caller]
pub fn output_within(mut cmd: Command, limit: std::time::Duration) -> Output {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the command");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
            panic!(
                "{cmd:?} did not finish within {limit:?} (killed): {} lines on stdout, stderr: {}",
                out.iter().filter(|&&b| b == b'\n').count(),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().expect("stdout reader"), stderr: stderr.join().expect("stderr reader") }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
pub fn assert_code(out: &Output, want: i32) {
    assert_eq!(code(out), want, "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

pub fn sha(bytes: &[u8]) -> String {
    Sha256::of(bytes).to_string()
}

/// One strace line: pid, and the rest.
pub fn trace(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("strace output");
    text.lines().filter_map(|l| l.split_once(' ').map(|(pid, rest)| (pid.to_owned(), rest.trim().to_owned()))).collect()
}

/// (start, end) line indexes of every completed `call`, pairing `<unfinished ...>` lines with
/// their `<... call resumed>` line of the same pid.
pub fn spans(lines: &[(String, String)], call: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, (pid, l)) in lines.iter().enumerate() {
        if !l.starts_with(&format!("{call}(")) {
            continue;
        }
        if !l.ends_with("<unfinished ...>") {
            out.push((i, i));
            continue;
        }
        let resumed = format!("<... {call} resumed>");
        if let Some(end) = (i + 1..lines.len()).find(|&j| lines[j].0 == *pid && lines[j].1.starts_with(&resumed)) {
            out.push((i, end));
        }
    }
    out
}

/// A filesystem mounted for the test, unmounted when dropped (also when the test fails). Panics,
/// never skips, when it cannot be made or mounted: the test suite runs as root.
pub struct Mounted(pub PathBuf);

impl Mounted {
    /// A `size` tmpfs at `at`.
    pub fn tmpfs(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        let mut mount = Command::new("mount");
        mount.args(["-t", "tmpfs", "-o", &format!("size={size}"), "promote-test"]).arg(at);
        Self::run(&mut mount, &format!("mount a tmpfs at {}", at.display()));
        Self(at.to_owned())
    }

    /// A fresh `fs` (`ext4`, `xfs`) on a sparse image file of `bytes` in the scratch dir, mounted
    /// through a loop device at `<scratch>/<fs>`.
    pub fn image(s: &Scratch, fs: &str, bytes: u64) -> Self {
        let image = s.path().join(format!("{fs}.img"));
        std::fs::File::create(&image).and_then(|f| f.set_len(bytes)).expect("sparse image file");
        let mkfs = format!("mkfs.{fs}");
        let package = if fs == "xfs" { "xfsprogs" } else { "e2fsprogs" };
        let made =
            Command::new(&mkfs).args(if fs == "ext4" { &["-q", "-F"][..] } else { &["-q"][..] }).arg(&image).output();
        let made = made.unwrap_or_else(|e| {
            panic!(
                "{mkfs} is not installed ({e}): this test makes a real {fs} (apt-get install {package}); it never skips"
            )
        });
        assert!(made.status.success(), "{mkfs} failed: {}", String::from_utf8_lossy(&made.stderr));
        let at = s.path().join(fs);
        std::fs::create_dir_all(&at).expect("mount point");
        Self::run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&at), &format!("loop-mount {fs}"));
        Self(at)
    }

    fn run(cmd: &mut Command, what: &str) {
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot {what}: `mount` must be installed ({e})"));
        assert!(
            out.status.success(),
            "cannot {what} (the tests run as root and need it; it never skips): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Bytes in use on the filesystem, after a `syncfs` (so delayed allocations are counted).
    pub fn used(&self) -> u64 {
        let dir = std::fs::File::open(&self.0).expect("open mount point");
        rustix::fs::syncfs(&dir).expect("syncfs");
        let st = rustix::fs::fstatvfs(&dir).expect("statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let done = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !done {
            // Still busy (a child that outlived a failed assertion): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Files `f0` … `f7` in `s`, `size` bytes each and all different (from `seed` on); their bytes.
pub fn racer_files(s: &Scratch, seed: u64, size: usize) -> Vec<Vec<u8>> {
    (0..8)
        .map(|i| {
            let bytes = promote_tests::data::bytes(seed + i, size);
            s.file(&format!("f{i}"), &bytes);
            bytes
        })
        .collect()
}

/// Eight processes race for one key, `racer(i)` putting `fI` (see [`racer_files`]): exactly one
/// exits 0, the seven others exit 3 saying the key conflicts. Returns the winner's index and
/// every output. `what` names the race in failures.
#[track_caller]
pub fn race_eight(what: &str, racer: impl Fn(usize) -> Command) -> (usize, Vec<Output>) {
    let children: Vec<_> = (0..8)
        .map(|i| racer(i).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start a racer"))
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().expect("racer output")).collect();
    let winners: Vec<usize> = (0..8).filter(|&i| code(&outs[i]) == 0).collect();
    assert_eq!(
        winners.len(),
        1,
        "{what}: exit codes {:?}; stderr {:?}",
        outs.iter().map(code).collect::<Vec<_>>(),
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    for (i, out) in outs.iter().enumerate().filter(|(i, _)| *i != winners[0]) {
        assert_eq!(code(out), 3, "{what}: loser {i}: {}", stderr(out));
        assert!(stderr(out).contains("conflicts"), "{what}: loser {i}: {}", stderr(out));
    }
    (winners[0], outs)
}

/// `promote put - killed` on `remote`, fed 16 MiB and SIGKILLed once its upload shows in
/// `recover --dry-run`: no object, `recover` removes the leftover (its line says `removed` and
/// `what`: "multipart upload", "staged file"), and nothing is left. `name` names the store.
#[track_caller]
pub fn sigkill_mid_upload(name: &str, remote: &impl Remote, s: &Scratch, what: &str) {
    use std::io::Write;
    let mut child = remote.cmd(s, &["put", "-", "killed"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&promote_tests::data::bytes(9, 16 << 20)).expect("feed the writer");
    stdin.flush().expect("flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while remote.leftovers(s).is_empty() {
        assert!(std::time::Instant::now() < deadline, "{name}: no upload appeared within 30s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    drop(stdin);
    assert_code(&remote.run(s, &["get", "killed", "-"]), 5);
    let out = remote.run(s, &["recover"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("removed") && stdout(&out).contains(what), "{name}: {}", stdout(&out));
    assert!(remote.leftovers(s).is_empty(), "{name}: {:?}", remote.leftovers(s));
    assert_code(&remote.run(s, &["get", "killed", "-"]), 5);
}

/// A remote store the CLI tests drive through the binary (an S3 bucket, an OpenDAL service):
/// how to configure `promote` for it, and the calls every such test makes.
pub trait Remote {
    /// `promote ARGS` configured for this store.
    fn cmd(&self, s: &Scratch, args: &[&str]) -> Command;

    /// Runs `promote ARGS` on this store.
    fn run(&self, s: &Scratch, args: &[&str]) -> Output {
        self.cmd(s, args).output().expect("run promote")
    }

    /// The object at `key`, read with `promote get` (which must succeed).
    fn get(&self, s: &Scratch, key: &str) -> Vec<u8> {
        let out = self.run(s, &["get", key, "-"]);
        assert_code(&out, 0);
        out.stdout
    }

    /// Leftovers `recover --dry-run` reports.
    fn leftovers(&self, s: &Scratch) -> Vec<serde_json::Value> {
        let out = self.run(s, &["recover", "--dry-run", "--json"]);
        assert_code(&out, 0);
        // Every record but the closing summary.
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|record| record["action"] != "summary")
            .collect()
    }
}
