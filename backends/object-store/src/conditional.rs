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
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Method};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

/// Upload id → the condition header its completion must carry.
#[derive(Clone, Debug, Default)]
pub(crate) struct Conditions(Arc<Mutex<HashMap<String, (HeaderName, HeaderValue)>>>);

impl Conditions {
    /// The completion of `upload_id` will carry `name: value`.
    pub(crate) fn set(&self, upload_id: &str, name: HeaderName, value: HeaderValue) {
        self.0.lock().expect("conditions lock").insert(upload_id.to_owned(), (name, value));
    }

    /// Forgets `upload_id`.
    pub(crate) fn clear(&self, upload_id: &str) {
        self.0.lock().expect("conditions lock").remove(upload_id);
    }

    fn for_request(&self, req: &HttpRequest) -> Option<(HeaderName, HeaderValue)> {
        if req.method() != Method::POST {
            return None;
        }
        let query = req.uri().query()?;
        let id = query.split('&').find_map(|kv| kv.strip_prefix("uploadId="))?;
        let id = percent_decode(id);
        self.0.lock().expect("conditions lock").get(&id).cloned()
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

/// Decodes `%XX` escapes (upload ids are URL-encoded in the query).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("a%2Fb%3D"), "a/b=");
        assert_eq!(percent_decode("plain.id_-"), "plain.id_-");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
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
