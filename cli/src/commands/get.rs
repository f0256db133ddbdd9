//! `promote get KEY DEST`: copy out, verifying the stored digest; DEST appears only when whole.
//! It says what was checked: the stored SHA-256, or only the size when none is stored.

use std::io::Write;
use std::process::ExitCode;

use futures_util::StreamExt;
use promote_core::Error;
use tokio::io::AsyncWriteExt;

use super::{parse_key, usage};
use crate::args::GetArgs;
use crate::settings::{self, Loaded};

pub(crate) async fn run(loaded: &Loaded, args: GetArgs) -> anyhow::Result<ExitCode> {
    let key = parse_key(&args.key)?;
    let store = settings::open(loaded).await?;
    let (meta, mut stream) = store.read_verified(&key).await?;
    let checked = match meta.sha256 {
        Some(sha) => format!("{} bytes, sha256:{sha} (checked against the stored digest)", meta.size),
        None => format!(
            "{} bytes (size checked only: no digest is stored; `promote verify {key} --sha256 HEX` checks the content)",
            meta.size
        ),
    };
    if args.dest.as_os_str() == "-" {
        // stdout cannot be taken back: a mismatch is reported after the bytes went out.
        let mut out = tokio::io::stdout();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        if meta.sha256.is_none() {
            eprintln!("promote: {key}: {checked}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dest = if args.dest.is_dir() { args.dest.join(key.file_name()) } else { args.dest.clone() };
    if !args.force && dest.exists() {
        return Err(Error::Conflict {
            key: key.to_string(),
            detail: format!("{} exists; pass --force to replace it", dest.display()),
        }
        .into());
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => ".".into(),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".promote-get-")
        .tempfile_in(&dir)
        .map_err(|e| usage(format!("cannot write in {}: {e}", dir.display())))?;
    let context = |e: std::io::Error| Error::io(format!("writing {}", dest.display()), e);
    while let Some(chunk) = stream.next().await {
        tmp.write_all(&chunk?).map_err(context)?;
    }
    tmp.as_file().sync_all().map_err(context)?;
    if args.force {
        tmp.persist(&dest).map_err(|e| context(e.error))?;
    } else {
        tmp.persist_noclobber(&dest).map_err(|e| context(e.error))?;
    }
    println!("got {key} -> {}  {checked}", dest.display());
    Ok(ExitCode::SUCCESS)
}
