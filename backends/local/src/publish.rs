//! Publishing a staged file: fsync it, move it into place without replacing anything (unless
//! asked to), fsync the directories — all in this one helper so no caller can forget a step.

use std::fs::File;
use std::os::fd::AsFd;

use promote_core::{Digest, Error, Key, Mode};
use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use crate::config::LocalConfig;
use crate::root::{Root, io_err, mode_bits};
use crate::{staging, stored_digest};

/// Gives staging file `name` its final metadata: permissions, and the digest in its xattr.
/// Returns its status, which the version string is made from.
pub(crate) fn seal(config: &LocalConfig, file: &File, name: &str, digest: &Digest) -> Result<rustix::fs::Stat, Error> {
    let staged = staging::shown(name);
    rustix::fs::fchmod(file, mode_bits(config.file_mode))
        .map_err(|e| io_err(format!("setting permissions on {staged}"), e))?;
    let st = rustix::fs::fstat(file).map_err(|e| io_err(format!("inspecting {staged}"), e))?;
    stored_digest::store(file, digest, &st).map_err(|e| io_err(format!("storing the digest of {staged}"), e))?;
    Ok(st)
}

/// Publishes staging file `name` (already fully written to `file`, and `sealed` if a group commit
/// already made it durable) at `key`. On any error the staging file is removed.
///
/// With `durability = "each"` this fsyncs the file before the rename and the directories after
/// it; with `batch` the group commit does both for many objects at once
/// ([`crate::group::LocalGroup`]), so this only renames.
#[allow(clippy::too_many_arguments)]
pub(crate) fn publish(
    root: &Root,
    config: &LocalConfig,
    key: &Key,
    name: &str,
    file: File,
    mode: &Mode,
    digest: &Digest,
    sealed: Option<rustix::fs::Stat>,
) -> Result<Option<String>, Error> {
    let result = publish_inner(root, config, key, name, &file, mode, digest, sealed);
    drop(file);
    if result.is_err() {
        let _ = staging::remove(root, name);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn publish_inner(
    root: &Root,
    config: &LocalConfig,
    key: &Key,
    name: &str,
    file: &File,
    mode: &Mode,
    digest: &Digest,
    sealed: Option<rustix::fs::Stat>,
) -> Result<Option<String>, Error> {
    // A sealed file was made durable by the group commit, which also syncs the directories
    // after the rename; an unsealed one does it all here.
    let durable = config.durability.syncs() && sealed.is_none();
    let staged = staging::shown(name);
    let st = match sealed {
        Some(st) => st,
        None => seal(config, file, name, digest)?,
    };
    if durable {
        file.sync_all().map_err(|e| Error::io(format!("fsync of staged data for {key:?}"), e))?;
    }
    let parent = root.parent_of(key, Some(config.dir_mode))?;
    let leaf = key.file_name();
    match mode {
        Mode::Create => create_only(root, name, &parent, leaf, key)?,
        Mode::Replace => match rustix::fs::renameat(&root.staging, name, &parent, leaf) {
            Ok(()) => {}
            Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => {
                return Err(Error::Conflict { key: key.to_string(), detail: "a directory is in the way".into() });
            }
            Err(e) => return Err(io_err(format!("renaming {staged} to {key:?}"), e)),
        },
        Mode::ReplaceIfVersion(_) => {
            return Err(Error::Unsupported {
                operation: "compare-and-swap (replace-if-version)".into(),
                backend: "local".into(),
            });
        }
    }
    if durable {
        // The new entry is in the parent; the parent's own entry is in the directory above it,
        // and so on up to the root: whether this walk created them or found them (a concurrent
        // writer may have created one a moment ago and not synced it yet), each must be on disk
        // for the object to survive a power loss.
        rustix::fs::fsync(&parent).map_err(|e| {
            io_err(
                format!(
                    "fsync of the directory holding {key:?} (the object is visible, but may not survive a power loss)"
                ),
                e,
            )
        })?;
        for dir in parent.above.iter().rev() {
            rustix::fs::fsync(dir).map_err(|e| {
                io_err(
                    format!(
                        "fsync of a directory above {key:?} (the object is visible, but may not survive a power loss)"
                    ),
                    e,
                )
            })?;
        }
    }
    Ok(Some(format!("{}-{}.{:09}", st.st_ino, st.st_mtime, st.st_mtime_nsec)))
}

/// `renameat2(RENAME_NOREPLACE)` on Linux; where the filesystem lacks it, and on other systems,
/// `link` (which never replaces) then `unlink` of the staging name.
fn create_only(root: &Root, name: &str, parent: &impl AsFd, leaf: &str, key: &Key) -> Result<(), Error> {
    let taken = || match rustix::fs::statat(parent, leaf, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Error::Conflict { key: key.to_string(), detail: "a directory is in the way".into() }
        }
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => Error::InvalidKey {
            key: key.to_string(),
            reason: "a symbolic link stands at that path; promote never follows links".into(),
        },
        _ => Error::AlreadyExists { key: key.to_string() },
    };
    #[cfg(target_os = "linux")]
    match rustix::fs::renameat_with(&root.staging, name, parent, leaf, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(Errno::EXIST) => return Err(taken()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
            tracing::debug!(key = %key, "no RENAME_NOREPLACE here; publishing with link + unlink");
        }
        Err(e) => return Err(io_err(format!("renaming {} to {key:?}", staging::shown(name)), e)),
    }
    match rustix::fs::linkat(&root.staging, name, parent, leaf, AtFlags::empty()) {
        Ok(()) => staging::remove(root, name),
        Err(Errno::EXIST) => Err(taken()),
        Err(e) => Err(io_err(format!("linking {} to {key:?}", staging::shown(name)), e)),
    }
}
