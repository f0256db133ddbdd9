//! `promote`: land files in storage all or nothing. See `promote --help` and the README.

mod args;
mod backends;
mod commands;
mod exit;
mod output;
mod run;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match args::Cli::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    output::init_tracing(args.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(err) => return exit::report(&anyhow::Error::new(err).context("starting the async runtime")),
    };
    match runtime.block_on(commands::run(args)) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}
