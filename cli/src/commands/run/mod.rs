//! `promote run MANIFEST`: download runs. The engine is the `promote-run` library; this command
//! turns settings and flags into its [`Options`], hands it the store and the first signal,
//! shows its events ([`progress`]), prints the summary line ([`summary`]), writes the
//! `--report` and `--json` output, and maps the result to an exit code.

mod journal;
mod progress;
mod summary;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use promote_run::{Options, Plan, RunError, Summary};

use crate::args::RunArgs;
use crate::open_files;
use crate::settings::{self, Loaded, RunSettings};
use crate::signals::{self, Interrupt};

/// The most parallel range requests per item (`run.segments`, `--segments`).
const MAX_SEGMENTS: usize = 16;

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
    if let Some(n) = args.segments {
        settings.segments = n.into();
    }
    if !(1..=MAX_SEGMENTS).contains(&settings.segments) {
        let (n, from) = (settings.segments, settings::source_of(&loaded.figment, "run.segments"));
        let text = format!("run.segments: {n} is not between 1 and {MAX_SEGMENTS} (from {from})");
        return Err(promote_core::Error::config(text).into());
    }
    let mut options = Options::new(args.manifest, settings.out.clone());
    options.max = settings.max;
    options.concurrency = settings.concurrency;
    options.per_host = settings.per_host;
    options.connect_timeout = settings.connect_timeout;
    options.read_timeout = settings.read_timeout;
    options.retries = settings.retries;
    options.resume_threshold = settings.resume_threshold;
    options.segments = settings.segments;
    options.shard_size = settings.shard_size;
    options.lease = settings.lease;
    options.streaming = loaded.settings.streaming;
    // The summary keeps every item's report only for output that lists them all at the end (a
    // `.json` report, `--json`): otherwise memory does not grow with the manifest.
    options.keep_items = args.json || args.report.as_deref().is_some_and(|path| !journal::wanted(path));
    if !args.dry_run {
        // Read now (env vars, files): a dry run sends no request and needs none.
        options.headers = headers(&settings)?;
    }

    let manifest = options.manifest.clone();
    let plan = Plan::read(options).map_err(error)?;
    for bad in plan.bad_lines() {
        eprintln!("{}:{}: {}", manifest.display(), bad.line, bad.reason);
    }
    // A `.jsonl` report is created now (a path that cannot take it fails before any fetch) and
    // written as items end; any other is written whole at the end.
    let journal = match &args.report {
        Some(path) if journal::wanted(path) => Some(Arc::new(journal::Journal::create(path)?)),
        _ => None,
    };
    let report = args.report.filter(|_| journal.is_none());
    let show = summary::Show { report, quiet: args.quiet, json: args.json };
    if args.dry_run {
        // A look at the store, which a dry run never creates: none there yet, nothing in it.
        let store = match super::open_existing(loaded).await {
            Ok(store) => Some(store),
            Err(err) => {
                eprintln!(
                    "promote: not looking at the store ({}); decisions assume it is empty",
                    crate::exit::one_line(&err)
                );
                None
            }
        };
        let summary = plan.dry_run(store.as_ref()).await.map_err(error)?;
        if !args.json && !args.quiet {
            summary::list(&summary)?;
        }
        if let Some(journal) = &journal {
            journal.finish(&summary)?;
        }
        return show.finish(&summary).map(ExitCode::from);
    }
    let store = settings::open(loaded).await?;
    let display = Arc::new(progress::Progress::new(args.progress, args.quiet, args.json));
    // The first signal from when the items start (see `crate::signals`): the run stops cleanly,
    // says what it did, and the command exits with the signal's code.
    let caught: Arc<OnceLock<Interrupt>> = Arc::default();
    let cancel = {
        let caught = Arc::clone(&caught);
        async move {
            let signal = signals::listen().requested().await;
            let _ = caught.set(signal);
            signal.name.to_owned()
        }
    };
    let events = Arc::new(journal::Tee { display: Arc::clone(&display), journal: journal.clone() });
    let flusher = journal.as_ref().map(journal::Journal::flusher);
    let result = plan.run(store, events, cancel).await;
    drop(flusher);
    display.finish();
    let summary: Summary = result.map_err(error)?;
    if let Some(journal) = &journal {
        journal.finish(&summary)?;
    }
    let code = show.finish(&summary)?;
    Ok(ExitCode::from(caught.get().map_or(code, |signal| signal.exit)))
}

/// Request headers per host from the `[run.headers."<host>"]` tables, each value marked
/// sensitive, so neither promote nor the HTTP stack ever prints or logs it.
///
/// # Errors
///
/// A header that cannot be read or is not a valid header (a configuration error).
fn headers(run: &RunSettings) -> anyhow::Result<HashMap<String, HeaderMap>> {
    let mut headers = HashMap::new();
    for (host, names) in &run.headers {
        let mut map = HeaderMap::new();
        for (name, source) in names {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                promote_core::Error::config(format!("run.headers.{host:?}: {name:?} is not a header name"))
            })?;
            let text = source
                .resolve()
                .map_err(|why| promote_core::Error::config(format!("run.headers.{host:?}.{name}: {why}")))?;
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                promote_core::Error::config(format!(
                    "run.headers.{host:?}.{name}: the value is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            map.insert(header, value);
        }
        headers.insert(host.to_ascii_lowercase(), map);
    }
    Ok(headers)
}

/// A run's error as the CLI reports it: an unreadable manifest is a usage error (exit 2), a
/// store's error keeps its exit code, the rest (run directory, ledger, leases) are I/O (exit 6).
fn error(err: RunError) -> anyhow::Error {
    match err {
        err @ RunError::Manifest { .. } => super::usage(err.to_string()),
        RunError::Store(err) => err.into(),
        RunError::Ledger(err) => err.into(),
        RunError::Lease(err) => anyhow::Error::new(*err),
        err @ RunError::RunDir { .. } => anyhow::Error::new(err),
    }
}
