//! Runs the conformance suite against every backend.

use std::process::ExitCode;
use std::sync::Arc;

use promote_core::Store;
use promote_local::{Durability, LocalBackend, LocalConfig};
use promote_tests::{Fixture, Suite, run};

fn local(name: &'static str, durability: Durability) -> Suite {
    let open = move || {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = LocalConfig { durability, ..LocalConfig::at(dir.path().join("root")) };
        let backend = LocalBackend::open(config).expect("open local backend");
        (backend, dir)
    };
    let (probe, _dir) = open();
    let capabilities = promote_core::Backend::capabilities(&probe);
    Suite {
        name,
        capabilities,
        factory: Arc::new(move || {
            let (backend, dir) = open();
            Box::pin(async move { Fixture { store: Store::new(Arc::new(backend)), guard: Box::new(dir) } })
        }),
    }
}

fn main() -> ExitCode {
    run(vec![local("local", Durability::Full), local("local_nosync", Durability::None)])
}
