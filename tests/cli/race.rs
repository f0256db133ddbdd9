//! Eight processes, one key, different bytes: exactly one wins.

use std::process::Stdio;

use promote_tests::data;

use crate::support::*;

#[test]
fn eight_processes_one_key_one_winner() {
    let s = Scratch::new();
    let files: Vec<Vec<u8>> = (0..8).map(|i| data::bytes(50 + i, 4 << 20)).collect();
    for (i, bytes) in files.iter().enumerate() {
        s.file(&format!("f{i}"), bytes);
    }
    for round in 0..5 {
        let key = format!("race/{round}");
        let children: Vec<_> = (0..8)
            .map(|i| {
                s.cmd(&["put", &format!("f{i}"), &key, "--json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let winners: Vec<usize> = (0..8).filter(|&i| code(&outs[i]) == 0).collect();
        assert_eq!(winners.len(), 1, "round {round}: exit codes {:?}", outs.iter().map(code).collect::<Vec<_>>());
        let w = winners[0];
        assert!(stdout(&outs[w]).contains("\"promoted\""));
        for (i, out) in outs.iter().enumerate().filter(|(i, _)| *i != w) {
            assert_code(out, 3);
            assert!(stderr(out).contains("conflicts"), "loser {i}: {}", stderr(out));
        }
        assert!(std::fs::read(s.root().join(&key)).unwrap() == files[w], "the object is the winner's bytes");
    }
    assert!(s.staging_files().is_empty());
}
