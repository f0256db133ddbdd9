//! Large files from the root's filesystem, copied inside the kernel: the local backend's
//! [`Backend::stage_copy`](promote_core::Backend::stage_copy). Linux only.
//!
//! - **Reflink first** (`FICLONE`: XFS, btrfs, …), when the source is read from its start: the
//!   staging file shares the source's extents, so nothing is copied and no space is used until
//!   one of the two files changes (copy-on-write). The staged file is then read back and hashed.
//! - **Else `copy_file_range`**, in steps of [`STEP`], from the source's offset until the call
//!   reports the end (the size the source had when it was opened is not trusted). The bytes go
//!   from page cache to page cache without passing through promote. A second thread reads each
//!   step back from the **staged** file (`pread`, into one reused buffer) and hashes it while
//!   the next step is copied. When the durability syncs, writeback of each step starts as soon
//!   as it is copied ([`crate::writeback`]), as on the streaming path.
//! - **Declined** when neither call works here: the source is not a regular file (a pipe), is
//!   on another filesystem (`EXDEV`), the kernel or filesystem lacks the call (`EOPNOTSUPP`,
//!   `EINVAL`, `ENOSYS`, …), or the first copy finds nothing to copy (a file whose size the
//!   kernel does not know). The staging file is removed and the source's offset restored, and
//!   core streams the file instead.
//!
//! The digest is always of the staged file, read back after the copy: it describes exactly the
//! bytes a publish makes visible, even if the source changes meanwhile. The staged file then
//! becomes an ordinary [`LocalStaged`]: the same seal, publish (fsync unless a group commit
//! sealed it, no-replace rename, directory fsyncs), abort and drop as a streamed one.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use promote_core::{Digest, Digester, Error, Expected, Key, StagedCopy};
use rustix::fs::{Advice, FileType, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use crate::backend::Inner;
use crate::root::{Root, io_err};
use crate::writer::{LocalStaged, write_failed};
use crate::{staging, writeback};

/// Bytes copied per `copy_file_range` step, each then hashed as one piece behind the copy.
pub(crate) const STEP: u64 = 8 << 20;

/// Steps of a cloned file asked from the disk ahead of the one being hashed (`WILLNEED`), so the
/// reading overlaps the hashing.
const CLONE_AHEAD: u64 = 4;

/// Bytes read back per `pread` while hashing: small enough to still be in the CPU's cache when
/// the hash reads them.
const READ_BACK: usize = 256 << 10;

/// Copied steps waiting to be hashed, at most: the copy runs at most this many steps ahead of
/// the one being hashed.
const AHEAD: usize = 1;

/// Set when the caller gave up (its future was dropped: Ctrl-C, a closed pipe); the copy then
/// stops at its next step and removes its staging file, instead of copying to the end first.
#[derive(Debug, Default)]
pub(crate) struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// The flag the copy watches.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Stages a copy of `source` (from its offset) for `key`, as the module docs describe. Blocking.
pub(crate) fn stage(
    inner: &Arc<Inner>,
    key: &Key,
    source: &File,
    expected: &Expected,
    cancelled: &AtomicBool,
) -> Result<StagedCopy, Error> {
    let root = &inner.root;
    let st = rustix::fs::fstat(source).map_err(|e| io_err(format!("inspecting the source of {key:?}"), e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(StagedCopy::Declined("the source is not a regular file".into()));
    }
    let start = rustix::fs::tell(source).map_err(|e| io_err(format!("finding the source's offset for {key:?}"), e))?;
    let (name, file) = staging::create(root, key)?;
    let pending = Pending { root, name: Some(name) };
    let reader = reopen(root, pending.name(), &file)?;
    let sync = inner.config.durability.syncs();
    let after_step = |from: u64, len: u64| {
        if sync {
            writeback::start(&file, from, len);
        }
    };
    let mut reflink = None;
    let copied = match (start == 0).then(|| rustix::fs::ioctl_ficlone(&file, source)) {
        Some(Ok(())) => hash_clone(&reader, source, expected, cancelled).map(|d| (d, "reflink (FICLONE)")),
        cloned => {
            reflink = cloned.and_then(Result::err);
            // A failed clone changes nothing; the copy still starts from an empty file, for certainty.
            match rustix::fs::ftruncate(&file, 0) {
                Ok(()) => copy_hashing_behind(&file, &reader, source, expected, cancelled, after_step)
                    .map(|d| (d, "copy_file_range")),
                Err(e) => Err(Stop::Failed("emptying the staging file", e.into())),
            }
        }
    };
    match copied {
        Ok((digest, method)) => {
            let name = pending.keep();
            let staged = LocalStaged::written(Arc::clone(inner), key.clone(), name, file, digest.size);
            Ok(StagedCopy::Staged { staged: Box::new(staged), digest, method })
        }
        Err(Stop::TooLong(actual)) => {
            Err(Error::SizeMismatch { key: key.to_string(), expected: expected.size.unwrap_or_default(), actual })
        }
        Err(Stop::Failed(what, e)) => {
            let context = format!("{what} for {key:?} into {}", staging::shown(pending.name()));
            Err(write_failed(context, &root.path, e))
        }
        Err(declined @ (Stop::Unsupported(_) | Stop::Nothing)) => {
            drop(pending);
            // Nothing was copied, so the offset has not moved; restoring it is for certainty.
            let _ = rustix::fs::seek(source, SeekFrom::Start(start));
            Ok(StagedCopy::Declined(reason(reflink, &declined)))
        }
    }
}

/// Why the kernel copy was declined, for the `-vv` log.
fn reason(reflink: Option<Errno>, declined: &Stop) -> String {
    match declined {
        Stop::Unsupported(Errno::XDEV) => "the source is on another filesystem than the store (EXDEV)".into(),
        Stop::Unsupported(e) => match reflink {
            Some(r) => format!("neither reflink (FICLONE: {r}) nor copy_file_range ({e}) works for this source"),
            None => format!("copy_file_range does not work for this source ({e})"),
        },
        _ => "copy_file_range found nothing to copy (a file whose size the kernel does not know)".into(),
    }
}

/// Why a copy stopped short of a digest.
enum Stop {
    /// The first `copy_file_range` failed with an error that means "not here"; nothing was copied.
    Unsupported(Errno),
    /// The first `copy_file_range` copied nothing.
    Nothing,
    /// More bytes than the expected size: how many were staged when that showed.
    TooLong(u64),
    /// What failed, and how.
    Failed(&'static str, std::io::Error),
}

/// Errors of a first `copy_file_range` that mean the call does not apply to these two files, so
/// streaming them may still work.
fn declines(e: Errno) -> bool {
    matches!(
        e,
        Errno::XDEV | Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS | Errno::BADF | Errno::PERM | Errno::TXTBSY
    )
}

/// Copies `source`, from its offset, to the start of `staged` with `copy_file_range` in steps of
/// [`STEP`] until the kernel reports the end, never more than one byte past `expected.size`.
/// `after_step(from, len)` runs once each step is copied, before it is hashed; a second thread
/// hashes each step as read back through `reader` (the staged file), while the next is copied.
fn copy_hashing_behind(
    staged: &File,
    reader: &File,
    source: &File,
    expected: &Expected,
    cancelled: &AtomicBool,
    mut after_step: impl FnMut(u64, u64),
) -> Result<Digest, Stop> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, u64)>(AHEAD);
        let hasher = scope.spawn(move || hash_steps(reader, rx));
        // Owns the sender: once the copy ends, however it ends, the hasher sees the channel close.
        let copied = copy_steps(staged, source, expected, cancelled, move |from, len| {
            after_step(from, len);
            tx.send((from, len)).is_ok()
        });
        let hashed = hasher.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A failed read-back also stops the copy (it finds nobody to hand the next step to).
        let hashed = hashed.map_err(|e| Stop::Failed("reading back the staged data", e))?;
        let copied = copied?;
        if hashed.size() != copied {
            let short = format!("{} of {copied} copied bytes were read back", hashed.size());
            return Err(Stop::Failed("reading back the staged data", std::io::Error::other(short)));
        }
        Ok(hashed.finish())
    })
}

/// The copy half of [`copy_hashing_behind`]: returns the bytes copied. `step(from, len)` hands
/// on each copied step; `false` means nobody takes it any more.
fn copy_steps(
    staged: &File,
    source: &File,
    expected: &Expected,
    cancelled: &AtomicBool,
    mut step: impl FnMut(u64, u64) -> bool,
) -> Result<u64, Stop> {
    let mut at = 0u64;
    // Ends at the source's end (a pass that copies nothing returns) or past the expected size,
    // and on `cancelled`.
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err(Stop::Failed("copying the source", std::io::ErrorKind::Interrupted.into()));
        }
        // With a size expected, one byte past it is enough to know the source is too long.
        let want = expected.size.map_or(STEP, |max| STEP.min(max.saturating_add(1) - at));
        let from = at;
        while at - from < want {
            let len = usize::try_from(want - (at - from)).unwrap_or(usize::MAX);
            match rustix::fs::copy_file_range(source, None, staged, Some(&mut at), len) {
                Ok(0) => break,
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) if at == 0 && declines(e) => return Err(Stop::Unsupported(e)),
                Err(e) => return Err(Stop::Failed("copying the source (copy_file_range)", e.into())),
            }
        }
        if at == from {
            return if at == 0 { Err(Stop::Nothing) } else { Ok(at) };
        }
        if expected.too_long(at) {
            return Err(Stop::TooLong(at));
        }
        if !step(from, at - from) {
            return Err(Stop::Failed("copying the source", std::io::ErrorKind::BrokenPipe.into()));
        }
    }
}

/// The hashing half of [`copy_hashing_behind`]: reads each copied step back from the staged
/// file, in order, and hashes it.
fn hash_steps(reader: &File, steps: std::sync::mpsc::Receiver<(u64, u64)>) -> std::io::Result<Digester> {
    let mut digester = Digester::new();
    let mut buf = vec![0; READ_BACK];
    for (from, len) in steps {
        if read_back(reader, from, len, &mut buf, &mut digester)? < len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the staged file is shorter than what was copied into it",
            ));
        }
    }
    Ok(digester)
}

/// After a reflink: hashes the whole staged file, a step at a time, moving the source's offset
/// along (as a read would; progress displays follow it).
fn hash_clone(reader: &File, source: &File, expected: &Expected, cancelled: &AtomicBool) -> Result<Digest, Stop> {
    let st = rustix::fs::fstat(reader).map_err(|e| Stop::Failed("inspecting the staged file", e.into()))?;
    let size = st.st_size as u64;
    if expected.too_long(size) {
        return Err(Stop::TooLong(size));
    }
    // The clone's pages are not cached yet (the page cache is per file): read ahead generously,
    // and keep the disk busy [`CLONE_AHEAD`] steps ahead of the hashing.
    let _ = rustix::fs::fadvise(reader, 0, None, Advice::Sequential);
    let mut digester = Digester::new();
    let mut buf = vec![0; READ_BACK];
    for step in 0..CLONE_AHEAD {
        let _ = rustix::fs::fadvise(reader, step * STEP, std::num::NonZeroU64::new(STEP), Advice::WillNeed);
    }
    // Ends at the clone's end (a short read returns), past the expected size, or on `cancelled`.
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err(Stop::Failed("hashing the staged file", std::io::ErrorKind::Interrupted.into()));
        }
        let from = digester.size();
        let _ =
            rustix::fs::fadvise(reader, from + CLONE_AHEAD * STEP, std::num::NonZeroU64::new(STEP), Advice::WillNeed);
        let n = read_back(reader, from, STEP, &mut buf, &mut digester)
            .map_err(|e| Stop::Failed("reading back the staged data", e))?;
        if expected.too_long(digester.size()) {
            return Err(Stop::TooLong(digester.size()));
        }
        let _ = rustix::fs::seek(source, SeekFrom::Start(from + n));
        if n < STEP {
            return Ok(digester.finish());
        }
    }
}

/// Hashes up to `len` bytes of `reader` from offset `from`, read with `pread` into `buf`.
/// Returns how many there were: fewer than `len` only at the end of the file.
fn read_back(reader: &File, from: u64, len: u64, buf: &mut [u8], digester: &mut Digester) -> std::io::Result<u64> {
    let mut done = 0;
    while done < len {
        let want = usize::try_from(len - done).map_or(buf.len(), |left| left.min(buf.len()));
        match reader.read_at(&mut buf[..want], from + done) {
            Ok(0) => break,
            Ok(n) => {
                digester.update(&buf[..n]);
                done += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A second descriptor on staging file `name`, for reading it back (staging files are created
/// write-only), checked to be the same file as `staged`.
fn reopen(root: &Root, name: &str, staged: &File) -> Result<File, Error> {
    let shown = staging::shown(name);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&root.staging, name, flags, Mode::empty())
        .map_err(|e| io_err(format!("opening {shown} to read it back"), e))?;
    let inspected = rustix::fs::fstat(&fd).and_then(|a| Ok((a, rustix::fs::fstat(staged)?)));
    let (a, b) = inspected.map_err(|e| io_err(format!("inspecting {shown}"), e))?;
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(Error::io(
            format!("opening {shown} to read it back"),
            std::io::Error::other("another file stands at its name (a concurrent `promote recover --older-than 0`?)"),
        ));
    }
    Ok(File::from(fd))
}

/// A staging file that is removed when this is dropped, unless kept: an error, a decline or a
/// panic leaves nothing staged.
struct Pending<'a> {
    root: &'a Root,
    name: Option<String>,
}

impl Pending<'_> {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    fn keep(mut self) -> String {
        self.name.take().unwrap_or_default()
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = staging::remove(self.root, &name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};

    use promote_core::Sha256;

    use super::*;

    /// Deterministic bytes that differ from step to step.
    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i >> 20) as u8).collect()
    }

    fn files(dir: &std::path::Path, content: &[u8]) -> (File, File, File) {
        std::fs::write(dir.join("src"), content).expect("write source");
        let source = File::options().read(true).write(true).open(dir.join("src")).expect("open source");
        let staged = File::create_new(dir.join("staged")).expect("create staged");
        let reader = File::open(dir.join("staged")).expect("open staged");
        (source, staged, reader)
    }

    #[test]
    fn the_digest_is_of_the_staged_bytes_even_when_the_source_changes_behind_the_copy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let content = bytes((2 * STEP as usize) + 4321);
        let (source, staged, reader) = files(dir.path(), &content);
        let mut steps = Vec::new();
        // Each step is overwritten in the source as soon as it is copied, before it is hashed.
        let scribble = |from: u64, len: u64| {
            source.write_all_at(&vec![0xEE; len as usize], from).expect("scribble");
            steps.push((from, len));
        };
        let never = AtomicBool::new(false);
        let digest = copy_hashing_behind(&staged, &reader, &source, &Expected::default(), &never, scribble)
            .unwrap_or_else(|_| panic!("copy failed"));
        assert_eq!(steps, [(0, STEP), (STEP, STEP), (2 * STEP, 4321)]);
        assert_eq!(std::fs::read(dir.path().join("staged")).expect("read staged"), content);
        assert_eq!(digest, Digest { size: content.len() as u64, sha256: Sha256::of(&content) });
        // The source's offset is after what was copied, as a read would leave it.
        assert_eq!(rustix::fs::tell(&source).expect("tell"), content.len() as u64);
    }

    #[test]
    fn a_source_longer_than_expected_stops_one_byte_past_the_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let content = bytes(3 * STEP as usize);
        let (source, staged, reader) = files(dir.path(), &content);
        let expected = Expected { size: Some(STEP + 10), sha256: None };
        let never = AtomicBool::new(false);
        match copy_hashing_behind(&staged, &reader, &source, &expected, &never, |_, _| {}) {
            Err(Stop::TooLong(actual)) => assert_eq!(actual, STEP + 11),
            _ => panic!("a source longer than expected was not stopped"),
        }
        assert_eq!(staged.metadata().expect("stat").len(), STEP + 11, "copied no further than needed");
    }

    #[test]
    fn a_cancelled_copy_stops_before_the_next_step() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (source, staged, reader) = files(dir.path(), &bytes(3 * STEP as usize));
        let cancelled = AtomicBool::new(false);
        let stop_after_first = |_, _| cancelled.store(true, Ordering::Relaxed);
        match copy_hashing_behind(&staged, &reader, &source, &Expected::default(), &cancelled, stop_after_first) {
            Err(Stop::Failed(_, e)) => assert_eq!(e.kind(), std::io::ErrorKind::Interrupted),
            _ => panic!("a cancelled copy went on"),
        }
        assert_eq!(staged.metadata().expect("stat").len(), STEP);
    }

    #[test]
    fn the_copy_starts_at_the_source_offset_and_runs_to_its_real_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let content = bytes(STEP as usize + 99);
        let (mut source, staged, reader) = files(dir.path(), &content);
        source.seek(std::io::SeekFrom::Start(1000)).expect("seek");
        // The source grows after it was opened: the copy takes what is there when it runs.
        let tail = b"grown after opening";
        source.seek(std::io::SeekFrom::End(0)).and_then(|_| source.write_all(tail)).expect("append");
        source.seek(std::io::SeekFrom::Start(1000)).expect("seek");
        let never = AtomicBool::new(false);
        let digest = copy_hashing_behind(&staged, &reader, &source, &Expected::default(), &never, |_, _| {})
            .unwrap_or_else(|_| panic!("copy failed"));
        let mut want = content[1000..].to_vec();
        want.extend_from_slice(tail);
        assert_eq!(digest, Digest { size: want.len() as u64, sha256: Sha256::of(&want) });
        assert_eq!(std::fs::read(dir.path().join("staged")).expect("read staged"), want);
    }
}
