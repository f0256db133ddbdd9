//! Runs a small manifest of local files into a local-disk store from Rust code, printing each
//! event as it comes and the summary at the end.
//!
//! ```text
//! cargo run -p promote-run --example run_manifest [WORK_DIR]
//! ```
//!
//! WORK_DIR (default: a fresh temporary directory) gets `sources/` (three small files),
//! `manifest.jsonl`, the store `store/` and the run directory `run/`. Run it twice on the same
//! directory: the second run finds every item already present.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use promote_core::Store;
use promote_local::{LocalBackend, LocalConfig};
use promote_run::{Event, Options, Plan, Summary};

/// Writes the sources and the manifest under `dir`, then runs it into `dir/store`, printing
/// each event. Returns the summary.
pub async fn demo(dir: &Path) -> Result<Summary, Box<dyn Error>> {
    let sources = dir.join("sources");
    std::fs::create_dir_all(&sources)?;
    let mut manifest = String::new();
    for (name, text) in [("a.txt", "alpha\n"), ("b.txt", "bravo\n"), ("c.txt", "charlie\n")] {
        std::fs::write(sources.join(name), text)?;
        let sha256 = promote_core::Sha256::of(text.as_bytes());
        manifest.push_str(&format!(
            "{{\"source\": \"sources/{name}\", \"key\": \"letters/{name}\", \"sha256\": \"{sha256}\"}}\n"
        ));
    }
    std::fs::write(dir.join("manifest.jsonl"), manifest)?;

    let store = Store::new(Arc::new(LocalBackend::open(LocalConfig::at(dir.join("store")))?));
    let plan = Plan::read(Options::new(dir.join("manifest.jsonl"), dir.join("run")))?;
    let events = Arc::new(|event: Event| match event {
        Event::ItemDone { key, outcome, failure, .. } => match failure {
            Some(failure) => println!("{key}: {} ({}: {})", outcome.as_str(), failure.reason, failure.message),
            None => println!("{key}: {}", outcome.as_str()),
        },
        Event::Planned { items, shards, .. } => println!("planned {items} items in {shards} shards"),
        other => println!("{other:?}"),
    });
    // Nothing cancels this run: it goes to the end.
    let summary = plan.run(store, events, std::future::pending()).await?;
    Ok(summary)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let temporary;
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            temporary = tempfile::tempdir()?;
            temporary.path().to_owned()
        }
    };
    let summary = demo(&dir).await?;
    println!(
        "{} promoted, {} already present, {} failed; report: {}",
        summary.promoted,
        summary.already_present,
        summary.failed,
        summary.to_json()
    );
    Ok(())
}
