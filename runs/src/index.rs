//! Where each job's line is in the manifest: what a run keeps of a manifest of any length
//! instead of its items. Planning reads the manifest once and notes which lines are the first
//! of their job, and the byte offset of every [`MARK`]th job's line (a few bytes a job); a
//! shard's items are read back from the file when the shard starts ([`Index::items`]). The
//! manifest must not change during the run: its length and modification time are checked at
//! every read.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::RunError;
use crate::job;
use crate::manifest::{self, Item};

/// Every this many jobs, the byte offset of the job's line is kept.
const MARK: usize = 64;

/// A set of small integers, one bit each.
#[derive(Debug, Default)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub(crate) fn insert(&mut self, n: usize) {
        let word = n / 64;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (n % 64);
    }

    pub(crate) fn contains(&self, n: usize) -> bool {
        self.0.get(n / 64).is_some_and(|word| word & (1 << (n % 64)) != 0)
    }
}

/// A file's length and modification time: what says it is the file that was read.
pub(crate) type Stamp = (u64, Option<SystemTime>);

pub(crate) fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (meta.len(), meta.modified().ok())
}

/// The manifest's jobs, by where their lines are.
#[derive(Debug)]
pub(crate) struct Index {
    path: PathBuf,
    /// The manifest's directory (local sources are resolved against it).
    base: PathBuf,
    /// The manifest as it was read.
    stamp: Stamp,
    /// The line numbers of the jobs' first lines (bad lines, blank lines and repeated lines are
    /// not in it).
    firsts: Bits,
    /// (byte offset, line number) of jobs 0, [`MARK`], 2 × [`MARK`], …
    marks: Vec<(u64, usize)>,
    /// Jobs.
    jobs: usize,
}

impl Index {
    /// An index of nothing yet, for the manifest at `path` as `stamp` describes it.
    pub(crate) fn new(path: &Path, base: &Path, stamp: Stamp) -> Self {
        Self {
            path: path.to_owned(),
            base: base.to_owned(),
            stamp,
            firsts: Bits::default(),
            marks: Vec::new(),
            jobs: 0,
        }
    }

    /// Notes the next job: its first line is `line`, at byte `offset`.
    pub(crate) fn push(&mut self, line: usize, offset: u64) {
        if self.jobs.is_multiple_of(MARK) {
            self.marks.push((offset, line));
        }
        self.firsts.insert(line);
        self.jobs += 1;
    }

    /// The manifest.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Jobs noted.
    pub(crate) fn len(&self) -> usize {
        self.jobs
    }

    /// The items of jobs `range`, with their job keys, read again from the manifest. Blocks:
    /// call it off the runtime's threads for more than a few.
    ///
    /// # Errors
    ///
    /// [`RunError::Manifest`] when the manifest cannot be read, or is no longer the one read.
    pub(crate) fn items(&self, range: Range<usize>) -> Result<Vec<(Item, String)>, RunError> {
        let failed = |error| RunError::Manifest { path: self.path.clone(), error };
        let changed = || failed(std::io::Error::other("it changed since the run read it; start the run again"));
        let mut items = Vec::with_capacity(range.len());
        if range.is_empty() {
            return Ok(items);
        }
        let mut file = File::open(&self.path).map_err(failed)?;
        if stamp(&file.metadata().map_err(failed)?) != self.stamp {
            return Err(changed());
        }
        let mark = range.start / MARK;
        let &(offset, mut line) = self.marks.get(mark).ok_or_else(changed)?;
        file.seek(SeekFrom::Start(offset)).map_err(failed)?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let (mut next, mut text) = (mark * MARK, Vec::new());
        // Ends at the range's end, or at the end of the file (a manifest that changed).
        while next < range.end {
            text.clear();
            if reader.read_until(b'\n', &mut text).map_err(failed)? == 0 {
                return Err(changed());
            }
            if self.firsts.contains(line) {
                if next >= range.start {
                    let (_, _, text) = manifest::lines(&text, line, 0).next().ok_or_else(changed)?;
                    let item = manifest::parse_line(line, &text, &self.base).map_err(|_| changed())?;
                    let job = job::hex(&job::digest(&item));
                    items.push((item, job));
                }
                next += 1;
            }
            line += 1;
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_hold_what_was_inserted() {
        let mut bits = Bits::default();
        for n in [0, 63, 64, 1000] {
            bits.insert(n);
        }
        let held: Vec<usize> = (0..2000).filter(|&n| bits.contains(n)).collect();
        assert_eq!(held, [0, 63, 64, 1000]);
    }
}
