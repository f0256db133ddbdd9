//! [`Store::promote_adopted`]: a complete file the caller wrote and hashed itself (a download
//! run's partial) becomes the staged write as it is, where the backend can take it
//! ([`Backend::adopt`](crate::Backend::adopt): on local disk or into OpenDAL's local staging, a
//! rename into the staging area),
//! so its bytes are written once and hashed once. Core verifies and publishes the handle
//! exactly as it does a streamed one.

use std::path::Path;

use crate::error::Error;
use crate::key::Key;
use crate::mode::Mode;
use crate::outcome::Outcome;
use crate::staged::Staged;
use crate::store::Store;
use crate::verify::{Digest, Expected};

impl Store {
    /// Promotes the complete file at `path` (open as `file`), whose bytes hash to `digest` as
    /// the caller computed while writing them, without copying them where the backend can
    /// ([`Backend::adopt`](crate::Backend::adopt)). The caller must keep the file from changing
    /// until this returns (a download run holds it under its lock). `digest` is checked against
    /// `expected` before anything moves. `Ok(None)`: the backend cannot take the file (another
    /// filesystem, a remote store); nothing was done, and the caller promotes it by copying
    /// ([`Store::promote_file`]). Once taken, the file is no longer at `path`, whatever the
    /// outcome: published at `key`, or discarded with the staged write.
    ///
    /// # Errors
    ///
    /// [`Error::SizeMismatch`] / [`Error::DigestMismatch`] when `digest` is not what `expected`
    /// asks for (nothing moved); the backend's errors; everything [`Staged::promote`] returns.
    pub async fn promote_adopted(
        &self,
        key: &Key,
        path: &Path,
        file: std::fs::File,
        digest: Digest,
        expected: &Expected,
        mode: Mode,
    ) -> Result<Option<Outcome>, Error> {
        expected.check(key, &digest)?;
        self.ready_for(&mode).await?;
        if let Some(outcome) = self.already_present(key, expected, &mode).await? {
            return Ok(Some(outcome));
        }
        let slot = self.staging_slot().await?;
        let Some(inner) = self.backend().adopt(key, path, file, digest.size).await? else {
            tracing::debug!(key = %key, "adoption not used: the backend cannot take the file; copying");
            return Ok(None);
        };
        tracing::info!(key = %key, backend = self.backend().kind(), "staged by adoption");
        Staged::new(key.clone(), self.clone(), inner, slot).promote_digested(digest, expected, mode).await.map(Some)
    }
}
