//! The local staging area: where an object too large to hold in memory waits, in a file, until
//! it is verified and published.
//!
//! OpenDAL fixes a write's conditions (`if_not_exists`, `if_match`) and its user metadata (the
//! digest) when the write *starts*, but promote learns the mode and the digest only when it
//! publishes. So a large object is first staged here, then sent in one conditional multi-part
//! write at publish time, and nothing reaches the service before the bytes are verified.
//!
//! Layout: `<dir>/promote-opendal/<area>/<writer>/`, holding `owner.json` (the writing process,
//! see [`Owner`]) and `data`. `<area>` is derived from the backend's location, so two backends
//! never sweep each other's staging. A dropped writer removes its directory; one whose process
//! died is removed by [`sweep`] at once (same host), or once it is older than the cut-off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use promote_core::kit::Owner;
use promote_core::{Error, Leftover, Sha256};

/// The staging area of one backend.
#[derive(Clone, Debug)]
pub(crate) struct Area {
    dir: PathBuf,
}

/// One writer's staging directory. Removed on drop.
#[derive(Debug)]
pub(crate) struct WriterDir {
    dir: PathBuf,
}

impl Area {
    /// The area under `root` for the backend at `location`.
    pub(crate) fn new(root: &Path, location: &str) -> Self {
        let hash = Sha256::of(location.as_bytes()).to_string();
        Self { dir: root.join("promote-opendal").join(&hash[..16]) }
    }

    /// Where it is.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh writer directory, with this process recorded as its owner.
    pub(crate) fn writer(&self) -> Result<WriterDir, Error> {
        let owner = Owner::me();
        let dir = self.dir.join(format!("{}-{}", owner.pid, owner.nonce));
        let err = |e| Error::io(format!("creating the staging directory {}", dir.display()), e);
        std::fs::create_dir_all(&dir).map_err(err)?;
        // A derived record of strings and integers always serializes.
        let body = serde_json::to_vec(&owner).expect("an owner serializes");
        std::fs::write(dir.join("owner.json"), body).map_err(err)?;
        Ok(WriterDir { dir })
    }

    /// Moves the complete file at `path` into a fresh writer directory as its `data`, by a
    /// rename: its bytes are not copied. `Ok(None)`, with the file left where it was, when it is
    /// on another filesystem than the area (the rename says so: `EXDEV`).
    pub(crate) fn adopt(&self, path: &Path) -> Result<Option<WriterDir>, Error> {
        let writer = self.writer()?;
        // The writer directory is new and holds no `data`: nothing is replaced.
        match std::fs::rename(path, writer.data()) {
            Ok(()) => Ok(Some(writer)),
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => Ok(None),
            Err(e) => {
                Err(Error::io(format!("moving {} into the staging area {}", path.display(), self.dir.display()), e))
            }
        }
    }
}

impl WriterDir {
    /// The staged bytes' file.
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for WriterDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Staging left by writers that died (removed at once) or that have been idle for
/// `older_than` (by the data file's modification time). One rule for dry and real runs.
///
/// # Errors
///
/// [`Error::Io`] when the area exists but cannot be listed.
pub(crate) fn sweep(area: &Area, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
    let entries = match std::fs::read_dir(area.dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing the staging area {}", area.dir().display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner: Option<Owner> =
            std::fs::read(dir.join("owner.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let alive = owner.as_ref().and_then(Owner::alive);
        let data = std::fs::metadata(dir.join("data")).ok();
        let touched = data.as_ref().or(entry.metadata().ok().as_ref()).and_then(|m| m.modified().ok());
        let idle = touched.and_then(|t| t.elapsed().ok()).unwrap_or_default();
        let removed = alive == Some(false) || (alive != Some(true) && idle >= older_than);
        let removed = removed && (dry_run || std::fs::remove_dir_all(&dir).is_ok());
        found.push(Leftover {
            name: format!("staged file {}", dir.display()),
            size: data.map(|m| m.len()),
            age: Some(idle),
            live: alive == Some(true),
            removed,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn writers(area: &Area) -> usize {
        std::fs::read_dir(area.dir()).expect("the area").count()
    }

    #[test]
    fn an_adopted_file_is_moved_whole_and_goes_with_its_writer() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let area = Area::new(tmp.path(), "here");
        let path = tmp.path().join("partial");
        std::fs::write(&path, b"all of it").expect("write the file");
        let writer = area.adopt(&path).expect("adopt").expect("the same filesystem");
        assert!(!path.exists(), "the file is moved, not copied");
        assert_eq!(std::fs::read(writer.data()).expect("the staged data"), b"all of it");
        let dir = writer.dir.clone();
        drop(writer);
        assert!(!dir.exists(), "a dropped writer removes its staging");
    }

    #[test]
    fn a_file_on_another_filesystem_is_left_where_it_was() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let other = tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm");
        let device = |p: &Path| std::fs::metadata(p).expect("inspect").dev();
        assert_ne!(device(tmp.path()), device(other.path()), "this test needs /dev/shm on a filesystem of its own");
        let area = Area::new(tmp.path(), "here");
        let path = other.path().join("partial");
        std::fs::write(&path, b"stay").expect("write the file");
        assert!(area.adopt(&path).expect("adopt").is_none(), "declined");
        assert_eq!(std::fs::read(&path).expect("the file stays"), b"stay");
        assert_eq!(writers(&area), 0, "no writer directory is left behind");
    }

    #[test]
    fn a_file_that_cannot_be_moved_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let area = Area::new(tmp.path(), "here");
        let path = tmp.path().join("gone");
        let err = area.adopt(&path).expect_err("no file to move");
        assert!(err.to_string().contains("gone"), "{err}");
        assert_eq!(writers(&area), 0, "no writer directory is left behind");
    }
}
