//! Every problem in a configuration at once, for `promote config validate`.
//!
//! serde stops at the first bad key of a struct. [`all`] extracts again and again, dropping each
//! offending key from a working copy of the values, until the extraction succeeds or nothing more
//! can be dropped; each problem keeps the key and the source (file or variable) it came from in
//! the original figment.

use figment::value::{Dict, Value};
use figment::{Figment, Profile};

/// One problem: the full dotted key (empty when not known) and a one-line message that names
/// the key and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key, e.g. `targets.archive.bucket`.
    pub key: String,
    /// What is wrong, with the file or variable it came from.
    pub message: String,
}

/// Most problems reported for one table (a guard against a loop that drops nothing).
const MAX_ROUNDS: usize = 32;

/// Runs `extract` on the values under `table` (`""`: everything) of the selected profile,
/// collecting every problem. `extract` reads its values at `table` of the figment it is given.
/// Returns the problems and, when some round succeeded, what it extracted (from values with
/// the bad keys dropped).
pub fn all<T>(
    figment: &Figment,
    table: &str,
    extract: impl Fn(&Figment) -> Result<T, Box<figment::Error>>,
) -> (Option<T>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut working: Option<Figment> = None;
    for _ in 0..MAX_ROUNDS {
        let result = extract(working.as_ref().unwrap_or(figment));
        let err = match result {
            Ok(value) => return (Some(value), problems),
            Err(err) => *err,
        };
        let mut values = match working_values(working.as_ref().unwrap_or(figment), table) {
            Some(values) => values,
            None => {
                problems.extend(err.into_iter().map(|e| problem(figment, table, e)));
                return (None, problems);
            }
        };
        let mut dropped = false;
        for e in err {
            dropped |= drop_path(&mut values, &e.path);
            problems.push(problem(figment, table, e));
        }
        if !dropped {
            return (None, problems);
        }
        let provider = match table {
            "" => figment::providers::Serialized::defaults(Value::from(values)),
            _ => figment::providers::Serialized::default(table, Value::from(values)),
        };
        working = Some(Figment::from(provider).select(Profile::Default));
    }
    (None, problems)
}

/// The values under `table` as a dictionary.
fn working_values(figment: &Figment, table: &str) -> Option<Dict> {
    let value = if table.is_empty() { figment.extract::<Value>().ok()? } else { figment.find_value(table).ok()? };
    value.into_dict()
}

/// Removes the value at `path` (relative to the table); whether anything was removed.
fn drop_path(dict: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => dict.remove(last).is_some(),
        [first, rest @ ..] => match dict.get_mut(first) {
            Some(Value::Dict(_, inner)) => drop_path(inner, rest),
            _ => false,
        },
    }
}

/// The problem in words, its source looked up in the original figment.
fn problem(original: &Figment, table: &str, e: figment::Error) -> Problem {
    let path = e.path.join(".");
    let sep = if table.is_empty() || path.is_empty() { "" } else { "." };
    let key = format!("{table}{sep}{path}");
    let what = crate::config_error::describe(&e.kind, &key);
    let message = match original.find_metadata(&key).or(e.metadata.as_ref()) {
        Some(meta) => format!("{}: {what}", crate::config_error::origin(meta, &key)),
        None => what,
    };
    Problem { key, message }
}
