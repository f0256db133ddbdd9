//! Starting disk writeback early, so the fsync at publish has little left to do.
//!
//! Without this, a large staged file sits dirty in the page cache until publish, and the fsync
//! then waits for all of it. Asking the kernel to begin writing each few megabytes as they are
//! staged overlaps the disk with hashing and copying. This is only a hint: durability still
//! comes from the fsync at publish.

use std::fs::File;

/// Bytes staged between two writeback hints.
pub(crate) const EVERY: u64 = 8 << 20;

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk, without waiting.
/// Errors are ignored: a filesystem that does not support it simply gets no head start. Only on
/// Linux (`sync_file_range`); elsewhere there is no head start, and the fsync does it all.
#[cfg(not(target_os = "linux"))]
pub(crate) fn start(_file: &File, _offset: u64, _len: u64) {}

/// See above: the Linux version.
#[cfg(target_os = "linux")]
pub(crate) fn start(file: &File, offset: u64, len: u64) {
    #[allow(unsafe_code)]
    // SAFETY: `sync_file_range` only reads its scalar arguments; the descriptor is owned by
    // `file`, which outlives the call. No memory is passed to the kernel.
    let _ = unsafe {
        libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}
