//! Listing keys under the root, never following links, never showing staging data.
//!
//! A listing is complete or it is an error: a directory or entry that cannot be read (no
//! permission, an I/O error) fails the whole listing with an error naming its path, never a
//! silently shorter list. Entries promote could never have stored are skipped with a warning
//! naming them: names that are not UTF-8 or not valid keys. Symbolic links and special files are
//! skipped (promote never follows links). An entry removed while the listing runs is simply
//! not listed.

use std::os::fd::OwnedFd;

use promote_core::{Entry, Error, Key, RESERVED_SEGMENT};
use rustix::fs::{AtFlags, Dir, FileType};
use rustix::io::Errno;

use crate::root::{Root, io_err, open_dir_at};

/// Every regular file whose key starts with `prefix`, sorted by key.
pub(crate) fn list(root: &Root, prefix: &str) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    let top = open_dir_at(&root.dir, ".").map_err(|e| io_err(format!("listing {}", root.path.display()), e))?;
    walk(root, top, String::new(), prefix, &mut out)?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn walk(root: &Root, dir: OwnedFd, path: String, prefix: &str, out: &mut Vec<Entry>) -> Result<(), Error> {
    let shown = |p: &str| format!("{}/{p}", root.path.display());
    let unreadable = |p: &str, e| {
        io_err(format!("listing {}: cannot read it; fix its permissions or list a narrower prefix", shown(p)), e)
    };
    let entries = Dir::read_from(&dir).map_err(|e| unreadable(&path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| unreadable(&path, e))?;
        let Ok(name) = entry.file_name().to_str() else {
            let raw = entry.file_name().to_string_lossy();
            tracing::warn!(path = %shown(&format!("{path}/{raw}")), "not listed: the name is not UTF-8, so it is no key");
            continue;
        };
        if name == "." || name == ".." || (path.is_empty() && name == RESERVED_SEGMENT) {
            continue;
        }
        let key = if path.is_empty() { name.to_owned() } else { format!("{path}/{name}") };
        // Only descend where the prefix can still match.
        let could_match = key.starts_with(prefix) || prefix.starts_with(&format!("{key}/"));
        if !could_match {
            continue;
        }
        let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(unreadable(&key, e)),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => match open_dir_at(&dir, name) {
                Ok(sub) => walk(root, sub, key, prefix, out)?,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(unreadable(&key, e)),
            },
            FileType::RegularFile if key.starts_with(prefix) => match Key::new(key.as_str()) {
                Ok(key) => out.push(Entry { key, size: st.st_size as u64 }),
                Err(err) => {
                    tracing::warn!(path = %shown(&key), error = %err, "not listed: the name is not a valid key")
                }
            },
            _ => {}
        }
    }
    Ok(())
}
