//! `promote rm KEY`.

use std::process::ExitCode;

use super::parse_key;
use crate::args::RmArgs;
use crate::output::out;
use crate::settings::{self, Loaded};

pub(crate) async fn run(loaded: &Loaded, args: RmArgs) -> anyhow::Result<ExitCode> {
    let key = parse_key(&args.key)?;
    let store = settings::open(loaded).await?;
    store.delete(&key).await?;
    out!("removed {key}");
    Ok(ExitCode::SUCCESS)
}
