//! Runs the conformance suite against every backend: local disk (durable and not), memory, and
//! a real S3 server (started by `tests/run`; without one the S3 cases fail, loudly).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use promote_core::{Backend, Store};
use promote_local::{Durability, LocalBackend, LocalConfig};
use promote_object_store::{ObjectStoreBackend, S3Config};
use promote_tests::{Fixture, Suite, run};

fn local(name: &'static str, durability: Durability) -> Suite {
    let open = move || {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = LocalConfig { durability, ..LocalConfig::at(dir.path().join("root")) };
        let backend = LocalBackend::open(config).expect("open local backend");
        (backend, dir)
    };
    let (probe, _dir) = open();
    Suite {
        name,
        capabilities: probe.capabilities(),
        factory: Arc::new(move || {
            let (backend, dir) = open();
            Box::pin(async move { Fixture { store: Store::new(Arc::new(backend)), guard: Box::new(dir) } })
        }),
    }
}

fn memory() -> Suite {
    Suite {
        name: "memory",
        capabilities: ObjectStoreBackend::memory().capabilities(),
        factory: Arc::new(|| {
            Box::pin(async {
                Fixture { store: Store::new(Arc::new(ObjectStoreBackend::memory())), guard: Box::new(()) }
            })
        }),
    }
}

/// The test server's settings, from the environment `tests/run` exports; each fixture gets a
/// fresh prefix. Small parts, so multipart uploads are exercised too.
fn s3_config() -> S3Config {
    static N: AtomicU64 = AtomicU64::new(0);
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the suite with tests/run, which starts a local S3 server")
        })
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    S3Config {
        endpoint: Some(var("PROMOTE_TEST_S3_ENDPOINT")),
        allow_http: true,
        region: Some("us-east-1".into()),
        prefix: format!("conformance/{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)),
        multipart_threshold: 5 << 20,
        part_size: 5 << 20,
        max_retries: 2,
        ..S3Config::for_bucket(var("PROMOTE_TEST_S3_BUCKET"))
    }
}

async fn open_s3() -> ObjectStoreBackend {
    ObjectStoreBackend::s3(&s3_config()).await.unwrap_or_else(|e| panic!("cannot open the test S3 server: {e}"))
}

fn s3() -> Suite {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let capabilities = runtime.block_on(open_s3()).capabilities();
    Suite {
        name: "s3",
        capabilities,
        factory: Arc::new(|| {
            Box::pin(async { Fixture { store: Store::new(Arc::new(open_s3().await)), guard: Box::new(()) } })
        }),
    }
}

fn main() -> ExitCode {
    run(vec![local("local", Durability::Full), local("local_nosync", Durability::None), memory(), s3()])
}
