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
    pub(crate) staging: OwnedFd,
}

/// A key's parent directory, opened.
pub(crate) struct Parent<'a> {
    fd: Fd<'a>,
    /// Directories in which this walk created a subdirectory, top first: their entries must be
    /// fsynced for the new directories to survive a crash.
    pub(crate) created_in: Vec<OwnedFd>,
}

enum Fd<'a> {
    Root(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for Parent<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Fd::Root(fd) => *fd,
            Fd::Opened(fd) => fd.as_fd(),
        }
    }
}

pub(crate) fn io_err(context: impl Into<String>, errno: Errno) -> Error {
    Error::io(context, errno.into())
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

fn ensure_dir_at(parent: impl AsFd, name: &str, mode: u32) -> Result<OwnedFd, Errno> {
    match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(Errno::EXIST) => open_dir_at(&parent, name),
        Err(e) => Err(e),
    }
}

impl Root {
    /// Creates `path` if missing and opens it with its staging area.
    pub(crate) fn open(path: &Path, dir_mode: u32) -> Result<Self, Error> {
        use std::os::unix::fs::DirBuilderExt;
        let shown = path.display();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(path)
            .map_err(|e| Error::io(format!("creating the root directory {shown}"), e))?;
        let dir = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_err(format!("opening the root directory {shown}"), e))?;
        let area = ensure_dir_at(&dir, RESERVED_SEGMENT, 0o700)
            .map_err(|e| io_err(format!("creating {shown}/{RESERVED_SEGMENT}"), e))?;
        let staging = ensure_dir_at(&area, STAGING_DIR, 0o700)
            .map_err(|e| io_err(format!("creating {shown}/{RESERVED_SEGMENT}/{STAGING_DIR}"), e))?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Ok(Self { path, dir, staging })
    }

    /// Opens the directory that holds `key`'s final name, creating missing directories when
    /// `create` is set.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a missing directory when not creating; [`Error::InvalidKey`] when a
    /// segment is a symlink; [`Error::Conflict`] when a segment is a file; I/O errors.
    pub(crate) fn parent_of(&self, key: &Key, create: Option<u32>) -> Result<Parent<'_>, Error> {
        let segments: Vec<&str> = key.segments().collect();
        let mut parent = Parent { fd: Fd::Root(self.dir.as_fd()), created_in: Vec::new() };
        for (i, segment) in segments[..segments.len() - 1].iter().enumerate() {
            let next = match open_dir_at(&parent, segment) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => match create {
                    None => return Err(Error::NotFound { key: key.to_string() }),
                    Some(mode) => match rustix::fs::mkdirat(&parent, *segment, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(Errno::EXIST) => {
                            let fd = open_dir_at(&parent, segment)
                                .map_err(|e| self.walk_error(key, &parent, &segments[..=i], e, true))?;
                            let here = match std::mem::replace(&mut parent.fd, Fd::Opened(fd)) {
                                Fd::Root(root) => root.try_clone_to_owned(),
                                Fd::Opened(fd) => Ok(fd),
                            }
                            .map_err(|e| Error::io("duplicating a directory descriptor", e))?;
                            parent.created_in.push(here);
                            continue;
                        }
                        Err(e) => return Err(self.walk_error(key, &parent, &segments[..=i], e, true)),
                    },
                },
                Err(e) => return Err(self.walk_error(key, &parent, &segments[..=i], e, create.is_some())),
            };
            parent.fd = Fd::Opened(next);
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
