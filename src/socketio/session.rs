//! One Socket.IO session over one Engine.IO session, as pure code: the
//! packets that arrive (text, or binary attachments), the time, and the
//! application's decisions in; the packets to send, the events for the
//! application and the reason of a close out. The transports (WebSocket
//! frames, long-polling requests) are the caller's.
//!
//! What it enforces (issue 17, SPEC.md): the server's heartbeat (a client
//! that does not answer a ping within `ping_timeout` is closed, and a ping
//! from the client is a protocol error in version 4); a CONNECT first, and
//! within `connect_timeout`; packets only for joined namespaces; binary
//! attachments in order, as many as announced, and their total within
//! `max_payload`; every malformed packet closes the session with its reason.

use std::borrow::Cow;
use std::collections::VecDeque;

use serde_json::Value;
use serde_json::value::RawValue;

use super::packet::{self, Kind, Malformed};
use crate::proto::Stamp;
use crate::proto::engineio::{self, Beat, Heartbeat, Packet as EioPacket};

/// The settings of a session (`socketio.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Milliseconds between the server's pings.
    pub ping_interval_ms: u64,
    /// Milliseconds to wait for a pong.
    pub ping_timeout_ms: u64,
    /// Milliseconds to wait for the first CONNECT.
    pub connect_timeout_ms: u64,
    /// Largest Engine.IO packet, and largest total of one packet's
    /// attachments.
    pub max_payload: u64,
    /// Most attachments of one packet.
    pub max_attachments: usize,
}

/// The arguments of an event or an ack, each as the JSON text the client
/// sent: borrowed from its packet, or owned (a binary packet, complete only
/// once its attachments came).
#[derive(Clone, Debug)]
pub enum Args<'a> {
    /// Slices of the packet.
    Sent(Vec<&'a RawValue>),
    /// Kept since the packet arrived.
    Owned(Vec<Box<RawValue>>),
}

impl Args<'_> {
    /// How many arguments.
    pub fn len(&self) -> usize {
        match self {
            Args::Sent(v) => v.len(),
            Args::Owned(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with the arguments as a slice.
    pub fn with<R>(&self, f: impl FnOnce(&[&RawValue]) -> R) -> R {
        match self {
            Args::Sent(v) => f(v),
            Args::Owned(v) => {
                let refs: Vec<&RawValue> = v.iter().map(|b| &**b).collect();
                f(&refs)
            }
        }
    }

    /// The arguments as values.
    pub fn values(&self) -> Vec<Value> {
        self.with(|a| {
            a.iter()
                .filter_map(|r| serde_json::from_str(r.get()).ok())
                .collect()
        })
    }
}

impl PartialEq for Args<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.with(|a| other.with(|b| a.iter().map(|r| r.get()).eq(b.iter().map(|r| r.get()))))
    }
}

/// What the application hears (borrowing from the packet it came in).
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    /// A client asks to join `nsp`, with its `auth` payload (`{}` when it
    /// sent none): answer with [`Session::accept`] or [`Session::refuse`].
    Connect {
        /// The namespace.
        nsp: Cow<'a, str>,
        /// The CONNECT payload.
        auth: Value,
    },
    /// An event: its name and arguments, binary attachments in order of
    /// their placeholders, and the ack id when the client wants an answer.
    Event {
        /// The namespace.
        nsp: Cow<'a, str>,
        /// The event name.
        name: Cow<'a, str>,
        /// The arguments after the name.
        args: Args<'a>,
        /// The binary attachments.
        binary: Vec<Vec<u8>>,
        /// The ack id to answer with [`Session::ack`].
        ack: Option<u64>,
    },
    /// The answer to an event the server sent with an ack id.
    Ack {
        /// The namespace.
        nsp: Cow<'a, str>,
        /// The ack id.
        id: u64,
        /// The arguments.
        args: Args<'a>,
        /// The binary attachments.
        binary: Vec<Vec<u8>>,
    },
    /// The client left `nsp`.
    Disconnect {
        /// The namespace.
        nsp: Cow<'a, str>,
    },
    /// A message of an Engine.IO session without Socket.IO
    /// ([`Session::engine_only`]): text.
    Message(Cow<'a, str>),
    /// A binary message of such a session.
    BinaryMessage(Vec<u8>),
}

/// Values as JSON texts, for the one encoder of events and acks.
fn raw_values(values: &[Value]) -> Vec<Box<RawValue>> {
    values
        .iter()
        .map(|v| serde_json::value::to_raw_value(v).expect("a value serializes"))
        .collect()
}

/// A packet for the transport: a text packet (with its Engine.IO type
/// digit) or a binary message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// A whole Engine.IO text packet, e.g. `42["name",…]`.
    Text(String),
    /// A binary message (an attachment).
    Binary(Vec<u8>),
}

impl Out {
    /// Its bytes.
    pub fn bytes(&self) -> usize {
        match self {
            Out::Text(t) => t.len(),
            Out::Binary(b) => b.len(),
        }
    }
}

/// Why the session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// A malformed Socket.IO packet.
    Malformed(Malformed),
    /// A malformed Engine.IO packet.
    Transport(&'static str),
    /// No pong within the ping timeout.
    PingTimeout,
    /// No CONNECT within the connect timeout.
    ConnectTimeout,
    /// The client closed it (`1`).
    ClientClosed,
    /// A packet that breaks the protocol's order (the reason).
    Protocol(&'static str),
    /// Attachments over `max_payload`.
    TooLarge,
    /// The server ended it (the reason: a transport error, a log-out, the
    /// application).
    Server(&'static str),
}

impl Ended {
    /// The reason as logged.
    pub fn reason(self) -> &'static str {
        match self {
            Ended::Malformed(m) => m.reason(),
            Ended::Transport(r) | Ended::Protocol(r) | Ended::Server(r) => r,
            Ended::PingTimeout => "ping timeout",
            Ended::ConnectTimeout => "no CONNECT in time",
            Ended::ClientClosed => "closed by the client",
            Ended::TooLarge => "attachments over maxPayload",
        }
    }
}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
struct Partial {
    kind: Kind,
    nsp: String,
    ack: Option<u64>,
    /// The array's elements (an event's name first).
    items: Vec<Box<RawValue>>,
    need: usize,
    got: Vec<Vec<u8>>,
    bytes: u64,
}

/// One session.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    heartbeat: Heartbeat,
    /// Until the first namespace is joined: when the session gives up.
    connect_by: Option<Stamp>,
    joined: Vec<String>,
    partial: Option<Partial>,
    out: VecDeque<Out>,
    /// Bytes in `out`.
    out_bytes: usize,
    ended: Option<Ended>,
    next_ack: u64,
    /// Engine.IO alone: messages are not Socket.IO packets.
    engine_only: bool,
    /// Packets past the first `ready` of `out` wait until `until` (see
    /// [`Session::hold`]).
    hold: Option<Hold>,
}

#[derive(Clone, Copy, Debug)]
struct Hold {
    until: Stamp,
    ready: usize,
}

impl Session {
    /// A session opened at `now`; its open packet (`sid`, `upgrades`) is
    /// the first packet out.
    pub fn new(now: Stamp, settings: Settings, sid: &str, upgrades: &[&str]) -> Session {
        let mut open = Vec::new();
        engineio::encode_open(
            &mut open,
            &engineio::Handshake {
                sid,
                upgrades,
                ping_interval_ms: settings.ping_interval_ms,
                ping_timeout_ms: settings.ping_timeout_ms,
                max_payload: settings.max_payload,
            },
        );
        let open = String::from_utf8(open).expect("the open packet is text");
        Session {
            settings,
            heartbeat: Heartbeat::new(now, settings.ping_interval_ms, settings.ping_timeout_ms),
            connect_by: Some(now.plus_millis(settings.connect_timeout_ms)),
            joined: Vec::new(),
            partial: None,
            out_bytes: open.len(),
            out: VecDeque::from([Out::Text(open)]),
            ended: None,
            next_ack: 0,
            engine_only: false,
            hold: None,
        }
    }

    /// An Engine.IO session without the Socket.IO layer (the conformance
    /// echo at `/engine.io/`): its messages arrive as [`Event::Message`]
    /// and [`Event::BinaryMessage`], and there is no CONNECT to wait for.
    pub fn engine_only(now: Stamp, settings: Settings, sid: &str, upgrades: &[&str]) -> Session {
        let mut s = Session::new(now, settings, sid, upgrades);
        s.engine_only = true;
        s.connect_by = None;
        s
    }

    /// Sends an Engine.IO message: `4<text>`, or a binary message.
    pub fn message(&mut self, text: Option<&str>, binary: Option<&[u8]>) {
        if let Some(t) = text {
            self.queue(Out::Text(format!("4{t}")));
        }
        if let Some(b) = binary {
            self.queue(Out::Binary(b.to_vec()));
        }
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// The packets to send, in order.
    pub fn take_output(&mut self) -> impl Iterator<Item = Out> + '_ {
        let n = self.releasable();
        if n == self.out.len() {
            self.out_bytes = 0;
        } else {
            let taken: usize = self.out.iter().take(n).map(Out::bytes).sum();
            self.out_bytes -= taken;
        }
        if let Some(h) = &mut self.hold {
            h.ready = 0;
        }
        self.out.drain(..n)
    }

    /// Whether packets are held (see [`Session::hold`]): its deadline may
    /// have moved earlier.
    pub fn holding(&self) -> bool {
        self.hold.is_some()
    }

    /// How many of the queued packets may go now.
    fn releasable(&self) -> usize {
        self.hold
            .map_or(self.out.len(), |h| h.ready.min(self.out.len()))
    }

    /// Packets queued from now on wait until `until`; those queued so far
    /// may go at once. The WebSocket transport holds what follows a
    /// CONNECT reply for a moment, so that the reply and the packets the
    /// handler sends on joining (the test suite's `auth`, the hero's
    /// `user_authorized`) reach the client in two reads: a client that
    /// takes one message per listener and adds the next listener after
    /// the first fired (Node `ws` before 8.17 delivers every message of a
    /// read at once, before that) would miss the second otherwise.
    pub fn hold(&mut self, until: Stamp) {
        self.hold = Some(Hold {
            until,
            ready: self.out.len(),
        });
    }

    /// Bytes of the packets waiting to be sent.
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    fn queue(&mut self, packet: Out) {
        self.out_bytes += packet.bytes();
        self.out.push_back(packet);
    }

    /// Whether packets wait to be sent.
    pub fn has_output(&self) -> bool {
        self.releasable() > 0
    }

    /// When [`Session::poll`] has something to do.
    pub fn next_deadline(&self) -> Stamp {
        let beat = self.heartbeat.next();
        let at = self.connect_by.map_or(beat, |c| c.min(beat));
        self.hold.map_or(at, |h| h.until.min(at))
    }

    /// Runs the timers at `now`: a ping to send, or the end of a session
    /// whose client stopped answering or never joined a namespace.
    pub fn poll(&mut self, now: Stamp) {
        if self.hold.is_some_and(|h| now >= h.until) {
            self.hold = None;
        }
        if self.ended.is_some() {
            return;
        }
        if self.connect_by.is_some_and(|c| now >= c) {
            self.end(Ended::ConnectTimeout);
            return;
        }
        match self.heartbeat.poll(now) {
            Beat::Wait => {}
            Beat::Ping => self.queue(Out::Text("2".into())),
            Beat::TimedOut => {
                self.end(Ended::PingTimeout);
            }
        }
    }

    /// One Engine.IO text packet from the client (a WebSocket text frame,
    /// or one packet of a polling payload).
    pub fn handle_text<'a>(&mut self, now: Stamp, text: &'a str) -> Option<Event<'a>> {
        if self.ended.is_some() {
            return None;
        }
        match engineio::decode_text(text) {
            Ok(EioPacket::Text(kind, data)) => self.engine_packet(now, kind, data),
            Ok(EioPacket::Binary(raw)) if self.engine_only => {
                Some(Event::BinaryMessage(raw.into_owned()))
            }
            Ok(EioPacket::Binary(raw)) => self.attachment(&raw),
            Err(e) => self.end(Ended::Transport(e.reason())),
        }
    }

    /// One binary message from the client (a WebSocket binary frame).
    pub fn handle_binary(&mut self, raw: &[u8]) -> Option<Event<'static>> {
        if self.ended.is_some() {
            return None;
        }
        if self.engine_only {
            return Some(Event::BinaryMessage(raw.to_vec()));
        }
        self.attachment(raw)
    }

    fn engine_packet<'a>(
        &mut self,
        now: Stamp,
        kind: engineio::Kind,
        data: &'a str,
    ) -> Option<Event<'a>> {
        use engineio::Kind as K;
        match kind {
            K::Pong => {
                self.heartbeat.on_pong(now);
                None
            }
            K::Message if self.engine_only => Some(Event::Message(Cow::Borrowed(data))),
            K::Message => self.socket_packet(data),
            K::Close => self.end(Ended::ClientClosed),
            K::Ping => self.end(Ended::Protocol("ping from the client")),
            K::Open | K::Upgrade | K::Noop => None,
        }
    }

    fn socket_packet<'a>(&mut self, text: &'a str) -> Option<Event<'a>> {
        if self.partial.is_some() {
            return self.end(Ended::Protocol("a packet before the attachments"));
        }
        let p = match packet::decode(text, self.settings.max_attachments) {
            Ok(p) => p,
            Err(m) => return self.end(Ended::Malformed(m)),
        };
        let joined = self.joined.iter().any(|n| n == p.nsp);
        if self.joined.is_empty() && p.kind != Kind::Connect {
            return self.end(Ended::Protocol("a packet before CONNECT"));
        }
        let nsp = Cow::Borrowed(p.nsp);
        match p.kind {
            Kind::Connect if joined => self.end(Ended::Protocol("a second CONNECT")),
            Kind::Connect => Some(Event::Connect {
                nsp,
                auth: p
                    .value()
                    .unwrap_or_else(|| Value::Object(Default::default())),
            }),
            _ if !joined => self.end(Ended::Protocol("a packet for a namespace not joined")),
            Kind::Disconnect => {
                self.joined.retain(|n| n != p.nsp);
                Some(Event::Disconnect { nsp })
            }
            Kind::Event | Kind::BinaryEvent | Kind::Ack | Kind::BinaryAck if p.attachments > 0 => {
                let items = p
                    .items
                    .iter()
                    .map(|r| (*r).to_owned())
                    .collect::<Vec<Box<RawValue>>>();
                self.partial = Some(Partial {
                    kind: p.kind,
                    nsp: p.nsp.to_owned(),
                    ack: p.ack,
                    items,
                    need: p.attachments,
                    got: Vec::new(),
                    bytes: 0,
                });
                None
            }
            Kind::Event | Kind::BinaryEvent => {
                let Some(name) = p.name() else {
                    return self.end(Ended::Malformed(Malformed::Payload));
                };
                let mut items = p.items;
                items.remove(0);
                Some(Event::Event {
                    nsp,
                    name,
                    args: Args::Sent(items),
                    binary: Vec::new(),
                    ack: p.ack,
                })
            }
            Kind::Ack | Kind::BinaryAck => {
                let Some(id) = p.ack else {
                    return self.end(Ended::Malformed(Malformed::AckId));
                };
                Some(Event::Ack {
                    nsp,
                    id,
                    args: Args::Sent(p.items),
                    binary: Vec::new(),
                })
            }
            Kind::ConnectError => self.end(Ended::Malformed(Malformed::ServerOnly)),
        }
    }

    fn attachment(&mut self, raw: &[u8]) -> Option<Event<'static>> {
        let Some(partial) = self.partial.as_mut() else {
            return self.end(Ended::Protocol("binary data without a binary packet"));
        };
        partial.bytes += raw.len() as u64;
        if partial.bytes > self.settings.max_payload {
            return self.end(Ended::TooLarge);
        }
        partial.got.push(raw.to_vec());
        if partial.got.len() < partial.need {
            return None;
        }
        let partial = self.partial.take().expect("checked above");
        self.complete(partial)
    }

    fn complete(&mut self, p: Partial) -> Option<Event<'static>> {
        let mut items = p.items;
        match p.kind {
            Kind::Event | Kind::BinaryEvent => {
                let name = match items.first().map(|r| r.get()) {
                    Some(t) if t.starts_with('"') => serde_json::from_str::<String>(t).ok(),
                    Some(t) if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                        Some(t.to_owned())
                    }
                    _ => None,
                };
                let Some(name) = name else {
                    return self.end(Ended::Malformed(Malformed::Payload));
                };
                items.remove(0);
                Some(Event::Event {
                    nsp: Cow::Owned(p.nsp),
                    name: Cow::Owned(name),
                    args: Args::Owned(items),
                    binary: p.got,
                    ack: p.ack,
                })
            }
            _ => {
                let Some(id) = p.ack else {
                    return self.end(Ended::Malformed(Malformed::AckId));
                };
                Some(Event::Ack {
                    nsp: Cow::Owned(p.nsp),
                    id,
                    args: Args::Owned(items),
                    binary: p.got,
                })
            }
        }
    }

    fn end<'a>(&mut self, why: Ended) -> Option<Event<'a>> {
        if self.ended.is_none() {
            self.ended = Some(why);
            self.partial = None;
        }
        None
    }

    /// Admits the client to `nsp` (after [`Event::Connect`]): `40{"sid"}`.
    pub fn accept(&mut self, nsp: &str, sid: &str) {
        if !self.joined.iter().any(|n| n == nsp) {
            self.joined.push(nsp.to_owned());
        }
        self.connect_by = None;
        let data = serde_json::json!({ "sid": sid });
        self.send(Kind::Connect, nsp, None, Some(&data));
    }

    /// Refuses the client's CONNECT to `nsp`: `44{"message","data"}` (the
    /// client's `connect_error`).
    pub fn refuse(&mut self, nsp: &str, message: &str, data: Option<Value>) {
        let mut body = serde_json::json!({ "message": message });
        if let Some(d) = data {
            body["data"] = d;
        }
        self.send(Kind::ConnectError, nsp, None, Some(&body));
    }

    /// Sends an event; with `want_ack` the client is asked for an answer,
    /// whose id is returned (it comes back as [`Event::Ack`]).
    pub fn emit(&mut self, nsp: &str, name: &str, args: &[Value], want_ack: bool) -> Option<u64> {
        let raw = raw_values(args);
        let args: Vec<&RawValue> = raw.iter().map(|b| &**b).collect();
        if want_ack {
            Some(self.emit_raw_with_ack(nsp, name, &args, &[]))
        } else {
            self.emit_raw(nsp, name, &args, &[]);
            None
        }
    }

    /// Sends an event whose one argument is binary: `451-[name,
    /// {"_placeholder":true,"num":0}]`, then the data.
    pub fn emit_binary(&mut self, nsp: &str, name: &str, data: &[u8]) {
        let placeholder = serde_json::json!({"_placeholder": true, "num": 0});
        self.emit_with(nsp, name, &[placeholder], &[data]);
    }

    /// Sends an event whose args name `binary` attachments by their
    /// placeholders (`{"_placeholder":true,"num":N}`): a BINARY_EVENT, then
    /// the attachments; without attachments, as [`Session::emit`].
    pub fn emit_with(&mut self, nsp: &str, name: &str, args: &[Value], binary: &[&[u8]]) {
        let raw = raw_values(args);
        let args: Vec<&RawValue> = raw.iter().map(|b| &**b).collect();
        self.emit_raw(nsp, name, &args, binary);
    }

    /// Answers the ack `id` with args that may name `binary` attachments
    /// (a BINARY_ACK then).
    pub fn ack_with(&mut self, nsp: &str, id: u64, args: &[Value], binary: &[&[u8]]) {
        let raw = raw_values(args);
        let args: Vec<&RawValue> = raw.iter().map(|b| &**b).collect();
        self.ack_raw(nsp, id, &args, binary);
    }

    /// Sends an event whose arguments are JSON texts (as received, or
    /// serialized once by the application); `binary` as with
    /// [`Session::emit_with`].
    pub fn emit_raw(&mut self, nsp: &str, name: &str, args: &[&RawValue], binary: &[&[u8]]) {
        self.emit_raw_as(nsp, name, args, binary, None);
    }

    /// [`Session::emit_raw`] asking the client for an ack: its id, which
    /// comes back in [`Event::Ack`].
    pub fn emit_raw_with_ack(
        &mut self,
        nsp: &str,
        name: &str,
        args: &[&RawValue],
        binary: &[&[u8]],
    ) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        self.emit_raw_as(nsp, name, args, binary, Some(id));
        id
    }

    fn emit_raw_as(
        &mut self,
        nsp: &str,
        name: &str,
        args: &[&RawValue],
        binary: &[&[u8]],
        ack: Option<u64>,
    ) {
        let kind = if binary.is_empty() {
            Kind::Event
        } else {
            Kind::BinaryEvent
        };
        let size =
            28 + nsp.len() + name.len() + args.iter().map(|a| a.get().len() + 1).sum::<usize>();
        let mut text = String::with_capacity(size);
        text.push('4');
        packet::encode_raw(&mut text, kind, binary.len(), nsp, ack, Some(name), args);
        self.push_packet(text, binary);
    }

    /// Answers the ack `id` with arguments that are JSON texts.
    pub fn ack_raw(&mut self, nsp: &str, id: u64, args: &[&RawValue], binary: &[&[u8]]) {
        let kind = if binary.is_empty() {
            Kind::Ack
        } else {
            Kind::BinaryAck
        };
        let size = 24 + nsp.len() + args.iter().map(|a| a.get().len() + 1).sum::<usize>();
        let mut text = String::with_capacity(size);
        text.push('4');
        packet::encode_raw(&mut text, kind, binary.len(), nsp, Some(id), None, args);
        self.push_packet(text, binary);
    }

    fn push_packet(&mut self, text: String, binary: &[&[u8]]) {
        self.queue(Out::Text(text));
        for b in binary {
            self.queue(Out::Binary(b.to_vec()));
        }
    }

    /// Answers the event whose ack id is `id`.
    pub fn ack(&mut self, nsp: &str, id: u64, args: &[Value]) {
        self.ack_with(nsp, id, args, &[]);
    }

    /// Ends the session from the server's side for `reason` (the
    /// transport says goodbye: a close frame, or `1` to a pending poll).
    pub fn end_by_server(&mut self, reason: &'static str) {
        self.end(Ended::Server(reason));
    }

    /// Queues a `6` (noop): it answers a pending poll while the client
    /// moves to a WebSocket.
    pub fn noop(&mut self) {
        self.queue(Out::Text("6".into()));
    }

    /// Whether the client joined a namespace.
    pub fn is_joined(&self) -> bool {
        !self.joined.is_empty()
    }

    /// Leaves `nsp` from the server's side: `41`.
    pub fn disconnect(&mut self, nsp: &str) {
        self.joined.retain(|n| n != nsp);
        self.send(Kind::Disconnect, nsp, None, None);
    }

    fn send(&mut self, kind: Kind, nsp: &str, ack: Option<u64>, data: Option<&Value>) {
        let mut text = String::from("4");
        packet::encode(&mut text, kind, 0, nsp, ack, data);
        self.queue(Out::Text(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SETTINGS: Settings = Settings {
        ping_interval_ms: 300,
        ping_timeout_ms: 200,
        connect_timeout_ms: 1000,
        max_payload: 1_000_000,
        max_attachments: 10,
    };

    fn t(ms: u64) -> Stamp {
        Stamp::from_millis(ms)
    }

    fn raw(values: &[Value]) -> Args<'static> {
        Args::Owned(
            values
                .iter()
                .map(|v| serde_json::value::to_raw_value(v).unwrap())
                .collect(),
        )
    }

    fn texts(s: &mut Session) -> Vec<String> {
        s.take_output()
            .map(|o| match o {
                Out::Text(t) => t,
                Out::Binary(b) => format!("<{b:?}>"),
            })
            .collect()
    }

    #[test]
    fn binary_events_and_acks_from_the_server_carry_their_attachments() {
        let mut s = Session::new(t(0), SETTINGS, "sid", &[]);
        let _ = texts(&mut s);
        let ph = json!({"_placeholder": true, "num": 0});
        s.emit_with("/", "data", std::slice::from_ref(&ph), &[&[1, 2]]);
        s.ack_with("/custom", 3, &[ph], &[&[3]]);
        s.emit_with("/", "plain", &[json!(1)], &[]);
        assert_eq!(
            texts(&mut s),
            [
                r#"451-["data",{"_placeholder":true,"num":0}]"#,
                "<[1, 2]>",
                r#"461-/custom,3[{"_placeholder":true,"num":0}]"#,
                "<[3]>",
                r#"42["plain",1]"#,
            ]
        );
    }

    #[test]
    fn an_engine_only_session_hands_over_messages_without_a_connect() {
        let mut s = Session::engine_only(t(0), SETTINGS, "sid", &["websocket"]);
        let _ = texts(&mut s);
        assert_eq!(
            s.handle_text(t(1), "4hello"),
            Some(Event::Message("hello".into()))
        );
        assert_eq!(
            s.handle_text(t(1), "bAQI="),
            Some(Event::BinaryMessage(vec![1, 2]))
        );
        assert_eq!(s.handle_binary(&[3]), Some(Event::BinaryMessage(vec![3])));
        s.message(Some("x"), Some(&[7]));
        // No connect timeout (1000 ms): only the heartbeat.
        s.poll(t(300));
        s.handle_text(t(301), "3");
        s.poll(t(1_100));
        assert_eq!(s.ended(), None);
        assert_eq!(texts(&mut s), ["4x", "<[7]>", "2", "2"]);
    }

    /// A session that joined `/` (its output drained).
    fn joined() -> Session {
        let mut s = Session::new(t(0), SETTINGS, "SID", &[]);
        assert!(matches!(
            s.handle_text(t(1), "40"),
            Some(Event::Connect { .. })
        ));
        s.accept("/", "S1");
        texts(&mut s);
        s
    }

    #[test]
    fn packets_after_a_connect_reply_wait_for_the_hold() {
        let mut s = Session::new(t(0), SETTINGS, "SID", &[]);
        texts(&mut s);
        s.handle_text(t(1), "40");
        s.accept("/", "S1");
        s.hold(t(2));
        s.emit("/", "auth", &[json!({})], false);
        assert!(s.holding());
        assert_eq!(s.next_deadline(), t(2));
        assert_eq!(texts(&mut s), [r#"40{"sid":"S1"}"#]);
        assert!(!s.has_output());
        assert_eq!(s.queued_bytes(), r#"42["auth",{}]"#.len());
        s.poll(t(1));
        assert!(texts(&mut s).is_empty());
        s.poll(t(2));
        assert!(!s.holding());
        assert_eq!(texts(&mut s), [r#"42["auth",{}]"#]);
        assert_eq!(s.queued_bytes(), 0);
    }

    #[test]
    fn open_then_connect_with_auth() {
        let mut s = Session::new(t(0), SETTINGS, "SID", &[]);
        assert_eq!(
            texts(&mut s),
            [
                r#"0{"sid":"SID","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
            ]
        );
        let ev = s.handle_text(t(5), r#"40{"token":"123"}"#);
        assert_eq!(
            ev,
            Some(Event::Connect {
                nsp: "/".into(),
                auth: json!({"token": "123"})
            })
        );
        s.accept("/", "S1");
        s.emit("/", "auth", &[json!({"token": "123"})], false);
        assert_eq!(
            texts(&mut s),
            [r#"40{"sid":"S1"}"#, r#"42["auth",{"token":"123"}]"#]
        );
        // A custom namespace, and a refused one.
        assert!(matches!(
            s.handle_text(t(6), "40/custom,"),
            Some(Event::Connect { ref nsp, .. }) if nsp == "/custom"
        ));
        s.accept("/custom", "S2");
        assert!(s.handle_text(t(7), "40/random").is_some());
        s.refuse("/random", "Invalid namespace", None);
        assert_eq!(
            texts(&mut s),
            [
                r#"40/custom,{"sid":"S2"}"#,
                r#"44/random,{"message":"Invalid namespace"}"#
            ]
        );
        assert_eq!(s.ended(), None);
    }

    #[test]
    fn events_acks_and_binary_attachments() {
        let mut s = joined();
        assert_eq!(
            s.handle_text(t(10), r#"42["message",1,"2",{"3":[true]}]"#),
            Some(Event::Event {
                nsp: "/".into(),
                name: "message".into(),
                args: raw(&[json!(1), json!("2"), json!({"3": [true]})]),
                binary: vec![],
                ack: None
            })
        );
        assert_eq!(
            s.handle_text(t(11), r#"42456["message-with-ack",1]"#),
            Some(Event::Event {
                nsp: "/".into(),
                name: "message-with-ack".into(),
                args: raw(&[json!(1)]),
                binary: vec![],
                ack: Some(456)
            })
        );
        s.ack("/", 456, &[json!(1)]);
        assert_eq!(texts(&mut s), ["43456[1]"]);
        let head = r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(s.handle_text(t(12), head), None);
        assert_eq!(s.handle_binary(&[1, 2, 3]), None);
        let Some(Event::Event { binary, args, .. }) = s.handle_binary(&[4, 5, 6]) else {
            panic!("no event");
        };
        assert_eq!(binary, [vec![1, 2, 3], vec![4, 5, 6]]);
        assert_eq!(args.len(), 2);
        // Over polling an attachment is b<base64>.
        assert_eq!(
            s.handle_text(t(13), r#"451-["m",{"_placeholder":true,"num":0}]"#),
            None
        );
        assert!(matches!(
            s.handle_text(t(13), "bAQID"),
            Some(Event::Event { .. })
        ));
        s.emit_binary("/", "blob", &[9, 8]);
        assert_eq!(
            texts(&mut s),
            [r#"451-["blob",{"_placeholder":true,"num":0}]"#, "<[9, 8]>"]
        );
        // The server asks for an ack; the client answers it.
        assert_eq!(s.emit("/", "q", &[], true), Some(0));
        assert_eq!(s.emit("/", "q", &[], true), Some(1));
        assert_eq!(texts(&mut s), [r#"420["q"]"#, r#"421["q"]"#]);
        assert_eq!(
            s.handle_text(t(14), r#"431["yes"]"#),
            Some(Event::Ack {
                nsp: "/".into(),
                id: 1,
                args: raw(&[json!("yes")]),
                binary: vec![]
            })
        );
        assert_eq!(
            s.handle_text(t(15), "41"),
            Some(Event::Disconnect { nsp: "/".into() })
        );
        assert_eq!(s.ended(), None);
    }

    #[test]
    fn the_heartbeat_and_the_connect_timeout() {
        let mut s = joined();
        s.poll(t(299));
        assert!(!s.has_output());
        s.poll(t(300));
        assert_eq!(texts(&mut s), ["2"]);
        assert_eq!(s.next_deadline(), t(500));
        s.handle_text(t(400), "3");
        assert_eq!(s.next_deadline(), t(700));
        s.poll(t(700));
        assert_eq!(texts(&mut s), ["2"]);
        s.poll(t(900));
        assert_eq!(s.ended(), Some(Ended::PingTimeout));
        // No CONNECT within the connect timeout (answering pings meanwhile).
        let mut s = Session::new(t(0), SETTINGS, "SID", &[]);
        for ms in [300, 600, 900] {
            s.poll(t(ms));
            s.handle_text(t(ms), "3");
        }
        assert_eq!(s.ended(), None);
        s.poll(t(1000));
        assert_eq!(s.ended(), Some(Ended::ConnectTimeout));
    }

    #[test]
    fn protocol_errors_end_the_session_with_their_reason() {
        let cases: &[(&str, &[&str], Ended)] = &[
            (
                "before connect",
                &["4abc"],
                Ended::Malformed(Malformed::UnknownType),
            ),
            (
                "event first",
                &[r#"42["x"]"#],
                Ended::Protocol("a packet before CONNECT"),
            ),
            (
                "bad eio",
                &["40", "abc"],
                Ended::Transport("unknown packet type"),
            ),
            (
                "client ping",
                &["40", "2"],
                Ended::Protocol("ping from the client"),
            ),
            (
                "object event",
                &["40", "42{}"],
                Ended::Malformed(Malformed::Payload),
            ),
            (
                "not joined",
                &["40", r#"42/x,["a"]"#],
                Ended::Protocol("a packet for a namespace not joined"),
            ),
            ("close", &["40", "1"], Ended::ClientClosed),
            (
                "text mid-binary",
                &[
                    "40",
                    r#"451-["m",{"_placeholder":true,"num":0}]"#,
                    r#"42["x"]"#,
                ],
                Ended::Protocol("a packet before the attachments"),
            ),
            (
                "stray binary",
                &["40", "bAQID"],
                Ended::Protocol("binary data without a binary packet"),
            ),
            (
                "reserved",
                &["40", r#"42["disconnect"]"#],
                Ended::Malformed(Malformed::ReservedEvent),
            ),
        ];
        for (what, packets, want) in cases {
            let mut s = Session::new(t(0), SETTINGS, "SID", &[]);
            for p in *packets {
                if s.handle_text(t(1), p).is_some() && *p == "40" {
                    s.accept("/", "S");
                }
            }
            assert_eq!(s.ended(), Some(*want), "{what}");
        }
        // Attachments over maxPayload.
        let mut s = Session::new(
            t(0),
            Settings {
                max_payload: 4,
                ..SETTINGS
            },
            "SID",
            &[],
        );
        s.handle_text(t(1), "40");
        s.accept("/", "S");
        s.handle_text(
            t(1),
            r#"452-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        );
        s.handle_binary(&[1, 2, 3]);
        s.handle_binary(&[4, 5]);
        assert_eq!(s.ended(), Some(Ended::TooLarge));
    }
}
