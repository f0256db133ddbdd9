//! The run ledger: `ledger.sqlite3` in the run directory, the durable record of every job.
//!
//! SQLite in WAL mode (crash-safe: a killed process loses at most the transaction it was in),
//! with a busy timeout so several `promote run` processes on one run directory take turns, and
//! every multi-row change in one transaction. `meta.schema_version` says which of
//! `MIGRATIONS` have been applied; opening a ledger applies the missing ones.
//!
//! Jobs move `planned → fetching → verified → promoted`, or end `failed` (reason, attempt count),
//! `skipped`, or `elsewhere` (a worker on another machine finished it, as its shard's done marker
//! says). A job is only recorded `promoted` after the backend's publish returned, and nothing
//! ever changes a `promoted` job.
//!
//! # Who may change a job
//!
//! A job in flight (`fetching`, `verified`) has an owner: the worker (see `shards::owner`) that
//! began its attempt. [`Ledger::begin_attempt`] takes a job only when it is not in flight under
//! another live owner, in one transaction; every later transition of the attempt
//! ([`Ledger::checkpoint`], [`Ledger::verified`], [`Ledger::clear_checkpoint`], [`Ledger::failed`],
//! [`Ledger::disown`]) is conditional on the caller still owning it and says whether it did. The
//! partial download itself is fenced by a lock on its file (see `resume.rs`).
//!
//! Shard leases (see `shards.rs`) live here too, for processes sharing a run directory.
//! Times are milliseconds since the Unix epoch, passed in by the caller (tests inject a clock).
//!
//! `promote status` and `promote doctor` read a run directory through [`Ledger::open_existing`],
//! [`Ledger::counts`], [`Ledger::claims`], [`Ledger::stuck`] and [`Ledger::failures`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use promote_core::{ResumePoint, Sha256};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Why the ledger could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The run directory could not be created.
    #[error("creating the run directory {}", path.display())]
    RunDir {
        /// The run directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// There is no ledger where one was expected (`status`, `doctor`).
    #[error("no run ledger at {} (run `promote run` with --out {} first)", path.display(), dir.display())]
    Missing {
        /// The ledger file looked for.
        path: PathBuf,
        /// Its run directory.
        dir: PathBuf,
    },
    /// The ledger file could not be opened, or set up (WAL mode, busy timeout).
    #[error("{what} the ledger {}", path.display())]
    Open {
        /// `opening`, `configuring`.
        what: &'static str,
        /// The ledger file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The ledger's schema could not be brought up to date.
    #[error("migrating the ledger {}", path.display())]
    Migrate {
        /// The ledger file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<Self>,
    },
    /// The ledger was written by a newer promote.
    #[error(
        "the ledger has schema version {found}, newer than this promote understands ({supported}); \
         use a newer promote or another --out"
    )]
    NewerSchema {
        /// The ledger's schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// One migration step failed.
    #[error("migration {from} → {}", from + 1)]
    Migration {
        /// The version it started from.
        from: usize,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A job that was never planned.
    #[error("job {0} is not in the ledger")]
    UnknownJob(String),
    /// A shard that was never prepared.
    #[error("shard {shard} of run {run} is not in the ledger")]
    UnknownShard {
        /// The run.
        run: String,
        /// The shard.
        shard: u64,
    },
    /// A row this build cannot read.
    #[error("job {job} has unknown state {state:?}")]
    UnknownState {
        /// The job key.
        job: String,
        /// The state found.
        state: String,
    },
    /// A query failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking pool could not run a ledger call.
    #[error("ledger task")]
    Blocking(#[source] promote_core::Error),
    /// The transaction a call shared with others (see [`Db`]) could not be committed: its change
    /// is not kept.
    #[error("committing the ledger")]
    Commit(#[source] std::sync::Arc<rusqlite::Error>),
    /// SQLite rolled back the transaction a call shared with others after an error in it: the
    /// call's change is not kept.
    #[error("the ledger's transaction was rolled back after an error in it")]
    RolledBack,
    /// A ledger call's task panicked or was cancelled.
    #[error("ledger task")]
    Task(#[source] tokio::task::JoinError),
}

/// A ledger result.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// The ledger's file name in the run directory.
pub const FILE: &str = "ledger.sqlite3";

mod db;

pub use db::Db;

/// Schema migrations; `MIGRATIONS[n]` takes schema version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE jobs (
        job TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        error TEXT,
        sha256 TEXT,
        size INTEGER,
        run TEXT,
        shard INTEGER,
        cp_offset INTEGER,
        cp_sha256 TEXT,
        cp_etag TEXT,
        cp_last_modified TEXT,
        cp_total INTEGER,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX jobs_state ON jobs (state);
    CREATE TABLE shards (
        run TEXT NOT NULL,
        shard INTEGER NOT NULL,
        owner TEXT,
        expires_ms INTEGER,
        done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run, shard)
    );
",
    "
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    UPDATE jobs SET state = 'planned' WHERE state = 'claimed';
",
    // A job's state apart from what stays the same: `states` holds the columns every transition
    // changes, in small rows (a transition rewrites one page, shared with the rows of the jobs
    // around it), and names the owner by a number from `owners` instead of its ~170-byte record;
    // `jobs` keeps the job's key (its 32 bytes, not 64 hex digits) and destination, its
    // checkpoint and its last failure; not the source, which the manifest has. No index on the state
    // is kept up to date on every transition (the queries by state are `status`'s, which read
    // the whole table anyway).
    "
    CREATE TABLE owners (id INTEGER PRIMARY KEY, record TEXT NOT NULL UNIQUE);
    INSERT OR IGNORE INTO owners (record) SELECT DISTINCT owner FROM jobs WHERE owner IS NOT NULL;
    CREATE TABLE states (
        id INTEGER PRIMARY KEY,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        owner_id INTEGER,
        sha256 TEXT,
        size INTEGER,
        updated_ms INTEGER NOT NULL
    );
    INSERT INTO states (id, state, attempts, owner_id, sha256, size, updated_ms)
        SELECT rowid, state, attempts, (SELECT id FROM owners WHERE record = jobs.owner), sha256, size, updated_ms
        FROM jobs;
    CREATE TABLE jobs_v3 (
        id INTEGER PRIMARY KEY,
        job BLOB NOT NULL UNIQUE,
        key TEXT NOT NULL,
        reason TEXT,
        error TEXT,
        cp_offset INTEGER,
        cp_sha256 TEXT,
        cp_etag TEXT,
        cp_last_modified TEXT,
        cp_total INTEGER
    );
    INSERT INTO jobs_v3 (id, job, key, reason, error, cp_offset, cp_sha256, cp_etag, cp_last_modified, cp_total)
        SELECT rowid, coalesce(unhex(job), job), key, reason, error, cp_offset, cp_sha256, cp_etag, cp_last_modified,
               cp_total
        FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_v3 RENAME TO jobs;
",
    // A partial fetched in segments (parallel range requests) checkpoints each segment's
    // progress too (see `Segment::list`).
    "
    ALTER TABLE jobs ADD COLUMN cp_segments TEXT;
",
    // A download streamed into a resumable staged write of the backend (an S3 multipart
    // upload) checkpoints the backend's point: its token and the SHA-256 state (JSON).
    "
    ALTER TABLE jobs ADD COLUMN cp_upload TEXT;
",
];

/// The number `owners` gives the owner record bound as `?2` (NULL when it has none).
const OWNER_ID: &str = "(SELECT id FROM owners WHERE record = ?2)";

/// How a job key is stored: the bytes its hex digits stand for (see [`crate::job::key`]), or
/// the text itself when it is not hex.
fn job_key(job: &str) -> rusqlite::types::Value {
    match hex::decode(job) {
        Ok(bytes) => rusqlite::types::Value::Blob(bytes),
        Err(_) => rusqlite::types::Value::Text(job.to_owned()),
    }
}

/// SQLite's order of stored job keys: text before blobs (its storage classes), then by bytes.
fn index_order(a: &rusqlite::types::Value, b: &rusqlite::types::Value) -> std::cmp::Ordering {
    use rusqlite::types::Value;
    match (a, b) {
        (Value::Blob(a), Value::Blob(b)) => a.cmp(b),
        (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Text(_), _) => std::cmp::Ordering::Less,
        (_, Value::Text(_)) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    }
}

/// The `states` row of the job bound as `?1`.
const JOB_ID: &str = "(SELECT id FROM jobs WHERE job = ?1)";

/// Page size of a new ledger: a transition rewrites one page (plus its WAL frame header), so a
/// small page keeps what a transition writes small. An existing ledger keeps its page size.
const PAGE_SIZE: u32 = 1024;

/// The ledger's page cache at most, in KiB.
const CACHE_KIB: i64 = 32 << 10;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A job's recorded state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Listed, nobody working on it.
    Planned,
    /// Bytes are being fetched.
    Fetching,
    /// All bytes are in a partial file, checked; not yet promoted.
    Verified,
    /// The backend published it (or found identical bytes already there).
    Promoted,
    /// Given up on, with a reason.
    Failed,
    /// Not attempted (dry run, `--max`).
    Skipped,
    /// Finished by a worker on another machine (its shard's done marker says so).
    Elsewhere,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 7] =
        [Self::Planned, Self::Fetching, Self::Verified, Self::Promoted, Self::Elsewhere, Self::Failed, Self::Skipped];

    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Fetching => "fetching",
            Self::Verified => "verified",
            Self::Promoted => "promoted",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Elsewhere => "elsewhere",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A durable point in a partial download: the first `offset` bytes are on disk (fsynced) and
/// hash to `prefix_sha256`, fetched from a response with these validators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Bytes kept.
    pub offset: u64,
    /// SHA-256 of those bytes.
    pub prefix_sha256: Sha256,
    /// The response's `ETag`.
    pub etag: Option<String>,
    /// The response's `Last-Modified`.
    pub last_modified: Option<String>,
    /// The whole object's length, when the server said.
    pub total: Option<u64>,
    /// For a partial fetched in segments (parallel range requests): every segment, in order,
    /// covering the whole object. Their fetched bytes beyond `offset` are on disk too; empty for
    /// a partial fetched in one stream.
    pub segments: Vec<Segment>,
    /// For a download streamed into the backend's resumable staged write instead of a partial
    /// file (see `Store::stage_resumable`): the point to go on from, whose `offset` is
    /// `offset`. `None` for a partial file.
    pub upload: Option<ResumePoint>,
}

impl Checkpoint {
    /// Bytes kept: `offset`, or for a partial fetched in segments, every segment's.
    pub fn fetched(&self) -> u64 {
        if self.segments.is_empty() { self.offset } else { Segment::fetched(&self.segments) }
    }
}

/// A byte range `[start, end)` of an object, fetched by a range request of its own; its bytes
/// `[start, done)` are in the partial file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its first byte.
    pub start: u64,
    /// The end of the bytes fetched so far.
    pub done: u64,
    /// One past its last byte.
    pub end: u64,
}

impl Segment {
    /// Bytes fetched of all `segments`.
    pub fn fetched(segments: &[Self]) -> u64 {
        segments.iter().map(|s| s.done - s.start).sum()
    }

    /// Segments as stored in the ledger: `start-done-end`, comma-separated.
    pub fn list(segments: &[Self]) -> String {
        segments.iter().map(|s| format!("{}-{}-{}", s.start, s.done, s.end)).collect::<Vec<_>>().join(",")
    }

    /// Reads [`Self::list`]'s text back; `None` when it is not a list of segments that follow
    /// each other from byte 0 with `start <= done <= end`.
    pub fn parse_list(text: &str) -> Option<Vec<Self>> {
        let mut segments = Vec::new();
        let mut next = 0;
        for part in text.split(',') {
            let mut numbers = part.split('-').map(str::parse::<u64>);
            let (Some(Ok(start)), Some(Ok(done)), Some(Ok(end)), None) =
                (numbers.next(), numbers.next(), numbers.next(), numbers.next())
            else {
                return None;
            };
            if start != next || done < start || end < done {
                return None;
            }
            next = end;
            segments.push(Self { start, done, end });
        }
        Some(segments)
    }
}

/// One job as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    /// Its number in the ledger (the rows of one job share it), so the transitions that follow
    /// a read reach its rows directly instead of looking the job key up again.
    pub id: i64,
    /// Its state.
    pub state: State,
    /// Attempts made so far, over all runs.
    pub attempts: u32,
    /// Why it failed (a short reason such as `http-404`).
    pub reason: Option<String>,
    /// The digest promoted (or verified) for it.
    pub sha256: Option<Sha256>,
    /// Its size, once known.
    pub size: Option<u64>,
    /// Its partial download's last checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// The worker whose attempt it is in (or was last in).
    pub owner: Option<String>,
    /// When it last changed (ms since the Unix epoch).
    pub updated_ms: i64,
}

/// What [`Ledger::begin_attempt`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin {
    /// The attempt is the caller's: this many attempts made so far, this one included.
    Mine(u32),
    /// Already promoted (by anyone): nothing to do but look at the storage.
    Promoted,
    /// In flight under another live worker, last changed at `updated_ms`.
    Busy {
        /// The owner record of the worker.
        owner: String,
        /// When the job last changed.
        updated_ms: i64,
    },
}

/// What trying to lease a shard gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquire {
    /// Leased by the caller now; `from` names the previous owner when an expired or dead
    /// owner's lease was taken over.
    Acquired {
        /// The owner whose lease was taken over.
        from: Option<String>,
    },
    /// Another live owner holds it.
    Held,
    /// Finished already (by anyone).
    Done,
}

/// What a worker on another machine did with a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Elsewhere {
    /// Promoted with this digest.
    Promoted(Sha256),
    /// Failed.
    Failed {
        /// Short reason.
        reason: String,
        /// Where and why, one line.
        error: String,
    },
}

/// A failed job, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedJob {
    /// The destination key.
    pub key: String,
    /// Short reason.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error message.
    pub error: Option<String>,
}

/// An open ledger.
pub struct Ledger {
    conn: Connection,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (creating if needed) the ledger in run directory `dir` and brings its schema up
    /// to date.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, is not a ledger, or was written by a newer promote.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::RunDir { path: dir.to_owned(), source })?;
        let path = dir.join(FILE);
        let conn = Connection::open(&path).map_err(|source| LedgerError::Open {
            what: "opening",
            path: path.clone(),
            source,
        })?;
        let mut ledger = Self { conn };
        ledger.configure().map_err(|source| LedgerError::Open { what: "configuring", path: path.clone(), source })?;
        ledger.migrate().map_err(|source| LedgerError::Migrate { path, source: Box::new(source) })?;
        Ok(ledger)
    }

    /// Opens an existing ledger without changing it (for `status` and `doctor`).
    ///
    /// # Errors
    ///
    /// When there is no ledger in `dir` or it cannot be read.
    pub fn open_existing(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        if !path.is_file() {
            return Err(LedgerError::Missing { path, dir: dir.to_owned() });
        }
        let conn = Connection::open(&path).map_err(|source| LedgerError::Open {
            what: "opening",
            path: path.clone(),
            source,
        })?;
        let ledger = Self { conn };
        ledger.conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(ledger)
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // Takes effect only while the file is empty (a new ledger), before WAL is on.
        self.conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        // Switching to WAL needs the database to itself, and SQLite answers "busy" at once
        // (without its busy handler) while another process opens the same new ledger: wait for
        // it, as the busy timeout would.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Bounded by `deadline`, checked in the busy arm.
        loop {
            match self.conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
        self.conn.set_prepared_statement_cache_capacity(64);
        // Room for the job-key index of a large manifest (SQLite's default is 2 MiB), so
        // planning a million jobs does not spill and re-read pages; filled only as pages are
        // used, so a small ledger takes no more memory than before.
        self.conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        // WAL + NORMAL survives any process crash; a power loss may forget the last few
        // transitions, which the next run rediscovers from the backend (create-only).
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("CREATE TABLE IF NOT EXISTS meta (schema_version INTEGER NOT NULL)", [])?;
        let version: Option<i64> = tx.query_row("SELECT schema_version FROM meta", [], |r| r.get(0)).optional()?;
        let version = match version {
            Some(v) => v,
            None => {
                tx.execute("INSERT INTO meta (schema_version) VALUES (0)", [])?;
                0
            }
        };
        if version > SCHEMA_VERSION {
            return Err(LedgerError::NewerSchema { found: version, supported: SCHEMA_VERSION });
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(|source| LedgerError::Migration { from, source })?;
        }
        tx.execute("UPDATE meta SET schema_version = ?1", [SCHEMA_VERSION])?;
        tx.commit()?;
        Ok(())
    }

    /// The schema version recorded in the ledger.
    ///
    /// # Errors
    ///
    /// When the ledger cannot be read.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.row("SELECT schema_version FROM meta", [], |r| r.get(0))?)
    }

    /// SQLite's `integrity_check`: `"ok"` or what is wrong.
    ///
    /// # Errors
    ///
    /// When the ledger cannot be read.
    pub fn integrity_check(&self) -> Result<String> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(rows.join("; "))
    }

    /// Records `jobs` (job key, destination key) as planned, leaving known jobs as they are.
    /// Atomic.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn plan<'a>(&mut self, jobs: impl IntoIterator<Item = (&'a str, &'a str)>, now: i64) -> Result<()> {
        // Inserted in the order of the job keys' index, so each insert (or lookup, on a rerun)
        // lands next to the one before instead of on a random page of a large index; numbered
        // in the given order, so the rows of jobs that run together share pages.
        let mut jobs: Vec<(i64, rusqlite::types::Value, &str)> =
            jobs.into_iter().enumerate().map(|(n, (j, k))| (n as i64, job_key(j), k)).collect();
        jobs.sort_unstable_by(|(_, a, _), (_, b, _)| index_order(a, b));
        self.atomically(|| {
            let first: i64 = self.row(
                "SELECT max(coalesce((SELECT max(id) FROM jobs), 0), coalesce((SELECT max(id) FROM states), 0)) + 1",
                [],
                |r| r.get(0),
            )?;
            let mut insert =
                self.conn.prepare_cached("INSERT OR IGNORE INTO jobs (id, job, key) VALUES (?1, ?2, ?3)")?;
            let mut state =
                self.conn.prepare_cached("INSERT INTO states (id, state, updated_ms) VALUES (?1, 'planned', ?2)")?;
            for (n, job, key) in jobs {
                if insert.execute(params![first + n, job, key])? == 1 {
                    state.execute([first + n, now])?;
                }
            }
            Ok(())
        })
    }

    /// The recorded job, if any.
    ///
    /// # Errors
    ///
    /// SQLite errors, or a row this build cannot read.
    pub fn job(&self, job: &str) -> Result<Option<JobRow>> {
        let row = self
            .row(
                "SELECT s.state, s.attempts, j.reason, s.sha256, s.size, j.cp_offset, j.cp_sha256, j.cp_etag,
                        j.cp_last_modified, j.cp_total, (SELECT record FROM owners WHERE id = s.owner_id), s.updated_ms,
                        j.cp_segments, j.id, j.cp_upload
                 FROM jobs j JOIN states s ON s.id = j.id WHERE j.job = ?1",
                [job_key(job)],
                |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get::<_, Option<String>>(2)?),
                        (r.get::<_, Option<String>>(3)?, r.get::<_, Option<i64>>(4)?),
                        (
                            r.get::<_, Option<i64>>(5)?,
                            r.get::<_, Option<String>>(6)?,
                            r.get::<_, Option<String>>(7)?,
                            r.get::<_, Option<String>>(8)?,
                            r.get::<_, Option<i64>>(9)?,
                        ),
                        (r.get::<_, Option<String>>(10)?, r.get::<_, i64>(11)?, r.get::<_, Option<String>>(12)?),
                        (r.get::<_, i64>(13)?, r.get::<_, Option<String>>(14)?),
                    ))
                },
            )
            .optional()?;
        let Some((
            (state, attempts, reason),
            (sha256, size),
            (cp_offset, cp_sha, etag, last_modified, total),
            (owner, updated_ms, segments),
            (id, upload),
        )) = row
        else {
            return Ok(None);
        };
        let Some(state) = State::parse(&state) else {
            return Err(LedgerError::UnknownState { job: job.to_owned(), state });
        };
        let sha = |s: Option<String>| s.and_then(|s| s.parse::<Sha256>().ok());
        // Segments that do not read back make no checkpoint: the partial is fetched again.
        let segments = match segments.as_deref().map(Segment::parse_list) {
            None => Some(Vec::new()),
            Some(parsed) => parsed,
        };
        // Likewise a point that does not read back, or names other bytes than the checkpoint.
        let upload = match upload.as_deref().map(serde_json::from_str::<ResumePoint>) {
            None => Some(None),
            Some(Ok(point)) if cp_offset == Some(point.offset as i64) => Some(Some(point)),
            Some(_) => None,
        };
        let checkpoint = match (cp_offset, sha(cp_sha), segments, upload) {
            (Some(offset), Some(prefix_sha256), Some(segments), Some(upload)) => Some(Checkpoint {
                offset: offset as u64,
                prefix_sha256,
                etag,
                last_modified,
                total: total.map(|t| t as u64),
                segments,
                upload,
            }),
            _ => None,
        };
        Ok(Some(JobRow {
            id,
            state,
            attempts,
            reason,
            sha256: sha(sha256),
            size: size.map(|s| s as u64),
            checkpoint,
            owner,
            updated_ms,
        }))
    }

    /// Runs `f` in one transaction: all its changes or none.
    ///
    /// # Errors
    ///
    /// `f`'s error (nothing is kept then); SQLite errors.
    pub fn in_transaction(&self, f: impl FnOnce(&Self) -> Result<()>) -> Result<()> {
        self.atomically(|| f(self))
    }

    /// Runs `f` atomically. Outside a transaction, in one `BEGIN IMMEDIATE` transaction (the
    /// write lock taken before the first read, so no other process's write can come between
    /// what `f` reads and what it writes); committed when `f` succeeds, rolled back when it
    /// fails. Inside one (a [`Db`] batch, whose savepoint around each call undoes a failed
    /// call), as part of it.
    fn atomically<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if !self.conn.is_autocommit() {
            return f();
        }
        self.control("BEGIN IMMEDIATE")?;
        let done = f().and_then(|value| Ok(self.control("COMMIT").map(|()| value)?));
        if done.is_err() && !self.conn.is_autocommit() {
            // Nothing of a failed `f` is kept; a rollback that fails leaves nothing to keep either.
            let _ = self.control("ROLLBACK");
        }
        done
    }

    /// Runs a transaction control statement (`BEGIN`, `SAVEPOINT`, `COMMIT`...), prepared once.
    fn control(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    /// Runs one statement, prepared once per connection (the ledger's statements are few and
    /// run once or twice per item: parsing each every time was a quarter of a run's CPU).
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// [`Connection::query_row`], with the statement prepared once per connection.
    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.prepare_cached(sql)?.query_row(params, f)
    }

    /// The number `owners` gives `record`, added when new.
    fn owner_id(&self, record: &str) -> Result<i64> {
        self.exec("INSERT OR IGNORE INTO owners (record) VALUES (?1)", [record])?;
        Ok(self.row("SELECT id FROM owners WHERE record = ?1", [record], |r| r.get(0))?)
    }

    /// Runs `sql` (which binds the job as `?1` and the owner record as `?2`, and names the
    /// owner as [`OWNER_ID`]) and says whether it changed the row, that is, whether `owner`
    /// still owned the job.
    fn owned(&self, sql: &str, params: impl rusqlite::Params) -> Result<bool> {
        Ok(self.exec(sql, params)? == 1)
    }

    /// Starts `owner`'s attempt at `job`: state `fetching`, one more attempt counted, `owner`
    /// its owner. Refused, in the same transaction, when the job is promoted, or in flight
    /// (`fetching`, `verified`) under another owner that `alive` says may still be running.
    ///
    /// # Errors
    ///
    /// SQLite errors; a job that is not in the ledger.
    pub fn begin_attempt(&mut self, job: &str, owner: &str, now: i64, alive: &dyn Fn(&str) -> bool) -> Result<Begin> {
        self.atomically(|| self.begin_attempt_now(job, owner, now, alive))
    }

    /// [`Self::begin_attempt`] for each of `jobs`, in one transaction, each with its row as it
    /// was before (for a worker that begins the attempts of the items about to start together).
    ///
    /// # Errors
    ///
    /// SQLite errors; a job that is not in the ledger (then none is begun).
    pub fn begin_attempts(
        &mut self,
        jobs: &[String],
        owner: &str,
        now: i64,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(Option<JobRow>, Begin)>> {
        self.atomically(|| {
            let mut owner_id = None;
            jobs.iter()
                .map(|job| {
                    let row = self.job(job)?;
                    let begin = self.begin_from(job, row.as_ref(), owner, &mut owner_id, now, alive)?;
                    Ok((row, begin))
                })
                .collect()
        })
    }

    fn begin_attempt_now(&self, job: &str, owner: &str, now: i64, alive: &dyn Fn(&str) -> bool) -> Result<Begin> {
        let row = self.job(job)?;
        self.begin_from(job, row.as_ref(), owner, &mut None, now, alive)
    }

    /// Begins `owner`'s attempt at `job`, whose row is `row` (read in the same transaction), as
    /// [`Self::begin_attempt`] says; `owner_id`: `owner`'s number, looked up (and kept there)
    /// when first needed.
    fn begin_from(
        &self,
        job: &str,
        row: Option<&JobRow>,
        owner: &str,
        owner_id: &mut Option<i64>,
        now: i64,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<Begin> {
        let Some(row) = row else {
            return Err(LedgerError::UnknownJob(job.to_owned()));
        };
        if row.state == State::Promoted {
            return Ok(Begin::Promoted);
        }
        let in_flight = matches!(row.state, State::Fetching | State::Verified);
        if let Some(holder) = &row.owner
            && in_flight
            && holder != owner
            && alive(holder)
        {
            return Ok(Begin::Busy { owner: holder.clone(), updated_ms: row.updated_ms });
        }
        let id = match *owner_id {
            Some(id) => id,
            None => *owner_id.insert(self.owner_id(owner)?),
        };
        // The row was read in this transaction, which holds the write lock, so its count is
        // current. (Not `RETURNING`, which costs SQLite a temporary table per statement.)
        self.exec(
            "UPDATE states SET state = 'fetching', owner_id = ?2, attempts = ?3, updated_ms = ?4 WHERE id = ?1",
            params![row.id, id, row.attempts.saturating_add(1), now],
        )?;
        Ok(Begin::Mine(row.attempts.saturating_add(1)))
    }

    /// Marks `job` changed at `now` if `owner` owns it in flight (`fetching`, `verified`), and
    /// says whether it did: the fence of every transition an owner makes.
    fn touch_owned(&self, job: &str, owner: &str, now: i64) -> Result<bool> {
        self.owned(
            &format!(
                "UPDATE states SET updated_ms = ?3 WHERE id = {JOB_ID} AND owner_id = {OWNER_ID}
                 AND state IN ('fetching', 'verified')"
            ),
            params![job_key(job), owner, now],
        )
    }

    /// Records a durable checkpoint of `job`'s partial download; false (nothing written) when
    /// `owner` no longer owns the job.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn checkpoint(&self, job: &str, owner: &str, cp: &Checkpoint, now: i64) -> Result<bool> {
        self.atomically(|| {
            if !self.touch_owned(job, owner, now)? {
                return Ok(false);
            }
            self.exec(
                "UPDATE jobs SET cp_offset = ?2, cp_sha256 = ?3, cp_etag = ?4, cp_last_modified = ?5, cp_total = ?6,
                 cp_segments = ?7, cp_upload = ?8
                 WHERE job = ?1",
                params![
                    job_key(job),
                    cp.offset as i64,
                    cp.prefix_sha256.to_string(),
                    cp.etag,
                    cp.last_modified,
                    cp.total.map(|t| t as i64),
                    (!cp.segments.is_empty()).then(|| Segment::list(&cp.segments)),
                    // A derived record of strings and integers always serializes.
                    cp.upload.as_ref().map(|p| serde_json::to_string(p).expect("a resume point serializes")),
                ],
            )?;
            Ok(true)
        })
    }

    /// A complete, checked partial: state `verified` with its digest and a final checkpoint;
    /// false (nothing written) when `owner` no longer owns the job.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn verified(&self, job: &str, owner: &str, cp: &Checkpoint, now: i64) -> Result<bool> {
        self.atomically(|| {
            if !self.checkpoint(job, owner, cp, now)? {
                return Ok(false);
            }
            self.exec(
                &format!("UPDATE states SET state = 'verified', sha256 = ?2, size = ?3 WHERE id = {JOB_ID}"),
                params![job_key(job), cp.prefix_sha256.to_string(), cp.offset as i64],
            )?;
            Ok(true)
        })
    }

    /// Forgets `job`'s partial download; false when `owner` no longer owns the job.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn clear_checkpoint(&self, job: &str, owner: &str, now: i64) -> Result<bool> {
        self.atomically(|| {
            if !self.touch_owned(job, owner, now)? {
                return Ok(false);
            }
            self.clear_job_details(job, false)?;
            Ok(true)
        })
    }

    /// Empties `job`'s checkpoint (and with `failure`, its last failure) in `jobs`, writing
    /// nothing when they are empty already: most jobs never have either, and their `jobs` row
    /// (and its page) is then left alone by every transition.
    fn clear_job_details(&self, job: &str, failure: bool) -> Result<()> {
        let (failure_set, failure_clear) = if failure {
            (" OR reason IS NOT NULL OR error IS NOT NULL", ", reason = NULL, error = NULL")
        } else {
            ("", "")
        };
        self.exec(
            &format!(
                "UPDATE jobs SET cp_offset = NULL, cp_sha256 = NULL, cp_etag = NULL, cp_last_modified = NULL,
                 cp_total = NULL, cp_segments = NULL, cp_upload = NULL{failure_clear}
                 WHERE job = ?1 AND (cp_offset IS NOT NULL OR cp_sha256 IS NOT NULL OR cp_etag IS NOT NULL
                 OR cp_last_modified IS NOT NULL OR cp_total IS NOT NULL OR cp_segments IS NOT NULL
                 OR cp_upload IS NOT NULL{failure_set})"
            ),
            [job_key(job)],
        )?;
        Ok(())
    }

    /// The backend holds `job`'s object with this digest. Call only after the backend said so;
    /// it is the one transition no owner fences, since it records what the storage holds. A job
    /// already recorded so is left as it is: a rerun that finds everything present writes
    /// nothing here.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn promoted(&self, job: &str, sha256: &Sha256, size: u64, now: i64) -> Result<()> {
        self.atomically(|| {
            let changed = self.exec(
                &format!(
                    "UPDATE states SET state = 'promoted', sha256 = ?2, size = ?3, owner_id = NULL, updated_ms = ?4
                     WHERE id = {JOB_ID} AND NOT (state = 'promoted' AND sha256 IS ?2 AND size IS ?3)"
                ),
                params![job_key(job), sha256.to_string(), size as i64, now],
            )?;
            if changed > 0 {
                self.clear_job_details(job, true)?;
            }
            Ok(())
        })
    }

    /// `job` was recorded promoted, but the storage no longer shows it (deleted since): back to
    /// `planned`, so it is fetched again (the create-only promotion still decides).
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn forget_promoted(&self, job: &str, now: i64) -> Result<()> {
        self.exec(
            &format!("UPDATE states SET state = 'planned', updated_ms = ?2 WHERE id = {JOB_ID} AND state = 'promoted'"),
            params![job_key(job), now],
        )?;
        Ok(())
    }

    /// `owner`'s attempt at `job` failed for `reason` (the partial's checkpoint is kept for a
    /// later resume); false when `owner` no longer owns the job. Never changes a promoted job.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn failed(&self, job: &str, owner: &str, reason: &str, error: &str, now: i64) -> Result<bool> {
        self.atomically(|| {
            let mine = self.owned(
                &format!(
                    "UPDATE states SET state = 'failed', updated_ms = ?3
                     WHERE id = {JOB_ID} AND owner_id = {OWNER_ID} AND state IN ('fetching', 'verified')"
                ),
                params![job_key(job), owner, now],
            )?;
            if mine {
                self.exec(
                    "UPDATE jobs SET reason = ?2, error = ?3 WHERE job = ?1",
                    params![job_key(job), reason, error],
                )?;
            }
            Ok(mine)
        })
    }

    /// `owner` stops working on `job` without an outcome (its lease was lost, or the run was
    /// interrupted): back to `planned`, checkpoint kept, so the next worker resumes it.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn disown(&self, job: &str, owner: &str, now: i64) -> Result<bool> {
        self.owned(
            &format!(
                "UPDATE states SET state = 'planned', owner_id = NULL, updated_ms = ?3
                 WHERE id = {JOB_ID} AND owner_id = {OWNER_ID} AND state IN ('fetching', 'verified')"
            ),
            params![job_key(job), owner, now],
        )
    }

    /// Records what a worker on another machine did with `job`: promoted with `sha256` (state
    /// `elsewhere`), or failed for `reason`. Only a job nobody here finished or works on is
    /// changed.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn elsewhere(&self, job: &str, outcome: &Elsewhere, now: i64) -> Result<()> {
        let (state, sha, reason, error) = match outcome {
            Elsewhere::Promoted(sha) => ("elsewhere", Some(sha.to_string()), None, None),
            Elsewhere::Failed { reason, error } => ("failed", None, Some(reason.as_str()), Some(error.as_str())),
        };
        self.atomically(|| {
            let changed = self.exec(
                &format!(
                    "UPDATE states SET state = ?2, sha256 = coalesce(?3, sha256), updated_ms = ?4
                     WHERE id = {JOB_ID} AND state IN ('planned', 'failed', 'elsewhere', 'skipped')"
                ),
                params![job_key(job), state, sha, now],
            )?;
            if changed > 0 {
                self.exec(
                    "UPDATE jobs SET reason = ?2, error = ?3 WHERE job = ?1 AND (reason IS NOT ?2 OR error IS NOT ?3)",
                    params![job_key(job), reason, error],
                )?;
            }
            Ok(())
        })
    }

    /// Makes sure run `run` has shards `0..count`. When every shard of an earlier pass over the
    /// same manifest is done, starts a new pass (so a rerun checks every item again).
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn prepare_shards(&mut self, run: &str, count: u64) -> Result<()> {
        self.atomically(|| {
            let (rows, done): (i64, i64) =
                self.row("SELECT count(*), coalesce(sum(done), 0) FROM shards WHERE run = ?1", [run], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            if rows > 0 && rows == done {
                self.exec("DELETE FROM shards WHERE run = ?1", [run])?;
            }
            let mut insert = self.conn.prepare("INSERT OR IGNORE INTO shards (run, shard) VALUES (?1, ?2)")?;
            for shard in 0..count {
                insert.execute(params![run, shard as i64])?;
            }
            Ok(())
        })
    }

    /// Tries to lease shard `shard` of `run` for `owner` until `now + lease_ms`. A lease held by
    /// someone else is taken over when it has expired or `alive` says its owner is gone. Jobs
    /// are not touched: each is taken when its attempt begins ([`Self::begin_attempt`]).
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn acquire(
        &mut self,
        run: &str,
        shard: u64,
        owner: &str,
        now: i64,
        lease_ms: i64,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<Acquire> {
        self.atomically(|| self.acquire_now(run, shard, owner, now, lease_ms, alive))
    }

    fn acquire_now(
        &self,
        run: &str,
        shard: u64,
        owner: &str,
        now: i64,
        lease_ms: i64,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<Acquire> {
        let row: Option<(Option<String>, Option<i64>, bool)> = self
            .row(
                "SELECT owner, expires_ms, done FROM shards WHERE run = ?1 AND shard = ?2",
                params![run, shard as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((holder, expires, done)) = row else {
            return Err(LedgerError::UnknownShard { run: run.to_owned(), shard });
        };
        if done {
            return Ok(Acquire::Done);
        }
        if let Some(holder) = &holder
            && expires.is_some_and(|e| e > now)
            && (holder == owner || alive(holder))
        {
            return Ok(Acquire::Held);
        }
        self.exec(
            "UPDATE shards SET owner = ?3, expires_ms = ?4 WHERE run = ?1 AND shard = ?2",
            params![run, shard as i64, owner, now + lease_ms],
        )?;
        Ok(Acquire::Acquired { from: holder.filter(|h| h != owner) })
    }

    /// Extends `owner`'s lease on a shard; false when it is no longer `owner`'s.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn renew(&self, run: &str, shard: u64, owner: &str, now: i64, lease_ms: i64) -> Result<bool> {
        let n = self.exec(
            "UPDATE shards SET expires_ms = ?4 WHERE run = ?1 AND shard = ?2 AND owner = ?3 AND done = 0",
            params![run, shard as i64, owner, now + lease_ms],
        )?;
        Ok(n == 1)
    }

    /// Marks a shard done and drops `owner`'s lease; false when the lease was no longer theirs.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn finish(&self, run: &str, shard: u64, owner: &str) -> Result<bool> {
        let n = self.exec(
            "UPDATE shards SET done = 1, owner = NULL, expires_ms = NULL WHERE run = ?1 AND shard = ?2 AND owner = ?3",
            params![run, shard as i64, owner],
        )?;
        Ok(n == 1)
    }

    /// Drops `owner`'s lease on a shard without marking it done.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn release(&self, run: &str, shard: u64, owner: &str) -> Result<()> {
        self.exec(
            "UPDATE shards SET owner = NULL, expires_ms = NULL WHERE run = ?1 AND shard = ?2 AND owner = ?3",
            params![run, shard as i64, owner],
        )?;
        Ok(())
    }

    /// Whether every shard of `run` is done.
    #[cfg(test)]
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn all_done(&self, run: &str) -> Result<bool> {
        let open: i64 = self.row("SELECT count(*) FROM shards WHERE run = ?1 AND done = 0", [run], |r| r.get(0))?;
        Ok(open == 0)
    }

    /// Jobs by state.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn counts(&self) -> Result<BTreeMap<String, u64>> {
        let mut stmt = self.conn.prepare("SELECT state, count(*) FROM states GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Shard leases held, as (live, expired) at `now`; a lease whose owner `alive` says is gone
    /// counts as expired.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn claims(&self, now: i64, alive: &dyn Fn(&str) -> bool) -> Result<(u64, u64)> {
        let mut stmt =
            self.conn.prepare("SELECT owner, expires_ms FROM shards WHERE owner IS NOT NULL AND done = 0")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))?;
        let (mut live, mut expired) = (0, 0);
        for row in rows {
            let (owner, expires) = row?;
            if expires.is_some_and(|e| e > now) && alive(&owner) {
                live += 1;
            } else {
                expired += 1;
            }
        }
        Ok((live, expired))
    }

    /// Jobs in flight (`fetching`, `verified`) whose owner is gone or holds no live shard lease
    /// at `now`: (key, state), by key. The next `promote run` takes them back.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn stuck(&self, now: i64, alive: &dyn Fn(&str) -> bool) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT j.key, t.state, o.record,
                    (SELECT max(s.expires_ms) FROM shards s WHERE s.owner = o.record AND s.done = 0)
             FROM states t JOIN jobs j ON j.id = t.id LEFT JOIN owners o ON o.id = t.owner_id
             WHERE t.state IN ('fetching', 'verified') ORDER BY j.key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut stuck = Vec::new();
        for row in rows {
            let (key, state, owner, expires) = row?;
            let live = owner.is_some_and(|o| expires.is_some_and(|e| e > now) && alive(&o));
            if !live {
                stuck.push((key, state));
            }
        }
        Ok(stuck)
    }

    /// Failed jobs, by key.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn failures(&self) -> Result<Vec<FailedJob>> {
        let mut stmt = self.conn.prepare(
            "SELECT j.key, coalesce(j.reason, ''), t.attempts, j.error FROM states t JOIN jobs j ON j.id = t.id
             WHERE t.state = 'failed' ORDER BY j.key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FailedJob { key: r.get(0)?, reason: r.get(1)?, attempts: r.get(2)?, error: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: i64 = 60_000;

    #[tokio::test]
    async fn db_opens_on_a_current_thread_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).await.unwrap();
        db.call(|l| l.plan([("j", "k")], 1)).await.unwrap();
        assert!(db.call(|l| l.job("j")).await.unwrap().is_some());
    }

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        (dir, ledger)
    }

    fn state(ledger: &Ledger, job: &str) -> State {
        ledger.job(job).unwrap().unwrap().state
    }

    #[test]
    fn schema_is_versioned_and_reopening_keeps_it() {
        let (dir, ledger) = ledger();
        assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(ledger.integrity_check().unwrap(), "ok");
        drop(ledger);
        let again = Ledger::open(dir.path()).unwrap();
        assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = again.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (dir, ledger) = ledger();
        ledger.conn.execute("UPDATE meta SET schema_version = 99", []).unwrap();
        drop(ledger);
        let err = Ledger::open(dir.path()).unwrap_err();
        let text = crate::error::chain(&err);
        assert!(text.contains("schema version 99"), "{text}");
    }

    fn cp(bytes: &[u8]) -> Checkpoint {
        Checkpoint {
            offset: bytes.len() as u64,
            prefix_sha256: Sha256::of(bytes),
            etag: Some("\"e\"".into()),
            last_modified: None,
            total: Some(3),
            segments: Vec::new(),
            upload: None,
        }
    }

    fn begin(ledger: &mut Ledger, job: &str, owner: &str, now: i64) -> Begin {
        ledger.begin_attempt(job, owner, now, &|_| true).unwrap()
    }

    #[test]
    fn job_moves_through_its_states() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j1", "k1"), ("j2", "k2")], 1).unwrap();
        assert_eq!(state(&ledger, "j1"), State::Planned);
        assert!(ledger.job("nope").unwrap().is_none());
        assert!(ledger.begin_attempt("nope", "me", 1, &|_| true).is_err());
        assert_eq!(begin(&mut ledger, "j1", "me", 11), Begin::Mine(1));
        let row = ledger.job("j1").unwrap().unwrap();
        assert_eq!((row.state, row.owner.as_deref(), row.updated_ms), (State::Fetching, Some("me"), 11));
        assert!(ledger.verified("j1", "me", &cp(b"abc"), 12).unwrap());
        let row = ledger.job("j1").unwrap().unwrap();
        assert_eq!((row.state, row.checkpoint, row.size), (State::Verified, Some(cp(b"abc")), Some(3)));
        ledger.promoted("j1", &Sha256::of(b"abc"), 3, 13).unwrap();
        let row = ledger.job("j1").unwrap().unwrap();
        assert_eq!((row.state, row.checkpoint, row.sha256), (State::Promoted, None, Some(Sha256::of(b"abc"))));
        assert_eq!(begin(&mut ledger, "j2", "me", 14), Begin::Mine(1));
        assert_eq!(begin(&mut ledger, "j2", "me", 15), Begin::Mine(2));
        assert!(ledger.failed("j2", "me", "http-404", "404 Not Found", 16).unwrap());
        assert_eq!(
            ledger.failures().unwrap(),
            vec![FailedJob {
                key: "k2".into(),
                reason: "http-404".into(),
                attempts: 2,
                error: Some("404 Not Found".into())
            }]
        );
        let counts = ledger.counts().unwrap();
        assert_eq!((counts["promoted"], counts["failed"]), (1, 1));
        // Planning again never resets what is recorded.
        ledger.plan([("j1", "k1")], 20).unwrap();
        assert_eq!(state(&ledger, "j1"), State::Promoted);
        // A failed job is tried again by a later attempt.
        assert_eq!(begin(&mut ledger, "j2", "later", 21), Begin::Mine(3));
    }

    #[test]
    fn nothing_changes_a_promoted_job() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 2), Begin::Mine(1));
        // Another worker promoted it (a duplicate, or a worker that took over).
        ledger.promoted("j", &Sha256::of(b"abc"), 3, 3).unwrap();
        assert!(!ledger.failed("j", "a", "size-mismatch", "late", 4).unwrap(), "a failure never overwrites promoted");
        assert!(!ledger.checkpoint("j", "a", &cp(b"ab"), 4).unwrap());
        assert!(!ledger.verified("j", "a", &cp(b"abc"), 4).unwrap());
        assert!(!ledger.disown("j", "a", 4).unwrap());
        ledger.elsewhere("j", &Elsewhere::Failed { reason: "http-404".into(), error: "there".into() }, 4).unwrap();
        assert_eq!(begin(&mut ledger, "j", "b", 5), Begin::Promoted);
        // Recording the same promotion again writes nothing (a rerun that finds it present).
        ledger.promoted("j", &Sha256::of(b"abc"), 3, 6).unwrap();
        assert_eq!(ledger.job("j").unwrap().unwrap().updated_ms, 3, "an unchanged row was rewritten");
        let row = ledger.job("j").unwrap().unwrap();
        assert_eq!((row.state, row.sha256, row.reason), (State::Promoted, Some(Sha256::of(b"abc")), None));
    }

    #[test]
    fn a_job_in_flight_has_one_owner() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 2), Begin::Mine(1));
        assert!(ledger.checkpoint("j", "a", &cp(b"a"), 3).unwrap());
        // b waits while a may be alive, whatever a's lease says.
        assert_eq!(begin(&mut ledger, "j", "b", 4), Begin::Busy { owner: "a".into(), updated_ms: 3 });
        // Every later transition of a stranger is refused.
        assert!(!ledger.checkpoint("j", "b", &cp(b"ab"), 5).unwrap());
        assert!(!ledger.verified("j", "b", &cp(b"abc"), 5).unwrap());
        assert!(!ledger.clear_checkpoint("j", "b", 5).unwrap());
        assert!(!ledger.failed("j", "b", "x", "y", 5).unwrap());
        assert!(!ledger.disown("j", "b", 5).unwrap());
        assert_eq!(ledger.job("j").unwrap().unwrap().checkpoint, Some(cp(b"a")));
        // a stops (lease lost): b takes it with a's checkpoint to resume from.
        assert!(ledger.disown("j", "a", 6).unwrap());
        assert_eq!(state(&ledger, "j"), State::Planned);
        assert_eq!(begin(&mut ledger, "j", "b", 7), Begin::Mine(2));
        let row = ledger.job("j").unwrap().unwrap();
        assert_eq!((row.owner.as_deref(), row.checkpoint), (Some("b"), Some(cp(b"a"))));
        // a, back from a pause, owns nothing any more.
        assert!(!ledger.checkpoint("j", "a", &cp(b"ab"), 8).unwrap());
        // A dead owner's job is taken at once.
        assert_eq!(ledger.begin_attempt("j", "c", 9, &|o| o != "b").unwrap(), Begin::Mine(3));
    }

    #[test]
    fn work_done_elsewhere_is_recorded_without_touching_jobs_here() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j1", "k1"), ("j2", "k2"), ("j3", "k3")], 1).unwrap();
        ledger.elsewhere("j1", &Elsewhere::Promoted(Sha256::of(b"x")), 2).unwrap();
        ledger.elsewhere("j2", &Elsewhere::Failed { reason: "http-404".into(), error: "on h".into() }, 2).unwrap();
        assert_eq!(begin(&mut ledger, "j3", "me", 2), Begin::Mine(1));
        ledger.elsewhere("j3", &Elsewhere::Promoted(Sha256::of(b"y")), 3).unwrap();
        assert_eq!(state(&ledger, "j1"), State::Elsewhere);
        assert_eq!(ledger.job("j1").unwrap().unwrap().sha256, Some(Sha256::of(b"x")));
        assert_eq!(ledger.failures().unwrap()[0].error.as_deref(), Some("on h"));
        assert_eq!(state(&ledger, "j3"), State::Fetching, "a job in flight here is left alone");
    }

    #[test]
    fn leases_expire_and_are_taken_over() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j1", "k1"), ("j2", "k2")], 0).unwrap();
        ledger.prepare_shards("run", 1).unwrap();
        assert!(matches!(ledger.acquire("run", 0, "a", 0, LEASE, &|_| true).unwrap(), Acquire::Acquired { .. }));
        assert_eq!(begin(&mut ledger, "j1", "a", 1), Begin::Mine(1));
        // Leasing a shard does not touch its jobs.
        assert_eq!(state(&ledger, "j2"), State::Planned);
        // Live and unexpired: b must wait; a itself does not lease it twice.
        assert_eq!(ledger.acquire("run", 0, "b", 1_000, LEASE, &|_| true).unwrap(), Acquire::Held);
        assert_eq!(ledger.acquire("run", 0, "a", 1_000, LEASE, &|_| true).unwrap(), Acquire::Held);
        assert_eq!(ledger.claims(1_000, &|_| true).unwrap(), (1, 0));
        assert!(ledger.stuck(1_000, &|_| true).unwrap().is_empty());
        // A dead owner's lease counts as expired, its job in flight as stuck.
        assert_eq!(ledger.claims(1_000, &|_| false).unwrap(), (0, 1));
        assert_eq!(ledger.stuck(1_000, &|_| false).unwrap(), vec![("k1".to_owned(), "fetching".to_owned())]);
        // Renewal moves the expiry.
        assert!(ledger.renew("run", 0, "a", 50_000, LEASE).unwrap());
        assert!(!ledger.renew("run", 0, "b", 50_000, LEASE).unwrap());
        assert_eq!(ledger.acquire("run", 0, "b", 100_000, LEASE, &|_| true).unwrap(), Acquire::Held);
        // Expired: counted as such, its job in flight shows as stuck, and b takes it over.
        assert_eq!(ledger.claims(110_001, &|_| true).unwrap(), (0, 1));
        assert_eq!(ledger.stuck(110_001, &|_| true).unwrap(), vec![("k1".to_owned(), "fetching".to_owned())]);
        assert_eq!(
            ledger.acquire("run", 0, "b", 110_001, LEASE, &|_| true).unwrap(),
            Acquire::Acquired { from: Some("a".into()) }
        );
        // a lost it: it can neither renew nor finish it.
        assert!(!ledger.renew("run", 0, "a", 110_002, LEASE).unwrap());
        assert!(!ledger.finish("run", 0, "a").unwrap());
        assert!(ledger.finish("run", 0, "b").unwrap());
        assert_eq!(ledger.acquire("run", 0, "c", 110_003, LEASE, &|_| true).unwrap(), Acquire::Done);
        assert!(ledger.all_done("run").unwrap());
    }

    #[test]
    fn a_version_1_ledger_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(FILE)).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (schema_version INTEGER NOT NULL); INSERT INTO meta VALUES (1);
                 INSERT INTO jobs (job, key, source, state, updated_ms) VALUES ('j', 'k', 's', 'claimed', 1);",
            )
            .unwrap();
        }
        let mut ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(state(&ledger, "j"), State::Planned);
        assert_eq!(begin(&mut ledger, "j", "me", 2), Begin::Mine(1));
    }

    /// Version 2 named owners in `jobs`; version 3 moves the state to `states` and numbers the
    /// owners: a job in flight keeps its owner, checkpoint and attempts, a failed one its reason.
    #[test]
    fn a_version_2_ledger_is_migrated_with_its_jobs_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let job = "ab".repeat(32);
        {
            let conn = Connection::open(dir.path().join(FILE)).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.execute_batch("CREATE TABLE meta (schema_version INTEGER NOT NULL); INSERT INTO meta VALUES (2);")
                .unwrap();
            conn.execute(
                "INSERT INTO jobs (job, key, source, state, attempts, owner, cp_offset, cp_sha256, updated_ms)
                 VALUES (?1, 'k', 's', 'fetching', 3, 'owner-a', 5, ?2, 7)",
                params![job, Sha256::of(b"hello").to_string()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO jobs (job, key, source, state, reason, error, updated_ms)
                 VALUES ('f', 'kf', 's', 'failed', 'http-404', 'not found', 8)",
                [],
            )
            .unwrap();
        }
        let mut ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
        let row = ledger.job(&job).unwrap().unwrap();
        assert_eq!(
            (row.state, row.attempts, row.owner.as_deref(), row.updated_ms),
            (State::Fetching, 3, Some("owner-a"), 7)
        );
        assert_eq!(row.checkpoint.map(|cp| cp.offset), Some(5));
        assert_eq!(begin(&mut ledger, &job, "me", 9), Begin::Busy { owner: "owner-a".into(), updated_ms: 7 });
        assert!(ledger.checkpoint(&job, "owner-a", &cp(b"hello!"), 10).unwrap(), "the owner still owns it");
        let failed = ledger.failures().unwrap();
        assert_eq!((failed[0].key.as_str(), failed[0].reason.as_str()), ("kf", "http-404"));
    }

    #[test]
    fn a_dead_owner_loses_its_lease_before_expiry() {
        let (_dir, mut ledger) = ledger();
        ledger.prepare_shards("run", 2).unwrap();
        ledger.acquire("run", 0, "dead", 0, LEASE, &|_| true).unwrap();
        let alive = |owner: &str| owner != "dead";
        assert_eq!(
            ledger.acquire("run", 0, "b", 1, LEASE, &alive).unwrap(),
            Acquire::Acquired { from: Some("dead".into()) }
        );
    }

    #[test]
    fn a_finished_pass_starts_over_on_the_next_run() {
        let (_dir, mut ledger) = ledger();
        ledger.prepare_shards("run", 2).unwrap();
        for shard in 0..2 {
            ledger.acquire("run", shard, "a", 0, LEASE, &|_| true).unwrap();
        }
        ledger.finish("run", 0, "a").unwrap();
        // Not all done: preparing again keeps the pass going.
        ledger.prepare_shards("run", 2).unwrap();
        assert_eq!(ledger.acquire("run", 0, "b", 1, LEASE, &|_| true).unwrap(), Acquire::Done);
        ledger.finish("run", 1, "a").unwrap();
        ledger.prepare_shards("run", 2).unwrap();
        assert!(!ledger.all_done("run").unwrap());
        assert!(matches!(ledger.acquire("run", 0, "b", 2, LEASE, &|_| true).unwrap(), Acquire::Acquired { .. }));
    }

    #[test]
    fn a_ledger_debugs_without_its_connection() {
        let (_dir, ledger) = ledger();
        assert_eq!(format!("{ledger:?}"), "Ledger { .. }");
    }

    /// `status` and `doctor` read an existing ledger and never make one.
    #[test]
    fn open_existing_reads_a_ledger_and_creates_none() {
        let dir = tempfile::tempdir().unwrap();
        let err = Ledger::open_existing(dir.path()).unwrap_err();
        assert!(matches!(err, LedgerError::Missing { .. }), "{err:?}");
        assert!(!dir.path().join(FILE).exists(), "open_existing created a ledger");
        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.plan([("j", "k")], 1).unwrap();
        drop(ledger);
        let existing = Ledger::open_existing(dir.path()).unwrap();
        assert_eq!(existing.counts().unwrap(), BTreeMap::from([("planned".to_owned(), 1)]));
    }

    /// Switching a new ledger to WAL needs it to itself, and SQLite answers "busy" at once
    /// (without its busy handler) while another connection holds the write lock (as a second
    /// process opening the same new ledger may): the open waits for it, not fails.
    #[test]
    fn opening_waits_for_another_connection_on_a_new_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let holder = Connection::open(dir.path().join(FILE)).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let run_dir = dir.path().to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(Ledger::open(&run_dir).map(drop));
        });
        // Bounded: it must still be waiting after 300 ms, and open within 10 s of the release.
        let early = rx.recv_timeout(std::time::Duration::from_millis(300));
        assert!(early.is_err(), "opened (or gave up) while another connection held the file: {early:?}");
        holder.execute_batch("COMMIT").unwrap();
        let opened = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("still waiting after the release");
        opened.unwrap();
        let ledger = Ledger::open_existing(dir.path()).unwrap();
        let mode: String = ledger.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    /// Only "busy" is waited out: any other error (a file that is not a database) fails the
    /// open at once.
    #[test]
    fn a_file_that_is_not_a_ledger_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), vec![b'x'; 4096]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let run_dir = dir.path().to_owned();
        let started = std::time::Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(Ledger::open(&run_dir).map(drop));
        });
        // Bounded: 10 s, well below the 30 s a busy ledger is waited for.
        let opened = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("still trying after 10 s");
        let err = opened.unwrap_err();
        assert!(matches!(err, LedgerError::Open { what: "configuring", .. }), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    /// A ledger at the current version is reopened as it is (not refused as newer).
    #[test]
    fn the_current_schema_version_is_not_newer() {
        let (dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        drop(ledger);
        let again = Ledger::open(dir.path()).unwrap();
        assert_eq!((again.schema_version().unwrap(), state(&again, "j")), (SCHEMA_VERSION, State::Planned));
    }

    /// `in_transaction`: all of `f`'s changes, or none when it fails; the ledger is usable
    /// after either.
    #[test]
    fn in_transaction_keeps_all_or_nothing() {
        let (dir, ledger) = ledger();
        let err = ledger
            .in_transaction(|l| {
                let mut l2 = Ledger { conn: Connection::open(dir.path().join(FILE)).unwrap() };
                l2.conn.busy_timeout(std::time::Duration::from_millis(1)).unwrap();
                // Another connection cannot write while the transaction holds the write lock.
                assert!(l2.plan([("other", "o")], 1).is_err(), "a second writer got in");
                l.conn.execute("INSERT OR IGNORE INTO jobs (job, key) VALUES ('x', 'x')", [])?;
                Err(LedgerError::UnknownJob("x".into()))
            })
            .unwrap_err();
        assert!(matches!(err, LedgerError::UnknownJob(_)), "{err:?}");
        assert!(ledger.conn.is_autocommit(), "the failed transaction was left open");
        assert!(ledger.job("x").unwrap().is_none(), "a failed transaction's change was kept");
        ledger
            .in_transaction(|l| {
                l.conn.execute("INSERT INTO jobs (job, key) VALUES ('y', 'y')", [])?;
                l.conn.execute(
                    "INSERT INTO states (id, state, updated_ms) VALUES (last_insert_rowid(), 'planned', 1)",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        assert_eq!(state(&ledger, "y"), State::Planned);
        let other = Ledger::open_existing(dir.path()).unwrap();
        assert_eq!(state(&other, "y"), State::Planned, "not committed");
    }

    /// `begin_attempts`: each job's row as it was, and what beginning it gave, in one
    /// transaction; an unknown job begins none of them.
    #[test]
    fn begin_attempts_begins_each_and_returns_the_rows_before() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j1", "k1"), ("j2", "k2"), ("j3", "k3")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j2", "other", 2), Begin::Mine(1));
        ledger.promoted("j3", &Sha256::of(b"x"), 1, 3).unwrap();
        let before: Vec<_> = ["j1", "j2", "j3"].iter().map(|j| ledger.job(j).unwrap()).collect();
        let jobs: Vec<String> = ["j1", "j2", "j3"].iter().map(|j| (*j).to_owned()).collect();
        let got = ledger.begin_attempts(&jobs, "me", 4, &|_| true).unwrap();
        assert_eq!(
            got,
            vec![
                (before[0].clone(), Begin::Mine(1)),
                (before[1].clone(), Begin::Busy { owner: "other".into(), updated_ms: 2 }),
                (before[2].clone(), Begin::Promoted),
            ]
        );
        assert_eq!(state(&ledger, "j1"), State::Fetching);
        // One unknown job: none of them is begun.
        ledger.plan([("j4", "k4")], 5).unwrap();
        let jobs = vec!["j4".to_owned(), "nope".to_owned()];
        assert!(matches!(ledger.begin_attempts(&jobs, "me", 6, &|_| true), Err(LedgerError::UnknownJob(_))));
        assert_eq!(state(&ledger, "j4"), State::Planned, "begun although the batch failed");
    }

    /// Owners are numbered: each job names its own owner, also after many owners.
    #[test]
    fn each_job_names_its_own_owner() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j1", "k1"), ("j2", "k2"), ("j3", "k3")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j1", "a", 2), Begin::Mine(1));
        assert_eq!(begin(&mut ledger, "j2", "b", 2), Begin::Mine(1));
        assert_eq!(begin(&mut ledger, "j3", "a", 2), Begin::Mine(1));
        let owner = |job| ledger.job(job).unwrap().unwrap().owner;
        assert_eq!((owner("j1"), owner("j2"), owner("j3")), (Some("a".into()), Some("b".into()), Some("a".into())));
        assert!(ledger.checkpoint("j2", "b", &cp(b"a"), 3).unwrap());
        assert!(!ledger.checkpoint("j2", "a", &cp(b"a"), 3).unwrap());
    }

    /// A verified job is still in flight: another live worker may not take it.
    #[test]
    fn a_verified_job_is_in_flight_until_promoted() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 2), Begin::Mine(1));
        assert!(ledger.verified("j", "a", &cp(b"abc"), 3).unwrap());
        assert_eq!(begin(&mut ledger, "j", "b", 4), Begin::Busy { owner: "a".into(), updated_ms: 3 });
        // Its owner may fail it, and then anyone may try again.
        assert!(ledger.failed("j", "a", "promote", "disk full", 5).unwrap());
        assert_eq!(begin(&mut ledger, "j", "b", 6), Begin::Mine(2));
    }

    /// The owner can drop its checkpoint (the partial was discarded); the row says so.
    #[test]
    fn clear_checkpoint_forgets_the_partial_for_its_owner() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 2), Begin::Mine(1));
        assert!(ledger.checkpoint("j", "a", &cp(b"ab"), 3).unwrap());
        assert!(ledger.clear_checkpoint("j", "a", 4).unwrap());
        let row = ledger.job("j").unwrap().unwrap();
        assert_eq!((row.state, row.checkpoint, row.updated_ms), (State::Fetching, None, 4));
    }

    /// A job that failed before and is promoted later loses its failure (and `status` no
    /// longer lists it).
    #[test]
    fn a_promotion_clears_an_earlier_failure() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 2), Begin::Mine(1));
        assert!(ledger.failed("j", "a", "http-500", "server error", 3).unwrap());
        assert_eq!(ledger.job("j").unwrap().unwrap().reason.as_deref(), Some("http-500"));
        assert_eq!(begin(&mut ledger, "j", "a", 4), Begin::Mine(2));
        ledger.promoted("j", &Sha256::of(b"abc"), 3, 5).unwrap();
        let row = ledger.job("j").unwrap().unwrap();
        assert_eq!((row.state, row.reason, row.owner), (State::Promoted, None, None));
        assert!(ledger.failures().unwrap().is_empty());
        let error: Option<String> =
            ledger.conn.query_row("SELECT error FROM jobs WHERE job = ?1", [job_key("j")], |r| r.get(0)).unwrap();
        assert_eq!(error, None);
    }

    /// `forget_promoted` puts a promoted job back to `planned`, and touches no other job.
    #[test]
    fn forget_promoted_replans_only_promoted_jobs() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("p", "kp"), ("f", "kf")], 1).unwrap();
        ledger.promoted("p", &Sha256::of(b"x"), 1, 2).unwrap();
        assert_eq!(begin(&mut ledger, "f", "a", 2), Begin::Mine(1));
        ledger.forget_promoted("p", 3).unwrap();
        ledger.forget_promoted("f", 3).unwrap();
        let row = ledger.job("p").unwrap().unwrap();
        assert_eq!((row.state, row.updated_ms), (State::Planned, 3));
        let row = ledger.job("f").unwrap().unwrap();
        assert_eq!((row.state, row.updated_ms), (State::Fetching, 2));
    }

    /// Another machine's outcome leaves a job in flight here as it is, its last failure
    /// included.
    #[test]
    fn work_done_elsewhere_leaves_the_failure_of_a_job_in_flight() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 2), Begin::Mine(1));
        assert!(ledger.failed("j", "a", "http-500", "here", 3).unwrap());
        assert_eq!(begin(&mut ledger, "j", "a", 4), Begin::Mine(2));
        ledger.elsewhere("j", &Elsewhere::Failed { reason: "http-404".into(), error: "there".into() }, 5).unwrap();
        let row = ledger.job("j").unwrap().unwrap();
        assert_eq!((row.state, row.reason.as_deref()), (State::Fetching, Some("http-500")));
    }

    /// A lease is live until the millisecond it expires; at that millisecond it is expired,
    /// counted so, its jobs stuck, and taken over.
    #[test]
    fn a_lease_expires_at_its_expiry_time() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 0).unwrap();
        ledger.prepare_shards("run", 1).unwrap();
        ledger.acquire("run", 0, "a", 0, LEASE, &|_| true).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 1), Begin::Mine(1));
        assert_eq!(ledger.claims(LEASE - 1, &|_| true).unwrap(), (1, 0));
        assert!(ledger.stuck(LEASE - 1, &|_| true).unwrap().is_empty());
        assert_eq!(ledger.acquire("run", 0, "b", LEASE - 1, LEASE, &|_| true).unwrap(), Acquire::Held);
        assert_eq!(ledger.claims(LEASE, &|_| true).unwrap(), (0, 1));
        assert_eq!(ledger.stuck(LEASE, &|_| true).unwrap(), vec![("k".to_owned(), "fetching".to_owned())]);
        assert_eq!(
            ledger.acquire("run", 0, "b", LEASE, LEASE, &|_| true).unwrap(),
            Acquire::Acquired { from: Some("a".into()) }
        );
    }

    /// An owner asking again for its own unexpired lease holds it already, whatever `alive`
    /// says about it (it is the caller).
    #[test]
    fn an_owner_does_not_take_its_own_lease_over() {
        let (_dir, mut ledger) = ledger();
        ledger.prepare_shards("run", 1).unwrap();
        ledger.acquire("run", 0, "a", 0, LEASE, &|_| true).unwrap();
        assert_eq!(ledger.acquire("run", 0, "a", 1, LEASE, &|_| false).unwrap(), Acquire::Held);
        // Expired, its own lease is taken again, from nobody else.
        assert_eq!(ledger.acquire("run", 0, "a", LEASE, LEASE, &|_| true).unwrap(), Acquire::Acquired { from: None });
    }

    /// A released lease is free at once for anyone, and its shard is not done.
    #[test]
    fn a_released_lease_is_free_and_not_done() {
        let (_dir, mut ledger) = ledger();
        ledger.prepare_shards("run", 1).unwrap();
        ledger.acquire("run", 0, "a", 0, LEASE, &|_| true).unwrap();
        ledger.release("run", 0, "b").unwrap();
        assert_eq!(ledger.acquire("run", 0, "b", 1, LEASE, &|_| true).unwrap(), Acquire::Held, "b released a's lease");
        ledger.release("run", 0, "a").unwrap();
        assert_eq!(ledger.claims(1, &|_| true).unwrap(), (0, 0));
        assert!(!ledger.all_done("run").unwrap());
        assert_eq!(ledger.acquire("run", 0, "b", 2, LEASE, &|_| true).unwrap(), Acquire::Acquired { from: None });
    }

    #[test]
    fn now_ms_is_the_time_since_the_epoch() {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let now = now_ms();
        let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!((before..=after).contains(&now), "{before} <= {now} <= {after}");
    }

    #[test]
    fn segments_are_stored_as_text_and_read_back_only_when_they_make_sense() {
        let segments = [Segment { start: 0, done: 5, end: 10 }, Segment { start: 10, done: 10, end: 20 }];
        let text = Segment::list(&segments);
        assert_eq!(text, "0-5-10,10-10-20");
        assert_eq!(Segment::parse_list(&text).as_deref(), Some(&segments[..]));
        for bad in ["", "0-5", "0-5-10-1", "1-5-10", "0-11-10", "0-5-10,11-11-20", "0-x-10", "0-5-4"] {
            assert_eq!(Segment::parse_list(bad), None, "{bad:?}");
        }
        // A checkpoint with segments goes through the ledger as it is; cleared with the rest.
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 2), Begin::Mine(1));
        let with = Checkpoint { segments: segments.to_vec(), ..cp(b"abcde") };
        assert!(ledger.checkpoint("j", "a", &with, 3).unwrap());
        assert_eq!(ledger.job("j").unwrap().unwrap().checkpoint, Some(with));
        assert!(ledger.checkpoint("j", "a", &cp(b"ab"), 4).unwrap());
        assert_eq!(ledger.job("j").unwrap().unwrap().checkpoint, Some(cp(b"ab")), "one stream again: no segments");
        // A segment list that does not read back is no checkpoint (the partial is fetched again).
        ledger.conn.execute("UPDATE jobs SET cp_segments = 'nonsense'", []).unwrap();
        assert_eq!(ledger.job("j").unwrap().unwrap().checkpoint, None);
        assert!(ledger.clear_checkpoint("j", "a", 5).unwrap());
        let left: Option<String> = ledger.conn.query_row("SELECT cp_segments FROM jobs", [], |r| r.get(0)).unwrap();
        assert_eq!(left, None);
    }

    /// A backend's resume point goes through the ledger as it is, and is cleared with the rest;
    /// one that does not read back, or names another offset than the checkpoint, is no
    /// checkpoint (the download starts over).
    #[test]
    fn a_resume_point_is_stored_with_its_checkpoint() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j", "k")], 1).unwrap();
        assert_eq!(begin(&mut ledger, "j", "a", 2), Begin::Mine(1));
        let point = ResumePoint { offset: 5, hash_state: "00ff".into(), token: "{\"upload_id\":\"u\"}".into() };
        let with = Checkpoint { upload: Some(point), ..cp(b"abcde") };
        assert!(ledger.checkpoint("j", "a", &with, 3).unwrap());
        assert_eq!(ledger.job("j").unwrap().unwrap().checkpoint, Some(with.clone()));
        ledger.conn.execute("UPDATE jobs SET cp_offset = 4", []).unwrap();
        assert_eq!(ledger.job("j").unwrap().unwrap().checkpoint, None, "a point at another offset");
        assert!(ledger.checkpoint("j", "a", &with, 4).unwrap());
        ledger.conn.execute("UPDATE jobs SET cp_upload = 'nonsense'", []).unwrap();
        assert_eq!(ledger.job("j").unwrap().unwrap().checkpoint, None, "a point that does not read back");
        assert!(ledger.checkpoint("j", "a", &with, 5).unwrap());
        assert!(ledger.clear_checkpoint("j", "a", 6).unwrap());
        let left: Option<String> = ledger.conn.query_row("SELECT cp_upload FROM jobs", [], |r| r.get(0)).unwrap();
        assert_eq!(left, None);
    }
}
