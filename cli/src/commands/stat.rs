//! `promote stat KEY`: what the store knows about one object, without reading it.

use std::process::ExitCode;

use promote_core::Meta;
use serde_json::{Value, json};

use super::{hint_prefix, parse_object_key};
use crate::args::StatArgs;
use crate::output::{self, out};
use crate::settings::Loaded;

pub(crate) async fn run(loaded: &Loaded, args: StatArgs) -> anyhow::Result<ExitCode> {
    let key = parse_object_key(&args.key, "ls")?;
    let store = super::open_existing(loaded).await?;
    let meta = match store.head(&key).await {
        Ok(meta) => meta,
        Err(err) => return Err(hint_prefix(err.into(), &store, &key, |p| format!("`promote ls {p}` lists them")).await),
    };
    if args.json {
        out!("{}", record(key.as_str(), &meta));
    } else {
        out!("key       {}", key);
        out!("size      {} ({} bytes)", output::bytes(meta.size), meta.size);
        out!("sha256    {}", digest_text(&meta));
        out!("version   {}", meta.version.as_deref().unwrap_or("-"));
        out!("modified  {}", modified_text(&meta));
        out!("type      {}", meta.content_type.as_deref().unwrap_or("- (not stored)"));
    }
    Ok(ExitCode::SUCCESS)
}

/// What is known of the digest, in words.
pub(crate) fn digest_text(meta: &Meta) -> String {
    match (&meta.sha256, meta.changed_since_promotion) {
        (Some(sha), _) => sha.to_string(),
        (None, true) => "modified since promotion (stored digest no longer applies)".into(),
        (None, false) => "not stored".into(),
    }
}

/// The modification time, RFC 3339 in UTC, or `-`.
pub(crate) fn modified_text(meta: &Meta) -> String {
    meta.modified.map_or_else(|| "-".into(), |t| humantime::format_rfc3339_seconds(t).to_string())
}

/// One object as JSON.
pub(crate) fn record(key: &str, meta: &Meta) -> Value {
    json!({
        "key": key,
        "size": meta.size,
        "sha256": meta.sha256.map(|s| s.to_string()),
        "modified_since_promotion": meta.changed_since_promotion,
        "version": meta.version,
        "modified": meta.modified.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        "content_type": meta.content_type,
    })
}
