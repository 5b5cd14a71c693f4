//! A `no_std` library over palisade-proto: it builds only if nothing in
//! the core's dependency tree links `std` (see Cargo.toml).
#![no_std]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};

use palisade_proto::conn::WebSocket;
use palisade_proto::{Limits, Stamp};

/// No heap on this imaginary device: every allocation fails.
struct NoHeap;

// SAFETY: never hands out memory, so there is nothing to misuse.
unsafe impl GlobalAlloc for NoHeap {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static HEAP: NoHeap = NoHeap;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Uses the handshake and the connection state machine, so both are linked.
#[unsafe(no_mangle)]
pub extern "C" fn palisade_proto_check() -> usize {
    let key = palisade_proto::handshake::accept_key("dGhlIHNhbXBsZSBub25jZQ==");
    let ws = WebSocket::new(Stamp::EPOCH, alloc::vec::Vec::new());
    key.len() + ws.poll_timeout(&Limits::default()).as_millis() as usize
}
