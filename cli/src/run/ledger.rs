//! The run ledger: `ledger.sqlite3` in the run directory, the durable record of every job.
//!
//! SQLite in WAL mode (crash-safe: a killed process loses at most the transaction it was in),
//! with a busy timeout so several `promote run` processes on one run directory take turns, and
//! every multi-row change in one transaction. `meta.schema_version` says which of
//! [`MIGRATIONS`] have been applied; opening a ledger applies the missing ones.
//!
//! Jobs move `planned → claimed → fetching → verified → promoted`, or end `failed` (reason,
//! attempt count) or `skipped`. A job is only recorded `promoted` after the backend's publish
//! returned. Shard leases (see `shards.rs`) live here too, for processes sharing a run directory.
//! Times are milliseconds since the Unix epoch, passed in by the caller (tests inject a clock).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use promote_core::Sha256;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// The ledger's file name in the run directory.
pub(crate) const FILE: &str = "ledger.sqlite3";

/// Schema migrations; `MIGRATIONS[n]` takes schema version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &["
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
"];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A job's recorded state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum State {
    /// Listed, nobody working on it.
    Planned,
    /// Its shard is leased by a worker.
    Claimed,
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
}

impl State {
    /// Every state, in lifecycle order.
    pub(crate) const ALL: [Self; 7] =
        [Self::Planned, Self::Claimed, Self::Fetching, Self::Verified, Self::Promoted, Self::Failed, Self::Skipped];

    /// The word stored and shown.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Claimed => "claimed",
            Self::Fetching => "fetching",
            Self::Verified => "verified",
            Self::Promoted => "promoted",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A durable point in a partial download: the first `offset` bytes are on disk (fsynced) and
/// hash to `prefix_sha256`, fetched from a response with these validators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Bytes kept.
    pub(crate) offset: u64,
    /// SHA-256 of those bytes.
    pub(crate) prefix_sha256: Sha256,
    /// The response's `ETag`.
    pub(crate) etag: Option<String>,
    /// The response's `Last-Modified`.
    pub(crate) last_modified: Option<String>,
    /// The whole object's length, when the server said.
    pub(crate) total: Option<u64>,
}

/// One job as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobRow {
    /// Its state.
    pub(crate) state: State,
    /// Attempts made so far, over all runs.
    pub(crate) attempts: u32,
    /// Why it failed (a short reason such as `http-404`).
    pub(crate) reason: Option<String>,
    /// The digest promoted (or verified) for it.
    pub(crate) sha256: Option<Sha256>,
    /// Its size, once known.
    pub(crate) size: Option<u64>,
    /// Its partial download's last checkpoint.
    pub(crate) checkpoint: Option<Checkpoint>,
}

/// What trying to lease a shard gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Acquire {
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

/// A failed job, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The destination key.
    pub(crate) key: String,
    /// Short reason.
    pub(crate) reason: String,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// The last error message.
    pub(crate) error: Option<String>,
}

/// An open ledger.
pub(crate) struct Ledger {
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
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the run directory {}", dir.display()))?;
        let path = dir.join(FILE);
        let conn = Connection::open(&path).with_context(|| format!("opening the ledger {}", path.display()))?;
        let mut ledger = Self { conn };
        ledger.configure().with_context(|| format!("configuring the ledger {}", path.display()))?;
        ledger.migrate().with_context(|| format!("migrating the ledger {}", path.display()))?;
        Ok(ledger)
    }

    /// Opens an existing ledger without changing it (for `status` and `doctor`).
    ///
    /// # Errors
    ///
    /// When there is no ledger in `dir` or it cannot be read.
    pub(crate) fn open_existing(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(FILE);
        if !path.is_file() {
            anyhow::bail!("no run ledger at {} (run `promote run` with --out {} first)", path.display(), dir.display());
        }
        let conn = Connection::open(&path).with_context(|| format!("opening the ledger {}", path.display()))?;
        let ledger = Self { conn };
        ledger.conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(ledger)
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(30))?;
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
        // WAL + NORMAL survives any process crash; a power loss may forget the last few
        // transitions, which the next run rediscovers from the backend (create-only).
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(())
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
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
            anyhow::bail!(
                "the ledger has schema version {version}, newer than this promote understands ({SCHEMA_VERSION}); \
                 use a newer promote or another --out"
            );
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).with_context(|| format!("migration {from} → {}", from + 1))?;
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
    pub(crate) fn schema_version(&self) -> anyhow::Result<i64> {
        Ok(self.conn.query_row("SELECT schema_version FROM meta", [], |r| r.get(0))?)
    }

    /// SQLite's `integrity_check`: `"ok"` or what is wrong.
    ///
    /// # Errors
    ///
    /// When the ledger cannot be read.
    pub(crate) fn integrity_check(&self) -> anyhow::Result<String> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(rows.join("; "))
    }

    /// Records `jobs` (job key, destination key, source) as planned, leaving known jobs as they
    /// are. One transaction.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn plan<'a>(
        &mut self,
        jobs: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
        now: i64,
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare(
                "INSERT OR IGNORE INTO jobs (job, key, source, state, updated_ms) VALUES (?1, ?2, ?3, 'planned', ?4)",
            )?;
            for (job, key, source) in jobs {
                insert.execute(params![job, key, source, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The recorded job, if any.
    ///
    /// # Errors
    ///
    /// SQLite errors, or a row this build cannot read.
    pub(crate) fn job(&self, job: &str) -> anyhow::Result<Option<JobRow>> {
        let row = self
            .conn
            .query_row(
                "SELECT state, attempts, reason, sha256, size, cp_offset, cp_sha256, cp_etag, cp_last_modified, cp_total
                 FROM jobs WHERE job = ?1",
                [job],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<i64>>(9)?,
                    ))
                },
            )
            .optional()?;
        let Some((state, attempts, reason, sha256, size, cp_offset, cp_sha, etag, last_modified, total)) = row else {
            return Ok(None);
        };
        let state = State::parse(&state).with_context(|| format!("job {job} has unknown state {state:?}"))?;
        let sha = |s: Option<String>| s.and_then(|s| s.parse::<Sha256>().ok());
        let checkpoint = match (cp_offset, sha(cp_sha)) {
            (Some(offset), Some(prefix_sha256)) => Some(Checkpoint {
                offset: offset as u64,
                prefix_sha256,
                etag,
                last_modified,
                total: total.map(|t| t as u64),
            }),
            _ => None,
        };
        Ok(Some(JobRow { state, attempts, reason, sha256: sha(sha256), size: size.map(|s| s as u64), checkpoint }))
    }

    fn update(&self, sql: &str, params: impl rusqlite::Params) -> anyhow::Result<()> {
        self.conn.execute(sql, params)?;
        Ok(())
    }

    /// Starts an attempt: state `fetching`, one more attempt counted. Returns the attempt count.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn begin_attempt(&self, job: &str, now: i64) -> anyhow::Result<u32> {
        Ok(self.conn.query_row(
            "UPDATE jobs SET state = 'fetching', attempts = attempts + 1, updated_ms = ?2 WHERE job = ?1
             RETURNING attempts",
            params![job, now],
            |r| r.get(0),
        )?)
    }

    /// Records a durable checkpoint of `job`'s partial download.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn checkpoint(&self, job: &str, cp: &Checkpoint, now: i64) -> anyhow::Result<()> {
        self.update(
            "UPDATE jobs SET cp_offset = ?2, cp_sha256 = ?3, cp_etag = ?4, cp_last_modified = ?5, cp_total = ?6,
             updated_ms = ?7 WHERE job = ?1",
            params![
                job,
                cp.offset as i64,
                cp.prefix_sha256.to_string(),
                cp.etag,
                cp.last_modified,
                cp.total.map(|t| t as i64),
                now
            ],
        )
    }

    /// A complete, checked partial: state `verified` with its digest and a final checkpoint.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn verified(&self, job: &str, cp: &Checkpoint, now: i64) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        self.checkpoint(job, cp, now)?;
        self.update(
            "UPDATE jobs SET state = 'verified', sha256 = ?2, size = ?3 WHERE job = ?1",
            params![job, cp.prefix_sha256.to_string(), cp.offset as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets `job`'s partial download.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn clear_checkpoint(&self, job: &str, now: i64) -> anyhow::Result<()> {
        self.update(
            "UPDATE jobs SET cp_offset = NULL, cp_sha256 = NULL, cp_etag = NULL, cp_last_modified = NULL,
             cp_total = NULL, updated_ms = ?2 WHERE job = ?1",
            params![job, now],
        )
    }

    /// The backend holds `job`'s object with this digest. Call only after the backend said so.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn promoted(&self, job: &str, sha256: &Sha256, size: u64, now: i64) -> anyhow::Result<()> {
        self.update(
            "UPDATE jobs SET state = 'promoted', sha256 = ?2, size = ?3, reason = NULL, error = NULL,
             cp_offset = NULL, cp_sha256 = NULL, cp_etag = NULL, cp_last_modified = NULL, cp_total = NULL,
             updated_ms = ?4 WHERE job = ?1",
            params![job, sha256.to_string(), size as i64, now],
        )
    }

    /// `job` failed for `reason` (the partial's checkpoint is kept for a later resume).
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn failed(&self, job: &str, reason: &str, error: &str, now: i64) -> anyhow::Result<()> {
        self.update(
            "UPDATE jobs SET state = 'failed', reason = ?2, error = ?3, updated_ms = ?4 WHERE job = ?1",
            params![job, reason, error, now],
        )
    }

    /// Makes sure run `run` has shards `0..count`. When every shard of an earlier pass over the
    /// same manifest is done, starts a new pass (so a rerun checks every item again).
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn prepare_shards(&mut self, run: &str, count: u64) -> anyhow::Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (rows, done): (i64, i64) =
            tx.query_row("SELECT count(*), coalesce(sum(done), 0) FROM shards WHERE run = ?1", [run], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if rows > 0 && rows == done {
            tx.execute("DELETE FROM shards WHERE run = ?1", [run])?;
        }
        {
            let mut insert = tx.prepare("INSERT OR IGNORE INTO shards (run, shard) VALUES (?1, ?2)")?;
            for shard in 0..count {
                insert.execute(params![run, shard as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Tries to lease shard `shard` of `run` for `owner` until `now + lease_ms`. A lease held by
    /// someone else is taken over when it has expired or `alive` says its owner is gone; the
    /// shard's unfinished jobs are then claimed again (their partials are kept for resume).
    ///
    /// # Errors
    ///
    /// SQLite errors.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn acquire(
        &mut self,
        run: &str,
        shard: u64,
        jobs: &[String],
        owner: &str,
        now: i64,
        lease_ms: i64,
        alive: &dyn Fn(&str) -> bool,
    ) -> anyhow::Result<Acquire> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(Option<String>, Option<i64>, bool)> = tx
            .query_row(
                "SELECT owner, expires_ms, done FROM shards WHERE run = ?1 AND shard = ?2",
                params![run, shard as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((holder, expires, done)) = row else {
            anyhow::bail!("shard {shard} of run {run} is not in the ledger");
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
        tx.execute(
            "UPDATE shards SET owner = ?3, expires_ms = ?4 WHERE run = ?1 AND shard = ?2",
            params![run, shard as i64, owner, now + lease_ms],
        )?;
        {
            let mut claim = tx.prepare(
                "UPDATE jobs SET state = 'claimed', run = ?2, shard = ?3, updated_ms = ?4
                 WHERE job = ?1 AND state IN ('planned', 'claimed', 'fetching', 'verified', 'failed', 'skipped')",
            )?;
            for job in jobs {
                claim.execute(params![job, run, shard as i64, now])?;
            }
        }
        tx.commit()?;
        Ok(Acquire::Acquired { from: holder.filter(|h| h != owner) })
    }

    /// Extends `owner`'s lease on a shard; false when it is no longer `owner`'s.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn renew(&self, run: &str, shard: u64, owner: &str, now: i64, lease_ms: i64) -> anyhow::Result<bool> {
        let n = self.conn.execute(
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
    pub(crate) fn finish(&self, run: &str, shard: u64, owner: &str) -> anyhow::Result<bool> {
        let n = self.conn.execute(
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
    pub(crate) fn release(&self, run: &str, shard: u64, owner: &str) -> anyhow::Result<()> {
        self.update(
            "UPDATE shards SET owner = NULL, expires_ms = NULL WHERE run = ?1 AND shard = ?2 AND owner = ?3",
            params![run, shard as i64, owner],
        )
    }

    /// Whether every shard of `run` is done.
    #[cfg(test)]
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn all_done(&self, run: &str) -> anyhow::Result<bool> {
        let open: i64 =
            self.conn.query_row("SELECT count(*) FROM shards WHERE run = ?1 AND done = 0", [run], |r| r.get(0))?;
        Ok(open == 0)
    }

    /// Jobs by state.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn counts(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut stmt = self.conn.prepare("SELECT state, count(*) FROM jobs GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Shard leases held, as (live, expired) at `now`; a lease whose owner `alive` says is gone
    /// counts as expired.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn claims(&self, now: i64, alive: &dyn Fn(&str) -> bool) -> anyhow::Result<(u64, u64)> {
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

    /// Jobs in flight whose shard has no live lease at `now` (expired, or its owner gone):
    /// (key, state), by key.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub(crate) fn stuck(&self, now: i64, alive: &dyn Fn(&str) -> bool) -> anyhow::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT j.key, j.state, s.owner, s.expires_ms FROM jobs j
             LEFT JOIN shards s ON s.run = j.run AND s.shard = j.shard
             WHERE j.state IN ('claimed', 'fetching', 'verified') ORDER BY j.key",
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
    pub(crate) fn failures(&self) -> anyhow::Result<Vec<Failure>> {
        let mut stmt = self.conn.prepare(
            "SELECT key, coalesce(reason, ''), attempts, error FROM jobs WHERE state = 'failed' ORDER BY key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Failure { key: r.get(0)?, reason: r.get(1)?, attempts: r.get(2)?, error: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: i64 = 60_000;

    #[tokio::test]
    async fn db_opens_on_a_current_thread_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).await.unwrap();
        db.call(|l| l.plan([("j", "k", "s")], 1)).await.unwrap();
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
        assert!(format!("{err:#}").contains("schema version 99"), "{err:#}");
    }

    #[test]
    fn job_moves_through_its_states() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j1", "k1", "s1"), ("j2", "k2", "s2")], 1).unwrap();
        assert_eq!(state(&ledger, "j1"), State::Planned);
        assert!(ledger.job("nope").unwrap().is_none());
        ledger.prepare_shards("run", 1).unwrap();
        let jobs = vec!["j1".to_owned(), "j2".to_owned()];
        assert_eq!(
            ledger.acquire("run", 0, &jobs, "me", 10, LEASE, &|_| true).unwrap(),
            Acquire::Acquired { from: None }
        );
        assert_eq!(state(&ledger, "j1"), State::Claimed);
        assert_eq!(ledger.begin_attempt("j1", 11).unwrap(), 1);
        assert_eq!(state(&ledger, "j1"), State::Fetching);
        let cp = Checkpoint {
            offset: 3,
            prefix_sha256: Sha256::of(b"abc"),
            etag: Some("\"e\"".into()),
            last_modified: None,
            total: Some(3),
        };
        ledger.verified("j1", &cp, 12).unwrap();
        let row = ledger.job("j1").unwrap().unwrap();
        assert_eq!((row.state, row.checkpoint.as_ref(), row.size), (State::Verified, Some(&cp), Some(3)));
        ledger.promoted("j1", &Sha256::of(b"abc"), 3, 13).unwrap();
        let row = ledger.job("j1").unwrap().unwrap();
        assert_eq!((row.state, row.checkpoint, row.sha256), (State::Promoted, None, Some(Sha256::of(b"abc"))));
        assert_eq!(ledger.begin_attempt("j2", 14).unwrap(), 1);
        assert_eq!(ledger.begin_attempt("j2", 15).unwrap(), 2);
        ledger.failed("j2", "http-404", "404 Not Found", 16).unwrap();
        assert_eq!(
            ledger.failures().unwrap(),
            vec![Failure {
                key: "k2".into(),
                reason: "http-404".into(),
                attempts: 2,
                error: Some("404 Not Found".into())
            }]
        );
        let counts = ledger.counts().unwrap();
        assert_eq!((counts["promoted"], counts["failed"]), (1, 1));
        // Planning again never resets what is recorded.
        ledger.plan([("j1", "k1", "s1")], 20).unwrap();
        assert_eq!(state(&ledger, "j1"), State::Promoted);
    }

    #[test]
    fn leases_expire_and_are_taken_over_with_their_jobs() {
        let (_dir, mut ledger) = ledger();
        ledger.plan([("j1", "k1", "s1"), ("j2", "k2", "s2")], 0).unwrap();
        ledger.prepare_shards("run", 1).unwrap();
        let jobs = vec!["j1".to_owned(), "j2".to_owned()];
        assert!(matches!(ledger.acquire("run", 0, &jobs, "a", 0, LEASE, &|_| true).unwrap(), Acquire::Acquired { .. }));
        ledger.begin_attempt("j1", 1).unwrap();
        // Live and unexpired: b must wait; a itself does not lease it twice.
        assert_eq!(ledger.acquire("run", 0, &jobs, "b", 1_000, LEASE, &|_| true).unwrap(), Acquire::Held);
        assert_eq!(ledger.acquire("run", 0, &jobs, "a", 1_000, LEASE, &|_| true).unwrap(), Acquire::Held);
        assert_eq!(ledger.claims(1_000, &|_| true).unwrap(), (1, 0));
        assert!(ledger.stuck(1_000, &|_| true).unwrap().is_empty());
        // A dead owner's lease counts as expired, its jobs as stuck.
        assert_eq!(ledger.claims(1_000, &|_| false).unwrap(), (0, 1));
        assert_eq!(ledger.stuck(1_000, &|_| false).unwrap().len(), 2);
        // Renewal moves the expiry.
        assert!(ledger.renew("run", 0, "a", 50_000, LEASE).unwrap());
        assert!(!ledger.renew("run", 0, "b", 50_000, LEASE).unwrap());
        assert_eq!(ledger.acquire("run", 0, &jobs, "b", 100_000, LEASE, &|_| true).unwrap(), Acquire::Held);
        // Expired: counted as such, its in-flight job shows as stuck, and b takes it over.
        assert_eq!(ledger.claims(110_001, &|_| true).unwrap(), (0, 1));
        assert_eq!(
            ledger.stuck(110_001, &|_| true).unwrap(),
            vec![("k1".to_owned(), "fetching".to_owned()), ("k2".to_owned(), "claimed".to_owned())]
        );
        assert_eq!(
            ledger.acquire("run", 0, &jobs, "b", 110_001, LEASE, &|_| true).unwrap(),
            Acquire::Acquired { from: Some("a".into()) }
        );
        assert_eq!(state(&ledger, "j1"), State::Claimed);
        assert!(ledger.stuck(110_002, &|_| true).unwrap().is_empty());
        // a lost it: it can neither renew nor finish it.
        assert!(!ledger.renew("run", 0, "a", 110_002, LEASE).unwrap());
        assert!(!ledger.finish("run", 0, "a").unwrap());
        assert!(ledger.finish("run", 0, "b").unwrap());
        assert_eq!(ledger.acquire("run", 0, &jobs, "c", 110_003, LEASE, &|_| true).unwrap(), Acquire::Done);
        assert!(ledger.all_done("run").unwrap());
    }

    #[test]
    fn a_dead_owner_loses_its_lease_before_expiry() {
        let (_dir, mut ledger) = ledger();
        ledger.prepare_shards("run", 2).unwrap();
        ledger.acquire("run", 0, &[], "dead", 0, LEASE, &|_| true).unwrap();
        let alive = |owner: &str| owner != "dead";
        assert_eq!(
            ledger.acquire("run", 0, &[], "b", 1, LEASE, &alive).unwrap(),
            Acquire::Acquired { from: Some("dead".into()) }
        );
    }

    #[test]
    fn a_finished_pass_starts_over_on_the_next_run() {
        let (_dir, mut ledger) = ledger();
        ledger.prepare_shards("run", 2).unwrap();
        for shard in 0..2 {
            ledger.acquire("run", shard, &[], "a", 0, LEASE, &|_| true).unwrap();
        }
        ledger.finish("run", 0, "a").unwrap();
        // Not all done: preparing again keeps the pass going.
        ledger.prepare_shards("run", 2).unwrap();
        assert_eq!(ledger.acquire("run", 0, &[], "b", 1, LEASE, &|_| true).unwrap(), Acquire::Done);
        ledger.finish("run", 1, "a").unwrap();
        ledger.prepare_shards("run", 2).unwrap();
        assert!(!ledger.all_done("run").unwrap());
        assert!(matches!(ledger.acquire("run", 0, &[], "b", 2, LEASE, &|_| true).unwrap(), Acquire::Acquired { .. }));
    }
}

/// The ledger shared by a run's tasks: each call runs on the blocking pool, so a busy ledger
/// (another process writing) never stalls the async workers.
#[derive(Clone, Debug)]
pub(crate) struct Db(std::sync::Arc<std::sync::Mutex<Ledger>>);

impl Db {
    /// Wraps an open ledger.
    pub(crate) fn new(ledger: Ledger) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(ledger)))
    }

    /// Opens (creating if needed) the ledger in run directory `dir`, as [`Ledger::open`], on the
    /// blocking pool: opening may wait for another process's lock. Works on any tokio runtime,
    /// a current-thread one included.
    ///
    /// # Errors
    ///
    /// As [`Ledger::open`]; when the blocking pool could not run it.
    pub(crate) async fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.to_owned();
        let ledger = promote_core::blocking::run(move || Ledger::open(&dir)).await??;
        Ok(Self::new(ledger))
    }

    /// Runs `f` on the ledger.
    ///
    /// # Errors
    ///
    /// `f`'s error.
    pub(crate) async fn call<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ledger) -> anyhow::Result<T> + Send + 'static,
    {
        let inner = std::sync::Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut ledger = inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut ledger)
        })
        .await
        .context("ledger task")?
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
