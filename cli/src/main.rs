//! `promote`: land files in storage all or nothing. See `promote --help` and the README.

mod address;
mod args;
mod backends;
mod commands;
mod exit;
mod filters;
mod open_files;
mod output;
mod progress;
mod schema;
mod settings;
mod signals;
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
        let mut signals = signals::Signals::new();
        let mut command = Box::pin(commands::run(args));
        let mut handed_over = false;
        // Ends with the command, or with a signal it does not handle itself (see `signals`).
        let code = loop {
            tokio::select! {
                result = &mut command => break match result {
                    Ok(code) => code,
                    Err(err) => exit::report(&err, json),
                },
                signal = signals.next() => {
                    if !handed_over && signals::deliver(signal) {
                        // `run` stops its items, prints what it did and exits with the signal's code.
                        handed_over = true;
                        continue;
                    }
                    // The command's future is dropped here: its staged writes discard themselves.
                    if handed_over {
                        eprintln!(
                            "promote: interrupted again by {}; stopped at once, without a summary or report \
                             (what was promoted stays; `promote run` again resumes the rest)",
                            signal.name
                        );
                    } else {
                        // True of every command: a multi-file one keeps what it finished.
                        eprintln!("promote: interrupted by {}; staged data discarded, nothing partial published", signal.name);
                    }
                    break ExitCode::from(signal.exit);
                }
            }
        };
        // Dropped before the clean-up wait: an interrupted command's dropped handles are what
        // hand their clean-up over, and its workers must stop before it.
        drop(command);
        // Clean-up handed off by dropped handles (aborting uploads, releasing claims); another
        // signal stops waiting for it.
        tokio::select! {
            left = promote_core::kit::cleanup::settle(CLEANUP_LIMIT) => if left > 0 {
                eprintln!("promote: {left} clean-up(s) did not finish in time; `promote recover` removes what they leave");
            },
            signal = signals.next() => {
                eprintln!("promote: {}: not waiting for clean-up; `promote recover` removes what it leaves", signal.name);
            }
        }
        code
    })
}

/// How long an exiting command waits for background clean-up.
const CLEANUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);
