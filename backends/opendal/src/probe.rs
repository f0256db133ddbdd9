//! `promote doctor` for this backend: does the service really refuse a second create-only
//! write, and does a race of concurrent create-only writes have exactly one winner? Asked live,
//! under `.promote/probe/`, never assumed.

use std::time::SystemTime;

use futures_util::future::join_all;
use opendal::options::WriteOptions;
use promote_core::{Check, RESERVED_SEGMENT};

use crate::backend::Inner;
use crate::errors;

/// Concurrent create-only writes in the race.
const RACERS: usize = 8;

fn create() -> WriteOptions {
    WriteOptions { if_not_exists: true, ..WriteOptions::default() }
}

/// The doctor's lines for this backend.
pub(crate) async fn checks(inner: &Inner) -> Vec<Check> {
    if let Some(reason) = inner.create_refused() {
        return vec![Check::warn(
            "create-only",
            format!("refused on this service: {reason}; promote with --replace only"),
        )];
    }
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let base = format!("{RESERVED_SEGMENT}/probe/{}-{nanos}", std::process::id());
    vec![second_write(inner, &format!("{base}-second")).await, race(inner, &format!("{base}-race")).await]
}

async fn second_write(inner: &Inner, path: &str) -> Check {
    const NAME: &str = "service refuses a second create-only write";
    if let Err(e) = inner.op.write_options(path, b"first".to_vec(), create()).await {
        return Check::fail(NAME, format!("could not write the probe object {path:?}: {e}"));
    }
    let second = inner.op.write_options(path, b"second".to_vec(), create()).await;
    let kept = inner.op.read(path).await.map(|b| b.to_vec());
    let _ = inner.op.delete(path).await;
    match (second, kept) {
        (Err(e), Ok(kept)) if errors::taken(&e) && kept == b"first" => {
            Check::pass(NAME, "refused (condition not met), object untouched")
        }
        (Ok(_), _) | (_, Ok(_)) => Check::fail(
            NAME,
            "UNSAFE: the service replaced the object; create-only cannot be trusted here (use --replace)",
        ),
        (Err(e), Err(_)) => Check::fail(NAME, format!("the second write failed otherwise: {e}")),
    }
}

async fn race(inner: &Inner, path: &str) -> Check {
    let name = format!("{RACERS} concurrent create-only writes have exactly one winner");
    let writes = (0..RACERS).map(|i| async move {
        let body = format!("racer {i}").into_bytes();
        (i, inner.op.write_options(path, body, create()).await)
    });
    let results = join_all(writes).await;
    let kept = inner.op.read(path).await.map(|b| b.to_vec());
    let _ = inner.op.delete(path).await;
    let winners: Vec<usize> = results.iter().filter(|(_, r)| r.is_ok()).map(|(i, _)| *i).collect();
    let odd: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .filter(|e| !errors::taken(e))
        .map(ToString::to_string)
        .collect();
    if !odd.is_empty() {
        return Check::fail(name, format!("writes failed otherwise: {}", odd.join("; ")));
    }
    match (winners.as_slice(), kept) {
        ([winner], Ok(kept)) if kept == format!("racer {winner}").into_bytes() => {
            Check::pass(name, format!("1 of {RACERS} won, {} refused, the winner's bytes kept", RACERS - 1))
        }
        ([_], _) => Check::fail(name, "UNSAFE: one write won but the stored bytes are another's"),
        (w, _) => Check::fail(name, format!("UNSAFE: {} writes won (create-only is not atomic here)", w.len())),
    }
}
