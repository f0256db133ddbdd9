//! An independent look at a conformance prefix on S3: every in-progress multipart upload
//! (ListMultipartUploads, sent here as a presigned GET) and every object under
//! `<prefix>/.promote/` but the digest sidecars of published objects, read straight from the
//! server rather than through the backend's sweep.

use std::time::Duration;

use futures_util::TryStreamExt;
use http::Method;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{ClientOptions, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use promote_object_store::S3Config;

/// Residue under `config.prefix`, one line per upload or object.
pub(crate) async fn residue(config: &S3Config) -> Vec<String> {
    let s3 = client(config);
    let mut out = Vec::new();
    let staging = Path::parse(format!("{}/.promote", config.prefix)).expect("a plain test prefix");
    let objects: Vec<_> = s3.list(Some(&staging)).try_collect().await.expect("list .promote/ objects");
    // Digest sidecars belong to published objects; everything else there is staging.
    let digests = format!("{staging}/digests/");
    out.extend(
        objects
            .into_iter()
            .filter(|o| !o.location.as_ref().starts_with(&digests))
            .map(|o| format!("object {}", o.location)),
    );
    out.extend(uploads(&s3, config).await.into_iter().map(|(key, id)| format!("multipart upload of {key} ({id})")));
    out
}

fn client(config: &S3Config) -> AmazonS3 {
    AmazonS3Builder::from_env()
        .with_bucket_name(config.bucket.clone().expect("a bucket"))
        .with_endpoint(config.endpoint.clone().expect("an endpoint"))
        .with_region(config.region.clone().unwrap_or_else(|| "us-east-1".into()))
        .with_allow_http(true)
        .build()
        .expect("an S3 client")
}

/// (key, upload id) of every in-progress upload under the prefix. One page is plenty here.
async fn uploads(s3: &AmazonS3, config: &S3Config) -> Vec<(String, String)> {
    let query = [("uploads", ""), ("prefix", &format!("{}/", config.prefix))];
    let options = SignedUrlOptions::default().with_query(query.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let url = s3
        .signed_url_opts(Method::GET, &Path::default(), Duration::from_secs(300), &options)
        .await
        .expect("sign ListMultipartUploads");
    let http = ReqwestConnector::default().connect(&ClientOptions::new().with_allow_http(true)).expect("client");
    let req = http::Request::builder().method(Method::GET).uri(url.as_str()).body(HttpRequestBody::empty()).unwrap();
    let resp = http.execute(req).await.expect("ListMultipartUploads");
    assert!(resp.status().is_success(), "ListMultipartUploads answered {}", resp.status());
    let xml = String::from_utf8(resp.into_body().bytes().await.expect("body").to_vec()).expect("utf-8");
    assert!(!xml.contains("<IsTruncated>true</IsTruncated>"), "more uploads than one page: {xml}");
    xml.split("<Upload>").skip(1).map(|upload| (inner(upload, "Key"), inner(upload, "UploadId"))).collect()
}

fn inner(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).map(|i| i + open.len()).unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let end = xml[start..].find(&format!("</{tag}>")).expect("closing tag") + start;
    xml[start..end].to_owned()
}
