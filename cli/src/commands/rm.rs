//! `promote rm KEY`.

use std::process::ExitCode;

use super::parse_key;
use crate::args::RmArgs;
use crate::settings::{self, Loaded};

pub(crate) async fn run(loaded: &Loaded, args: RmArgs) -> anyhow::Result<ExitCode> {
    let key = parse_key(&args.key)?;
    let store = settings::open(loaded).await?;
    store.delete(&key).await?;
    println!("removed {key}");
    Ok(ExitCode::SUCCESS)
}
