//! `promote ls [PREFIX]`: one level (like a directory listing), or everything with `-r`.

use std::process::ExitCode;

use promote_core::{Entry, Store};
use serde_json::json;

use super::stat::{digest_text, modified_text, record};
use crate::args::LsArgs;
use crate::output::{self, out};
use crate::settings::Loaded;

/// A row of the listing: an object, or a "directory" (a deeper prefix) when not recursive.
enum Row<'a> {
    Object(&'a Entry),
    Prefix(String),
}

pub(crate) async fn run(loaded: &Loaded, args: LsArgs) -> anyhow::Result<ExitCode> {
    let prefix = args.prefix.as_deref().map_or(Ok(String::new()), super::parse_prefix)?;
    let store = super::open_existing(loaded).await?;
    let filter = args.filters.compile()?;
    let mut entries = store.list(&prefix).await?;
    entries.retain(|e| filter.selects(&e.key.as_str()[prefix.len()..]));
    // One level: what follows PREFIX (which ends in `/`) up to the next `/`.
    let base = prefix.rfind('/').map_or(0, |i| i + 1);
    let mut rows = Vec::new();
    for entry in &entries {
        let rest = &entry.key.as_str()[base..];
        match rest.find('/') {
            Some(i) if !args.recursive => {
                let dir = format!("{}{}", &entry.key.as_str()[..base], &rest[..=i]);
                if !matches!(rows.last(), Some(Row::Prefix(last)) if *last == dir) {
                    rows.push(Row::Prefix(dir));
                }
            }
            _ => rows.push(Row::Object(entry)),
        }
    }
    for row in rows {
        match row {
            Row::Prefix(dir) if args.json => out!("{}", json!({ "prefix": dir })),
            Row::Prefix(dir) if args.long => out!("{:>10}  {:<64}  {:<20}  {dir}", "DIR", "", ""),
            Row::Prefix(dir) => out!("{dir}"),
            Row::Object(entry) => print_object(&store, entry, &args).await?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn print_object(store: &Store, entry: &Entry, args: &LsArgs) -> anyhow::Result<()> {
    if !args.long {
        if args.json {
            out!("{}", json!({ "key": entry.key.as_str(), "size": entry.size }));
        } else {
            out!("{}", entry.key);
        }
        return Ok(());
    }
    // Long: what `head` knows (the object may have gone since the listing).
    let meta = match store.head(&entry.key).await {
        Ok(meta) => meta,
        Err(promote_core::Error::NotFound { .. }) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    if args.json {
        out!("{}", record(entry.key.as_str(), &meta));
    } else {
        let digest = if meta.sha256.is_some() { digest_text(&meta) } else { "-".into() };
        out!("{:>10}  {digest:<64}  {:<20}  {}", output::bytes(meta.size), modified_text(&meta), entry.key);
    }
    Ok(())
}
