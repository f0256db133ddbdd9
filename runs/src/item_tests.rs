//! One item's processing, checked the way a run drives it: a context and a ledger with the job
//! planned, then [`process`], against the test HTTP server on 127.0.0.1 or local files. Each test
//! checks what a user sees: the outcome and decision, the failure's reason and kind, the bytes
//! fetched, the requests sent, and what the store, the ledger and the run directory keep.
//!
//! The store is the local backend behind [`Watched`], which records each call (and the thread it
//! came on) and can fail an adoption, so a test can tell which path an item took. Every test
//! runs under [`BOUND`]: a change that makes an item wait forever fails it instead of hanging.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicU32;

use async_trait::async_trait;
use promote_core::{
    Backend, ByteStream, Capabilities, Entry, Key, Leftover, Meta, StagedCopy, StagedWrite, kit::GroupCommit,
};
use promote_local::{LocalBackend, LocalConfig};
use promote_tests::data;
use promote_tests::http_server::HttpServer;

use super::*;
use crate::options::Options;
use crate::shards;

/// The most any test here may take.
const BOUND: Duration = Duration::from_secs(20);
/// Items at least this large download into a partial in these tests.
const THRESHOLD: u64 = 64 << 10;
/// A large item's size.
const LARGE: usize = 256 << 10;

/// The local backend, watched: every call by name and the thread it came on.
#[derive(Debug)]
struct Watched {
    inner: LocalBackend,
    calls: StdMutex<Vec<(&'static str, String)>>,
    /// Adoptions still to fail (with a local I/O error that is not retryable).
    fail_adopt: AtomicU32,
}

impl Watched {
    fn saw(&self, call: &'static str) {
        let thread = std::thread::current().name().unwrap_or_default().to_owned();
        self.calls.lock().unwrap().push((call, thread));
    }

    fn calls(&self) -> Vec<(&'static str, String)> {
        self.calls.lock().unwrap().clone()
    }

    fn called(&self, call: &str) -> usize {
        self.calls().iter().filter(|(name, _)| *name == call).count()
    }
}

#[async_trait]
impl Backend for Watched {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stage_copy(&self, key: &Key, source: &std::fs::File, expected: &Expected) -> Result<StagedCopy, Error> {
        self.saw("stage_copy");
        self.inner.stage_copy(key, source, expected).await
    }

    async fn stage(&self, key: &Key, expected: &Expected) -> Result<Box<dyn StagedWrite>, Error> {
        self.saw("stage");
        self.inner.stage(key, expected).await
    }

    async fn adopt(
        &self,
        key: &Key,
        path: &Path,
        file: std::fs::File,
        size: u64,
    ) -> Result<Option<Box<dyn StagedWrite>>, Error> {
        self.saw("adopt");
        let fail = self.fail_adopt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if fail {
            return Err(Error::io(format!("adopting {key:?}"), std::io::Error::other("the disk said no")));
        }
        self.inner.adopt(key, path, file, size).await
    }

    async fn head(&self, key: &Key) -> Result<Meta, Error> {
        self.saw("head");
        self.inner.head(key).await
    }

    async fn read(&self, key: &Key) -> Result<ByteStream, Error> {
        self.saw("read");
        self.inner.read(key).await
    }

    async fn forget_digest(&self, key: &Key) -> Result<(), Error> {
        self.inner.forget_digest(key).await
    }

    async fn delete(&self, key: &Key) -> Result<(), Error> {
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        self.inner.list(prefix).await
    }

    async fn sweep_staging(&self, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
        self.inner.sweep_staging(older_than, dry_run).await
    }

    fn group_commit(&self) -> Option<Arc<dyn GroupCommit>> {
        self.inner.group_commit()
    }
}

/// A store, a run directory and a server, for one test.
struct Rig {
    dir: tempfile::TempDir,
    server: HttpServer,
    backend: Arc<Watched>,
    events: Arc<StdMutex<Vec<Event>>>,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inner = LocalBackend::open(LocalConfig::at(dir.path().join("store"))).unwrap();
        let backend = Arc::new(Watched { inner, calls: StdMutex::default(), fail_adopt: AtomicU32::new(0) });
        Self { dir, server: HttpServer::start().unwrap(), backend, events: Arc::default() }
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// A context as a run makes it, with no retries, partials from [`THRESHOLD`] and a 5 s
    /// lease unless `tweak` says otherwise. Each call is a run of its own (its own ledger
    /// connection) on the same run directory and store.
    fn ctx(&self, tweak: impl FnOnce(&mut Options)) -> Ctx {
        let mut options = Options::new(self.dir.path().join("m.jsonl"), self.run_dir());
        (options.retries, options.resume_threshold, options.lease) = (0, THRESHOLD, Duration::from_secs(5));
        tweak(&mut options);
        let run = self.run_dir();
        for sub in ["partials", "spool"] {
            std::fs::create_dir_all(run.join(sub)).unwrap();
        }
        let seen = Arc::clone(&self.events);
        let events: Arc<dyn Events> = Arc::new(move |event: Event| seen.lock().unwrap().push(event));
        Ctx {
            store: Store::new(Arc::clone(&self.backend) as Arc<dyn Backend>),
            db: Db::new(Ledger::open(&run).unwrap()),
            http: Http::new(&options, Arc::clone(&events)),
            retries: options.retries,
            resume_threshold: options.resume_threshold,
            segments: options.segments,
            streaming: options.streaming,
            partials: run.join("partials"),
            spool: run.join("spool"),
            events,
            owner: shards::owner(),
            patience: options.lease,
            workers: tokio::sync::OnceCell::new(),
            worker_threads: 2,
        }
    }

    fn http_item(&self, path: &str, key: &str, expected: Expected) -> Item {
        let source_text = self.server.url(path);
        Item { line: 1, source_text, source: Source::Http, key: Key::new(key).unwrap(), expected }
    }

    fn local_item(&self, name: &str, key: &str) -> Item {
        let path = self.dir.path().join(name);
        let source_text = path.display().to_string();
        Item { line: 1, source_text, source: Source::Local(path), key: Key::new(key).unwrap(), expected: no_promise() }
    }

    /// The bytes at `key` in the store, if any.
    fn stored(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join("store").join(key)).ok()
    }

    /// Puts `bytes` at `key` behind the store's back: no digest is stored with them.
    fn put_plain(&self, key: &str, bytes: &[u8]) {
        let path = self.dir.path().join("store").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        std::fs::write(path, bytes).unwrap();
    }

    /// The partial downloads in the run directory.
    fn partials(&self) -> Vec<PathBuf> {
        let dir = self.run_dir().join("partials");
        std::fs::read_dir(dir).map_or_else(|_| Vec::new(), |d| d.map(|e| e.unwrap().path()).collect())
    }

    /// Body bytes the events reported.
    fn bytes_events(&self) -> u64 {
        self.events.lock().unwrap().iter().map(|e| if let Event::Bytes { n, .. } = e { *n } else { 0 }).sum()
    }

    /// The attempt numbers of the `Retrying` events.
    fn retried(&self) -> Vec<u32> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter_map(|e| if let Event::Retrying { attempt, .. } = e { Some(*attempt) } else { None })
            .collect()
    }
}

fn no_promise() -> Expected {
    Expected::default()
}

fn promise(bytes: &[u8]) -> Expected {
    let mut expected = Expected::default();
    (expected.sha256, expected.size) = (Some(Sha256::of(bytes)), Some(bytes.len() as u64));
    expected
}

/// Plans `item`'s job in `ctx`'s ledger, as a run does before its first attempt.
async fn plan(ctx: &Ctx, item: &Item) -> String {
    let (job, key) = (job_key(item), item.key.to_string());
    let planned = job.clone();
    ctx.db.call(move |l| l.plan([(planned.as_str(), key.as_str())], now_ms())).await.unwrap();
    job
}

/// Begins an attempt at `job` for worker `owner` (taken as alive), as that worker would.
async fn begin(ctx: &Ctx, job: &str, owner: &str) -> Begin {
    let (job, owner) = (job.to_owned(), owner.to_owned());
    ctx.db.call(move |l| l.begin_attempt(&job, &owner, now_ms(), &|_| true)).await.unwrap()
}

fn job_key(item: &Item) -> String {
    crate::job::key(item)
}

/// Plans and processes `item` to the end, within [`BOUND`].
async fn run(ctx: &Ctx, item: &Item) -> Done {
    run_lost(ctx, item, &AtomicBool::new(false)).await
}

async fn run_lost(ctx: &Ctx, item: &Item, lost: &AtomicBool) -> Done {
    let job = plan(ctx, item).await;
    tokio::time::timeout(BOUND, process(ctx, item, &job, None, None, lost)).await.expect("the item ended in time")
}

/// The job's row, once the ledger has recorded everything queued before.
async fn row(ctx: &Ctx, item: &Item) -> JobRow {
    let job = job_key(item);
    ctx.db.call(move |l| l.job(&job)).await.unwrap().expect("the job is planned")
}

fn reason(done: &Done) -> Option<&str> {
    done.failure.as_ref().map(|f| f.reason.as_str())
}

fn message(done: &Done) -> String {
    done.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default()
}

// ---- words, failures, and results read from elsewhere -----------------------------------------

#[test]
fn outcomes_have_the_words_of_the_reports() {
    let all = [
        (Outcome::Promoted, "promoted"),
        (Outcome::AlreadyPresent, "already-present"),
        (Outcome::Failed, "failed"),
        (Outcome::Skipped, "skipped"),
        (Outcome::Elsewhere, "done-elsewhere"),
        (Outcome::NotDone, "not-done"),
    ];
    for (outcome, word) in all {
        assert_eq!(outcome.as_str(), word);
        assert_eq!(serde_json::to_string(&outcome).unwrap(), format!("\"{word}\""));
    }
}

#[test]
fn failures_say_their_reason_kind_and_whether_a_retry_may_help() {
    let status = |status: u16, secs: Option<u64>| {
        Failure::fetch(&FetchError::Status { status, retry_after: secs.map(Duration::from_secs) })
    };
    let (gone, busy) = (status(404, None), status(503, Some(3)));
    assert_eq!((gone.reason.as_str(), gone.kind, gone.is_retryable()), ("http-404", FailureKind::Fetch, false));
    assert_eq!(
        (busy.reason.as_str(), busy.is_retryable(), busy.retry_after),
        ("http-503", true, Some(Duration::from_secs(3)))
    );
    assert!(Failure::fetch(&FetchError::ShortBody { got: 1, want: 2 }).is_retryable());

    let key = || "k".to_owned();
    let sha = Sha256::of(b"x");
    let core = |err: Error| {
        let failure = Failure::core(&err);
        (failure.reason.clone(), failure.kind, failure.is_retryable(), failure.message == err.to_string())
    };
    let said = |reason: &str, kind, retryable| (reason.to_owned(), kind, retryable, true);
    assert_eq!(
        core(Error::Conflict { key: key(), detail: "d".into() }),
        said("conflict", FailureKind::Conflict, false)
    );
    assert_eq!(core(Error::AlreadyExists { key: key() }), said("conflict", FailureKind::Conflict, false));
    assert_eq!(
        core(Error::DigestMismatch { key: key(), expected: sha, actual: Sha256::of(b"y") }),
        said("sha256-mismatch", FailureKind::Verification, false)
    );
    assert_eq!(
        core(Error::SizeMismatch { key: key(), expected: 1, actual: 2 }),
        said("size-mismatch", FailureKind::Verification, false)
    );
    let timed_out = Error::io("writing", std::io::Error::from(std::io::ErrorKind::TimedOut));
    assert_eq!(core(timed_out), said("backend", FailureKind::Io, true));
    assert_eq!(core(Error::NotFound { key: key() }), said("backend", FailureKind::Io, false));

    let lost = Failure::lost(&Key::new("a/b").unwrap());
    assert_eq!((lost.reason.as_str(), lost.kind, lost.is_retryable()), (LEASE_LOST, FailureKind::Io, false));
    assert!(lost.message.contains("\"a/b\""), "{}", lost.message);
    let local = Failure::local("reading x".into(), &std::io::Error::other("no"));
    assert_eq!((local.reason.as_str(), local.message.as_str()), ("local-io", "reading x: no"));
    let locked = partial_error("opening p".into(), &std::io::Error::from(std::io::ErrorKind::WouldBlock));
    assert_eq!((locked.reason.as_str(), locked.is_retryable()), (BUSY, true));
    let other = partial_error("opening p".into(), &std::io::Error::other("no"));
    assert_eq!((other.reason.as_str(), other.is_retryable()), ("local-io", false));
}

#[test]
fn a_stopped_item_is_one_whose_lease_was_lost() {
    let mut done = Done::empty();
    assert!(!done.stopped(), "no failure");
    done.failure = Some(Failure::new(BUSY, FailureKind::Io, "x"));
    assert!(!done.stopped(), "another failure");
    done.failure = Some(Failure::lost(&Key::new("k").unwrap()));
    assert!(done.stopped());
    assert_eq!(Done::skipped().outcome, Outcome::Skipped);
    assert_eq!(Done::empty().outcome, Outcome::Failed);
}

/// Another worker's items are reported as the ledger or its done marker says, never looked at.
#[test]
fn results_from_another_worker_read_as_recorded() {
    let sha = Sha256::of(b"done");
    let row = |state, reason: Option<&str>| JobRow {
        id: 1,
        state,
        attempts: 1,
        reason: reason.map(str::to_owned),
        sha256: Some(sha),
        size: Some(4),
        checkpoint: None,
        owner: None,
        updated_ms: 0,
    };
    let promoted = Done::from_ledger(Some(&row(State::Promoted, None)));
    let promoted = (promoted.outcome, promoted.decision, promoted.sha256, promoted.size, promoted.failure.is_none());
    assert_eq!(promoted, (Outcome::AlreadyPresent, Some(Decision::AlreadyComplete), Some(sha), Some(4), true));
    let elsewhere = Done::from_ledger(Some(&row(State::Elsewhere, None)));
    assert_eq!((elsewhere.outcome, elsewhere.sha256, elsewhere.size), (Outcome::Elsewhere, Some(sha), None));
    assert!(elsewhere.failure.is_none());
    let failed = Done::from_ledger(Some(&row(State::Failed, Some("http-404"))));
    assert_eq!((failed.outcome, reason(&failed)), (Outcome::Failed, Some("http-404")));
    assert_eq!(reason(&Done::from_ledger(Some(&row(State::Failed, None)))), Some("failed"));
    for unfinished in [Some(&row(State::Fetching, None)), Some(&row(State::Planned, None)), None] {
        let done = Done::from_ledger(unfinished);
        assert_eq!((done.outcome, reason(&done)), (Outcome::Failed, Some("not-done")), "{unfinished:?}");
    }

    let record = ShardRecord {
        owner: "worker-b".into(),
        promoted: [("j1".to_owned(), sha.to_string())].into(),
        failed: [("j2".to_owned(), "http-500".to_owned())].into(),
    };
    let j1 = Done::elsewhere(&record, "j1");
    assert_eq!((j1.outcome, j1.sha256, j1.failure.is_none()), (Outcome::Elsewhere, Some(sha), true));
    let j2 = Done::elsewhere(&record, "j2");
    assert_eq!((j2.outcome, reason(&j2)), (Outcome::Failed, Some("http-500")));
    assert!(message(&j2).contains("worker-b"), "{}", message(&j2));
    let j3 = Done::elsewhere(&record, "j3");
    assert_eq!((j3.outcome, reason(&j3)), (Outcome::Failed, Some("not-done")));
    assert!(message(&j3).contains("worker-b"), "{}", message(&j3));
}

#[tokio::test]
async fn a_context_shows_its_owner_and_nothing_secret() {
    let rig = Rig::new();
    let ctx = rig.ctx(|_| {});
    let shown = format!("{ctx:?}");
    assert!(shown.starts_with("Ctx {") && shown.contains("owner"), "{shown}");
}

// ---- HTTP: streamed, already complete, conflicts -------------------------------------------------

/// A small item streams into staging, is recorded promoted with its digest, and a second look
/// finds it complete from the ledger and a `head`, without a request.
#[tokio::test]
async fn a_small_item_is_streamed_once_and_then_found_complete() {
    let rig = Rig::new();
    let body = data::bytes(1, 1000);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k/a", no_promise());
    let done = run(&ctx, &item).await;
    let sha = Sha256::of(&body);
    assert_eq!(
        (done.outcome, done.decision, done.attempts, done.fetched),
        (Outcome::Promoted, Some(Decision::Fresh), 1, 1000)
    );
    assert_eq!((done.sha256, done.size, done.failure.is_none()), (Some(sha), Some(1000), true));
    assert_eq!(rig.stored("k/a"), Some(body));
    assert_eq!(rig.bytes_events(), 1000);
    let recorded = row(&ctx, &item).await;
    assert_eq!((recorded.state, recorded.sha256, recorded.size), (State::Promoted, Some(sha), Some(1000)));
    assert!(rig.partials().is_empty());

    let again = run(&ctx, &item).await;
    let seen = (again.outcome, again.decision, again.attempts, again.fetched, again.sha256);
    assert_eq!(seen, (Outcome::AlreadyPresent, Some(Decision::AlreadyComplete), 0, 0, Some(sha)));
    assert_eq!(rig.server.gets("/a"), 1, "found complete without a request");
}

/// A job recorded promoted whose object was deleted since is fetched again.
#[tokio::test]
async fn a_promoted_object_deleted_since_is_fetched_again() {
    let rig = Rig::new();
    rig.server.add("/a", data::bytes(2, 500));
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k/a", no_promise());
    assert_eq!(run(&ctx, &item).await.outcome, Outcome::Promoted);
    std::fs::remove_file(rig.dir.path().join("store/k/a")).unwrap();
    let again = run(&ctx, &item).await;
    assert_eq!((again.outcome, again.decision, reason(&again)), (Outcome::Promoted, Some(Decision::Fresh), None));
    assert_eq!(rig.server.gets("/a"), 2);
    assert_eq!(row(&ctx, &item).await.state, State::Promoted);
}

/// The manifest's digest at the key: complete without touching the source, whether the digest
/// is stored with the object or must be hashed from the storage. So is a digest another worker
/// recorded (a hint).
#[tokio::test]
async fn the_promised_digest_at_the_key_is_complete_without_a_request() {
    let rig = Rig::new();
    let body = data::bytes(3, 4000);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});

    rig.put_plain("plain", &body);
    let plain = run(&ctx, &rig.http_item("/a", "plain", promise(&body))).await;
    assert_eq!((plain.outcome, plain.decision), (Outcome::AlreadyPresent, Some(Decision::AlreadyComplete)));
    assert_eq!(rig.backend.called("read"), 1, "no digest stored: hashed from the storage");

    let key = Key::new("stored").unwrap();
    ctx.store.promote_reader(&key, body.as_slice(), &no_promise(), Mode::Create).await.unwrap();
    let stored = run(&ctx, &rig.http_item("/a", "stored", promise(&body))).await;
    assert_eq!((stored.outcome, stored.decision), (Outcome::AlreadyPresent, Some(Decision::AlreadyComplete)));
    assert_eq!(rig.backend.called("read"), 1, "the stored digest is enough");

    let item = rig.http_item("/a", "plain", no_promise());
    let job = plan(&ctx, &item).await;
    let lost = AtomicBool::new(false);
    let hinted = process(&ctx, &item, &job, Some(Sha256::of(&body)), None, &lost).await;
    assert_eq!((hinted.outcome, hinted.decision), (Outcome::AlreadyPresent, Some(Decision::AlreadyComplete)));
    assert_eq!(rig.server.gets("/a"), 0);
}

/// Found present as the ledger records it (promoted, with that digest and size), an item has
/// nothing to record; found present as another worker recorded it, it is recorded promoted here.
/// Either way the row the attempts begun ahead read is enough: nothing is fetched.
#[tokio::test]
async fn an_item_found_as_recorded_records_nothing_and_one_recorded_elsewhere_is_recorded_promoted() {
    let rig = Rig::new();
    let body = data::bytes(3, 4000);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    let first = run(&ctx, &item).await;
    assert_eq!((first.outcome, first.recorded), (Outcome::Promoted, false));
    let recorded = row(&ctx, &item).await;
    let again = run(&ctx, &item).await;
    assert_eq!((again.outcome, again.recorded), (Outcome::AlreadyPresent, true));
    let after = row(&ctx, &item).await;
    assert_eq!((after.state, after.updated_ms), (State::Promoted, recorded.updated_ms));

    let other = rig.http_item("/a", "other", no_promise());
    ctx.store.promote_reader(&other.key, body.as_slice(), &no_promise(), Mode::Create).await.unwrap();
    let job = plan(&ctx, &other).await;
    let (sha, elsewhere) = (Sha256::of(&body), job.clone());
    ctx.db.call(move |l| l.elsewhere(&elsewhere, &crate::ledger::Elsewhere::Promoted(sha), 1)).await.unwrap();
    let begun = ctx.db.call(move |l| l.job(&job)).await.unwrap();
    let lost = AtomicBool::new(false);
    let found = process(&ctx, &other, &job_key(&other), None, Some((begun, None)), &lost).await;
    assert_eq!((found.outcome, found.recorded), (Outcome::AlreadyPresent, false));
    let recorded = row(&ctx, &other).await;
    assert_eq!((recorded.state, recorded.sha256, recorded.size), (State::Promoted, Some(sha), Some(4000)));
    assert_eq!(rig.server.gets("/a"), 1, "only the first item fetched");
}

/// Other bytes at the key than the manifest promises: a conflict, told without fetching when the
/// stored digest says so. An object of another size is not even read back: the fetch and the
/// create-only promotion decide.
#[tokio::test]
async fn other_bytes_at_the_key_are_a_conflict_and_nothing_is_replaced() {
    let rig = Rig::new();
    let body = data::bytes(4, 4000);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});
    let other = data::bytes(5, 4000);
    let key = Key::new("same-size").unwrap();
    ctx.store.promote_reader(&key, other.as_slice(), &no_promise(), Mode::Create).await.unwrap();
    let done = run(&ctx, &rig.http_item("/a", "same-size", promise(&body))).await;
    let failure = done.failure.as_ref().unwrap();
    assert_eq!(
        (done.outcome, failure.reason.as_str(), failure.kind),
        (Outcome::Failed, "conflict", FailureKind::Conflict)
    );
    assert!(failure.message.contains(&format!("holds sha256 {}", Sha256::of(&other))), "{}", failure.message);
    assert_eq!(rig.server.gets("/a"), 0, "told from the stored digest");
    assert_eq!(rig.stored("same-size"), Some(other));

    rig.put_plain("longer", &data::bytes(6, 5000));
    let done = run(&ctx, &rig.http_item("/a", "longer", promise(&body))).await;
    assert_eq!((done.outcome, reason(&done)), (Outcome::Failed, Some("conflict")));
    assert_eq!(rig.backend.called("read"), 0, "an object of another size is not read back");
    assert_eq!(rig.server.gets("/a"), 1);
    assert_eq!(rig.stored("longer"), Some(data::bytes(6, 5000)));
    assert_eq!(row(&ctx, &rig.http_item("/a", "longer", promise(&body))).await.state, State::Failed);
}

/// A digest this run recorded is no promise about the source: when the key holds other bytes
/// now, the source is fetched and the create-only promotion refuses.
#[tokio::test]
async fn a_recorded_digest_that_no_longer_matches_is_checked_against_the_source() {
    let rig = Rig::new();
    let body = data::bytes(7, 3000);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    assert_eq!(run(&ctx, &item).await.outcome, Outcome::Promoted);
    rig.put_plain("k", &data::bytes(8, 3000));
    let again = run(&ctx, &item).await;
    assert_eq!((again.outcome, reason(&again)), (Outcome::Failed, Some("conflict")));
    assert_eq!(rig.server.gets("/a"), 2, "fetched: the recorded digest binds nothing");
}

// ---- HTTP: retries, statuses, sizes ----------------------------------------------------------------

#[tokio::test]
async fn a_transient_status_is_retried_until_it_passes() {
    let rig = Rig::new();
    let body = data::bytes(9, 2000);
    rig.server.add("/a", body.clone());
    rig.server.fail_with("/a", 503, Some(0), 2);
    let ctx = rig.ctx(|o| o.retries = 3);
    let done = run(&ctx, &rig.http_item("/a", "k", no_promise())).await;
    assert_eq!((done.outcome, done.attempts, done.fetched), (Outcome::Promoted, 3, 2000));
    assert_eq!(rig.retried(), [1, 2]);
    assert_eq!(rig.stored("k"), Some(body));
}

#[tokio::test]
async fn retries_end_when_the_budget_is_spent() {
    let rig = Rig::new();
    rig.server.add("/a", data::bytes(10, 2000));
    rig.server.fail_with("/a", 503, Some(0), 10);
    let ctx = rig.ctx(|o| o.retries = 2);
    let item = rig.http_item("/a", "k", no_promise());
    let done = run(&ctx, &item).await;
    assert_eq!((done.outcome, reason(&done), done.attempts), (Outcome::Failed, Some("http-503"), 3));
    assert_eq!(rig.server.gets("/a"), 3);
    let recorded = row(&ctx, &item).await;
    assert_eq!((recorded.state, recorded.reason.as_deref()), (State::Failed, Some("http-503")));
    assert!(rig.stored("k").is_none());
}

/// A status no retry can change fails at once, and is recorded failed in the ledger.
#[tokio::test]
async fn a_permanent_status_is_not_retried() {
    let rig = Rig::new();
    rig.server.add("/a", data::bytes(11, 100));
    rig.server.fail_with("/a", 404, None, 5);
    rig.server.add("/b", data::bytes(12, 100));
    rig.server.fail_with("/b", 416, None, 5);
    let ctx = rig.ctx(|o| o.retries = 3);
    for (path, status) in [("/a", "http-404"), ("/b", "http-416")] {
        let item = rig.http_item(path, &format!("k{path}"), no_promise());
        let done = run(&ctx, &item).await;
        let failure = done.failure.as_ref().unwrap();
        assert_eq!(
            (done.outcome, failure.reason.as_str(), failure.kind, done.attempts),
            (Outcome::Failed, status, FailureKind::Fetch, 1)
        );
        assert_eq!(rig.server.gets(path), 1);
        assert_eq!(row(&ctx, &item).await.state, State::Failed);
    }
}

/// A length that is not the manifest's fails before the body is read.
#[tokio::test]
async fn a_length_that_is_not_the_promised_size_fails_before_the_body() {
    let rig = Rig::new();
    rig.server.add("/a", data::bytes(13, 1000));
    let ctx = rig.ctx(|_| {});
    let mut expected = no_promise();
    expected.size = Some(10);
    let done = run(&ctx, &rig.http_item("/a", "k", expected)).await;
    let failure = done.failure.as_ref().unwrap();
    assert_eq!((failure.reason.as_str(), failure.kind, done.fetched), ("size-mismatch", FailureKind::Verification, 0));
    assert!(failure.message.contains("is 1000 bytes, the manifest says 10"), "{}", failure.message);
}

#[tokio::test]
async fn a_digest_that_is_not_the_promised_one_is_not_published() {
    let rig = Rig::new();
    let body = data::bytes(14, 1000);
    rig.server.add("/small", body.clone());
    rig.server.add("/large", data::bytes(15, LARGE));
    let ctx = rig.ctx(|_| {});
    for path in ["/small", "/large"] {
        let mut expected = no_promise();
        expected.sha256 = Some(Sha256::of(b"something else"));
        let item = rig.http_item(path, &format!("k{path}"), expected);
        let done = run(&ctx, &item).await;
        let failure = done.failure.as_ref().unwrap();
        assert_eq!((failure.reason.as_str(), failure.kind), ("sha256-mismatch", FailureKind::Verification), "{path}");
        assert!(rig.stored(&format!("k{path}")).is_none());
        assert!(rig.partials().is_empty(), "{path}: the partial is removed");
        assert_eq!(row(&ctx, &item).await.checkpoint, None, "{path}: and forgotten");
    }
}

// ---- HTTP: partial downloads -------------------------------------------------------------------------

/// A broken connection: a small streamed item starts again, a large one (or any one without
/// streaming) resumes from its partial, and every byte is fetched once.
#[tokio::test]
async fn a_broken_download_resumes_only_from_a_partial() {
    let rig = Rig::new();
    let (small, large) = (data::bytes(16, 20_000), data::bytes(17, LARGE));
    for (path, body) in [("/small", &small), ("/large", &large), ("/kept", &small)] {
        rig.server.add(path, body.clone());
    }
    rig.server.drop_after("/small", 5000, 1);
    rig.server.drop_after("/large", 100_000, 1);
    rig.server.drop_after("/kept", 5000, 1);
    let ctx = rig.ctx(|o| o.retries = 2);
    let done = run(&ctx, &rig.http_item("/small", "small", no_promise())).await;
    assert_eq!((done.outcome, done.attempts, done.decision), (Outcome::Promoted, 2, Some(Decision::Fresh)));
    assert!(rig.server.ranges("/small").is_empty(), "streamed: started again");
    assert_eq!(rig.stored("small").as_ref(), Some(&small));

    let done = run(&ctx, &rig.http_item("/large", "large", no_promise())).await;
    assert_eq!((done.outcome, done.attempts, done.decision), (Outcome::Promoted, 2, Some(Decision::Resume)));
    assert_eq!(done.fetched, LARGE as u64, "every byte fetched once");
    let ranges = rig.server.ranges("/large");
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    let offset: u64 = ranges[0].strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).unwrap().parse().unwrap();
    assert!(offset > 0 && offset <= 100_000, "{ranges:?}");
    assert_eq!(rig.server.requests("/large")[1].if_range, rig.server.etag("/large"));
    assert_eq!(rig.stored("large").as_ref(), Some(&large));
    assert!(rig.partials().is_empty());

    let ctx = rig.ctx(|o| (o.retries, o.streaming) = (2, false));
    let done = run(&ctx, &rig.http_item("/kept", "kept", no_promise())).await;
    assert_eq!((done.outcome, done.decision, done.fetched), (Outcome::Promoted, Some(Decision::Resume), 20_000));
    assert_eq!(rig.server.ranges("/kept").len(), 1, "without streaming a small item resumes too");
    assert_eq!(rig.stored("kept").as_ref(), Some(&small));
}

/// The first run of `/a` (a large item) breaks after `at` bytes and keeps its partial; returns
/// the checkpointed offset.
async fn broken_first_run(rig: &Rig, body: &[u8], at: u64) -> u64 {
    broken_first_run_of(rig, body, at, no_promise()).await
}

async fn broken_first_run_of(rig: &Rig, body: &[u8], at: u64, expected: Expected) -> u64 {
    rig.server.add("/a", body.to_vec());
    rig.server.drop_after("/a", at, 1);
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", expected);
    let done = run(&ctx, &item).await;
    assert_eq!((done.outcome, reason(&done)), (Outcome::Failed, Some("connection")));
    let checkpoint = row(&ctx, &item).await.checkpoint.expect("the partial is checkpointed");
    assert!(checkpoint.offset > 0 && checkpoint.offset <= at, "{checkpoint:?}");
    assert_eq!(rig.partials().len(), 1);
    checkpoint.offset
}

#[tokio::test]
async fn the_next_run_resumes_a_kept_partial_from_its_checkpoint() {
    let rig = Rig::new();
    let body = data::bytes(18, LARGE);
    let offset = broken_first_run(&rig, &body, 100_000).await;
    let ctx = rig.ctx(|_| {});
    let done = run(&ctx, &rig.http_item("/a", "k", no_promise())).await;
    assert_eq!(
        (done.outcome, done.decision, done.fetched),
        (Outcome::Promoted, Some(Decision::Resume), LARGE as u64 - offset)
    );
    assert_eq!(rig.server.ranges("/a"), [format!("bytes={offset}-")]);
    assert_eq!(rig.stored("k"), Some(body));
    assert!(rig.partials().is_empty());
}

/// A resumed download that does not hash to the promised digest: refused, its partial removed
/// and its checkpoint forgotten (the next run starts over instead of resuming into the same
/// refusal).
#[tokio::test]
async fn a_resumed_download_with_another_digest_is_refused_and_forgotten() {
    let rig = Rig::new();
    let mut expected = no_promise();
    expected.sha256 = Some(Sha256::of(b"something else"));
    broken_first_run_of(&rig, &data::bytes(34, LARGE), 100_000, expected).await;
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", expected);
    let done = run(&ctx, &item).await;
    let seen = (done.outcome, done.decision, reason(&done));
    assert_eq!(seen, (Outcome::Failed, Some(Decision::Resume), Some("sha256-mismatch")));
    assert!(rig.partials().is_empty());
    let recorded = row(&ctx, &item).await;
    assert_eq!((recorded.state, recorded.checkpoint), (State::Failed, None));
    assert!(rig.stored("k").is_none());
}

/// A partial whose bytes no longer hash to its checkpoint is discarded, not trusted.
#[tokio::test]
async fn a_partial_that_fails_its_prefix_check_is_discarded() {
    let rig = Rig::new();
    let body = data::bytes(19, LARGE);
    broken_first_run(&rig, &body, 100_000).await;
    let partial = rig.partials().remove(0);
    let mut bytes = std::fs::read(&partial).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&partial, bytes).unwrap();
    let ctx = rig.ctx(|_| {});
    let done = run(&ctx, &rig.http_item("/a", "k", no_promise())).await;
    assert_eq!((done.outcome, done.decision, done.fetched), (Outcome::Promoted, Some(Decision::Discard), LARGE as u64));
    assert!(rig.server.ranges("/a").is_empty(), "fetched from the start");
    assert_eq!(rig.stored("k"), Some(body));
}

/// The object changed since: `If-Range` gets the whole new object, the kept bytes go.
#[tokio::test]
async fn a_changed_object_is_fetched_whole_and_the_kept_bytes_discarded() {
    let rig = Rig::new();
    broken_first_run(&rig, &data::bytes(20, LARGE), 100_000).await;
    let new = data::bytes(21, LARGE + 10);
    rig.server.change("/a", new.clone());
    let ctx = rig.ctx(|_| {});
    let done = run(&ctx, &rig.http_item("/a", "k", no_promise())).await;
    assert_eq!((done.outcome, done.decision), (Outcome::Promoted, Some(Decision::Discard)));
    assert_eq!(rig.server.ranges("/a").len(), 1, "asked for the rest, got everything");
    assert_eq!(rig.stored("k"), Some(new));
}

/// A server that answers the resume with bytes of another version of the object (its `If-Range`
/// ignored): told by the `ETag`, or by the length; the kept bytes are discarded and the next
/// attempt fetches the new object whole. Never a mix of two versions.
#[tokio::test]
async fn a_range_of_another_object_version_is_never_spliced_on() {
    for (same_length, keep_etag) in [(true, true), (false, false)] {
        let rig = Rig::new();
        broken_first_run(&rig, &data::bytes(22, LARGE), 100_000).await;
        let new = data::bytes(23, if same_length { LARGE } else { LARGE + 4096 });
        rig.server.change("/a", new.clone());
        rig.server.ignore_if_range("/a", true);
        rig.server.omit_etag("/a", !keep_etag);
        let ctx = rig.ctx(|o| o.retries = 1);
        let done = run(&ctx, &rig.http_item("/a", "k", no_promise())).await;
        let what = format!("same length {same_length}, etag {keep_etag}");
        assert_eq!(
            (done.outcome, done.decision, done.attempts),
            (Outcome::Promoted, Some(Decision::Discard), 2),
            "{what}"
        );
        let statuses: Vec<_> = rig.server.requests("/a").iter().map(|r| (r.status, r.range.is_some())).collect();
        assert_eq!(statuses, [(200, false), (206, true), (200, false)], "{what}");
        assert_eq!(rig.stored("k"), Some(new), "{what}");
    }
}

/// A `416` to a resume (the object shrank): the kept bytes go and the next attempt starts over.
#[tokio::test]
async fn a_416_to_a_resume_starts_over() {
    let rig = Rig::new();
    let body = data::bytes(24, LARGE);
    broken_first_run(&rig, &body, 100_000).await;
    rig.server.fail_with("/a", 416, None, 1);
    let ctx = rig.ctx(|o| o.retries = 1);
    let done = run(&ctx, &rig.http_item("/a", "k", no_promise())).await;
    assert_eq!((done.outcome, done.decision, done.attempts), (Outcome::Promoted, Some(Decision::Discard), 2));
    let ranges: Vec<_> = rig.server.requests("/a").iter().map(|r| r.range.is_some()).collect();
    assert_eq!(ranges, [false, true, false]);
    assert_eq!(rig.stored("k"), Some(body));
}

/// A partial another process has open is not touched: a `busy` failure, retried.
#[tokio::test]
async fn a_partial_locked_by_another_process_is_busy_and_retried() {
    let rig = Rig::new();
    broken_first_run(&rig, &data::bytes(25, LARGE), 100_000).await;
    let ctx = rig.ctx(|o| o.retries = 1);
    let item = rig.http_item("/a", "k", no_promise());
    let checkpoint = row(&ctx, &item).await.checkpoint.unwrap();
    let (_held, kept) = Partial::reopen(&rig.partials()[0], &checkpoint).unwrap();
    assert!(kept);
    let done = run(&ctx, &item).await;
    assert_eq!((done.outcome, reason(&done), done.attempts), (Outcome::Failed, Some(BUSY), 2));
    assert!(message(&done).contains("reading the partial download"), "{}", message(&done));
    assert_eq!(rig.server.gets("/a"), 1, "the locked partial's source is not fetched");
}

/// A promotion that fails on the way (a local I/O error) keeps the verified partial; the next run
/// promotes it without fetching anything.
#[tokio::test]
async fn a_verified_partial_kept_after_a_failed_promotion_is_promoted_next_time() {
    let rig = Rig::new();
    let body = data::bytes(26, LARGE);
    rig.server.add("/a", body.clone());
    rig.backend.fail_adopt.store(1, Ordering::SeqCst);
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    let done = run(&ctx, &item).await;
    assert_eq!((done.outcome, reason(&done)), (Outcome::Failed, Some("backend")));
    assert_eq!(rig.partials().len(), 1, "kept");
    let ctx = rig.ctx(|_| {});
    let done = run(&ctx, &item).await;
    assert_eq!((done.outcome, done.decision, done.fetched), (Outcome::Promoted, Some(Decision::Resume), 0));
    assert_eq!(rig.server.gets("/a"), 1);
    assert_eq!(rig.stored("k"), Some(body));
    assert!(rig.partials().is_empty());
}

/// A large item refused as a conflict: the partial goes with it.
#[tokio::test]
async fn a_large_item_refused_as_a_conflict_leaves_no_partial() {
    let rig = Rig::new();
    rig.server.add("/a", data::bytes(27, LARGE));
    let ctx = rig.ctx(|_| {});
    rig.put_plain("k", b"other bytes");
    let done = run(&ctx, &rig.http_item("/a", "k", no_promise())).await;
    assert_eq!((done.outcome, reason(&done)), (Outcome::Failed, Some("conflict")));
    assert!(rig.partials().is_empty());
    assert_eq!(rig.stored("k").as_deref(), Some(b"other bytes".as_slice()));
}

/// A verified partial whose job another worker owns now is not published by this one.
#[tokio::test]
async fn a_partial_whose_job_is_no_longer_ours_is_not_published() {
    let rig = Rig::new();
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    let job = plan(&ctx, &item).await;
    assert_eq!(begin(&ctx, &job, "worker-b").await, Begin::Mine(1));
    let mut kept = Partial::create(&ctx.partials.join(&job)).unwrap();
    kept.write(b"all of it").unwrap();
    kept.total = Some(9);
    let failed = promote_partial(&ctx, &item, &job, kept, &AtomicBool::new(false)).await.unwrap_err();
    assert_eq!(failed.reason, LEASE_LOST);
    assert!(rig.stored("k").is_none());
}

// ---- segments, lost leases, other workers ----------------------------------------------------------

/// Four segments: every byte fetched once; stopped mid-way (the lease lost), each segment
/// resumes from its checkpoint in the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_fetch_every_byte_once_and_resume_each_from_its_checkpoint() {
    let rig = Rig::new();
    let size = 4 << 20;
    let body = data::bytes(28, size);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|o| o.segments = 4);
    let done = run(&ctx, &rig.http_item("/a", "whole", no_promise())).await;
    assert_eq!((done.outcome, done.decision, done.fetched), (Outcome::Promoted, Some(Decision::Fresh), size as u64));
    assert_eq!(rig.server.ranges("/a").len(), 3, "the first segment rides on the first answer");
    assert_eq!(rig.stored("whole").as_ref(), Some(&body));

    rig.server.throttle("/a", 256 << 10);
    let item = rig.http_item("/a", "k", no_promise());
    let job = plan(&ctx, &item).await;
    let lost = AtomicBool::new(false);
    let processing = process(&ctx, &item, &job, None, None, &lost);
    let stop_once_checkpointed = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let checkpoint = row(&ctx, &item).await.checkpoint;
            if checkpoint.is_some_and(|cp| cp.segments.len() == 4 && cp.fetched() > 0) {
                lost.store(true, Ordering::SeqCst);
                return;
            }
        }
    };
    let (done, ()) =
        tokio::time::timeout(BOUND, async { tokio::join!(processing, stop_once_checkpointed) }).await.unwrap();
    assert!(done.stopped(), "{:?}", done.failure);
    let recorded = row(&ctx, &item).await;
    assert_ne!(recorded.state, State::Failed, "given back, not failed");
    let kept = recorded.checkpoint.expect("checkpointed").fetched();
    rig.server.throttle("/a", 0);
    let ctx = rig.ctx(|o| o.segments = 4);
    let done = run(&ctx, &item).await;
    assert_eq!((done.outcome, done.decision), (Outcome::Promoted, Some(Decision::Resume)));
    assert!(done.fetched <= size as u64 - kept, "{} fetched, {kept} kept", done.fetched);
    assert_eq!(rig.stored("k"), Some(body));
}

/// A large item whose lease is lost mid-download stops, keeps its partial with a checkpoint and
/// gives the job back; one whose lease is lost before it starts fetches nothing.
#[tokio::test]
async fn a_lost_lease_stops_the_item_and_gives_the_job_back() {
    let rig = Rig::new();
    let body = data::bytes(29, LARGE);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    let done = run_lost(&ctx, &item, &AtomicBool::new(true)).await;
    assert!(done.stopped(), "{:?}", done.failure);
    assert_eq!((row(&ctx, &item).await.state, rig.server.gets("/a")), (State::Planned, 0));

    rig.server.throttle("/a", 128 << 10);
    let job = plan(&ctx, &item).await;
    let lost = AtomicBool::new(false);
    let processing = process(&ctx, &item, &job, None, None, &lost);
    let stop = async {
        while rig.bytes_events() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lost.store(true, Ordering::SeqCst);
    };
    let (done, ()) = tokio::time::timeout(BOUND, async { tokio::join!(processing, stop) }).await.unwrap();
    assert!(done.stopped(), "{:?}", done.failure);
    let recorded = row(&ctx, &item).await;
    assert_eq!(recorded.state, State::Planned);
    assert!(recorded.checkpoint.as_ref().is_some_and(|cp| cp.offset > 0), "{recorded:?}");
    rig.server.throttle("/a", 0);
    let done = run(&rig.ctx(|_| {}), &item).await;
    assert_eq!((done.outcome, done.decision), (Outcome::Promoted, Some(Decision::Resume)));
    assert_eq!(rig.stored("k"), Some(body));
}

/// The job in flight under another live worker that records nothing: waited for as long as the
/// lease (the patience), then `busy`, naming the worker; its job is left to it.
#[tokio::test]
async fn a_job_another_worker_holds_without_progress_is_busy_after_the_lease() {
    let rig = Rig::new();
    rig.server.add("/a", data::bytes(30, 100));
    let ctx = rig.ctx(|o| o.lease = Duration::from_millis(800));
    let item = rig.http_item("/a", "k", no_promise());
    let job = plan(&ctx, &item).await;
    begin(&ctx, &job, "worker-b").await;
    let started = Instant::now();
    let done = run(&ctx, &item).await;
    let waited = started.elapsed();
    assert_eq!((done.outcome, reason(&done)), (Outcome::Failed, Some(BUSY)));
    assert!(
        message(&done).contains("(worker-b) has it in flight and recorded no progress for 800ms"),
        "{}",
        message(&done)
    );
    assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(row(&ctx, &item).await.owner.as_deref(), Some("worker-b"));
    assert_eq!(rig.server.gets("/a"), 0);
}

/// While another worker records progress it is waited for past the lease; once it lets go (here:
/// it fails), this worker does the item.
#[tokio::test]
async fn a_worker_that_records_progress_is_waited_for_and_its_failure_taken_over() {
    let rig = Rig::new();
    rig.server.add("/a", data::bytes(31, 100));
    let ctx = rig.ctx(|o| o.lease = Duration::from_secs(1));
    let item = rig.http_item("/a", "k", no_promise());
    let job = plan(&ctx, &item).await;
    begin(&ctx, &job, "worker-b").await;
    let other = async {
        let checkpoint = Checkpoint {
            offset: 1,
            prefix_sha256: Sha256::of(b"x"),
            etag: None,
            last_modified: None,
            total: None,
            segments: Vec::new(),
            upload: None,
        };
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let (job, cp) = (job.clone(), checkpoint.clone());
            assert!(ctx.db.call(move |l| l.checkpoint(&job, "worker-b", &cp, now_ms())).await.unwrap());
        }
        let job = job.clone();
        ctx.db.call(move |l| l.failed(&job, "worker-b", "http-500", "gave up", now_ms())).await.unwrap();
    };
    let lost = AtomicBool::new(false);
    let mine = job_key(&item);
    let processing = process(&ctx, &item, &mine, None, None, &lost);
    let (done, ()) = tokio::time::timeout(BOUND, async { tokio::join!(processing, other) }).await.unwrap();
    assert_eq!((done.outcome, done.attempts, reason(&done)), (Outcome::Promoted, 1, None));
}

/// Another worker that promotes the job meanwhile: found complete, not fetched here.
#[tokio::test]
async fn a_job_another_worker_promotes_meanwhile_is_found_complete() {
    let rig = Rig::new();
    let body = data::bytes(32, 100);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    let job = plan(&ctx, &item).await;
    begin(&ctx, &job, "worker-b").await;
    let other = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ctx.store.promote_reader(&item.key, body.as_slice(), &no_promise(), Mode::Create).await.unwrap();
        let (job, sha) = (job.clone(), Sha256::of(&body));
        ctx.db.call(move |l| l.promoted(&job, &sha, 100, now_ms())).await.unwrap();
    };
    let lost = AtomicBool::new(false);
    let processing = process(&ctx, &item, &job, None, None, &lost);
    let (done, ()) = tokio::time::timeout(BOUND, async { tokio::join!(processing, other) }).await.unwrap();
    assert_eq!(
        (done.outcome, done.decision, done.attempts),
        (Outcome::AlreadyPresent, Some(Decision::AlreadyComplete), 0)
    );
    assert_eq!(rig.server.gets("/a"), 0);
}

// ---- local sources ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_local_source_that_cannot_be_read_says_why() {
    let rig = Rig::new();
    std::fs::write(rig.dir.path().join("file"), "x").unwrap();
    let ctx = rig.ctx(|_| {});
    let missing = run(&ctx, &rig.local_item("absent", "a")).await;
    assert_eq!((missing.outcome, reason(&missing)), (Outcome::Failed, Some("source-missing")));
    let unreadable = run(&ctx, &rig.local_item("file/below", "b")).await;
    assert_eq!(reason(&unreadable), Some("source-unreadable"));
    assert!(message(&unreadable).contains("file/below"), "{}", message(&unreadable));
}

/// A small local file goes through the run's worker threads; a file of a chunk or more is
/// promoted from the task; without streaming, every file goes through the spool (which looks
/// at the key first). Each reports its bytes.
#[tokio::test]
async fn local_files_take_the_path_their_size_and_streaming_say() {
    let rig = Rig::new();
    let chunk = promote_core::kit::CHUNK_SIZE;
    for (name, len) in [("small", 100), ("chunk", chunk), ("large", chunk + 1)] {
        std::fs::write(rig.dir.path().join(name), data::bytes(33, len)).unwrap();
    }
    let on_worker = |calls: &[(&str, String)]| calls.iter().any(|(_, thread)| thread.starts_with("promote-worker"));
    let mut sizes = 0;
    for (name, len, streaming, worker) in [
        ("small", 100, true, true),
        ("chunk", chunk, true, false),
        ("large", chunk + 1, true, false),
        ("small", 100, false, false),
    ] {
        rig.backend.calls.lock().unwrap().clear();
        let ctx = rig.ctx(|o| o.streaming = streaming);
        let key = format!("{name}-{streaming}");
        let done = run(&ctx, &rig.local_item(name, &key)).await;
        let what = format!("{name}, streaming {streaming}");
        assert_eq!(
            (done.outcome, done.decision, done.fetched),
            (Outcome::Promoted, Some(Decision::Fresh), len as u64),
            "{what}"
        );
        let calls = rig.backend.calls();
        assert_eq!(on_worker(&calls), worker, "{what}: {calls:?}");
        assert_eq!(calls.first().map(|c| c.0) == Some("head"), !streaming, "{what}: {calls:?}");
        sizes += len as u64;
        assert_eq!(rig.bytes_events(), sizes, "{what}");
        assert_eq!(rig.stored(&key), Some(data::bytes(33, len)));
    }
}

/// The wait after the most allowed is refused at once; the last one allowed still waits (here:
/// for a job that is not in the ledger, which ends the wait at its first look).
#[tokio::test]
async fn a_job_is_waited_for_at_most_max_waits_times() {
    let rig = Rig::new();
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    let refused = wait_for(&ctx, &item, "unplanned", "worker-b", 0, MAX_WAITS + 1).await.unwrap_err();
    assert_eq!(refused.reason, BUSY);
    assert!(refused.message.contains("(worker-b) took it back 64 times"), "{}", refused.message);
    let last = tokio::time::timeout(BOUND, wait_for(&ctx, &item, "unplanned", "worker-b", 0, MAX_WAITS)).await;
    assert!(last.expect("bounded").is_ok());
}

/// Workers that keep handing a job to one another never keep this one waiting for ever: after
/// [`MAX_WAITS`] waits it is `busy`. On tokio's paused clock, so the 64 polls take no time.
#[tokio::test(start_paused = true)]
async fn a_job_other_workers_keep_taking_back_is_busy_after_the_most_waits() {
    let rig = Rig::new();
    let ctx = rig.ctx(|o| o.lease = Duration::from_secs(3600));
    let item = rig.http_item("/a", "k", no_promise());
    let job = plan(&ctx, &item).await;
    begin(&ctx, &job, "worker-0").await;
    let others = async {
        for n in 1.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (job, from, to) = (job.clone(), format!("worker-{}", n - 1), format!("worker-{n}"));
            ctx.db
                .call(move |l| {
                    assert!(l.disown(&job, &from, now_ms())?);
                    l.begin_attempt(&job, &to, now_ms(), &|_| true).map(drop)
                })
                .await
                .unwrap();
        }
    };
    let lost = AtomicBool::new(false);
    let processing = tokio::time::timeout(BOUND, process(&ctx, &item, &job, None, None, &lost));
    let done = tokio::select! {
        done = processing => done.expect("bounded"),
        () = others => unreachable!("the workers hand the job on for ever"),
    };
    assert_eq!((done.outcome, reason(&done), done.attempts), (Outcome::Failed, Some(BUSY), 0));
    assert!(message(&done).contains("took it back 64 times"), "{}", message(&done));
    assert_eq!(rig.server.gets("/a"), 0);
}

// ---- answers the test server never gives -----------------------------------------------------------

/// A server on 127.0.0.1 that answers each connection with the next of `answers` (raw bytes:
/// status line, headers, body) and closes it; answers the rest with `503`. Returns its URL and
/// the request heads it read.
fn scripted(answers: Vec<Vec<u8>>) -> (String, Arc<StdMutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/o", listener.local_addr().unwrap());
    let heads: Arc<StdMutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&heads);
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
            let answer = answers.next().unwrap_or_else(|| b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n".to_vec());
            let _ = stream.write_all(&answer);
        }
    });
    (url, heads)
}

fn answer(head: &str, body: &[u8]) -> Vec<u8> {
    let mut answer = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    answer.extend_from_slice(body);
    answer
}

fn scripted_item(url: &str, expected: Expected) -> Item {
    Item { line: 1, source_text: url.to_owned(), source: Source::Http, key: Key::new("k").unwrap(), expected }
}

/// A body without a length that runs past the manifest's size is cut off as soon as it does,
/// not read to its end, whether it streams into staging or downloads into a partial (which is
/// then removed, with its checkpoint: nothing of it is worth resuming).
#[tokio::test]
async fn a_body_longer_than_promised_is_refused_as_it_comes() {
    for threshold in [u64::MAX, 0] {
        let rig = Rig::new();
        let body = data::bytes(40, 300_000);
        let (url, _) = scripted(vec![answer("HTTP/1.1 200 OK", &body)]);
        let mut expected = no_promise();
        expected.size = Some(100_000);
        let ctx = rig.ctx(|o| o.resume_threshold = threshold);
        let item = scripted_item(&url, expected);
        let done = run(&ctx, &item).await;
        assert_eq!(reason(&done), Some("size-mismatch"), "{threshold}");
        assert!(message(&done).contains("100000 bytes"), "{}", message(&done));
        assert!(done.fetched < body.len() as u64, "cut off at {}", done.fetched);
        assert!(rig.stored("k").is_none());
        assert_eq!(rig.partials(), Vec::<PathBuf>::new(), "{threshold}: the refused bytes are not kept");
        let row = row(&ctx, &item).await;
        assert_eq!((row.state, row.checkpoint), (State::Failed, None), "{threshold}");
    }
}

/// A resumed answer that ends before the object's length (a `206` without a `Content-Length`,
/// its connection closed early) is a short body: checkpointed, never promoted.
#[tokio::test]
async fn a_resumed_body_that_ends_short_is_never_promoted() {
    let rig = Rig::new();
    let body = data::bytes(41, 100_000);
    let first = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nETag: \"v1\"\r\nAccept-Ranges: bytes";
    let rest = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 30000-99999/100000\r\nETag: \"v1\"";
    let (url, heads) = scripted(vec![answer(first, &body[..30_000]), answer(rest, &body[30_000..50_000])]);
    let item = scripted_item(&url, no_promise());
    let done = run(&rig.ctx(|_| {}), &item).await;
    assert_eq!(reason(&done), Some("connection"));
    let ctx = rig.ctx(|_| {});
    let done = run(&ctx, &item).await;
    assert_eq!(
        (done.outcome, done.decision, reason(&done)),
        (Outcome::Failed, Some(Decision::Resume), Some("short-body"))
    );
    assert!(
        heads.lock().unwrap()[1].to_ascii_lowercase().contains("range: bytes=30000-"),
        "{:?}",
        heads.lock().unwrap()
    );
    assert_eq!(row(&ctx, &item).await.checkpoint.map(|cp| cp.offset), Some(50_000), "what came is kept");
    assert!(rig.stored("k").is_none());
}

/// A partial whose only validator is a strong `Last-Modified` resumes, also when the server
/// sends an `ETag` with the rest.
#[tokio::test]
async fn a_partial_validated_by_its_date_alone_resumes() {
    let rig = Rig::new();
    let body = data::bytes(42, LARGE);
    rig.server.add("/a", body.clone());
    rig.server.omit_etag("/a", true);
    rig.server.pin_date("/a", rig.server.last_modified("/a").map(|s| s + 2));
    rig.server.drop_after("/a", 100_000, 1);
    let item = rig.http_item("/a", "k", no_promise());
    assert_eq!(reason(&run(&rig.ctx(|_| {}), &item).await), Some("connection"));
    rig.server.omit_etag("/a", false);
    let done = run(&rig.ctx(|_| {}), &item).await;
    assert_eq!((done.outcome, done.decision), (Outcome::Promoted, Some(Decision::Resume)));
    let resumed = &rig.server.requests("/a")[1];
    assert!(resumed.if_range.as_deref().is_some_and(|v| v.ends_with(" GMT")), "{resumed:?}");
    assert_eq!(rig.stored("k"), Some(body));
}

// ---- partials left as a stopped run leaves them -----------------------------------------------------

/// Leaves a partial of `item`'s job as a run that stopped would: `bytes` kept, checkpointed with
/// `etag` and `total` (split in `segments` when given, before any byte), the job given back.
async fn left_partial(ctx: &Ctx, item: &Item, bytes: &[u8], etag: Option<String>, total: Option<u64>, segments: u64) {
    let job = plan(ctx, item).await;
    begin(ctx, &job, &ctx.owner).await;
    let mut kept = Partial::create(&ctx.partials.join(&job)).unwrap();
    (kept.etag, kept.total) = (etag, total);
    if segments > 1 {
        kept.split(segments);
    }
    if !bytes.is_empty() {
        kept.write(bytes).unwrap();
    }
    record_checkpoint(ctx, item, &job, &mut kept).await.unwrap();
    drop(kept);
    let owner = ctx.owner.clone();
    assert!(ctx.db.call(move |l| l.disown(&job, &owner, now_ms())).await.unwrap());
}

/// A partial checkpointed before its first byte (the connection broke at once) is no resume: a
/// plain request, a fresh download.
#[tokio::test]
async fn a_partial_without_a_byte_is_fetched_fresh() {
    let rig = Rig::new();
    let body = data::bytes(43, LARGE);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    left_partial(&ctx, &item, b"", rig.server.etag("/a"), Some(LARGE as u64), 1).await;
    let done = run(&ctx, &item).await;
    assert_eq!((done.outcome, done.decision, done.fetched), (Outcome::Promoted, Some(Decision::Fresh), LARGE as u64));
    assert!(rig.server.ranges("/a").is_empty(), "{:?}", rig.server.ranges("/a"));
    assert_eq!(rig.stored("k"), Some(body));
}

/// So is a segmented partial without a byte in any segment; its segments are fetched all the
/// same.
#[tokio::test]
async fn a_segmented_partial_without_a_byte_is_fetched_fresh() {
    let rig = Rig::new();
    let size = 4 << 20;
    let body = data::bytes(44, size);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|o| o.segments = 4);
    let item = rig.http_item("/a", "k", no_promise());
    left_partial(&ctx, &item, b"", rig.server.etag("/a"), Some(size as u64), 4).await;
    let done = run(&ctx, &item).await;
    assert_eq!((done.outcome, done.decision, done.fetched), (Outcome::Promoted, Some(Decision::Fresh), size as u64));
    assert_eq!(rig.server.ranges("/a").len(), 4, "each segment asked for by its range");
    assert_eq!(rig.stored("k"), Some(body));
}

/// A partial kept without the object's length (its first answer gave none) resumes when the
/// rest comes with one.
#[tokio::test]
async fn a_partial_kept_without_a_length_resumes() {
    let rig = Rig::new();
    let body = data::bytes(45, LARGE);
    rig.server.add("/a", body.clone());
    let ctx = rig.ctx(|_| {});
    let item = rig.http_item("/a", "k", no_promise());
    left_partial(&ctx, &item, &body[..100_000], rig.server.etag("/a"), None, 1).await;
    let done = run(&ctx, &item).await;
    assert_eq!(
        (done.outcome, done.decision, done.fetched),
        (Outcome::Promoted, Some(Decision::Resume), LARGE as u64 - 100_000)
    );
    assert_eq!(rig.server.ranges("/a"), ["bytes=100000-"]);
    assert_eq!(rig.stored("k"), Some(body));
}

/// A streamed body cut short of its `Content-Length` is a broken connection to the HTTP client
/// (it never ends such a body without an error), so the item is not promoted and the failure
/// is retryable; the stream's own check of the count is a second line behind it.
#[tokio::test]
async fn a_streamed_body_cut_short_of_its_length_is_not_promoted() {
    let rig = Rig::new();
    let body = data::bytes(46, 5000);
    let (url, _) = scripted(vec![answer("HTTP/1.1 200 OK\r\nContent-Length: 5000", &body[..2000])]);
    let done = run(&rig.ctx(|_| {}), &scripted_item(&url, no_promise())).await;
    let failure = done.failure.as_ref().unwrap();
    assert_eq!((failure.reason.as_str(), failure.is_retryable()), ("connection", true));
    assert!(rig.stored("k").is_none());
}
