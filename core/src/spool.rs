//! The spool path: copy the source to a local file first, hash it, then hand it to the backend.
//!
//! For sources that cannot be re-read (a pipe, a flaky download) or backends where a retry must
//! not fetch the source again. Costs one extra local copy; the promotion is as atomic and as
//! verified as the streaming path.

use std::path::Path;

use tokio::io::{AsyncSeekExt, AsyncWriteExt};

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
        self.check_mode(&mode)?;
        let spool_err = |e| Error::io(format!("spooling {key:?} in {}", spool_dir.display()), e);
        let spool = tempfile::Builder::new().prefix(".promote-spool-").tempfile_in(spool_dir).map_err(spool_err)?;
        let mut file = tokio::fs::File::from_std(spool.reopen().map_err(spool_err)?);
        let mut digester = Digester::new();
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
