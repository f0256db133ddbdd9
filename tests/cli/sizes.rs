//! Sizes print one way everywhere: `5.0 KiB` (promote_core::kit::format_size), exact bytes only
//! where stat adds them and in JSON.

use crate::support::*;

#[test]
fn every_command_prints_sizes_the_same_way() {
    let s = Scratch::new();
    let bytes = vec![1u8; 5120];
    s.file("f", &bytes);
    std::fs::create_dir_all(s.path().join("d")).unwrap();
    s.file("d/f", &bytes);
    s.file("m.jsonl", b"{\"source\": \"f\", \"key\": \"fromrun\"}\n");
    let commands: [&[&str]; 9] = [
        &["put", "f", "k"],
        &["put", "d", "tree/"],
        &["get", "k", "out"],
        &["get", "-r", "tree/", "outdir"],
        &["verify", "k"],
        &["verify", "-r", "tree/"],
        &["ls", "-l"],
        &["stat", "k"],
        &["run", "m.jsonl", "--out", "run"],
    ];
    for args in commands {
        let out = s.run(args);
        assert_code(&out, 0);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains("5.0 KiB"), "{args:?}: {text}");
        let raw = text.replace("(5120 bytes)", "");
        assert!(!raw.contains("5120"), "{args:?} printed a raw byte count: {text}");
    }
    let out = s.run(&["doctor"]);
    let probe = stdout(&out).lines().find(|l| l.contains("probe: create-only publish")).unwrap().to_owned();
    assert!(probe.ends_with(" B)"), "{probe}");
}
