//! Partial downloads and resume decisions.
//!
//! A large item (or any item on the spool path) downloads into `partials/<job key>` in the run
//! directory. At checkpoints the file is fsynced and then (offset, SHA-256 of the prefix,
//! validators) recorded in the ledger, in that order, so a checkpoint never claims bytes that are
//! not on disk. After a crash the file is cut back to the checkpoint and its prefix hashed again
//! and compared: a mismatch discards it. The digester that checks the prefix keeps running over
//! the rest of the body, so the final SHA-256 is a fresh hash of the whole object.
//!
//! A partial has one owner at a time: opening it takes an exclusive lock on the file (an
//! open-file-description lock on Linux, the one staging files carry), held for as long as the
//! `Partial` lives and released by the kernel however its process ends. Nothing truncates,
//! cuts back or deletes a partial without holding that lock, and the bytes promoted are read
//! through the locked handle, never by opening the path again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promote_core::{Digest, Digester};

use super::ledger::{Checkpoint, Segment};

/// Bytes written between two checkpoints at most.
const CHECKPOINT_BYTES: u64 = 8 << 20;
/// Time between two checkpoints at most.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What happened to an item's earlier progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The key already holds the expected (or previously promoted) digest: nothing fetched.
    AlreadyComplete,
    /// Kept bytes were checked and the download continued from them.
    Resume,
    /// Kept bytes could not be used (no range support, changed validators, failed prefix
    /// check): fetched again from the start.
    Discard,
    /// Nothing was kept.
    Fresh,
}

impl serde::Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Decision {
    /// The word used in summaries, reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyComplete => "already-complete",
            Self::Resume => "resume",
            Self::Discard => "discard",
            Self::Fresh => "fresh",
        }
    }
}

/// A partial download on disk, with the running hash of everything in it.
#[derive(Debug)]
pub(crate) struct Partial {
    path: PathBuf,
    /// Shared with the blocking pool while an fsync runs there (see [`Self::sync`]).
    file: Arc<File>,
    digester: Digester,
    unsynced: u64,
    last_sync: Instant,
    /// The `ETag` of the response the bytes came from.
    pub(crate) etag: Option<String>,
    /// Its `Last-Modified`.
    pub(crate) last_modified: Option<String>,
    /// The whole object's length, when known.
    pub(crate) total: Option<u64>,
    /// Fetched by parallel range requests (see `crate::segments`): the object's segments, in
    /// order, each written where it belongs. Empty: fetched in one stream, appended.
    segments: Vec<Segment>,
}

impl Partial {
    /// An empty partial file at `path`, locked (an older one there is truncated once the lock
    /// is ours).
    ///
    /// # Errors
    ///
    /// [`std::io::ErrorKind::WouldBlock`] when another process holds the file's lock; when the
    /// file cannot be created.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let file = Self::open_locked(path)?;
        file.set_len(0)?;
        Ok(Self::new(path, file, Digester::new()))
    }

    /// Opens (creating if needed, never truncating) and locks `path`.
    fn open_locked(path: &Path) -> std::io::Result<File> {
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
        match promote_local::lock::try_take(&file) {
            Ok(true) => Ok(file),
            Ok(false) => Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", path.display()),
            )),
            Err(errno) => Err(std::io::Error::from(errno)),
        }
    }

    fn new(path: &Path, file: File, digester: Digester) -> Self {
        Self {
            path: path.to_owned(),
            file: Arc::new(file),
            digester,
            unsynced: 0,
            last_sync: Instant::now(),
            etag: None,
            last_modified: None,
            total: None,
            segments: Vec::new(),
        }
    }

    /// Reopens and locks the partial at `path` as of `checkpoint`: cuts it back to the
    /// checkpoint's offset and hashes the prefix again. The flag says whether the bytes were
    /// kept: when the file is missing, shorter than the checkpoint, or its prefix no longer
    /// hashes to the recorded digest, the partial comes back empty (discarded).
    ///
    /// # Errors
    ///
    /// [`std::io::ErrorKind::WouldBlock`] when another process holds the file's lock; when the
    /// file cannot be read or truncated.
    pub(crate) fn reopen(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<(Self, bool)> {
        let mut file = Self::open_locked(path)?;
        let fresh = |file: File| -> std::io::Result<(Self, bool)> {
            file.set_len(0)?;
            Ok((Self::new(path, file, Digester::new()), false))
        };
        let segments = &checkpoint.segments;
        // A segmented partial keeps every segment's fetched bytes, so it is never cut back; the
        // prefix must lie within fetched bytes, and the segments end at the object's end. The
        // file reaches as far as the furthest fetched byte (a segment not started yet, waiting
        // for a connection, has written nothing at its start).
        let kept_to = segments.iter().filter(|s| s.done > s.start).map(|s| s.done).max().unwrap_or(checkpoint.offset);
        let fits = segments.is_empty()
            || (checkpoint.total == segments.last().map(|s| s.end)
                && segments.iter().any(|s| s.start <= checkpoint.offset && checkpoint.offset <= s.done));
        if !fits || file.metadata()?.len() < kept_to {
            return fresh(file);
        }
        if segments.is_empty() {
            file.set_len(checkpoint.offset)?;
        }
        let mut digester = Digester::new();
        let mut buf = vec![0u8; 1 << 20];
        file.seek(SeekFrom::Start(0))?;
        // Ends after `checkpoint.offset` bytes, or at the end of a file shorter than that.
        while digester.size() < checkpoint.offset {
            let want = (checkpoint.offset - digester.size()).min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            digester.update(&buf[..n]);
        }
        if digester.size() != checkpoint.offset || digester.clone().finish().sha256 != checkpoint.prefix_sha256 {
            return fresh(file);
        }
        file.seek(SeekFrom::End(0))?;
        let mut partial = Self::new(path, file, digester);
        partial.etag.clone_from(&checkpoint.etag);
        partial.last_modified.clone_from(&checkpoint.last_modified);
        partial.total = checkpoint.total;
        partial.segments.clone_from(segments);
        partial.catch_up()?;
        Ok((partial, true))
    }

    /// [`Self::reopen`] on the blocking pool (it reads the whole prefix back), so it works on
    /// any tokio runtime, a current-thread one included.
    ///
    /// # Errors
    ///
    /// As [`Self::reopen`]; when the blocking pool could not run it.
    pub(crate) async fn reopened(path: &Path, checkpoint: Checkpoint) -> std::io::Result<(Self, bool)> {
        let path = path.to_owned();
        let reopened = promote_core::kit::blocking::run(move || Self::reopen(&path, &checkpoint)).await;
        reopened.map_err(std::io::Error::other)?
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file from its start on, hashed (for a segmented partial, the segments'
    /// bytes beyond them are not counted).
    pub(crate) fn offset(&self) -> u64 {
        self.digester.size()
    }

    /// Bytes fetched: [`Self::offset`], or for a segmented partial, every segment's.
    pub(crate) fn progress(&self) -> u64 {
        if self.segments.is_empty() { self.offset() } else { Segment::fetched(&self.segments) }
    }

    /// Whether the partial is fetched in segments.
    pub(crate) fn segmented(&self) -> bool {
        !self.segments.is_empty()
    }

    /// Its segments (empty when fetched in one stream).
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Splits the object, `total` bytes and none fetched yet, into `n` segments of about
    /// equal size, to be fetched by parallel range requests.
    pub(crate) fn split(&mut self, n: u64) {
        debug_assert_eq!(self.offset(), 0, "split before the first byte");
        let total = self.total.unwrap_or(0);
        let size = total.div_ceil(n.max(1)).max(1);
        self.segments = (0..total.div_ceil(size))
            .map(|k| Segment { start: k * size, done: k * size, end: ((k + 1) * size).min(total) })
            .collect();
    }

    /// Writes `chunk` where segment `index`'s fetched bytes end. When the hashed prefix reaches
    /// that far, the chunk is hashed as it is; then whatever other segments fetched that now
    /// follows on from the prefix is read back and hashed, so the digest is always of the
    /// object's bytes in order, each hashed once.
    ///
    /// # Errors
    ///
    /// When the chunk does not fit in the segment, or the write or a read back fails.
    pub(crate) fn write_segment(&mut self, index: usize, chunk: &[u8]) -> std::io::Result<()> {
        let segment = &mut self.segments[index];
        if chunk.len() as u64 > segment.end - segment.done {
            return Err(std::io::Error::other(format!(
                "{} bytes do not fit in bytes {}-{} of the object",
                chunk.len(),
                segment.done,
                segment.end
            )));
        }
        self.file.write_all_at(chunk, segment.done)?;
        let at = segment.done;
        segment.done += chunk.len() as u64;
        self.unsynced += chunk.len() as u64;
        if self.digester.size() == at {
            self.digester.update(chunk);
        }
        self.catch_up()
    }

    /// Hashes, reading them back from the file, the fetched bytes that follow on from the
    /// hashed prefix (none for a partial fetched in one stream).
    fn catch_up(&mut self) -> std::io::Result<()> {
        let mut buf = Vec::new();
        // Each round hashes at least one byte, up to the end of the fetched bytes.
        loop {
            let at = self.digester.size();
            let Some(segment) = self.segments.iter().find(|s| s.start <= at && at < s.done) else {
                return Ok(());
            };
            buf.resize((segment.done - at).min(1 << 20) as usize, 0);
            self.file.read_exact_at(&mut buf, at)?;
            self.digester.update(&buf);
        }
    }

    /// Whether all announced bytes are in.
    pub(crate) fn complete(&self) -> bool {
        self.total == Some(self.offset())
    }

    /// The `If-Range` validator (RFC 9110 §13.1.5 allows only strong ones): a strong ETag, else,
    /// when the server sent no ETag at all, the Last-Modified (kept only when strong, see
    /// `fetch::validators`); `None` otherwise (then a resume cannot be made safe, and the bytes
    /// are discarded).
    pub(crate) fn if_range(&self) -> Option<String> {
        crate::fetch::if_range(self.etag.as_ref(), self.last_modified.as_ref())
    }

    /// Appends `chunk`.
    ///
    /// # Errors
    ///
    /// When the write fails (disk full).
    pub(crate) fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        (&*self.file).write_all(chunk)?;
        self.digester.update(chunk);
        self.unsynced += chunk.len() as u64;
        Ok(())
    }

    /// Whether a checkpoint is due.
    pub(crate) fn due(&self) -> bool {
        self.unsynced >= CHECKPOINT_BYTES || (self.unsynced > 0 && self.last_sync.elapsed() >= CHECKPOINT_EVERY)
    }

    /// Makes what was written durable and returns the checkpoint to record.
    ///
    /// # Errors
    ///
    /// When fsync fails, or the blocking pool could not run it.
    pub(crate) async fn sync(&mut self) -> std::io::Result<Checkpoint> {
        // On tokio's blocking pool, not the async worker (works on a current-thread runtime too).
        let file = Arc::clone(&self.file);
        promote_core::kit::blocking::run(move || file.sync_data()).await.map_err(std::io::Error::other)??;
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(self.checkpoint())
    }

    /// The checkpoint for what is in the file now.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            offset: self.offset(),
            prefix_sha256: self.digester.clone().finish().sha256,
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
            total: self.total,
            segments: self.segments.clone(),
            upload: None,
        }
    }

    /// For a checkpoint taken while segments are still being written: what to record once the
    /// returned handle is fsynced (everything written so far), and the handle.
    pub(crate) fn begin_sync(&mut self) -> (Checkpoint, Arc<File>) {
        self.unsynced = 0;
        self.last_sync = Instant::now();
        (self.checkpoint(), Arc::clone(&self.file))
    }

    /// Drops every byte and starts over (the server sent the whole object again).
    ///
    /// # Errors
    ///
    /// When the file cannot be truncated.
    pub(crate) fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        (&*self.file).seek(SeekFrom::Start(0))?;
        self.digester = Digester::new();
        self.unsynced = 0;
        (self.etag, self.last_modified, self.total) = (None, None, None);
        self.segments.clear();
        Ok(())
    }

    /// Size and SHA-256 of everything in the file.
    pub(crate) fn digest(&self) -> Digest {
        self.digester.clone().finish()
    }

    /// The bytes written, for reading from the start: a second handle on the locked file (it
    /// shares the lock and the file offset), never the path opened again, which another
    /// process might have replaced.
    ///
    /// # Errors
    ///
    /// When the handle cannot be duplicated or rewound.
    pub(crate) fn reader(&self) -> std::io::Result<File> {
        let file = self.file.try_clone()?;
        (&file).seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Deletes the file while still holding its lock (so no other process can have opened it
    /// as its own in between). A file already gone is fine.
    pub(crate) fn remove(self) {
        if let Err(err) = std::fs::remove_file(&self.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %err, "could not remove a partial download");
        }
    }
}

#[cfg(test)]
mod tests {
    use promote_core::Sha256;

    use super::*;

    fn written(dir: &Path, bytes: &[u8]) -> (PathBuf, Checkpoint) {
        let path = dir.join("p");
        let mut partial = Partial::create(&path).unwrap();
        partial.etag = Some("\"v1\"".into());
        partial.total = Some(10);
        partial.write(bytes).unwrap();
        let cp = partial.checkpoint();
        (path, cp)
    }

    #[test]
    fn reopen_cuts_back_to_the_checkpoint_and_keeps_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cp) = written(dir.path(), b"01234");
        // Bytes written after the checkpoint (before a crash) are cut off.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"xx").unwrap();
        let (mut partial, kept) = Partial::reopen(&path, &cp).unwrap();
        assert!(kept, "prefix checks out");
        assert_eq!((partial.offset(), partial.if_range().as_deref()), (5, Some("\"v1\"")));
        partial.write(b"56789").unwrap();
        assert!(partial.complete());
        // A fresh hash of the whole object, not one seeded with anything else.
        assert_eq!(partial.digest().sha256, Sha256::of(b"0123456789"));
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    }

    #[test]
    fn reopen_refuses_a_changed_short_or_missing_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cp) = written(dir.path(), b"01234");
        let discarded = |path: &Path| {
            let (partial, kept) = Partial::reopen(path, &cp).unwrap();
            assert_eq!((kept, partial.offset()), (false, 0));
            std::fs::metadata(path).unwrap().len()
        };
        std::fs::write(&path, b"01X34").unwrap();
        assert_eq!(discarded(&path), 0, "changed prefix: emptied");
        std::fs::write(&path, b"012").unwrap();
        assert_eq!(discarded(&path), 0, "short file: emptied");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(discarded(&path), 0, "missing file: created empty");
    }

    /// `tokio::test` runs on a current-thread runtime, where `block_in_place` would panic.
    #[tokio::test]
    async fn sync_and_reopen_work_on_a_current_thread_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let mut partial = Partial::create(&path).unwrap();
        partial.etag = Some("\"v1\"".into());
        partial.write(b"01234").unwrap();
        let cp = partial.sync().await.unwrap();
        assert_eq!(cp.offset, 5);
        assert!(!partial.due(), "a sync starts the next checkpoint interval");
        drop(partial);
        let (kept, ok) = Partial::reopened(&path, cp).await.unwrap();
        assert!(ok, "prefix checks out");
        assert_eq!(kept.digest().sha256, Sha256::of(b"01234"));
    }

    /// Another process's partial: neither created over, reopened, cut back nor emptied while
    /// its owner holds it; the promoted bytes come from the owner's handle even when the path
    /// is replaced under it.
    #[test]
    fn a_partial_has_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cp) = written(dir.path(), b"01234");
        let (mut owner, kept) = Partial::reopen(&path, &cp).unwrap();
        assert!(kept);
        owner.write(b"56789").unwrap();
        // What a second process would see: its own open file description, refused.
        for (what, err) in
            [("create", Partial::create(&path).unwrap_err()), ("reopen", Partial::reopen(&path, &cp).unwrap_err())]
        {
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{what}: {err}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789", "untouched");
        // The path replaced behind the owner's back: the owner still reads its own bytes.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"other bytes").unwrap();
        let mut read = String::new();
        owner.reader().unwrap().read_to_string(&mut read).unwrap();
        assert_eq!(read, "0123456789");
        drop(owner);
        assert!(Partial::create(&path).is_ok(), "free once its owner is gone");
    }

    #[test]
    fn if_range_prefers_a_strong_etag() {
        let dir = tempfile::tempdir().unwrap();
        let mut partial = Partial::create(&dir.path().join("p")).unwrap();
        assert_eq!(partial.if_range(), None);
        partial.last_modified = Some("Tue, 01 Jan 2030 00:00:00 GMT".into());
        assert_eq!(partial.if_range().as_deref(), Some("Tue, 01 Jan 2030 00:00:00 GMT"), "no ETag at all");
        // A weak ETag is an entity tag: the date may not stand in for it (RFC 9110 §13.1.5).
        partial.etag = Some("W/\"weak\"".into());
        assert_eq!(partial.if_range(), None);
        partial.etag = Some("\"strong\"".into());
        assert_eq!(partial.if_range().as_deref(), Some("\"strong\""));
        partial.write(b"abc").unwrap();
        partial.reset().unwrap();
        assert_eq!((partial.offset(), partial.if_range()), (0, None));
    }

    /// A checkpoint is due once 8 MiB are unsynced, or a second after the last sync with
    /// anything unsynced; never with nothing unsynced. (The second is not waited for: the
    /// test moves `last_sync` back.)
    #[test]
    fn a_checkpoint_is_due_after_8_mib_or_a_second_with_bytes_unsynced() {
        let dir = tempfile::tempdir().unwrap();
        let mut partial = Partial::create(&dir.path().join("p")).unwrap();
        assert!(!partial.due(), "nothing written");
        partial.write(&vec![7u8; CHECKPOINT_BYTES as usize - 1]).unwrap();
        partial.last_sync = Instant::now();
        assert!(!partial.due(), "one byte short of {CHECKPOINT_BYTES}, just synced");
        partial.write(b"x").unwrap();
        partial.last_sync = Instant::now();
        assert!(partial.due(), "{CHECKPOINT_BYTES} bytes unsynced");

        let mut partial = Partial::create(&dir.path().join("q")).unwrap();
        let a_second_ago = Instant::now().checked_sub(CHECKPOINT_EVERY).unwrap();
        partial.last_sync = a_second_ago;
        assert!(!partial.due(), "a second since the last sync, nothing unsynced");
        partial.write(b"x").unwrap();
        assert!(partial.due(), "one byte unsynced for a second");
        partial.last_sync = Instant::now();
        assert!(!partial.due(), "one byte unsynced, just synced");
    }

    /// Complete means every announced byte is in: not fewer, not more, and never when no
    /// length was announced.
    #[test]
    fn a_partial_is_complete_only_at_its_announced_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut partial = Partial::create(&dir.path().join("p")).unwrap();
        partial.write(b"0123").unwrap();
        assert!(!partial.complete(), "no length announced");
        partial.total = Some(5);
        assert!(!partial.complete(), "4 of 5 bytes");
        partial.write(b"4").unwrap();
        assert!(partial.complete(), "5 of 5 bytes");
        partial.write(b"5").unwrap();
        assert!(!partial.complete(), "6 of 5 bytes");
    }

    /// `remove` deletes the file (and a file already gone is no error).
    #[test]
    fn remove_deletes_the_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let mut partial = Partial::create(&path).unwrap();
        partial.write(b"abc").unwrap();
        assert_eq!(partial.path(), path);
        partial.remove();
        assert!(!path.exists(), "the partial is still there");
        let partial = Partial::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        partial.remove();
        assert!(!path.exists());
    }

    /// A fresh partial at `path` of an object of `total` bytes (ETag `"v1"`), split in `n`.
    fn segmented(path: &Path, total: u64, n: u64) -> Partial {
        let mut partial = Partial::create(path).unwrap();
        partial.etag = Some("\"v1\"".into());
        partial.total = Some(total);
        partial.split(n);
        partial
    }

    /// Segments written in any order leave the object's bytes in place, and the digest is of
    /// the whole object in order; a chunk that does not fit its segment is refused.
    #[test]
    fn segments_are_written_in_place_and_hashed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let object: Vec<u8> = (0..100u8).collect();
        let mut partial = segmented(&path, 100, 3);
        let starts: Vec<_> = partial.segments().iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(starts, [(0, 34), (34, 68), (68, 100)]);
        // The last segment first, then the middle one in two pieces, then the first.
        partial.write_segment(2, &object[68..100]).unwrap();
        partial.write_segment(1, &object[34..50]).unwrap();
        assert_eq!((partial.offset(), partial.progress()), (0, 48), "nothing follows on from byte 0 yet");
        assert!(partial.write_segment(1, &object[50..69]).is_err(), "a chunk past its segment's end");
        partial.write_segment(0, &object[..34]).unwrap();
        assert_eq!(partial.offset(), 50, "the first segment and what follows it are hashed");
        partial.write_segment(1, &object[50..68]).unwrap();
        assert!(partial.complete());
        assert_eq!(partial.digest().sha256, Sha256::of(&object));
        assert_eq!(std::fs::read(&path).unwrap(), object);
    }

    /// A segmented checkpoint reopens with every segment's bytes kept (none cut back), the
    /// prefix checked, and the rest hashed again; a file shorter than the fetched bytes, or a
    /// prefix outside them, is discarded.
    #[test]
    fn a_segmented_partial_reopens_with_every_segments_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let object: Vec<u8> = (0..100u8).rev().collect();
        let mut partial = segmented(&path, 100, 2);
        partial.write_segment(0, &object[..20]).unwrap();
        partial.write_segment(1, &object[50..80]).unwrap();
        let cp = partial.checkpoint();
        assert_eq!((cp.offset, cp.segments.len()), (20, 2));
        drop(partial);

        let (mut reopened, kept) = Partial::reopen(&path, &cp).unwrap();
        assert!(kept);
        assert_eq!((reopened.offset(), reopened.progress(), reopened.segments()), (20, 50, cp.segments.as_slice()));
        reopened.write_segment(0, &object[20..50]).unwrap();
        assert_eq!(reopened.offset(), 80, "the second segment's kept bytes are hashed on reaching them");
        reopened.write_segment(1, &object[80..]).unwrap();
        assert_eq!(reopened.digest().sha256, Sha256::of(&object));
        drop(reopened);

        std::fs::write(&path, &object[..60]).unwrap();
        let (reopened, kept) = Partial::reopen(&path, &cp).unwrap();
        assert_eq!(
            (kept, reopened.offset(), reopened.segmented()),
            (false, 0, false),
            "shorter than the fetched bytes"
        );
        drop(reopened);
        std::fs::write(&path, &object).unwrap();
        let beyond = Checkpoint { offset: 30, ..cp.clone() };
        assert!(!Partial::reopen(&path, &beyond).unwrap().1, "a prefix past the first segment's fetched bytes");
        let cut = Checkpoint { total: Some(90), ..cp };
        assert!(!Partial::reopen(&path, &cut).unwrap().1, "segments that do not end at the object's end");
    }

    /// Segments still waiting for a connection have written nothing, so the file ends at the
    /// furthest byte fetched, before their starts: it is kept all the same.
    #[test]
    fn a_segmented_partial_whose_last_segments_have_not_started_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let object: Vec<u8> = (0..100u8).collect();
        let partial = segmented(&path, 100, 4);
        let cp = partial.checkpoint();
        drop(partial);
        let (reopened, kept) = Partial::reopen(&path, &cp).unwrap();
        assert!(kept && reopened.segmented(), "nothing fetched yet");
        drop(reopened);

        let mut partial = segmented(&path, 100, 4);
        partial.write_segment(0, &object[..10]).unwrap();
        partial.write_segment(1, &object[25..30]).unwrap();
        let cp = partial.checkpoint();
        drop(partial);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 30);
        let (reopened, kept) = Partial::reopen(&path, &cp).unwrap();
        assert_eq!((kept, reopened.offset(), reopened.progress()), (true, 10, 15));
    }
}
