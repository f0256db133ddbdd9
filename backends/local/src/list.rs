//! Listing keys under the root, never following links, never showing staging data.

use std::os::fd::OwnedFd;

use promote_core::{Entry, Error, Key, RESERVED_SEGMENT};
use rustix::fs::{AtFlags, Dir, FileType};

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
    let entries = Dir::read_from(&dir).map_err(|e| io_err(format!("listing {}", shown(&path)), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(format!("listing {}", shown(&path)), e))?;
        let Ok(name) = entry.file_name().to_str() else { continue };
        if name == "." || name == ".." || (path.is_empty() && name == RESERVED_SEGMENT) {
            continue;
        }
        let key = if path.is_empty() { name.to_owned() } else { format!("{path}/{name}") };
        // Only descend where the prefix can still match.
        let could_match = key.starts_with(prefix) || prefix.starts_with(&format!("{key}/"));
        if !could_match {
            continue;
        }
        let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                if let Ok(sub) = open_dir_at(&dir, name) {
                    walk(root, sub, key, prefix, out)?;
                }
            }
            FileType::RegularFile if key.starts_with(prefix) => match Key::new(key.as_str()) {
                Ok(key) => out.push(Entry { key, size: st.st_size as u64 }),
                Err(err) => tracing::warn!(error = %err, "skipping a file whose name is not a valid key"),
            },
            _ => {}
        }
    }
    Ok(())
}
