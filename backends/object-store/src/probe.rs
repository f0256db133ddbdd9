//! Does this server really refuse a second create-only write? Asked live, never assumed.

use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue, Method};
use object_store::path::Path;
use object_store::signer::SignedUrlOptions;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use promote_core::{Check, Error};

use crate::backend::Inner;
use crate::errors;

/// What the probe found.
#[derive(Debug)]
pub(crate) struct Report {
    /// A second `If-None-Match: *` PUT was refused.
    single_put: Result<bool, String>,
    /// A second `If-None-Match: *` multipart completion was refused.
    multipart: Result<bool, String>,
}

impl Report {
    /// Why create-only must be refused, if it must.
    pub(crate) fn refusal(&self) -> Option<String> {
        match (&self.single_put, &self.multipart) {
            (Ok(true), Ok(true)) => None,
            (Ok(false), _) => Some("the server ignored If-None-Match: * on PUT: a second create-only write replaced the probe object".into()),
            (_, Ok(false)) => Some("the server ignored If-None-Match: * on CompleteMultipartUpload: a second create-only multipart upload replaced the probe object".into()),
            (Err(e), _) | (_, Err(e)) => Some(format!("could not check the server's conditional writes: {e}")),
        }
    }

    /// The probe as doctor lines.
    pub(crate) fn checks(&self) -> Vec<Check> {
        let line = |name: &str, r: &Result<bool, String>, ok: &str, bad: &str| match r {
            Ok(true) => Check::pass(name, ok),
            Ok(false) => Check::fail(name, bad),
            Err(e) => Check::fail(name, e.clone()),
        };
        vec![
            line(
                "server refuses a second create-only PUT",
                &self.single_put,
                "412 Precondition Failed, object untouched",
                "UNSAFE: the server replaced the object; create-only is refused (opt in to overwrites with --replace)",
            ),
            line(
                "server refuses a second create-only multipart completion",
                &self.multipart,
                "412 Precondition Failed, object untouched",
                "UNSAFE: the server replaced the object; create-only is refused (opt in to overwrites with --replace)",
            ),
        ]
    }
}

/// Whether the server checks `x-amz-checksum-sha256`, as a doctor line. Asked by `doctor` only:
/// nothing else depends on the answer, so a create-only publish does not pay for it.
pub(crate) async fn checksum_check(inner: &Inner) -> Check {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let path = crate::backend::verbatim(&format!("{}/{}-{nanos}-checksum", inner.probe_dir(), std::process::id()));
    let name = "server verifies x-amz-checksum-sha256";
    match checksum_verified(inner, &path).await {
        Ok(true) => Check::pass(name, "a wrong checksum was rejected"),
        Ok(false) => Check::warn(
            name,
            "a wrong checksum was accepted; promote still verifies every byte itself before publishing",
        ),
        Err(e) => Check::warn(name, e),
    }
}

/// Runs the probe under `<prefix>/.promote/probe/` and cleans up.
pub(crate) async fn conditions(inner: &Inner) -> Result<Report, Error> {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let path = crate::backend::verbatim(&format!("{}/{}-{nanos}", inner.probe_dir(), std::process::id()));
    let create = || PutOptions { mode: PutMode::Create, ..Default::default() };
    let err = |e| errors::map(e, inner.kind, path.as_ref(), "probing conditional writes at");
    inner.store.put_opts(&path, PutPayload::from_static(b"first"), create()).await.map_err(err)?;
    let single_put = match inner.store.put_opts(&path, PutPayload::from_static(b"second"), create()).await {
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) => Err(e.to_string()),
    };
    let multipart = multipart_refused(inner, &path).await;
    let _ = inner.store.delete(&path).await;
    Ok(Report { single_put, multipart })
}

async fn multipart_refused(inner: &Inner, path: &Path) -> Result<bool, String> {
    let Some(multipart) = &inner.multipart else { return Ok(true) };
    let id = multipart.create_multipart(path).await.map_err(|e| e.to_string())?;
    let result = async {
        let part = multipart.put_part(path, &id, 0, PutPayload::from_static(b"third")).await?;
        inner.conditions.set(&id, http::header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        multipart.complete_multipart(path, &id, vec![part]).await
    }
    .await;
    inner.conditions.clear(&id);
    match result {
        Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
            let _ = multipart.abort_multipart(path, &id).await;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) => {
            let _ = multipart.abort_multipart(path, &id).await;
            Err(e.to_string())
        }
    }
}

/// Sends a PUT to `probe` whose signed `x-amz-checksum-sha256` does not match its body.
async fn checksum_verified(inner: &Inner, probe: &Path) -> Result<bool, String> {
    let (Some(signer), Some(http)) = (&inner.signer, &inner.http) else { return Ok(true) };
    let wrong = HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let name = HeaderName::from_static("x-amz-checksum-sha256");
    let options = SignedUrlOptions::default().with_signed_header(name.clone(), wrong.clone());
    let url = signer
        .signed_url_opts(Method::PUT, probe, Duration::from_secs(300), &options)
        .await
        .map_err(|e| format!("signing the checksum probe: {e}"))?;
    let req = http::Request::builder()
        .method(Method::PUT)
        .uri(url.as_str())
        .header(name, wrong)
        .body(object_store::client::HttpRequestBody::from(bytes::Bytes::from_static(b"checksum probe")))
        .map_err(|e| e.to_string())?;
    let status = http.execute(req).await.map_err(|e| format!("checksum probe: {e}"))?.status();
    let _ = inner.store.delete(probe).await;
    Ok(!status.is_success())
}
