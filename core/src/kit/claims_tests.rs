//! Unit tests of the claim protocol against an in-memory [`ControlStore`] whose server clock is
//! tokio's (paused) clock: leases, patience and back-off are checked to the millisecond, with no
//! real waiting. The same promises against real storage are the claim suite (`tests/claims`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex as StdMutex;

use super::*;

/// A control store in memory. Its server clock starts at an hour past the epoch and runs with
/// tokio's clock; faults can be queued per verb.
#[derive(Debug)]
struct Memory {
    objects: StdMutex<HashMap<String, (Bytes, Tag, SystemTime)>>,
    next_tag: std::sync::atomic::AtomicU64,
    started: tokio::time::Instant,
    /// Errors the next calls of a verb return, before touching anything.
    faults: StdMutex<HashMap<&'static str, VecDeque<Error>>>,
    /// Calls per verb.
    calls: StdMutex<HashMap<&'static str, usize>>,
    /// What the next `create` does once it has written (its answer lost, or an error).
    after_create: StdMutex<VecDeque<After>>,
}

/// How a `create` that wrote ends, as a client sees it.
#[derive(Debug)]
enum After {
    /// No answer ever comes (the request is cancelled while it waits).
    Hang,
    /// An error comes back, though the write was applied.
    Fail(Error),
}

impl Memory {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            objects: StdMutex::new(HashMap::new()),
            next_tag: std::sync::atomic::AtomicU64::new(1),
            started: tokio::time::Instant::now(),
            faults: StdMutex::new(HashMap::new()),
            calls: StdMutex::new(HashMap::new()),
            after_create: StdMutex::new(VecDeque::new()),
        })
    }

    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(3600) + self.started.elapsed()
    }

    fn tag(&self) -> Tag {
        Tag(format!("t{}", self.next_tag.fetch_add(1, Ordering::SeqCst)))
    }

    fn enter(&self, verb: &'static str) -> Result<(), Error> {
        *self.calls.lock().unwrap().entry(verb).or_default() += 1;
        match self.faults.lock().unwrap().get_mut(verb).and_then(VecDeque::pop_front) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn fail(&self, verb: &'static str, err: Error) {
        self.faults.lock().unwrap().entry(verb).or_default().push_back(err);
    }

    fn calls(&self, verb: &'static str) -> usize {
        self.calls.lock().unwrap().get(verb).copied().unwrap_or(0)
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.objects.lock().unwrap().keys().cloned().collect();
        names.sort();
        names
    }
}

#[async_trait]
impl ControlStore for Memory {
    async fn create(&self, name: &str, body: Bytes) -> Result<Tag, Error> {
        self.enter("create")?;
        let tag = {
            let mut objects = self.objects.lock().unwrap();
            if objects.contains_key(name) {
                return Err(Error::AlreadyExists { key: name.into() });
            }
            let tag = self.tag();
            objects.insert(name.into(), (body, tag.clone(), self.now()));
            tag
        };
        let after = self.after_create.lock().unwrap().pop_front();
        match after {
            None => Ok(tag),
            Some(After::Fail(err)) => Err(err),
            Some(After::Hang) => std::future::pending().await,
        }
    }

    async fn replace(&self, name: &str, body: Bytes, tag: &Tag) -> Result<Tag, Error> {
        self.enter("replace")?;
        let mut objects = self.objects.lock().unwrap();
        match objects.get(name) {
            Some((_, current, _)) if current == tag => {
                let new = self.tag();
                objects.insert(name.into(), (body, new.clone(), self.now()));
                Ok(new)
            }
            _ => Err(Error::VersionMismatch { key: name.into(), expected: tag.0.clone() }),
        }
    }

    async fn read(&self, name: &str) -> Result<Option<ControlObject>, Error> {
        self.enter("read")?;
        Ok(self.objects.lock().unwrap().get(name).map(|(body, tag, modified)| ControlObject {
            body: body.clone(),
            tag: tag.clone(),
            modified: *modified,
            server_now: self.now(),
        }))
    }

    async fn remove(&self, name: &str, tag: &Tag) -> Result<(), Error> {
        self.enter("remove")?;
        let mut objects = self.objects.lock().unwrap();
        match objects.get(name) {
            None => Err(Error::NotFound { key: name.into() }),
            Some((_, current, _)) if current != tag => {
                Err(Error::VersionMismatch { key: name.into(), expected: tag.0.clone() })
            }
            Some(_) => {
                objects.remove(name);
                Ok(())
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.enter("list")?;
        Ok(self.names().into_iter().filter(|n| n.starts_with(prefix)).collect())
    }
}

fn claims(store: &Arc<Memory>) -> Claims {
    Claims::new(Arc::clone(store) as Arc<dyn ControlStore>)
}

/// A live process on another host: judged by age alone.
fn far() -> Owner {
    Owner { host: "far.example".into(), ..Owner::me() }
}

/// A process on this host, boot and namespace that is gone.
fn dead() -> Owner {
    let me = Owner::me();
    Owner { start: me.start + 1, ..me }
}

fn transient() -> Error {
    Error::Backend { backend: "memory".into(), context: "busy".into(), retryable: true, source: "503".into() }
}

fn fatal() -> Error {
    Error::Backend { backend: "memory".into(), context: "denied".into(), retryable: false, source: "403".into() }
}

const LEASE: Duration = Duration::from_secs(10);

/// Runs a test's body, then waits for the background releases of the claims it dropped
/// ([`crate::kit::cleanup`]), so none is left pending when its runtime ends.
async fn settled(body: impl std::future::Future<Output = ()>) {
    body.await;
    crate::kit::cleanup::settle(Duration::from_secs(10)).await;
}

#[test]
fn the_key_claim_name_is_the_first_32_hex_digits_of_the_keys_sha256() {
    let key = crate::Key::new("a/b.bin").unwrap();
    let hex = crate::Sha256::of(b"a/b.bin").to_string();
    assert_eq!(key_claim_name(&key), format!("claims/{}.json", &hex[..32]));
    assert_eq!(Tag("etag-1".into()).to_string(), "etag-1");
}

#[tokio::test(start_paused = true)]
async fn a_claim_records_its_owner_lease_and_the_local_time() {
    settled(async {
        let store = Memory::new();
        let held = claims(&store).as_owner(far()).try_acquire("claims/r", LEASE).await.unwrap().expect("free");
        assert_eq!((held.name(), held.lease()), ("claims/r", LEASE));
        assert!(format!("{held:?}").contains("claims/r"));
        let state = claims(&store).inspect("claims/r").await.unwrap().expect("held");
        let record = state.record.expect("a readable record");
        assert_eq!(
            (record.name.as_str(), record.owner.host.as_str(), record.lease()),
            ("claims/r", "far.example", LEASE)
        );
        let stamped = SystemTime::UNIX_EPOCH + Duration::from_millis(record.written_at_ms);
        let off = SystemTime::now().duration_since(stamped).unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(60), "stamped {off:?} away from the local clock");
        assert_eq!(state.tag, held.tag().await);
    })
    .await;
}

/// A claim is expired only once its age (server time) is past its own lease, not at it.
#[tokio::test(start_paused = true)]
async fn a_lease_runs_out_by_the_server_clock_just_after_the_lease() {
    settled(async {
        let store = Memory::new();
        let _held = claims(&store).as_owner(far()).try_acquire("claims/e", LEASE).await.unwrap().expect("free");
        tokio::time::advance(LEASE).await;
        let state = claims(&store).inspect("claims/e").await.unwrap().expect("held");
        assert_eq!(state.age, LEASE);
        assert!(!state.expired && !state.takeable(), "expired at exactly its lease: {state:?}");
        assert!(claims(&store).try_acquire("claims/e", Duration::from_secs(1)).await.unwrap().is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        let state = claims(&store).inspect("claims/e").await.unwrap().expect("held");
        assert!(state.expired && state.takeable(), "{state:?}");
        let taker = claims(&store).try_acquire("claims/e", LEASE).await.unwrap().expect("expired: taken over");
        assert!(taker.release().await.unwrap());
    })
    .await;
}

/// A dead owner's claim is taken at once; a live or unknown one is not, whatever the taker's
/// own lease; this process's own live claim neither.
#[tokio::test(start_paused = true)]
async fn only_a_dead_owner_loses_an_unexpired_claim() {
    settled(async {
        let store = Memory::new();
        let dead = claims(&store).as_owner(dead()).try_acquire("claims/d", LEASE).await.unwrap().expect("free");
        let taker = claims(&store).try_acquire("claims/d", LEASE).await.unwrap().expect("a dead owner's claim");
        assert!(dead.fence().await.is_err() && dead.is_lost());
        assert!(taker.release().await.unwrap());
        let live = claims(&store).try_acquire("claims/l", LEASE).await.unwrap().expect("free");
        assert!(claims(&store).try_acquire("claims/l", Duration::ZERO).await.unwrap().is_none(), "a live claim taken");
        let far = claims(&store).as_owner(far()).try_acquire("claims/f", LEASE).await.unwrap().expect("free");
        assert!(claims(&store).try_acquire("claims/f", LEASE).await.unwrap().is_none(), "an unknown owner taken");
        assert!(live.release().await.unwrap() && far.release().await.unwrap());
        assert!(store.names().is_empty());
    })
    .await;
}

/// A record that cannot be read is judged by age against the reader's lease.
#[tokio::test(start_paused = true)]
async fn an_unreadable_claim_is_judged_by_the_readers_lease() {
    settled(async {
        let store = Memory::new();
        store.create("claims/u", Bytes::from_static(b"not json")).await.unwrap();
        assert!(claims(&store).try_acquire("claims/u", LEASE).await.unwrap().is_none());
        tokio::time::advance(LEASE + Duration::from_millis(1)).await;
        let state = claims(&store).inspect("claims/u").await.unwrap().expect("there");
        assert_eq!(state.liveness, Liveness::Unknown);
        let held = claims(&store).try_acquire("claims/u", LEASE).await.unwrap().expect("old enough for our lease");
        assert!(held.release().await.unwrap());
    })
    .await;
}

/// Transient failures are retried (after 20, 40, 80 ms), three times at most; other failures
/// are returned at once.
#[tokio::test(start_paused = true)]
async fn try_acquire_retries_transient_failures_three_times_with_back_off() {
    settled(async {
        let store = Memory::new();
        for _ in 0..3 {
            store.fail("create", transient());
        }
        let started = tokio::time::Instant::now();
        let held = claims(&store).try_acquire("claims/t", LEASE).await.unwrap().expect("the fourth create");
        assert_eq!(started.elapsed(), Duration::from_millis(20 + 40 + 80), "the back-off between the tries");
        assert_eq!(store.calls("create"), 4);
        assert!(held.release().await.unwrap());
        for _ in 0..4 {
            store.fail("create", transient());
        }
        let err = claims(&store).try_acquire("claims/t", LEASE).await.expect_err("four transient failures");
        assert!(err.is_retryable(), "{err}");
        store.fail("create", fatal());
        let err = claims(&store).try_acquire("claims/t", LEASE).await.expect_err("a fatal failure");
        assert!(!err.is_retryable());
        assert_eq!(store.calls("create"), 4 + 4 + 1, "a fatal failure is not retried");

        // The same for the takeover's conditional replace.
        let _old = claims(&store).as_owner(dead()).try_acquire("claims/x", LEASE).await.unwrap().expect("free");
        store.fail("replace", transient());
        store.fail("replace", transient());
        let started = tokio::time::Instant::now();
        let taken = claims(&store).try_acquire("claims/x", LEASE).await.unwrap().expect("taken on the third try");
        assert_eq!(started.elapsed(), Duration::from_millis(20 + 40));
        assert!(taken.release().await.unwrap());
        let _old = claims(&store).as_owner(dead()).try_acquire("claims/y", LEASE).await.unwrap().expect("free");
        store.fail("replace", fatal());
        assert!(!claims(&store).try_acquire("claims/y", LEASE).await.expect_err("fatal").is_retryable());
    })
    .await;
}

/// `acquire` polls every lease/10 (at least 50 ms, at most 1 s) and gives up after its patience
/// with a retryable error naming the claim and its holder.
#[tokio::test(start_paused = true)]
async fn acquire_polls_at_a_tenth_of_the_lease_and_gives_up_after_its_patience() {
    settled(async {
        let store = Memory::new();
        let held = claims(&store).as_owner(far()).try_acquire("claims/a", Duration::from_secs(600)).await.unwrap();
        let held = held.expect("free");
        let releaser = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1010)).await;
            held.release().await.unwrap()
        });
        let started = tokio::time::Instant::now();
        let lease = Duration::from_secs(2);
        let got = claims(&store).acquire("claims/a", lease, Duration::from_secs(60)).await.expect("released");
        assert_eq!(started.elapsed(), Duration::from_millis(1200), "polled every 200 ms");
        assert!(releaser.await.unwrap());
        assert!(got.release().await.unwrap());

        let _holder = claims(&store).as_owner(far()).try_acquire("claims/b", LEASE).await.unwrap().expect("free");
        let started = tokio::time::Instant::now();
        let err = claims(&store).acquire("claims/b", LEASE, Duration::from_secs(3)).await.expect_err("held");
        assert_eq!(started.elapsed(), Duration::from_secs(3), "gave up after exactly its patience");
        let text = err.to_string();
        assert!(err.is_retryable() && text.contains("claims/b") && text.contains("far.example"), "{text}");
    })
    .await;
}

/// A committer backs off from 100 ms by half again each time up to 2 s, stops waiting once the
/// object it would create exists, never does so for a replace, and gives up after its patience
/// (20 minutes by default) naming the key, the claim and its holder.
#[tokio::test(start_paused = true)]
async fn acquire_commit_backs_off_stops_on_an_existing_object_and_gives_up_in_time() {
    settled(async {
        let store = Memory::new();
        let key = crate::Key::new("k/commit").unwrap();
        let name = key_claim_name(&key);
        let _holder = claims(&store).as_owner(far()).try_acquire(&name, LEASE * 1000).await.unwrap().expect("free");

        let started = tokio::time::Instant::now();
        let waiter = claims(&store);
        let err =
            waiter.acquire_commit(&key, &crate::Mode::Create, "test", || async { Ok(false) }).await.expect_err("held");
        let waited = started.elapsed();
        assert_eq!(waited, COMMIT_PATIENCE, "the default patience");
        assert_eq!(COMMIT_PATIENCE, Duration::from_secs(20 * 60));
        let text = err.to_string();
        assert!(
            err.is_retryable() && text.contains("k/commit") && text.contains(&name) && text.contains("far.example")
        );
        // Polls after 100, 150, 225, … ms, then every 2 s: in 5 s, tries at 0, 0.1, 0.25, 0.475,
        // 0.81, 1.32, 2.08, 3.22, 4.93 and 5 s.
        let before = store.calls("create");
        let five = claims(&store).with_patience(Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        five.acquire_commit(&key, &crate::Mode::Create, "test", || async { Ok(false) }).await.expect_err("held");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(store.calls("create") - before, 10, "the back-off from 100 ms by half again each time");

        let exists = waiter.acquire_commit(&key, &crate::Mode::Create, "test", || async { Ok(true) }).await;
        assert!(matches!(exists, Err(Error::AlreadyExists { .. })), "{exists:?}");
        let replace = waiter.clone().with_patience(Duration::from_secs(1));
        let err = replace.acquire_commit(&key, &crate::Mode::Replace, "test", || async { Ok(true) }).await;
        assert!(matches!(&err, Err(Error::Backend { retryable: true, .. })), "a replace waits for the claim: {err:?}");

        // A transient failure while claiming is waited out; a fatal one is returned.
        store.fail("create", transient());
        store.fail("create", transient());
        store.fail("create", transient());
        store.fail("create", transient());
        let other = crate::Key::new("k/other").unwrap();
        let held = waiter.acquire_commit(&other, &crate::Mode::Create, "test", || async { Ok(false) }).await;
        assert!(held.expect("claimed after the transient failures").release().await.unwrap());
        store.fail("create", fatal());
        let err = waiter.acquire_commit(&other, &crate::Mode::Create, "test", || async { Ok(false) }).await;
        assert!(matches!(&err, Err(Error::Backend { retryable: false, .. })), "{err:?}");
    })
    .await;
}

/// A held claim renews every lease/3 in the background; a renewal that finds it changed marks
/// it lost and stops.
#[tokio::test(start_paused = true)]
async fn keep_alive_renews_every_third_of_the_lease_until_lost_or_released() {
    settled(async {
        let store = Memory::new();
        let mut held = claims(&store).as_owner(far()).try_acquire("claims/k", Duration::from_secs(3)).await.unwrap();
        let mut held = held.take().expect("free");
        held.keep_alive();
        held.keep_alive(); // a second call adds no second renewer
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(store.calls("replace"), 3, "renewed at 1, 2 and 3 s");
        let state = claims(&store).inspect("claims/k").await.unwrap().expect("held");
        assert!(state.age <= Duration::from_millis(500) && !state.expired, "{state:?}");
        // Someone else rewrites it: the next renewal finds it lost and the renewer stops.
        let current = store.read("claims/k").await.unwrap().expect("there");
        store.replace("claims/k", Bytes::from_static(b"{}"), &current.tag).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(held.is_lost());
        let renewer = held.keep_alive.as_ref().expect("a renewer");
        assert!(renewer.task.is_finished(), "the renewer of a lost claim keeps running");
        let replaces = store.calls("replace");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(store.calls("replace"), replaces, "a lost claim is not renewed again");
        assert!(held.renew().await.is_err(), "a lost claim cannot be renewed");
        assert!(!held.release().await.unwrap(), "nothing of ours to remove");
        assert_eq!(store.names(), ["claims/k"], "the new holder's claim stays");

        // A failed renewal request is retried at the next tick, not taken for a loss.
        let mut held = claims(&store).try_acquire("claims/m", Duration::from_secs(3)).await.unwrap().expect("free");
        held.keep_alive();
        store.fail("replace", transient());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!held.is_lost());
        assert_eq!(store.calls("replace"), replaces + 2, "the failed renewal and the next one");
        assert!(held.release().await.unwrap());
        let after = store.calls("replace");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(store.calls("replace"), after, "a released claim is not renewed");
    })
    .await;
}

/// A fence reads the claim: ours and young, it passes without a write; ours and past half its
/// lease, it renews; changed or gone, it fails and marks the claim lost.
#[tokio::test(start_paused = true)]
async fn a_fence_checks_the_tag_and_renews_past_half_the_lease() {
    settled(async {
        let store = Memory::new();
        let held = claims(&store).try_acquire("claims/f", LEASE).await.unwrap().expect("free");
        tokio::time::advance(LEASE / 2).await;
        held.fence().await.expect("ours");
        assert_eq!(store.calls("replace"), 0, "at exactly half its lease a fence does not renew");
        tokio::time::advance(Duration::from_millis(1)).await;
        held.fence().await.expect("ours");
        assert_eq!(store.calls("replace"), 1, "past half its lease a fence renews");
        assert_eq!(claims(&store).inspect("claims/f").await.unwrap().expect("held").age, Duration::ZERO);
        held.renew().await.expect("a renewal of our own claim");
        assert_eq!(store.calls("replace"), 2);
        let current = store.read("claims/f").await.unwrap().expect("there");
        store.replace("claims/f", Bytes::from_static(b"{}"), &current.tag).await.unwrap();
        let err = held.fence().await.expect_err("taken over");
        assert!(err.is_retryable() && err.to_string().contains("lost the claim"), "{err}");
        assert!(held.is_lost());
        assert!(held.fence().await.is_err(), "lost stays lost");

        let gone = claims(&store).try_acquire("claims/g", LEASE).await.unwrap().expect("free");
        let tag = gone.tag().await;
        store.remove("claims/g", &tag).await.unwrap();
        assert!(gone.fence().await.is_err() && gone.is_lost(), "a removed claim is lost");
        store.fail("read", fatal());
        let held = claims(&store).try_acquire("claims/h", LEASE).await.unwrap().expect("free");
        assert!(held.fence().await.is_err() && !held.is_lost(), "a failed read is an error, not a loss");
    })
    .await;
}

/// Dropping a held claim releases it in the background, after stopping its renewals.
#[tokio::test(start_paused = true)]
async fn a_dropped_claim_is_released() {
    settled(async {
        let store = Memory::new();
        let mut held = claims(&store).try_acquire("claims/drop", LEASE).await.unwrap().expect("free");
        held.keep_alive();
        drop(held);
        let gone = async {
            while !store.names().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the dropped claim was never removed");
        let released = claims(&store).try_acquire("claims/rel", LEASE).await.unwrap().expect("free");
        assert!(released.release().await.unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(store.calls("remove"), 2, "a released claim is not removed again when dropped");
    })
    .await;
}

/// An acquisition cancelled while its claim's write is out, after the server applied it, leaves
/// no claim behind (nobody would know its tag, and it would hold the key for a whole lease); a
/// claim someone else holds by the time the clean-up looks is left alone.
#[tokio::test(start_paused = true)]
async fn an_acquisition_cancelled_after_its_write_was_applied_leaves_no_claim() {
    settled(async {
        let store = Memory::new();
        let gone = |name: &'static str| {
            let store = Arc::clone(&store);
            async move {
                while store.names().iter().any(|n| n == name) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        store.after_create.lock().unwrap().push_back(After::Hang);
        let cut = tokio::time::timeout(Duration::from_secs(1), claims(&store).try_acquire("claims/cut", LEASE)).await;
        assert!(cut.is_err(), "the write was to hang");
        assert_eq!(store.names(), ["claims/cut"], "the server applied the write");
        tokio::time::timeout(Duration::from_secs(10), gone("claims/cut"))
            .await
            .expect("the cancelled acquisition's claim was never removed");

        store.after_create.lock().unwrap().push_back(After::Hang);
        let cut = tokio::time::timeout(Duration::from_secs(1), claims(&store).try_acquire("claims/taken", LEASE)).await;
        assert!(cut.is_err(), "the write was to hang");
        // Taken over before the clean-up (spawned when the acquisition was dropped) runs.
        let other = Bytes::from_static(b"someone else's record");
        store.objects.lock().unwrap().get_mut("claims/taken").unwrap().0 = other.clone();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(store.objects.lock().unwrap()["claims/taken"].0, other, "another holder's claim was removed");
        assert_eq!(store.calls("remove"), 1);
    })
    .await;
}

/// A write whose answer was an error although the server applied it is found, on the next try,
/// holding this acquisition's own record: the claim is this acquisition's, not a stranger's to
/// wait for.
#[tokio::test(start_paused = true)]
async fn a_claim_written_by_a_try_whose_answer_was_lost_is_taken_as_ours() {
    settled(async {
        let store = Memory::new();
        store.after_create.lock().unwrap().push_back(After::Fail(transient()));
        let held = claims(&store).try_acquire("claims/lost", LEASE).await.unwrap().expect("ours");
        assert_eq!(store.calls("create"), 2);
        assert_eq!(held.tag().await, store.objects.lock().unwrap()["claims/lost"].1);
        // Two acquisitions by one process at once write different records.
        let (a, b) = (claims(&store).record("claims/x", LEASE), claims(&store).record("claims/x", LEASE));
        assert_ne!(a, b);
        assert!(held.release().await.unwrap());
    })
    .await;
}

/// A sweep removes the claims of dead owners, and those at least its cut-off old; a dry run
/// removes nothing but reports the same verdicts.
#[tokio::test(start_paused = true)]
async fn sweep_removes_dead_and_old_claims_only() {
    settled(async {
        let store = Memory::new();
        let _dead = claims(&store).as_owner(dead()).try_acquire("claims/s-dead", LEASE).await.unwrap().expect("free");
        let _live = claims(&store).try_acquire("claims/s-live", LEASE).await.unwrap().expect("free");
        tokio::time::advance(Duration::from_secs(30)).await;
        let _far = claims(&store).as_owner(far()).try_acquire("claims/s-far", LEASE).await.unwrap().expect("free");
        let sweeper = claims(&store);
        let verdicts = |found: &[Leftover]| {
            let mut v: Vec<(String, bool, bool)> = found.iter().map(|l| (l.name.clone(), l.removed, l.live)).collect();
            v.sort();
            v
        };
        let dry = sweeper.sweep("claims/", Duration::from_secs(30), true).await.unwrap();
        assert!(dry.iter().all(|l| !l.removed) && store.names().len() == 3, "a dry run removed something");
        let found = sweeper.sweep("claims/", Duration::from_secs(30), false).await.unwrap();
        let want = [
            ("claim claims/s-dead".to_owned(), true, false),
            ("claim claims/s-far".to_owned(), false, false),
            ("claim claims/s-live".to_owned(), true, true),
        ];
        assert_eq!(verdicts(&found), want, "dead and 30 s old go, the fresh far one stays");
        assert_eq!(store.names(), ["claims/s-far"]);
        assert_eq!(found.iter().find(|l| l.name.ends_with("s-far")).and_then(|l| l.age), Some(Duration::ZERO));
    })
    .await;
}

/// A claim dropped where no runtime runs cannot be released (it expires), but its renewals stop:
/// a dropped claim is never kept alive.
#[test]
fn a_claim_dropped_outside_any_runtime_stops_renewing() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let store = runtime.block_on(async { Memory::new() });
    let held = runtime.block_on(async {
        let mut held = claims(&store).try_acquire("claims/o", Duration::from_millis(60)).await.unwrap().expect("free");
        held.keep_alive();
        held
    });
    drop(held);
    runtime.block_on(async {
        let before = store.calls("replace");
        // Ten renewal periods with no renewal.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.calls("replace"), before, "a dropped claim was renewed");
    });
    assert_eq!(store.names(), ["claims/o"], "without a runtime nothing removes it: it expires");
}
