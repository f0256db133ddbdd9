//! `promote ls [PREFIX]`.

use std::process::ExitCode;

use serde_json::json;

use crate::args::LsArgs;
use crate::output::out;
use crate::settings::{self, Loaded};

pub(crate) async fn run(loaded: &Loaded, args: LsArgs) -> anyhow::Result<ExitCode> {
    let store = settings::open(loaded).await?;
    for entry in store.list(&args.prefix).await? {
        if args.json {
            out!("{}", json!({ "key": entry.key.as_str(), "size": entry.size }));
        } else {
            out!("{:>14}  {}", entry.size, entry.key);
        }
    }
    Ok(ExitCode::SUCCESS)
}
