//! `promote config schema`: a JSON Schema of the config file, for editors.

use std::process::ExitCode;

use crate::output::out;

pub(crate) fn run() -> anyhow::Result<ExitCode> {
    out!("{}", serde_json::to_string_pretty(&crate::schema::schema())?);
    Ok(ExitCode::SUCCESS)
}
