//! Resolving keys inside the root without ever following a link.
//!
//! Every path operation starts from the root's directory descriptor and walks one segment at a
//! time with `openat(O_NOFOLLOW | O_DIRECTORY)`, so neither `..` (already refused by [`Key`]) nor
//! a symlinked directory inside the root can lead outside it, and there is no window between a
//! check and a use.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use promote_core::{Error, Key, RESERVED_SEGMENT};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Where staging files live, under the root.
pub(crate) const STAGING_DIR: &str = "staging";

/// The open root and its staging directory.
#[derive(Debug)]
pub(crate) struct Root {
    pub(crate) path: PathBuf,
    pub(crate) dir: OwnedFd,
    pub(crate) staging: StagingDir,
}

/// The staging directory, or none in a read-only open of a root that was never written to
/// ([`Root::open_existing`]). Without one no staged write can exist, so the backend refuses to
/// stage and a sweep finds nothing; those two checks come before any use of the descriptor.
#[derive(Debug)]
pub(crate) struct StagingDir(Option<OwnedFd>);

impl StagingDir {
    /// Whether the root has a staging directory.
    pub(crate) fn exists(&self) -> bool {
        self.0.is_some()
    }
}

impl AsFd for StagingDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // Reached only past an `exists()` check (staging and copies refused, sweeps, flushes and
        // the self-check skipped without it), as the type's docs say; `AsFd` cannot return an error.
        // A publish needs a staged file, so it comes after one too.
        self.0.as_ref().expect("staging is only used once the backend checked it exists").as_fd()
    }
}

/// A key's parent directory, opened.
pub(crate) struct Parent<'a> {
    fd: Dir<'a>,
    /// When walking to publish: every directory above the parent, the root first. Each holds
    /// the entry of the next one down, found or created on the way (a concurrent writer may
    /// have just created it and not yet synced it), so each is fsynced after a publish.
    pub(crate) above: Vec<Dir<'a>>,
}

/// An open directory: the root (borrowed) or one opened on the way.
pub(crate) enum Dir<'a> {
    Root(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for Dir<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Root(fd) => *fd,
            Self::Opened(fd) => fd.as_fd(),
        }
    }
}

impl AsFd for Parent<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Permission bits as the system's `mode_t` (`u16` on macOS, `u32` on Linux); configured modes are
/// at most 0o7777, so nothing is lost.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn mode_bits(bits: u32) -> Mode {
    Mode::from_raw_mode((bits & 0o7777) as rustix::fs::RawMode)
}

pub(crate) fn io_err(context: impl Into<String>, errno: Errno) -> Error {
    Error::io(context, errno.into())
}

/// The staging area at `what` could not be made or opened: for a user who is not its owner,
/// say so in words (only the store's owner writes to it; reading works), else the I/O error.
fn staging_err(root: &Path, what: &str, errno: Errno) -> Error {
    if !matches!(errno, Errno::ACCESS | Errno::PERM) {
        return io_err(format!("creating {what}"), errno);
    }
    let owner = std::fs::metadata(what).or_else(|_| std::fs::metadata(root)).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    let owner = owner.map_or_else(|_| "another user".to_owned(), |uid| format!("user {uid}"));
    Error::io(
        format!(
            "cannot write to the store at {}: its private staging area {what} belongs to {owner}, so only they can \
             write here (reading works as any user who can read the objects; write to a store of your own)",
            root.display()
        ),
        errno.into(),
    )
}

/// Opens a directory entry as a directory, refusing symlinks.
pub(crate) fn open_dir_at(parent: impl AsFd, name: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens directory `name` under `parent`, creating it with exactly `mode` (the umask does not
/// apply) when missing. Returns it and whether this call created it.
fn ensure_dir_at(parent: impl AsFd, name: &str, mode: u32) -> Result<(OwnedFd, bool), Errno> {
    match rustix::fs::mkdirat(&parent, name, mode_bits(mode)) {
        Ok(()) => {
            let dir = open_dir_at(&parent, name)?;
            rustix::fs::fchmod(&dir, mode_bits(mode))?;
            Ok((dir, true))
        }
        Err(Errno::EXIST) => Ok((open_dir_at(&parent, name)?, false)),
        Err(e) => Err(e),
    }
}

/// The directory holding `path` (`.` for a bare name).
fn holder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn fsync_path(path: &Path) -> Result<(), Errno> {
    let dir = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&dir)
}

/// Creates directory `path` and its missing ancestors with exactly `mode`; when `durable`,
/// fsyncs the directory holding each one it created.
fn create_dir_all(path: &Path, mode: u32, durable: bool) -> Result<(), Errno> {
    let mkdir = || rustix::fs::mkdir(path, mode_bits(mode));
    match mkdir() {
        Ok(()) => {}
        Err(Errno::EXIST) => return Ok(()),
        Err(Errno::NOENT) if path.parent().is_some_and(|p| !p.as_os_str().is_empty()) => {
            create_dir_all(holder(path), mode, durable)?;
            match mkdir() {
                Ok(()) => {}
                Err(Errno::EXIST) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    let dir =
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fchmod(&dir, mode_bits(mode))?;
    if durable { fsync_path(holder(path)) } else { Ok(()) }
}

impl Root {
    /// Creates `path` if missing (directories with exactly `dir_mode`) and opens it with its
    /// staging area. When `durable`, the directory holding each directory created here is
    /// fsynced, and so is the root's own parent even when the root was found (another process
    /// may have just created it), so that no publish depends on an unsynced entry.
    pub(crate) fn open(path: &Path, dir_mode: u32, durable: bool) -> Result<Self, Error> {
        let shown = path.display();
        create_dir_all(path, dir_mode, durable)
            .map_err(|e| io_err(format!("creating the root directory {shown}"), e))?;
        if durable {
            fsync_path(holder(path))
                .map_err(|e| io_err(format!("fsync of the directory holding the root {shown}"), e))?;
        }
        let dir = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_err(format!("opening the root directory {shown}"), e))?;
        let sync = |dir: &OwnedFd, what: &str| {
            if durable { rustix::fs::fsync(dir).map_err(|e| io_err(format!("fsync of {what}"), e)) } else { Ok(()) }
        };
        let (area, created) = ensure_dir_at(&dir, RESERVED_SEGMENT, 0o700)
            .map_err(|e| staging_err(path, &format!("{shown}/{RESERVED_SEGMENT}"), e))?;
        if created {
            sync(&dir, &format!("the root directory {shown}"))?;
        }
        let (staging, created) = ensure_dir_at(&area, STAGING_DIR, 0o700)
            .map_err(|e| staging_err(path, &format!("{shown}/{RESERVED_SEGMENT}/{STAGING_DIR}"), e))?;
        if created {
            sync(&area, &format!("{shown}/{RESERVED_SEGMENT}"))?;
        }
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(Self { path, dir, staging: StagingDir(Some(staging)) })
    }

    /// Opens an existing root for reading: creates nothing, syncs nothing. Its staging
    /// directory is opened when there is one.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (`no store at …`) when `path` does not exist or is not a directory;
    /// I/O errors when it cannot be opened.
    pub(crate) fn open_existing(path: &Path) -> Result<Self, Error> {
        let shown = path.display();
        let dir = match rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(dir) => dir,
            Err(e @ (Errno::NOENT | Errno::NOTDIR)) => {
                let why = if e == Errno::NOENT { "it does not exist" } else { "it is not a directory" };
                return Err(Error::config(format!(
                    "no store at {shown} ({why}; check the root, or create it with `promote put` or mkdir)"
                )));
            }
            Err(e) => return Err(io_err(format!("opening the root directory {shown}"), e)),
        };
        let staging = match open_dir_at(&dir, RESERVED_SEGMENT).and_then(|area| open_dir_at(&area, STAGING_DIR)) {
            Ok(fd) => Some(fd),
            // Never written to, or the writer's private area and this user is another: reading
            // the objects needs neither.
            Err(Errno::NOENT | Errno::ACCESS | Errno::PERM) => None,
            Err(e) => return Err(io_err(format!("opening {shown}/{RESERVED_SEGMENT}/{STAGING_DIR}"), e)),
        };
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(Self { path, dir, staging: StagingDir(staging) })
    }

    /// Opens the directory that holds `key`'s final name. When `create` is set (publishing),
    /// creates missing directories with exactly that mode and keeps every directory above the
    /// parent in [`Parent::above`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a missing directory when not creating; [`Error::InvalidKey`] when a
    /// segment is a symlink; [`Error::Conflict`] when a segment is a file; I/O errors.
    pub(crate) fn parent_of(&self, key: &Key, create: Option<u32>) -> Result<Parent<'_>, Error> {
        let segments: Vec<&str> = key.segments().collect();
        let mut parent = Parent { fd: Dir::Root(self.dir.as_fd()), above: Vec::new() };
        for (i, segment) in segments[..segments.len() - 1].iter().enumerate() {
            let next = match (open_dir_at(&parent, segment), create) {
                (Ok(fd), _) => fd,
                (Err(Errno::NOENT), None) => return Err(Error::NotFound { key: key.to_string() }),
                (Err(Errno::NOENT), Some(mode)) => match ensure_dir_at(&parent, segment, mode) {
                    Ok((fd, _)) => fd,
                    Err(e) => return Err(self.walk_error(key, &parent, &segments[..=i], e, true)),
                },
                (Err(e), _) => return Err(self.walk_error(key, &parent, &segments[..=i], e, create.is_some())),
            };
            let here = std::mem::replace(&mut parent.fd, Dir::Opened(next));
            if create.is_some() {
                parent.above.push(here);
            }
        }
        Ok(parent)
    }

    /// Explains why walking to `segments` failed.
    fn walk_error(&self, key: &Key, parent: &Parent<'_>, segments: &[&str], errno: Errno, writing: bool) -> Error {
        let path = segments.join("/");
        let last = segments.last().copied().unwrap_or_default();
        match errno {
            Errno::LOOP | Errno::NOTDIR => match rustix::fs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => Error::InvalidKey {
                    key: key.to_string(),
                    reason: format!("'{path}' is a symbolic link inside the root; promote never follows links"),
                },
                _ if !writing => Error::NotFound { key: key.to_string() },
                _ => Error::Conflict {
                    key: key.to_string(),
                    detail: format!("'{path}' is a file, so nothing can be stored under it"),
                },
            },
            e => io_err(format!("opening directory '{path}' under {}", self.path.display()), e),
        }
    }
}
