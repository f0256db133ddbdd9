//! What `promote doctor` learns about a local root: the filesystem it lives on (and what that
//! means for durability and locking), and how create-only publishes are done there.

use promote_core::{Check, Key};
use rustix::fs::AtFlags;

use crate::root::Root;
use crate::staging;

/// Filesystems whose data lives in memory: nothing survives a reboot or an unmount.
const MEMORY: &[&str] = &["tmpfs", "ramfs"];

/// Filesystems served over a network or by a user-space daemon: locks may not reach other
/// hosts, and atomicity and durability depend on the server.
const REMOTE: &[&str] = &["nfs", "cifs", "smb", "smb2", "fuse", "ceph", "9p", "afs", "lustre", "gfs2"];

/// The name of a filesystem from its `statfs` magic number (see `linux/magic.h`).
fn name_of(magic: u32) -> Option<&'static str> {
    Some(match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x8584_58F6 => "ramfs",
        0x6969 => "nfs",
        0xFF53_4D42 => "cifs",
        0x517B => "smb",
        0xFE53_4D42 => "smb2",
        0x6573_5546 => "fuse",
        0x794C_7630 => "overlay",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x00C3_6400 => "ceph",
        0x0102_1997 => "9p",
        0x5346_414F => "afs",
        0x0BD0_0BD0 => "lustre",
        0x0116_1970 => "gfs2",
        0x5265_4973 => "reiserfs",
        0x5346_544E => "ntfs",
        0x2011_BAB0 => "exfat",
        0x4D44 => "vfat",
        0x7371_7368 => "squashfs",
        0xF15F => "ecryptfs",
        _ => return None,
    })
}

/// The filesystem of the root, with a warning where it weakens the guarantees.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn filesystem(root: &Root) -> Check {
    const NAME: &str = "filesystem";
    let st = match rustix::fs::fstatfs(&root.dir) {
        Ok(st) => st,
        Err(e) => return Check::warn(NAME, format!("statfs of {} failed: {e}", root.path.display())),
    };
    // `f_type` is a signed word on most targets; the magic numbers are 32-bit patterns.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u32;
    let Some(name) = name_of(magic) else {
        return Check::pass(NAME, format!("unknown filesystem (statfs type {magic:#x})"));
    };
    if MEMORY.contains(&name) {
        Check::warn(NAME, format!("{name}: held in memory, NOT durable across a reboot or unmount"))
    } else if REMOTE.contains(&name) {
        Check::warn(
            NAME,
            format!(
                "{name}: a network or user-space filesystem; staging locks may not be seen from other hosts \
                 (run `promote recover` from one host only) and durability depends on the server"
            ),
        )
    } else {
        Check::pass(NAME, name)
    }
}

/// The filesystem type, where the system has no `statfs` type numbers.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn filesystem(_root: &Root) -> Check {
    Check::pass("filesystem", "type not known on this system")
}

/// How a create-only publish is done here, found the way publishing finds it: a staged file is
/// renamed with `RENAME_NOREPLACE` to a second name inside the staging directory; where the
/// filesystem refuses the flag, publishing falls back to `link` + `unlink`. Both names are
/// removed afterwards.
pub(crate) fn publish_method(root: &Root) -> Check {
    const NAME: &str = "publish method";
    if !root.staging.exists() {
        return Check::pass(NAME, "not probed: the store has no staging area yet (the first put creates it)");
    }
    // A constant of plain ASCII segments: always a valid key.
    let key = Key::new("promote-doctor/publish-method").expect("valid probe key");
    let (name, file) = match staging::create(root, &key) {
        Ok(created) => created,
        Err(e) => return Check::fail(NAME, format!("cannot create a staging file to probe with: {e}")),
    };
    let result = probe(root, &name);
    drop(file);
    let _ = staging::remove(root, &name);
    result
}

#[cfg(target_os = "linux")]
fn probe(root: &Root, name: &str) -> Check {
    use rustix::io::Errno;
    const NAME: &str = "publish method";
    let moved = format!("{name}.probe");
    match rustix::fs::renameat_with(&root.staging, name, &root.staging, &moved, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => {
            let _ = rustix::fs::unlinkat(&root.staging, &moved, AtFlags::empty());
            Check::pass(NAME, "renameat2 (RENAME_NOREPLACE)")
        }
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => link_probe(root, name, &moved),
        Err(e) => Check::fail(NAME, format!("renameat2 inside {} failed: {e}", staging::shown(""))),
    }
}

#[cfg(not(target_os = "linux"))]
fn probe(root: &Root, name: &str) -> Check {
    link_probe(root, name, &format!("{name}.probe"))
}

/// The fallback: `link` must work (it is what refuses to replace).
fn link_probe(root: &Root, name: &str, linked: &str) -> Check {
    const NAME: &str = "publish method";
    match rustix::fs::linkat(&root.staging, name, &root.staging, linked, AtFlags::empty()) {
        Ok(()) => {
            let _ = rustix::fs::unlinkat(&root.staging, linked, AtFlags::empty());
            Check::pass(NAME, "link + unlink (this filesystem has no RENAME_NOREPLACE)")
        }
        Err(e) => Check::fail(
            NAME,
            format!("neither renameat2 (RENAME_NOREPLACE) nor link works here ({e}): create-only cannot be done"),
        ),
    }
}
