//! The `Backend` trait every storage plugin implements, and the staged-write trait behind
//! [`Staged`](crate::Staged).
//!
//! Backends only stage and publish. Hashing, size checks, capability checks and the
//! already-present/conflict decision live in core ([`Store`](crate::Store)), once.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::error::Error;
use crate::key::Key;
use crate::kit::claims::ControlStore;
use crate::kit::group_commit::GroupCommit;
use crate::mode::{Capabilities, Mode};
use crate::put_options::PutOptions;
use crate::verify::{Digest, Expected, Sha256};

/// A stream of an object's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, Error>>;

/// What `head` knows about an object without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Size in bytes.
    pub size: u64,
    /// The SHA-256 stored with the object, when stored and still trustworthy.
    pub sha256: Option<Sha256>,
    /// An opaque version (ETag, inode and mtime, …) usable with
    /// [`Mode::ReplaceIfVersion`] where the backend offers it.
    pub version: Option<String>,
    /// When the object was last written, where the backend knows.
    pub modified: Option<SystemTime>,
    /// A digest was stored when the object was promoted, but the object has changed since
    /// (by something other than promote), so `sha256` is `None`: reads report it as modified
    /// rather than verified.
    pub changed_since_promotion: bool,
    /// The media type stored with the object (`Content-Type`), where the backend keeps one.
    pub content_type: Option<String>,
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
}

/// Staging data found by [`Backend::sweep_staging`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// Where it is, in the backend's own terms (a path under the root, an upload id, …).
    pub name: String,
    /// Bytes it holds, when known.
    pub size: Option<u64>,
    /// Time since it was last written, when known.
    pub age: Option<Duration>,
    /// Whether a live writer still holds it (only backends that can tell; else `false`).
    pub live: bool,
    /// Whether this sweep removed it; on a dry run, whether it would have (one rule, in the
    /// backend, decides both, so a dry run shows exactly what a real run does).
    pub removed: bool,
}

/// A storage plugin: stages bytes out of sight and publishes them atomically.
///
/// # Atomicity
///
/// Implementations promise, and the conformance suite checks by name:
/// - `round_trip`, `empty_object`, `large_object_many_chunks`: a published object reads back
///   byte for byte, whatever its size;
/// - `listing_never_shows_staging`, `abort_leaves_no_residue`, `drop_leaves_no_residue`: staged
///   bytes are invisible to `head`, `read` and `list` until published, and gone after an abort
///   or drop;
/// - `create_on_taken_key_conflicts`, `create_identical_is_already_present`: a create-only
///   publish never replaces an object — it fails with [`Error::AlreadyExists`];
/// - `concurrent_creates_one_winner`: of racing create-only publishes on one key exactly one
///   wins, decided by the storage itself, never by check-then-act;
/// - `replace_overwrites`, `replace_if_version_swaps`: other modes only where
///   [`Capabilities`] say so;
/// - `sweep_removes_stale_staging_only`: staging data a crash left behind is found and removed
///   by [`Backend::sweep_staging`], and a live writer's is kept.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// The registry kind (`"local"`, `"s3"`, …).
    fn kind(&self) -> &'static str;

    /// Where the objects live, for humans (`local:/data`, `s3://bucket/prefix`). Never secrets.
    fn location(&self) -> String;

    /// What this backend can do safely. Live checks [`Backend::ready_for`] runs may narrow it.
    fn capabilities(&self) -> Capabilities;

    /// Runs whatever live check publishing in `mode` needs, before any byte moves (S3: the
    /// create-only probe, which writes a few small objects), once per process; afterwards
    /// [`Backend::capabilities`] reflects what it found. Read-only commands never call it, so
    /// they work with read-only credentials. Core calls it from [`Store::ready_for`](crate::Store::ready_for)
    /// before staging and again before publishing. Default: nothing to check.
    ///
    /// # Errors
    ///
    /// Backend errors when the check cannot run (no access, server unreachable). A check that
    /// runs and finds the mode unsafe is not an error here: it shows in the capabilities.
    async fn ready_for(&self, mode: &Mode) -> Result<(), Error> {
        let _ = mode;
        Ok(())
    }

    /// Stages a copy of the local file `source` for `key` without passing its bytes through
    /// promote's buffers (the local backend clones or copies it inside the kernel), and returns
    /// the staged handle with the digest of what was staged. Core tries this first in
    /// [`Store::promote_file`](crate::Store::promote_file), for regular files of at least
    /// [`STAGE_COPY_MIN`](crate::kit::STAGE_COPY_MIN) bytes, and then verifies and publishes the
    /// handle exactly as a streamed one. Default: [`StagedCopy::Declined`], so the file is
    /// streamed.
    ///
    /// What an implementation promises:
    /// - **The digest describes the staged bytes**, read back from the staging data after they
    ///   were copied, never the source (which may change while it is copied): it must describe
    ///   exactly what a publish of the handle makes visible.
    /// - **The source's size is not trusted**: bytes are copied from its current offset until
    ///   the copy reports its end, and its offset is left after them, as a read would leave it
    ///   (progress displays follow it).
    /// - **`expected.size` bounds the copy**: a source found longer stops the copy at once with
    ///   [`Error::SizeMismatch`] and nothing staged left. Everything else about `expected` is
    ///   core's to check, after the copy, as for any promotion.
    /// - **Declined means untouched**: [`StagedCopy::Declined`] (another filesystem, no support
    ///   for the copy, not a regular file…) leaves nothing staged and the source's offset where
    ///   it was, so core can stream the file instead.
    /// - **The handle is an ordinary staged write**: core seals (group commit), publishes or
    ///   aborts it, and dropping it discards the staged data.
    ///
    /// # Errors
    ///
    /// [`Error::SizeMismatch`] as above; [`Error::Io`] when the copy or the read-back fails
    /// (disk full, source unreadable), after removing what was staged. Core does not then try
    /// to stream the file: the error is the promotion's.
    async fn stage_copy(&self, key: &Key, source: &std::fs::File, expected: &Expected) -> Result<StagedCopy, Error> {
        let _ = (key, source, expected);
        Ok(StagedCopy::Declined(format!("the {} backend copies no files itself", self.kind())))
    }

    /// Opens a staging area for `key`. Nothing is visible at `key` until publish.
    ///
    /// `expected` is what the caller promised, as a hint: a backend that must fix an object's
    /// metadata before its bytes have all arrived (an S3 multipart upload) may store
    /// `expected.sha256` up front. Core still verifies every byte before publish.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]/[`Error::Backend`] when the staging area cannot be created.
    async fn stage(&self, key: &Key, expected: &Expected) -> Result<Box<dyn StagedWrite>, Error>;

    /// Takes the complete file at `path` (open as `file`, `size` bytes, written and hashed by
    /// the caller) as a staged write for `key` without copying its bytes, where this backend
    /// can; core then verifies and publishes it like any staged write
    /// ([`crate::Store::promote_adopted`]). The contract:
    ///
    /// - **All or nothing at `key`**, as for [`Backend::stage`]: the file is moved into the
    ///   staging area first (never published from where it was), and publishing it is the
    ///   usual create-only publish.
    /// - **Declined means untouched**: `Ok(None)` (the default; on local disk, a file on another
    ///   filesystem) leaves the file where it was, for the caller to promote by copying.
    /// - **Taken means gone from `path`**: once the handle exists the file is staging data, and
    ///   dropping or aborting the handle discards it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when moving the file fails for another reason than a different filesystem
    /// (the file is then left where it was).
    async fn adopt(
        &self,
        key: &Key,
        path: &std::path::Path,
        file: std::fs::File,
        size: u64,
    ) -> Result<Option<Box<dyn StagedWrite>>, Error> {
        let _ = (key, path, file, size);
        Ok(None)
    }

    /// A staged write for `key` that can outlive its process, so a long download into it
    /// resumes after a crash instead of starting over. `from` is the token of an earlier
    /// [`StagedWrite::checkpoint`] of the same key (with the same `expected`) to go on from;
    /// `None` starts a new one. Core wraps it ([`crate::Store::stage_resumable`]). The contract:
    ///
    /// - **Nothing at `key` until publish**, as for [`Backend::stage`]; publish, abort and
    ///   verification are the same.
    /// - **A checkpoint's bytes stay staged**: once [`StagedWrite::checkpoint`] has handed out a
    ///   token, dropping the handle keeps what the token names (a crash would too); only
    ///   `abort`, publish or [`Backend::discard_resumable`] remove it.
    /// - **Continued means exactly the checkpoint's bytes**: the handle from `from` holds the
    ///   token's bytes and no others, and takes the next byte after them.
    /// - `Ok(None)`: the backend has no resumable writes (the default), or the token's bytes
    ///   are gone (aborted, swept by `promote recover`, expired): the caller starts over.
    ///
    /// # Errors
    ///
    /// As [`Backend::stage`]; [`Error::Backend`] when the token cannot be checked.
    async fn stage_resumable(
        &self,
        key: &Key,
        expected: &Expected,
        options: &PutOptions,
        from: Option<&str>,
    ) -> Result<Option<Box<dyn StagedWrite>>, Error> {
        let _ = (key, expected, options, from);
        Ok(None)
    }

    /// Removes the staged bytes a checkpoint token of `key` names, when the caller will not
    /// go on from it (the source changed). Bytes already gone are fine.
    ///
    /// # Errors
    ///
    /// When they could not be removed; `promote recover` will find them.
    async fn discard_resumable(&self, key: &Key, token: &str) -> Result<(), Error> {
        let _ = (key, token);
        Ok(())
    }

    /// [`Backend::stage`] with the options that describe the object to other readers (its
    /// content type). Core stages through this. A backend that stores such options overrides
    /// it; the default ignores them (local disk keeps no content type).
    ///
    /// # Errors
    ///
    /// As [`Backend::stage`].
    async fn stage_with(
        &self,
        key: &Key,
        expected: &Expected,
        options: &PutOptions,
    ) -> Result<Box<dyn StagedWrite>, Error> {
        let _ = options;
        self.stage(key, expected).await
    }

    /// Size, stored digest and version of the object at `key`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none.
    async fn head(&self, key: &Key) -> Result<Meta, Error>;

    /// The object's bytes, as they are stored (core verifies them).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none.
    async fn read(&self, key: &Key) -> Result<ByteStream, Error>;

    /// A read found `key`'s bytes damaged (they no longer hash to its stored digest): make the
    /// stored digest stop vouching for them, so that afterwards [`Backend::head`] reports no
    /// digest and `changed_since_promotion`, and nothing is ever answered "already present"
    /// from the stale record. Called by core, best effort. The default does nothing: a backend
    /// whose records cannot change without rewriting the object keeps them (the README says
    /// which).
    ///
    /// # Errors
    ///
    /// Backend errors (core logs them and goes on).
    async fn forget_digest(&self, _key: &Key) -> Result<(), Error> {
        Ok(())
    }

    /// Removes the object at `key`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none.
    async fn delete(&self, key: &Key) -> Result<(), Error>;

    /// Objects whose key starts with `prefix` (a plain string prefix), sorted by key. Never
    /// shows staging data.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]/[`Error::Backend`] when listing fails.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error>;

    /// Finds staging data left behind by crashed or abandoned writers and removes what has
    /// been untouched for at least `older_than` (backends that can tell a dead writer's data
    /// from a live one's may remove the dead one's sooner). A live writer's data younger than
    /// `older_than` is never removed. With `dry_run`, only reports.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]/[`Error::Backend`] when the staging area cannot be listed.
    async fn sweep_staging(&self, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error>;

    /// The backend's control objects, for [`Claims`](crate::kit::Claims), when it can write small
    /// objects conditionally (create-only and compare-and-swap). Default: none.
    fn control(&self) -> Option<Arc<dyn ControlStore>> {
        None
    }

    /// The backend's group commit, when it is configured to make promotions durable in batches
    /// (see [`GroupCommit`]): core then seals each staged object, waits for a shared flush of
    /// staged data, publishes, and waits for a shared flush of the published names before it
    /// returns a receipt. Default: none (each publish makes itself durable).
    fn group_commit(&self) -> Option<Arc<dyn GroupCommit>> {
        None
    }

    /// Live checks specific to this backend, for `promote doctor` (e.g. that an S3 server
    /// really refuses a second create-only write). Default: none.
    async fn self_check(&self) -> Vec<Check> {
        Vec::new()
    }
}

/// One line of a backend's self-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// `Ok(detail)` when it passed; `Err(detail)` when it failed.
    pub result: Result<String, String>,
    /// A failure that does not make the backend unsafe (reported, not fatal).
    pub warning_only: bool,
}

impl Check {
    /// A passed check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), result: Ok(detail.into()), warning_only: false }
    }

    /// A failed check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), result: Err(detail.into()), warning_only: false }
    }

    /// A failed check that is only a warning.
    pub fn warn(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), result: Err(detail.into()), warning_only: true }
    }
}

/// What [`Backend::stage_copy`] did with a file.
pub enum StagedCopy {
    /// The file was copied into staging.
    Staged {
        /// The staged data: seal, publish or abort it like any staged write.
        staged: Box<dyn StagedWrite>,
        /// Size and SHA-256 of the staged bytes, read back from staging (not from the source).
        digest: Digest,
        /// How the bytes were copied, for the log (`"reflink (FICLONE)"`, `"copy_file_range"`).
        method: &'static str,
    },
    /// Not copied, and why (for the log): nothing is staged and the source's offset is
    /// unchanged. Core streams the file instead.
    Declined(String),
}

impl fmt::Debug for StagedCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Staged { digest, method, .. } => {
                f.debug_struct("Staged").field("digest", digest).field("method", method).finish_non_exhaustive()
            }
            Self::Declined(reason) => f.debug_tuple("Declined").field(reason).finish(),
        }
    }
}

/// A backend's half of a staged object: exactly write, publish, abort.
///
/// Dropping it without `publish` or `abort` must discard the staged data (best effort), like an
/// aborted transaction.
#[async_trait]
pub trait StagedWrite: Send {
    /// Appends `chunk`. A backend may buffer or pipeline: an error may surface on a later
    /// `write` or on `publish`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]/[`Error::Backend`] when staging fails (disk full, connection lost).
    async fn write(&mut self, chunk: Bytes) -> Result<(), Error>;

    /// Group commit only (see [`Backend::group_commit`]): every byte has been written and
    /// verified; finish writing and give the staged object its final metadata (`digest` is what
    /// core computed), without syncing anything. The group's flush of staged data then makes it
    /// durable, and [`StagedWrite::publish`] only moves it into place. Default: nothing to do.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]/[`Error::Backend`] when the last writes or the metadata fail.
    async fn seal(&mut self, digest: &Digest) -> Result<(), Error> {
        let _ = digest;
        Ok(())
    }

    /// Resumable writes only (see [`Backend::stage_resumable`]): the offset, from the object's
    /// start, where the part being filled ends. Core cuts its writes there so it holds the
    /// hash state at every offset a checkpoint can name. Always past the bytes written so far.
    /// `None` (the default) for other writes.
    fn part_end(&self) -> Option<u64> {
        None
    }

    /// Resumable writes only: waits until every part sent so far is durable in the backend,
    /// and returns how many bytes from the object's start are (a part end, never more than was
    /// written; bytes of a part still filling are not) and the token that
    /// [`Backend::stage_resumable`] goes on from. From then on the handle keeps those bytes
    /// when dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for other writes (the default); when a part failed.
    async fn checkpoint(&mut self) -> Result<(u64, String), Error> {
        Err(Error::Unsupported { operation: "checkpoints of a staged write".into(), backend: "this backend".into() })
    }

    /// Makes the staged bytes the object at the key, atomically, per `mode`. `digest` is what
    /// core computed and verified; backends store it with the object where they can. Returns
    /// the new version, if the backend has versions. On any error the staged data is removed.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] for a create-only publish on a taken key;
    /// [`Error::VersionMismatch`] for a failed compare-and-swap; I/O or backend errors.
    async fn publish(self: Box<Self>, mode: &Mode, digest: &Digest) -> Result<Option<String>, Error>;

    /// Discards the staged data.
    ///
    /// # Errors
    ///
    /// When the staged data could not be removed; a later sweep will find it.
    async fn abort(self: Box<Self>) -> Result<(), Error>;
}
