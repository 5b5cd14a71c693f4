//! The attack suite. Each attack starts its own server, runs the attack
//! from loopback (bounded in count and time) while a well-behaved client
//! does `get_name` round trips from 127.0.0.1, and asserts what the
//! attacker gets, that the well-behaved client lost nothing, and the
//! server's peak RSS. Attackers bind to other addresses of 127.0.0.0/8.
//! Each test appends a row to `target/test-output/attacks.md`, which
//! `scripts/test-all.sh` prints as a table.

mod channels;
#[path = "../common/mod.rs"]
mod common;
mod handshakes;
mod messages;
mod silent;
mod socketio;
mod support;
