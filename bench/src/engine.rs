//! The event loop: one mio `Poll` drives every connection, plain or TLS,
//! through connect, upgrade and the mode's traffic.
//!
//! Per connection and wakeup the loop reads until the socket is drained
//! (into one shared 64 KiB buffer), checks the frames as they stream past
//! (only an incomplete frame header is kept between reads), queues the next
//! messages from a pre-masked template and writes once.

use std::io::{self, IoSlice, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConnection;

use crate::hist::Hist;
use crate::ws::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::{Mode, Opts, sys};

/// Most connections with a handshake in progress at once (echo, hero, idle).
const MAX_PENDING: usize = 512;
/// The shared read buffer.
const READ_BUF: usize = 64 * 1024;
/// Errors printed on stderr; the rest are only counted.
const SHOWN_ERRORS: u64 = 10;
/// Largest upgrade response head accepted.
const MAX_HEAD: usize = 8192;
/// Largest TLS record payload.
const TLS_RECORD: usize = 16 * 1024;
/// Messages at least this large are sent with `writev` (plain) instead of
/// being copied into the connection's output buffer.
const VECTORED_MIN: usize = 4096;
/// Most buffers per `writev` (31 staged messages and `out`).
const MAX_IOV: usize = 64;
/// Pause before reopening a connect loop whose socket could not be created.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

pub const HERO_REQUEST: &[u8] = br#"{"event":"get_name","data":{"hero":"ironMan"}}"#;
pub const HERO_REPLY: &[u8] =
    br#"{"event":"name","data":{"hero":"ironMan","hero_name":"Tony Stark"}}"#;
/// A hero server may greet an authenticated user before any request.
const GREETING: &[u8] = br#"{"event":"user_authorized""#;
/// `--socketio`: the acked `get_name` event (an Engine.IO message of a
/// Socket.IO EVENT with ack id `10000000`..`99999999`, the counter), its
/// ack, and the `name` event the hero application also sends (skipped).
pub const SIO_REQUEST: &[u8] = br#"4210000000["get_name",{"hero":"ironMan"}]"#;
pub const SIO_REPLY: &[u8] = br#"4310000000[{"hero":"ironMan","hero_name":"Tony Stark"}]"#;
const SIO_NAME_EVENT: &[u8] = br#"42["name",{"hero":"ironMan","hero_name":"Tony Stark"}]"#;
/// Where the ack id starts in both.
const SIO_COUNTER_OFF: usize = 2;
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Bytes of the per-message sequence counter at the start of echo payloads.
const COUNTER_LEN: usize = 8;

/// What one run measured.
pub struct Report {
    pub window_s: f64,
    /// Round trips (echo, hero) or cycles (connect) in the window.
    pub counted: u64,
    pub bytes_per_round_trip: u64,
    pub hist: Hist,
    pub probe: Option<Hist>,
    pub errors: u64,
    pub server_cpu_s: Option<f64>,
    pub gen_cpu_s: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub pongs: usize,
    /// Paced runs: sends skipped because the previous reply was still due.
    pub late: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// No socket: not opened yet, or failed.
    Free,
    Connecting,
    /// Upgrade request sent (or queued), waiting for the 101.
    Upgrading,
    Open,
    /// `--socketio`: `40` sent, waiting for the server's `40{"sid"}`.
    Joining,
    /// connect mode: our close frame is queued, waiting for the server's.
    Closing,
    /// connect mode: close handshake done, waiting for the server's FIN.
    AwaitEof,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reply,
    Control,
    Ignore,
}

/// Streaming frame parser state.
struct Rx {
    hdr: [u8; 14],
    hdr_len: usize,
    in_frame: bool,
    kind: Kind,
    opcode: u8,
    len: u64,
    pos: u64,
    /// Every byte so far matches the expected reply.
    ok_reply: bool,
    /// Every byte so far matches the start of a greeting that may be skipped.
    ok_greet: bool,
    /// The counter digits the current reply must start with.
    expect: [u8; COUNTER_LEN],
    /// The first bytes of the current text frame, for error messages.
    got: [u8; COUNTER_LEN],
    ctl: [u8; 125],
}

impl Rx {
    fn new() -> Rx {
        Rx {
            hdr: [0; 14],
            hdr_len: 0,
            in_frame: false,
            kind: Kind::Ignore,
            opcode: 0,
            len: 0,
            pos: 0,
            ok_reply: false,
            ok_greet: false,
            expect: [0; COUNTER_LEN],
            got: [0; COUNTER_LEN],
            ctl: [0; 125],
        }
    }
}

struct Io {
    sock: Option<TcpStream>,
    tls: Option<Box<ClientConnection>>,
    /// Bumped on every (re)open; tokens carry it so events of a closed
    /// socket are not applied to the next one in the same slot.
    generation: u32,
}

/// Protocol state of one connection.
struct Proto {
    state: State,
    probe: bool,
    /// Messages to keep in flight.
    window: usize,
    mask: [u8; 4],
    /// One complete masked message frame; with `vectored`, only its prefix
    /// (header, mask and counter), the rest being `tail`.
    template: Vec<u8>,
    /// The masked payload after the counter, the same bytes for every
    /// connection (they share one mask), so `writev` copies from one hot
    /// buffer rather than from a template per connection; empty unless
    /// `vectored`.
    tail: Rc<[u8]>,
    /// Offset of the payload in `template`.
    pay_off: usize,
    /// Plain connections with large messages send them with `writev` from
    /// `prefixes` (each message's header and counter) and the shared
    /// `tail`, instead of copying each into `out`.
    vectored: bool,
    /// Messages staged in `prefixes`, not yet written.
    staged: usize,
    prefixes: Vec<u8>,
    /// Bytes of a message's prefix: header, mask and counter.
    prefix_len: usize,
    /// Bytes to send; in plain mode `out[out_off..]` is still unwritten.
    out: Vec<u8>,
    out_off: usize,
    /// The socket refused bytes and has not reported writable since.
    blocked: bool,
    head: Vec<u8>,
    accept: [u8; 28],
    /// Send times of the messages in flight, oldest at `ring_head`.
    ring: Vec<Instant>,
    ring_head: usize,
    in_flight: usize,
    send_seq: u32,
    recv_seq: u32,
    answered: u64,
    rx: Rx,
    /// When this connection (connect mode: this cycle) was opened.
    started: Instant,
    /// The upgrade succeeded.
    up: bool,
    /// The upgrade has been accounted for by the event loop.
    reported: bool,
    ping: [u8; 4],
    pinged: bool,
    ponged: bool,
}

/// State shared by all connections.
struct Global {
    mode: Mode,
    /// The expected reply; in echo mode also the message payload, whose
    /// `ctr.len` bytes at `ctr.off` are replaced by the sequence counter.
    reply: Vec<u8>,
    ctr: Ctr,
    /// `--socketio`: the Socket.IO join after the upgrade, pings answered.
    sio: bool,
    sending: bool,
    /// Messages go out on the pacing schedule, not to keep a window full.
    paced: bool,
    measuring: bool,
    /// Set when `--count` was reached.
    done: Option<Instant>,
    count: Option<u64>,
    hist: Hist,
    probe_hist: Hist,
    counted: u64,
    errors: u64,
    pongs: usize,
    late: u64,
}

impl Global {
    fn error(&mut self, reason: &str) {
        self.errors += 1;
        if self.errors <= SHOWN_ERRORS {
            eprintln!("palisade-bench: error: {reason}");
        } else if self.errors == SHOWN_ERRORS + 1 {
            eprintln!("palisade-bench: (further errors are only counted)");
        }
    }
}

/// The read buffers all connections share.
struct Buffers {
    /// Bytes from the socket.
    net: Box<[u8]>,
    /// TLS: decrypted bytes.
    plain: Box<[u8]>,
}

/// What an event reported.
#[derive(Clone, Copy)]
struct Ready {
    readable: bool,
    writable: bool,
    /// The server's FIN has arrived.
    closed: bool,
    error: bool,
}

enum Outcome {
    Nothing,
    /// connect mode: the cycle is complete.
    Finished,
}

fn token(i: usize, generation: u32) -> Token {
    Token((generation as usize) << 32 | i)
}

/// Where and how the sequence counter is written in messages and replies.
#[derive(Clone, Copy)]
struct Ctr {
    len: usize,
    off: usize,
    /// Decimal from 10000000 (a Socket.IO ack id, no leading zero), else hex.
    decimal: bool,
}

impl Ctr {
    fn digits(self, seq: u32, out: &mut [u8; COUNTER_LEN]) {
        if self.decimal {
            let mut n = 10_000_000 + seq % 90_000_000;
            for o in out.iter_mut().take(self.len).rev() {
                *o = b'0' + (n % 10) as u8;
                n /= 10;
            }
        } else {
            hex_counter(seq, self.len, out);
        }
    }
}

fn hex_counter(seq: u32, len: usize, out: &mut [u8; COUNTER_LEN]) {
    for (i, o) in out.iter_mut().enumerate().take(len) {
        *o = HEX[((seq >> (4 * (len - 1 - i))) & 0xf) as usize];
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "connection reset by the server".into(),
        io::ErrorKind::BrokenPipe => "broken pipe (the server closed the connection)".into(),
        _ => e.to_string(),
    }
}

/// Queues messages until `window` are in flight: the counter is masked
/// into the connection's template in place, and the frame is appended to
/// `out`; large plain messages are staged for `writev` instead (only their
/// prefix is copied), and TLS messages of a record or more are handed to the
/// session directly (small ones are batched into one record).
fn fill(io: &mut Io, p: &mut Proto, ctr: Ctr, now: Instant) -> Result<(), String> {
    if p.in_flight >= p.window {
        return Ok(());
    }
    let mut direct = io.tls.as_mut().filter(|_| p.template.len() >= TLS_RECORD);
    if p.vectored {
        // Staged messages go out after whatever `out` holds (see `flush`).
    } else if let Some(tls) = direct.as_mut() {
        if !p.out.is_empty() {
            tls.writer()
                .write_all(&p.out)
                .map_err(|e| format!("TLS: {e}"))?;
            p.out.clear();
        }
    } else if p.out_off > 0 {
        p.out.drain(..p.out_off);
        p.out_off = 0;
    }
    while p.in_flight < p.window {
        let mut digits = [0u8; COUNTER_LEN];
        ctr.digits(p.send_seq, &mut digits);
        let at = p.pay_off + ctr.off;
        for (i, (o, d)) in p.template[at..at + ctr.len]
            .iter_mut()
            .zip(digits)
            .enumerate()
        {
            *o = d ^ p.mask[(ctr.off + i) & 3];
        }
        if p.vectored {
            p.prefixes.extend_from_slice(&p.template[..p.prefix_len]);
            p.staged += 1;
        } else if let Some(tls) = direct.as_mut() {
            tls.writer()
                .write_all(&p.template)
                .map_err(|e| format!("TLS: {e}"))?;
        } else {
            p.out.extend_from_slice(&p.template);
        }
        let mut slot = p.ring_head + p.in_flight;
        if slot >= p.ring.len() {
            slot -= p.ring.len();
        }
        p.ring[slot] = now;
        p.in_flight += 1;
        p.send_seq = p.send_seq.wrapping_add(1);
    }
    Ok(())
}

fn on_reply(p: &mut Proto, g: &mut Global, now: Instant) {
    let sent = p.ring[p.ring_head];
    p.ring_head += 1;
    if p.ring_head == p.ring.len() {
        p.ring_head = 0;
    }
    p.in_flight -= 1;
    p.recv_seq = p.recv_seq.wrapping_add(1);
    p.answered += 1;
    if g.measuring {
        let ns = now.saturating_duration_since(sent).as_nanos() as u64;
        if p.probe {
            g.probe_hist.record(ns);
        } else {
            g.hist.record(ns);
            g.counted += 1;
            if g.count.is_some_and(|c| g.counted >= c) && g.done.is_none() {
                g.done = Some(now);
            }
        }
    }
}

fn start_frame(p: &mut Proto, g: &Global) -> Result<(), String> {
    let rx = &mut p.rx;
    let (b0, b1) = (rx.hdr[0], rx.hdr[1]);
    let len = match b1 & 0x7f {
        126 => u64::from(u16::from_be_bytes([rx.hdr[2], rx.hdr[3]])),
        127 => u64::from_be_bytes(rx.hdr[2..10].try_into().expect("8 bytes")),
        n => u64::from(n),
    };
    rx.hdr_len = 0;
    if b1 & 0x80 != 0 {
        return Err("the server sent a masked frame".into());
    }
    if b0 & 0x70 != 0 {
        return Err(format!("the server set RSV bits (first byte {b0:#04x})"));
    }
    let fin = b0 & 0x80 != 0;
    let op = b0 & 0x0f;
    rx.opcode = op;
    rx.len = len;
    rx.pos = 0;
    rx.in_frame = true;
    let replies = matches!(g.mode, Mode::Echo | Mode::Hero) && p.state == State::Open
        || p.state == State::Joining;
    match op {
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || len > 125 {
                return Err(format!(
                    "bad control frame (opcode {op}, {len} bytes, fin {fin})"
                ));
            }
            rx.kind = Kind::Control;
        }
        0..=2 if !replies => rx.kind = Kind::Ignore,
        OP_TEXT => {
            if !fin {
                return Err("fragmented text message (a single frame was expected)".into());
            }
            rx.kind = Kind::Reply;
            rx.ok_reply = p.in_flight > 0 && len == g.reply.len() as u64;
            rx.ok_greet = if g.sio {
                len == SIO_NAME_EVENT.len() as u64
            } else {
                g.mode == Mode::Hero && p.answered == 0 && len >= GREETING.len() as u64
            };
            g.ctr.digits(p.recv_seq, &mut rx.expect);
            rx.got = [b'.'; COUNTER_LEN];
        }
        0 => return Err("continuation frame without a message".into()),
        2 => return Err(format!("binary message of {len} bytes (text expected)")),
        _ => return Err(format!("reserved opcode {op:#x}")),
    }
    Ok(())
}

/// Checks the next `chunk` of the current frame's payload.
fn body(p: &mut Proto, g: &Global, chunk: &[u8]) {
    let rx = &mut p.rx;
    let pos = rx.pos as usize;
    match rx.kind {
        Kind::Ignore => {}
        Kind::Control => rx.ctl[pos..pos + chunk.len()].copy_from_slice(chunk),
        Kind::Reply => {
            if pos < COUNTER_LEN {
                let k = (COUNTER_LEN - pos).min(chunk.len());
                rx.got[pos..pos + k].copy_from_slice(&chunk[..k]);
            }
            if rx.ok_reply {
                // Before the counter, the counter, after it.
                let (a, b) = (g.ctr.off, g.ctr.off + g.ctr.len);
                let expect = rx.expect;
                let mut i = 0;
                while rx.ok_reply && i < chunk.len() {
                    let at = pos + i;
                    let (end, want): (usize, &[u8]) = if at < a {
                        (a, &g.reply[at..a])
                    } else if at < b {
                        (b, &expect[at - a..b - a])
                    } else {
                        (pos + chunk.len(), &g.reply[at..pos + chunk.len()])
                    };
                    let k = (end - at).min(chunk.len() - i);
                    rx.ok_reply = same(&chunk[i..i + k], &want[..k]);
                    i += k;
                }
            }
            let skip = if g.sio { SIO_NAME_EVENT } else { GREETING };
            if rx.ok_greet && pos < skip.len() {
                let k = (skip.len() - pos).min(chunk.len());
                rx.ok_greet = chunk[..k] == skip[pos..pos + k];
            }
        }
    }
}

fn end_frame(p: &mut Proto, g: &mut Global, now: Instant) -> Result<(), String> {
    p.rx.in_frame = false;
    let n = p.rx.len as usize;
    match p.rx.kind {
        Kind::Ignore => Ok(()),
        Kind::Control => match p.rx.opcode {
            OP_PING => {
                ws::push_frame(OP_PONG, &p.rx.ctl[..n], p.mask, &mut p.out);
                Ok(())
            }
            OP_PONG => {
                if g.mode == Mode::Idle && p.pinged && !p.ponged && p.rx.ctl[..n] == p.ping {
                    p.ponged = true;
                    g.pongs += 1;
                }
                Ok(())
            }
            _ => {
                let code = (n >= 2).then(|| u16::from_be_bytes([p.rx.ctl[0], p.rx.ctl[1]]));
                if p.state == State::Closing && code.is_none_or(|c| c == 1000) {
                    p.state = State::AwaitEof;
                    return Ok(());
                }
                let reason = String::from_utf8_lossy(&p.rx.ctl[2.min(n)..n]);
                let code = code.map_or("none".to_owned(), |c| c.to_string());
                Err(format!(
                    "the server sent a close frame, code {code} reason {reason:?}"
                ))
            }
        },
        Kind::Reply => {
            if g.sio {
                let head = &p.rx.got[..n.min(COUNTER_LEN)];
                if p.state == State::Joining {
                    // The open packet comes first, then the join.
                    if head.starts_with(b"40") {
                        p.state = State::Open;
                        p.up = true;
                    } else if head.starts_with(b"44") {
                        return Err("the server refused the Socket.IO CONNECT".into());
                    }
                    return Ok(());
                }
                if head == b"2" {
                    ws::push_frame(OP_TEXT, b"3", p.mask, &mut p.out);
                    return Ok(());
                }
            }
            if p.rx.ok_reply {
                on_reply(p, g, now);
                Ok(())
            } else if p.rx.ok_greet {
                Ok(())
            } else {
                let got = String::from_utf8_lossy(&p.rx.got[..n.min(COUNTER_LEN)]);
                Err(if p.in_flight == 0 {
                    format!("text message of {n} bytes with no request in flight (starts {got:?})")
                } else if n != g.reply.len() {
                    format!(
                        "reply of {n} bytes (starts {got:?}), expected {} bytes",
                        g.reply.len()
                    )
                } else if g.ctr.len > 0
                    && g.ctr.off == 0
                    && p.rx.got[..g.ctr.len] != p.rx.expect[..g.ctr.len]
                {
                    format!(
                        "stale or reordered reply: counter {got:?}, expected {:?}",
                        String::from_utf8_lossy(&p.rx.expect[..g.ctr.len])
                    )
                } else {
                    format!("reply of {n} bytes differs from the message sent")
                })
            }
        }
    }
}

/// The length of the frame at the start of `data` when it is a complete,
/// correct reply to the oldest message in flight (the common case, checked
/// without copying); `None` leaves the frame to the general parser.
fn whole_reply(p: &Proto, g: &Global, data: &[u8]) -> Option<usize> {
    if p.in_flight == 0 || data.len() < 2 || data[0] != 0x80 | OP_TEXT {
        return None;
    }
    let (hdr, len) = match data[1] {
        n @ 0..=125 => (2, usize::from(n)),
        126 if data.len() >= 4 => (4, usize::from(u16::from_be_bytes([data[2], data[3]]))),
        _ => return None,
    };
    let payload = data.get(hdr..hdr + len)?;
    if len != g.reply.len() {
        return None;
    }
    let Ctr { len: n, off, .. } = g.ctr;
    let (before, rest) = payload.split_at(off);
    let (counter, rest) = rest.split_at(n);
    let mut expect = [0u8; COUNTER_LEN];
    g.ctr.digits(p.recv_seq, &mut expect);
    (same(before, &g.reply[..off])
        && same(counter, &expect[..n])
        && same(rest, &g.reply[off + n..]))
    .then_some(hdr + len)
}

/// `a == b`, eight bytes at a time without an early exit: inlined, where
/// `==` would call `memcmp` for each of the short slices compared per
/// message.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    let mut diff = a8.iter().zip(b8).fold(0u64, |d, (x, y)| {
        d | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y))
    });
    for (x, y) in a_rest.iter().zip(b_rest) {
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// Parses and checks server frames as they arrive.
fn on_frames(p: &mut Proto, g: &mut Global, mut data: &[u8], now: Instant) -> Result<(), String> {
    let replies = matches!(g.mode, Mode::Echo | Mode::Hero) && p.state == State::Open;
    while !data.is_empty() {
        if replies
            && !p.rx.in_frame
            && p.rx.hdr_len == 0
            && let Some(n) = whole_reply(p, g, data)
        {
            on_reply(p, g, now);
            data = &data[n..];
            continue;
        }
        if !p.rx.in_frame {
            let rx = &mut p.rx;
            let need = if rx.hdr_len < 2 {
                2
            } else {
                ws::header_len(rx.hdr[1])
            };
            let take = (need - rx.hdr_len).min(data.len());
            rx.hdr[rx.hdr_len..rx.hdr_len + take].copy_from_slice(&data[..take]);
            rx.hdr_len += take;
            data = &data[take..];
            if rx.hdr_len < 2 || rx.hdr_len < ws::header_len(rx.hdr[1]) {
                continue;
            }
            start_frame(p, g)?;
            if p.rx.len == 0 {
                end_frame(p, g, now)?;
            }
        } else {
            let n = (p.rx.len - p.rx.pos).min(data.len() as u64) as usize;
            body(p, g, &data[..n]);
            p.rx.pos += n as u64;
            data = &data[n..];
            if p.rx.pos == p.rx.len {
                end_frame(p, g, now)?;
            }
        }
    }
    Ok(())
}

/// Handles received application bytes: the upgrade response, then frames.
fn on_bytes(p: &mut Proto, g: &mut Global, mut data: &[u8], now: Instant) -> Result<(), String> {
    if p.state == State::Upgrading {
        let old = p.head.len();
        p.head.extend_from_slice(data);
        let from = old.saturating_sub(3);
        let Some(end) = ws::head_end(&p.head[from..]).map(|e| from + e) else {
            if p.head.len() > MAX_HEAD {
                return Err(format!(
                    "upgrade response head over {MAX_HEAD} bytes: {:?}",
                    String::from_utf8_lossy(&p.head[..80])
                ));
            }
            return Ok(());
        };
        ws::check_response(&p.head[..end], &p.accept)?;
        data = &data[end - old..];
        if g.sio && g.mode != Mode::Connect {
            // Join `/`; the connection counts as up once the server says so.
            ws::push_frame(OP_TEXT, b"40", p.mask, &mut p.out);
            p.head = Vec::new();
            p.state = State::Joining;
            return if data.is_empty() {
                Ok(())
            } else {
                on_frames(p, g, data, now)
            };
        }
        p.up = true;
        if g.mode == Mode::Connect {
            p.head.clear();
            ws::push_frame(OP_CLOSE, &1000u16.to_be_bytes(), p.mask, &mut p.out);
            p.state = State::Closing;
        } else {
            p.head = Vec::new();
            p.state = State::Open;
        }
    }
    if data.is_empty() {
        Ok(())
    } else {
        on_frames(p, g, data, now)
    }
}

/// Reads until drained; returns whether the server closed its side.
///
/// A short read means the receive queue is empty: a later arrival raises a
/// new edge-triggered event. When the event said the server had already
/// sent its FIN, the queue is empty for good, which is the end of stream
/// without another read; after a socket error, reading on reports it.
fn read_plain(
    io: &mut Io,
    p: &mut Proto,
    g: &mut Global,
    buf: &mut [u8],
    now: Instant,
    ready: Ready,
) -> Result<bool, String> {
    let sock = io.sock.as_mut().expect("an open socket");
    loop {
        match sock.read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                on_bytes(p, g, &buf[..n], now)?;
                if n < buf.len() && !ready.error {
                    return Ok(ready.closed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_reason(&e)),
        }
    }
}

/// `read_plain` through TLS: ciphertext is read into `buf` (rustls on its
/// own would read 4 KiB per system call) and fed to the session from there;
/// plaintext is checked from `plain`.
fn read_tls(
    io: &mut Io,
    p: &mut Proto,
    g: &mut Global,
    bufs: &mut Buffers,
    now: Instant,
    ready: Ready,
) -> Result<bool, String> {
    let Buffers { net: buf, plain } = bufs;
    let sock = io.sock.as_mut().expect("an open socket");
    let tls = io.tls.as_mut().expect("a TLS session");
    loop {
        let n = match sock.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_reason(&e)),
        };
        let mut src = &buf[..n];
        loop {
            // An empty `src` tells the session the stream ended.
            let fed = tls.read_tls(&mut src).map_err(|e| format!("TLS: {e}"))?;
            tls.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
            loop {
                match tls.reader().read(plain) {
                    Ok(0) => return Ok(true),
                    Ok(k) => on_bytes(p, g, &plain[..k], now)?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
                    Err(e) => return Err(format!("TLS: {e}")),
                }
            }
            if src.is_empty() || fed == 0 {
                break;
            }
        }
        if n == 0 {
            return Ok(true);
        }
        if n < buf.len() && !ready.error {
            return Ok(ready.closed);
        }
    }
}

/// Writes `out` and the staged messages with `writev`; returns whether the
/// socket is full. What it does not take is copied into `out`.
fn flush_vectored(sock: &mut TcpStream, p: &mut Proto) -> Result<bool, String> {
    let plen = p.prefix_len;
    let mlen = plen + p.tail.len();
    while p.staged > 0 {
        let pending = p.out.len() - p.out_off;
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut k = 0;
        if pending > 0 {
            iov[0] = IoSlice::new(&p.out[p.out_off..]);
            k = 1;
        }
        let msgs = p.staged.min((MAX_IOV - k) / 2);
        for m in 0..msgs {
            iov[k] = IoSlice::new(&p.prefixes[m * plen..(m + 1) * plen]);
            iov[k + 1] = IoSlice::new(&p.tail);
            k += 2;
        }
        let n = match sock.write_vectored(&iov[..k]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_reason(&e)),
        };
        let from_out = n.min(pending);
        p.out_off += from_out;
        let full = (n - from_out) / mlen;
        let part = (n - from_out) % mlen;
        if full == msgs && part == 0 {
            p.prefixes.copy_within(msgs * plen.., 0);
            p.prefixes.truncate((p.staged - msgs) * plen);
            p.staged -= msgs;
            if p.out_off == p.out.len() {
                p.out.clear();
                p.out_off = 0;
            }
            continue;
        }
        // The socket took part of it: keep the rest, in order, in `out`.
        p.out.drain(..p.out_off);
        p.out_off = 0;
        for m in full..p.staged {
            let skip = if m == full { part } else { 0 };
            let prefix = &p.prefixes[m * plen..(m + 1) * plen];
            p.out.extend_from_slice(&prefix[skip.min(plen)..]);
            p.out
                .extend_from_slice(&p.tail[skip.saturating_sub(plen)..]);
        }
        p.prefixes.clear();
        p.staged = 0;
        return Ok(true);
    }
    Ok(false)
}

/// Writes what is queued: one system call unless the socket takes less.
fn flush(io: &mut Io, p: &mut Proto) -> Result<(), String> {
    if p.blocked {
        return Ok(());
    }
    let sock = io.sock.as_mut().expect("an open socket");
    match io.tls.as_mut() {
        None => {
            if p.staged > 0 && flush_vectored(sock, p)? {
                p.blocked = true;
                return Ok(());
            }
            while p.out_off < p.out.len() {
                match sock.write(&p.out[p.out_off..]) {
                    Ok(0) => return Err("the socket accepted no bytes".into()),
                    Ok(n) => p.out_off += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        p.blocked = true;
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_reason(&e)),
                }
            }
            p.out.clear();
            p.out_off = 0;
        }
        Some(tls) => {
            if !p.out.is_empty() {
                tls.writer()
                    .write_all(&p.out)
                    .map_err(|e| format!("TLS: {e}"))?;
                p.out.clear();
            }
            while tls.wants_write() {
                match tls.write_tls(sock) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        p.blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_reason(&e)),
                }
            }
        }
    }
    Ok(())
}

/// Handles one readiness event of a connection.
fn drive(
    io: &mut Io,
    p: &mut Proto,
    g: &mut Global,
    bufs: &mut Buffers,
    now: Instant,
    ready: Ready,
) -> Result<Outcome, String> {
    if p.state == State::Connecting {
        let sock = io.sock.as_ref().expect("an open socket");
        // The first event of a connecting socket reports the outcome: plain
        // writability is success; anything else needs a closer look.
        if ready.closed || ready.error || !ready.writable {
            if let Some(e) = sock.take_error().map_err(|e| format!("connect: {e}"))? {
                return Err(format!("connect: {e}"));
            }
            match sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    return Ok(Outcome::Nothing);
                }
                Err(e) => return Err(format!("connect: {e}")),
            }
        }
        // Connect cycles write only when nothing is unacknowledged, where
        // Nagle's algorithm never delays, so they save the system call.
        if g.mode != Mode::Connect {
            sock.set_nodelay(true)
                .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        }
        p.state = State::Upgrading;
    }
    if ready.writable {
        p.blocked = false;
    }
    if ready.readable || ready.closed || ready.error {
        let eof = if io.tls.is_some() {
            read_tls(io, p, g, bufs, now, ready)?
        } else {
            read_plain(io, p, g, &mut bufs.net, now, ready)?
        };
        if eof {
            return match p.state {
                State::AwaitEof => Ok(Outcome::Finished),
                State::Upgrading => {
                    Err("the server closed the connection during the upgrade".into())
                }
                State::Closing => Err("the server closed TCP without a close frame".into()),
                _ => Err("the server closed the connection".into()),
            };
        }
    }
    if p.state == State::Open && g.sending && !g.paced {
        fill(io, p, g.ctr, now)?;
    }
    flush(io, p)?;
    Ok(Outcome::Nothing)
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Opening connections (echo, hero, idle).
    Setup,
    Warmup(Instant),
    Measure(Instant),
    Settle(Instant),
    Ping,
}

struct Engine<'a> {
    o: &'a Opts,
    poll: Poll,
    io: Vec<Io>,
    p: Vec<Proto>,
    g: Global,
    bufs: Buffers,
    rng: sys::Rng,
    request: Vec<u8>,
    key_at: usize,
    next_open: usize,
    pending: usize,
    upgraded: usize,
    failed: usize,
    lost: usize,
    retry: Vec<usize>,
}

impl Engine<'_> {
    /// Opens (or reopens) the connection in slot `i`.
    fn open(&mut self, i: usize, now: Instant) -> Result<(), String> {
        let io = &mut self.io[i];
        let p = &mut self.p[i];
        io.sock = None;
        io.tls = None;
        p.state = State::Free;
        io.generation = io.generation.wrapping_add(1);
        let mut sock = TcpStream::connect(self.o.addr).map_err(|e| format!("connect: {e}"))?;
        self.poll
            .registry()
            .register(
                &mut sock,
                token(i, io.generation),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        let mut random = [0u8; 16];
        self.rng.fill(&mut random);
        let key = ws::key(&random);
        p.accept = ws::accept(&key);
        p.out.clear();
        p.out_off = 0;
        p.blocked = false;
        p.out.extend_from_slice(&self.request);
        p.out[self.key_at..self.key_at + key.len()].copy_from_slice(&key);
        p.head.clear();
        p.rx = Rx::new();
        p.ring_head = 0;
        p.in_flight = 0;
        p.send_seq = 0;
        p.recv_seq = 0;
        p.answered = 0;
        p.up = false;
        p.reported = false;
        p.started = now;
        if let Some(t) = &self.o.tls {
            let mut c = ClientConnection::new(t.config.clone(), t.name.clone())
                .map_err(|e| format!("TLS: {e}"))?;
            c.set_buffer_limit(None);
            io.tls = Some(Box::new(c));
        }
        io.sock = Some(sock);
        p.state = State::Connecting;
        Ok(())
    }

    fn close(&mut self, i: usize) {
        self.io[i].sock = None;
        self.io[i].tls = None;
        self.p[i].state = State::Free;
    }

    /// Starts handshakes until `MAX_PENDING` are in progress.
    fn open_more(&mut self, now: Instant) {
        let total = self.p.len();
        while self.pending < MAX_PENDING && self.next_open < total {
            let i = self.next_open;
            self.next_open += 1;
            self.pending += 1;
            if let Err(e) = self.open(i, now) {
                self.g.error(&e);
                self.close(i);
                self.pending -= 1;
                self.failed += 1;
            }
        }
    }

    /// Restarts connect loop `i`.
    fn reopen(&mut self, i: usize, now: Instant) {
        if let Err(e) = self.open(i, now) {
            self.g.error(&e);
            self.close(i);
            self.retry.push(i);
        }
    }

    /// Accounts for the result of driving connection `i`.
    fn after(&mut self, i: usize, r: Result<Outcome, String>, now: Instant) {
        let connect = self.g.mode == Mode::Connect;
        let p = &mut self.p[i];
        let mut freed = false;
        if p.up && !p.reported {
            p.reported = true;
            if !connect {
                self.pending -= 1;
                self.upgraded += 1;
                freed = true;
            }
        }
        match r {
            Ok(Outcome::Nothing) => {}
            Ok(Outcome::Finished) => {
                if self.g.measuring {
                    let ns = now.saturating_duration_since(p.started).as_nanos() as u64;
                    self.g.hist.record(ns);
                    self.g.counted += 1;
                    if self.g.count.is_some_and(|c| self.g.counted >= c) && self.g.done.is_none() {
                        self.g.done = Some(now);
                    }
                }
                self.close(i);
                self.reopen(i, now);
            }
            Err(reason) => {
                self.g.error(&reason);
                let was_up = p.up;
                self.close(i);
                if connect {
                    self.reopen(i, now);
                } else if was_up {
                    self.lost += 1;
                } else {
                    self.pending -= 1;
                    self.failed += 1;
                    freed = true;
                }
            }
        }
        if freed {
            self.open_more(now);
        }
    }

    /// Drives connection `i` without a readiness event (to start sending).
    fn kick(&mut self, i: usize, now: Instant) {
        if self.p[i].state != State::Open {
            return;
        }
        let r = drive(
            &mut self.io[i],
            &mut self.p[i],
            &mut self.g,
            &mut self.bufs,
            now,
            Ready {
                readable: false,
                writable: false,
                closed: false,
                error: false,
            },
        );
        self.after(i, r, now);
    }

    /// Paced mode: sends connection `i` its next message, or counts it late
    /// when the previous reply has not come back yet.
    fn send_one(&mut self, i: usize, now: Instant) {
        let p = &mut self.p[i];
        if p.state != State::Open {
            return;
        }
        if p.in_flight > 0 {
            self.g.late += u64::from(self.g.measuring);
            return;
        }
        let io = &mut self.io[i];
        let r = fill(io, p, self.g.ctr, now)
            .and_then(|()| flush(io, p))
            .map(|()| Outcome::Nothing);
        self.after(i, r, now);
    }

    fn send_pings(&mut self, now: Instant) {
        for i in 0..self.p.len() {
            let p = &mut self.p[i];
            if p.state != State::Open {
                continue;
            }
            ws::push_frame(OP_PING, &p.ping, p.mask, &mut p.out);
            p.pinged = true;
            let r = flush(&mut self.io[i], p).map(|()| Outcome::Nothing);
            self.after(i, r, now);
        }
    }
}

/// Paced sending: connection after connection, one message every
/// `interval / connections`, so each connection sends once per interval.
struct Pace {
    step: Duration,
    next_at: Instant,
    next_conn: usize,
    conns: usize,
}

impl Pace {
    fn new(interval: Duration, conns: usize) -> Pace {
        Pace {
            step: interval / conns.max(1) as u32,
            next_at: Instant::now(),
            next_conn: 0,
            conns: conns.max(1),
        }
    }

    /// Sends every message that has come due, at most one round of the
    /// connections per call (a generator that fell behind catches up over
    /// several turns rather than in one burst).
    fn send_due(&mut self, e: &mut Engine, now: Instant) {
        for _ in 0..self.conns {
            if self.next_at > now {
                break;
            }
            e.send_one(self.next_conn, now);
            self.next_conn += 1;
            if self.next_conn == self.conns {
                self.next_conn = 0;
            }
            self.next_at += self.step;
        }
    }
}

/// Window bookkeeping: CPU readings at its start and end.
struct Window {
    start: Instant,
    server_cpu: Option<f64>,
    gen_cpu: f64,
}

/// Starts the measured window: CPU readings, and from now on replies
/// count (the probe thread's too).
fn window_start(
    server: Option<&sys::Server>,
    now: Instant,
    g: &mut Global,
) -> Result<Window, String> {
    g.measuring = true;
    crate::probe::WINDOW.store(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Window {
        start: now,
        server_cpu: server.map(sys::Server::cpu_s).transpose()?,
        gen_cpu: sys::self_cpu_s(),
    })
}

/// Once the load runs: a warm-up first, or the measured window at once.
fn warm_up_or_measure(
    o: &Opts,
    server: Option<&sys::Server>,
    now: Instant,
    g: &mut Global,
) -> Result<(Option<Window>, Phase), String> {
    if o.warmup.is_zero() {
        Ok((
            Some(window_start(server, now, g)?),
            Phase::Measure(now + o.duration),
        ))
    } else {
        Ok((None, Phase::Warmup(now + o.warmup)))
    }
}

pub fn run(o: &Opts) -> Result<Report, String> {
    let server = o.pid.map(sys::Server::open).transpose()?;
    let rss_before_kib = match (o.mode, &server) {
        (Mode::Idle, Some(server)) => Some(server.rss_kib()?),
        _ => None,
    };
    let mut rng = sys::Rng::new();
    let hex = |len, off| Ctr {
        len,
        off,
        decimal: false,
    };
    let (reply, ctr, request_bytes) = match o.mode {
        Mode::Echo => {
            let payload: Vec<u8> = (0..o.size).map(|i| b'a' + (i % 26) as u8).collect();
            (payload, hex(o.size.min(COUNTER_LEN), 0), o.size)
        }
        Mode::Hero if o.sio => {
            let ctr = Ctr {
                len: COUNTER_LEN,
                off: SIO_COUNTER_OFF,
                decimal: true,
            };
            (SIO_REPLY.to_vec(), ctr, SIO_REQUEST.len())
        }
        Mode::Hero => (HERO_REPLY.to_vec(), hex(0, 0), HERO_REQUEST.len()),
        Mode::Connect | Mode::Idle | Mode::Fanout => (Vec::new(), hex(0, 0), 0),
    };
    let message: &[u8] = match o.mode {
        Mode::Hero if o.sio => SIO_REQUEST,
        Mode::Hero => HERO_REQUEST,
        _ => &reply,
    };
    let (request, key_at) = ws::request_template(&o.path, &o.authority, o.origin.as_deref());
    let total = o.conns;
    let start = Instant::now();
    let mut io = Vec::with_capacity(total);
    let mut p = Vec::with_capacity(total);
    // One mask for every connection's messages: a server cannot tell, and
    // the connections can then share one copy of a large payload.
    let mut mask = [0u8; 4];
    rng.fill(&mut mask);
    let mut shared_tail: Option<Rc<[u8]>> = None;
    for i in 0..total {
        let probe = i >= o.conns;
        let window = if probe { 1 } else { o.inflight };
        let mut ping = [0u8; 4];
        rng.fill(&mut ping);
        let mut template = Vec::new();
        let mut pay_off = 0;
        let traffic = matches!(o.mode, Mode::Echo | Mode::Hero);
        if traffic {
            pay_off = ws::push_frame(OP_TEXT, message, mask, &mut template);
        }
        let vectored = o.tls.is_none() && template.len() >= VECTORED_MIN;
        let prefix_len = pay_off + ctr.off + ctr.len;
        let tail = if vectored {
            let tail = shared_tail
                .get_or_insert_with(|| Rc::from(&template[prefix_len..]))
                .clone();
            template.truncate(prefix_len);
            tail
        } else {
            Rc::from(&[][..])
        };
        io.push(Io {
            sock: None,
            tls: None,
            generation: 0,
        });
        p.push(Proto {
            state: State::Free,
            probe,
            window,
            mask,
            out: Vec::with_capacity(if traffic && !vectored {
                (template.len() * window).max(request.len())
            } else {
                request.len()
            }),
            template,
            tail,
            pay_off,
            vectored,
            staged: 0,
            prefixes: Vec::with_capacity(if vectored { prefix_len * window } else { 0 }),
            prefix_len,
            out_off: 0,
            blocked: false,
            head: Vec::new(),
            accept: [0; 28],
            ring: if traffic {
                vec![start; window]
            } else {
                Vec::new()
            },
            ring_head: 0,
            in_flight: 0,
            send_seq: 0,
            recv_seq: 0,
            answered: 0,
            rx: Rx::new(),
            started: start,
            up: false,
            reported: false,
            ping,
            pinged: false,
            ponged: false,
        });
    }
    let mut e = Engine {
        o,
        poll: Poll::new().map_err(|e| format!("epoll: {e}"))?,
        io,
        p,
        g: Global {
            mode: o.mode,
            reply,
            ctr,
            sio: o.sio,
            sending: false,
            measuring: false,
            done: None,
            count: o.count,
            hist: Hist::new(),
            probe_hist: Hist::new(),
            counted: 0,
            errors: 0,
            pongs: 0,
            paced: o.interval.is_some(),
            late: 0,
        },
        bufs: Buffers {
            net: vec![0; READ_BUF].into_boxed_slice(),
            plain: vec![0; if o.tls.is_some() { READ_BUF } else { 0 }].into_boxed_slice(),
        },
        rng,
        request,
        key_at,
        next_open: 0,
        pending: 0,
        upgraded: 0,
        failed: 0,
        lost: 0,
        retry: Vec::new(),
    };
    let deadline = start + o.timeout;
    let mut events = Events::with_capacity(1024);
    let mut window: Option<Window> = None;
    let mut end: Option<Instant> = None;
    let mut rss_after_kib = None;
    let mut pace = o.interval.map(|i| Pace::new(i, total));
    let mut phase;
    if o.mode == Mode::Connect {
        for i in 0..total {
            e.reopen(i, start);
        }
        (window, phase) = warm_up_or_measure(o, server.as_ref(), start, &mut e.g)?;
    } else {
        e.open_more(start);
        phase = Phase::Setup;
    }

    loop {
        let now = Instant::now();
        if now >= deadline {
            let what = match phase {
                Phase::Setup => format!(
                    "{} of {total} connections upgraded, {} failed",
                    e.upgraded, e.failed
                ),
                Phase::Ping => format!("{} of {} pongs", e.g.pongs, e.upgraded - e.lost),
                _ => "measuring".into(),
            };
            e.g.error(&format!(
                "timeout: the run did not finish in {:.1} s ({what})",
                o.timeout.as_secs_f64()
            ));
            end = Some(now);
            break;
        }
        match phase {
            Phase::Warmup(t) if now >= t => {
                window = Some(window_start(server.as_ref(), now, &mut e.g)?);
                phase = Phase::Measure(now + o.duration);
            }
            Phase::Measure(t) if now >= t => {
                end = Some(now);
                break;
            }
            Phase::Settle(t) if now >= t => {
                rss_after_kib = Some(server.as_ref().expect("idle has a pid").rss_kib()?);
                e.send_pings(now);
                phase = Phase::Ping;
            }
            _ => {}
        }
        match phase {
            Phase::Setup if e.pending == 0 && e.next_open == total => {
                if e.upgraded == 0 {
                    break;
                }
                if o.mode == Mode::Idle {
                    phase = Phase::Settle(now + o.settle);
                } else {
                    e.g.sending = true;
                    if let Some(pace) = &mut pace {
                        pace.next_at = now;
                    } else {
                        for i in 0..total {
                            e.kick(i, now);
                        }
                    }
                    (window, phase) = warm_up_or_measure(o, server.as_ref(), now, &mut e.g)?;
                }
            }
            Phase::Warmup(_) | Phase::Measure(_)
                if o.mode != Mode::Connect && e.upgraded == e.lost =>
            {
                end = Some(now);
                break;
            }
            Phase::Ping if e.g.pongs + e.lost >= e.upgraded => break,
            _ => {}
        }
        if !e.retry.is_empty() {
            for i in std::mem::take(&mut e.retry) {
                e.reopen(i, now);
            }
        }
        let next = match phase {
            Phase::Warmup(t) | Phase::Measure(t) | Phase::Settle(t) => t.min(deadline),
            Phase::Setup | Phase::Ping => deadline,
        };
        let mut wait = next.saturating_duration_since(now);
        if let Some(pace) = pace.as_mut().filter(|_| e.g.sending) {
            pace.send_due(&mut e, now);
            wait = wait.min(pace.next_at.saturating_duration_since(now));
        }
        if !e.retry.is_empty() {
            wait = wait.min(RETRY_PAUSE);
        }
        if let Err(err) = e.poll.poll(&mut events, Some(wait)) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("epoll_wait: {err}"));
        }
        for ev in events.iter() {
            let i = ev.token().0 & 0xffff_ffff;
            let generation = (ev.token().0 >> 32) as u32;
            if e.io[i].generation != generation || e.io[i].sock.is_none() {
                continue;
            }
            let ready = Ready {
                readable: ev.is_readable(),
                writable: ev.is_writable(),
                closed: ev.is_read_closed(),
                error: ev.is_error(),
            };
            let now = Instant::now();
            let r = drive(&mut e.io[i], &mut e.p[i], &mut e.g, &mut e.bufs, now, ready);
            e.after(i, r, now);
            if e.g.done.is_some() {
                break;
            }
        }
        if let Some(t) = e.g.done {
            end = Some(t);
            break;
        }
    }

    let (window_s, server_cpu_s, gen_cpu_s) = match (&window, end) {
        (Some(w), Some(end)) => {
            let server = match (&server, w.server_cpu) {
                (Some(server), Some(before)) => Some(server.cpu_s()? - before),
                _ => None,
            };
            (
                end.saturating_duration_since(w.start).as_secs_f64(),
                server,
                sys::self_cpu_s() - w.gen_cpu,
            )
        }
        _ => (0.0, o.pid.map(|_| 0.0), 0.0),
    };
    Ok(Report {
        window_s,
        counted: e.g.counted,
        bytes_per_round_trip: (request_bytes + e.g.reply.len()) as u64,
        hist: e.g.hist,
        probe: None,
        errors: e.g.errors,
        server_cpu_s: if o.mode == Mode::Idle {
            None
        } else {
            server_cpu_s
        },
        gen_cpu_s,
        rss_before_kib,
        rss_after_kib,
        pongs: e.g.pongs,
        late: e.g.late,
    })
}
