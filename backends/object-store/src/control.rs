//! The backend's control objects (claims) under `<prefix>/.promote/`, for
//! [`promote_core::kit::claims`].
//!
//! - **create** is a PUT with `If-None-Match: *`, **replace** a PUT with `If-Match: <etag>`:
//!   single conditional PUTs, which every server tested holds atomically.
//! - **read** must return the server's clock with the object, because claim ages are judged by
//!   it alone. object_store does not expose response headers, so on S3 the read is a presigned
//!   HEAD through the backend's HTTP client, giving `ETag`, `Last-Modified`, `Date` and the body
//!   itself, which every write also carries in a metadata header
//!   ([`promote_core::kit::control_metadata`]). A HEAD opens no body on the server: a GET racing a
//!   DELETE of the same claim can leave LocalStack's read lock on it held for good, and every
//!   later write of that claim then waits forever (see that module). A body too large for
//!   metadata is fetched with a GET conditional on the HEAD's ETag. In memory the "server" is
//!   this process and its clock the system clock.
//! - **remove** re-reads the object and compares its ETag, then sends DELETE with
//!   `If-Match: <etag>` (a presigned request). AWS S3 (and Ceph RGW) honour `If-Match` on
//!   DeleteObject, so there the delete itself is conditional and the re-read only saves a request when
//!   the claim has moved on. A server that refuses the header (LocalStack answers 501
//!   NotImplemented; the backend then remembers and sends plain DELETEs) or ignores it deletes
//!   unconditionally: the remaining window is the time between that read and the DELETE (one
//!   round trip), in which a taker would have to take over the claim. The claim's new holder
//!   then finds it gone at its next renewal or fence and stops before anything irreversible.
//!   Memory deletes after the same re-read.
//!
//! A 409 ConditionalRequestConflict (another conditional write on the same object in flight) is
//! a retryable error: it says nothing about who holds the claim.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use object_store::client::HttpRequestBody;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use promote_core::kit::claims::{ControlObject, ControlStore, Tag};
use promote_core::kit::control_metadata;
use promote_core::{Error, async_trait};

use crate::backend::Inner;
use crate::errors;
use crate::staged::is_conflicting_operation;

/// Control objects of one backend.
#[derive(Debug)]
pub(crate) struct ObjectControl {
    inner: Arc<Inner>,
}

/// Tries of one presigned control request (see `ObjectControl::presigned`).
const ATTEMPTS: u32 = 4;

impl ObjectControl {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    fn path(&self, name: &str) -> Path {
        crate::backend::verbatim(&format!("{}/{}", self.inner.control_dir(), name.trim_matches('/')))
    }

    fn err(&self, e: object_store::Error, name: &str, what: &str) -> Error {
        if is_conflicting_operation(&e) {
            return Error::Backend {
                backend: self.inner.kind.into(),
                context: format!("{what} control object {name:?}: another conditional write on it is in flight; retry"),
                retryable: true,
                source: Box::new(e),
            };
        }
        errors::map(e, self.inner.kind, self.path(name).as_ref(), what)
    }

    fn http_err(&self, name: &str, what: &str, status: Option<StatusCode>, detail: String) -> Error {
        Error::Backend {
            backend: self.inner.kind.into(),
            context: format!("{what} control object {:?}", self.path(name).to_string()),
            retryable: status.is_none_or(|s| s.is_server_error() || s == StatusCode::CONFLICT),
            source: detail.into(),
        }
    }

    fn mismatch(&self, name: &str, tag: &Tag) -> Error {
        Error::VersionMismatch { key: self.path(name).to_string(), expected: tag.0.clone() }
    }

    /// Sends `method` on `name` as a presigned request (S3 only), with extra headers. HEAD, GET
    /// and DELETE are idempotent, so a connection error or a transient status (5xx, 429, 408;
    /// see [`crate::faults::is_transient`]) is tried again (up to [`ATTEMPTS`] times, backing
    /// off from 200 ms). A 501 Not Implemented is an answer and comes back at once: it is how
    /// LocalStack refuses `If-Match` on DELETE, which `remove` acts on (retried, it cost 1.4 s
    /// on every claim release).
    async fn presigned(
        &self,
        signer: &dyn Signer,
        http: &object_store::client::HttpClient,
        method: Method,
        name: &str,
        headers: &[(http::HeaderName, &str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.presigned_once(signer, http, method.clone(), name, headers).await;
            let transient = match &result {
                Ok((status, _, _)) => crate::faults::is_transient(*status),
                Err(_) => true,
            };
            if !transient || attempt >= ATTEMPTS {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
    }

    async fn presigned_once(
        &self,
        signer: &dyn Signer,
        http: &object_store::client::HttpClient,
        method: Method,
        name: &str,
        headers: &[(http::HeaderName, &str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), Error> {
        let what = if method == Method::DELETE { "removing" } else { "reading" };
        let url = signer
            .signed_url(method.clone(), &self.path(name), Duration::from_secs(300))
            .await
            .map_err(|e| self.http_err(name, what, None, format!("signing the request: {e}")))?;
        let mut req = http::Request::builder().method(method).uri(url.as_str());
        for (header, value) in headers {
            req = req.header(header, *value);
        }
        let req = req.body(HttpRequestBody::empty()).map_err(|e| self.http_err(name, what, None, e.to_string()))?;
        let resp = http.execute(req).await.map_err(|e| self.http_err(name, what, None, e.to_string()))?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = resp.into_body().bytes().await.map_err(|e| self.http_err(name, what, None, e.to_string()))?;
        Ok((status, headers, body))
    }

    async fn read_s3(
        &self,
        signer: &dyn Signer,
        http: &object_store::client::HttpClient,
        name: &str,
    ) -> Result<Option<ControlObject>, Error> {
        for _ in 0..ATTEMPTS {
            let (status, headers, _) = self.presigned(signer, http, Method::HEAD, name, &[]).await?;
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(self.http_err(name, "reading", Some(status), format!("answered {status}")));
            }
            let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let date = |h: http::HeaderName| header(h.as_str()).and_then(|v| httpdate::parse_http_date(&v).ok());
            let missing = |what: &str| {
                self.http_err(name, "reading", Some(status), format!("the server sent no valid {what} header"))
            };
            let tag = Tag(header(http::header::ETAG.as_str()).ok_or_else(|| missing("ETag"))?);
            let modified = date(http::header::LAST_MODIFIED).ok_or_else(|| missing("Last-Modified"))?;
            let server_now = date(http::header::DATE).ok_or_else(|| missing("Date"))?;
            let body = match header(&format!("x-amz-meta-{}", control_metadata::NAME)) {
                Some(value) => control_metadata::decode(&value),
                // Too large for metadata (or written by something else): the body itself, only
                // if it is still the version the HEAD saw.
                None => {
                    let if_match = [(http::header::IF_MATCH, tag.0.as_str())];
                    let (status, _, body) = self.presigned(signer, http, Method::GET, name, &if_match).await?;
                    match status {
                        s if s.is_success() => body,
                        StatusCode::NOT_FOUND | StatusCode::PRECONDITION_FAILED => continue,
                        s => {
                            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
                            return Err(self.http_err(name, "reading", Some(s), format!("answered {s}: {text}")));
                        }
                    }
                }
            };
            return Ok(Some(ControlObject { body, tag, modified, server_now }));
        }
        Err(self.http_err(name, "reading", None, "it kept changing while read; retry".into()))
    }

    async fn read_memory(&self, name: &str) -> Result<Option<ControlObject>, Error> {
        let got = match self.inner.store.get(&self.path(name)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(e, name, "reading")),
        };
        let meta = got.meta.clone();
        let body = got.bytes().await.map_err(|e| self.err(e, name, "reading"))?;
        let tag = meta.e_tag.ok_or_else(|| self.http_err(name, "reading", None, "no ETag".into()))?;
        Ok(Some(ControlObject {
            body,
            tag: Tag(tag),
            modified: meta.last_modified.into(),
            server_now: SystemTime::now(),
        }))
    }

    async fn put(&self, name: &str, body: Bytes, mode: PutMode, what: &str) -> Result<Tag, object_store::Error> {
        let mut attributes = Attributes::new();
        if let Some(value) = control_metadata::encode(&body) {
            attributes.insert(Attribute::Metadata(control_metadata::NAME.into()), value.into());
        }
        let opts = PutOptions { mode, attributes, ..Default::default() };
        let done = self.inner.store.put_opts(&self.path(name), PutPayload::from(body), opts).await?;
        done.e_tag.map(Tag).ok_or_else(|| object_store::Error::Generic {
            store: "promote",
            source: format!("{what} {name:?}: the server returned no ETag").into(),
        })
    }
}

#[async_trait]
impl ControlStore for ObjectControl {
    async fn create(&self, name: &str, body: Bytes) -> Result<Tag, Error> {
        match self.put(name, body, PutMode::Create, "creating").await {
            Ok(tag) => Ok(tag),
            Err(e) if is_conflicting_operation(&e) => Err(self.err(e, name, "creating")),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Err(Error::AlreadyExists { key: self.path(name).to_string() })
            }
            Err(e) => Err(self.err(e, name, "creating")),
        }
    }

    async fn replace(&self, name: &str, body: Bytes, tag: &Tag) -> Result<Tag, Error> {
        let mode = PutMode::Update(UpdateVersion { e_tag: Some(tag.0.clone()), version: None });
        match self.put(name, body, mode, "replacing").await {
            Ok(tag) => Ok(tag),
            Err(e) if is_conflicting_operation(&e) => Err(self.err(e, name, "replacing")),
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                Err(self.mismatch(name, tag))
            }
            Err(e) => Err(self.err(e, name, "replacing")),
        }
    }

    async fn read(&self, name: &str) -> Result<Option<ControlObject>, Error> {
        match (&self.inner.signer, &self.inner.http) {
            (Some(signer), Some(http)) => self.read_s3(signer.as_ref(), http, name).await,
            _ => self.read_memory(name).await,
        }
    }

    async fn remove(&self, name: &str, tag: &Tag) -> Result<(), Error> {
        match self.read(name).await? {
            None => return Err(Error::NotFound { key: self.path(name).to_string() }),
            Some(current) if current.tag != *tag => return Err(self.mismatch(name, tag)),
            Some(_) => {}
        }
        let (Some(signer), Some(http)) = (&self.inner.signer, &self.inner.http) else {
            return self.inner.store.delete(&self.path(name)).await.map_err(|e| self.err(e, name, "removing"));
        };
        let if_match = [(http::header::IF_MATCH, tag.0.as_str())];
        let unconditional = self.inner.delete_ignores_if_match.load(Ordering::Relaxed);
        let headers: &[_] = if unconditional { &[] } else { &if_match };
        let (mut status, _, mut body) = self.presigned(signer.as_ref(), http, Method::DELETE, name, headers).await?;
        if status == StatusCode::NOT_IMPLEMENTED && !unconditional {
            // The server refuses If-Match on DELETE (LocalStack): the re-read above is all the
            // protection there is (see the module docs); remember, and delete plainly.
            tracing::info!(location = %self.inner.location, "the server refuses If-Match on DELETE; removing claims after a re-read");
            self.inner.delete_ignores_if_match.store(true, Ordering::Relaxed);
            (status, _, body) = self.presigned(signer.as_ref(), http, Method::DELETE, name, &[]).await?;
        }
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::PRECONDITION_FAILED => Err(self.mismatch(name, tag)),
            StatusCode::NOT_FOUND => Err(Error::NotFound { key: self.path(name).to_string() }),
            s => {
                let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
                Err(self.http_err(name, "removing", Some(s), format!("answered {s}: {text}")))
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let base = self.inner.control_dir();
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let dir_path = crate::backend::verbatim(&format!("{base}/{dir}"));
        let objects = self.inner.list_all(&dir_path).await.map_err(|e| self.err(e, prefix, "listing"))?;
        let strip = format!("{base}/");
        let mut names: Vec<String> = objects
            .into_iter()
            .filter_map(|o| o.location.as_ref().strip_prefix(&strip).map(str::to_owned))
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::ObjectStoreBackend;
    use crate::config::S3Config;

    /// An S3 stand-in that holds one claim with ETag `"t1"` and answers DELETE with `If-Match`
    /// the way LocalStack does (501 NotImplemented); records each request as "METHOD" or
    /// "METHOD if-match".
    async fn localstack_like() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Requests without bodies (HEAD, DELETE), one after another on the connection.
                    while let Ok(n) = conn.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            buf.drain(..end + 4);
                            let method = head.split(' ').next().unwrap_or_default().to_uppercase();
                            let if_match = head.lines().any(|l| l.starts_with("if-match:"));
                            log.lock().unwrap().push(format!("{method}{}", if if_match { " if-match" } else { "" }));
                            let date = httpdate::fmt_http_date(SystemTime::now());
                            let resp = match (method.as_str(), if_match) {
                                ("HEAD", _) => format!(
                                    "HTTP/1.1 200 OK\r\netag: \"t1\"\r\nlast-modified: {date}\r\ndate: {date}\r\nx-amz-meta-{}: {}\r\ncontent-length: 0\r\n\r\n",
                                    control_metadata::NAME,
                                    control_metadata::encode(b"claim").expect("small body")
                                ),
                                ("DELETE", true) => {
                                    let xml = "<Error><Code>NotImplemented</Code><Message>m</Message></Error>";
                                    format!(
                                        "HTTP/1.1 501 Not Implemented\r\ncontent-length: {}\r\n\r\n{xml}",
                                        xml.len()
                                    )
                                }
                                _ => "HTTP/1.1 204 No Content\r\n\r\n".to_owned(),
                            };
                            if conn.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (endpoint, seen)
    }

    #[tokio::test]
    async fn a_501_to_if_match_on_delete_is_an_answer_not_a_fault() {
        let (endpoint, seen) = localstack_like().await;
        let mut config = S3Config::for_bucket("bucket");
        config.endpoint = Some(endpoint);
        config.allow_http = true;
        config.access_key_id = Some("test".into());
        config.secret_access_key = Some("test".into());
        config.region = Some("us-east-1".into());
        let backend = ObjectStoreBackend::s3(&config).await.expect("backend");
        let control = promote_core::Backend::control(&backend).expect("S3 has control objects");
        let started = Instant::now();
        control.remove("claims/k.json", &Tag("\"t1\"".into())).await.expect("removed");
        assert_eq!(
            *seen.lock().unwrap(),
            ["HEAD", "DELETE if-match", "DELETE"],
            "the re-read, one conditional DELETE (refused with 501, not retried), one plain DELETE"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "no backoff (it slept 1.4 s): {:?}", started.elapsed());
        assert!(backend.inner().delete_ignores_if_match.load(Ordering::Relaxed), "remembered");
        seen.lock().unwrap().clear();
        control.remove("claims/k.json", &Tag("\"t1\"".into())).await.expect("removed");
        assert_eq!(*seen.lock().unwrap(), ["HEAD", "DELETE"], "then plain DELETEs only");
    }
}
