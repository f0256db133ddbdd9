//! HTTP sources: one client (rustls, connect and read timeouts), a concurrency limit per host,
//! per-host request headers from the configuration, and the retry policy.
//!
//! Header values come from the `[run.headers."<host>"]` tables and are marked sensitive, so
//! neither promote nor the HTTP stack ever prints or logs them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::settings::RunSettings;

/// Longest wait between two attempts (also caps `Retry-After`).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First backoff step.
const BASE_BACKOFF: Duration = Duration::from_millis(250);

/// Why one HTTP attempt failed.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The server answered with an error status.
    Status {
        /// The status code.
        status: u16,
        /// `Retry-After`, in seconds, when sent.
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
}

impl FetchError {
    /// The short reason used in summaries and the ledger.
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("http-{status}"),
            Self::Transport(_) => "connection".into(),
            Self::ShortBody { .. } => "short-body".into(),
            Self::Protocol(_) => "protocol".into(),
        }
    }

    /// Worth another attempt: connection trouble, a short body, 408, 429 and 5xx.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => matches!(status, 408 | 429) || *status >= 500,
            Self::Transport(_) | Self::ShortBody { .. } | Self::Protocol(_) => true,
        }
    }

    /// How long the server asked us to wait.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// From a transport error: what happened, with its causes, never a header value.
    pub(crate) fn transport(err: &reqwest::Error) -> Self {
        let mut text = if err.is_timeout() { "timed out".to_owned() } else { err.to_string() };
        let mut cause = std::error::Error::source(err);
        while let Some(c) = cause {
            let more = c.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = c.source();
        }
        Self::Transport(text)
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
        }
    }
}

/// Resuming from `offset` a response with these validators.
#[derive(Clone, Debug)]
pub(crate) struct RangeFrom {
    /// First byte wanted.
    pub(crate) offset: u64,
    /// The `If-Range` value: the strong ETag, else Last-Modified.
    pub(crate) if_range: String,
}

/// The HTTP side of a run.
#[derive(Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    headers: HashMap<String, HeaderMap>,
}

impl Http {
    /// A client per the `[run]` settings; header values are read now (env vars, files).
    ///
    /// # Errors
    ///
    /// A header that cannot be read or is not a valid header; a client that cannot be built.
    pub(crate) fn new(run: &RunSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(run.connect_timeout)
            .read_timeout(run.read_timeout)
            .user_agent(concat!("promote/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let mut headers = HashMap::new();
        for (host, names) in &run.headers {
            let mut map = HeaderMap::new();
            for (name, source) in names {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    promote_core::Error::config(format!("run.headers.{host:?}: {name:?} is not a header name"))
                })?;
                let text = source
                    .resolve()
                    .map_err(|why| promote_core::Error::config(format!("run.headers.{host:?}.{name}: {why}")))?;
                let mut value = HeaderValue::from_str(&text).map_err(|_| {
                    promote_core::Error::config(format!(
                        "run.headers.{host:?}.{name}: the value is not a valid header value"
                    ))
                })?;
                value.set_sensitive(true);
                map.insert(header, value);
            }
            headers.insert(host.to_ascii_lowercase(), map);
        }
        Ok(Self { client, per_host: run.per_host.max(1), hosts: Mutex::new(HashMap::new()), headers })
    }

    /// Waits for a slot at `url`'s host.
    pub(crate) async fn slot(&self, url: &Url) -> OwnedSemaphorePermit {
        let host = host_port(url);
        let semaphore = {
            let mut hosts = self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(hosts.entry(host).or_insert_with(|| Arc::new(Semaphore::new(self.per_host))))
        };
        // Waits for another item at this host to finish a request (each has connect and read
        // timeouts). The semaphores are made above and never closed, so acquiring cannot fail.
        semaphore.acquire_owned().await.expect("host semaphores are never closed")
    }

    /// Sends one GET (with `Range` + `If-Range` when resuming) and checks the status.
    ///
    /// # Errors
    ///
    /// [`FetchError`] for transport failures and any status other than 200 and 206.
    pub(crate) async fn get(&self, url: &Url, range: Option<&RangeFrom>) -> Result<Response, FetchError> {
        let mut request = self.client.get(url.clone());
        let configured = self
            .headers
            .get(&host_port(url))
            .or_else(|| url.host_str().and_then(|h| self.headers.get(&h.to_ascii_lowercase())));
        if let Some(headers) = configured {
            request = request.headers(headers.clone());
        }
        if let Some(range) = range {
            request = request.header(http::header::RANGE, format!("bytes={}-", range.offset));
            request = request.header(http::header::IF_RANGE, &range.if_range);
        }
        let response = request.send().await.map_err(|e| FetchError::transport(&e))?;
        let status = response.status();
        if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(FetchError::Status { status: status.as_u16(), retry_after })
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

/// A response's validators: (ETag, Last-Modified).
pub(crate) fn validators(response: &Response) -> (Option<String>, Option<String>) {
    let get = |name| response.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    (get(http::header::ETAG), get(http::header::LAST_MODIFIED))
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
    fn retryable_statuses() {
        let status = |status| FetchError::Status { status, retry_after: None };
        assert!(status(503).retryable() && status(429).retryable() && status(500).retryable());
        assert!(!status(404).retryable() && !status(403).retryable());
        assert_eq!(status(404).reason(), "http-404");
        assert!(FetchError::ShortBody { got: 1, want: 2 }.retryable());
    }
}
