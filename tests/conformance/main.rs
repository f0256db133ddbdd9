//! Runs the conformance suite against every backend: local disk (durable and not), memory, and
//! a real S3 server (started by `tests/run`; without one the S3 cases fail, loudly).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use promote_core::{Backend, Mode, Store};
use promote_local::{Durability, LocalBackend, LocalConfig};
use promote_object_store::{ObjectStoreBackend, S3Config};
use promote_opendal::OpendalConfig;
use promote_tests::{Fixture, Residue, Suite, run};

mod opendal_targets;
mod s3_residue;

fn local(name: &'static str, durability: Durability) -> Suite {
    let at = move |root: &std::path::Path| {
        LocalBackend::open(LocalConfig { durability, ..LocalConfig::at(root) }).expect("open local backend")
    };
    let open = move || {
        let dir = tempfile::tempdir().expect("temp dir");
        (at(&dir.path().join("root")), dir)
    };
    let (probe, _dir) = open();
    Suite {
        name,
        capabilities: probe.capabilities(),
        large: 3 << 20,
        factory: Arc::new(move || {
            let (backend, dir) = open();
            let address = Some(backend.root().display().to_string());
            Box::pin(async move {
                Fixture { store: Store::new(Arc::new(backend)), guard: Box::new(dir), residue: None, address }
            })
        }),
        // Another process reaches the same root directory.
        reopen: Some(Arc::new(move |root| {
            let backend = at(std::path::Path::new(&root));
            Box::pin(async move { Store::new(Arc::new(backend)) })
        })),
    }
}

fn memory() -> Suite {
    Suite {
        name: "memory",
        capabilities: ObjectStoreBackend::memory().capabilities(),
        large: 3 << 20,
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
        // Each process has its own memory.
        reopen: None,
    }
}

/// The test server's settings, from the environment `tests/run` exports; each fixture gets a
/// fresh prefix. Small parts, so multipart uploads are exercised too.
fn s3_config() -> S3Config {
    s3_config_at(fresh_prefix())
}

/// A prefix no other fixture uses.
fn fresh_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("conformance/{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The test server's settings for `prefix`.
fn s3_config_at(prefix: String) -> S3Config {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the suite with tests/run, which starts a local S3 server")
        })
    };
    S3Config {
        endpoint: Some(var("PROMOTE_TEST_S3_ENDPOINT")),
        allow_http: true,
        region: Some("us-east-1".into()),
        prefix,
        multipart_threshold: 5 << 20,
        part_size: 5 << 20,
        max_retries: 2,
        ..S3Config::for_bucket(var("PROMOTE_TEST_S3_BUCKET"))
    }
}

async fn open_s3_at(config: &S3Config) -> ObjectStoreBackend {
    let backend =
        ObjectStoreBackend::s3(config).await.unwrap_or_else(|e| panic!("cannot open the test S3 server: {e}"));
    // Run the create-only probe now, so the capabilities say what the server really does.
    backend.ready_for(&Mode::Create).await.unwrap_or_else(|e| panic!("cannot probe the test S3 server: {e}"));
    backend
}

async fn open_s3() -> ObjectStoreBackend {
    open_s3_at(&s3_config()).await
}

fn s3() -> Suite {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let capabilities = runtime.block_on(open_s3()).capabilities();
    Suite {
        name: "s3",
        capabilities,
        // Above the 5 MiB multipart threshold: two parts.
        large: (6 << 20) + 12_345,
        factory: Arc::new(|| {
            Box::pin(async {
                let config = s3_config();
                let address = Some(config.prefix.clone());
                let store = Store::new(Arc::new(open_s3_at(&config).await));
                let residue: Residue = Arc::new(move || {
                    let config = config.clone();
                    Box::pin(async move { s3_residue::residue(&config).await })
                });
                Fixture { store, guard: Box::new(()), residue: Some(residue), address }
            })
        }),
        // Another process reaches the same bucket and prefix (the server's settings are inherited).
        reopen: Some(Arc::new(|prefix| {
            Box::pin(async move { Store::new(Arc::new(open_s3_at(&s3_config_at(prefix)).await)) })
        })),
    }
}

/// An OpenDAL service: `config(root)` for a fresh root per fixture; `shared` when another process
/// reaches the same storage through the same root (everything but memory).
fn opendal(name: &'static str, config: fn(&str) -> OpendalConfig, shared: bool) -> Suite {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let capabilities =
        runtime.block_on(opendal_targets::open(&config(&opendal_targets::fresh_root("probe")))).capabilities();
    Suite {
        name,
        capabilities,
        // Above the 5 MiB threshold: staged in a file, then a two-part upload.
        large: (6 << 20) + 12_345,
        factory: Arc::new(move || {
            Box::pin(async move {
                let root = opendal_targets::fresh_root("conformance-opendal");
                let store = Store::new(Arc::new(opendal_targets::open(&config(&root)).await));
                Fixture { store, guard: Box::new(()), residue: None, address: shared.then_some(root) }
            })
        }),
        reopen: shared.then(|| -> promote_tests::Reopen {
            Arc::new(move |root| {
                Box::pin(async move { Store::new(Arc::new(opendal_targets::open(&config(&root)).await)) })
            })
        }),
    }
}

/// OpenDAL's fs service in a temp dir per fixture (the dirs live as long as the test process).
fn opendal_fs(root: &str) -> OpendalConfig {
    let base = std::env::temp_dir().join("promote-conformance-opendal-fs");
    opendal_targets::fs(&base.join(root.trim_matches('/')).display().to_string())
}

fn main() -> ExitCode {
    run(vec![
        local("local", Durability::Each),
        local("local_batch", Durability::Batch),
        local("local_nosync", Durability::None),
        memory(),
        s3(),
        opendal("opendal_memory", |_| opendal_targets::memory(), false),
        opendal("opendal_fs", opendal_fs, true),
        opendal("opendal_s3", opendal_targets::s3, true),
        opendal("opendal_azblob", opendal_targets::azblob, true),
    ])
}
