//! Engine.IO protocol version 4, the transport under Socket.IO, as pure
//! code: the request's query, the errors and their bodies, the packets and
//! their two encodings (one per WebSocket frame; `\x1e`-separated payloads
//! for HTTP long-polling), the open packet, and the server's heartbeat.
//!
//! ```text
//!  GET /socket.io/?EIO=4&transport=polling   ──► 0{"sid":…,"upgrades":["websocket"],…}
//!  POST …&sid=S   body 4hello\x1ebAQIDBA==  ──► ok          (text 4…, binary b<base64>)
//!  GET  …&sid=S                              ──► 2          (the server pings; 3 answers)
//!  GET  /socket.io/?EIO=4&transport=websocket&sid=S  ──► 101, 2probe ⇄ 3probe, 6 to the poll, 5
//! ```
//!
//! Nothing here reads a socket or a clock: the caller passes the bytes and
//! the time ([`Stamp`]), as for the WebSocket core.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Stamp;

/// The protocol version this module speaks (`EIO=4`).
pub const VERSION: &str = "4";
/// Separates packets in a long-polling payload.
pub const SEPARATOR: char = '\x1e';

/// A packet's type: the digit that starts a text packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// The server's first packet: the session's parameters.
    Open = b'0',
    /// Closes the session.
    Close = b'1',
    /// The server's heartbeat (and, on a probing WebSocket, the client's
    /// `2probe`).
    Ping = b'2',
    /// The answer to a ping.
    Pong = b'3',
    /// Data.
    Message = b'4',
    /// The client moves the session to the probed WebSocket.
    Upgrade = b'5',
    /// Nothing: ends a pending poll during an upgrade.
    Noop = b'6',
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            b'0' => Kind::Open,
            b'1' => Kind::Close,
            b'2' => Kind::Ping,
            b'3' => Kind::Pong,
            b'4' => Kind::Message,
            b'5' => Kind::Upgrade,
            b'6' => Kind::Noop,
            _ => return None,
        })
    }
}

/// A decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A packet of `kind` with its text (empty for most kinds).
    Text(Kind, &'a str),
    /// A binary message: a WebSocket binary frame, or `b<base64>` in a
    /// polling payload.
    Binary(Cow<'a, [u8]>),
}

/// Why a packet does not decode; the session is closed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// An empty packet.
    Empty,
    /// A first character that is no packet type.
    UnknownType,
    /// `b` followed by something that is not base64.
    BadBase64,
}

impl PacketError {
    /// The reason as logged.
    pub const fn reason(self) -> &'static str {
        match self {
            PacketError::Empty => "empty packet",
            PacketError::UnknownType => "unknown packet type",
            PacketError::BadBase64 => "bad base64 in a binary packet",
        }
    }
}

/// Decodes one text packet: a WebSocket text frame, or one packet of a
/// polling payload (where `b<base64>` is a binary message).
pub fn decode_text(text: &str) -> Result<Packet<'_>, PacketError> {
    let first = *text.as_bytes().first().ok_or(PacketError::Empty)?;
    if first == b'b' {
        let raw = STANDARD
            .decode(&text[1..])
            .map_err(|_| PacketError::BadBase64)?;
        return Ok(Packet::Binary(Cow::Owned(raw)));
    }
    let kind = Kind::from_byte(first).ok_or(PacketError::UnknownType)?;
    Ok(Packet::Text(kind, &text[1..]))
}

/// Decodes a polling payload: packets separated by `\x1e`. The first packet
/// that does not decode is the error (the session is closed for it).
pub fn decode_payload(payload: &str) -> Result<Vec<Packet<'_>>, PacketError> {
    payload.split(SEPARATOR).map(decode_text).collect()
}

/// Appends a text packet.
pub fn encode_text(out: &mut Vec<u8>, kind: Kind, data: &str) {
    out.push(kind as u8);
    out.extend_from_slice(data.as_bytes());
}

/// A packet to send over long-polling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A text packet: its type and data.
    Text(Kind, String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// Appends the packets as one polling payload: `\x1e` between packets,
/// binary messages as `b` and standard base64 with padding.
pub fn encode_payload<'p>(out: &mut Vec<u8>, packets: impl IntoIterator<Item = &'p Outgoing>) {
    for (i, p) in packets.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR as u8);
        }
        match p {
            Outgoing::Text(kind, data) => encode_text(out, *kind, data),
            Outgoing::Binary(raw) => {
                out.push(b'b');
                let mut s = String::new();
                STANDARD.encode_string(raw, &mut s);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// The session's parameters, sent in the open packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// The session id.
    pub sid: &'a str,
    /// The transports the session may move to: `["websocket"]` for a
    /// polling session, none for one that started on a WebSocket.
    pub upgrades: &'a [&'a str],
    /// Milliseconds between the server's pings.
    pub ping_interval_ms: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout_ms: u64,
    /// Largest payload the server reads.
    pub max_payload: u64,
}

/// Appends the open packet: `0{"sid","upgrades","pingInterval",
/// "pingTimeout","maxPayload"}`, keys in that order.
pub fn encode_open(out: &mut Vec<u8>, h: &Handshake<'_>) {
    let mut s = String::from("0{\"sid\":");
    json_string(&mut s, h.sid);
    s.push_str(",\"upgrades\":[");
    for (i, u) in h.upgrades.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string(&mut s, u);
    }
    let _ = write!(
        s,
        "],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
        h.ping_interval_ms, h.ping_timeout_ms, h.max_payload
    );
    out.extend_from_slice(s.as_bytes());
}

/// `value` as a JSON string.
fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The transport a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

/// An Engine.IO error answer: its code, message and HTTP status, as the
/// protocol's reference server sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EioError {
    /// `transport` missing or not `polling` / `websocket`.
    TransportUnknown = 0,
    /// A `sid` the server does not know.
    SessionIdUnknown = 1,
    /// A new session asked with another method than `GET`.
    BadHandshakeMethod = 2,
    /// Anything else malformed (e.g. `transport=websocket` without an
    /// upgrade, a `sid` on the wrong transport).
    BadRequest = 3,
    /// Refused by policy.
    Forbidden = 4,
    /// `EIO` missing or not `4`.
    UnsupportedProtocolVersion = 5,
}

impl EioError {
    /// The numeric code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The message.
    pub const fn message(self) -> &'static str {
        match self {
            EioError::TransportUnknown => "Transport unknown",
            EioError::SessionIdUnknown => "Session ID unknown",
            EioError::BadHandshakeMethod => "Bad handshake method",
            EioError::BadRequest => "Bad request",
            EioError::Forbidden => "Forbidden",
            EioError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status: `403` for [`EioError::Forbidden`], else `400`.
    pub const fn status(self) -> u16 {
        match self {
            EioError::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON body: `{"code":0,"message":"Transport unknown"}`.
    pub fn body(self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"code\":{},\"message\":\"{}\"}}",
            self.code(),
            self.message()
        );
        s
    }
}

/// What a request to the Engine.IO path asks for, once its query is
/// checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// A new session on this transport.
    Handshake(Transport),
    /// A request of the session `sid` (the caller looks it up: unknown is
    /// [`EioError::SessionIdUnknown`]).
    Session {
        /// The session id.
        sid: &'a str,
        /// The transport the request is on.
        transport: Transport,
    },
}

/// Checks the query of a request to the Engine.IO path, in the reference
/// server's order: `transport` (code 0), then with a `sid` the session's
/// request, without one the method (`GET`, code 2) and a WebSocket
/// transport only on an upgrade (code 3); `EIO=4` on every request (code
/// 5; the reference checks it on the handshake only). Parameters may come
/// in any order; unknown ones (`t`, the cache buster) are ignored; the
/// last of a repeated one counts.
pub fn route<'q>(query: &'q str, method: &str, is_upgrade: bool) -> Result<Route<'q>, EioError> {
    let mut eio = None;
    let mut transport = None;
    let mut sid = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "EIO" => eio = Some(value),
            "transport" => transport = Some(value),
            "sid" => sid = Some(value).filter(|s| !s.is_empty()),
            _ => {}
        }
    }
    let transport = match transport {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return Err(EioError::TransportUnknown),
    };
    if let Some(sid) = sid {
        if eio != Some(VERSION) {
            return Err(EioError::UnsupportedProtocolVersion);
        }
        if transport == Transport::WebSocket && !is_upgrade {
            return Err(EioError::BadRequest);
        }
        return Ok(Route::Session { sid, transport });
    }
    if method != "GET" {
        return Err(EioError::BadHandshakeMethod);
    }
    if transport == Transport::WebSocket && !is_upgrade {
        return Err(EioError::BadRequest);
    }
    if eio != Some(VERSION) {
        return Err(EioError::UnsupportedProtocolVersion);
    }
    Ok(Route::Handshake(transport))
}

/// The server's heartbeat: a ping every `interval`, and the session is
/// over when a pong does not follow within `timeout`. Only the server
/// pings in version 4; a ping from the client ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    interval_ms: u64,
    timeout_ms: u64,
    /// When the next ping is due, or (while one is out) when the pong is.
    due: Stamp,
    awaiting_pong: bool,
}

/// What the heartbeat wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// Nothing until [`Heartbeat::next`].
    Wait,
    /// Send a ping (`2`) now.
    Ping,
    /// No pong in time: close the session.
    TimedOut,
}

impl Heartbeat {
    /// A heartbeat whose first ping is due `interval_ms` after `now` (the
    /// open packet).
    pub fn new(now: Stamp, interval_ms: u64, timeout_ms: u64) -> Heartbeat {
        Heartbeat {
            interval_ms,
            timeout_ms,
            due: now.plus_millis(interval_ms),
            awaiting_pong: false,
        }
    }

    /// When [`Heartbeat::poll`] has something to do next.
    pub fn next(&self) -> Stamp {
        self.due
    }

    /// What is due at `now`. After [`Beat::Ping`] the pong is awaited for
    /// the timeout.
    pub fn poll(&mut self, now: Stamp) -> Beat {
        if now < self.due {
            return Beat::Wait;
        }
        if self.awaiting_pong {
            return Beat::TimedOut;
        }
        self.awaiting_pong = true;
        self.due = now.plus_millis(self.timeout_ms);
        Beat::Ping
    }

    /// A pong came: the next ping is due an interval from now. A pong
    /// nobody asked for changes nothing.
    pub fn on_pong(&mut self, now: Stamp) {
        if self.awaiting_pong {
            self.awaiting_pong = false;
            self.due = now.plus_millis(self.interval_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn text_packets_decode_by_their_first_character() {
        assert_eq!(
            decode_text("4hello"),
            Ok(Packet::Text(Kind::Message, "hello"))
        );
        assert_eq!(decode_text("2probe"), Ok(Packet::Text(Kind::Ping, "probe")));
        assert_eq!(decode_text("3"), Ok(Packet::Text(Kind::Pong, "")));
        assert_eq!(decode_text("6"), Ok(Packet::Text(Kind::Noop, "")));
        assert_eq!(
            decode_text("bAQIDBA=="),
            Ok(Packet::Binary(Cow::Owned(vec![1, 2, 3, 4])))
        );
        assert_eq!(decode_text(""), Err(PacketError::Empty));
        assert_eq!(decode_text("abc"), Err(PacketError::UnknownType));
        assert_eq!(decode_text("7x"), Err(PacketError::UnknownType));
        assert_eq!(decode_text(" 4x"), Err(PacketError::UnknownType));
        assert_eq!(decode_text("b!!"), Err(PacketError::BadBase64));
    }

    #[test]
    fn payloads_split_on_the_record_separator() {
        assert_eq!(
            decode_payload("4test1\x1e4test2\x1e4test3"),
            Ok(vec![
                Packet::Text(Kind::Message, "test1"),
                Packet::Text(Kind::Message, "test2"),
                Packet::Text(Kind::Message, "test3"),
            ])
        );
        assert_eq!(
            decode_payload("4hello\x1ebAQIDBA=="),
            Ok(vec![
                Packet::Text(Kind::Message, "hello"),
                Packet::Binary(Cow::Owned(vec![1, 2, 3, 4])),
            ])
        );
        assert_eq!(decode_payload("4a\x1eabc"), Err(PacketError::UnknownType));
        assert_eq!(decode_payload("4a\x1e"), Err(PacketError::Empty));
        let mut out = Vec::new();
        encode_payload(
            &mut out,
            &[
                Outgoing::Text(Kind::Message, "hello".into()),
                Outgoing::Binary(vec![1, 2, 3, 4]),
                Outgoing::Text(Kind::Ping, String::new()),
            ],
        );
        assert_eq!(out, b"4hello\x1ebAQIDBA==\x1e2");
    }

    #[test]
    fn the_open_packet_has_the_keys_in_order() {
        let mut out = Vec::new();
        encode_open(
            &mut out,
            &Handshake {
                sid: "lv_VI97HAXpY6yYWAAAC",
                upgrades: &["websocket"],
                ping_interval_ms: 25000,
                ping_timeout_ms: 20000,
                max_payload: 1_000_000,
            },
        );
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let mut out = Vec::new();
        encode_open(
            &mut out,
            &Handshake {
                sid: "a\"b\\c\n",
                upgrades: &[],
                ping_interval_ms: 300,
                ping_timeout_ms: 200,
                max_payload: 5,
            },
        );
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            r#"0{"sid":"a\"b\\c\u000a","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":5}"#
        );
    }

    #[test]
    fn errors_have_the_reference_bodies() {
        let all = [
            (
                EioError::TransportUnknown,
                r#"{"code":0,"message":"Transport unknown"}"#,
            ),
            (
                EioError::SessionIdUnknown,
                r#"{"code":1,"message":"Session ID unknown"}"#,
            ),
            (
                EioError::BadHandshakeMethod,
                r#"{"code":2,"message":"Bad handshake method"}"#,
            ),
            (
                EioError::BadRequest,
                r#"{"code":3,"message":"Bad request"}"#,
            ),
            (EioError::Forbidden, r#"{"code":4,"message":"Forbidden"}"#),
            (
                EioError::UnsupportedProtocolVersion,
                r#"{"code":5,"message":"Unsupported protocol version"}"#,
            ),
        ];
        for (e, body) in all {
            assert_eq!(e.body(), body);
            assert_eq!(e.status(), if e == EioError::Forbidden { 403 } else { 400 });
        }
    }

    #[test]
    fn the_query_is_checked_in_the_reference_order() {
        use EioError::*;
        let r = |q, m, up| route(q, m, up);
        assert_eq!(
            r("EIO=4&transport=polling", "GET", false),
            Ok(Route::Handshake(Transport::Polling))
        );
        assert_eq!(
            r("t=Nx1&transport=websocket&EIO=4&x", "GET", true),
            Ok(Route::Handshake(Transport::WebSocket))
        );
        assert_eq!(
            r("EIO=4&transport=polling&sid=abc", "POST", false),
            Ok(Route::Session {
                sid: "abc",
                transport: Transport::Polling
            })
        );
        assert_eq!(r("EIO=4", "GET", false), Err(TransportUnknown));
        assert_eq!(
            r("EIO=4&transport=abc", "GET", false),
            Err(TransportUnknown)
        );
        assert_eq!(
            r("transport=polling", "GET", false),
            Err(UnsupportedProtocolVersion)
        );
        assert_eq!(
            r("EIO=abc&transport=polling", "GET", false),
            Err(UnsupportedProtocolVersion)
        );
        assert_eq!(
            r("EIO=3&transport=polling", "GET", false),
            Err(UnsupportedProtocolVersion)
        );
        assert_eq!(
            r("EIO=4&transport=polling", "POST", false),
            Err(BadHandshakeMethod)
        );
        assert_eq!(
            r("EIO=4&transport=polling", "PUT", false),
            Err(BadHandshakeMethod)
        );
        assert_eq!(
            r("EIO=4&transport=websocket", "GET", false),
            Err(BadRequest)
        );
        assert_eq!(
            r("EIO=4&transport=websocket&sid=a", "GET", false),
            Err(BadRequest)
        );
        assert_eq!(
            r("EIO=4&transport=polling&sid=", "GET", false),
            Ok(Route::Handshake(Transport::Polling))
        );
        assert_eq!(r("", "GET", false), Err(TransportUnknown));
    }

    #[test]
    fn the_heartbeat_pings_and_times_out() {
        let t0 = Stamp::from_millis(1000);
        let mut h = Heartbeat::new(t0, 300, 200);
        assert_eq!(h.poll(t0.plus_millis(299)), Beat::Wait);
        assert_eq!(h.next(), t0.plus_millis(300));
        assert_eq!(h.poll(t0.plus_millis(300)), Beat::Ping);
        assert_eq!(h.next(), t0.plus_millis(500));
        h.on_pong(t0.plus_millis(350));
        assert_eq!(h.next(), t0.plus_millis(650));
        h.on_pong(t0.plus_millis(400)); // unasked: no change
        assert_eq!(h.next(), t0.plus_millis(650));
        assert_eq!(h.poll(t0.plus_millis(650)), Beat::Ping);
        assert_eq!(h.poll(t0.plus_millis(849)), Beat::Wait);
        assert_eq!(h.poll(t0.plus_millis(850)), Beat::TimedOut);
    }
}
