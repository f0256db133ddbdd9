//! A small HTTP/1.1 server for tests, with validators, ranges, fault injection and counters.
//!
//! [`HttpServer::start`] listens on `127.0.0.1:0` and serves each connection on its own thread,
//! so a synchronous test can drive it while a `promote` process downloads from it. It speaks
//! just enough HTTP/1.1 for a real client: keep-alive, `GET` and `HEAD`, `ETag`,
//! `Last-Modified`, `Content-Length`, `Accept-Ranges: bytes`, one `Range` per request (`206`
//! with `Content-Range`, `416` when unsatisfiable), `If-Range` (an ETag or the exact
//! `Last-Modified` date; a mismatch sends the full `200`) and a `Date` on every answer (an
//! object's answers can pin it, see below).
//!
//! Objects come from memory ([`HttpServer::add`]) or, for big ones, from a file read in chunks
//! on every request ([`HttpServer::add_file`]), so a 256 MiB object costs no memory.
//!
//! Faults are set per path and take effect on the next request: drop the connection after N
//! body bytes ([`HttpServer::drop_after`]), throttle ([`HttpServer::throttle`]), answer an
//! error status with `Retry-After` ([`HttpServer::fail_with`]), ignore `Range`
//! ([`HttpServer::ignore_ranges`]) or `If-Range` ([`HttpServer::ignore_if_range`]), change the object ([`HttpServer::change`], or
//! [`HttpServer::rewrite`] within the same second) or remove it ([`HttpServer::remove`], then
//! `404`). Validators can be weakened: no `ETag` ([`HttpServer::omit_etag`]), a `Date` pinned to
//! a given second ([`HttpServer::pin_date`]).
//!
//! Counters ([`HttpServer::gets`], [`HttpServer::bytes_sent`], their totals, and
//! [`HttpServer::requests`], with each request's headers) let a test assert how much a client
//! fetched and what it sent; [`HttpServer::max_in_flight`] how many requests it had open at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest request head the server reads before it gives up on a connection.
const MAX_HEAD: usize = 64 << 10;
/// How often an idle connection thread checks whether the server is stopping.
const POLL: Duration = Duration::from_millis(100);
/// Body bytes written per `write` call when not throttled.
const CHUNK: usize = 64 << 10;

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `If-Range` header, if any.
    pub if_range: Option<String>,
    /// The status the server answered with.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
    /// Every header as sent (names lower-cased).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (any case), if it was sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A test HTTP server on `127.0.0.1`; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

struct State {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    generation: AtomicU64,
    total_gets: AtomicU64,
    total_bytes: AtomicU64,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    stop: AtomicBool,
}

/// Everything about one path: its object, its faults, its counters.
#[derive(Default)]
struct Slot {
    object: Mutex<Option<Object>>,
    faults: Mutex<Faults>,
    /// Bytes per second, 0 for unthrottled; read before every chunk, so it can change mid-body.
    throttle: AtomicU64,
    gets: AtomicU64,
    heads: AtomicU64,
    bytes: AtomicU64,
    requests: Mutex<Vec<Request>>,
}

#[derive(Clone)]
struct Object {
    body: Body,
    etag: String,
    /// Seconds since the epoch.
    modified: u64,
}

#[derive(Clone)]
enum Body {
    Memory(Arc<Vec<u8>>),
    File(Arc<PathBuf>, u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Self::Memory(bytes) => bytes.len() as u64,
            Self::File(_, len) => *len,
        }
    }
}

#[derive(Default)]
struct Faults {
    /// Drop after this many body bytes, for this many more requests.
    drop_after: Option<(u64, u32)>,
    /// Answer this status (with this `Retry-After`) for this many more requests.
    status: Option<(u16, Option<u64>, u32)>,
    ignore_ranges: bool,
    /// Serve a `Range` whatever its `If-Range` says.
    ignore_if_range: bool,
    /// Send no `ETag` (and match none in `If-Range`).
    omit_etag: bool,
    /// `Date` is this second, not the current one.
    date: Option<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn normalize(path: &str) -> String {
    if path.starts_with('/') { path.to_owned() } else { format!("/{path}") }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl HttpServer {
    /// Starts a server on a free port of `127.0.0.1`.
    ///
    /// # Errors
    /// When the port cannot be bound or the accept thread cannot be spawned.
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        // ETags differ between servers as well as between versions of one object.
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let state = Arc::new(State {
            slots: Mutex::default(),
            generation: AtomicU64::new(seed & 0xFFFF_FFFF_FFFF),
            total_gets: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::Builder::new().name("http-accept".into()).spawn(move || {
            for stream in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&accept_state);
                let _ = std::thread::Builder::new().name("http-conn".into()).spawn(move || serve(stream, &state));
            }
        })?;
        Ok(Self { addr, state, accept: Some(accept) })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` on this server (`http://127.0.0.1:PORT/path`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, normalize(path))
    }

    fn slot(&self, path: &str) -> Arc<Slot> {
        Arc::clone(lock(&self.state.slots).entry(normalize(path)).or_default())
    }

    fn existing(&self, path: &str) -> Option<Arc<Slot>> {
        lock(&self.state.slots).get(&normalize(path)).cloned()
    }

    fn new_object(&self, body: Body, modified: u64) -> Object {
        let generation = self.state.generation.fetch_add(1, Ordering::SeqCst);
        let etag = format!("\"{generation:x}-{:x}\"", body.len());
        Object { body, etag, modified }
    }

    /// Serves `bytes` at `path` (replacing what was there, with a new ETag).
    pub fn add(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        let object = self.new_object(Body::Memory(Arc::new(bytes.into())), now_secs());
        *lock(&self.slot(path).object) = Some(object);
    }

    /// Serves the file `file` at `path`, read from disk on every request (for big objects).
    /// `Last-Modified` is the file's mtime; the file must not change while it is served.
    ///
    /// # Errors
    /// When the file's metadata cannot be read.
    pub fn add_file(&self, path: &str, file: impl AsRef<Path>) -> io::Result<()> {
        let file = file.as_ref();
        let meta = std::fs::metadata(file)?;
        let modified = meta.modified()?.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let object = self.new_object(Body::File(Arc::new(file.to_owned()), meta.len()), modified);
        *lock(&self.slot(path).object) = Some(object);
        Ok(())
    }

    /// Changes the object at `path` from now on: new bytes, a new ETag, and a `Last-Modified`
    /// later than the old one (so a date validator also stops matching).
    pub fn change(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        let slot = self.slot(path);
        let mut object = lock(&slot.object);
        let modified = object.as_ref().map_or(0, |o| o.modified + 1).max(now_secs());
        *object = Some(self.new_object(Body::Memory(Arc::new(bytes.into())), modified));
    }

    /// Replaces the object at `path` with `bytes` keeping its `Last-Modified`, as a file rewritten
    /// within the same second (its ETag changes, as a strong ETag must).
    pub fn rewrite(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        let slot = self.slot(path);
        let mut object = lock(&slot.object);
        let modified = object.as_ref().map_or_else(now_secs, |o| o.modified);
        *object = Some(self.new_object(Body::Memory(Arc::new(bytes.into())), modified));
    }

    /// The `Last-Modified` of the object at `path`, in seconds since the epoch.
    pub fn last_modified(&self, path: &str) -> Option<u64> {
        self.existing(path).and_then(|slot| lock(&slot.object).as_ref().map(|o| o.modified))
    }

    /// Whether `path` is served without an `ETag` (then `Last-Modified` is its only validator,
    /// and an ETag in `If-Range` never matches).
    pub fn omit_etag(&self, path: &str, omit: bool) {
        lock(&self.slot(path).faults).omit_etag = omit;
    }

    /// Answers for `path` carry `Date: secs` (seconds since the epoch) instead of the current
    /// time; `None` goes back to the current time.
    pub fn pin_date(&self, path: &str, secs: Option<u64>) {
        lock(&self.slot(path).faults).date = secs;
    }

    /// Removes the object at `path`: requests get `404` from now on.
    pub fn remove(&self, path: &str) {
        *lock(&self.slot(path).object) = None;
    }

    /// The ETag the object at `path` is served with now, quotes included.
    pub fn etag(&self, path: &str) -> Option<String> {
        self.existing(path).and_then(|slot| lock(&slot.object).as_ref().map(|o| o.etag.clone()))
    }

    /// For the next `requests` GETs of `path` that send a body: close the connection after
    /// `bytes` body bytes (the headers still announce the full length).
    pub fn drop_after(&self, path: &str, bytes: u64, requests: u32) {
        lock(&self.slot(path).faults).drop_after = (requests > 0).then_some((bytes, requests));
    }

    /// Sends the bodies of `path` at no more than `bytes_per_sec` (0: unthrottled). Takes
    /// effect at once, also on bodies being sent.
    pub fn throttle(&self, path: &str, bytes_per_sec: u64) {
        self.slot(path).throttle.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Answers the next `requests` requests for `path` with `status` (e.g. 429 or 503) and,
    /// when given, `Retry-After: retry_after_secs`.
    pub fn fail_with(&self, path: &str, status: u16, retry_after_secs: Option<u64>, requests: u32) {
        lock(&self.slot(path).faults).status = (requests > 0).then_some((status, retry_after_secs, requests));
    }

    /// Whether `path` ignores `Range` (always a full `200`, without `Accept-Ranges`).
    pub fn ignore_ranges(&self, path: &str, ignore: bool) {
        lock(&self.slot(path).faults).ignore_ranges = ignore;
    }

    /// Whether `path` serves a `Range` even when its `If-Range` no longer matches, as a broken
    /// cache or proxy may: a client resuming then gets a `206` of another object version, which
    /// only its own check of the answer's validators and length can catch.
    pub fn ignore_if_range(&self, path: &str, ignore: bool) {
        lock(&self.slot(path).faults).ignore_if_range = ignore;
    }

    /// GET requests for `path` so far, whatever their answer.
    pub fn gets(&self, path: &str) -> u64 {
        self.existing(path).map_or(0, |slot| slot.gets.load(Ordering::SeqCst))
    }

    /// HEAD requests for `path` so far.
    pub fn heads(&self, path: &str) -> u64 {
        self.existing(path).map_or(0, |slot| slot.heads.load(Ordering::SeqCst))
    }

    /// Body bytes handed to clients for `path` so far, counted before each write (a dropped or
    /// killed client may not have read all of them: this is an upper bound of what it got).
    pub fn bytes_sent(&self, path: &str) -> u64 {
        self.existing(path).map_or(0, |slot| slot.bytes.load(Ordering::SeqCst))
    }

    /// GET requests for any path so far.
    pub fn total_gets(&self) -> u64 {
        self.state.total_gets.load(Ordering::SeqCst)
    }

    /// The most requests the server was answering at once so far (a request counts from its
    /// head to the last byte of its answer).
    pub fn max_in_flight(&self) -> u64 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Body bytes written for any path so far.
    pub fn total_bytes_sent(&self) -> u64 {
        self.state.total_bytes.load(Ordering::SeqCst)
    }

    /// Every request for `path` so far, in order of arrival.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.existing(path).map_or_else(Vec::new, |slot| lock(&slot.requests).clone())
    }

    /// The `Range` headers of the requests for `path` so far.
    pub fn ranges(&self, path: &str) -> Vec<String> {
        self.requests(path).into_iter().filter_map(|r| r.range).collect()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn serve(mut stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(POLL));
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf, state) else { return };
        let Some(head) = parse_head(&head) else {
            let _ = respond_empty(&mut stream, 400, &[], true);
            return;
        };
        if head.header("transfer-encoding").is_some() {
            let _ = respond_empty(&mut stream, 400, &[], true);
            return;
        }
        // GET and HEAD have no body, but discard one if a client sends it.
        let body_len: usize = head.header("content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        if !discard_body(&mut stream, &mut buf, body_len, state) {
            return;
        }
        let close = head.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match handle(&mut stream, state, &head, close) {
            Ok(true) if !close => {}
            _ => {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Reads up to the end of the next request head; `None` when the connection ends or the
/// server stops.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, state: &State) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf[..end].to_vec();
            buf.drain(..end + 4);
            return Some(head);
        }
        if buf.len() > MAX_HEAD || state.stop.load(Ordering::SeqCst) {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

fn discard_body(stream: &mut TcpStream, buf: &mut Vec<u8>, mut len: usize, state: &State) -> bool {
    let take = len.min(buf.len());
    buf.drain(..take);
    len -= take;
    let mut chunk = [0u8; 8192];
    while len > 0 {
        if state.stop.load(Ordering::SeqCst) {
            return false;
        }
        match stream.read(&mut chunk[..len.min(8192)]) {
            Ok(0) => return false,
            Ok(n) => len -= n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn parse_head(raw: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next()?.split(' ');
    let method = request.next()?.to_owned();
    let target = request.next()?.to_owned();
    if !request.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let headers = lines
        .map(|line| line.split_once(':').map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())))
        .collect::<Option<Vec<_>>>()?;
    Some(Head { method, target, headers })
}

/// What to send for a GET or HEAD of an existing object.
struct Plan {
    object: Object,
    status: u16,
    /// First and last byte (inclusive) of the body; `None` for an empty body.
    span: Option<(u64, u64)>,
    ranges: bool,
}

/// Answers one request; `Ok(true)` when the connection may serve another.
/// Answers one request, counted in flight from its head to the end of its answer.
fn handle(stream: &mut TcpStream, state: &State, head: &Head, close: bool) -> io::Result<bool> {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let answered = answer(stream, state, head, close);
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    answered
}

fn answer(stream: &mut TcpStream, state: &State, head: &Head, close: bool) -> io::Result<bool> {
    let path = head.target.split('?').next().unwrap_or("").to_owned();
    let slot = Arc::clone(lock(&state.slots).entry(path.clone()).or_default());
    let mut record = Request {
        method: head.method.clone(),
        path,
        range: head.header("range").map(str::to_owned),
        if_range: head.header("if-range").map(str::to_owned),
        status: 0,
        at: Instant::now(),
        headers: head.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect(),
    };
    let is_get = head.method == "GET";
    match head.method.as_str() {
        "GET" => {
            slot.gets.fetch_add(1, Ordering::SeqCst);
            state.total_gets.fetch_add(1, Ordering::SeqCst);
        }
        "HEAD" => {
            slot.heads.fetch_add(1, Ordering::SeqCst);
        }
        _ => {
            record.status = 405;
            lock(&slot.requests).push(record);
            return respond_empty(stream, 405, &[("Allow", "GET, HEAD".to_owned())], close).map(|()| true);
        }
    }

    // Faults and the object, decided under the locks, sent without them.
    let (status_fault, ignore_ranges, ignore_if_range, omit_etag, date) = {
        let mut faults = lock(&slot.faults);
        let status = match &mut faults.status {
            Some((code, retry, left)) => {
                let fault = (*code, *retry);
                *left -= 1;
                if *left == 0 {
                    faults.status = None;
                }
                Some(fault)
            }
            None => None,
        };
        let date = http_date(faults.date.unwrap_or_else(now_secs));
        (status, faults.ignore_ranges, faults.ignore_if_range, faults.omit_etag, date)
    };
    if let Some((code, retry)) = status_fault {
        record.status = code;
        lock(&slot.requests).push(record);
        let headers: Vec<_> = retry.map(|s| ("Retry-After", s.to_string())).into_iter().collect();
        return respond_empty(stream, code, &headers, close).map(|()| true);
    }
    let Some(object) = lock(&slot.object).clone() else {
        record.status = 404;
        lock(&slot.requests).push(record);
        return respond_empty(stream, 404, &[], close).map(|()| true);
    };
    let plan = match plan(object, head, ignore_ranges, ignore_if_range, omit_etag) {
        Ok(plan) => plan,
        Err(object) => {
            record.status = 416;
            lock(&slot.requests).push(record);
            let headers = [("Content-Range", format!("bytes */{}", object.body.len()))];
            return respond_empty(stream, 416, &headers, close).map(|()| true);
        }
    };
    record.status = plan.status;
    lock(&slot.requests).push(record);

    let len = plan.span.map_or(0, |(first, last)| last - first + 1);
    let mut out = format!("HTTP/1.1 {} {}\r\n", plan.status, reason(plan.status));
    out += &format!("Content-Length: {len}\r\nDate: {date}\r\n");
    if !omit_etag {
        out += &format!("ETag: {}\r\n", plan.object.etag);
    }
    out += &format!("Last-Modified: {}\r\n", http_date(plan.object.modified));
    if plan.ranges {
        out += "Accept-Ranges: bytes\r\n";
    }
    if plan.status == 206
        && let Some((first, last)) = plan.span
    {
        out += &format!("Content-Range: bytes {first}-{last}/{}\r\n", plan.object.body.len());
    }
    if close {
        out += "Connection: close\r\n";
    }
    out += "\r\n";
    stream.write_all(out.as_bytes())?;
    let Some(span) = plan.span.filter(|_| is_get) else { return Ok(true) };

    // This request consumes one "drop after" if one is pending.
    let limit = {
        let mut faults = lock(&slot.faults);
        let limit = faults.drop_after.as_mut().map(|(bytes, left)| {
            *left -= 1;
            (*bytes, *left)
        });
        if limit.is_some_and(|(_, left)| left == 0) {
            faults.drop_after = None;
        }
        limit.map(|(bytes, _)| bytes)
    };
    let sent = send_body(stream, state, &slot, &plan.object.body, span, limit)?;
    Ok(limit.is_none_or(|limit| sent < limit))
}

/// Decides status and span; `Err` with the object for an unsatisfiable range (416).
fn plan(
    object: Object,
    head: &Head,
    ignore_ranges: bool,
    ignore_if_range: bool,
    omit_etag: bool,
) -> Result<Plan, Object> {
    let len = object.body.len();
    let full = Plan { span: (len > 0).then(|| (0, len - 1)), status: 200, ranges: !ignore_ranges, object };
    if ignore_ranges {
        return Ok(full);
    }
    let Some(range) = head.header("range") else { return Ok(full) };
    if let Some(validator) = head.header("if-range").filter(|_| !ignore_if_range) {
        let matches = if validator.starts_with('"') {
            !omit_etag && validator == full.object.etag
        } else if validator.starts_with("W/") {
            false // a weak ETag never matches for ranges
        } else {
            validator == http_date(full.object.modified)
        };
        if !matches {
            return Ok(full);
        }
    }
    match parse_range(range, len) {
        RangeSpec::Ignore => Ok(full),
        RangeSpec::Unsatisfiable => Err(full.object),
        RangeSpec::Span(first, last) => Ok(Plan { span: Some((first, last)), status: 206, ..full }),
    }
}

enum RangeSpec {
    /// Malformed, or several ranges: served as a full 200 (as the RFC allows).
    Ignore,
    Unsatisfiable,
    Span(u64, u64),
}

fn parse_range(header: &str, len: u64) -> RangeSpec {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return RangeSpec::Ignore };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeSpec::Ignore };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix: the last N bytes.
        let Ok(n) = last.parse::<u64>() else { return RangeSpec::Ignore };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Span(len.saturating_sub(n), len - 1);
    }
    let Ok(first) = first.parse::<u64>() else { return RangeSpec::Ignore };
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(last) if last >= first => last,
            _ => return RangeSpec::Ignore,
        }
    };
    if first >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Span(first, last.min(len - 1))
}

/// Writes bytes `span` of `body`, paced by the slot's throttle, stopping after `limit` bytes.
/// Returns the bytes written.
fn send_body(
    stream: &mut TcpStream,
    state: &State,
    slot: &Slot,
    body: &Body,
    (first, last): (u64, u64),
    limit: Option<u64>,
) -> io::Result<u64> {
    let total = (last - first + 1).min(limit.unwrap_or(u64::MAX));
    let mut file = match body {
        Body::File(path, _) => {
            let mut file = File::open(path.as_ref())?;
            file.seek(SeekFrom::Start(first))?;
            Some(file)
        }
        Body::Memory(_) => None,
    };
    let mut chunk = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let started = Instant::now();
    let mut paced_from = (started, 0u64);
    let mut last_rate = 0;
    while sent < total {
        if state.stop.load(Ordering::SeqCst) {
            return Err(io::Error::other("server stopping"));
        }
        let rate = slot.throttle.load(Ordering::SeqCst);
        if rate != last_rate {
            paced_from = (Instant::now(), sent);
            last_rate = rate;
        }
        let mut want = (total - sent).min(CHUNK as u64) as usize;
        if rate > 0 {
            // About 20 writes a second, so a kill can land anywhere in the body.
            want = want.min((rate / 20).max(1) as usize);
        }
        let bytes: &[u8] = match (body, file.as_mut()) {
            (Body::Memory(bytes), _) => {
                let at = (first + sent) as usize;
                &bytes[at..at + want]
            }
            (Body::File(..), Some(file)) => {
                file.read_exact(&mut chunk[..want])?;
                &chunk[..want]
            }
            (Body::File(..), None) => unreachable!("a file body always has its file open"),
        };
        // Counted before the write, so a client that has read the bytes always sees them counted.
        slot.bytes.fetch_add(want as u64, Ordering::SeqCst);
        state.total_bytes.fetch_add(want as u64, Ordering::SeqCst);
        stream.write_all(bytes)?;
        sent += want as u64;
        if rate > 0 {
            let due = Duration::from_secs_f64((sent - paced_from.1) as f64 / rate as f64);
            let elapsed = paced_from.0.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
    stream.flush()?;
    Ok(sent)
}

fn respond_empty(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], close: bool) -> io::Result<()> {
    let body = format!("{status} {}\n", reason(status));
    let mut out = format!("HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n", reason(status), body.len());
    out += &format!("Date: {}\r\n", http_date(now_secs()));
    for (name, value) in headers {
        out += &format!("{name}: {value}\r\n");
    }
    if close {
        out += "Connection: close\r\n";
    }
    out += "\r\n";
    out += &body;
    stream.write_all(out.as_bytes())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for `secs` since the epoch.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
