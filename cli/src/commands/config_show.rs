//! `promote config show`: the effective configuration and where each value came from, after
//! which file, profile and target are in force.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::output::out;
use crate::settings::{Loaded, effective, is_secret, source_of};

const REDACTED: &str = "***redacted***";

pub(crate) fn run(loaded: &Loaded, as_json: bool) -> anyhow::Result<ExitCode> {
    let origin = &loaded.origin;
    let mut rows: Vec<(String, Value, String)> = vec![
        match &origin.file {
            Some((path, how)) => ("config_file".into(), json!(path), how.to_string()),
            None => ("config_file".into(), Value::Null, "none found (built-in defaults)".into()),
        },
        ("profile".into(), json!(origin.profile.0), origin.profile.1.to_string()),
        match &origin.target {
            Some((name, how)) => ("target".into(), json!(name), how.to_string()),
            None => ("target".into(), Value::Null, "none: the [backend] table".into()),
        },
    ];
    let mut leaves = Vec::new();
    flatten("", &effective(loaded), &mut leaves);
    let table = origin.table();
    let from_env = loaded.backend.environment_values();
    for (path, value) in leaves {
        let name = path.rsplit('.').next().unwrap_or(&path);
        let env =
            path.strip_prefix(&format!("{table}.")).and_then(|setting| from_env.iter().find(|(s, _, _)| s == setting));
        let (value, source) = match env {
            // A variable's name, or a file (the AWS profile files: `file PATH (profile NAME)`).
            Some((_, var, env_value)) if value.is_null() && var.starts_with("file ") => (json!(env_value), var.clone()),
            Some((_, var, env_value)) if value.is_null() => (json!(env_value), format!("env {var}")),
            _ => (value, source_of(&loaded.figment, &path)),
        };
        let value = if is_secret(name) && !value.is_null() { json!(REDACTED) } else { value };
        rows.push((path, value, source));
    }
    let mut out = serde_json::Map::new();
    for (path, value, source) in rows {
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
