//! `promote config show`: the effective configuration and where each value came from.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::output::out;
use crate::settings::{Loaded, effective, is_secret, source_of};

const REDACTED: &str = "***redacted***";

pub(crate) fn run(loaded: &Loaded, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    flatten("", &effective(loaded), &mut rows);
    let mut out = serde_json::Map::new();
    for (path, value) in rows {
        let name = path.rsplit('.').next().unwrap_or(&path);
        let value = if is_secret(name) && !value.is_null() { json!(REDACTED) } else { value };
        let source = source_of(&loaded.figment, &path);
        if as_json {
            out.insert(path, json!({ "value": value, "source": source }));
        } else {
            out!("{:<40} # {source}", format!("{path} = {value}"));
        }
    }
    if as_json {
        out!("{}", Value::Object(out));
    }
    Ok(ExitCode::SUCCESS)
}

fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&path, v, rows);
            }
        }
        leaf => rows.push((prefix.to_owned(), leaf.clone())),
    }
}
