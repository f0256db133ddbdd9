//! The OpenDAL services under test and how to reach them: memory, fs (a temp dir), the S3
//! server `tests/run` starts (LocalStack) through OpenDAL's `s3` service, and the Azurite it
//! starts through `azblob`. Without a server's environment its cases fail, loudly.

use std::sync::atomic::{AtomicU64, Ordering};

use promote_core::{Backend, Mode};
use promote_opendal::{OpendalBackend, OpendalConfig};

/// Part size and multipart threshold in the tests: S3's minimum part, so two-part uploads stay
/// small.
pub const PART: u64 = 5 << 20;

/// A root no other fixture uses.
pub fn fresh_root(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("/{what}/{}-{nanos}-{}/", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn var(name: &str, started_by: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the suite with tests/run, which starts {started_by}"))
}

fn sized(mut config: OpendalConfig) -> OpendalConfig {
    config.multipart_threshold = PART;
    config.part_size = PART;
    config.layers.retry_max_times = 2;
    config
}

/// `scheme = "s3"` on the test S3 server, under `root`.
pub fn s3(root: &str) -> OpendalConfig {
    let server = "a local S3 server";
    let options = [
        ("bucket", var("PROMOTE_TEST_S3_BUCKET", server)),
        ("endpoint", var("PROMOTE_TEST_S3_ENDPOINT", server)),
        ("region", "us-east-1".to_owned()),
        ("access_key_id", var("AWS_ACCESS_KEY_ID", server)),
        ("secret_access_key", var("AWS_SECRET_ACCESS_KEY", server)),
        ("disable_config_load", "true".to_owned()),
        ("disable_ec2_metadata", "true".to_owned()),
        ("root", root.to_owned()),
    ];
    sized(OpendalConfig::new("s3", options.map(|(k, v)| (k.to_owned(), v))))
}

/// `scheme = "azblob"` on the test Azurite, under `root`.
pub fn azblob(root: &str) -> OpendalConfig {
    let server = "Azurite";
    let options = [
        ("container", var("PROMOTE_TEST_AZBLOB_CONTAINER", server)),
        ("endpoint", var("PROMOTE_TEST_AZBLOB_ENDPOINT", server)),
        ("account_name", var("PROMOTE_TEST_AZBLOB_ACCOUNT_NAME", server)),
        ("account_key", var("PROMOTE_TEST_AZBLOB_ACCOUNT_KEY", server)),
        ("root", root.to_owned()),
    ];
    sized(OpendalConfig::new("azblob", options.map(|(k, v)| (k.to_owned(), v))))
}

/// `scheme = "fs"` at `root`.
pub fn fs(root: &str) -> OpendalConfig {
    sized(OpendalConfig::new("fs", [("root".to_owned(), root.to_owned())]))
}

/// `scheme = "memory"`.
pub fn memory() -> OpendalConfig {
    sized(OpendalConfig::new("memory", []))
}

/// Opens `config`, failing the test loudly if it cannot.
pub async fn open(config: &OpendalConfig) -> OpendalBackend {
    let backend = OpendalBackend::open(config).unwrap_or_else(|e| panic!("cannot open OpenDAL {}: {e}", config.scheme));
    backend.ready_for(&Mode::Create).await.unwrap_or_else(|e| panic!("OpenDAL {} not ready: {e}", config.scheme));
    backend
}
