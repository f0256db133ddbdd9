//! The spool path: copy the source to a local file first, hash it, then hand it to the backend.
//!
//! For sources that cannot be re-read (a pipe, a flaky download) or backends where a retry must
//! not fetch the source again. Costs one extra local copy; the promotion is as atomic and as
//! verified as the streaming path.

use std::path::Path;

use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::backend::Leftover;
use crate::error::Error;
use crate::key::Key;
use crate::mode::Mode;
use crate::outcome::Outcome;
use crate::promote::read_chunk;
use crate::store::Store;
use crate::verify::{Digester, Expected};

impl Store {
    /// Copies `reader` into a spool file in `spool_dir` while hashing it, checks `expected`,
    /// then promotes the spool file's bytes (verified again on the way) per `mode`. The spool
    /// file is removed in every case.
    ///
    /// # Errors
    ///
    /// As [`Store::promote_reader`]; a mismatch is reported before the backend sees a byte.
    pub async fn promote_spooled<R>(
        &self,
        key: &Key,
        mut reader: R,
        expected: &Expected,
        mode: Mode,
        spool_dir: &Path,
    ) -> Result<Outcome, Error>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        self.ready_for(&mode).await?;
        if let Some(outcome) = self.already_present(key, expected, &mode).await? {
            return Ok(outcome);
        }
        let spool_err = |e| Error::io(format!("spooling {key:?} in {}", spool_dir.display()), e);
        let spool = tempfile::Builder::new().prefix(SPOOL_PREFIX).tempfile_in(spool_dir).map_err(spool_err)?;
        let mut file = tokio::fs::File::from_std(spool.reopen().map_err(spool_err)?);
        let mut digester = Digester::new();
        // Ends at the end of the input (or past the expected size).
        loop {
            let chunk =
                read_chunk(&mut reader).await.map_err(|e| Error::io(format!("reading the source for {key:?}"), e))?;
            if chunk.is_empty() {
                break;
            }
            digester.update(&chunk);
            if expected.too_long(digester.size()) {
                return Err(Error::SizeMismatch {
                    key: key.to_string(),
                    expected: expected.size.unwrap_or_default(),
                    actual: digester.size(),
                });
            }
            file.write_all(&chunk).await.map_err(spool_err)?;
        }
        let digest = digester.finish();
        expected.check(key, &digest)?;
        tracing::debug!(key = %key, bytes = digest.size, sha256 = %digest.sha256, "spooled and verified");
        file.flush().await.map_err(spool_err)?;
        file.rewind().await.map_err(spool_err)?;
        self.promote_reader(key, file, &Expected::exactly(digest), mode).await
    }
}

/// Name prefix of spool files.
const SPOOL_PREFIX: &str = ".promote-spool-";

/// Spool files in `dir` that a killed process left behind: those untouched for `older_than`
/// (spool files carry no lock, so age is the only sign of an abandoned one). Removes them
/// unless `dry_run`.
///
/// # Errors
///
/// [`Error::Io`] when `dir` cannot be listed.
pub fn sweep_spool(dir: &Path, older_than: std::time::Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
    let list_err = |e| Error::io(format!("listing the spool directory {}", dir.display()), e);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !name.starts_with(SPOOL_PREFIX) || !meta.is_file() {
            continue;
        }
        let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
        let removed = age >= older_than && (dry_run || std::fs::remove_file(entry.path()).is_ok());
        found.push(Leftover {
            name: entry.path().display().to_string(),
            size: Some(meta.len()),
            age: Some(age),
            // Spool files carry no lock: one written to recently is presumed to be in use.
            live: age < older_than,
            removed,
        });
    }
    Ok(found)
}
