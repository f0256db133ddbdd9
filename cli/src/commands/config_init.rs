//! `promote config init [--kind local|s3]`: a commented starter config file, never written over
//! an existing file (create-only, like everything promote writes).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::exit::Usage;
use crate::output::{self, out};

const LOCAL: &str = r#"# promote configuration (local disk). `promote config show` prints what is in force and where
# each value came from; `promote config validate` checks this file. Every key can also be set
# from the environment: PROMOTE_<KEY>, nested with "__" (PROMOTE_TARGETS__SCRATCH__ROOT=/data).

# The target used when neither --target nor PROMOTE_TARGET names one.
default_target = "scratch"

[targets.scratch]
kind = "local"
# Relative to this file's directory. Created if missing.
root = "promote-data"
# The words --durability takes: "each" (default): every object fsynced before and after
# publishing. "batch": group commit, same guarantee, fewer flushes. "none": scratch data only.
durability = "each"

# Profiles: a [NAME] table overrides the settings above when PROMOTE_PROFILE=NAME (or
# --profile NAME) is in force.
# [prod.targets.scratch]
# kind = "local"
# root = "/srv/promote"
"#;

const S3: &str = r#"# promote configuration (S3). `promote config show` prints what is in force and where each
# value came from (secrets redacted); `promote config validate` checks this file. Every key can
# also be set from the environment: PROMOTE_TARGETS__ARCHIVE__BUCKET=other.

# The target used when neither --target nor PROMOTE_TARGET names one.
default_target = "archive"

[targets.archive]
kind = "s3"
bucket = "my-artifacts"
prefix = ""                    # promote's objects live under this prefix
region = "eu-west-1"           # else AWS_REGION / AWS_DEFAULT_REGION
# endpoint = "http://127.0.0.1:9000"   # S3-compatible servers; else AWS_ENDPOINT_URL
# allow_http = true

# Credentials: never in this file. Point at files (read at start, whitespace trimmed; keep them
# chmod 600), or leave them to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
# access_key_id_file = "/run/secrets/s3-key-id"
# secret_access_key_file = "/run/secrets/s3-secret"

# "probe" (default) checks live that the server honours create-only writes; "trust" for AWS.
conditional_writes = "probe"

# Profiles: a [NAME] table overrides the settings above when PROMOTE_PROFILE=NAME is in force.
# [dev.targets.archive]
# kind = "local"
# root = "dev-archive"
"#;

pub(crate) fn run(kind: &str, path: &Path) -> anyhow::Result<ExitCode> {
    let text = if kind == "s3" { S3 } else { LOCAL };
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Usage(format!("{} already exists; not overwriting it", output::path(path))).into());
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {}", output::path(path)))),
    };
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all())?;
    out!(
        "wrote {} ({kind}); check it with `promote config validate --config {}`",
        output::path(path),
        output::path(path)
    );
    Ok(ExitCode::SUCCESS)
}
