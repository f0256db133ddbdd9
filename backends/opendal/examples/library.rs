//! promote as a library: open a store from a configuration, promote a stream, read it back
//! verified.
//!
//! ```sh
//! cargo run -p promote-opendal --example library                       # OpenDAL's memory service
//! cargo run -p promote-opendal --example library -- config/opendal-azurite.toml
//! ```
//!
//! The configuration is the CLI's `[backend]` table; any registered kind works (this example
//! registers `opendal` only).

use futures_util::TryStreamExt;
use promote_core::{Error, Expected, Key, Mode, Sha256, Store};
use promote_settings::Registry;
use promote_settings::figment::Figment;
use promote_settings::figment::providers::{Format, Toml};

const DEFAULT: &str = r#"
[backend]
kind = "opendal"
scheme = "memory"
"#;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // 1. A store from a configuration: the registry picks the plugin by `backend.kind`.
    let mut registry = Registry::new();
    promote_opendal::register(&mut registry);
    let figment = match std::env::args().nth(1) {
        Some(path) => Figment::from(Toml::file_exact(path)),
        None => Figment::from(Toml::string(DEFAULT)),
    };
    let config = registry.load(&figment)?;
    let store = Store::new(config.open().await?);
    println!("store: {}", store.backend().location());

    // 2. Promote a stream: staged out of sight, hashed on the way, checked, published
    //    create-only. A rerun finds identical bytes and reports `already-present`.
    let key = Key::new("examples/hello.txt")?;
    let body = b"hello from promote, through OpenDAL\n".repeat(1000);
    let chunks: Vec<Result<promote_core::Bytes, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(promote_core::Bytes::copy_from_slice(c))).collect();
    let expected = Expected { sha256: Some(Sha256::of(&body)), size: Some(body.len() as u64) };
    let outcome = store.promote_stream(&key, futures_util::stream::iter(chunks), &expected, Mode::Create).await?;
    println!("{}: {} ({} bytes, sha256 {})", outcome.label(), key, outcome.receipt().size, outcome.receipt().sha256);

    // 3. Read it back verified: the stream fails if the bytes are not what was stored (its
    //    stored digest where the service keeps one, else its size); hash them here as well.
    let (meta, stream) = store.read_verified(&key).await?;
    let read: Vec<promote_core::Bytes> = stream.try_collect().await?;
    let read = read.concat();
    let sha = Sha256::of(&read);
    if sha != outcome.receipt().sha256 {
        return Err(Error::Damaged { key: key.to_string(), detail: format!("sha256 {sha}") });
    }
    let stored = meta.sha256.map_or_else(|| "not stored by this service".to_owned(), |s| s.to_string());
    println!("read back {} bytes, sha256 {sha} (stored digest: {stored})", read.len());
    Ok(())
}
