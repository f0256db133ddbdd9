//! The server's clock, as its responses tell it.
//!
//! Claims are judged by the server's clock alone (see [`promote_core::kit::claims`]). OpenDAL
//! returns an object's `Last-Modified` but not the response's `Date`, so this backend sends its
//! HTTP requests through [`DateTransport`], which remembers the newest `Date` any response
//! carried. A control-object read takes that reading right after its own response arrived, so
//! it is at least as late as that response (one-second resolution, like `Last-Modified`).
//! Services without HTTP (`memory`, `fs`) live on this machine, whose clock is theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opendal::{Buffer, HttpBody, HttpTransport};
use opendal_http_transport_reqwest::ReqwestTransport;

/// The newest server `Date` seen, in seconds since the Unix epoch (0: none yet).
#[derive(Clone, Debug, Default)]
pub(crate) struct ServerClock {
    newest: Arc<AtomicU64>,
}

impl ServerClock {
    /// The server's time as of the newest response, or this machine's for a service without
    /// HTTP responses (memory, fs).
    pub(crate) fn now(&self) -> SystemTime {
        match self.newest.load(Ordering::Acquire) {
            0 => SystemTime::now(),
            secs => UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    fn saw(&self, date: SystemTime) {
        let secs = date.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        self.newest.fetch_max(secs, Ordering::AcqRel);
    }
}

/// OpenDAL's reqwest transport, recording each response's `Date` in a [`ServerClock`].
#[derive(Clone, Debug)]
pub(crate) struct DateTransport {
    inner: ReqwestTransport,
    clock: ServerClock,
}

impl DateTransport {
    pub(crate) fn new(clock: ServerClock) -> Self {
        Self { inner: ReqwestTransport::default(), clock }
    }
}

impl HttpTransport for DateTransport {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        let resp = self.inner.fetch(req).await?;
        if let Some(date) = resp.headers().get(http::header::DATE).and_then(|v| v.to_str().ok())
            && let Ok(date) = httpdate::parse_http_date(date)
        {
            self.clock.saw(date);
        }
        Ok(resp)
    }
}
