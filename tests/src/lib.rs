//! # promote-tests: one conformance suite, every backend
//!
//! Each behaviour the contract promises (see `promote_core`'s **Atomicity** section) is one
//! named async case in [`cases`]. A backend's test binary hands [`run`] a [`Suite`] — a name
//! and a factory that makes a fresh, empty store per case — and every case runs against it.
//! A case the backend's capabilities exclude is reported as *ignored*, with the reason on
//! stderr, never as passed.
//!
//! Cases that need a writer in another process (one that really dies, by SIGKILL) use
//! [`cases::Ctx::spawn_writer`], which re-executes the test binary as a child that reopens the same
//! storage through [`Suite::reopen`] and the fixture's [`Fixture::address`]. A suite without
//! `reopen` (memory) shows those cases as ignored. The claim protocol (`promote_core::kit::claims`) has its own suite in
//! [`claim_cases`], run by `tests/claims` against every backend with a control store.

pub mod cases;
pub mod claim_cases;
pub mod data;
pub mod http_server;
pub mod stall;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::pin::Pin;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use promote_core::{Capabilities, Expected, Key, Store};

/// A fresh store for one case, and whatever keeps its storage alive (a temp dir, a prefix).
pub struct Fixture {
    /// The store under test, empty.
    pub store: Store,
    /// Dropped after the case.
    pub guard: Box<dyn Send>,
    /// An independent look at the storage behind `store` (see [`Residue`]), where the suite has
    /// one.
    pub residue: Option<Residue>,
    /// How another process reaches the same storage (a root directory, a prefix), passed to
    /// [`Suite::reopen`] there; `None` where it cannot.
    pub address: Option<String>,
}

/// Lists the staging data in a fixture's storage (S3: every in-progress multipart upload and
/// every object under `.promote/` in the fixture's prefix) without going through the backend,
/// so the cases check residue independently of the backend's own `sweep_staging`. Each entry
/// names one piece of residue.
pub type Residue = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// Makes a fresh [`Fixture`].
pub type Factory = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Fixture> + Send>> + Send + Sync>;

/// Opens the storage of a fixture by its [`Fixture::address`], in another process.
pub type Reopen = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Store> + Send>> + Send + Sync>;

/// Set in a child writer's environment: `<suite name>` (the address and key follow in the next two).
const CHILD_SUITE: &str = "PROMOTE_CONFORMANCE_CHILD_SUITE";
const CHILD_ADDRESS: &str = "PROMOTE_CONFORMANCE_CHILD_ADDRESS";
const CHILD_KEY: &str = "PROMOTE_CONFORMANCE_CHILD_KEY";
/// What a child writer prints once its bytes are staged.
const READY: &str = "staged";

/// A writer in a child process, staging a key of the same storage; killed (SIGKILL) on drop.
pub struct ChildWriter {
    child: Child,
}

impl ChildWriter {
    /// Kills it with SIGKILL and reaps it: from now on it is a writer that really died.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the child writer");
        self.child.wait().expect("reap the child writer");
    }
}

impl Drop for ChildWriter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl cases::Ctx {
    /// Starts a child process that opens this target's storage, stages `bytes` bytes for `key`,
    /// and then waits, holding its staged write open, until killed. Returns once the bytes are
    /// staged.
    ///
    /// # Panics
    ///
    /// When the suite cannot reopen its storage elsewhere (such cases are ignored for it), or the
    /// child fails.
    pub fn spawn_writer(&self, key: &str, bytes: u64) -> ChildWriter {
        let address = self.address.clone().expect("this suite's storage cannot be reached from another process");
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .env(CHILD_SUITE, self.suite)
            .env(CHILD_ADDRESS, address)
            .env(CHILD_KEY, format!("{key}={bytes}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a child writer");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("child stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read from the child writer");
        let writer = ChildWriter { child };
        assert_eq!(line.trim(), READY, "the child writer failed before staging (see its stderr above)");
        writer
    }
}

/// In a child writer (see [`cases::Ctx::spawn_writer`]): stage, say so, wait to be killed.
fn child_writer(suites: &[Suite], suite: &str) -> ExitCode {
    let var = |name| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let Some(reopen) = suites.iter().find(|s| s.name == suite).and_then(|s| s.reopen.clone()) else {
        panic!("suite {suite} cannot reopen its storage in another process");
    };
    let spec = var(CHILD_KEY);
    let (key, size) = spec.rsplit_once('=').expect("key=size");
    let (key, size) = (Key::new(key).expect("valid key"), size.parse::<u64>().expect("a size"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let store = reopen(var(CHILD_ADDRESS)).await;
        let mut staged = store.stage(&key, &Expected::default()).await.expect("child: stage");
        for chunk in data::chunks(&data::bytes(99, size as usize), 1 << 20) {
            staged.write(chunk).await.expect("child: write");
        }
        println!("{READY}");
        // Hold the staged write open until SIGKILL.
        std::future::pending::<()>().await;
        drop(staged);
    });
    ExitCode::FAILURE
}

/// One backend under test.
pub struct Suite {
    /// Prefix of every case name (`local`, `s3`, …).
    pub name: &'static str,
    /// Its capabilities (decides which cases are ignored).
    pub capabilities: Capabilities,
    /// Bytes a staged object needs to take the backend's large-object path (S3: above the
    /// multipart threshold, so abort, drop, listing and race cases exercise multipart uploads).
    pub large: usize,
    /// Makes a fresh store per case.
    pub factory: Factory,
    /// Opens a fixture's storage by its address in another process; `None` where storage cannot
    /// be shared between processes.
    pub reopen: Option<Reopen>,
}

/// Runs every case against every suite, libtest-style (works with `cargo test` and nextest).
pub fn run(suites: Vec<Suite>) -> ExitCode {
    if let Ok(suite) = std::env::var(CHILD_SUITE) {
        return child_writer(&suites, &suite);
    }
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for suite in suites {
        for case in cases::ALL {
            let name = format!("{}::{}", suite.name, case.name);
            let elsewhere = (case.other_process && suite.reopen.is_none())
                .then_some("its storage cannot be reached from another process, so no writer can really die");
            let skip = elsewhere.or_else(|| (case.requires)(&suite.capabilities));
            if let Some(reason) = skip
                && !args.list
            {
                eprintln!("ignored {name}: {reason}");
            }
            let factory = Arc::clone(&suite.factory);
            let (run, large) = (case.run, suite.large);
            let suite_name = suite.name;
            let trial = Trial::test(name, move || {
                if let Some(reason) = skip {
                    return Err(Failed::from(format!("not supported by this backend: {reason}")));
                }
                let runtime = case_runtime()?;
                runtime.block_on(async move {
                    let fixture = factory().await;
                    let ctx = cases::Ctx {
                        store: fixture.store.clone(),
                        large,
                        residue: fixture.residue.clone(),
                        suite: suite_name,
                        address: fixture.address.clone(),
                    };
                    run(ctx).await;
                    drop(fixture);
                });
                // A case may leak a writer on purpose (as a crash would); don't wait for it.
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                Ok(())
            });
            trials.push(trial.with_ignored_flag(skip.is_some()));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// The runtime one case runs on (two workers, as a small machine has), for libtest-mimic trials.
pub(crate) fn case_runtime() -> Result<tokio::runtime::Runtime, Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))
}
