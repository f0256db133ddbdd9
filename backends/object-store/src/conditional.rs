//! Create-only (and compare-and-swap) for multipart uploads.
//!
//! object_store's multipart completion always overwrites. S3 honours `If-None-Match: *` (and
//! `If-Match: <etag>`) on CompleteMultipartUpload, so this HTTP layer adds that header to the
//! completion request of each upload promote registered, and to nothing else. The condition is
//! checked by the server atomically with the completion: there is no HEAD-then-complete.
//!
//! The header is not part of the SigV4 signature; S3 requires only `host` and `x-amz-*`
//! headers to be signed, and object_store sends its own create-only completions the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Method};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

/// Upload id → the condition header its completion must carry. Each access is one map call,
/// so a panic elsewhere never leaves it half-changed: a poisoned lock is used as is.
#[derive(Clone, Debug, Default)]
pub(crate) struct Conditions(Arc<Mutex<HashMap<String, (HeaderName, HeaderValue)>>>);

impl Conditions {
    /// The completion of `upload_id` will carry `name: value`.
    pub(crate) fn set(&self, upload_id: &str, name: HeaderName, value: HeaderValue) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(upload_id.to_owned(), (name, value));
    }

    /// Forgets `upload_id`.
    pub(crate) fn clear(&self, upload_id: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(upload_id);
    }

    fn for_request(&self, req: &HttpRequest) -> Option<(HeaderName, HeaderValue)> {
        if req.method() != Method::POST {
            return None;
        }
        let query = req.uri().query()?;
        let id = query.split('&').find_map(|kv| kv.strip_prefix("uploadId="))?;
        let id = percent_decode(id);
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }
}

/// Builds object_store's usual HTTP client, wrapped so registered completions carry their
/// condition and failed responses become typed faults (see `faults`).
#[derive(Debug)]
pub(crate) struct ConditionalConnector {
    pub(crate) conditions: Conditions,
}

impl HttpConnector for ConditionalConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(ConditionalService { inner, conditions: self.conditions.clone() }))
    }
}

#[derive(Debug)]
struct ConditionalService {
    inner: HttpClient,
    conditions: Conditions,
}

#[async_trait]
impl HttpService for ConditionalService {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if let Some((name, value)) = self.conditions.for_request(&req) {
            req.headers_mut().insert(name, value);
        }
        let uri = req.uri();
        let endpoint = uri.scheme_str().zip(uri.authority()).map(|(scheme, host)| format!("{scheme}://{host}"));
        crate::faults::check(self.inner.execute(req).await?, endpoint).await
    }
}

/// Decodes `%XX` escapes (upload ids are URL-encoded in the query); anything else, including a
/// `%` not followed by two hex digits, is kept as is.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    // Bounded by the input: each pass moves `i` on by one or three.
    while i < bytes.len() {
        // Bytes, not `&s[..]`: a `%` before a multi-byte character must not slice inside it.
        if bytes[i] == b'%'
            && let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(hi), Some(lo)) = (hex_digit(hi), hex_digit(lo))
        {
            out.push((hi << 4) | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("a%2Fb%3D"), "a/b=");
        assert_eq!(percent_decode("plain.id_-"), "plain.id_-");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        // A `%` next to a multi-byte character, or a sign where a digit belongs, is kept.
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("%é"), "%é");
        assert_eq!(percent_decode("%+f"), "%+f");
        assert_eq!(percent_decode("end%4"), "end%4");
    }

    #[test]
    fn only_registered_completions_get_a_condition() {
        let c = Conditions::default();
        c.set("up 1", http::header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        let req = |method: Method, uri: &str| {
            http::Request::builder()
                .method(method)
                .uri(uri)
                .body(object_store::client::HttpRequestBody::empty())
                .unwrap()
        };
        assert!(c.for_request(&req(Method::POST, "http://h/b/k?uploadId=up%201")).is_some());
        assert!(c.for_request(&req(Method::PUT, "http://h/b/k?partNumber=1&uploadId=up%201")).is_none());
        assert!(c.for_request(&req(Method::POST, "http://h/b/k?uploadId=other")).is_none());
        assert!(c.for_request(&req(Method::POST, "http://h/b/k?uploads")).is_none());
        c.clear("up 1");
        assert!(c.for_request(&req(Method::POST, "http://h/b/k?uploadId=up%201")).is_none());
    }
}
