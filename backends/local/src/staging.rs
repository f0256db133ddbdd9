//! Staging files: created exclusively, locked while their writer lives, swept when it dies.
//!
//! Each staging file is `<root>/.promote/staging/<key-hash>-<pid>-<n>-<nanos>.part`, created with
//! `O_CREAT | O_EXCL` (mode 0600) and held under the writer's lock ([`crate::lock`]) for as long
//! as its writer has it open. The kernel drops that lock when the writer exits, however it exits,
//! so a sweep can tell a crashed writer's leftovers (lock free) from a live writer's (lock held).
//! A dry run only tests the lock (on Linux without taking it) and changes nothing.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use promote_core::{Error, Key, Leftover, RESERVED_SEGMENT, Sha256};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::lock;
use crate::root::{Root, STAGING_DIR, io_err, mode_bits};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Names tried for one staging file before giving up. Each name is new (pid, counter, time), so
/// a second is needed only when a sweep races the creation; a hundred in a row means something
/// else answers for the directory (a broken file system), and looping on would never end.
pub(crate) const NAME_ATTEMPTS: u32 = 100;

/// The path of a staging file relative to the root, for messages.
pub(crate) fn shown(name: &str) -> String {
    format!("{RESERVED_SEGMENT}/{STAGING_DIR}/{name}")
}

/// A new staging file name for `key` (its hash, this process, a counter and the time).
pub(crate) fn fresh_name(key: &Key) -> String {
    let key_hash = Sha256::of(key.as_str().as_bytes()).to_string();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("{}-{}-{n}-{nanos:08x}.part", &key_hash[..16], std::process::id())
}

/// How a staging file is created: for writing only, new (never an existing file, nor through a
/// symbolic link), and closed on exec (a program started meanwhile inherits neither the file
/// nor its lock).
const CREATE: OFlags =
    OFlags::WRONLY.union(OFlags::CREATE).union(OFlags::EXCL).union(OFlags::CLOEXEC).union(OFlags::NOFOLLOW);
/// How a sweep opens the staging directory to list it.
const LIST: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
/// How a sweep opens each entry, besides its access mode: not through a symbolic link and
/// without waiting (for an entry replaced since it was inspected), closed on exec.
const ENTRY: OFlags = OFlags::NOFOLLOW.union(OFlags::CLOEXEC).union(OFlags::NONBLOCK);

/// Creates and locks a fresh staging file for `key`.
pub(crate) fn create(root: &Root, key: &Key) -> Result<(String, File), Error> {
    for _ in 0..NAME_ATTEMPTS {
        let name = fresh_name(key);
        let fd = match rustix::fs::openat(&root.staging, &name, CREATE, mode_bits(0o600)) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(e @ (Errno::MFILE | Errno::NFILE)) => {
                let what = format!(
                    "creating staging file {} for {key:?}: each open staged write holds a file; raise the open-file limit (ulimit -n) or stage fewer at once",
                    shown(&name)
                );
                return Err(io_err(what, e));
            }
            Err(e) => return Err(io_err(format!("creating staging file {} for {key:?}", shown(&name)), e)),
        };
        match lock::try_take(&fd) {
            Ok(true) => {}
            // A sweep holds it and is about to remove it: take another name.
            Ok(false) => continue,
            Err(e) => return Err(io_err(format!("locking staging file {}", shown(&name)), e)),
        }
        // A sweep may have removed the name between our create and our lock.
        match rustix::fs::fstat(&fd) {
            Ok(st) if st.st_nlink > 0 => return Ok((name, File::from(fd))),
            Ok(_) => continue,
            Err(e) => return Err(io_err(format!("checking staging file {}", shown(&name)), e)),
        }
    }
    let dir = format!("{RESERVED_SEGMENT}/{STAGING_DIR}");
    Err(io_err(
        format!(
            "creating a staging file for {key:?}: {NAME_ATTEMPTS} fresh names in {dir} were taken or swept at once"
        ),
        Errno::EXIST,
    ))
}

/// Removes a staging file by name; a missing one is fine.
pub(crate) fn remove(root: &Root, name: &str) -> Result<(), Error> {
    match rustix::fs::unlinkat(&root.staging, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(io_err(format!("removing staging file {}", shown(name)), e)),
    }
}

/// Finds staging files and removes those whose writer is gone (no lock held), or that a live
/// writer has left untouched for `older_than`. An entry that is not a regular file (a
/// directory, a FIFO, a symbolic link) is neither opened nor removed nor listed, only logged as
/// left in place (a warning), and the sweep goes on. A dry run opens each file read-only and only tests
/// its lock: it changes nothing and (on Linux) takes no lock, and reports the verdicts a real run
/// would act on.
pub(crate) fn sweep(root: &Root, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
    let list_err = |e| io_err(format!("listing {}", shown("")), e);
    let dir_fd = rustix::fs::openat(&root.staging, ".", LIST, Mode::empty()).map_err(list_err)?;
    let mut found = Vec::new();
    for entry in rustix::fs::Dir::new(dir_fd).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let Ok(name) = entry.file_name().to_str() else { continue };
        if name == "." || name == ".." {
            continue;
        }
        let name = name.to_owned();
        // Promote makes only regular files here. Anything else (a directory, a FIFO, a symbolic
        // link, a device) is not opened, followed or removed, in a dry run as in a real one.
        let kind = match rustix::fs::statat(&root.staging, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => FileType::from_raw_mode(st.st_mode),
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(io_err(format!("inspecting {}", shown(&name)), e)),
        };
        if kind != FileType::RegularFile {
            left_alone(&name, kind);
            continue;
        }
        // A real run takes the lock (a write lock needs a descriptor open for writing).
        let access = if dry_run { OFlags::RDONLY } else { OFlags::WRONLY };
        let fd = match rustix::fs::openat(&root.staging, &name, access.union(ENTRY), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            // Replaced meanwhile by a symbolic link, a directory or a FIFO without a reader.
            Err(Errno::LOOP | Errno::ISDIR | Errno::NXIO) => {
                left_alone(&name, FileType::Unknown);
                continue;
            }
            Err(e) => return Err(io_err(format!("opening staging file {}", shown(&name)), e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err(format!("inspecting {}", shown(&name)), e))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            left_alone(&name, kind);
            continue;
        }
        let mtime = SystemTime::UNIX_EPOCH + Duration::new(st.st_mtime as u64, st.st_mtime_nsec as u32);
        let age = SystemTime::now().duration_since(mtime).unwrap_or_default();
        let live = if dry_run { lock::is_held(&fd) } else { lock::try_take(&fd).map(|taken| !taken) }
            .map_err(|e| io_err(format!("testing the lock of {}", shown(&name)), e))?;
        let stale = !live || age >= older_than;
        let removed = stale;
        if removed && !dry_run {
            // Still holding the lock (when the writer is gone), so no new writer can claim it.
            remove(root, &name)?;
        }
        found.push(Leftover { name: shown(&name), size: Some(st.st_size as u64), age: Some(age), live, removed });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Says that a sweep left `name` in place because it is not a staging file.
fn left_alone(name: &str, kind: FileType) {
    tracing::warn!(
        entry = %shown(name),
        kind = ?kind,
        "left in place: not a regular file, so not a staging file (promote never makes one there); remove it by hand if it is not needed"
    );
}
