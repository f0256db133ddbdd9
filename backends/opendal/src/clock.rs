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
    /// A transport with an HTTP client of its own, not OpenDAL's default (one client for the
    /// whole process). hyper drives each pooled connection from a task on the runtime that
    /// opened it, and the task ends with that runtime; two backends used on two runtimes (a
    /// library's, or tests in one process) would share connections, and one runtime ending
    /// would cut the other's requests off mid-way: a part upload broken off mid-body, or a
    /// completion whose answer never came and whose retry then found the upload completed.
    pub(crate) fn new(clock: ServerClock) -> Self {
        Self { inner: ReqwestTransport::new(reqwest::Client::new()), clock }
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

#[cfg(all(test, feature = "services-s3"))]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;

    use promote_core::{Backend, Error, Key};

    use super::*;
    use crate::{OpendalBackend, OpendalConfig};

    /// Answers every request on `stream` with an empty 404, keeping the connection open.
    fn not_found(stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        let mut writer = stream;
        let mut line = String::new();
        // Bounded by the client: each pass reads one line, and the client closes its end.
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                let answer = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/xml\r\ncontent-length: 0\r\n\r\n";
                if writer.write_all(answer).is_err() {
                    return;
                }
            }
        }
    }

    #[tokio::test]
    async fn two_backends_never_share_a_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || not_found(stream));
            }
        });
        let options = [
            ("bucket", "b"),
            ("endpoint", &endpoint),
            ("region", "us-east-1"),
            ("access_key_id", "k"),
            ("secret_access_key", "s"),
            ("disable_config_load", "true"),
            ("disable_ec2_metadata", "true"),
        ];
        let config = OpendalConfig::new("s3", options.map(|(k, v)| (k.to_owned(), v.to_owned())));
        let key = Key::new("absent").expect("key");
        for n in 1..=2 {
            let backend = OpendalBackend::open(&config).expect("open");
            // Twice each: the second request rides the backend's own pooled connection.
            for _ in 0..2 {
                let head = backend.head(&key).await;
                assert!(matches!(head, Err(Error::NotFound { .. })), "{head:?}");
            }
            assert_eq!(connections.load(Ordering::SeqCst), n, "backend {n} reused another backend's connection");
        }
    }
}
