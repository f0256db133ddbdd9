//! Deterministic test bytes: the same seed always gives the same bytes, different seeds differ.

use promote_core::Bytes;

/// `len` pseudo-random bytes from `seed` (xorshift64*).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `data` cut into chunks of varying sizes (1 byte up to about `max`), to exercise chunk
/// boundaries.
pub fn chunks(data: &[u8], max: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut step = 1usize;
    while at < data.len() {
        let len = (step % max.max(1)).max(1).min(data.len() - at);
        out.push(Bytes::copy_from_slice(&data[at..at + len]));
        at += len;
        step = step.wrapping_mul(7919).wrapping_add(104_729);
    }
    out
}
