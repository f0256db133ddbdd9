//! The conformance cases. Each is named after the promise it checks (the names match the
//! **Atomicity** bullets in `promote_core`), takes a fresh empty [`Store`], and panics on failure.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use promote_core::{Bytes, Capabilities, Digest, Error, Expected, Key, Leftover, Mode, Outcome, Sha256, Store};
use tokio::sync::Barrier;

use crate::data;

/// One named case.
pub struct Case {
    /// Its name, as in the contract's docs.
    pub name: &'static str,
    /// Why a backend with these capabilities cannot run it (`None`: it can).
    pub requires: fn(&Capabilities) -> Option<&'static str>,
    /// Whether it starts writers in other processes (needs [`Suite::reopen`](crate::Suite)).
    pub other_process: bool,
    /// The case itself.
    pub run: fn(Ctx) -> BoxFuture<'static, ()>,
}

/// What a case gets: a fresh, empty store and what its suite says about the backend. Most
/// cases take only the store.
#[derive(Clone)]
pub struct Ctx {
    /// The store under test.
    pub store: Store,
    /// Bytes that take the backend's large-object path (see [`Suite::large`](crate::Suite::large)).
    pub large: usize,
    /// The independent residue check, where the suite has one.
    pub residue: Option<crate::Residue>,
    /// The suite's name (a child writer finds its suite by it).
    pub(crate) suite: &'static str,
    /// How another process reaches the same storage (see [`Fixture::address`](crate::Fixture::address)).
    pub(crate) address: Option<String>,
}

fn always(_: &Capabilities) -> Option<&'static str> {
    None
}
fn needs_create(c: &Capabilities) -> Option<&'static str> {
    c.create_refused.is_some().then_some("create-only is refused on this backend")
}
fn needs_replace(c: &Capabilities) -> Option<&'static str> {
    (!c.replace).then_some("the backend offers no atomic replace")
}
fn needs_cas(c: &Capabilities) -> Option<&'static str> {
    (!c.replace_if_version).then_some("the backend offers no compare-and-swap (ReplaceIfVersion)")
}
fn leaves_staging(c: &Capabilities) -> Option<&'static str> {
    (!c.staging_outlives_writer)
        .then_some("staged data lives only in the writer's memory; a crash leaves nothing behind")
}
fn needs_stored_digest(c: &Capabilities) -> Option<&'static str> {
    (!c.stored_digest).then_some("the backend stores no SHA-256 with its objects")
}
fn lacks_a_mode(c: &Capabilities) -> Option<&'static str> {
    (c.replace && c.replace_if_version && c.create_refused.is_none()).then_some("the backend offers every mode")
}

/// `name: requires` runs `name(store)`; `name: requires(ctx)` and `name: requires [other_process]`
/// (a case that starts writers in other processes) run `name(ctx)`.
macro_rules! cases {
    ($($name:ident: $requires:ident $(($ctx:ident))? $([$with:ident])?),* $(,)?) => {
        /// Every case, in order.
        pub const ALL: &[Case] = &[$(Case {
            name: stringify!($name),
            requires: $requires,
            other_process: cases!(@other $($with)?),
            run: |c| Box::pin($name(cases!(@arg c $($ctx)? $($with)?))),
        }),*];
    };
    (@other) => { false };
    (@other other_process) => { true };
    (@arg $c:ident) => { $c.store };
    (@arg $c:ident ctx) => { $c };
    (@arg $c:ident other_process) => { $c };
}

cases! {
    round_trip: always,
    empty_object: always,
    large_object_many_chunks: always,
    special_keys_round_trip: always,
    head_reports_size: always(ctx),
    head_reports_size_and_digest: needs_stored_digest(ctx),
    missing_key_is_not_found: always,
    delete_removes_the_object: always,
    size_mismatch_publishes_nothing: always,
    digest_mismatch_publishes_nothing: always,
    source_error_publishes_nothing: always,
    abort_leaves_no_residue: always(ctx),
    drop_leaves_no_residue: always(ctx),
    listing_never_shows_staging: always(ctx),
    list_filters_by_prefix: always,
    create_on_taken_key_conflicts: needs_create,
    create_identical_is_already_present: needs_create,
    concurrent_creates_one_winner: needs_create(ctx),
    replace_overwrites: needs_replace,
    replace_if_version_swaps: needs_cas,
    unsupported_mode_refused_before_io: lacks_a_mode,
    spooled_promotion_verifies: always,
    file_promotion_verifies: always(ctx),
    adopted_file_is_published_or_left_in_place: needs_create(ctx),
    sweep_removes_stale_staging_only: leaves_staging [other_process],
    resumable_write_goes_on_from_its_checkpoint: needs_create(ctx),
}

// ---- helpers ----------------------------------------------------------------------------------

fn key(k: &str) -> Key {
    Key::new(k).expect("valid test key")
}

/// Promotes `bytes` through the streaming path, cut into uneven chunks.
async fn put(store: &Store, k: &Key, bytes: &[u8], expected: &Expected, mode: Mode) -> Result<Outcome, Error> {
    let chunks = data::chunks(bytes, 256 * 1024).into_iter().map(Ok::<_, std::io::Error>);
    store.promote_stream(k, futures_util::stream::iter(chunks), expected, mode).await
}

/// The mode for cases about something other than create-only: [`Mode::Create`] where the
/// backend offers it (what every user gets by default), else [`Mode::Replace`] (a backend that
/// refuses create-only, such as OpenDAL's `fs`, still runs them; the create-only cases show as
/// ignored for it).
fn plain(store: &Store) -> Mode {
    if store.backend().capabilities().create_refused.is_none() { Mode::Create } else { Mode::Replace }
}

fn exact(bytes: &[u8]) -> Expected {
    Expected { size: Some(bytes.len() as u64), sha256: Some(Sha256::of(bytes)) }
}

/// Reads `k` back, verifying it against its stored digest.
async fn get(store: &Store, k: &Key) -> Vec<u8> {
    let (_, mut stream) = store.read_verified(k).await.unwrap_or_else(|e| panic!("read {k}: {e}"));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("read {k}: {e}")));
    }
    out
}

async fn leftovers(store: &Store) -> Vec<Leftover> {
    store.sweep_staging(Duration::ZERO, true).await.expect("sweep dry run")
}

/// Staging data may be removed in the background after a drop: wait a little for it.
async fn assert_no_residue(store: &Store, when: &str) {
    for _ in 0..100 {
        if leftovers(store).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("staging residue {when}: {:?}", leftovers(store).await);
}

/// [`assert_no_residue`], then the suite's independent listing (S3: ListMultipartUploads and
/// the objects under `.promote/`, not the backend's sweep) must come up empty too.
async fn assert_no_residue_anywhere(ctx: &Ctx, when: &str) {
    assert_no_residue(&ctx.store, when).await;
    let Some(residue) = &ctx.residue else { return };
    for _ in 0..100 {
        if residue().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("staging residue {when}, found by an independent listing: {:?}", residue().await);
}

async fn assert_absent(store: &Store, k: &Key) {
    match store.head(k).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{k} should be absent, head gave {other:?}"),
    }
    assert!(store.list("").await.expect("list").iter().all(|e| &e.key != k), "{k} listed");
}

// ---- cases ------------------------------------------------------------------------------------

async fn round_trip(store: Store) {
    let k = key("dir/sub/object.bin");
    let bytes = data::bytes(1, 300_001);
    let outcome = put(&store, &k, &bytes, &exact(&bytes), plain(&store)).await.expect("promote");
    assert!(matches!(outcome, Outcome::Promoted(_)), "{outcome:?}");
    assert_eq!(outcome.receipt().size, bytes.len() as u64);
    assert_eq!(outcome.receipt().sha256, Sha256::of(&bytes));
    assert_eq!(get(&store, &k).await, bytes);
    assert_no_residue(&store, "after a promote").await;
}

async fn empty_object(store: Store) {
    let k = key("empty");
    let outcome = put(&store, &k, b"", &exact(b""), plain(&store)).await.expect("promote");
    assert_eq!(outcome.receipt().size, 0);
    assert_eq!(store.head(&k).await.expect("head").size, 0);
    assert!(get(&store, &k).await.is_empty());
}

async fn large_object_many_chunks(store: Store) {
    let k = key("large/64MiB.bin");
    let bytes = data::bytes(2, 64 << 20);
    let outcome = put(&store, &k, &bytes, &exact(&bytes), plain(&store)).await.expect("promote 64 MiB");
    assert_eq!(outcome.receipt().size, 64 << 20);
    let back = get(&store, &k).await;
    assert!(back == bytes, "64 MiB object differs after the round trip");
    assert_no_residue(&store, "after a large promote").await;
}

async fn special_keys_round_trip(store: Store) {
    let keys = [
        "with space/file name.txt",
        "unicode/日本語/Ωμέγα ✓.txt",
        "punct/a+b=c&d;e,f@g#h$i%j!k(l)m[n]o{p}q~r'.txt",
        ".hidden/..dots../...",
        "deep/a/b/c/d/e/f/g/h/i/j/k.txt",
        "odd ~#%[]{}^| dir/~#%[]{}^| and spaces",
        "odd ~#%[]{}^| dir/sub%20not-an-escape/x^y|z",
        "pct/%41%2F%25.txt",
    ];
    for (i, k) in keys.iter().enumerate() {
        let k = key(k);
        let bytes = data::bytes(10 + i as u64, 1000 + i);
        put(&store, &k, &bytes, &exact(&bytes), plain(&store)).await.unwrap_or_else(|e| panic!("{k}: {e}"));
        assert_eq!(get(&store, &k).await, bytes, "{k}");
    }
    let listed: Vec<String> = store.list("").await.expect("list").into_iter().map(|e| e.key.to_string()).collect();
    let mut want: Vec<String> = keys.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(listed, want);
    // Prefixes with the same characters list the same keys (one path encoding for both).
    let listed = |prefix: &'static str| {
        let store = store.clone();
        async move { store.list(prefix).await.expect("list").into_iter().map(|e| e.key.to_string()).collect::<Vec<_>>() }
    };
    assert_eq!(listed("odd ~#%[]{}^| dir/").await, [keys[6], keys[5]]);
    assert_eq!(listed("odd ~#%[]{}^| dir/~#%").await, [keys[5]]);
    assert_eq!(listed("odd ~#%[]{}^| dir/sub%20").await, [keys[6]]);
    assert_eq!(listed("pct/%41").await, [keys[7]]);
    assert!(listed("pct/A").await.is_empty(), "no percent-decoding");
}

/// Size and contents, on every backend: what `head` reports and a verify reads agree with the
/// bytes promoted, and follow a replace.
async fn head_reports_size(ctx: Ctx) {
    let store = &ctx.store;
    for (name, len) in [("head/small", 12_345), ("head/large", ctx.large)] {
        let k = key(name);
        let bytes = data::bytes(3, len);
        put(store, &k, &bytes, &Expected::default(), plain(store)).await.expect("promote");
        assert_eq!(store.head(&k).await.expect("head").size, bytes.len() as u64);
        let (_, digest) = store.verify(&k, &exact(&bytes)).await.expect("verify");
        assert_eq!(digest.sha256, Sha256::of(&bytes));
        if store.backend().capabilities().replace {
            let new = data::bytes(4, len / 2);
            put(store, &k, &new, &Expected::default(), Mode::Replace).await.expect("replace");
            assert_eq!(store.head(&k).await.expect("head").size, new.len() as u64, "size of {name} after a replace");
            assert!(get(store, &k).await == new);
        }
    }
}

/// The stored SHA-256 (backends that keep one): `head` knows it without reading, for small and
/// large (S3: multipart) objects put without the digest up front, and it follows a replace.
/// Ignored, with the reason, on backends that store none.
async fn head_reports_size_and_digest(ctx: Ctx) {
    let store = &ctx.store;
    for (name, len) in [("head/small", 12_345), ("head/large", ctx.large)] {
        let k = key(name);
        let bytes = data::bytes(3, len);
        put(store, &k, &bytes, &Expected::default(), plain(store)).await.expect("promote");
        let meta = store.head(&k).await.expect("head");
        assert_eq!(meta.size, bytes.len() as u64);
        assert_eq!(meta.sha256, Some(Sha256::of(&bytes)), "stored digest of {name}");
        if store.backend().capabilities().replace {
            // Replaced, the stored digest follows the new bytes.
            let new = data::bytes(4, len);
            put(store, &k, &new, &Expected::default(), Mode::Replace).await.expect("replace");
            let meta = store.head(&k).await.expect("head");
            assert_eq!(meta.sha256, Some(Sha256::of(&new)), "stored digest of {name} after a replace");
            assert!(get(store, &k).await == new);
        }
    }
}

async fn missing_key_is_not_found(store: Store) {
    let k = key("no/such/key");
    assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.read(&k).await.map(|_| ()), Err(Error::NotFound { .. })));
    assert!(matches!(store.delete(&k).await, Err(Error::NotFound { .. })));
}

async fn delete_removes_the_object(store: Store) {
    let k = key("gone/soon");
    put(&store, &k, b"bye", &Expected::default(), plain(&store)).await.expect("promote");
    store.delete(&k).await.expect("delete");
    assert_absent(&store, &k).await;
    put(&store, &k, b"again", &Expected::default(), plain(&store)).await.expect("create after delete");
    assert_eq!(get(&store, &k).await, b"again");
}

async fn size_mismatch_publishes_nothing(store: Store) {
    let k = key("bad/size");
    let bytes = data::bytes(4, 5000);
    for wrong in [4999, 5001] {
        let expected = Expected { size: Some(wrong), sha256: None };
        let err = put(&store, &k, &bytes, &expected, plain(&store)).await.expect_err("must fail");
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        assert_absent(&store, &k).await;
        assert_no_residue(&store, "after a size mismatch").await;
    }
}

async fn digest_mismatch_publishes_nothing(store: Store) {
    let k = key("bad/digest");
    let bytes = data::bytes(5, 5000);
    let expected = Expected { size: Some(5000), sha256: Some(Sha256::of(b"something else")) };
    let err = put(&store, &k, &bytes, &expected, plain(&store)).await.expect_err("must fail");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_absent(&store, &k).await;
    assert_no_residue(&store, "after a digest mismatch").await;
    // A mismatch never touches an object already there either.
    put(&store, &k, b"original", &Expected::default(), plain(&store)).await.expect("promote");
    let err = put(&store, &k, &bytes, &expected, Mode::Replace).await;
    assert!(matches!(err, Err(Error::DigestMismatch { .. }) | Err(Error::Unsupported { .. })), "{err:?}");
    assert_eq!(get(&store, &k).await, b"original");
}

async fn source_error_publishes_nothing(store: Store) {
    let k = key("bad/source");
    let chunks = vec![Ok(Bytes::from(data::bytes(6, 100_000))), Err(std::io::Error::other("connection dropped"))];
    let err = store
        .promote_stream(&k, futures_util::stream::iter(chunks), &Expected::default(), plain(&store))
        .await
        .expect_err("must fail");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_absent(&store, &k).await;
    assert_no_residue(&store, "after a source error").await;
}

async fn abort_leaves_no_residue(ctx: Ctx) {
    let (store, k) = (&ctx.store, key("aborted"));
    let mut staged = store.stage(&k, &Expected::default()).await.expect("stage");
    for chunk in data::chunks(&data::bytes(7, ctx.large), 1 << 20) {
        staged.write(chunk).await.expect("write");
    }
    assert_eq!(staged.bytes_written(), ctx.large as u64, "bytes_written counts every byte written");
    assert!(format!("{staged:?}").contains("aborted"), "a staged write's Debug names its key: {staged:?}");
    staged.abort().await.expect("abort");
    // An abort removes the staged data before it returns (a drop may do it in the background).
    let left = leftovers(store).await;
    assert!(left.is_empty(), "staging still there when abort returned: {left:?}");
    assert_absent(store, &k).await;
    assert_no_residue_anywhere(&ctx, "after abort").await;
}

async fn drop_leaves_no_residue(ctx: Ctx) {
    let (store, k) = (&ctx.store, key("dropped"));
    let mut staged = store.stage(&k, &Expected::default()).await.expect("stage");
    for chunk in data::chunks(&data::bytes(8, ctx.large), 1 << 20) {
        staged.write(chunk).await.expect("write");
    }
    drop(staged);
    assert_absent(store, &k).await;
    assert_no_residue_anywhere(&ctx, "after drop").await;
}

async fn listing_never_shows_staging(ctx: Ctx) {
    let store = &ctx.store;
    let done = key("visible");
    put(store, &done, b"done", &Expected::default(), plain(store)).await.expect("promote");
    let k = key("in-flight");
    let mut staged = store.stage(&k, &Expected::default()).await.expect("stage");
    let bytes = data::bytes(9, ctx.large);
    for chunk in data::chunks(&bytes, 1 << 20) {
        staged.write(chunk).await.expect("write");
    }
    if let Some(residue) = &ctx.residue {
        assert!(!residue().await.is_empty(), "the independent listing sees the staged upload");
    }
    for prefix in ["", "in", "in-flight"] {
        let listed: Vec<Key> = store.list(prefix).await.expect("list").into_iter().map(|e| e.key).collect();
        let want = if prefix.is_empty() { vec![done.clone()] } else { Vec::new() };
        assert_eq!(listed, want, "only published objects are listed (prefix {prefix:?})");
    }
    assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })), "staged data visible to head");
    staged.promote(&exact(&bytes), plain(store)).await.expect("promote");
    assert_eq!(store.list("").await.expect("list").len(), 2);
    assert!(get(store, &k).await == bytes);
    assert_no_residue_anywhere(&ctx, "after promoting a large object").await;
}

async fn list_filters_by_prefix(store: Store) {
    for k in ["a/1", "a/2", "ab/3", "b/4"] {
        put(&store, &key(k), k.as_bytes(), &Expected::default(), plain(&store)).await.expect("promote");
    }
    let keys = |prefix: &'static str| {
        let store = store.clone();
        async move { store.list(prefix).await.expect("list").into_iter().map(|e| e.key.to_string()).collect::<Vec<_>>() }
    };
    assert_eq!(keys("a/").await, ["a/1", "a/2"]);
    assert_eq!(keys("a").await, ["a/1", "a/2", "ab/3"]);
    assert_eq!(keys("").await, ["a/1", "a/2", "ab/3", "b/4"]);
    assert!(keys("c").await.is_empty());
    let sizes: Vec<u64> = store.list("b/").await.expect("list").into_iter().map(|e| e.size).collect();
    assert_eq!(sizes, [3]);
}

async fn create_on_taken_key_conflicts(store: Store) {
    let k = key("taken");
    let old = data::bytes(11, 70_000);
    put(&store, &k, &old, &Expected::default(), Mode::Create).await.expect("first create");
    let new = data::bytes(12, 70_000);
    let err = put(&store, &k, &new, &exact(&new), Mode::Create).await.expect_err("second create");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(get(&store, &k).await, old, "old bytes intact");
    let shorter = &new[..100];
    let err = put(&store, &k, shorter, &Expected::default(), Mode::Create).await.expect_err("different size");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(get(&store, &k).await, old, "old bytes intact");
    assert_no_residue(&store, "after conflicts").await;
}

async fn create_identical_is_already_present(store: Store) {
    let k = key("rerun");
    let bytes = data::bytes(13, 99_999);
    let first = put(&store, &k, &bytes, &exact(&bytes), Mode::Create).await.expect("first");
    assert!(matches!(first, Outcome::Promoted(_)));
    let second = put(&store, &k, &bytes, &exact(&bytes), Mode::Create).await.expect("rerun");
    assert!(matches!(second, Outcome::AlreadyPresent(_)), "{second:?}");
    assert_eq!(second.receipt().sha256, Sha256::of(&bytes));
    assert_eq!(get(&store, &k).await, bytes);
    assert_no_residue(&store, "after an already-present rerun").await;
}

async fn concurrent_creates_one_winner(ctx: Ctx) {
    const ROUNDS: u64 = 3;
    const WRITERS: usize = 8;
    for round in 0..ROUNDS {
        let k = key(&format!("race/round-{round}"));
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS as u64 {
            let (store, k, barrier, len) = (ctx.store.clone(), k.clone(), Arc::clone(&barrier), ctx.large);
            tasks.push(tokio::spawn(async move {
                let bytes = data::bytes(100 + round * 100 + writer, len);
                let mut staged = store.stage(&k, &Expected::default()).await.expect("stage");
                for chunk in data::chunks(&bytes, 512 * 1024) {
                    staged.write(chunk).await.expect("write");
                }
                barrier.wait().await;
                (bytes.clone(), staged.promote(&exact(&bytes), Mode::Create).await)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                (bytes, Ok(Outcome::Promoted(_))) => winners.push(bytes),
                (_, Err(Error::Conflict { .. })) => {}
                (_, other) => panic!("round {round}: expected promoted or conflict, got {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one create-only writer wins");
        assert!(get(&ctx.store, &k).await == winners[0], "round {round}: the object is the winner's bytes");
        assert_no_residue_anywhere(&ctx, &format!("after race round {round}")).await;
    }
}

async fn replace_overwrites(store: Store) {
    let k = key("replace/me");
    put(&store, &k, b"version one", &Expected::default(), plain(&store)).await.expect("create");
    let new = data::bytes(14, 40_000);
    let outcome = put(&store, &k, &new, &exact(&new), Mode::Replace).await.expect("replace");
    assert!(matches!(outcome, Outcome::Promoted(_)));
    assert_eq!(get(&store, &k).await, new);
    let fresh = key("replace/new");
    put(&store, &fresh, b"x", &Expected::default(), Mode::Replace).await.expect("replace on empty key");
    assert_eq!(get(&store, &fresh).await, b"x");
}

async fn replace_if_version_swaps(store: Store) {
    let k = key("cas");
    put(&store, &k, b"v1", &Expected::default(), plain(&store)).await.expect("create");
    let v1 = store.head(&k).await.expect("head").version.expect("a version");
    put(&store, &k, b"v2", &Expected::default(), Mode::ReplaceIfVersion(v1.clone())).await.expect("swap at v1");
    assert_eq!(get(&store, &k).await, b"v2");
    let err =
        put(&store, &k, b"v3", &Expected::default(), Mode::ReplaceIfVersion(v1)).await.expect_err("stale version");
    assert!(matches!(err, Error::VersionMismatch { .. }), "{err}");
    assert_eq!(get(&store, &k).await, b"v2");
}

async fn unsupported_mode_refused_before_io(store: Store) {
    let caps = store.backend().capabilities();
    let mode = if !caps.replace_if_version {
        Mode::ReplaceIfVersion("1".into())
    } else if !caps.replace {
        Mode::Replace
    } else {
        Mode::Create
    };
    let k = key("refused");
    let err = put(&store, &k, b"bytes", &Expected::default(), mode).await.expect_err("refused");
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert_absent(&store, &k).await;
    assert_no_residue(&store, "after a refused mode").await;
}

async fn spooled_promotion_verifies(store: Store) {
    let spool = tempfile::tempdir().expect("spool dir");
    let k = key("spooled/object");
    let bytes = data::bytes(15, 3 << 20);
    let outcome = store
        .promote_spooled(&k, &bytes[..], &exact(&bytes), plain(&store), spool.path())
        .await
        .expect("spooled promote");
    assert_eq!(outcome.receipt().sha256, Sha256::of(&bytes));
    assert_eq!(get(&store, &k).await, bytes);
    let bad = key("spooled/bad");
    let err = store
        .promote_spooled(
            &bad,
            &bytes[..],
            &Expected { sha256: Some(Sha256::of(b"no")), size: None },
            plain(&store),
            spool.path(),
        )
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_absent(&store, &bad).await;
    assert_eq!(std::fs::read_dir(spool.path()).expect("spool dir").count(), 0, "spool files removed");
    assert_no_residue(&store, "after spooled promotions").await;
}

async fn file_promotion_verifies(ctx: Ctx) {
    let store = ctx.store.clone();
    // Large enough for the backend to copy the file itself, where it can (Backend::stage_copy:
    // inside the kernel on local disk, the source being on the same filesystem as the root).
    let len = ctx.large.max(promote_core::kit::STAGE_COPY_MIN as usize) + 12_345;
    let bytes = data::bytes(16, len);
    let dir = tempfile::tempdir().expect("source dir");
    let path = dir.path().join("source.bin");
    std::fs::write(&path, &bytes).expect("write source");
    let open = || std::fs::File::open(&path).expect("open source");
    let k = key("file/object");
    let outcome = store.promote_file(&k, open(), &exact(&bytes), plain(&store)).await.expect("promote_file");
    assert_eq!(outcome.receipt().sha256, Sha256::of(&bytes));
    assert_eq!(outcome.receipt().size, len as u64);
    assert!(get(&store, &k).await == bytes, "the promoted file differs");
    let bad = key("file/bad");
    let wrong_digest = Expected { size: None, sha256: Some(Sha256::of(b"something else")) };
    let too_long = Expected { size: Some(len as u64 - 1), sha256: None };
    for (expected, what) in [(wrong_digest, "a wrong digest"), (too_long, "a file longer than expected")] {
        let err = store.promote_file(&bad, open(), &expected, plain(&store)).await.expect_err(what);
        assert!(matches!(err, Error::DigestMismatch { .. } | Error::SizeMismatch { .. }), "{what}: {err}");
        assert_absent(&store, &bad).await;
    }
    assert_no_residue_anywhere(&ctx, "after file promotions").await;
}

/// `Store::promote_adopted` (`Backend::adopt`): a complete file the caller hashed is either
/// taken as the staged write (local disk and OpenDAL, on their staging's filesystem) (then it is gone from its path and published, create-only, never
/// copied) or left where it was, untouched (then the caller copies it). A digest that is not what
/// was expected moves nothing; a taken key is a conflict, and keeps its object.
async fn adopted_file_is_published_or_left_in_place(ctx: Ctx) {
    let store = ctx.store.clone();
    let dir = tempfile::tempdir().expect("a directory for the file");
    let path = dir.path().join("partial.bin");
    let write = |bytes: &[u8]| {
        std::fs::write(&path, bytes).expect("write the file");
        std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open the file")
    };
    let digest = |bytes: &[u8]| Digest { size: bytes.len() as u64, sha256: Sha256::of(bytes) };
    let bytes = data::bytes(21, ctx.large + 777);
    let k = key("adopted/object");
    // A digest the caller did not expect: refused before anything moves.
    let other = data::bytes(22, 100);
    let err = store
        .promote_adopted(&k, &path, write(&bytes), digest(&bytes), &exact(&other), Mode::Create)
        .await
        .expect_err("a digest other than expected");
    assert!(matches!(err, Error::DigestMismatch { .. } | Error::SizeMismatch { .. }), "{err}");
    assert_eq!(std::fs::read(&path).expect("the file stays"), bytes);
    assert_absent(&store, &k).await;
    // A file that is not the size the caller says is never taken: left as it was.
    let longer = Digest { size: bytes.len() as u64 + 1, ..digest(&bytes) };
    let expected_longer = Expected::exactly(longer);
    let declined = store.promote_adopted(&k, &path, write(&bytes), longer, &expected_longer, Mode::Create).await;
    assert!(declined.expect("a file of another size").is_none(), "a file of another size was taken");
    assert_eq!(std::fs::read(&path).expect("the file stays"), bytes);
    assert_absent(&store, &k).await;
    match store.promote_adopted(&k, &path, write(&bytes), digest(&bytes), &exact(&bytes), Mode::Create).await {
        Ok(Some(outcome)) => {
            assert_eq!((outcome.receipt().sha256, outcome.receipt().size), (Sha256::of(&bytes), bytes.len() as u64));
            assert!(!path.exists(), "an adopted file is moved, not copied");
            assert!(get(&store, &k).await == bytes, "the adopted object differs");
            // The key is taken now: another file for it is a conflict, and the object stays.
            let taken = data::bytes(23, bytes.len());
            let err = store
                .promote_adopted(&k, &path, write(&taken), digest(&taken), &exact(&taken), Mode::Create)
                .await
                .expect_err("create-only onto a taken key");
            assert!(matches!(err, Error::Conflict { .. }), "{err}");
            assert!(get(&store, &k).await == bytes, "a refused adoption changed the object");
        }
        Ok(None) => {
            // Local disk and OpenDAL's staging take a file on their filesystem (here both are
            // under the temporary directory; the file is over OpenDAL's multipart threshold).
            let kind = store.backend().kind();
            assert!(!matches!(kind, "local" | "opendal"), "{kind} declined a file on its own filesystem");
            assert_eq!(std::fs::read(&path).expect("a declined file stays"), bytes, "a declined file was changed");
            assert_absent(&store, &k).await;
        }
        Err(err) => panic!("promote_adopted: {err}"),
    }
    assert_no_residue_anywhere(&ctx, "after adoptions").await;
}

async fn sweep_removes_stale_staging_only(target: Ctx) {
    let store = target.store.clone();
    // A writer that really died: another process staged 12 MiB, then got SIGKILL.
    let dead = tokio::task::spawn_blocking(move || target.spawn_writer("sweep/dead", 12 << 20)).await.expect("spawn");
    let before = leftovers(&store).await;
    assert!(!before.is_empty(), "the child writer's staging data is findable before it dies");
    dead.kill();

    // A live writer, touched just now, in this process.
    let live_key = key("sweep/live");
    let mut live = store.stage(&live_key, &Expected::default()).await.expect("stage");
    let bytes = data::bytes(17, 12 << 20);
    for chunk in data::chunks(&bytes, 1 << 20) {
        live.write(chunk).await.expect("write");
    }

    // Nothing here is an hour old: only a dead writer's leftovers may go, and they go at once.
    let swept = store.sweep_staging(Duration::from_secs(3600), false).await.expect("sweep");
    let removed: Vec<&Leftover> = swept.iter().filter(|l| l.removed).collect();
    assert!(!removed.is_empty(), "the dead writer's leftovers are removed at once: {swept:?}");
    live.promote(&exact(&bytes), plain(&store)).await.expect("the live writer still promotes");
    assert_eq!(get(&store, &live_key).await, bytes);
    assert_absent(&store, &key("sweep/dead")).await;
    assert_no_residue(&store, "after the sweep").await;
}

/// Writes `bytes` into `staged` in uneven chunks.
async fn write_all(staged: &mut promote_core::Staged, bytes: &[u8]) {
    for chunk in bytes.chunks((1 << 20) + 7) {
        staged.write(Bytes::copy_from_slice(chunk)).await.expect("write");
    }
}

/// A resumable write (`Store::stage_resumable`) checkpoints, is dropped as by a crash, and a
/// new handle goes on from the point: the object is every byte, hashed in order, and nothing
/// is visible before. A point gone on from and published, or discarded, cannot be gone on
/// from again. Backends without resumable writes say so (`None`); S3 has them.
async fn resumable_write_goes_on_from_its_checkpoint(ctx: Ctx) {
    let store = ctx.store.clone();
    let k = key("resumed/object");
    let bytes = data::bytes(31, (13 << 20) + 321);
    let expected = exact(&bytes);
    let Some(mut first) = store.stage_resumable(&k, &expected, None).await.expect("stage") else {
        assert_ne!(store.backend().kind(), "s3", "S3 has resumable writes");
        return;
    };
    let cut = (7 << 20) + 5;
    write_all(&mut first, &bytes[..cut]).await;
    let point = first.checkpoint().await.expect("checkpoint");
    // Whole parts only: the part still filling is not durable.
    assert!(point.offset > 0 && point.offset < cut as u64, "checkpoint at {} of {cut} bytes written", point.offset);
    drop(first);
    assert_absent(&store, &k).await;
    // A point whose token was altered to name other bytes (where the token is JSON with an
    // offset, as S3's is) is not gone on from.
    if let Ok(mut token) = serde_json::from_str::<serde_json::Value>(&point.token)
        && let Some(offset) = token.get("offset").and_then(serde_json::Value::as_u64)
    {
        token["offset"] = (offset + 1).into();
        let altered = promote_core::ResumePoint { token: token.to_string(), ..point.clone() };
        let refused = store.stage_resumable(&k, &expected, Some(&altered)).await.expect("look");
        assert!(refused.is_none(), "a token naming {} bytes in parts of {offset} was gone on from", offset + 1);
    }
    let not_one = promote_core::ResumePoint { token: "not a token".into(), ..point.clone() };
    assert!(store.stage_resumable(&k, &expected, Some(&not_one)).await.expect("look").is_none(), "not a token");
    let mut second = store
        .stage_resumable(&k, &expected, Some(&point))
        .await
        .expect("go on")
        .expect("the checkpoint's bytes are still staged");
    let again = second.checkpoint().await.expect("checkpoint before writing");
    assert_eq!(again, point, "a handle gone on with holds the point's bytes and no others");
    write_all(&mut second, &bytes[point.offset as usize..]).await;
    let outcome = second.promote(&expected, Mode::Create).await.expect("promote the resumed write");
    assert_eq!((outcome.receipt().sha256, outcome.receipt().size), (Sha256::of(&bytes), bytes.len() as u64));
    assert!(get(&store, &k).await == bytes, "the resumed object differs");
    let used = store.stage_resumable(&k, &expected, Some(&point)).await.expect("look again");
    assert!(used.is_none(), "a point whose upload was published was gone on from again");

    // A point discarded is gone.
    let k2 = key("resumed/discarded");
    let mut third = store.stage_resumable(&k2, &expected, None).await.expect("stage").expect("resumable");
    write_all(&mut third, &bytes[..cut]).await;
    let point = third.checkpoint().await.expect("checkpoint");
    drop(third);
    store.discard_resumable(&k2, &point).await.expect("discard");
    assert!(store.stage_resumable(&k2, &expected, Some(&point)).await.expect("look").is_none(), "discarded");
    assert_absent(&store, &k2).await;
    assert_no_residue_anywhere(&ctx, "after a resumed write and a discarded one").await;
}
