//! The manifest: JSON Lines, one item a line — `{"source", "key", "sha256"?, "size"?}`.
//!
//! A bad line never stops the run: it becomes a [`BadLine`] with its line number and reason,
//! reported and counted as failed, and the other lines proceed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use promote_core::{Expected, Key, Sha256};
use serde::Deserialize;

/// Where an item's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL: the item's `source_text`, checked when the manifest was
    /// read and parsed again when it is fetched ([`Item::url`]), so a long manifest's items do
    /// not each keep a parsed copy.
    Http,
    /// A local file, already resolved against the manifest's directory.
    Local(PathBuf),
}

/// One valid manifest line.
#[derive(Clone, Debug)]
pub struct Item {
    /// 1-based line number in the manifest.
    pub line: usize,
    /// The `source` field as written (part of the job key).
    pub source_text: String,
    /// The resolved source.
    pub source: Source,
    /// The destination key.
    pub key: Key,
    /// The promised size and digest, if given.
    pub expected: Expected,
}

impl Item {
    /// The URL of an HTTP source (`None` for a local one).
    ///
    /// # Errors
    ///
    /// When it does not parse, which reading the manifest already ruled out.
    pub fn url(&self) -> Option<Result<reqwest::Url, String>> {
        (self.source == Source::Http).then(|| resolve_url(&self.source_text))
    }
}

/// A line that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why, in a few words.
    pub reason: String,
    /// The key, if the line had a readable one.
    pub key: Option<String>,
    /// The source, if the line had a readable one.
    pub source: Option<String>,
}

/// One non-blank line of the manifest, in order.
pub type Entry = Result<Item, BadLine>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    source: Option<String>,
    key: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
}

/// Parses manifest `text`, line by line as the caller takes them; local sources are resolved
/// against `base` (the manifest's directory).
pub fn parse<'a>(text: &'a str, base: &'a Path) -> impl Iterator<Item = Entry> + 'a {
    lines(text.as_bytes(), 1, 0).map(move |(line, _, text)| parse_line(line, &text, base))
}

/// The non-blank lines of `bytes`, numbered from `first`: (line number, byte offset of the line
/// counted from `offset`, its text). Lines end at `\n`, a `\r` before it is dropped, bytes that
/// are not UTF-8 become U+FFFD (line by line, so the offsets stay those of the file).
pub(crate) fn lines(bytes: &[u8], first: usize, offset: u64) -> impl Iterator<Item = (usize, u64, Cow<'_, str>)> {
    let mut at = offset;
    bytes.split_inclusive(|&b| b == b'\n').enumerate().filter_map(move |(i, raw)| {
        let start = at;
        at += raw.len() as u64;
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw));
        (!text.trim().is_empty()).then_some((first + i, start, text))
    })
}

/// Bytes of manifest a parsing thread takes at a time.
const CHUNK: usize = 1 << 20;

/// The manifest's lines in `bytes` (numbered from `first`, at file offset `offset`), parsed on
/// `threads` threads: each takes runs of about [`CHUNK`] bytes of whole lines and applies
/// `prepare` to their entries with each line's file offset (the costly part: parsing,
/// hashing); `each` gets every prepared entry on the calling thread, in manifest order, as
/// runs complete. Runs parsed ahead of the next one due wait for it, a few at most (the
/// threads block), so memory stays that of the entries taken plus a few runs.
pub(crate) fn parse_each<T: Send>(
    bytes: &[u8],
    (first, offset): (usize, u64),
    base: &Path,
    threads: usize,
    prepare: impl Fn(u64, Entry) -> T + Sync,
    mut each: impl FnMut(T),
) {
    let parse_run = |&(first, start, run): &(usize, usize, &[u8])| {
        lines(run, first, offset + start as u64)
            .map(|(line, at, text)| prepare(at, parse_line(line, &text, base)))
            .collect::<Vec<T>>()
    };
    if threads <= 1 || bytes.len() <= CHUNK {
        runs(bytes, first).iter().flat_map(parse_run).for_each(each);
        return;
    }
    let runs = runs(bytes, first);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(usize, Vec<T>)>(threads);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (sender, next, runs, parse_run) = (sender.clone(), &next, &runs, &parse_run);
            scope.spawn(move || {
                // Ends when every run is taken, or when the caller stopped listening.
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(run) = runs.get(n) else { return };
                    if sender.send((n, parse_run(run))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        let mut ahead = std::collections::BTreeMap::new();
        let mut due = 0;
        // Ends when every thread has ended (each sent its runs, or panicked: then the scope
        // re-raises the panic).
        for (n, prepared) in receiver {
            ahead.insert(n, prepared);
            while let Some(prepared) = ahead.remove(&due) {
                prepared.into_iter().for_each(&mut each);
                due += 1;
            }
        }
    });
}

/// `bytes` cut into runs of whole lines of about [`CHUNK`] bytes: (first line number, byte
/// offset in `bytes`, run), lines numbered from `first`.
fn runs(bytes: &[u8], first: usize) -> Vec<(usize, usize, &[u8])> {
    let mut runs = Vec::new();
    let (mut start, mut line) = (0, first);
    // Each round takes at least one byte.
    while start < bytes.len() {
        // Just past a newline, or the end.
        let end = bytes
            .get(start + CHUNK..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(bytes.len(), |at| start + CHUNK + at + 1);
        runs.push((line, start, &bytes[start..end]));
        line += bytes[start..end].iter().filter(|&&b| b == b'\n').count();
        start = end;
    }
    runs
}

pub(crate) fn parse_line(line: usize, text: &str, base: &Path) -> Entry {
    let raw: Raw = serde_json::from_str(text).map_err(|e| BadLine {
        line,
        reason: format!("not a manifest item: {e}"),
        key: None,
        source: None,
    })?;
    // The line's key and source go into a bad line's report as written (cloned only then).
    let bad = |reason: String| BadLine { line, reason, key: raw.key.clone(), source: raw.source.clone() };
    let source = match &raw.source {
        Some(source) if !source.is_empty() => source,
        _ => return Err(bad("missing \"source\"".into())),
    };
    let Some(key) = &raw.key else {
        return Err(bad("missing \"key\"".into()));
    };
    let key = Key::new(key.clone()).map_err(|e| bad(e.to_string()))?;
    let sha256 = match &raw.sha256 {
        None => None,
        Some(hex) => Some(hex.parse::<Sha256>().map_err(|e| bad(e.to_string()))?),
    };
    let resolved = resolve(source, base).map_err(bad)?;
    let expected = Expected { size: raw.size, sha256 };
    Ok(Item { line, source_text: raw.source.unwrap_or_default(), source: resolved, key, expected })
}

/// An HTTP source's URL, which must name a host.
fn resolve_url(source: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(source).map_err(|e| format!("bad URL {source:?}: {e}"))?;
    if url.host_str().is_none() {
        return Err(format!("bad URL {source:?}: no host"));
    }
    Ok(url)
}

fn resolve(source: &str, base: &Path) -> Result<Source, String> {
    let scheme = |prefix: &str| source.get(..prefix.len()).is_some_and(|s| s.eq_ignore_ascii_case(prefix));
    if scheme("http://") || scheme("https://") {
        resolve_url(source)?;
        return Ok(Source::Http);
    }
    if let Some(scheme_end) = source.find("://") {
        return Err(format!("unsupported source scheme {:?} (use http, https or a local path)", &source[..scheme_end]));
    }
    Ok(Source::Local(base.join(source)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn good_lines_and_bad_lines_keep_their_line_numbers() {
        let text = format!(
            "{{\"source\": \"https://example.org/a.pdf\", \"key\": \"papers/a.pdf\", \"sha256\": \"{SHA}\", \"size\": 0}}\n\
             \n\
             not json\n\
             {{\"source\": \"b.txt\", \"key\": \"b\"}}\n\
             {{\"source\": \"c.txt\", \"key\": \"../escape\"}}\n\
             {{\"source\": \"d.txt\", \"key\": \"d\", \"sha256\": \"xyz\"}}\n\
             {{\"key\": \"e\"}}\n\
             {{\"source\": \"f\", \"key\": \"f\", \"colour\": \"red\"}}\n\
             {{\"source\": \"ftp://host/g\", \"key\": \"g\"}}\n"
        );
        let entries: Vec<Entry> = parse(&text, Path::new("/m")).collect();
        assert_eq!(entries.len(), 8);
        let a = entries[0].as_ref().unwrap();
        assert_eq!((a.line, a.key.as_str()), (1, "papers/a.pdf"));
        assert_eq!(a.source, Source::Http);
        assert_eq!(a.url().unwrap().unwrap().host_str(), Some("example.org"));
        assert_eq!(a.expected.size, Some(0));
        assert_eq!(a.expected.sha256.unwrap().to_string(), SHA);
        let b = entries[2].as_ref().unwrap();
        assert_eq!(b.line, 4);
        assert_eq!(b.source, Source::Local(PathBuf::from("/m/b.txt")));
        let bad: Vec<(usize, &str)> =
            entries.iter().filter_map(|e| e.as_ref().err()).map(|b| (b.line, b.reason.as_str())).collect();
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![3, 5, 6, 7, 8, 9]);
        assert!(bad[0].1.starts_with("not a manifest item"), "{}", bad[0].1);
        assert!(bad[1].1.contains("invalid key"), "{}", bad[1].1);
        assert!(bad[2].1.contains("SHA-256"), "{}", bad[2].1);
        assert!(bad[3].1.contains("missing \"source\""), "{}", bad[3].1);
        assert!(bad[4].1.contains("colour"), "{}", bad[4].1);
        assert!(bad[5].1.contains("ftp"), "{}", bad[5].1);
        assert_eq!(entries[5].as_ref().unwrap_err().key.as_deref(), Some("e"));
    }

    /// Parsed on several threads, the entries are the same, in the same order, with the same
    /// line numbers (blank lines and bad lines included), wherever the runs are cut.
    #[test]
    fn parsing_on_threads_gives_the_same_entries_in_order() {
        let mut text = String::new();
        let mut n = 0;
        while text.len() < 5 * CHUNK / 2 {
            match n % 7 {
                0 => text.push('\n'),
                1 => text.push_str("not json\n"),
                2 => text.push_str(&format!("{{\"source\": \"https://h/é{n}\", \"key\": \"k{n}\"}}\r\n")),
                _ => text.push_str(&format!("{{\"source\": \"f{n}\", \"key\": \"k/{n}\"}}\n")),
            }
            n += 1;
        }
        text.push_str("{\"source\": \"last\", \"key\": \"no-newline\"}");
        let line = |e: Entry| match e {
            Ok(item) => (item.line, item.key.to_string()),
            Err(bad) => (bad.line, bad.reason),
        };
        let one: Vec<_> = parse(&text, Path::new("/m")).map(line).collect();
        assert!(runs(text.as_bytes(), 1).len() >= 3, "the text spans several runs");
        for threads in [1, 2, 3, 8] {
            let mut many = Vec::new();
            let offsets = |at: u64, entry: Entry| {
                let start = text[at as usize..].lines().next().unwrap();
                let key = entry.as_ref().ok().map(|item| item.key.to_string());
                let quoted = key.as_ref().map(|key| format!("\"key\": \"{key}\""));
                assert!(quoted.is_none_or(|key| start.contains(&key)), "{start:?} is the line of {key:?}");
                line(entry)
            };
            parse_each(text.as_bytes(), (1, 0), Path::new("/m"), threads, offsets, |l| many.push(l));
            assert_eq!(many, one, "{threads} threads");
        }
        assert_eq!(one.last().unwrap(), &(n + 1, "no-newline".to_owned()));
    }

    #[test]
    fn absolute_local_paths_stay_absolute() {
        let entries: Vec<Entry> = parse("{\"source\": \"/data/x\", \"key\": \"x\"}", Path::new("/m")).collect();
        assert_eq!(entries[0].as_ref().unwrap().source, Source::Local(PathBuf::from("/data/x")));
    }
}
