//! `promote verify KEY`: re-read, recompute, compare.

use std::process::ExitCode;

use promote_core::Expected;
use serde_json::json;

use super::parse_key;
use crate::args::VerifyArgs;
use crate::output::out;
use crate::settings::{self, Loaded};

pub(crate) async fn run(loaded: &Loaded, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = parse_key(&args.key)?;
    let store = settings::open(loaded).await?;
    let (meta, digest) = store.verify(&key, &Expected { size: None, sha256: args.sha256 }).await?;
    let against = match (meta.sha256.is_some(), args.sha256.is_some()) {
        (true, true) => "the stored digest and --sha256",
        (true, false) => "the stored digest",
        (false, true) => "--sha256 (no digest is stored)",
        (false, false) => "nothing: no digest is stored and no --sha256 was given",
    };
    if args.json {
        let v = json!({ "key": key.as_str(), "size": digest.size, "sha256": digest.sha256.to_string(),
                        "stored_sha256": meta.sha256.map(|s| s.to_string()), "verified_against": against });
        out!("{v}");
    } else {
        out!("verified {key}  {} bytes  sha256:{}  (checked against {against})", digest.size, digest.sha256);
    }
    Ok(ExitCode::SUCCESS)
}
