//! Runs the claim suite against every backend with a control store: memory, and a real S3
//! server (started by `tests/run`; without one the S3 cases fail, loudly).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use promote_core::kit::claims::ControlStore;
use promote_core::{Backend, Store};
use promote_object_store::{ObjectStoreBackend, S3Config};
use promote_tests::Fixture;
use promote_tests::claim_cases::{ClaimSuite, run};

#[path = "../conformance/opendal_targets.rs"]
#[allow(dead_code, reason = "shared with the conformance runner, which also uses the fs and memory targets")]
mod opendal_targets;

fn memory() -> ClaimSuite {
    ClaimSuite {
        name: "memory",
        multipart_threshold: None,
        factory: Arc::new(|| {
            Box::pin(async {
                Fixture {
                    store: Store::new(Arc::new(ObjectStoreBackend::memory())),
                    guard: Box::new(()),
                    residue: None,
                    address: None,
                }
            })
        }),
        // Memory has one client: the store itself.
        independent: |store| {
            let control = store.backend().control().expect("memory has a control store");
            Box::pin(async move { control })
        },
    }
}

const THRESHOLD: u64 = 5 << 20;

/// The test server, a fresh prefix per fixture, small parts so multipart uploads run.
fn s3_config(prefix: Option<String>) -> S3Config {
    static N: AtomicU64 = AtomicU64::new(0);
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the suite with tests/run, which starts a local S3 server")
        })
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let prefix = prefix
        .unwrap_or_else(|| format!("claims/{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    S3Config {
        endpoint: Some(var("PROMOTE_TEST_S3_ENDPOINT")),
        allow_http: true,
        region: Some("us-east-1".into()),
        prefix,
        multipart_threshold: THRESHOLD,
        part_size: 5 << 20,
        max_retries: 2,
        ..S3Config::for_bucket(var("PROMOTE_TEST_S3_BUCKET"))
    }
}

async fn open_s3(prefix: Option<String>) -> ObjectStoreBackend {
    ObjectStoreBackend::s3(&s3_config(prefix)).await.unwrap_or_else(|e| panic!("cannot open the test S3 server: {e}"))
}

/// A second backend instance on the fixture's bucket and prefix: its own client and connections.
fn independent_s3(store: &Store) -> BoxFuture<'static, Arc<dyn ControlStore>> {
    let location = store.backend().location();
    Box::pin(async move {
        let prefix = location.split_once("://").and_then(|(_, rest)| rest.split_once('/')).map(|(_, p)| p);
        let prefix = prefix.and_then(|p| p.split(' ').next()).expect("an s3://bucket/prefix location").to_owned();
        open_s3(Some(prefix)).await.control().expect("S3 has a control store")
    })
}

fn s3() -> ClaimSuite {
    ClaimSuite {
        name: "s3",
        multipart_threshold: Some(THRESHOLD),
        factory: Arc::new(|| {
            Box::pin(async {
                Fixture {
                    store: Store::new(Arc::new(open_s3(None).await)),
                    guard: Box::new(()),
                    residue: None,
                    address: None,
                }
            })
        }),
        independent: independent_s3,
    }
}

/// An OpenDAL service with control objects, a fresh root per fixture; `independent` opens a
/// second backend on the fixture's root (its own client).
fn opendal(name: &'static str, config: fn(&str) -> promote_opendal::OpendalConfig) -> ClaimSuite {
    ClaimSuite {
        name,
        multipart_threshold: Some(opendal_targets::PART),
        factory: Arc::new(move || {
            Box::pin(async move {
                let root = opendal_targets::fresh_root("claims-opendal");
                let backend = opendal_targets::open(&config(&root)).await;
                Fixture {
                    store: Store::new(Arc::new(backend)),
                    guard: Box::new(()),
                    residue: None,
                    address: Some(root),
                }
            })
        }),
        independent: match name {
            "opendal_s3" => |store| independent_opendal(store, opendal_targets::s3),
            _ => |store| independent_opendal(store, opendal_targets::azblob),
        },
    }
}

fn independent_opendal(
    store: &Store,
    config: fn(&str) -> promote_opendal::OpendalConfig,
) -> BoxFuture<'static, Arc<dyn ControlStore>> {
    // The location is `opendal:<scheme>://<bucket><root> at <endpoint>`.
    let location = store.backend().location();
    Box::pin(async move {
        let rest = location.split_once("://").map(|(_, r)| r).expect("an opendal location");
        let root = rest.split(' ').next().and_then(|r| r.find('/').map(|i| r[i..].to_owned())).expect("a root");
        opendal_targets::open(&config(&root)).await.control().expect("a control store")
    })
}

fn main() -> ExitCode {
    run(vec![
        memory(),
        s3(),
        opendal("opendal_s3", opendal_targets::s3),
        opendal("opendal_azblob", opendal_targets::azblob),
    ])
}
