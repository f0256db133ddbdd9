//! The test server against a plain client on a raw `TcpStream`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::*;
use crate::data;

/// A response read by hand.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether the body had all the bytes `Content-Length` announced.
    complete: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> u64 {
        self.header("content-length").expect("Content-Length").parse().expect("a number")
    }
}

/// A keep-alive client connection.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(server: &HttpServer) -> Self {
        let stream = TcpStream::connect(server.addr()).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self { reader: BufReader::new(stream) }
    }

    fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut out = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in headers {
            out += &format!("{name}: {value}\r\n");
        }
        out += "\r\n";
        self.reader.get_mut().write_all(out.as_bytes()).expect("send request");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line.split(' ').nth(1).expect("a status").parse().expect("a number");
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header");
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut response = Response { status, headers, body: Vec::new(), complete: true };
        if method != "HEAD" {
            let len = response.content_length();
            (&mut self.reader).take(len).read_to_end(&mut response.body).expect("read body");
            response.complete = response.body.len() as u64 == len;
        }
        response
    }

    fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers)
    }
}

fn get(server: &HttpServer, path: &str, headers: &[(&str, &str)]) -> Response {
    Client::connect(server).get(path, headers)
}

#[test]
fn serves_a_full_object_with_validators_and_keeps_the_connection() {
    let server = HttpServer::start().unwrap();
    let bytes = data::bytes(1, 100_000);
    server.add("a/b.bin", bytes.clone());
    let mut client = Client::connect(&server);
    for _ in 0..3 {
        let r = client.get("/a/b.bin", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, bytes);
        assert_eq!(r.content_length(), 100_000);
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("etag"), server.etag("a/b.bin").as_deref());
        assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
    }
    let head = client.request("HEAD", "/a/b.bin?x=1", &[]);
    assert_eq!((head.status, head.content_length()), (200, 100_000));
    assert_eq!((server.gets("/a/b.bin"), server.heads("/a/b.bin"), server.total_gets()), (3, 1, 3));
    assert_eq!(server.bytes_sent("a/b.bin"), 300_000);
    assert_eq!(server.total_bytes_sent(), 300_000);
    assert_eq!(server.url("a/b.bin"), format!("http://{}/a/b.bin", server.addr()));
}

#[test]
fn unknown_and_removed_paths_are_404_and_counted() {
    let server = HttpServer::start().unwrap();
    assert_eq!(get(&server, "/nope", &[]).status, 404);
    server.add("/gone", b"x".to_vec());
    assert_eq!(get(&server, "/gone", &[]).status, 200);
    server.remove("/gone");
    assert_eq!(get(&server, "/gone", &[]).status, 404);
    assert_eq!((server.gets("/nope"), server.gets("/gone"), server.total_gets()), (1, 2, 3));
    let statuses: Vec<u16> = server.requests("/gone").iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 404]);
}

#[test]
fn single_ranges_give_206_with_content_range() {
    let server = HttpServer::start().unwrap();
    let bytes = data::bytes(2, 1000);
    server.add("/o", bytes.clone());
    let mut client = Client::connect(&server);
    for (range, first, last) in
        [("bytes=100-", 100, 999), ("bytes=10-19", 10, 19), ("bytes=-50", 950, 999), ("bytes=990-5000", 990, 999)]
    {
        let r = client.get("/o", &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.header("content-range"), Some(format!("bytes {first}-{last}/1000").as_str()), "{range}");
        assert_eq!(r.body, &bytes[first..=last], "{range}");
    }
    // Several ranges or a malformed one: the whole object.
    for range in ["bytes=0-1,5-6", "lines=1-2", "bytes=9-3"] {
        let r = client.get("/o", &[("Range", range)]);
        assert_eq!((r.status, r.body.len()), (200, 1000), "{range}");
    }
    assert_eq!(server.ranges("/o").len(), 7);
    assert_eq!(server.ranges("/o")[0], "bytes=100-");
}

#[test]
fn an_unsatisfiable_range_is_416() {
    let server = HttpServer::start().unwrap();
    server.add("/o", vec![7u8; 1000]);
    let r = get(&server, "/o", &[("Range", "bytes=1000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
    assert_eq!(server.bytes_sent("/o"), 0);
}

#[test]
fn if_range_honours_a_matching_etag_or_date_and_sends_everything_otherwise() {
    let server = HttpServer::start().unwrap();
    let bytes = data::bytes(3, 5000);
    server.add("/o", bytes.clone());
    let first = get(&server, "/o", &[]);
    let etag = first.header("etag").unwrap().to_owned();
    let date = first.header("last-modified").unwrap().to_owned();

    let mut client = Client::connect(&server);
    let r = client.get("/o", &[("Range", "bytes=4000-"), ("If-Range", &etag)]);
    assert_eq!((r.status, r.body.as_slice()), (206, &bytes[4000..]));
    let r = client.get("/o", &[("Range", "bytes=4000-"), ("If-Range", &date)]);
    assert_eq!((r.status, r.body.as_slice()), (206, &bytes[4000..]));
    let r = client.get("/o", &[("Range", "bytes=4000-"), ("If-Range", "\"other\"")]);
    assert_eq!((r.status, r.body.as_slice()), (200, bytes.as_slice()));
    let r = client.get("/o", &[("Range", "bytes=4000-"), ("If-Range", &format!("W/{etag}"))]);
    assert_eq!(r.status, 200);
    let r = client.get("/o", &[("Range", "bytes=4000-"), ("If-Range", "Thu, 01 Jan 1970 00:00:00 GMT")]);
    assert_eq!(r.status, 200);
}

#[test]
fn a_changed_object_has_a_new_etag_and_date_and_old_validators_get_the_new_body() {
    let server = HttpServer::start().unwrap();
    server.add("/o", data::bytes(4, 3000));
    let old = get(&server, "/o", &[]);
    let new_bytes = data::bytes(5, 3500);
    server.change("/o", new_bytes.clone());
    let r = get(&server, "/o", &[("Range", "bytes=1000-"), ("If-Range", old.header("etag").unwrap())]);
    assert_eq!((r.status, r.body.as_slice()), (200, new_bytes.as_slice()));
    assert_ne!(r.header("etag"), old.header("etag"));
    assert_ne!(r.header("last-modified"), old.header("last-modified"));
    let r = get(&server, "/o", &[("Range", "bytes=1000-"), ("If-Range", old.header("last-modified").unwrap())]);
    assert_eq!(r.status, 200);
}

#[test]
fn ignore_if_range_serves_the_range_of_the_current_object() {
    let server = HttpServer::start().unwrap();
    server.add("/o", data::bytes(7, 3000));
    let old = get(&server, "/o", &[]);
    let new_bytes = data::bytes(8, 3000);
    server.change("/o", new_bytes.clone());
    server.ignore_if_range("/o", true);
    let r = get(&server, "/o", &[("Range", "bytes=1000-"), ("If-Range", old.header("etag").unwrap())]);
    assert_eq!((r.status, r.body.as_slice()), (206, &new_bytes[1000..]));
    assert_eq!(r.header("etag").map(str::to_owned), server.etag("/o"));
    server.ignore_if_range("/o", false);
    let r = get(&server, "/o", &[("Range", "bytes=1000-"), ("If-Range", old.header("etag").unwrap())]);
    assert_eq!(r.status, 200);
}

#[test]
fn ignore_ranges_always_sends_the_full_body() {
    let server = HttpServer::start().unwrap();
    let bytes = data::bytes(6, 2000);
    server.add("/o", bytes.clone());
    server.ignore_ranges("/o", true);
    let r = get(&server, "/o", &[("Range", "bytes=100-")]);
    assert_eq!((r.status, r.body.as_slice()), (200, bytes.as_slice()));
    assert_eq!(r.header("accept-ranges"), None);
    assert_eq!(r.header("content-range"), None);
    server.ignore_ranges("/o", false);
    assert_eq!(get(&server, "/o", &[("Range", "bytes=100-")]).status, 206);
}

#[test]
fn drop_after_closes_mid_body_for_the_next_k_requests() {
    let server = HttpServer::start().unwrap();
    let bytes = data::bytes(7, 200_000);
    server.add("/o", bytes.clone());
    server.drop_after("/o", 70_000, 2);
    for _ in 0..2 {
        let r = get(&server, "/o", &[]);
        assert_eq!((r.status, r.content_length()), (200, 200_000));
        assert!(!r.complete, "the connection was not dropped");
        assert_eq!(r.body, &bytes[..70_000]);
    }
    // A ranged request counts its limit from the start of its own body.
    server.drop_after("/o", 10, 1);
    let r = get(&server, "/o", &[("Range", "bytes=1000-")]);
    assert_eq!((r.status, r.body.as_slice(), r.complete), (206, &bytes[1000..1010], false));
    let r = get(&server, "/o", &[]);
    assert!(r.complete);
    assert_eq!(r.body, bytes);
    assert_eq!(server.bytes_sent("/o"), 70_000 * 2 + 10 + 200_000);
}

#[test]
fn fail_with_answers_the_status_and_retry_after_for_the_next_k_requests() {
    let server = HttpServer::start().unwrap();
    server.add("/o", b"hello".to_vec());
    server.fail_with("/o", 429, Some(2), 2);
    let mut client = Client::connect(&server);
    for _ in 0..2 {
        let r = client.get("/o", &[]);
        assert_eq!((r.status, r.header("retry-after")), (429, Some("2")));
    }
    assert_eq!(client.get("/o", &[]).body, b"hello");
    server.fail_with("/o", 503, None, 1);
    let r = client.get("/o", &[]);
    assert_eq!((r.status, r.header("retry-after")), (503, None));
    assert_eq!(client.get("/o", &[]).status, 200);
    assert_eq!(server.gets("/o"), 5);
    assert_eq!(server.bytes_sent("/o"), 10);
}

#[test]
fn throttle_paces_the_body() {
    let server = HttpServer::start().unwrap();
    server.add("/o", data::bytes(8, 100_000));
    server.throttle("/o", 200_000);
    let started = Instant::now();
    let r = get(&server, "/o", &[]);
    let took = started.elapsed();
    assert!(r.complete);
    assert!(took >= Duration::from_millis(400), "100 kB at 200 kB/s took {took:?}");
    server.throttle("/o", 0);
    let started = Instant::now();
    assert!(get(&server, "/o", &[]).complete);
    assert!(started.elapsed() < Duration::from_millis(400), "unthrottled took {:?}", started.elapsed());
}

#[test]
fn serves_a_file_from_disk_in_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let bytes = data::bytes(9, 3 << 20);
    std::fs::write(&file, &bytes).unwrap();
    let server = HttpServer::start().unwrap();
    server.add_file("/big", &file).unwrap();
    let mut client = Client::connect(&server);
    let r = client.get("/big", &[]);
    assert_eq!((r.status, r.body.len()), (200, bytes.len()));
    assert!(r.body == bytes);
    let r = client.get("/big", &[("Range", "bytes=1048577-")]);
    assert_eq!(r.status, 206);
    assert!(r.body == bytes[1_048_577..]);
    server.drop_after("/big", 100_000, 1);
    let r = get(&server, "/big", &[("Range", "bytes=5-")]);
    assert!(!r.complete);
    assert!(r.body == bytes[5..100_005]);
}

#[test]
fn http_dates_are_imf_fixdates() {
    assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
}

#[test]
fn dropping_the_server_closes_the_port() {
    let server = HttpServer::start().unwrap();
    let addr = server.addr();
    drop(server);
    assert!(TcpStream::connect(addr).is_err(), "still accepting after drop");
}
