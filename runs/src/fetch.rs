//! HTTP sources: one client (rustls, connect and read timeouts), a concurrency limit per host,
//! per-host request headers from the configuration, the retry policy and the resume validators.
//!
//! Header values come from [`Options::headers`](crate::Options::headers), already resolved by
//! the caller (who marks secret ones sensitive, so neither promote nor the HTTP stack ever
//! prints or logs them).
//!
//! The client is built when the first HTTP source needs it, so a run of local files needs no
//! TLS roots. Its roots are the system's; on a system with none (no CA bundle installed) it
//! uses the Mozilla roots bundled into promote, and says so once ([`Event::BundledRoots`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::events::{Event, Events};
use crate::options::Options;

/// Longest wait between two attempts (also caps `Retry-After`).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First backoff step.
const BASE_BACKOFF: Duration = Duration::from_millis(250);

/// Why one HTTP attempt failed.
#[derive(Debug)]
pub enum FetchError {
    /// The server answered with an error status.
    Status {
        /// The status code.
        status: u16,
        /// `Retry-After` (seconds or an HTTP date), when sent.
        retry_after: Option<Duration>,
    },
    /// No answer, or the connection broke (refused, reset, timed out).
    Transport(String),
    /// The body ended before the announced length.
    ShortBody {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// The server's answer does not fit the request (a bad `Content-Range`, say).
    Protocol(String),
    /// The HTTP client could not be built (no request was sent).
    Client(String),
}

impl FetchError {
    /// The short reason used in summaries and the ledger.
    pub fn reason(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("http-{status}"),
            Self::Transport(_) => "connection".into(),
            Self::ShortBody { .. } => "short-body".into(),
            Self::Protocol(_) => "protocol".into(),
            Self::Client(_) => "http-client".into(),
        }
    }

    /// Worth another attempt: connection trouble, a short body, 408, 429 and 5xx.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => matches!(status, 408 | 429) || *status >= 500,
            Self::Transport(_) | Self::ShortBody { .. } | Self::Protocol(_) => true,
            Self::Client(_) => false,
        }
    }

    /// How long the server asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// From a transport error: what happened, with its causes, never a header value.
    pub fn transport(err: &reqwest::Error) -> Self {
        let text = if err.is_timeout() { "timed out".to_owned() } else { err.to_string() };
        Self::Transport(crate::error::with_causes(text, std::error::Error::source(err)))
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status { status, .. } => {
                let text = StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
                write!(f, "the server answered {status} {text}")
            }
            Self::Transport(text) => write!(f, "request failed: {text}"),
            Self::ShortBody { got, want } => {
                write!(f, "the body ended after {got} of the {want} bytes announced by Content-Length")
            }
            Self::Protocol(text) => f.write_str(text),
            Self::Client(text) => write!(f, "building the HTTP client: {text}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Resuming from `offset` a response with these validators.
#[derive(Clone, Debug)]
pub(crate) struct RangeFrom {
    /// First byte wanted.
    pub(crate) offset: u64,
    /// Last byte wanted (inclusive); `None`: to the end.
    pub(crate) last: Option<u64>,
    /// The `If-Range` value: the strong ETag, else a strong Last-Modified (see [`validators`]).
    pub(crate) if_range: String,
}

/// The HTTP side of a run.
pub(crate) struct Http {
    /// Built by the first request (see [`Self::client`]); a failure is kept, so it is met once.
    client: OnceLock<Result<reqwest::Client, String>>,
    /// For the range requests of a segmented item: HTTP/1.1 only, so each is a connection of
    /// its own (over HTTP/2 they would share the item's one).
    segment_client: OnceLock<Result<reqwest::Client, String>>,
    connect_timeout: Duration,
    read_timeout: Duration,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Items fetching at once, whatever their host (`concurrency`): under group commit more
    /// items are in flight than that, most of them waiting, sealed, for a flush.
    fetching: Arc<Semaphore>,
    headers: HashMap<String, HeaderMap>,
    /// Told when the bundled roots stand in for the system's.
    events: Arc<dyn Events>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("per_host", &self.per_host).finish_non_exhaustive()
    }
}

impl Http {
    /// The HTTP side per `options` (timeouts, per-host limit, headers); the client itself is
    /// built by the first request.
    pub(crate) fn new(options: &Options, events: Arc<dyn Events>) -> Self {
        let headers = options.headers.iter().map(|(host, map)| (host.to_ascii_lowercase(), map.clone())).collect();
        Self {
            client: OnceLock::new(),
            segment_client: OnceLock::new(),
            connect_timeout: options.connect_timeout,
            read_timeout: options.read_timeout,
            per_host: options.per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
            fetching: Arc::new(Semaphore::new(options.concurrency.max(1))),
            headers,
            events,
        }
    }

    /// The client, built on first use.
    ///
    /// # Errors
    ///
    /// [`FetchError::Client`] when it cannot be built (then every later call says the same).
    fn client(&self) -> Result<&reqwest::Client, FetchError> {
        let built =
            self.client.get_or_init(|| build_client(self.connect_timeout, self.read_timeout, false, &*self.events));
        built.as_ref().map_err(|text| FetchError::Client(text.clone()))
    }

    /// The HTTP/1.1 client for segments, built on first use.
    fn segment_client(&self) -> Result<&reqwest::Client, FetchError> {
        let built = self
            .segment_client
            .get_or_init(|| build_client(self.connect_timeout, self.read_timeout, true, &*self.events));
        built.as_ref().map_err(|text| FetchError::Client(text.clone()))
    }

    /// Waits for a slot among the items fetching (`concurrency`), then for one at `url`'s host.
    pub(crate) async fn slot(&self, url: &Url) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
        // Made above and never closed, so acquiring cannot fail.
        let fetching =
            Arc::clone(&self.fetching).acquire_owned().await.expect("the fetching semaphore is never closed");
        let host = host_port(url);
        let semaphore = {
            let mut hosts = crate::lock(&self.hosts);
            Arc::clone(hosts.entry(host).or_insert_with(|| Arc::new(Semaphore::new(self.per_host))))
        };
        // Waits for another item at this host to finish a request (each has connect and read
        // timeouts). The semaphores are made above and never closed, so acquiring cannot fail.
        (fetching, semaphore.acquire_owned().await.expect("host semaphores are never closed"))
    }

    /// Another connection to `url`'s host for an item that holds a [`Self::slot`] already, when
    /// one is free now. It never waits: items waiting for a second connection while holding
    /// their first could wait for each other for ever.
    pub(crate) fn spare_slot(&self, url: &Url) -> Option<OwnedSemaphorePermit> {
        let mut hosts = crate::lock(&self.hosts);
        let semaphore = hosts.entry(host_port(url)).or_insert_with(|| Arc::new(Semaphore::new(self.per_host)));
        Arc::clone(semaphore).try_acquire_owned().ok()
    }

    /// Sends one GET (with `Range` + `If-Range` when resuming) and checks the status.
    ///
    /// # Errors
    ///
    /// [`FetchError`] for transport failures and any status other than 200 and 206.
    pub(crate) async fn get(&self, url: &Url, range: Option<&RangeFrom>) -> Result<Response, FetchError> {
        self.send(self.client()?, url, range).await
    }

    /// [`Self::get`] for one segment of a segmented item, on a connection of its own.
    ///
    /// # Errors
    ///
    /// As [`Self::get`].
    pub(crate) async fn get_segment(&self, url: &Url, range: &RangeFrom) -> Result<Response, FetchError> {
        self.send(self.segment_client()?, url, Some(range)).await
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        url: &Url,
        range: Option<&RangeFrom>,
    ) -> Result<Response, FetchError> {
        let mut request = client.get(url.clone());
        let configured = self
            .headers
            .get(&host_port(url))
            .or_else(|| url.host_str().and_then(|h| self.headers.get(&h.to_ascii_lowercase())));
        if let Some(headers) = configured {
            request = request.headers(headers.clone());
        }
        if let Some(range) = range {
            let last = range.last.map(|last| last.to_string()).unwrap_or_default();
            request = request.header(http::header::RANGE, format!("bytes={}-{last}", range.offset));
            request = request.header(http::header::IF_RANGE, &range.if_range);
        }
        let response = request.send().await.map_err(|e| FetchError::transport(&e))?;
        let status = response.status();
        if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers(), SystemTime::now());
        Err(FetchError::Status { status: status.as_u16(), retry_after })
    }
}

/// A client with promote's timeouts and user agent (HTTP/1.1 only when asked), trusting the
/// system's roots, or the bundled Mozilla roots when the system has none.
///
/// # Errors
///
/// When the TLS setup fails for another reason than missing system roots (its causes, in words).
fn build_client(
    connect_timeout: Duration,
    read_timeout: Duration,
    http1_only: bool,
    events: &dyn Events,
) -> Result<reqwest::Client, String> {
    let builder = || {
        let builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .user_agent(concat!("promote/", env!("CARGO_PKG_VERSION")));
        if http1_only { builder.http1_only() } else { builder }
    };
    let err = match builder().build() {
        Ok(client) => return Ok(client),
        Err(err) => err,
    };
    // The platform verifier refuses to start with no roots; decide from the roots themselves,
    // not from its message, whether that was the reason.
    if !rustls_native_certs::load_native_certs().certs.is_empty() {
        return Err(crate::error::chain(&err));
    }
    // Once: the main client is built once per run (the segments' client follows it).
    if !http1_only {
        events.event(Event::BundledRoots);
    }
    let with_bundled = |err: &(dyn std::error::Error + 'static)| {
        format!("with the bundled Mozilla roots: {}", crate::error::chain(err))
    };
    let roots = bundled_roots().map_err(|err| with_bundled(&err))?;
    builder().tls_certs_only(roots).build().map_err(|err| with_bundled(&err))
}

/// The Mozilla root certificates compiled into promote (`webpki-root-certs`).
fn bundled_roots() -> Result<Vec<reqwest::Certificate>, reqwest::Error> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|der| reqwest::Certificate::from_der(der.as_ref())).collect()
}

/// `Retry-After` as a wait: delay-seconds, or an HTTP date measured from the response's `Date`
/// (the server's clock; `now` when it sent none). A date in the past is no wait.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = header_date(headers, http::header::DATE).unwrap_or(now);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_date(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?.trim()).ok()
}

/// The retry budget of one item: it fails after `retries` retries in a row that made no
/// progress. An attempt that took the item's partial download further than any attempt before
/// it starts the count again, so a large item on a connection that drops every few megabytes
/// still finishes, while an item that never gets further stops. Bounded: each attempt either
/// moves the furthest offset on (which the object's size bounds) or uses up the budget.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    retries: u32,
    /// Failed attempts in a row without progress.
    stalled: u32,
    /// The furthest offset any attempt reached.
    furthest: u64,
}

impl RetryBudget {
    /// `retries` retries without progress for an item whose download starts at `offset` (a
    /// partial kept by an earlier run). `retries = 0` means no retry at all.
    pub(crate) fn new(retries: u32, offset: u64) -> Self {
        Self { retries, stalled: 0, furthest: offset }
    }

    /// After a retryable failure that left the download at `offset` bytes: the wait before the
    /// next attempt, or `None` when the budget is spent. The backoff grows only with attempts
    /// that made no progress; the server's `Retry-After` wins (capped).
    pub(crate) fn retry(&mut self, offset: u64, retry_after: Option<Duration>) -> Option<Duration> {
        if self.retries == 0 {
            return None;
        }
        if offset > self.furthest {
            self.furthest = offset;
            self.stalled = 0;
        } else {
            self.stalled += 1;
        }
        (self.stalled <= self.retries).then(|| backoff(self.stalled.max(1), retry_after))
    }
}

fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// The wait before attempt `attempt + 1` (1-based `attempt` just failed): the server's
/// `Retry-After` if it sent one, else exponential backoff with jitter, at most [`MAX_BACKOFF`].
pub(crate) fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(MAX_BACKOFF);
    }
    let step = BASE_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    // "Equal jitter": half fixed, half random, so retries of many items spread out.
    let half = step / 2;
    half + half.mul_f64(fastrand::f64())
}

/// The `If-Range` validator of kept bytes (RFC 9110 §13.1.5 allows only strong ones): a
/// strong ETag, else, when the server sent no ETag at all, the Last-Modified (kept only when
/// strong, see [`validators`]); `None` otherwise (then a resume cannot be made safe, and the
/// bytes are discarded).
pub(crate) fn if_range(etag: Option<&String>, last_modified: Option<&String>) -> Option<String> {
    match etag {
        Some(etag) if !etag.starts_with("W/") => Some(etag.clone()),
        Some(_) => None,
        None => last_modified.cloned(),
    }
}

/// A response's validators: (ETag, Last-Modified), the Last-Modified only when it is strong.
///
/// RFC 9110 §8.8.2.2: a Last-Modified is a strong validator only when the response's `Date`
/// is at least one second later (a file changed twice within that second keeps its date).
/// A weak one is dropped here, so it is never stored with a partial nor sent in `If-Range`
/// (§13.1.5 allows only strong validators there).
pub(crate) fn validators(response: &Response) -> (Option<String>, Option<String>) {
    validators_of(response.headers())
}

fn validators_of(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let get = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    let strong = match (header_date(headers, http::header::LAST_MODIFIED), header_date(headers, http::header::DATE)) {
        (Some(modified), Some(date)) => date.duration_since(modified).is_ok_and(|d| d >= Duration::from_secs(1)),
        _ => false,
    };
    (get(http::header::ETAG), get(http::header::LAST_MODIFIED).filter(|_| strong))
}

/// Whether the response says the server takes byte ranges (`Accept-Ranges: bytes`).
pub(crate) fn accepts_ranges(response: &Response) -> bool {
    response
        .headers()
        .get_all(http::header::ACCEPT_RANGES)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|unit| unit.trim().eq_ignore_ascii_case("bytes"))
}

/// Parses `Content-Range: bytes START-END/TOTAL` into (start, end, total).
pub(crate) fn content_range(response: &Response) -> Option<(u64, u64, Option<u64>)> {
    let value = response.headers().get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    parse_content_range(value)
}

fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    Some((start.parse().ok()?, end.parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, 199, Some(200))));
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        for attempt in 1..=3 {
            let step = BASE_BACKOFF * (1 << (attempt - 1));
            let wait = backoff(attempt, None);
            assert!(wait >= step / 2 && wait <= step, "attempt {attempt}: {wait:?}");
        }
        assert!(backoff(40, None) <= MAX_BACKOFF);
        assert_eq!(backoff(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(backoff(1, Some(Duration::from_secs(3600))), MAX_BACKOFF);
    }

    #[test]
    fn retry_budget_resets_on_progress_and_is_spent_without_it() {
        let mut budget = RetryBudget::new(2, 0);
        // A connection that drops every 8 MB: ten attempts, each further than the last.
        for n in 1..=10 {
            let wait = budget.retry(n * 8_000_000, None).expect("an attempt that made progress is retried");
            assert!(wait <= BASE_BACKOFF, "attempt {n}: backoff {wait:?} grew despite progress");
        }
        // Then two attempts that get no further are retried, with a growing backoff, the third is not.
        let first = budget.retry(80_000_000, None).expect("first attempt without progress");
        assert!(first <= BASE_BACKOFF);
        let second = budget.retry(80_000_000, None).expect("second attempt without progress");
        assert!(second >= BASE_BACKOFF, "{second:?}");
        assert_eq!(budget.retry(80_000_000, None), None, "the third attempt without progress spends the budget");

        // Falling back (a discarded partial) and growing again, but not past the furthest offset
        // reached, is no progress.
        let mut budget = RetryBudget::new(1, 0);
        assert!(budget.retry(100, None).is_some());
        assert!(budget.retry(50, None).is_some());
        assert_eq!(budget.retry(90, None), None);

        // A kept partial's offset is the starting point, not progress.
        let mut budget = RetryBudget::new(1, 100);
        assert!(budget.retry(100, None).is_some());
        assert_eq!(budget.retry(100, None), None);

        // No retries means none, progress or not; Retry-After still decides the wait.
        assert_eq!(RetryBudget::new(0, 0).retry(100, None), None);
        let mut budget = RetryBudget::new(3, 0);
        assert_eq!(budget.retry(0, Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:27:30 GMT").unwrap();
        let at = |value| retry_after(&headers(&[("retry-after", value)]), now);
        assert_eq!(at("7"), Some(Duration::from_secs(7)));
        assert_eq!(at(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(at("Wed, 21 Oct 2026 07:28:00 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(at("Wed, 21 Oct 2026 07:00:00 GMT"), Some(Duration::ZERO), "a date in the past");
        assert_eq!(at("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        // Measured from the server's Date when it sent one (our clock may be off).
        let with_date =
            headers(&[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT"), ("date", "Wed, 21 Oct 2026 07:27:50 GMT")]);
        assert_eq!(retry_after(&with_date, now), Some(Duration::from_secs(10)));
        // Capped like any wait.
        assert_eq!(backoff(1, at("Wed, 21 Oct 2026 09:00:00 GMT")), MAX_BACKOFF);
    }

    #[test]
    fn last_modified_is_kept_only_when_strong() {
        let lm = "Wed, 21 Oct 2026 07:28:00 GMT";
        let kept = |pairs: &[(&'static str, &str)]| validators_of(&headers(pairs)).1;
        assert_eq!(kept(&[("last-modified", lm), ("date", "Wed, 21 Oct 2026 07:28:01 GMT")]).as_deref(), Some(lm));
        assert_eq!(kept(&[("last-modified", lm), ("date", "Thu, 22 Oct 2026 00:00:00 GMT")]).as_deref(), Some(lm));
        // The same second as Date: the file may change again within it.
        assert_eq!(kept(&[("last-modified", lm), ("date", lm)]), None);
        // Later than Date (clock skew), no Date, or dates that do not parse: not strong.
        assert_eq!(kept(&[("last-modified", lm), ("date", "Wed, 21 Oct 2026 07:27:00 GMT")]), None);
        assert_eq!(kept(&[("last-modified", lm)]), None);
        assert_eq!(kept(&[("last-modified", "yesterday"), ("date", "Thu, 22 Oct 2026 00:00:00 GMT")]), None);
        // The ETag is kept as sent (weak or strong: `Partial::if_range` uses only a strong one).
        let (etag, _) = validators_of(&headers(&[("etag", "W/\"x\""), ("date", lm)]));
        assert_eq!(etag.as_deref(), Some("W/\"x\""));
    }

    #[test]
    fn bundled_roots_parse() {
        let roots = bundled_roots().unwrap();
        assert!(roots.len() > 50, "{} bundled roots", roots.len());
    }

    #[test]
    fn retryable_statuses() {
        let status = |status| FetchError::Status { status, retry_after: None };
        assert!(status(503).retryable() && status(429).retryable() && status(500).retryable());
        assert!(!status(404).retryable() && !status(403).retryable());
        assert_eq!(status(404).reason(), "http-404");
        assert!(FetchError::ShortBody { got: 1, want: 2 }.retryable());
    }
}
