//! Finding staged multipart uploads: promote's markers, and the server's own list.
//!
//! Each multipart upload promote starts gets a small marker object,
//! `<prefix>/.promote/staging/<id-hash>.json`, naming the key, the upload id and the writer
//! (machine boot, pid, process start). `sweep_staging` pairs markers with the server's list of
//! in-progress uploads (ListMultipartUploads, which object_store does not expose, so it is sent
//! here as a presigned GET), and aborts those whose writer is gone or that are older than the
//! cut-off.

use std::time::{Duration, SystemTime};

use http::Method;
use object_store::client::{HttpClient, HttpRequestBody};
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use serde::{Deserialize, Serialize};

use crate::liveness::Owner;

/// What a marker says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// The object key (full S3 key) the upload will complete to.
    pub(crate) key: String,
    /// The upload id.
    pub(crate) upload_id: String,
    /// The writer.
    pub(crate) owner: Owner,
}

/// Where the marker of `upload_id` lives.
pub(crate) fn marker_path(staging: &str, upload_id: &str) -> Path {
    let hash = promote_core::Sha256::of(upload_id.as_bytes()).to_string();
    crate::backend::verbatim(&format!("{staging}/{}.json", &hash[..32]))
}

/// One in-progress multipart upload, as the server lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingUpload {
    pub(crate) key: String,
    pub(crate) upload_id: String,
    pub(crate) initiated: Option<SystemTime>,
}

/// The server's list of in-progress uploads, and its clock when it answered.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) uploads: Vec<PendingUpload>,
    /// The server's `Date` header: ages are judged on the server's clock, like its timestamps.
    pub(crate) server_now: Option<SystemTime>,
}

/// A signed GET on `path` with `query`: (the server's `Date`, the body). `what` names the
/// request in errors.
async fn signed_get(
    signer: &dyn Signer,
    http: &HttpClient,
    path: &Path,
    query: Vec<(String, String)>,
    what: &str,
) -> Result<(Option<SystemTime>, String), String> {
    let (status, date, xml) = signed_get_any(signer, http, path, query, what).await?;
    if !status.is_success() {
        return Err(format!("{what} answered {status}: {}", xml.chars().take(300).collect::<String>()));
    }
    Ok((date, xml))
}

/// [`signed_get`] whatever the status: (the status, the server's `Date`, the body).
async fn signed_get_any(
    signer: &dyn Signer,
    http: &HttpClient,
    path: &Path,
    query: Vec<(String, String)>,
    what: &str,
) -> Result<(http::StatusCode, Option<SystemTime>, String), String> {
    let options = SignedUrlOptions::default().with_query(query);
    let url = signer
        .signed_url_opts(Method::GET, path, Duration::from_secs(300), &options)
        .await
        .map_err(|e| format!("signing {what}: {e}"))?;
    let req = http::Request::builder()
        .method(Method::GET)
        .uri(url.as_str())
        .body(HttpRequestBody::empty())
        .map_err(|e| e.to_string())?;
    let resp = http.execute(req).await.map_err(|e| format!("{what}: {e}"))?;
    let status = resp.status();
    let date = resp.headers().get(http::header::DATE).and_then(|d| d.to_str().ok()).and_then(parse_http_date);
    let body = resp.into_body().bytes().await.map_err(|e| format!("{what}: {e}"))?;
    Ok((status, date, String::from_utf8_lossy(&body).into_owned()))
}

/// Every in-progress multipart upload whose key starts with `prefix`, following pagination.
pub(crate) async fn list(signer: &dyn Signer, http: &HttpClient, prefix: &str) -> Result<Listing, String> {
    let mut listing = Listing { uploads: Vec::new(), server_now: None };
    let (mut key_marker, mut id_marker) = (String::new(), String::new());
    // Ends with the last page: each page must move the marker on (a server repeating one is an
    // error), and each request has the client's timeouts.
    loop {
        let mut query = vec![("uploads".to_owned(), String::new()), ("prefix".to_owned(), prefix.to_owned())];
        if !key_marker.is_empty() {
            query.push(("key-marker".into(), key_marker.clone()));
            query.push(("upload-id-marker".into(), id_marker.clone()));
        }
        let (date, xml) = signed_get(signer, http, &Path::default(), query, "ListMultipartUploads").await?;
        listing.server_now = listing.server_now.or(date);
        for upload in elements(&xml, "Upload") {
            let (Some(key), Some(upload_id)) = (text(upload, "Key"), text(upload, "UploadId")) else { continue };
            listing.uploads.push(PendingUpload {
                key,
                upload_id,
                initiated: text(upload, "Initiated").and_then(|t| parse_time(&t)),
            });
        }
        if text(&xml, "IsTruncated").as_deref() != Some("true") {
            return Ok(listing);
        }
        let next =
            (text(&xml, "NextKeyMarker").unwrap_or_default(), text(&xml, "NextUploadIdMarker").unwrap_or_default());
        if next.0.is_empty() {
            return Ok(listing);
        }
        if next == (key_marker, id_marker) {
            return Err(format!(
                "ListMultipartUploads did not move past key {:?}: the server sent the same page again",
                next.0
            ));
        }
        (key_marker, id_marker) = next;
    }
}

/// What an upload's parts say (ListParts).
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// When it was last written to: its newest part's LastModified, or its initiation when it
    /// has no part yet. A writer that started long ago but still sends parts is not stale.
    pub(crate) last: Option<SystemTime>,
    /// Bytes in its parts.
    pub(crate) bytes: u64,
}

/// Reads `upload`'s parts (ListParts, every page).
pub(crate) async fn activity(
    signer: &dyn Signer,
    http: &HttpClient,
    path: &Path,
    upload: &PendingUpload,
) -> Result<Activity, String> {
    let Some(parts) = parts(signer, http, path, &upload.upload_id).await? else {
        return Err("ListParts answered 404: the upload is gone".into());
    };
    Ok(Activity {
        last: parts.iter().filter_map(|p| p.modified).fold(upload.initiated, |last, t| last.max(Some(t))),
        bytes: parts.iter().map(|p| p.size).sum(),
    })
}

/// One part of an upload, as ListParts describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) number: u64,
    /// Without its quotes.
    pub(crate) etag: String,
    pub(crate) size: u64,
    pub(crate) modified: Option<SystemTime>,
}

/// The parts of upload `upload_id` of `path` the server holds (ListParts, every page); `None`
/// when the server has no such upload (404: aborted, swept, completed or expired).
pub(crate) async fn parts(
    signer: &dyn Signer,
    http: &HttpClient,
    path: &Path,
    upload_id: &str,
) -> Result<Option<Vec<Part>>, String> {
    let mut parts = Vec::new();
    let mut marker = String::new();
    // Ends with the last page, as in `list`.
    loop {
        let mut query = vec![("uploadId".to_owned(), upload_id.to_owned())];
        if !marker.is_empty() {
            query.push(("part-number-marker".into(), marker.clone()));
        }
        let (status, _, xml) = signed_get_any(signer, http, path, query, "ListParts").await?;
        if status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("ListParts answered {status}: {}", xml.chars().take(300).collect::<String>()));
        }
        for part in elements(&xml, "Part") {
            parts.push(Part {
                number: text(part, "PartNumber").and_then(|n| n.trim().parse().ok()).unwrap_or(0),
                etag: text(part, "ETag").unwrap_or_default().trim().trim_matches('"').to_owned(),
                size: text(part, "Size").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
                modified: text(part, "LastModified").and_then(|t| parse_time(&t)),
            });
        }
        if text(&xml, "IsTruncated").as_deref() != Some("true") {
            return Ok(Some(parts));
        }
        let next = text(&xml, "NextPartNumberMarker").unwrap_or_default();
        if next.is_empty() {
            return Ok(Some(parts));
        }
        if next == marker {
            return Err(format!("ListParts did not move past part {next}: the server sent the same page again"));
        }
        marker = next;
    }
}

/// The one rule `sweep_staging` applies, on dry runs and real ones alike: remove what a dead
/// writer left, or what has been idle for at least `older_than`.
pub(crate) fn stale(alive: Option<bool>, idle: Duration, older_than: Duration) -> bool {
    alive == Some(false) || idle >= older_than
}

/// The inner XML of each `<tag>…</tag>` in `xml`.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>` in `xml`.
fn text(xml: &str, tag: &str) -> Option<String> {
    let raw = elements(xml, tag).into_iter().next()?;
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `2026-11-28T21:30:05.000Z` → time.
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    let (date, time) = s.trim().trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let ss: f64 = t.next()?.split('+').next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_secs_f64(ss))
}

/// An HTTP date (`Sun, 29 Nov 2026 17:03:39 GMT`) → time.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mut words = s.split_whitespace().skip(1);
    let (day, month, year, time) = (words.next()?, words.next()?, words.next()?, words.next()?);
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    parse_time(&format!("{year}-{month:02}-{day}T{time}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_upload_list() {
        let xml = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
            <Upload><Key>p/a &amp; b</Key><UploadId>id1</UploadId><Initiated>2026-11-28T21:30:05.000Z</Initiated></Upload>\
            <Upload><Key>p/c</Key><UploadId>id2</UploadId></Upload></ListMultipartUploadsResult>";
        let uploads: Vec<_> = elements(xml, "Upload")
            .into_iter()
            .map(|u| (text(u, "Key").unwrap(), text(u, "UploadId").unwrap()))
            .collect();
        assert_eq!(uploads, [("p/a & b".to_owned(), "id1".to_owned()), ("p/c".to_owned(), "id2".to_owned())]);
        assert_eq!(text(xml, "IsTruncated").as_deref(), Some("false"));
    }

    #[test]
    fn parses_s3_times() {
        let t = parse_time("2026-11-28T21:30:05.000Z").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_795_901_405);
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(SystemTime::UNIX_EPOCH));
        assert!(parse_time("yesterday").is_none());
        assert_eq!(parse_http_date("Sat, 28 Nov 2026 21:30:05 GMT"), Some(t));
        assert!(parse_http_date("not a date").is_none());
    }

    #[test]
    fn one_rule_for_stale() {
        let (minute, hour) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert!(stale(Some(false), Duration::ZERO, hour), "a dead writer's upload goes at once");
        assert!(!stale(Some(true), minute, hour), "a live writer's recent upload stays");
        assert!(!stale(None, minute, hour), "an unknown writer's recent upload stays");
        assert!(stale(None, hour, hour) && stale(Some(true), hour, hour), "idle past the cut-off goes");
    }
}
