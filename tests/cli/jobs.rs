//! `put DIR --jobs N` for any N: promote's own threads, not tokio's blocking pool, so a put
//! asking for more than tokio's 512 blocking threads finishes; and within the open-file limit,
//! so a put asking for more files at once than `ulimit -n` allows lowers `--jobs` (saying so
//! once) instead of failing files.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;

/// How long a put of a tree below may take before it counts as hung.
const LIMIT: Duration = Duration::from_secs(60);

/// Writes `n` one-line files under `<scratch>/src`, spread over a few directories; returns
/// relative path → bytes.
fn tree(s: &Scratch, n: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..n {
        let rel = format!("d{}/f{i}", i % 7);
        let path = s.path().join("src").join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = format!("line {i}\n").into_bytes();
        std::fs::write(&path, &bytes).unwrap();
        files.insert(rel, bytes);
    }
    files
}

/// Every file has its receipt on stdout (`--json`) and its object under `x/` with its bytes.
#[track_caller]
fn assert_all_promoted(s: &Scratch, out: &std::process::Output, files: &BTreeMap<String, Vec<u8>>, case: &str) {
    let receipts: Vec<serde_json::Value> =
        stdout(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{case}: {l}: {e}"))).collect();
    let keys: Vec<&str> = receipts.iter().map(|r| r["key"].as_str().unwrap_or_default()).collect();
    let want: Vec<String> = files.keys().map(|rel| format!("x/{rel}")).collect();
    assert_eq!(keys, want, "{case}: the receipts do not list every file once, in order");
    assert!(receipts.iter().all(|r| r["outcome"] == "promoted"), "{case}: a file was not promoted");
    for (rel, bytes) in files {
        let stored = std::fs::read(s.root().join("x").join(rel)).unwrap_or_else(|e| panic!("{case}: x/{rel}: {e}"));
        assert_eq!(&stored, bytes, "{case}: x/{rel} holds other bytes");
    }
}

#[test]
fn a_put_asking_for_more_jobs_than_tokio_has_blocking_threads_finishes() {
    for jobs in ["513", "4096"] {
        let s = Scratch::new();
        let files = tree(&s, 1500);
        let out = output_within(s.cmd(&["put", "src", "x/", "--jobs", jobs, "--json"]), LIMIT);
        let case = format!("--jobs {jobs}");
        assert_code(&out, 0);
        assert_all_promoted(&s, &out, &files, &case);
    }
}

#[test]
fn a_put_asking_for_more_files_at_once_than_the_open_file_limit_allows_lowers_jobs_once_and_fails_none() {
    // With group commit, the files of a batch wait for their flush holding their staging files:
    // that is where many files are open at once.
    for durability in ["batch", "each"] {
        let s = Scratch::new();
        let files = tree(&s, 600);
        let args = ["put", "--durability", durability, "src", "x/", "--jobs", "1000", "--json"];
        let out = output_within(s.with_open_file_limit(256, &args), LIMIT);
        let case = format!("--durability {durability} under ulimit -n 256");
        assert_code(&out, 0);
        let err = stderr(&out);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
        assert_eq!(warnings.len(), 1, "{case}: one warning line expected:\n{err}");
        assert!(
            warnings[0].starts_with("promote: warning: --jobs 1000 lowered to ")
                && warnings[0].contains("the open-file limit is 256 (ulimit -n)"),
            "{case}: {}",
            warnings[0]
        );
        assert!(err.contains(" 0 failed"), "{case}: {err}");
        assert_all_promoted(&s, &out, &files, &case);
    }
}
