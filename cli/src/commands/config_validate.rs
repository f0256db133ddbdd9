//! `promote config validate [--live]`: checks the whole config file — every profile, every
//! target — without touching storage, and reports every problem at once (file, line and key
//! where known). Exits [`exit::INVALID_CONFIG`] when anything is wrong. `--live` then runs
//! `doctor` against each target of the profile in force.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use promote_core::Error;
use promote_settings::Registry;
use promote_settings::problems::{self, Problem};

use super::doctor;
use crate::args::{DoctorArgs, Global};
use crate::backends;
use crate::exit;
use crate::output::out;
use crate::settings::{self, DEFAULT, Loaded, Origin, SETTING_KEYS};

/// Problems by message, each with the profiles it shows up in (one problem usually repeats in
/// every profile that inherits it).
#[derive(Default)]
struct Report {
    problems: BTreeMap<(Option<usize>, String), Vec<String>>,
}

impl Report {
    fn add(&mut self, text: Option<&str>, profile: &str, problem: Problem) {
        let line = text.and_then(|t| line_of(t, profile, &problem.key));
        let profiles = self.problems.entry((line, problem.message)).or_default();
        if !profiles.iter().any(|p| p == profile) {
            profiles.push(profile.to_owned());
        }
    }

    fn error(&mut self, profile: &str, key: &str, err: &Error) {
        let message = err.to_string().trim_start_matches("configuration error: ").to_owned();
        self.add(None, profile, Problem { key: key.to_owned(), message });
    }
}

pub(crate) async fn run(global: &Global, live: bool) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    let file = match settings::config_file(global) {
        Ok(file) => file,
        Err(err) => {
            eprintln!("promote: config: {}", exit::one_line(&err));
            return Ok(ExitCode::from(exit::INVALID_CONFIG));
        }
    };
    let path = file.as_ref().map(|(p, _)| p.clone());
    let text = path.as_deref().and_then(|p| std::fs::read_to_string(p).ok());
    let mut profiles = vec![DEFAULT.to_owned()];
    if let Some(path) = &path {
        match settings::file_profiles(path) {
            Ok(found) => profiles.extend(found),
            Err(err) => {
                // A syntax error: nothing else can be read.
                eprintln!("promote: config: {}", message(&err));
                return Ok(ExitCode::from(exit::INVALID_CONFIG));
            }
        }
    }
    for name in profiles.iter().filter(|p| p.as_str() != DEFAULT) {
        if let Some(setting) = SETTING_KEYS.iter().find(|k| strsim::damerau_levenshtein(name, k) <= 2) {
            report.add(
                text.as_deref(),
                DEFAULT,
                Problem {
                    key: name.clone(),
                    message: format!(
                        "{}: the table [{name}] is read as a profile; did you mean the setting `{setting}`?",
                        shown(path.as_deref())
                    ),
                },
            );
        }
    }
    let chosen = settings::profile(global);
    if chosen.0 != DEFAULT && !profiles.contains(&chosen.0) {
        report.error(
            &chosen.0,
            "",
            &Error::config(format!(
                "profile {:?} (from {}) is not defined in {}; defined profiles: {}",
                chosen.0,
                chosen.1,
                shown(path.as_deref()),
                profiles.join(", ")
            )),
        );
    }
    let registry = backends::registry();
    for profile in &profiles {
        let figment = match settings::base(global, path.as_deref(), profile) {
            Ok(figment) => figment,
            Err(err) => {
                report.error(profile, "", &Error::config(exit::one_line(&err)));
                continue;
            }
        };
        let (settings, found) = problems::all(&figment, "", |f| f.extract::<settings::Settings>().map_err(Box::new));
        for problem in found {
            report.add(text.as_deref(), profile, problem);
        }
        let names: Vec<String> = match figment.find_value("targets").ok().and_then(|v| v.into_dict()) {
            Some(dict) => dict.into_keys().collect(),
            None => Vec::new(),
        };
        for name in &names {
            check_table(&mut report, &registry, &figment, text.as_deref(), profile, &format!("targets.{name}"));
        }
        check_table(&mut report, &registry, &figment, text.as_deref(), profile, "backend");
        if let Some(settings) = &settings
            && let Err(err) = settings::target(global, settings, profile)
        {
            report.add(text.as_deref(), profile, Problem { key: "default_target".into(), message: message(&err) });
        }
    }
    let file_name = shown(path.as_deref());
    if !report.problems.is_empty() {
        let count = report.problems.len();
        for ((line, message), profiles) in &report.problems {
            let at = line.map(|l| format!("{file_name}:{l}: ")).unwrap_or_default();
            eprintln!("promote: config: {at}[{}] {message}", profiles.join(", "));
        }
        eprintln!(
            "promote: config: {count} problem{} in {file_name}; nothing was touched",
            if count == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::from(exit::INVALID_CONFIG));
    }
    out!("config OK: {file_name}; profiles: {}", profiles.join(", "));
    if !live {
        return Ok(ExitCode::SUCCESS);
    }
    live_checks(global, &chosen.0).await
}

/// `doctor` against every target of the profile in force (and `[backend]` when none is named).
async fn live_checks(global: &Global, profile: &str) -> anyhow::Result<ExitCode> {
    let loaded = settings::load(global)?;
    let mut tables: Vec<Option<String>> = loaded.settings.targets.keys().cloned().map(Some).collect();
    if tables.is_empty() {
        tables.push(None);
    }
    let mut failed = false;
    for target in tables {
        let backend = match &target {
            Some(name) => settings::with_target(&loaded, name)?,
            None => backends::registry().load_table(&loaded.figment, "backend")?,
        };
        out!("== {} (profile {profile})", target.as_deref().map_or("[backend]".to_owned(), |t| format!("target {t}")));
        let origin = Origin { target: target.map(|t| (t, "config validate --live")), ..loaded.origin.clone() };
        let one =
            Loaded { figment: loaded.figment.clone(), settings: settings::settings(&loaded.figment)?, backend, origin };
        let code = doctor::run(&one, DoctorArgs { json: false }).await?;
        failed |= code != ExitCode::SUCCESS;
    }
    Ok(if failed { ExitCode::from(exit::CHECK_FAILED) } else { ExitCode::SUCCESS })
}

fn check_table(
    report: &mut Report,
    registry: &Registry,
    figment: &figment::Figment,
    text: Option<&str>,
    profile: &str,
    table: &str,
) {
    for problem in registry.problems(figment, table) {
        report.add(text, profile, problem);
    }
}

fn message(err: &Error) -> String {
    err.to_string().trim_start_matches("configuration error: ").to_owned()
}

fn shown(path: Option<&Path>) -> String {
    path.map_or("(no config file: built-in defaults and environment)".to_owned(), |p| p.display().to_string())
}

/// The line of `key` (dotted) in the TOML text, for a profile: the key's line under its table's
/// header (`[prod.targets.archive]`, or `[targets.archive]` for the default profile), or the
/// header's own line for a whole table. A best effort: `None` when not found.
fn line_of(text: &str, profile: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let headers: Vec<String> = {
        let mut h = Vec::new();
        let join = |a: &str, b: &str| if b.is_empty() { a.to_owned() } else { format!("{a}.{b}") };
        // A profile's value may be its own or inherited from the default profile.
        if profile != DEFAULT {
            h.push(join(profile, table));
        }
        h.push(table.to_owned());
        h.push(join("default", table));
        h
    };
    let mut current = String::new();
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = name.trim().replace(' ', "");
            if let Some(rank) = headers.iter().position(|h| format!("{h}.{leaf}").trim_start_matches('.') == current) {
                found = better(found, rank, i + 1);
            }
            continue;
        }
        let name = trimmed.split('=').next().unwrap_or_default().trim();
        if let Some(rank) = headers.iter().position(|h| *h == current)
            && !trimmed.starts_with('#')
            && trimmed.contains('=')
            && name == leaf
        {
            found = better(found, rank, i + 1);
        }
    }
    found.map(|(_, line)| line)
}

/// The line found under the most specific header (the profile's own before the default's).
fn better(found: Option<(usize, usize)>, rank: usize, line: usize) -> Option<(usize, usize)> {
    match found {
        Some((r, _)) if r <= rank => found,
        _ => Some((rank, line)),
    }
}
