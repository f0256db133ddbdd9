//! The AWS CLI's shared files, `~/.aws/config` and `~/.aws/credentials`, read the way `aws` and
//! rclone read them, so a machine set up for `aws s3 cp` needs nothing more for promote.
//!
//! - **Which files**: `AWS_CONFIG_FILE`, else `~/.aws/config`; `AWS_SHARED_CREDENTIALS_FILE`,
//!   else `~/.aws/credentials` (`~` is `$HOME`). A missing file is no error.
//! - **Which profile**: `AWS_PROFILE`, else `default`. In the config file it is the section
//!   `[profile NAME]` (`[default]` for the default profile); in the credentials file `[NAME]`.
//!   A profile `AWS_PROFILE` names that neither file defines is an error.
//! - **What is read**: `region` and `endpoint_url` (config file), and `aws_access_key_id`,
//!   `aws_secret_access_key`, `aws_session_token` (credentials file, else config file; the three
//!   are taken together from one file, never mixed). Nested settings (`s3 =` followed by
//!   indented lines) and other sections (`[sso-session …]`, `[services …]`) are not read.
//! - **Precedence**: a profile value is used only where neither promote's configuration nor the
//!   standard `AWS_*` variables set it (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`),
//!   as in the AWS CLI, whose variables also win over its files.
//!
//! The files are parsed with `rust-ini` (no quotes or escapes: values are taken as written).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ini::{Ini, ParseOption};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use promote_core::Error;

use crate::config::Secrets;

/// A value found in a profile: the value and where it came from, for humans
/// (`file /home/u/.aws/config (profile dev)`).
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub(crate) value: String,
    pub(crate) origin: String,
}

/// The selected profile's values.
#[derive(Clone, Debug, Default)]
pub(crate) struct AwsProfile {
    region: Option<Found>,
    endpoint_url: Option<Found>,
    /// Key id, secret and token, from one file.
    credentials: Option<(Found, String, Option<String>)>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `AWS_CONFIG_FILE`-style path: the variable (with a leading `~/` expanded), else
/// `~/.aws/NAME`; `None` without either a variable or a home directory.
fn file(var: &str, name: &str) -> Option<PathBuf> {
    let home = env("HOME").map(PathBuf::from);
    match env(var) {
        Some(path) => match (path.strip_prefix("~/"), &home) {
            (Some(rest), Some(home)) => Some(home.join(rest)),
            _ => Some(PathBuf::from(path)),
        },
        None => home.map(|h| h.join(".aws").join(name)),
    }
}

/// Parses `path`; `None` when it does not exist.
fn parse(path: &Path, what: &str) -> Result<Option<Ini>, String> {
    let options = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        ..ParseOption::default()
    };
    match Ini::load_from_file_opt(path, options) {
        Ok(ini) => Ok(Some(ini)),
        Err(ini::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(ini::Error::Io(e)) => Err(format!("cannot read the AWS {what} file {}: {e}", path.display())),
        Err(ini::Error::Parse(e)) => Err(format!(
            "the AWS {what} file {} is not an INI file: line {}, column {}: {}",
            path.display(),
            e.line,
            e.col,
            e.msg
        )),
    }
}

impl AwsProfile {
    /// The profile in force, read from the files now.
    ///
    /// # Errors
    ///
    /// One line naming the file: unreadable or not INI; a profile `AWS_PROFILE` names that no
    /// file defines; a key id without its secret.
    fn read() -> Result<Self, String> {
        let named = env("AWS_PROFILE");
        let name = named.clone().unwrap_or_else(|| "default".into());
        let config_path = file("AWS_CONFIG_FILE", "config");
        let credentials_path = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config = match &config_path {
            Some(path) => parse(path, "config")?.map(|ini| (path.clone(), ini)),
            None => None,
        };
        let credentials = match &credentials_path {
            Some(path) => parse(path, "credentials")?.map(|ini| (path.clone(), ini)),
            None => None,
        };
        let config_section = if name == "default" { "default".to_owned() } else { format!("profile {name}") };
        // `[profile default]` is accepted for the default profile too, as the AWS CLI does.
        let in_config = config.as_ref().and_then(|(path, ini)| {
            let section = ini
                .section(Some(config_section.as_str()))
                .or_else(|| (name == "default").then(|| ini.section(Some("profile default"))).flatten())?;
            Some((path, section))
        });
        let in_credentials =
            credentials.as_ref().and_then(|(path, ini)| ini.section(Some(name.as_str())).map(|s| (path, s)));
        if named.is_some() && in_config.is_none() && in_credentials.is_none() {
            let shown =
                |p: &Option<PathBuf>| p.as_ref().map_or("(no home directory)".into(), |p| p.display().to_string());
            return Err(format!(
                "AWS_PROFILE = {name:?}: no [{config_section}] in {} and no [{name}] in {}; name a defined profile or unset AWS_PROFILE",
                shown(&config_path),
                shown(&credentials_path)
            ));
        }
        let origin = |path: &Path| format!("file {} (profile {name})", path.display());
        let value = |key: &str| {
            in_config.and_then(|(path, section)| {
                let value = section.get(key).map(str::trim).filter(|v| !v.is_empty())?;
                Some(Found { value: value.to_owned(), origin: origin(path) })
            })
        };
        let keys =
            |(path, section): (&PathBuf, &ini::Properties)| -> Result<Option<(Found, String, Option<String>)>, String> {
                let get = |key: &str| section.get(key).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
                match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                    (Some(id), Some(secret)) => {
                        Ok(Some((Found { value: id, origin: origin(path) }, secret, get("aws_session_token"))))
                    }
                    (None, None) => Ok(None),
                    _ => Err(format!(
                        "profile {name} in {} has only one of aws_access_key_id and aws_secret_access_key; give both",
                        path.display()
                    )),
                }
            };
        let credentials = match in_credentials.map(keys).transpose()?.flatten() {
            Some(found) => Some(found),
            None => in_config.map(keys).transpose()?.flatten(),
        };
        Ok(Self { region: value("region"), endpoint_url: value("endpoint_url"), credentials })
    }

    /// The profile in force, read once per process.
    ///
    /// # Errors
    ///
    /// [`Error::Config`]: see [`AwsProfile::read`].
    pub(crate) fn current() -> Result<&'static Self, Error> {
        static CURRENT: OnceLock<Result<AwsProfile, String>> = OnceLock::new();
        CURRENT.get_or_init(Self::read).as_ref().map_err(|message| Error::config(message.clone()))
    }

    /// The profile's value of a setting promote names `setting` (`region`, `endpoint`).
    pub(crate) fn setting(&self, setting: &str) -> Option<&Found> {
        match setting {
            "region" => self.region.as_ref(),
            "endpoint" => self.endpoint_url.as_ref(),
            _ => None,
        }
    }

    /// Where the profile's access key id came from, when it has keys.
    pub(crate) fn credentials_origin(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(id, _, _)| id.origin.as_str())
    }

    /// Fills `secrets` from the profile when neither the configuration nor `AWS_ACCESS_KEY_ID`
    /// gives keys.
    pub(crate) fn fill(&self, secrets: &mut Secrets) {
        if secrets.access_key_id.is_some() || env("AWS_ACCESS_KEY_ID").is_some() {
            return;
        }
        if let Some((id, secret, token)) = &self.credentials {
            secrets.access_key_id = Some(id.value.clone());
            secrets.secret_access_key = Some(secret.clone());
            if secrets.session_token.is_none() {
                secrets.session_token.clone_from(token);
            }
        }
    }

    /// Sets the profile's region and endpoint on `builder` where neither the configuration nor
    /// the `AWS_*` variables set them.
    pub(crate) fn apply(&self, mut builder: AmazonS3Builder) -> AmazonS3Builder {
        for (key, found) in
            [(AmazonS3ConfigKey::Region, &self.region), (AmazonS3ConfigKey::Endpoint, &self.endpoint_url)]
        {
            if let (None, Some(found)) = (builder.get_config_value(&key), found) {
                builder = builder.with_config(key, &found.value);
            }
        }
        builder
    }
}
