//! `promote run MANIFEST`: download runs (see `crate::run`).

use std::process::ExitCode;

use crate::args::RunArgs;
use crate::open_files;
use crate::run::{self, Plan};
use crate::settings::Loaded;

pub(crate) async fn run(loaded: &Loaded, args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut settings = loaded.settings.run.clone();
    if let Some(out) = args.out {
        settings.out = out;
    }
    if let Some(max) = args.max {
        settings.max = Some(max);
    }
    if let Some(n) = args.concurrency {
        settings.concurrency = n;
    }
    // Each item in flight holds its partial or source, its staging file and maybe a socket.
    let flag = if args.concurrency.is_some() { "--concurrency" } else { "run.concurrency" };
    settings.concurrency = open_files::fit(settings.concurrency, open_files::PER_FILE, Some(flag));
    if let Some(n) = args.per_host {
        settings.per_host = n;
    }
    let plan = Plan {
        manifest: args.manifest,
        settings,
        dry_run: args.dry_run,
        report: args.report,
        quiet: args.quiet,
        progress: args.progress,
        json: args.json,
    };
    let code = run::run(loaded, plan).await?;
    Ok(ExitCode::from(code))
}
