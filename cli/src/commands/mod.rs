//! One file per command; [`run`] dispatches.

mod config_init;
mod config_schema;
mod config_show;
mod config_validate;
mod copy;
mod doctor;
mod get;
mod ls;
mod put;
mod recover;
mod rm;
mod run;
mod stat;
mod status;
mod verify;

use std::process::ExitCode;

use promote_core::Key;

use crate::args::{Cli, Command, ConfigCommand};
use crate::exit::Usage;
use crate::settings;

/// Runs the parsed command line.
pub(crate) async fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    cli.global.streaming = match &cli.command {
        Command::Put(args) => args.streaming,
        Command::Run(args) => args.streaming,
        _ => None,
    };
    cli.global.durability = match &cli.command {
        Command::Put(args) => args.durability.clone(),
        Command::Run(args) => args.durability.clone(),
        Command::Copy(args) => args.durability.clone(),
        _ => None,
    };
    // These read the configuration their own way: all problems at once, or none at all.
    match &cli.command {
        Command::Config(ConfigCommand::Validate { live }) => return config_validate::run(&cli.global, *live).await,
        Command::Config(ConfigCommand::Schema) => return config_schema::run(),
        Command::Config(ConfigCommand::Init { kind, path }) => return config_init::run(kind, path),
        _ => {}
    }
    // `s3://BUCKET/KEY` (and `az://`) arguments name their own store (`copy`: per side).
    let loaded = crate::address::resolve(settings::load(&cli.global)?, &mut cli.command)?;
    // `copy` names its two targets' settings itself.
    let copy = matches!(cli.command, Command::Copy(_));
    let result = match cli.command {
        Command::Put(args) => put::run(&loaded, args).await,
        Command::Get(args) => get::run(&loaded, args).await,
        Command::Verify(args) => verify::run(&loaded, args).await,
        Command::Ls(args) => ls::run(&loaded, args).await,
        Command::Stat(args) => stat::run(&loaded, args).await,
        Command::Rm(args) => rm::run(&loaded, args).await,
        Command::Recover(args) => recover::run(&loaded, args).await,
        Command::Doctor(args) => doctor::run(&loaded, args).await,
        Command::Run(args) => run::run(&loaded, args).await,
        Command::Status(args) => status::run(&loaded, &args),
        Command::Copy(args) => copy::run(&loaded, args).await,
        Command::Config(ConfigCommand::Show { json }) => config_show::run(&loaded, json),
        Command::Config(_) => unreachable!("handled above"),
    };
    if copy { result } else { result.map_err(|err| settings::located(err, &loaded)) }
}

/// Opens the configured backend for a command that only reads (or only removes): nothing is
/// created, and a store that does not exist is an error (`no store at …`), not a new empty one.
pub(crate) async fn open_existing(loaded: &settings::Loaded) -> anyhow::Result<promote_core::Store> {
    use anyhow::Context;
    let backend = loaded.backend.open_existing().await.context("opening the storage backend")?;
    Ok(promote_core::Store::new(backend))
}

/// Parses a key given on the command line (before any I/O). An empty one is a usage error: it
/// is most likely an unset shell variable, and `/` is how the top of the store is written.
pub(crate) fn parse_key(key: &str) -> anyhow::Result<Key> {
    if key.is_empty() {
        return Err(usage("the key is empty (an unset variable?); use / for the top of the store"));
    }
    Ok(Key::new(key)?)
}

/// A KEY for a command that acts on one object. A KEY ending in `/` names a prefix: refused
/// with the command's `-r` form (`form`, e.g. `rm -r`) to reach everything under it.
pub(crate) fn parse_object_key(key: &str, form: &str) -> anyhow::Result<Key> {
    if key.len() > 1 && key.ends_with('/') {
        return Err(usage(format!(
            "{key:?} ends in '/', so it names a prefix, not an object: `promote {form} {key}` acts on everything under it"
        )));
    }
    parse_key(key)
}

/// A PREFIX given on the command line, as the store lists it. One rule for every command that
/// takes one (`ls`, `get -r`, `verify -r`, `rm -r`): a prefix is a whole path, so `ds/tree` and
/// `ds/tree/` both mean everything under `ds/tree/` (never `ds/tree2/…`); `/` is the top of the
/// store. An empty argument is a usage error, as in [`parse_key`]; so is a prefix no key could
/// start with (`..`, `a//b`).
pub(crate) fn parse_prefix(prefix: &str) -> anyhow::Result<String> {
    match prefix {
        "" => Err(usage("the prefix is empty (an unset variable?); use / for the top of the store")),
        "/" => Ok(String::new()),
        prefix => {
            let path = parse_key(prefix.trim_end_matches('/'))?;
            Ok(format!("{path}/"))
        }
    }
}

/// `err`, when it says `key` is not found but objects are stored under `key/`: the same error
/// with a hint saying how to reach them (`form` is the command that would, given the prefix).
pub(crate) async fn hint_prefix(
    err: anyhow::Error,
    store: &promote_core::Store,
    key: &Key,
    form: impl FnOnce(&str) -> String,
) -> anyhow::Error {
    if !matches!(
        err.chain().find_map(|c| c.downcast_ref::<promote_core::Error>()),
        Some(promote_core::Error::NotFound { .. })
    ) {
        return err;
    }
    let prefix = format!("{key}/");
    match store.list(&prefix).await {
        Ok(under) if !under.is_empty() => {
            let hint = format!("there are {} objects under {prefix}: {}", under.len(), form(&prefix));
            anyhow::Error::new(Hinted { hint, source: err })
        }
        _ => err,
    }
}

/// An error with a hint after it, keeping the error (and its exit code) as its source.
#[derive(Debug)]
struct Hinted {
    hint: String,
    source: anyhow::Error,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", crate::exit::one_line(&self.source), self.hint)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// A usage error.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// An engine's error (`promote-tree`) as the CLI reports it: paths shown escaped, unreadable
/// input and bad names as usage errors (exit 2), an existing destination of `key` as a conflict
/// (exit 3) with the flag that allows replacing it, the rest with the store's exit codes.
pub(crate) fn tree_error(err: promote_tree::Error, key: Option<&Key>) -> anyhow::Error {
    use crate::output;
    use promote_tree::Error;
    match err {
        Error::Unreadable { path, error } => usage(format!("cannot read {}: {error}", output::path(&path))),
        Error::BadName { why, .. } => usage(format!("the file name {}", why.as_str())),
        Error::Exists { path } => promote_core::Error::Conflict {
            key: key.map(ToString::to_string).unwrap_or_default(),
            detail: format!("{} exists; pass --force to replace it", output::path(&path)),
        }
        .into(),
        Error::Unwritable { dir, error } => usage(format!("cannot write in {}: {error}", output::path(&dir))),
        Error::Local { what, path, error } => {
            promote_core::Error::io(format!("{what} {}", output::path(&path)), error).into()
        }
        Error::Store(err) => err.into(),
    }
}
