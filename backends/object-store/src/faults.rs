//! S3 error responses as typed faults: the HTTP status and the S3 error `<Code>`, read from the
//! response itself, never from an error message's text.
//!
//! object_store turns 404, 412, 409, 403 and 401 into meaningful error variants, but any other
//! failed response (400, 429, 5xx) becomes a generic error whose status it does not expose. So
//! the HTTP layer (see `conditional`) hands every such response to [`check`], which reads its
//! S3 error code and returns a [`Fault`] as the request's error instead. object_store still
//! retries the retryable ones with backoff (they are reported as a request error, which it
//! retries); the rest fail at once. [`find`] then finds the fault in the error's source chain,
//! and `errors::map` decides "retryable" from it.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;
use object_store::client::{HttpError, HttpErrorKind, HttpResponse, HttpResponseBody};

/// S3 error codes worth trying again, whatever their status: another conditional write on the
/// key in flight, a body the server did not receive in time or received damaged, throttling.
const RETRYABLE_CODES: [&str; 6] =
    ["ConditionalRequestConflict", "OperationAborted", "RequestTimeout", "BadDigest", "SlowDown", "InternalError"];

/// One failed S3 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// Its HTTP status.
    pub(crate) status: StatusCode,
    /// The S3 error code (`<Code>` in the body), when there was a body.
    pub(crate) code: Option<String>,
    /// The S3 error message (`<Message>`), for people.
    pub(crate) message: Option<String>,
    /// The bucket the answer names (`<BucketName>`), when it names one.
    pub(crate) bucket: Option<String>,
    /// Where the request went: its URL's scheme and host, e.g. `http://127.0.0.1:9000`.
    pub(crate) endpoint: Option<String>,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server answered {}", self.status)?;
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, " ({code}: {message})"),
            (Some(code), None) => write!(f, " ({code})"),
            _ => Ok(()),
        }
    }
}

impl StdError for Fault {}

impl Fault {
    /// Whether the same request can succeed later: a [transient status](is_transient), or one
    /// of the codes in [`RETRYABLE_CODES`]. A plain 4xx is an answer, not a fault: not retryable.
    pub(crate) fn is_retryable(&self) -> bool {
        is_transient(self.status) || self.code.as_deref().is_some_and(|c| RETRYABLE_CODES.contains(&c))
    }

    /// S3's 404 NoSuchBucket: the bucket itself does not exist (not the key).
    pub(crate) fn is_missing_bucket(&self) -> bool {
        self.code.as_deref() == Some("NoSuchBucket")
    }

    /// S3's 409 ConditionalRequestConflict: another conditional write on the key is in flight.
    pub(crate) fn is_conflicting_operation(&self) -> bool {
        self.code.as_deref() == Some("ConditionalRequestConflict")
    }
}

/// Whether a response with this status may succeed if sent again: 5xx, 429 and 408. Not 501
/// Not Implemented: the server does not support something the request asked for (LocalStack's
/// answer to `If-Match` on DELETE), and will answer the same next time.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// The fault behind `err`, if it came from a failed S3 response.
pub(crate) fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a Fault> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(fault) = e.downcast_ref::<Fault>() {
            return Some(fault);
        }
        current = e.source();
    }
    None
}

/// The transport failure behind `err` (connection refused, timeout, reset), if any.
pub(crate) fn transport(err: &(dyn StdError + 'static)) -> Option<HttpErrorKind> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        current = e.source();
    }
    None
}

/// Passes a response through, or turns a failed one that object_store would report only as
/// "generic" (or, for a missing bucket, as a missing key) into a [`Fault`] error (see the module
/// docs). `endpoint` is where the request went.
pub(crate) async fn check(resp: HttpResponse, endpoint: Option<String>) -> Result<HttpResponse, HttpError> {
    let status = resp.status();
    let mapped_by_object_store = [StatusCode::PRECONDITION_FAILED, StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED];
    if status.as_u16() < 400 || mapped_by_object_store.contains(&status) {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let body = body.bytes().await?;
    let xml = String::from_utf8_lossy(&body);
    let fault = Fault {
        status,
        code: element(&xml, "Code"),
        message: element(&xml, "Message"),
        bucket: element(&xml, "BucketName"),
        endpoint,
    };
    // object_store reads a 404 as "no such key" and a 409 as "already exists": leave them that,
    // unless S3 says the bucket is missing, or that a 409 is worth retrying. (A HEAD's 404 has
    // no body to say which: see `missing`.)
    let passes = match status {
        StatusCode::NOT_FOUND => !fault.is_missing_bucket(),
        StatusCode::CONFLICT => !fault.is_retryable(),
        _ => false,
    };
    if passes {
        return Ok(HttpResponse::from_parts(parts, HttpResponseBody::from(body)));
    }
    let kind = if fault.is_retryable() { HttpErrorKind::Request } else { HttpErrorKind::Unknown };
    Err(HttpError::new(kind, fault))
}

/// The text of the first `<tag>` in `xml`.
fn element(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> HttpResponse {
        http::Response::builder().status(status).body(HttpResponseBody::from(body.to_owned())).expect("response")
    }

    fn error_xml(code: &str) -> String {
        format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>")
    }

    async fn fault_of(status: u16, code: &str) -> (HttpErrorKind, Fault) {
        let err = check(response(status, &error_xml(code)), None).await.expect_err("a fault");
        let fault = find(&err).expect("the fault is in the chain").clone();
        (err.kind(), fault)
    }

    #[tokio::test]
    async fn faults_are_classified_by_status_and_code() {
        for (status, code) in
            [(500, "InternalError"), (503, "SlowDown"), (429, "TooManyRequests"), (400, "RequestTimeout")]
        {
            let (kind, fault) = fault_of(status, code).await;
            assert!(fault.is_retryable(), "{status} {code}");
            assert_eq!(kind, HttpErrorKind::Request, "object_store retries {status} {code} with backoff");
            assert_eq!(fault.code.as_deref(), Some(code));
        }
        for (status, code) in
            [(400, "InvalidArgument"), (400, "EntityTooSmall"), (411, "MissingContentLength"), (501, "NotImplemented")]
        {
            let (kind, fault) = fault_of(status, code).await;
            assert!(!fault.is_retryable(), "a plain {status} {code} is not retried");
            assert_eq!(kind, HttpErrorKind::Unknown, "object_store does not retry {status} {code}");
        }
        let (_, fault) = fault_of(409, "ConditionalRequestConflict").await;
        assert!(fault.is_conflicting_operation() && fault.is_retryable());
        assert_eq!(fault.to_string(), "the server answered 409 Conflict (ConditionalRequestConflict: m)");
    }

    #[tokio::test]
    async fn answers_object_store_understands_pass_through_with_their_body() {
        for status in [200, 404, 412, 403, 409] {
            let body = error_xml(match status {
                409 => "BucketAlreadyOwnedByYou",
                404 => "NoSuchKey",
                _ => "X",
            });
            let resp = check(response(status, &body), None).await.expect("passed through");
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.into_body().bytes().await.expect("body"), body.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_missing_bucket_is_a_fault_naming_the_bucket_and_endpoint() {
        let xml = "<Error><Code>NoSuchBucket</Code><Message>m</Message><BucketName>gone</BucketName></Error>";
        let err = check(response(404, xml), Some("http://127.0.0.1:9".into())).await.expect_err("a fault");
        let fault = find(&err).expect("the fault is in the chain");
        assert!(fault.is_missing_bucket() && !fault.is_retryable());
        assert_eq!((fault.bucket.as_deref(), fault.endpoint.as_deref()), (Some("gone"), Some("http://127.0.0.1:9")));
        assert_eq!(err.kind(), HttpErrorKind::Unknown, "object_store does not retry it");
        let head = check(response(404, ""), None).await.expect("a bodiless 404 passes through");
        assert_eq!(head.status().as_u16(), 404);
    }

    #[test]
    fn the_fault_is_found_through_object_stores_error_chain() {
        let fault = Fault {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: Some("SlowDown".into()),
            message: None,
            bucket: None,
            endpoint: None,
        };
        let err = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(HttpErrorKind::Request, fault.clone())),
        };
        assert_eq!(find(&err), Some(&fault));
        assert_eq!(transport(&err), Some(HttpErrorKind::Request));
        let plain = object_store::Error::Generic { store: "S3", source: "no fault".into() };
        assert_eq!(find(&plain), None);
    }
}
