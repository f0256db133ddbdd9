//! The lock a writer holds on its staging file while it lives, and the two ways to ask about it.
//!
//! On Linux this is an open-file-description lock (`F_OFD_SETLK`, a write lock on the whole
//! file): the kernel drops it when the writer's last descriptor closes, however the writer exits,
//! and — unlike `flock` — it can be *tested* without being taken (`F_OFD_GETLK`), which is how a
//! dry run of `promote recover` judges liveness while changing nothing. Such locks also go through
//! the lock manager on NFS.
//!
//! Elsewhere it is an exclusive `flock`; there a dry run has no way to test it but to take it for
//! an instant and release it at once.

use std::os::fd::AsFd;

use rustix::io::Errno;

/// Takes the writer's lock on `fd` (opened for writing) without waiting. `Ok(false)`: someone
/// else holds it. Other files that need one owner at a time (a run's partial downloads) use it
/// too.
///
/// # Errors
///
/// When the lock cannot be asked for (a file system without locks).
pub fn try_take(fd: impl AsFd) -> Result<bool, Errno> {
    match imp::try_take(fd) {
        Ok(()) => Ok(true),
        Err(Errno::AGAIN | Errno::ACCESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a writer holds the lock on `fd`'s file. On Linux this takes no lock.
pub(crate) fn is_held(fd: impl AsFd) -> Result<bool, Errno> {
    imp::is_held(fd)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::os::fd::{AsFd, AsRawFd};

    use rustix::io::Errno;

    /// `fcntl(fd, cmd, {l_type, whole file})`, returning the lock description the kernel filled.
    fn fcntl(fd: impl AsFd, cmd: libc::c_int, l_type: libc::c_int) -> Result<libc::flock, Errno> {
        #[allow(unsafe_code)]
        // SAFETY: `flock` is a plain C struct of integers, for which all zeroes is a valid value
        // (a whole-file range from offset 0, pid 0 as F_OFD_* requires).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = l_type as _;
        lock.l_whence = libc::SEEK_SET as _;
        #[allow(unsafe_code)]
        // SAFETY: the descriptor is borrowed for the call; `lock` is a valid, exclusively
        // borrowed `struct flock` that the kernel reads and (for F_OFD_GETLK) writes.
        let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), cmd, &mut lock as *mut libc::flock) };
        if rc == -1 {
            Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
        } else {
            Ok(lock)
        }
    }

    pub(super) fn try_take(fd: impl AsFd) -> Result<(), Errno> {
        fcntl(fd, libc::F_OFD_SETLK, libc::F_WRLCK).map(drop)
    }

    pub(super) fn is_held(fd: impl AsFd) -> Result<bool, Errno> {
        Ok(libc::c_int::from(fcntl(fd, libc::F_OFD_GETLK, libc::F_WRLCK)?.l_type) != libc::F_UNLCK)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::os::fd::AsFd;

    use rustix::fs::FlockOperation;
    use rustix::io::Errno;

    pub(super) fn try_take(fd: impl AsFd) -> Result<(), Errno> {
        rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive).map_err(|e| match e {
            Errno::WOULDBLOCK => Errno::AGAIN,
            e => e,
        })
    }

    pub(super) fn is_held(fd: impl AsFd) -> Result<bool, Errno> {
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => rustix::fs::flock(&fd, FlockOperation::Unlock).map(|()| false),
            Err(Errno::WOULDBLOCK) => Ok(true),
            Err(e) => Err(e),
        }
    }
}
