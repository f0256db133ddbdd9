//! A server that stalls on purpose, on 127.0.0.1: it accepts connections, reads each request
//! (and whatever body follows), and then never finishes its answer. Tests point promote at it to
//! show that every request has a deadline and that giving up says so.
//!
//! Connections stay open, silent, until the server is dropped; [`Stall::connections`] counts them,
//! so a test can see that a stuck request was abandoned and tried again on a new connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the answer stalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is ever sent back: no status line, no headers.
    Silent,
    /// `200 OK` headers promising a body of 1 MiB, then nothing.
    HeadersOnly,
}

/// A stalling server. Dropping it closes every connection and ends its threads.
pub struct Stall {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    mode: Mode,
    stop: AtomicBool,
    connections: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
}

impl Stall {
    /// Starts one on a free port of 127.0.0.1.
    ///
    /// # Errors
    ///
    /// When it cannot listen.
    pub fn start(mode: Mode) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode,
            stop: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            open: Mutex::default(),
        });
        let accepting = Arc::clone(&shared);
        std::thread::Builder::new().name("stall-accept".into()).spawn(move || accept(&listener, &accepting))?;
        Ok(Self { addr, shared })
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for stream in self.shared.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let Ok(kept) = stream.try_clone() else { continue };
                shared.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(kept);
                let serving = Arc::clone(shared);
                let _ = std::thread::Builder::new().name("stall-conn".into()).spawn(move || serve(stream, &serving));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return,
        }
    }
}

/// The size of the body the headers promise.
const PROMISED: u64 = 1 << 20;

/// `200 OK` (or `206` for a `Range: bytes=A-B` request) headers for a body of [`PROMISED`]
/// bytes, which never comes.
fn headers_only(head: &str) -> String {
    let range = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let spec = value.trim().strip_prefix("bytes=")?;
        let (a, b) = spec.split_once('-')?;
        let a: u64 = a.parse().ok()?;
        let b: u64 = b.parse().unwrap_or(PROMISED - 1).min(PROMISED - 1);
        name.eq_ignore_ascii_case("range").then_some((a, b))
    });
    let (status, length, extra) = match range {
        Some((a, b)) => ("206 Partial Content", b + 1 - a, format!("Content-Range: bytes {a}-{b}/{PROMISED}\r\n")),
        None => ("200 OK", PROMISED, String::new()),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {length}\r\n{extra}Content-Type: application/octet-stream\r\n\
         ETag: \"stalled\"\r\nLast-Modified: Sun, 06 Dec 2026 00:00:00 GMT\r\n\r\n"
    )
}

/// Reads the request head, answers as the mode says, then keeps reading (and dropping) whatever
/// comes, so an upload is never held up by a full socket buffer: the stall is in the answer only.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut head = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut answered = false;
    while !shared.stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) if !answered => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    answered = true;
                    if shared.mode == Mode::HeadersOnly {
                        let _ = stream.write_all(headers_only(&String::from_utf8_lossy(&head)).as_bytes());
                    }
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
