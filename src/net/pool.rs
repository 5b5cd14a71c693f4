//! Buffers the loop reuses: the read buffers shared by every connection
//! (one read at a time), and a pool of output and reassembly buffers that
//! idle WebSockets give back and busy ones take.

/// Size of the loop's shared read buffer.
pub(super) const SCRATCH: usize = 64 * 1024;
/// Buffers kept for reuse.
const POOL_MAX: usize = 1024;
/// Largest buffer kept for reuse; bigger ones are freed.
const POOL_BUF_MAX: usize = 128 * 1024;
/// An open WebSocket keeps an output buffer this small between messages
/// (until its deadline comes up, at most `idle_timeout` later): giving it
/// to the pool and taking it back cost a lone short message 45 of its
/// about 820 instructions. At most 256 bytes of memory per connection
/// that spoke recently, none for those that are idle.
pub(super) const KEEP_OUTPUT: usize = 256;

/// The loop's buffers.
pub(super) struct Buffers {
    /// Bytes read from a socket (ciphertext under TLS).
    pub scratch: Vec<u8>,
    /// Plaintext out of a TLS session.
    pub plain: Vec<u8>,
    pool: Vec<Vec<u8>>,
}

impl Buffers {
    pub fn new() -> Buffers {
        Buffers {
            scratch: vec![0; SCRATCH],
            plain: vec![0; SCRATCH],
            pool: Vec::new(),
        }
    }

    /// An empty buffer from the pool, if it has one.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        self.pool.pop()
    }

    /// Keeps an (emptied) buffer for reuse, unless the pool is full or the
    /// buffer too big to be worth keeping.
    pub fn give(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() <= POOL_BUF_MAX {
            self.pool.push(buf);
        }
    }
}
