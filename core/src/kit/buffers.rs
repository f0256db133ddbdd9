//! A small pool of chunk buffers shared by readers and backends.
//!
//! Streaming a large object moves thousands of chunks. Allocating each afresh costs page faults
//! and cold caches; recycling a handful keeps memory bounded and warm. Readers [`take`] a
//! buffer, backends hand it back with [`recycle`] once written. Recycling is optional: a chunk
//! that is not recycled is simply freed.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

use crate::promote::CHUNK_SIZE;

/// Buffers kept for reuse at most.
const KEEP: usize = 4;

static POOL: Mutex<Vec<BytesMut>> = Mutex::new(Vec::new());

/// A buffer of [`CHUNK_SIZE`] bytes (contents unspecified).
pub fn take() -> BytesMut {
    let recycled = POOL.lock().map(|mut pool| pool.pop()).unwrap_or(None);
    let mut buf = recycled.unwrap_or_else(|| BytesMut::with_capacity(CHUNK_SIZE));
    buf.resize(CHUNK_SIZE, 0);
    buf
}

/// Returns a chunk's buffer to the pool, if nothing else still holds it.
pub fn recycle(chunk: Bytes) {
    if let Ok(buf) = chunk.try_into_mut()
        && buf.capacity() >= CHUNK_SIZE
        && let Ok(mut pool) = POOL.lock()
        && pool.len() < KEEP
    {
        pool.push(buf);
    }
}
