//! What a run is asked to do: plain values, already resolved (durations, byte counts, header
//! values read from wherever the caller keeps them). Reading a configuration file is the
//! caller's business.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderMap;

/// A run's options. [`Options::new`] gives the defaults `promote run` uses.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The manifest: JSON Lines, `{"source", "key", "sha256"?, "size"?}` per line. Relative
    /// local sources are resolved against its directory.
    pub manifest: PathBuf,
    /// The run directory: ledger, partial downloads, spool. Created if missing.
    pub out: PathBuf,
    /// Process at most this many items (the rest are reported skipped).
    pub max: Option<u64>,
    /// Items worked on at once (at least 1).
    pub concurrency: usize,
    /// Requests to one host at once (at least 1).
    pub per_host: usize,
    /// Time allowed to connect to a host.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response body.
    pub read_timeout: Duration,
    /// Retries of a transient failure per item, counting only attempts in a row that made no
    /// progress (a partial download further than before resets the count); 0: no retries.
    pub retries: u32,
    /// Items at least this large (bytes) download into a resumable partial file.
    pub resume_threshold: u64,
    /// Parallel range requests per large item (1: one stream), for servers that take byte
    /// ranges: segments of at least 1 MiB, each connection beyond the first only when the
    /// host has one free under `per_host`.
    pub segments: usize,
    /// Items per shard lease (smaller for small manifests, so several workers share work).
    pub shard_size: usize,
    /// How long a shard lease lasts without renewal (at least 1 s).
    pub lease: Duration,
    /// Stream small items straight into staging; else each goes through the run directory
    /// first (a local source through `spool/`, an HTTP one through `partials/`).
    pub streaming: bool,
    /// Request headers per host (`host` or `host:port`, any case), sent with every request to
    /// it. Mark secret values sensitive ([`http::HeaderValue::set_sensitive`]): then neither
    /// the engine nor the HTTP stack ever logs them.
    pub headers: HashMap<String, HeaderMap>,
    /// Keep every manifest line's report in the summary ([`Summary::items`](crate::Summary::items)).
    /// Off, a run's memory does not grow with the manifest: each report goes to the run's
    /// events as [`Event::Reported`](crate::Event::Reported), and the summary has the totals.
    pub keep_items: bool,
}

impl Options {
    /// The defaults for `manifest` into run directory `out`: 8 items at once, 4 per host,
    /// connect timeout 10 s, read timeout 60 s, 5 retries, partial files from 16 MiB, one
    /// stream per item, 256 items per shard, 60 s leases, streaming, no extra headers, the
    /// items' reports not kept in the summary.
    pub fn new(manifest: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            out: out.into(),
            max: None,
            concurrency: 8,
            per_host: 4,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            retries: 5,
            resume_threshold: 16 << 20,
            segments: 1,
            shard_size: 256,
            lease: Duration::from_secs(60),
            streaming: true,
            headers: HashMap::new(),
            keep_items: false,
        }
    }
}
