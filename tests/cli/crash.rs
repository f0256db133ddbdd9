//! SIGKILL at random moments: the key is absent or complete, and `recover` cleans up.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use promote_tests::data;

use crate::support::*;

#[test]
fn sigkill_mid_put_never_leaves_a_partial_object() {
    let s = Scratch::new();
    let bytes = data::bytes(7, 100 << 20);
    s.file("big.bin", &bytes);
    let want = sha(&bytes);

    // How long one whole put takes here, to spread the kills over it.
    let started = Instant::now();
    assert_code(&s.run(&["put", "big.bin", "warmup"]), 0);
    let full = started.elapsed();

    let mut seed = std::process::id() as u64 ^ started.elapsed().as_nanos() as u64;
    let (mut absent, mut complete, mut mid_staging) = (0, 0, 0);
    for i in 0..16 {
        let staged_before = s.staging_files().len();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_micros((seed >> 33) % (full.as_micros() as u64 + 1));
        let key = format!("crash/{i}");
        let mut child = s.cmd(&["put", "big.bin", &key]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // A kill that landed while the bytes were being staged leaves its staging file behind.
        let landed_mid_staging = s.staging_files().len() > staged_before;
        mid_staging += usize::from(landed_mid_staging);
        let path = s.root().join(&key);
        match std::fs::read(&path) {
            Ok(got) => {
                assert_eq!(got.len(), bytes.len(), "partial object at {key} after a kill at {delay:?}");
                assert_eq!(sha(&got), want, "wrong bytes at {key}");
                complete += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => absent += 1,
            Err(e) => panic!("{key}: {e}"),
        }
    }
    eprintln!("after 16 kills: {absent} absent ({mid_staging} killed mid-staging), {complete} complete");
    assert!(mid_staging > 0, "no kill landed while bytes were staged: the test proved nothing");
    let leftovers = s.staging_files();
    assert_eq!(leftovers.len(), mid_staging, "one staging file per kill mid-staging: {leftovers:?}");
    let out = s.run(&["recover"]);
    assert_code(&out, 0);
    for name in &leftovers {
        let line = stdout(&out).lines().find(|l| l.contains(name.as_str())).map(str::to_owned);
        assert!(line.as_deref().is_some_and(|l| l.starts_with("removed")), "recover did not remove {name}: {line:?}");
    }
    assert!(s.staging_files().is_empty(), "recover left {:?}", s.staging_files());
    // Reruns finish the job: every key ends up complete.
    for i in 0..16 {
        assert_code(&s.run(&["put", "big.bin", &format!("crash/{i}"), "--sha256", &want]), 0);
    }
}

#[test]
fn recover_reports_and_removes_a_dead_writers_staging() {
    let s = Scratch::new();
    let mut child = s.cmd(&["put", "-", "slow"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data::bytes(8, 2 << 20)).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.staging_files().is_empty() {
        assert!(Instant::now() < deadline, "no staging file appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A live writer's staging file is kept.
    let out = s.run(&["recover"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("kept"), "{}", stdout(&out));
    assert_eq!(s.staging_files().len(), 1);

    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert!(!s.root().join("slow").exists());
    let out = s.run(&["recover", "--dry-run"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("would remove"), "{}", stdout(&out));
    assert_eq!(s.staging_files().len(), 1);
    let out = s.run(&["recover", "--json"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("\"removed\""), "{}", stdout(&out));
    assert!(s.staging_files().is_empty());
}

#[test]
fn recover_removes_old_spool_files_and_keeps_fresh_ones() {
    let s = Scratch::new();
    let spool = s.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let old = spool.join(".promote-spool-old");
    let fresh = spool.join(".promote-spool-fresh");
    let unrelated = spool.join("keep-me");
    for path in [&old, &fresh, &unrelated] {
        std::fs::write(path, b"partial").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for path in [&old, &unrelated] {
        std::fs::File::options().write(true).open(path).unwrap().set_modified(two_hours_ago).unwrap();
    }
    let out = s.cmd(&["recover"]).env("PROMOTE_SPOOL_DIR", &spool).output().unwrap();
    assert_code(&out, 0);
    assert!(!old.exists(), "an abandoned spool file is removed: {}", stdout(&out));
    assert!(fresh.exists() && unrelated.exists(), "fresh spool files and other files are kept");
}
