//! # promote-local: atomic promotion on a local filesystem
//!
//! Objects are plain files under a root directory: key `papers/a.pdf` is
//! `<root>/papers/a.pdf`. Bytes are staged in `<root>/.promote/staging/` — on the same
//! filesystem, so publishing is a rename — and nothing appears at the final path until they are
//! complete, verified and (by default) on disk.
//!
//! # Atomicity
//!
//! - **Staging**: a fresh file per write, created with `O_CREAT | O_EXCL`, mode 0600, and held
//!   under a lock while its writer lives (on Linux an open-file-description lock, which can be
//!   tested without taking it; elsewhere `flock`). Each chunk is written at its offset by a short
//!   blocking task, a few per handle at most: an idle handle holds no thread, so the number of
//!   open handles has no design limit (only the process's open-file limit).
//! - **Publish** (one helper, so no caller can skip a step): fsync the staged file, then
//!   `renameat2(RENAME_NOREPLACE)` for create-only (on filesystems without it, and on systems
//!   other than Linux: `link`, which never replaces, then `unlink`), or `rename` for replace;
//!   then fsync the parent directory and every directory above it up to the root, whether this
//!   publish created it or found it (a concurrent writer may have just created it). The
//!   filesystem decides who wins a race; there is no check-then-rename.
//! - **Opening** creates the root, `.promote` and `.promote/staging` when missing and fsyncs the
//!   directory holding each one it creates, and always the root's parent. Opening for reading
//!   only ([`LocalBackend::open_existing`]) creates and syncs nothing, and a missing root is an
//!   error (`no store at …`).
//! - **Modes are exact**: published files get `file_mode` and created directories `dir_mode`
//!   with `fchmod`, so the umask does not apply.
//! - **No escape**: keys are resolved from the root's directory descriptor one segment at a time
//!   with `openat(O_NOFOLLOW)`; a symlink anywhere in a key's path is refused, and a link at the
//!   final path is never followed.
//! - **Stored digest**: the SHA-256 rides along in the xattr `user.promote.sha256` with the size
//!   and mtime it describes; a file changed behind promote's back loses it. Without user xattrs,
//!   digests are recomputed by reading when needed.
//! - **Crash leftovers**: a staging file whose lock is free belongs to a dead writer and is
//!   removed by `sweep_staging` at once; a live writer's file only once it has been untouched for
//!   the given age. A dry run changes nothing and (on Linux) takes no lock.
//! - **Listing** is complete or an error naming the path it could not read.
//! - **Compare-and-swap** (`ReplaceIfVersion`) is not offered: a local filesystem has no atomic
//!   way to do it, so core refuses it.
//!
//! # Large files: the kernel copies
//!
//! A regular file of at least [`promote_core::kit::STAGE_COPY_MIN`] (1 MiB) put with
//! [`Store::promote_file`](promote_core::Store::promote_file) from the root's filesystem does not
//! pass through promote's buffers ([`Backend::stage_copy`](promote_core::Backend::stage_copy)):
//! it is cloned into staging with a reflink (`FICLONE`: XFS, btrfs; no data copied, the extents
//! shared copy-on-write), or where there are none copied with `copy_file_range` in 8 MiB steps.
//! The digest is of the **staged** file, read back while the next step copies (after a clone,
//! once it is complete), so it describes exactly the bytes that will be published, even if the
//! source changes meanwhile. Pipes, files on other filesystems (`EXDEV`), and kernels or
//! filesystems without either call are declined, with nothing staged left by the attempt, and
//! core streams them as before; so are small files, and stdin. Debug logs (the CLI's `-vv`) name
//! the path taken: `kernel copy: reflink (FICLONE)`, `kernel copy: copy_file_range`, or
//! `kernel copy not used: <why>`. Everything after the copy is unchanged: core checks size and
//! digest, and the staged file is published (or sealed for a group commit) like any other.
//!
//! # Durability
//!
//! - `each` (the default): every publish fsyncs its staged file, renames, then fsyncs the parent
//!   directory and every directory above it. A receipt means the object survives power loss.
//! - `batch`: group commit ([`promote_core::kit::group_commit`]). Concurrent promotions are staged
//!   without an fsync each; one `syncfs` of the root's filesystem makes all their bytes and
//!   metadata durable; then they are published with the same no-replace renames; then a second
//!   `syncfs` makes the new names (and any directory a publish created) durable.
//!   Receipts come only after that, so a receipt means exactly what it means with `each`, and a
//!   crash or power loss at any moment leaves each key absent or complete (unpublished staging
//!   files are removed by `sweep_staging`).
//! - `none`: nothing is fsynced. Publishes are still atomic to other readers, but a power loss
//!   may lose recent ones, or leave them empty.

#[cfg(target_os = "linux")]
mod adopt;
mod backend;
mod config;
mod group;
#[cfg(target_os = "linux")]
mod kernel_copy;
mod list;
pub mod lock;
mod prune;
mod publish;
mod root;
mod self_check;
mod staging;
mod stored_digest;
mod writeback;
mod writer;

pub use backend::LocalBackend;
pub use config::{Durability, LocalConfig};

/// Registers `kind = "local"`.
pub fn register(registry: &mut promote_settings::Registry) {
    registry.register("local", promote_settings::registry::load::<LocalConfig>);
    registry.describe("local", || schemars::schema_for!(LocalConfig).to_value());
}
