//! [`Store::promote_file`]'s first try for a large file: the backend copies it into staging
//! itself ([`Backend::stage_copy`](crate::Backend::stage_copy): on local disk, inside the
//! kernel) and hashes what it staged; core then verifies and publishes the staged handle exactly
//! as it does a streamed one. Whatever the backend declines is streamed as before.

use std::fmt::Display;

use crate::backend::StagedCopy;
use crate::error::Error;
use crate::key::Key;
use crate::mode::Mode;
use crate::outcome::Outcome;
use crate::staged::Staged;
use crate::store::Store;
use crate::verify::Expected;

/// Files smaller than this are always streamed by [`Store::promote_file`]; from this size on,
/// the backend is asked to copy them itself first ([`Backend::stage_copy`](crate::Backend::stage_copy)).
///
/// A copy inside the kernel saves one pass of every byte through promote's buffers, but costs a
/// fixed setup (a second descriptor on the staged file, a hashing thread, the attempts that may
/// be declined). Below 1 MiB that setup is a large share of the work, and small files keep the
/// streaming path, which is tuned for them.
pub const STAGE_COPY_MIN: u64 = 1 << 20;

impl Store {
    /// Promotes `file` (whose status is `meta`) through
    /// [`Backend::stage_copy`](crate::Backend::stage_copy) when that applies: a regular file of
    /// at least [`STAGE_COPY_MIN`] bytes that the backend copies.
    /// `Ok(None)` when the file is to be streamed instead; the reason is logged at debug level
    /// (`kernel copy not used: …`), as is the method when it applies (`kernel copy: …`). Called
    /// once the mode is ready and the key is known not to hold the object already.
    ///
    /// # Errors
    ///
    /// The backend's copy errors (nothing is staged then), and everything
    /// [`Staged::promote`] returns.
    pub(crate) async fn promote_by_copy(
        &self,
        key: &Key,
        file: &std::fs::File,
        meta: Result<&std::fs::Metadata, &std::io::Error>,
        expected: &Expected,
        mode: &Mode,
    ) -> Result<Option<Outcome>, Error> {
        let not_used = |reason: &dyn Display| {
            tracing::debug!(key = %key, "kernel copy not used: {reason}");
            Ok(None)
        };
        let len = match meta {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return not_used(&"the source is not a regular file"),
            Err(e) => return not_used(&format_args!("the source cannot be inspected ({e})")),
        };
        if len < STAGE_COPY_MIN {
            // The common case of a many-file put: the sizes are formatted only when logged.
            tracing::debug!(
                key = %key,
                "kernel copy not used: the source ({}) is smaller than the {} threshold",
                crate::kit::format_size(len),
                crate::kit::format_size(STAGE_COPY_MIN)
            );
            return Ok(None);
        }
        let slot = self.staging_slot().await?;
        // The copy holds a blocking thread until it is done: one of a bounded few.
        let long = crate::kit::blocking::long_task_slot().await?;
        let copied = self.backend().stage_copy(key, file, expected).await;
        drop(long);
        match copied {
            Ok(StagedCopy::Declined(reason)) => not_used(&reason),
            Ok(StagedCopy::Staged { staged, digest, method }) => {
                tracing::debug!(key = %key, bytes = digest.size, "kernel copy: {method}");
                let staged = Staged::new(key.clone(), self.clone(), staged, slot);
                staged.promote_digested(digest, expected, mode.clone()).await.map(Some)
            }
            Err(err) => {
                tracing::info!(key = %key, error = %err, "aborted");
                Err(err)
            }
        }
    }
}
