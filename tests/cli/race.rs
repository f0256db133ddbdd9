//! Eight processes, one key, different bytes: exactly one wins.

use crate::support::*;

#[test]
fn eight_processes_one_key_one_winner() {
    let s = Scratch::new();
    let files = racer_files(&s, 50, 4 << 20);
    for round in 0..5 {
        let key = format!("race/{round}");
        let (w, outs) = race_eight(&format!("round {round}"), |i| s.cmd(&["put", &format!("f{i}"), &key, "--json"]));
        assert!(stdout(&outs[w]).contains("\"promoted\""), "{}", stdout(&outs[w]));
        assert!(std::fs::read(s.root().join(&key)).unwrap() == files[w], "the object is the winner's bytes");
    }
    assert!(s.staging_files().is_empty());
}
