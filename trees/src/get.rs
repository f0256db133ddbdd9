//! Objects out of a store: each read verified against its stored digest (or only its size when
//! none is stored), written to a hidden temporary file next to its destination, fsynced, then
//! moved into place — never over an existing file unless asked. A file appears at its
//! destination only when whole and verified.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use promote_core::{ByteStream, Entry, Error as CoreError, Key, Meta, Store};

use crate::error::Error;
use crate::events::{Event, Events};

/// The object's verified stream. An object modified since promotion is refused
/// ([`promote_core::Error::Modified`]) unless `force`, and then checked against its size only
/// (an [`Event::ModifiedCopied`] says so).
///
/// # Errors
///
/// The store's error ([`Error::Store`]).
pub async fn open(store: &Store, key: &Key, force: bool, events: &dyn Events) -> Result<(Meta, ByteStream), Error> {
    match store.read_verified(key).await {
        Err(CoreError::Modified { .. }) if force => {
            let meta = store.head(key).await?;
            events.event(Event::ModifiedCopied { key: key.clone() });
            Ok(store.read_checked(key, meta).await?)
        }
        other => Ok(other?),
    }
}

/// Writes `stream` to a hidden temporary file next to `dest`, fsyncs it, then moves it into
/// place (never over an existing file unless `force`). The file gets the mode `cp` would give a
/// new file: 0666 less the umask. Each chunk is counted in an [`Event::Bytes`].
///
/// # Errors
///
/// [`Error::Exists`] when `dest` exists and not `force`; [`Error::Unwritable`] when no
/// temporary file can be made beside it; [`Error::Local`] when writing fails; the stream's
/// error (a digest mismatch, say) as [`Error::Store`]. Nothing is left at `dest` then.
pub async fn write_file(mut stream: ByteStream, dest: &Path, force: bool, events: &dyn Events) -> Result<(), Error> {
    if !force && dest.exists() {
        return Err(Error::Exists { path: dest.to_owned() });
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => ".".into(),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".promote-get-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(|error| Error::Unwritable { dir: dir.clone(), error })?;
    let writing = |error: std::io::Error| Error::Local { what: "writing", path: dest.to_owned(), error };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        events.event(Event::Bytes { n: chunk.len() as u64 });
        tmp.write_all(&chunk).map_err(writing)?;
    }
    tmp.as_file().sync_all().map_err(writing)?;
    if force {
        tmp.persist(dest).map_err(|e| writing(e.error))?;
    } else {
        tmp.persist_noclobber(dest).map_err(|e| writing(e.error))?;
    }
    Ok(())
}

/// Where each object listed under `prefix` goes in `dest`: the part of its key after the
/// prefix's last `/`, as a relative path (for a prefix ending in `/`, as the CLI passes it:
/// the part after the prefix, so the prefix's contents go into `dest`).
pub fn destination(prefix: &str, dest: &Path, key: &Key) -> PathBuf {
    let base = prefix.rfind('/').map_or(0, |i| i + 1);
    dest.join(&key.as_str()[base..])
}

/// Copies each of `entries` (listed under `prefix`) into directory `dest` (see
/// [`destination`]), one at a time, creating directories as needed. The stream yields each
/// entry, its destination and its result (the object's metadata), in order; one object's
/// failure does not stop the others.
pub fn get_tree<'a>(
    store: &'a Store,
    entries: &'a [Entry],
    prefix: &'a str,
    dest: &'a Path,
    force: bool,
    events: &'a dyn Events,
) -> impl Stream<Item = (&'a Entry, PathBuf, Result<Meta, Error>)> + 'a {
    futures_util::stream::iter(entries).then(move |entry| async move {
        let path = destination(prefix, dest, &entry.key);
        let result = async {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|error| Error::Local {
                    what: "creating",
                    path: parent.to_owned(),
                    error,
                })?;
            }
            let (meta, stream) = open(store, &entry.key, force, events).await?;
            write_file(stream, &path, force, events).await?;
            Ok(meta)
        }
        .await;
        (entry, path, result)
    })
}
