//! Unit tests of the readers behind [`Store::promote_reader`], [`Store::promote_file`] and
//! [`Store::promote_stream`]: short reads, interrupted reads, sizes that are not a multiple of the
//! chunk, files that grow after their end was read, and streams that pass the expected size.
//!
//! The conformance suite promotes whole files and streams of round sizes on real backends; these
//! reach the edges it never does, against a backend in memory. Every wait is bounded, and the
//! scripted sources below answer every other poll with `Pending`, so a reader that loops without
//! end fails the test by its bound instead of hanging it.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::ReadBuf;

use super::*;
use crate::backend::{Backend, ByteStream, Entry, Leftover, Meta, StagedWrite};
use crate::mode::Capabilities;
use crate::verify::{Digest, Sha256};

/// The bound on every wait in these tests.
const BOUND: Duration = Duration::from_secs(20);

/// What the backend in memory saw.
#[derive(Debug, Default)]
struct Seen {
    objects: Mutex<HashMap<Key, Bytes>>,
    /// The length of every chunk written to a staged object, in order.
    writes: Mutex<Vec<usize>>,
    aborted: AtomicUsize,
    /// The offset the next checkpoint names instead of the last part end (a backend's bug).
    misnamed: Mutex<Option<u64>>,
}

impl Seen {
    fn writes(&self) -> Vec<usize> {
        self.writes.lock().unwrap().clone()
    }

    fn object(&self, key: &Key) -> Option<Bytes> {
        self.objects.lock().unwrap().get(key).cloned()
    }
}

/// A backend in memory that refuses empty chunks: core never writes one, and a reader that
/// produced them without end would otherwise spin.
#[derive(Debug, Default)]
struct Memory(Arc<Seen>);

struct MemoryStaged {
    key: Key,
    data: Vec<u8>,
    seen: Arc<Seen>,
    /// Resumable writes ([`Backend::stage_resumable`]): parts of [`PART`] bytes, the bytes of
    /// whole parts being the checkpoint (its token holds them, in hex).
    resumable: bool,
}

/// The part size of the memory backend's resumable writes.
const PART: u64 = 10;

#[async_trait]
impl Backend for Memory {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn location(&self) -> String {
        "memory:".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            create_refused: None,
            replace: true,
            replace_if_version: false,
            stored_digest: false,
            durable: false,
            staging_outlives_writer: false,
        }
    }

    async fn stage(&self, key: &Key, _expected: &Expected) -> Result<Box<dyn StagedWrite>, Error> {
        Ok(Box::new(MemoryStaged { key: key.clone(), data: Vec::new(), seen: Arc::clone(&self.0), resumable: false }))
    }

    async fn stage_resumable(
        &self,
        key: &Key,
        _expected: &Expected,
        _options: &crate::PutOptions,
        from: Option<&str>,
    ) -> Result<Option<Box<dyn StagedWrite>>, Error> {
        let data = match from.map(hex::decode) {
            None => Vec::new(),
            Some(Ok(data)) => data,
            Some(Err(_)) => return Ok(None),
        };
        Ok(Some(Box::new(MemoryStaged { key: key.clone(), data, seen: Arc::clone(&self.0), resumable: true })))
    }

    async fn head(&self, key: &Key) -> Result<Meta, Error> {
        let size = self.0.object(key).ok_or_else(|| Error::NotFound { key: key.to_string() })?.len() as u64;
        Ok(Meta {
            size,
            sha256: None,
            version: None,
            modified: Some(SystemTime::now()),
            changed_since_promotion: false,
            content_type: None,
        })
    }

    async fn read(&self, key: &Key) -> Result<ByteStream, Error> {
        let data = self.0.object(key).ok_or_else(|| Error::NotFound { key: key.to_string() })?;
        Ok(futures_util::stream::iter([Ok(data)]).boxed())
    }

    async fn delete(&self, key: &Key) -> Result<(), Error> {
        self.0.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        let objects = self.0.objects.lock().unwrap();
        let entries = objects.iter().filter(|(k, _)| k.as_str().starts_with(prefix));
        Ok(entries.map(|(k, v)| Entry { key: k.clone(), size: v.len() as u64 }).collect())
    }

    async fn sweep_staging(&self, _older_than: Duration, _dry_run: bool) -> Result<Vec<Leftover>, Error> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl StagedWrite for MemoryStaged {
    async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        if chunk.is_empty() {
            return Err(Error::io("writing to memory", io::Error::other("an empty chunk was written")));
        }
        self.seen.writes.lock().unwrap().push(chunk.len());
        self.data.extend_from_slice(&chunk);
        Ok(())
    }

    fn part_end(&self) -> Option<u64> {
        self.resumable.then(|| (self.data.len() as u64 / PART + 1) * PART)
    }

    async fn checkpoint(&mut self) -> Result<(u64, String), Error> {
        let whole = self.data.len() as u64 / PART * PART;
        let offset = self.seen.misnamed.lock().unwrap().take().unwrap_or(whole);
        Ok((offset, hex::encode(&self.data[..whole as usize])))
    }

    async fn publish(self: Box<Self>, mode: &Mode, _digest: &Digest) -> Result<Option<String>, Error> {
        let mut objects = self.seen.objects.lock().unwrap();
        if *mode == Mode::Create && objects.contains_key(&self.key) {
            return Err(Error::AlreadyExists { key: self.key.to_string() });
        }
        objects.insert(self.key, Bytes::from(self.data));
        Ok(None)
    }

    async fn abort(self: Box<Self>) -> Result<(), Error> {
        self.seen.aborted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn store() -> (Store, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    (Store::new(Arc::new(Memory(Arc::clone(&seen)))), seen)
}

fn key(name: &str) -> Key {
    Key::new(name).unwrap()
}

/// `n` bytes that differ from chunk to chunk and within one.
fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i / CHUNK_SIZE) as u8).collect()
}

fn exactly(bytes: &[u8]) -> Expected {
    Expected { size: Some(bytes.len() as u64), sha256: Some(Sha256::of(bytes)) }
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f).await.unwrap_or_else(|_| panic!("{what}: no answer within {BOUND:?}"))
}

/// An async source that hands out at most `step` bytes per read, and answers every other poll
/// with `Pending` (waking itself at once), as a socket might.
struct Trickle {
    data: Bytes,
    step: usize,
    ready: bool,
}

impl Trickle {
    fn new(data: &[u8], step: usize) -> Self {
        Self { data: Bytes::copy_from_slice(data), step, ready: false }
    }
}

impl tokio::io::AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let piece = self.data.split_to(n);
        buf.put_slice(&piece);
        Poll::Ready(Ok(()))
    }
}

/// One answer of a [`Scripted`] source.
enum Step {
    /// Up to this many bytes (the rest is kept for the next read).
    Bytes(Vec<u8>),
    /// This error.
    Fail(io::ErrorKind),
}

/// A blocking source that answers each read from a script, then reports the end of input.
/// Records how many bytes each read asked for.
struct Scripted {
    script: VecDeque<Step>,
    asked: Vec<usize>,
}

impl Scripted {
    fn new(script: impl IntoIterator<Item = Step>) -> Self {
        Self { script: script.into_iter().collect(), asked: Vec::new() }
    }
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.asked.push(buf.len());
        assert!(self.asked.len() < 10_000, "the source was read 10,000 times: a reader loops");
        if buf.is_empty() {
            return Ok(0);
        }
        match self.script.pop_front() {
            None => Ok(0),
            Some(Step::Fail(kind)) => Err(kind.into()),
            Some(Step::Bytes(mut bytes)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                if n < bytes.len() {
                    self.script.push_front(Step::Bytes(bytes.split_off(n)));
                }
                Ok(n)
            }
        }
    }
}

// ---- read_chunk (async sources: stdin, pipes, spool files) ----

/// A source that returns a few KiB per read still yields whole chunks, and a last short one;
/// then an empty one for the end.
#[tokio::test]
async fn read_chunk_fills_whole_chunks_from_a_source_that_returns_short_reads() {
    let bytes = data(2 * CHUNK_SIZE + 12_345);
    let mut source = Trickle::new(&bytes, 3_000);
    let mut chunks = Vec::new();
    loop {
        let chunk = bounded("read_chunk", read_chunk(&mut source)).await.expect("in-memory read");
        if chunk.is_empty() {
            break;
        }
        assert!(chunks.len() < 3, "more chunks than the data holds: {chunks:?}");
        chunks.push(chunk);
    }
    let lens: Vec<_> = chunks.iter().map(Bytes::len).collect();
    assert_eq!(lens, [CHUNK_SIZE, CHUNK_SIZE, 12_345], "chunk sizes");
    assert_eq!(chunks.concat(), bytes, "the bytes, in order");
}

/// `promote_reader` over the same kind of source: the backend is handed whole chunks, never an
/// empty one, and the object is the source's bytes.
#[tokio::test]
async fn promote_reader_of_a_short_reading_source_writes_whole_chunks_and_ends_at_its_end() {
    let (store, seen) = store();
    let bytes = data(2 * CHUNK_SIZE + 777);
    let k = key("reader/short-reads");
    let source = Trickle::new(&bytes, 5_000);
    let outcome = bounded("promote_reader", store.promote_reader(&k, source, &exactly(&bytes), Mode::Create))
        .await
        .expect("promoted");
    assert!(matches!(outcome, Outcome::Promoted(_)), "{outcome:?}");
    assert_eq!(outcome.receipt().size, bytes.len() as u64);
    assert_eq!(seen.writes(), [CHUNK_SIZE, CHUNK_SIZE, 777], "chunks handed to the backend");
    assert_eq!(seen.object(&k).as_deref(), Some(&bytes[..]), "the object");
}

// ---- read_chunk_blocking (local files) ----

/// A read that returns fewer bytes than asked, or `Interrupted` (EINTR), is not the end of the
/// file: the chunk is filled to the full size by reading on, each read asking for what is left
/// of the chunk (never for nothing).
#[test]
fn a_chunk_is_filled_across_short_and_interrupted_reads() {
    let bytes = data(CHUNK_SIZE + 400 * 1024);
    let (a, rest) = bytes.split_at(300 * 1024);
    let (b, c) = rest.split_at(500 * 1024);
    let mut source = Scripted::new([
        Step::Bytes(a.to_vec()),
        Step::Fail(io::ErrorKind::Interrupted),
        Step::Bytes(b.to_vec()),
        Step::Fail(io::ErrorKind::Interrupted),
        Step::Bytes(c.to_vec()),
    ]);
    let first = read_chunk_blocking(&mut source, bytes.len() as u64).expect("interrupted reads are retried");
    assert_eq!(first.len(), CHUNK_SIZE, "the first chunk is whole");
    assert_eq!(first[..], bytes[..CHUNK_SIZE]);
    assert_eq!(
        source.asked,
        [
            CHUNK_SIZE,
            CHUNK_SIZE - a.len(),
            CHUNK_SIZE - a.len(),
            CHUNK_SIZE - a.len() - b.len(),
            CHUNK_SIZE - a.len() - b.len()
        ],
        "each read asks for the rest of the chunk"
    );
    let left = (bytes.len() - CHUNK_SIZE) as u64;
    let second = read_chunk_blocking(&mut source, left).expect("the rest");
    assert_eq!(second[..], bytes[CHUNK_SIZE..], "the short last chunk");
    assert!(read_chunk_blocking(&mut source, 0).expect("the end").is_empty(), "then the end");
    assert!(!source.asked.contains(&0), "a read asked for no bytes: {:?}", source.asked);
}

/// Any other error is returned at once, whether the file is smaller or larger than a chunk, and
/// the failing read is not repeated.
#[test]
fn a_read_error_other_than_interrupted_is_returned_not_retried() {
    for left in [10, 2 * CHUNK_SIZE as u64] {
        let mut source =
            Scripted::new([Step::Bytes(vec![1; 10]), Step::Fail(io::ErrorKind::Other), Step::Bytes(vec![2; 10])]);
        let err = read_chunk_blocking(&mut source, left).expect_err("a failed read fails the chunk");
        assert_eq!(err.kind(), io::ErrorKind::Other, "left {left}: {err}");
        assert!(
            matches!(source.script.front(), Some(Step::Bytes(b)) if b == &[2; 10]),
            "left {left}: read on past the error"
        );
    }
}

/// A file that fits in less than a chunk is read into a buffer of its own size (a many-file put
/// of small files does not allocate and zero a chunk for each); a file with a chunk or more left
/// into a chunk buffer, with one read for the whole chunk when the file gives it.
#[test]
fn a_small_file_takes_a_buffer_of_its_size_and_a_large_one_whole_chunk_reads() {
    let small = data(10);
    let mut source = Scripted::new([Step::Bytes(small.clone())]);
    let chunk = read_chunk_blocking(&mut source, small.len() as u64).expect("read");
    assert_eq!(chunk[..], small[..]);
    let capacity = chunk.try_into_mut().expect("the only handle on the chunk").capacity();
    assert!(capacity < 1024, "a 10-byte file was read into a buffer of {capacity} bytes");

    let large = data(CHUNK_SIZE);
    let mut source = Scripted::new([Step::Bytes(large.clone())]);
    let chunk = read_chunk_blocking(&mut source, CHUNK_SIZE as u64).expect("read");
    assert_eq!(chunk[..], large[..]);
    assert_eq!(source.asked.first(), Some(&CHUNK_SIZE), "the first read asks for the whole chunk: {:?}", source.asked);
}

// ---- FileSource and promote_file ----

fn temp_file(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// A file whose length is not a multiple of the chunk is read whole: full chunks, then the rest,
/// then the end; the digest covers every byte.
#[test]
fn a_file_whose_length_is_not_a_multiple_of_the_chunk_is_read_whole() {
    let bytes = data(2 * CHUNK_SIZE + 777);
    let (_dir, path) = temp_file(&bytes);
    let k = key("file/odd-length");
    let expected = exactly(&bytes);
    let mut source = FileSource::new(&k, std::fs::File::open(&path).unwrap(), bytes.len() as u64, &expected);
    let mut chunks = Vec::new();
    while let Some(chunk) = source.next().expect("read") {
        assert!(chunks.len() < 3, "more chunks than the file holds");
        chunks.push(chunk);
    }
    let lens: Vec<_> = chunks.iter().map(Bytes::len).collect();
    assert_eq!(lens, [CHUNK_SIZE, CHUNK_SIZE, 777]);
    assert_eq!(chunks.concat(), bytes);
    let mut whole = crate::verify::Digester::new();
    whole.update(&bytes);
    assert_eq!(source.digest(), whole.finish());
}

/// A short chunk is the end of the file: nothing is read after it, even if the file grows (a
/// terminal, after Ctrl-D, would wait for more input).
#[test]
fn a_short_chunk_ends_the_file_and_nothing_after_it_is_read() {
    let (_dir, path) = temp_file(b"0123456789");
    let k = key("file/grows");
    let expected = Expected { size: None, sha256: None };
    let mut source = FileSource::new(&k, std::fs::File::open(&path).unwrap(), 10, &expected);
    assert_eq!(source.next().expect("read").as_deref(), Some(&b"0123456789"[..]));
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"later").unwrap();
    assert_eq!(source.next().expect("read"), None, "read past the end it had seen");
    assert_eq!(source.digest().size, 10);
}

/// A file longer than expected fails at the first chunk that passes the expected size, without
/// reading the rest.
#[test]
fn a_file_longer_than_expected_fails_at_the_first_chunk_past_the_size() {
    let bytes = data(5 * CHUNK_SIZE);
    let (_dir, path) = temp_file(&bytes);
    let k = key("file/too-long");
    let expected = Expected { size: Some(CHUNK_SIZE as u64 + 1), sha256: None };
    let mut source = FileSource::new(&k, std::fs::File::open(&path).unwrap(), bytes.len() as u64, &expected);
    assert_eq!(source.next().expect("the first chunk is within the size").map(|c| c.len()), Some(CHUNK_SIZE));
    match source.next() {
        Err(Error::SizeMismatch { expected, actual, .. }) => {
            assert_eq!((expected, actual), (CHUNK_SIZE as u64 + 1, 2 * CHUNK_SIZE as u64));
        }
        other => panic!("expected a size mismatch at the second chunk, got {other:?}"),
    }
}

/// `promote_file` of the same odd-length file: the backend is handed whole chunks and the rest,
/// never an empty chunk, and the object is the file.
#[tokio::test]
async fn promote_file_of_an_odd_length_file_writes_whole_chunks_then_the_rest() {
    let (store, seen) = store();
    let bytes = data(2 * CHUNK_SIZE + 777);
    let (_dir, path) = temp_file(&bytes);
    let k = key("file/promoted");
    let file = std::fs::File::open(&path).unwrap();
    let outcome =
        bounded("promote_file", store.promote_file(&k, file, &exactly(&bytes), Mode::Create)).await.expect("promoted");
    assert!(matches!(outcome, Outcome::Promoted(_)), "{outcome:?}");
    assert_eq!(seen.writes(), [CHUNK_SIZE, CHUNK_SIZE, 777], "chunks handed to the backend");
    assert_eq!(seen.object(&k).as_deref(), Some(&bytes[..]), "the object");
}

// ---- promote_stream ----

/// A stream that would yield far more than expected is stopped at the chunk that passes the
/// size: that chunk is not staged, nothing after it is pulled, the staged data is aborted, and
/// the error names the size reached.
#[tokio::test]
async fn a_stream_past_the_expected_size_is_stopped_at_the_chunk_that_passes_it() {
    let (store, seen) = store();
    let k = key("stream/too-long");
    let pulled = Arc::new(AtomicUsize::new(0));
    let chunks = futures_util::stream::iter(0..1000).map({
        let pulled = Arc::clone(&pulled);
        move |_| {
            pulled.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::from(vec![7u8; 1000]))
        }
    });
    let expected = Expected { size: Some(2_500), sha256: None };
    let result = bounded("promote_stream", store.promote_stream(&k, chunks, &expected, Mode::Create)).await;
    match result {
        Err(Error::SizeMismatch { expected, actual, .. }) => assert_eq!((expected, actual), (2_500, 3_000)),
        other => panic!("expected a size mismatch, got {other:?}"),
    }
    assert_eq!(pulled.load(Ordering::SeqCst), 3, "chunks pulled from the stream");
    assert_eq!(seen.writes(), [1000, 1000], "only the chunks within the size were staged");
    assert_eq!(seen.aborted.load(Ordering::SeqCst), 1, "the staged data was aborted");
    assert_eq!(seen.object(&k), None, "nothing was published");
}

// ---- what a refused promotion logs ----

/// The events logged on this thread: each one's message and its other fields, as text.
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl tracing::field::Visit for Line<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Logged {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = event.metadata().level().to_string();
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A promotion refused at its publish (here: the bytes are not the expected ones) says so in
/// the log, at `info` (what `-v` shows), with the key, the size, the digest the bytes had and
/// why; the staged data is aborted.
#[test]
fn a_refused_promotion_logs_that_it_was_aborted_and_why() {
    let logged = Logged::default();
    let (store, seen) = store();
    let k = key("refused");
    let bytes = data(1000);
    let expected = Expected { size: Some(1000), sha256: Some(Sha256::of(b"other bytes")) };
    let result = tracing::subscriber::with_default(logged.clone(), || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(store.promote_reader(&k, &bytes[..], &expected, Mode::Create))
    });
    assert!(matches!(result, Err(Error::DigestMismatch { .. })), "{result:?}");
    assert_eq!(seen.aborted.load(Ordering::SeqCst), 1, "the staged data was aborted");
    let lines = logged.0.lock().unwrap().clone();
    let aborted: Vec<_> = lines.iter().filter(|l| l.contains("message=aborted")).collect();
    assert_eq!(aborted.len(), 1, "{lines:#?}");
    let line = aborted[0];
    assert!(line.starts_with("INFO"), "{line}");
    for field in ["key=refused", "bytes=1000", &format!("sha256={}", Sha256::of(&bytes)), "error=", "mismatch"] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

/// A resumable write is cut at the backend's part ends; its checkpoint carries the hash state
/// at the offset the backend names; a write gone on from that point holds those bytes and
/// finishes with the digest of every byte; an offset that is not a part end written is refused;
/// and a write that is not resumable has no checkpoints.
#[tokio::test]
async fn a_resumable_write_is_cut_at_part_ends_and_checkpoints_the_hash_state_there() {
    let seen = Arc::new(Seen::default());
    let store = Store::new(Arc::new(Memory(Arc::clone(&seen))));
    let key = Key::new("resumed").unwrap();
    let data: Vec<u8> = (0..95u8).collect();
    let mut first = store.stage_resumable(&key, &Expected::default(), None).await.unwrap().unwrap();
    first.write(Bytes::copy_from_slice(&data[..25])).await.unwrap();
    first.write(Bytes::copy_from_slice(&data[25..47])).await.unwrap();
    assert_eq!(seen.writes(), [10, 10, 5, 5, 10, 7], "cut at every tenth byte");
    let point = first.checkpoint().await.unwrap();
    assert_eq!(point.offset, 40, "the last part end");
    let prefix = Digester::resume(&point.hash_state, 40).unwrap().finish();
    assert_eq!(prefix.sha256, Sha256::of(&data[..40]), "the hash state after exactly those bytes");
    drop(first);

    let mut second = store.stage_resumable(&key, &Expected::default(), Some(&point)).await.unwrap().unwrap();
    assert_eq!(second.bytes_written(), 40);
    assert_eq!(second.checkpoint().await.unwrap(), point, "gone on from: the point's bytes and no others");
    second.write(Bytes::copy_from_slice(&data[40..])).await.unwrap();
    assert_eq!(second.digest(), Digest { size: 95, sha256: Sha256::of(&data) });
    *seen.misnamed.lock().unwrap() = Some(45);
    assert!(second.checkpoint().await.is_err(), "45 is no part end");
    let expected = Expected { size: Some(95), sha256: Some(Sha256::of(&data)) };
    second.promote(&expected, Mode::Create).await.unwrap();
    assert_eq!(seen.object(&key).unwrap(), data);

    let mut plain = store.stage(&Key::new("plain").unwrap(), &Expected::default()).await.unwrap();
    assert!(matches!(plain.checkpoint().await, Err(Error::Unsupported { .. })), "not resumable");
}
