//! # promote-tests: one conformance suite, every backend
//!
//! Each behaviour the contract promises (see `promote_core`'s **Atomicity** section) is one
//! named async case in [`cases`]. A backend's test binary hands [`run`] a [`Suite`] — a name
//! and a factory that makes a fresh, empty store per case — and every case runs against it.
//! A case the backend's capabilities exclude is reported as *ignored*, with the reason on
//! stderr, never as passed.

pub mod cases;
pub mod data;
pub mod http_server;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use promote_core::{Capabilities, Store};

/// A fresh store for one case, and whatever keeps its storage alive (a temp dir, a prefix).
pub struct Fixture {
    /// The store under test, empty.
    pub store: Store,
    /// Dropped after the case.
    pub guard: Box<dyn Send>,
}

/// Makes a fresh [`Fixture`].
pub type Factory = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Fixture> + Send>> + Send + Sync>;

/// One backend under test.
pub struct Suite {
    /// Prefix of every case name (`local`, `s3`, …).
    pub name: &'static str,
    /// Its capabilities (decides which cases are ignored).
    pub capabilities: Capabilities,
    /// Makes a fresh store per case.
    pub factory: Factory,
}

/// Runs every case against every suite, libtest-style (works with `cargo test` and nextest).
pub fn run(suites: Vec<Suite>) -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for suite in suites {
        for case in cases::ALL {
            let name = format!("{}::{}", suite.name, case.name);
            let skip = (case.requires)(&suite.capabilities);
            if let Some(reason) = skip
                && !args.list
            {
                eprintln!("ignored {name}: {reason}");
            }
            let factory = Arc::clone(&suite.factory);
            let run = case.run;
            let trial = Trial::test(name, move || {
                if let Some(reason) = skip {
                    return Err(Failed::from(format!("not supported by this backend: {reason}")));
                }
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| Failed::from(e.to_string()))?;
                runtime.block_on(async move {
                    let fixture = factory().await;
                    run(fixture.store.clone()).await;
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
