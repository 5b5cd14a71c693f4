//! Memory stays bounded when many clients announce large payloads and stall.
//!
//! Each client completes the handshake, sends a frame header announcing a
//! payload just under the cap plus a little of it, then stops. A server that
//! reserved the announced length would hold `clients × cap`; palisade keeps
//! only what arrived. The bound is derived from the settings below.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

const CLIENTS: usize = 400;
const CAP: u64 = 1 << 20; // limits.max_message_bytes = limits.max_frame_bytes = 1 MiB
const SENT: usize = 1000; // payload bytes each client actually sends

#[test]
fn stalled_large_frames_do_not_grow_rss_past_the_bound() {
    // 400 clients from 127.0.0.1: per-IP quotas raised, this test is
    // about memory.
    let server = Server::start_with_config(
        r#"{"limits":{"max_connections_per_ip":100000},"rate":{"handshakes_per_ip_per_s":100000}}"#,
        &[
            "--app",
            "echo",
            "--max-message-bytes",
            "1048576",
            "--max-frame-bytes",
            "1048576",
        ],
    );
    // Warm up allocator and pools with one full round trip.
    let mut warm = open(server.addr());
    warm.write_all(&binary(vec![1u8; 4096])).unwrap();
    expect_frame(&mut warm, op::BINARY, &vec![1u8; 4096]);
    std::thread::sleep(Duration::from_millis(200));
    let before = server.rss_kib();

    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut c = open(server.addr());
        let mut bytes = frame_header(true, 0, op::BINARY, CAP - 1, Some(MASK));
        bytes.extend(std::iter::repeat_n(0x55u8, SENT));
        c.write_all(&bytes).unwrap();
        clients.push(c);
    }
    // Let the server read everything that was sent.
    std::thread::sleep(Duration::from_millis(500));
    let after = server.rss_kib();
    let grown = after.saturating_sub(before);
    // Per client: the bytes that arrived (rounded up to the allocator's
    // power of two: 1 KiB) plus connection state, head buffer and kernel-side
    // bookkeeping — 16 KiB is a generous ceiling. Reserving the announced
    // payload would need CAP = 1024 KiB per client.
    let per_client_kib = 16;
    let bound = (CLIENTS * per_client_kib) as u64;
    eprintln!(
        "RSS before {before} KiB, after {after} KiB, grew {grown} KiB for {CLIENTS} stalled clients (bound {bound} KiB; reserving would be {} KiB)",
        CLIENTS as u64 * CAP / 1024
    );
    assert!(grown < bound, "RSS grew {grown} KiB, bound {bound} KiB");
    // The server still answers while they stall.
    warm.write_all(&text("still here")).unwrap();
    expect_frame(&mut warm, op::TEXT, b"still here");
}
