//! `promote`: land files in storage all or nothing. See `promote --help` and the README.

mod args;
mod backends;
mod commands;
mod exit;
mod open_files;
mod output;
mod progress;
mod run;
mod schema;
mod settings;
mod stderr_term;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match args::parse() {
        Ok(args) => args,
        Err(err) => {
            if err.use_stderr() && std::env::args_os().any(|a| a == "--json") {
                // A usage error is a JSON record too when --json was asked for.
                let text = err.render().to_string();
                let first = text.split("\n\n").next().unwrap_or_default();
                let line = first.trim_start_matches("error: ").split_whitespace().collect::<Vec<_>>().join(" ");
                println!("{}", serde_json::json!({ "ok": false, "error": line, "exit": exit::USAGE }));
            }
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    output::init_tracing(args.global.verbose);
    // Many files at once need many descriptors: take what the hard limit allows.
    open_files::raise_limit();
    let json = args.command.json();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(err) => return exit::report(&anyhow::Error::new(err).context("starting the async runtime"), json),
    };
    runtime.block_on(async {
        let code = tokio::select! {
            result = commands::run(args) => match result {
                Ok(code) => code,
                Err(err) => exit::report(&err, json),
            },
            signal = interrupted() => {
                // The command's future is dropped here: its staged writes discard themselves.
                eprintln!("promote: interrupted by {}; staged data discarded, nothing published", signal.name);
                ExitCode::from(signal.exit)
            }
        };
        // Clean-up handed off by dropped handles (aborting uploads, releasing claims).
        let left = promote_core::cleanup::settle(CLEANUP_LIMIT).await;
        if left > 0 {
            eprintln!("promote: {left} clean-up(s) did not finish in time; `promote recover` removes what they leave");
        }
        code
    })
}

/// How long an exiting command waits for background clean-up.
const CLEANUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A signal that ends the command, and the exit status a shell would report for it.
struct Interrupt {
    name: &'static str,
    exit: u8,
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. If the handlers cannot be installed, never resolves
/// (the default disposition then applies).
#[cfg(unix)]
async fn interrupted() -> Interrupt {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => Interrupt { name: "SIGINT", exit: exit::INTERRUPTED },
        _ = term.recv() => Interrupt { name: "SIGTERM", exit: exit::TERMINATED },
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
async fn interrupted() -> Interrupt {
    match tokio::signal::ctrl_c().await {
        Ok(()) => Interrupt { name: "Ctrl-C", exit: exit::INTERRUPTED },
        Err(_) => std::future::pending().await,
    }
}
