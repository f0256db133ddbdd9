//! Storage addresses on the command line: `s3://BUCKET/KEY` and `az://CONTAINER/KEY`, wherever a
//! KEY, a PREFIX or a `TARGET:KEY` is taken, as `aws s3 cp` and `azcopy` take them.
//!
//! An address names a store and a key in one word, with no config file:
//!
//! - **`s3://BUCKET/KEY`**: the S3 backend (`kind = "s3"`) on BUCKET. When the backend table in
//!   force (`[backend]`, or the `--target`/`default_target` table) is itself `kind = "s3"`, its
//!   settings apply (endpoint, region, credentials, `allow_http`, part sizes, …: from flags,
//!   `PROMOTE_*` variables or the config file, as for any command); otherwise the S3 defaults.
//!   What neither sets comes from the `AWS_*` variables, then from the AWS profile files (see
//!   `promote_object_store`'s `profile`). The address sets `bucket` and an empty `prefix`, over
//!   everything else.
//! - **`az://CONTAINER/KEY`**: OpenDAL's Azure Blob service (`kind = "opendal"`,
//!   `scheme = "azblob"`) on CONTAINER, likewise from the table in force when it is an azblob
//!   one, else from `AZURE_STORAGE_ACCOUNT_NAME` (or `AZURE_STORAGE_ACCOUNT`),
//!   `AZURE_STORAGE_ACCOUNT_KEY` (or `AZURE_STORAGE_KEY`), `AZURE_STORAGE_SAS_TOKEN` and
//!   `AZURE_STORAGE_ENDPOINT` (default `https://ACCOUNT.blob.core.windows.net`). The address
//!   sets `container` and the root `/`.
//! - Any other `SCHEME://` is refused in one line naming the schemes built in (`gs://` too: no
//!   GCS service is compiled into the binary).
//!
//! **Keys are taken literally** after the bucket: `s3://b/a%20b#c?d` is the key `a%20b#c?d`,
//! checked by promote's key rules like any key, never percent-decoded. That is why the address
//! is split here rather than by a URL parser (`url::Url`, object_store's `parse_url_opts`), which
//! would decode `%XX`, cut `?…` and `#…` off the key and lowercase the bucket. An empty key
//! (`s3://b` or `s3://b/`) is the top of the bucket (`/`). The bucket name is checked by the
//! backend, with its usual one-line error naming the address.

use figment::providers::Serialized;
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use promote_settings::BackendConfig;
use serde_json::{Value, json};

use crate::args::Command;
use crate::backends;
use crate::commands::usage;
use crate::settings::Loaded;

/// What this build reaches by address, for errors.
const SUPPORTED: &str = "s3://BUCKET/KEY (S3 and S3-compatible servers) and az://CONTAINER/KEY (Azure Blob)";

/// The services an address can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    S3,
    Azure,
}

/// A parsed address: the store (service and bucket) and the key as written after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    service: Service,
    bucket: String,
    key: String,
}

impl Address {
    /// `text` as an address, or `None` when it is not one (no `SCHEME://` in front: a key, a
    /// prefix or `TARGET:KEY`).
    ///
    /// # Errors
    ///
    /// A usage error for a scheme not built in, or an address without a bucket.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Option<Self>> {
        let Some((scheme, rest)) = text.split_once("://") else { return Ok(None) };
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !is_scheme {
            return Ok(None);
        }
        let service = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Service::S3,
            "az" => Service::Azure,
            "gs" => {
                return Err(usage(format!(
                    "{text:?}: gs:// (Google Cloud Storage) is not built into this promote; addresses it reaches: \
                     {SUPPORTED}"
                )));
            }
            other => {
                return Err(usage(format!(
                    "{text:?}: unknown address scheme {other}://; addresses promote reaches: {SUPPORTED}"
                )));
            }
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            let what = if service == Service::S3 { "s3://BUCKET/KEY" } else { "az://CONTAINER/KEY" };
            return Err(usage(format!("{text:?} names no bucket or container; write {what}")));
        }
        Ok(Some(Self { service, bucket: bucket.to_owned(), key: key.to_owned() }))
    }

    /// The key as the command takes it: as written, `/` (the top of the store) when empty.
    pub(crate) fn key_arg(&self) -> String {
        if self.key.is_empty() { "/".into() } else { self.key.clone() }
    }

    /// The store part, for messages and receipts: `s3://bucket`.
    pub(crate) fn store(&self) -> String {
        let scheme = if self.service == Service::S3 { "s3" } else { "az" };
        format!("{scheme}://{}", self.bucket)
    }

    /// The backend's settings for this address, over the configuration `loaded` holds (see the
    /// module docs): the figment they were read from, the table within it, and the config.
    ///
    /// # Errors
    ///
    /// The configuration's errors (a bad value in the table in force).
    pub(crate) fn settings(&self, loaded: &Loaded) -> anyhow::Result<Resolved> {
        let (kind, scheme) = match self.service {
            Service::S3 => ("s3", None),
            Service::Azure => ("opendal", Some("azblob")),
        };
        let in_force = loaded.backend.to_value();
        let same = in_force["kind"] == kind && scheme.is_none_or(|s| in_force["scheme"] == s);
        let layer = Layer {
            name: format!("the address {}/{}", self.store(), self.key),
            table: String::new(),
            value: json!({}),
        };
        let (figment, table) = if same {
            let table = loaded.origin.table();
            let over = match self.service {
                Service::S3 => json!({ "bucket": self.bucket, "prefix": "" }),
                Service::Azure => json!({ "options": { "container": self.bucket, "root": "/" } }),
            };
            (loaded.figment.clone().merge(Layer { table: table.clone(), value: over, ..layer }), table)
        } else {
            let defaults = match self.service {
                Service::S3 => json!({ "kind": "s3" }),
                Service::Azure => json!({ "kind": "opendal", "scheme": "azblob", "options": azure_environment() }),
            };
            let over = match self.service {
                Service::S3 => json!({ "bucket": self.bucket, "prefix": "" }),
                Service::Azure => json!({ "options": { "container": self.bucket, "root": "/" } }),
            };
            let base = Figment::from(Serialized::defaults(json!({ "backend": defaults })));
            (base.merge(Layer { table: "backend".into(), value: over, ..layer }), "backend".to_owned())
        };
        let config = backends::registry().load_table(&figment, &table)?;
        Ok(Resolved { figment, table, config, fresh: !same })
    }
}

/// The settings of one side of `promote copy`: the address's when it is one, else the named
/// target's.
///
/// # Errors
///
/// As [`Address::settings`]; an unknown target.
pub(crate) fn side_settings(loaded: &Loaded, address: Option<&Address>, target: &str) -> anyhow::Result<Resolved> {
    match address {
        Some(address) => address.settings(loaded),
        None => Ok(Resolved {
            figment: loaded.figment.clone(),
            table: format!("targets.{target}"),
            config: crate::settings::with_target(loaded, target)?,
            fresh: false,
        }),
    }
}

/// A backend configuration an address resolved to.
pub(crate) struct Resolved {
    pub(crate) figment: Figment,
    pub(crate) table: String,
    pub(crate) config: Box<dyn BackendConfig>,
    /// Not built on the table in force (its kind differs): a table of its own, `backend`.
    fresh: bool,
}

/// The Azure Blob options the Azure tools' variables give, for an `az://` address outside an
/// azblob table.
fn azure_environment() -> Value {
    let var = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
    let mut options = serde_json::Map::new();
    let account = var(&["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT"]);
    let endpoint = var(&["AZURE_STORAGE_ENDPOINT"])
        .or_else(|| account.as_ref().map(|a| format!("https://{a}.blob.core.windows.net")));
    let found = [
        ("account_name", account),
        ("account_key", var(&["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_KEY"])),
        ("sas_token", var(&["AZURE_STORAGE_SAS_TOKEN"])),
        ("endpoint", endpoint),
    ];
    for (option, value) in found {
        if let Some(value) = value {
            options.insert(option.into(), json!(value));
        }
    }
    Value::Object(options)
}

/// One layer of settings set by an address, named after it (so `config show` and errors say
/// where a bucket came from: `the address s3://b/k`).
struct Layer {
    name: String,
    table: String,
    value: Value,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::global(&self.table, &self.value).data()
    }
}

/// Rewrites the KEY, PREFIX or KEY… arguments of `command` that are addresses into their keys,
/// and returns the configuration with their store in force. Commands without such an argument,
/// or whose arguments are plain keys, keep `loaded` as it is.
///
/// # Errors
///
/// A usage error for an address that cannot be (see [`Address::parse`]), or keys of one
/// command on different stores (`rm s3://a/k s3://b/k`, or an address beside a plain key);
/// the address's configuration errors.
pub(crate) fn resolve(mut loaded: Loaded, command: &mut Command) -> anyhow::Result<Loaded> {
    let args: Vec<&mut String> = match command {
        Command::Put(a) => vec![&mut a.key],
        Command::Get(a) => vec![&mut a.key],
        Command::Verify(a) => vec![&mut a.key],
        Command::Stat(a) => vec![&mut a.key],
        Command::Ls(a) => a.prefix.iter_mut().collect(),
        Command::Rm(a) => a.keys.iter_mut().collect(),
        _ => return Ok(loaded),
    };
    let mut found: Option<Address> = None;
    let mut plain = false;
    for arg in args {
        let Some(address) = Address::parse(arg)? else {
            plain = true;
            continue;
        };
        if let Some(first) = &found
            && (first.service, &first.bucket) != (address.service, &address.bucket)
        {
            return Err(usage(format!(
                "{} and {} are different stores; give one command keys of one store",
                first.store(),
                address.store()
            )));
        }
        *arg = address.key_arg();
        found.get_or_insert(address);
    }
    let Some(address) = found else { return Ok(loaded) };
    if plain {
        return Err(usage(format!(
            "keys of {} beside plain keys: give one command keys of one store (all as addresses, or none)",
            address.store()
        )));
    }
    let resolved = address.settings(&loaded)?;
    if resolved.fresh {
        loaded.origin.target = None;
    }
    loaded.figment = resolved.figment;
    loaded.backend = resolved.config;
    debug_assert_eq!(loaded.origin.table(), resolved.table);
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_literally_and_other_words_are_keys() {
        let a = Address::parse("s3://bucket/a%20b/c#d?e").unwrap().unwrap();
        assert_eq!((a.service, a.bucket.as_str(), a.key.as_str()), (Service::S3, "bucket", "a%20b/c#d?e"));
        assert_eq!(Address::parse("az://box").unwrap().unwrap().key_arg(), "/");
        assert_eq!(Address::parse("s3://b/").unwrap().unwrap().key_arg(), "/");
        for key in ["papers/a.pdf", "archive:papers/", "a/b://c", "", "/"] {
            assert_eq!(Address::parse(key).unwrap(), None, "{key:?}");
        }
        for bad in ["gs://b/k", "ftp://h/k", "s3:///k"] {
            assert!(Address::parse(bad).is_err(), "{bad:?}");
        }
    }
}
