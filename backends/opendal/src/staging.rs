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
