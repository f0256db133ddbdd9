//! The SHA-256 stored with each published file, in the extended attribute
//! `user.promote.sha256`.
//!
//! The value records the digest together with the file's size and modification time when it was
//! published: `v1 <sha256-hex> <size> <mtime-seconds>.<mtime-nanoseconds>`. A file changed
//! afterwards (by anything other than promote) no longer matches its size or mtime, and its
//! stored digest is then ignored. Where the filesystem has no user xattrs, nothing is stored
//! and `head` reports no digest; promote then hashes the file when it needs its digest.

use std::fs::File;
use std::os::fd::AsFd;

use promote_core::{Digest, Sha256};
use rustix::fs::{Stat, XattrFlags};
use rustix::io::Errno;

const NAME: &str = "user.promote.sha256";

fn value(sha256: &Sha256, st: &Stat) -> String {
    format!("v1 {sha256} {} {}.{}", st.st_size, st.st_mtime, st.st_mtime_nsec)
}

/// What the filesystem answers for a missing attribute.
#[cfg(target_os = "linux")]
const ABSENT: i32 = libc::ENODATA;
#[cfg(not(target_os = "linux"))]
const ABSENT: i32 = libc::ENOATTR;

/// Whether the filesystem of `dir` keeps user xattrs, asked without writing anything: reading an
/// attribute no file has answers "no such attribute" where they are kept, "not supported" where
/// they are not.
pub(crate) fn supported(dir: impl AsFd) -> bool {
    let mut buf = Vec::with_capacity(160);
    match rustix::fs::fgetxattr(dir, NAME, spare(&mut buf)) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() == ABSENT,
    }
}

/// Stores `digest` on `file`. `Ok(false)` where the filesystem has no user xattrs.
pub(crate) fn store(file: &File, digest: &Digest, st: &Stat) -> Result<bool, Errno> {
    match rustix::fs::fsetxattr(file, NAME, value(&digest.sha256, st).as_bytes(), XattrFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOTSUP | Errno::PERM) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Marks the record of `file` as no longer describing it (a read found its bytes damaged): the
/// digest is kept for humans, after a word that makes [`load`] report it [`Recorded::Stale`].
/// `Ok(false)` when there is no record.
pub(crate) fn forget(file: &File) -> Result<bool, Errno> {
    let mut buf = Vec::with_capacity(160);
    if rustix::fs::fgetxattr(file, NAME, spare(&mut buf)).is_err() {
        return Ok(false);
    }
    let text = String::from_utf8_lossy(&buf);
    if text.ends_with(" damaged") {
        return Ok(true);
    }
    rustix::fs::fsetxattr(file, NAME, format!("{text} damaged").as_bytes(), XattrFlags::empty()).map(|()| true)
}

/// What the file's record says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// A digest that still describes the file.
    Valid(Sha256),
    /// A digest was recorded, but the file's size or mtime changed since.
    Stale,
    /// No record (never stored, or no xattrs here).
    Absent,
}

/// The stored digest, and whether it still describes the file.
pub(crate) fn load(file: &File, st: &Stat) -> Recorded {
    let mut buf = Vec::with_capacity(160);
    if rustix::fs::fgetxattr(file, NAME, spare(&mut buf)).is_err() {
        return Recorded::Absent;
    }
    let parsed = std::str::from_utf8(&buf).ok().and_then(|text| Some((text, text.split(' ').nth(1)?.parse().ok()?)));
    match parsed {
        Some((text, sha256)) if text == value(&sha256, st) => Recorded::Valid(sha256),
        Some(_) => Recorded::Stale,
        None => Recorded::Absent,
    }
}

fn spare(buf: &mut Vec<u8>) -> rustix::buffer::SpareCapacity<'_, u8> {
    rustix::buffer::spare_capacity(buf)
}
