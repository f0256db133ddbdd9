//! Adoption ([`Backend::adopt`](promote_core::Backend::adopt)): a complete file on the root's
//! filesystem is renamed into the staging area under a fresh staging name (never replacing
//! anything) and becomes an ordinary staged handle that holds its bytes: publishing it is the
//! usual seal, fsync and create-only rename, and no byte is copied. The caller's lock on the
//! file (an open file description lock, as staging files have) goes with it, so a staging sweep
//! leaves it alone while it is in use.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use promote_core::{Error, Key};
use rustix::fs::{FileType, RenameFlags};
use rustix::io::Errno;

use crate::backend::Inner;
use crate::root::io_err;
use crate::staging;
use crate::writer::LocalStaged;

/// Moves the file at `path` (open as `file`, `size` bytes) into the staging area as the staged
/// data for `key`. `Ok(None)`, with the file left where it was: it is not a regular file of
/// `size` bytes on the root's filesystem, or the filesystem cannot rename without replacing.
pub(crate) fn adopt(
    inner: &Arc<Inner>,
    key: &Key,
    path: &Path,
    file: File,
    size: u64,
) -> Result<Option<LocalStaged>, Error> {
    let st = rustix::fs::fstat(&file).map_err(|e| io_err(format!("inspecting {}", path.display()), e))?;
    let area = rustix::fs::fstat(&inner.root.staging).map_err(|e| io_err("inspecting the staging area", e))?;
    if st.st_dev != area.st_dev
        || FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_size as u64 != size
    {
        return Ok(None);
    }
    for _ in 0..staging::NAME_ATTEMPTS {
        let name = staging::fresh_name(key);
        match rustix::fs::renameat_with(rustix::fs::CWD, path, &inner.root.staging, &name, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(Some(LocalStaged::written(Arc::clone(inner), key.clone(), name, file, size))),
            Err(Errno::EXIST) => continue,
            // Another filesystem after all (a bind mount), or no no-replace rename here.
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS) => return Ok(None),
            Err(e) => {
                return Err(io_err(format!("moving {} into the staging area for {key:?}", path.display()), e));
            }
        }
    }
    Err(io_err(format!("naming a staging file for {key:?}"), Errno::EXIST))
}
