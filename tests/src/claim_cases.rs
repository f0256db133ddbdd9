//! The claim suite: [`promote_core::kit::claims`] against every backend that offers a
//! [`ControlStore`], and the S3 completion path that uses it. Each case is named after the
//! promise it checks (the names match the **Atomicity** bullets of `promote_core::kit::claims`).
//!
//! Leases here are seconds long, so cases wait for real expiry. S3 stamps `Last-Modified` and
//! `Date` to the second, so a claim's measured age may be up to a second off either way; the
//! waits below allow for that.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use libtest_mimic::{Arguments, Failed, Trial};
use promote_core::kit::claims::{ClaimRecord, Clock, ControlStore, key_claim_name};
use promote_core::kit::{Claims, Owner};
use promote_core::{Bytes, Error, Expected, Key, Mode, Sha256, Store};

use crate::{Factory, data};

/// One backend under the claim suite.
pub struct ClaimSuite {
    /// Prefix of every case name.
    pub name: &'static str,
    /// Objects above this size are multipart uploads whose completion takes a claim (`None`:
    /// the backend never completes multipart uploads; those cases are ignored).
    pub multipart_threshold: Option<u64>,
    /// Makes a fresh, empty store per case. Its backend must offer a control store.
    pub factory: Factory,
    /// A second client on the same storage as the fixture's (S3: another backend instance on
    /// the same prefix), for listings independent of the code under test.
    pub independent: fn(&Store) -> BoxFuture<'static, Arc<dyn ControlStore>>,
}

struct Ctx {
    store: Store,
    control: Arc<dyn ControlStore>,
    independent: Arc<dyn ControlStore>,
    threshold: Option<u64>,
}

type CaseFn = fn(Ctx) -> BoxFuture<'static, ()>;

macro_rules! claim_cases {
    ($($name:ident: $multipart:literal),* $(,)?) => {
        const ALL: &[(&str, bool, CaseFn)] = &[$((stringify!($name), $multipart, |c| Box::pin($name(c)))),*];
    };
}

claim_cases! {
    one_holder_at_a_time: false,
    expired_claim_is_taken_over: false,
    dead_owner_is_taken_over_at_once: false,
    other_host_or_namespace_judged_by_age: false,
    renewal_keeps_a_slow_holder_safe: false,
    stale_holder_cannot_fence_or_remove: false,
    skewed_local_clock_changes_nothing: false,
    dropped_holder_releases: false,
    a_wait_for_a_held_claim_gives_up_in_time: false,
    sweep_removes_dead_and_old_claims_only: false,
    replace_if_version_multipart_checks_the_version_not_the_key: true,
    dropped_multipart_writer_releases_its_claim: true,
}

/// Runs every claim case against every suite, libtest-style.
pub fn run(suites: Vec<ClaimSuite>) -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for suite in suites {
        let suite = Arc::new(suite);
        for &(case, multipart, run) in ALL {
            let name = format!("{}::{case}", suite.name);
            let skip = (multipart && suite.multipart_threshold.is_none())
                .then_some("the backend completes no multipart uploads, so takes no completion claims");
            if let Some(reason) = skip
                && !args.list
            {
                eprintln!("ignored {name}: {reason}");
            }
            let suite = Arc::clone(&suite);
            let trial = Trial::test(name, move || {
                if let Some(reason) = skip {
                    return Err(Failed::from(format!("not supported by this backend: {reason}")));
                }
                let runtime = crate::case_runtime()?;
                runtime.block_on(async move {
                    let fixture = (suite.factory)().await;
                    let store = fixture.store.clone();
                    let control = store.backend().control().expect("the backend offers a control store");
                    let independent = (suite.independent)(&store).await;
                    run(Ctx { store, control, independent, threshold: suite.multipart_threshold }).await;
                    drop(fixture);
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
                Ok(())
            });
            trials.push(trial.with_ignored_flag(skip.is_some()));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

// ---- helpers ----------------------------------------------------------------------------------

/// A short lease, and how long to wait to be sure it ran out by the server's second-resolution
/// clock.
const SHORT: Duration = Duration::from_secs(2);
const PAST_SHORT: Duration = Duration::from_millis(3300);
const LONG: Duration = Duration::from_secs(120);

/// A live process on another host.
fn other_host() -> Owner {
    Owner { host: "elsewhere.example".into(), ..Owner::me() }
}

/// A process in another pid namespace (another container on this host) whose pid, read in
/// *our* namespace, would look dead.
fn other_namespace() -> Owner {
    let me = Owner::me();
    Owner { pid_ns: me.pid_ns ^ 0x5a5a, start: me.start + 1, ..me }
}

/// A process on this host, boot and namespace that is gone.
fn dead_here() -> Owner {
    let me = Owner::me();
    Owner { start: me.start + 1, ..me }
}

fn claims(ctx: &Ctx) -> Claims {
    Claims::new(Arc::clone(&ctx.control))
}

async fn claim_names(control: &Arc<dyn ControlStore>) -> Vec<String> {
    control.list("claims/").await.expect("list claims")
}

/// Waits up to 10 s for no claim to be listed by the independent client.
async fn assert_no_claims(ctx: &Ctx, when: &str) {
    for _ in 0..100 {
        if claim_names(&ctx.independent).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("claims left {when}: {:?}", claim_names(&ctx.independent).await);
}

#[derive(Debug)]
struct Skewed {
    ahead: bool,
    by: Duration,
}

impl Clock for Skewed {
    fn now(&self) -> SystemTime {
        if self.ahead { SystemTime::now() + self.by } else { SystemTime::now() - self.by }
    }
}

fn key(k: &str) -> Key {
    Key::new(k).expect("valid test key")
}

async fn put(store: &Store, k: &Key, bytes: &[u8], mode: Mode) -> Result<promote_core::Outcome, Error> {
    let expected = Expected { size: Some(bytes.len() as u64), sha256: Some(Sha256::of(bytes)) };
    let chunks = data::chunks(bytes, 1 << 20).into_iter().map(Ok::<_, std::io::Error>);
    store.promote_stream(k, futures_util::stream::iter(chunks), &expected, mode).await
}

// ---- cases ------------------------------------------------------------------------------------

async fn one_holder_at_a_time(ctx: Ctx) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let claims = claims(&ctx);
            tokio::spawn(async move { claims.try_acquire("claims/race.json", LONG).await.expect("try_acquire") })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        held.extend(task.await.expect("task"));
    }
    assert_eq!(held.len(), 1, "exactly one of eight racing acquirers holds the claim");
    assert!(held.pop().expect("one").release().await.expect("release"), "the holder removes its claim");
    assert_no_claims(&ctx, "after release").await;
}

async fn expired_claim_is_taken_over(ctx: Ctx) {
    let name = "claims/expired.json";
    let first = claims(&ctx).as_owner(other_host()).try_acquire(name, SHORT).await.expect("acquire");
    let first = first.expect("a free name is taken");
    assert!(claims(&ctx).try_acquire(name, LONG).await.expect("try").is_none(), "a fresh claim is not taken over");
    let started = tokio::time::Instant::now();
    let second = claims(&ctx).acquire(name, LONG, Duration::from_secs(15)).await.expect("taken over after expiry");
    assert!(started.elapsed() >= Duration::from_millis(900), "taken over before its lease ran out");
    assert!(first.renew().await.is_err() && first.is_lost(), "the expired holder's renewal finds it lost");
    assert!(second.release().await.expect("release"));
    assert!(!first.release().await.expect("release"), "the old holder had nothing left to remove");
}

async fn dead_owner_is_taken_over_at_once(ctx: Ctx) {
    let name = "claims/dead.json";
    let dead = claims(&ctx).as_owner(dead_here()).try_acquire(name, LONG).await.expect("acquire").expect("free");
    let taker = claims(&ctx).try_acquire(name, LONG).await.expect("try");
    let taker = taker.expect("a dead owner's claim is taken over at once, long before its lease ends");
    assert!(dead.fence().await.is_err());
    assert!(taker.release().await.expect("release"));
    assert_no_claims(&ctx, "after release").await;
}

async fn other_host_or_namespace_judged_by_age(ctx: Ctx) {
    let names = ["claims/far-host.json", "claims/far-ns.json"];
    let mut held = Vec::new();
    for (name, owner) in names.iter().zip([other_host(), other_namespace()]) {
        held.push(claims(&ctx).as_owner(owner).try_acquire(name, SHORT).await.expect("acquire").expect("free"));
        let taker = claims(&ctx).try_acquire(name, LONG).await.expect("try");
        assert!(taker.is_none(), "{name}: an owner we cannot check is not declared dead");
    }
    tokio::time::sleep(PAST_SHORT).await;
    for name in names {
        let taker = claims(&ctx).try_acquire(name, LONG).await.expect("try");
        assert!(taker.expect("taken over once its lease ran out").release().await.expect("release"));
    }
}

async fn renewal_keeps_a_slow_holder_safe(ctx: Ctx) {
    let name = "claims/slow.json";
    let lease = Duration::from_secs(3);
    let mut holder = claims(&ctx).as_owner(other_host()).try_acquire(name, lease).await.expect("acquire");
    let mut holder = holder.take().expect("free");
    holder.keep_alive();
    let contender = claims(&ctx);
    let until = tokio::time::Instant::now() + lease * 3 + Duration::from_millis(500);
    let mut attempts = 0;
    while tokio::time::Instant::now() < until {
        let taken = contender.try_acquire(name, LONG).await.expect("try");
        assert!(taken.is_none(), "a renewed claim was taken over after {attempts} attempts");
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!holder.is_lost());
    holder.fence().await.expect("still ours after three lease periods");
    assert!(holder.release().await.expect("release"));
    let taken = contender.try_acquire(name, LONG).await.expect("try").expect("free after release");
    assert!(taken.release().await.expect("release"));
}

async fn stale_holder_cannot_fence_or_remove(ctx: Ctx) {
    let name = "claims/stale.json";
    let stale = claims(&ctx).as_owner(other_host()).try_acquire(name, SHORT).await.expect("acquire").expect("free");
    let stale_tag = stale.tag().await;
    let successor = claims(&ctx).acquire(name, LONG, Duration::from_secs(15)).await.expect("takeover");
    let err = stale.fence().await.expect_err("a stale holder's fence fails");
    assert!(err.is_retryable() && stale.is_lost(), "{err}");
    let err = ctx.control.remove(name, &stale_tag).await.expect_err("removing with a stale tag");
    assert!(matches!(err, Error::VersionMismatch { .. }), "{err}");
    assert!(!stale.release().await.expect("release"), "a stale holder removes nothing");
    let now = ctx.independent.read(name).await.expect("read").expect("the successor's claim is still there");
    assert_eq!(now.tag, successor.tag().await);
    successor.fence().await.expect("the successor's fence holds");
    assert!(successor.release().await.expect("release"));
    assert_no_claims(&ctx, "after the successor's release").await;
}

async fn skewed_local_clock_changes_nothing(ctx: Ctx) {
    let hour = Duration::from_secs(3600);
    let ahead = claims(&ctx).with_clock(Arc::new(Skewed { ahead: true, by: hour }));
    let behind = claims(&ctx).with_clock(Arc::new(Skewed { ahead: false, by: hour }));
    let names = ["claims/skew-a.json", "claims/skew-b.json"];
    let mut held = Vec::new();
    for name in names {
        held.push(claims(&ctx).as_owner(other_host()).try_acquire(name, SHORT).await.expect("acquire").expect("free"));
        // A clock an hour ahead would call a fresh claim an hour old.
        assert!(ahead.try_acquire(name, LONG).await.expect("try").is_none(), "+1h took over a fresh claim");
        assert!(behind.try_acquire(name, LONG).await.expect("try").is_none(), "-1h took over a fresh claim");
    }
    tokio::time::sleep(PAST_SHORT).await;
    // A clock an hour behind would call an expired claim not yet written.
    let a = behind.try_acquire(names[0], LONG).await.expect("try").expect("-1h: expired claim taken over");
    let b = ahead.try_acquire(names[1], LONG).await.expect("try").expect("+1h: expired claim taken over");
    // The skewed clocks were in use: they stamped the records.
    let record = ctx.independent.read(names[0]).await.expect("read").expect("held");
    let record: ClaimRecord = serde_json::from_slice(&record.body).expect("a claim record");
    let stamped = SystemTime::UNIX_EPOCH + Duration::from_millis(record.written_at_ms);
    let off = SystemTime::now().duration_since(stamped).unwrap_or_default();
    assert!(off > hour - Duration::from_secs(300), "the record was stamped by the skewed clock ({off:?} behind)");
    assert!(a.release().await.expect("release") && b.release().await.expect("release"));
}

async fn dropped_holder_releases(ctx: Ctx) {
    let mut held = claims(&ctx).try_acquire("claims/dropped.json", LONG).await.expect("acquire").expect("free");
    held.keep_alive();
    assert_eq!(claim_names(&ctx.independent).await, ["claims/dropped.json"]);
    drop(held);
    assert_no_claims(&ctx, "after dropping the holder").await;
}

async fn a_wait_for_a_held_claim_gives_up_in_time(ctx: Ctx) {
    let holder = other_host();
    let name = "claims/waited.json";
    let held = claims(&ctx).as_owner(holder.clone()).try_acquire(name, LONG).await.expect("acquire").expect("free");
    let patience = Duration::from_secs(2);
    // A plain claim wait.
    let started = tokio::time::Instant::now();
    let err = claims(&ctx).acquire(name, LONG, patience).await.expect_err("a live holder keeps its claim");
    let waited = started.elapsed();
    assert!(waited >= patience && waited < patience + Duration::from_secs(5), "gave up after {waited:?}");
    let text = err.to_string();
    assert!(err.is_retryable(), "{text}");
    assert!(text.contains(name) && text.contains("2s") && text.contains("elsewhere.example"), "{text}");
    // A committer waiting for the key's claim.
    let k = key("waited/object.bin");
    let commit = claims(&ctx).as_owner(holder).try_acquire(&key_claim_name(&k), LONG).await.expect("acquire");
    let commit = commit.expect("free");
    let started = tokio::time::Instant::now();
    let waiter = claims(&ctx).with_patience(patience);
    let err = waiter.acquire_commit(&k, &Mode::Create, "test", || async { Ok(false) }).await.expect_err("held");
    let waited = started.elapsed();
    assert!(waited >= patience && waited < patience + Duration::from_secs(5), "gave up after {waited:?}");
    let text = err.to_string();
    assert!(err.is_retryable(), "{text}");
    assert!(text.contains("waited/object.bin") && text.contains("2s") && text.contains("elsewhere.example"), "{text}");
    assert!(held.release().await.expect("release") && commit.release().await.expect("release"));
}

async fn sweep_removes_dead_and_old_claims_only(ctx: Ctx) {
    let plan =
        [("claims/s-dead.json", dead_here()), ("claims/s-live.json", Owner::me()), ("claims/s-far.json", other_host())];
    let mut held = Vec::new();
    for (name, owner) in plan {
        held.push(claims(&ctx).as_owner(owner).try_acquire(name, LONG).await.expect("acquire").expect("free"));
    }
    let sweeper = claims(&ctx);
    let dry = sweeper.sweep("claims/", Duration::from_secs(3600), true).await.expect("dry run");
    assert_eq!(dry.len(), 3);
    assert!(dry.iter().all(|l| !l.removed));
    let swept = sweeper.sweep("claims/", Duration::from_secs(3600), false).await.expect("sweep");
    let removed: Vec<_> = swept.iter().filter(|l| l.removed).map(|l| l.name.as_str()).collect();
    assert_eq!(removed, ["claim claims/s-dead.json"], "only the dead owner's claim goes: {swept:?}");
    assert!(swept.iter().any(|l| l.name == "claim claims/s-live.json" && l.live));
    let mut left = claim_names(&ctx.independent).await;
    left.sort();
    assert_eq!(left, ["claims/s-far.json", "claims/s-live.json"]);
    // Past the cut-off, every claim goes.
    let swept = sweeper.sweep("claims/", Duration::ZERO, false).await.expect("sweep");
    assert!(swept.iter().all(|l| l.removed), "{swept:?}");
    assert_no_claims(&ctx, "after sweeping with no cut-off").await;
}

async fn replace_if_version_multipart_checks_the_version_not_the_key(ctx: Ctx) {
    let size = usize::try_from(ctx.threshold.expect("multipart")).expect("fits") + (1 << 20);
    let k = key("cas/multipart.bin");
    let (v1, v2, v3) = (data::bytes(1, size), data::bytes(2, size), data::bytes(3, size));
    put(&ctx.store, &k, &v1, Mode::Create).await.expect("create v1");
    let version = ctx.store.head(&k).await.expect("head").version.expect("a version");
    // Another host crashed while holding the key's completion claim: the swap waits for the
    // claim (not for the object, which is expected to be there) and the server checks the
    // version with If-Match on the completion.
    let crashed = claims(&ctx).as_owner(other_host()).try_acquire(&key_claim_name(&k), SHORT).await.expect("claim");
    let crashed = crashed.expect("free");
    put(&ctx.store, &k, &v2, Mode::ReplaceIfVersion(version.clone())).await.expect("swap at the right version");
    assert!(crashed.is_lost() || crashed.fence().await.is_err(), "the swap took the claim over");
    let (_, stream) = ctx.store.read_verified(&k).await.expect("read");
    let got: Vec<Bytes> = futures_util::TryStreamExt::try_collect(stream).await.expect("read");
    assert_eq!(got.concat(), v2, "the swap published v2");
    let err = put(&ctx.store, &k, &v3, Mode::ReplaceIfVersion(version)).await.expect_err("stale version");
    assert!(matches!(err, Error::VersionMismatch { .. }), "a stale version is a mismatch (exit 3): {err}");
    assert_eq!(ctx.store.head(&k).await.expect("head").sha256, Some(Sha256::of(&v2)), "v2 stays");
    drop(crashed);
    assert_no_claims(&ctx, "after the swaps").await;
}

async fn dropped_multipart_writer_releases_its_claim(ctx: Ctx) {
    let size = usize::try_from(ctx.threshold.expect("multipart")).expect("fits") + (1 << 20);
    for attempt in 0..8 {
        let k = key(&format!("dropped/{attempt}.bin"));
        let bytes = data::bytes(attempt, size);
        let expected = Expected { size: Some(size as u64), sha256: Some(Sha256::of(&bytes)) };
        let mut staged = ctx.store.stage(&k, &expected).await.expect("stage");
        for chunk in data::chunks(&bytes, 1 << 20) {
            staged.write(chunk).await.expect("write");
        }
        let publish = tokio::spawn(async move { staged.promote(&expected, Mode::Create).await });
        // Watch, with the independent client, for the writer to hold its claim; then cancel.
        // Each look is a listing (a request on S3); a short pause between looks keeps the loop
        // from spinning on a store that answers at once (memory), and the whole watch is bounded.
        let mut seen = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !publish.is_finished() && tokio::time::Instant::now() < deadline {
            if !claim_names(&ctx.independent).await.is_empty() {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if !seen {
            publish.await.expect("task").expect("publish");
            continue;
        }
        publish.abort();
        let _ = publish.await;
        assert_no_claims(&ctx, "after cancelling a writer that held its claim").await;
        return;
    }
    panic!("never saw the writer holding its claim in 8 attempts; cannot check its release");
}
