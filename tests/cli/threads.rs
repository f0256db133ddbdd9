//! How a directory put spends threads on local disk (strace -f shows each thread's calls): a
//! small file is opened, staged, written and published by one thread, with no hand-off to the
//! blocking pool per step; a large one is read on one thread while others write.

use crate::support::*;

#[test]
fn a_small_file_is_promoted_on_one_thread_and_a_large_one_reads_and_writes_on_different_threads() {
    let s = Scratch::new();
    let mut files = Vec::new();
    for i in 0..12 {
        let rel = format!("d{}/f{i}", i % 3);
        files.push((rel, 4096 + i));
    }
    files.push(("big".to_owned(), 3 << 20));
    for (rel, len) in &files {
        let path = s.path().join("src").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, promote_tests::data::bytes(*len as u64, *len)).unwrap();
    }
    // The store on another filesystem than the sources, so the large file is streamed (from the
    // root's own filesystem it would be copied inside the kernel: tests/cli/kernel_copy.rs).
    let store = Mounted::tmpfs(&s.root(), "64m");
    let log = s.path().join("strace.txt");
    let out = s
        .strace(&log, "openat,read,pwrite64,renameat2", &["put", "src", "x/", "--jobs", "4"])
        .output()
        .expect("run strace");
    assert_code(&out, 0);
    let lines = trace(&log);
    let all = || lines.iter().map(|(p, l)| format!("{p} {l}")).collect::<Vec<_>>().join("\n");
    let root = std::fs::canonicalize(s.root()).unwrap().display().to_string();
    // Which thread opened the source, wrote the staged file and renamed it into place.
    let threads = |rel: &str| {
        let (dir, leaf) = rel.rsplit_once('/').map_or(("", rel), |(d, l)| (d, l));
        let into = if dir.is_empty() { format!("{root}/x") } else { format!("{root}/x/{dir}") };
        let target = format!("<{into}>, \"{leaf}\", RENAME_NOREPLACE");
        let (rename, _) = spans(&lines, "renameat2")
            .into_iter()
            .find(|&(start, end)| lines[start].1.contains(&target) && lines[end].1.ends_with("= 0"))
            .unwrap_or_else(|| panic!("no renameat2 onto x/{rel}:\n{}", all()));
        let l = &lines[rename].1;
        let staged = format!("{}/{}", &l[l.find('<').unwrap() + 1..l.find('>').unwrap()], l.split('"').nth(1).unwrap());
        let opened = lines
            .iter()
            .find(|(_, l)| l.starts_with("openat(") && l.contains(&format!("\"src/{rel}\"")))
            .unwrap_or_else(|| panic!("src/{rel} was never opened:\n{}", all()));
        let source = format!("<{}/src/{rel}>", std::fs::canonicalize(s.path()).unwrap().display());
        let readers: Vec<&str> = lines
            .iter()
            .filter(|(_, l)| l.starts_with("read(") && l.contains(&source))
            .map(|(p, _)| p.as_str())
            .collect();
        let writers: Vec<&str> = lines
            .iter()
            .filter(|(_, l)| l.starts_with("pwrite64(") && l.contains(&format!("<{staged}>")))
            .map(|(p, _)| p.as_str())
            .collect();
        assert!(!readers.is_empty() && !writers.is_empty(), "x/{rel}: no reads or no writes traced:\n{}", all());
        (opened.0.clone(), readers, writers, lines[rename].0.clone())
    };
    for (rel, _) in files.iter().filter(|(rel, _)| rel != "big") {
        let (opener, readers, writers, renamer) = threads(rel);
        assert!(
            readers.iter().chain(&writers).all(|p| *p == opener) && renamer == opener,
            "x/{rel}: opened on {opener}, read on {readers:?}, written on {writers:?}, renamed on {renamer}: a small \
             file must be promoted by one thread"
        );
    }
    let (_, readers, writers, _) = threads("big");
    // Reading and writing overlap on different threads: every write but at most one (the pool
    // may hand the reader's thread a last write once the reading is done) is on a thread that
    // never read the source.
    let elsewhere = writers.iter().filter(|w| !readers.contains(w)).count();
    assert!(
        writers.len() >= 2 && elsewhere + 1 >= writers.len(),
        "the large file was read on {readers:?} and written on {writers:?}: only {elsewhere} of {} writes were on a \
         thread that did not read",
        writers.len()
    );
    drop(store);
}

#[test]
fn ctrl_c_during_a_many_file_put_leaves_complete_objects_and_no_staging() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use rustix::process::{Pid, Signal, kill_process};

    let s = Scratch::new();
    for i in 0..3000 {
        let path = s.path().join(format!("src/d{}/f{i}", i % 10));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, promote_tests::data::bytes(i, 2048)).unwrap();
    }
    let mut child = s
        .cmd(&["put", "--durability", "each", "src", "x/", "--jobs", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the first receipts are out, while most files are still to come.
    let mut receipts = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen: Vec<String> = (0..20).map(|_| receipts.next().expect("a receipt").unwrap()).collect();
    let signalled = Instant::now();
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    let rest: Vec<String> = receipts.map_while(Result::ok).collect();
    seen.extend(rest.iter().cloned());
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "stderr: {}", stderr(&out));
    assert!(signalled.elapsed() < Duration::from_secs(10), "the put took {:?} to stop", signalled.elapsed());
    assert!(20 + rest.len() < 3000, "the put ran to the end despite the interrupt");
    assert!(s.staging_files().is_empty(), "staging left: {:?}", s.staging_files());
    // Every key with a receipt is there, with its source's bytes.
    let mut receipted = 0;
    for line in &seen {
        let mut words = line.split_whitespace();
        if words.next() != Some("promoted") {
            continue;
        }
        let k = words.next().expect("a key after `promoted`");
        let rel = k.strip_prefix("x/").unwrap_or_else(|| panic!("a receipt outside x/: {line}"));
        let got = std::fs::read(s.root().join(k)).unwrap_or_else(|e| panic!("{k} has a receipt but: {e}"));
        let i: u64 = rel.rsplit_once("/f").and_then(|(_, i)| i.parse().ok()).expect("src/dN/fI");
        assert!(got == promote_tests::data::bytes(i, 2048), "{k} has a receipt but is not its source's bytes");
        receipted += 1;
    }
    assert!(receipted >= 20, "only {receipted} of the receipts read were `promoted` lines: {seen:?}");
    // Whatever was published is whole: every object verifies against its stored digest.
    let verify = s.run(&["verify", "-r", "x"]);
    assert_code(&verify, 0);
}
