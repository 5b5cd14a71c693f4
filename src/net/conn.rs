//! One connection as the loop holds it: the socket, what mio said about it,
//! and the phase of its life, each phase holding only what it needs.
//!
//! ```text
//!  accept ─► Head ─┬─► Ws ───────────────────────────► (closed)
//!   (TLS and the   ├─► Body (POST /login) ─► Verify ─► Linger ─► (closed)
//!    request head) ├─► Verify (Basic) ─► Head again ─► Ws | Linger
//!                  ├─► Head (keep-alive: the next request)
//!                  └─► Linger (a final response: written, then closed)
//! ```

use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::proto::conn::WebSocket;
use crate::proto::handshake::HeadReader;
use crate::proto::{Limits, Stamp};
use crate::router::{Charge, HTTP_OUT_HIGH};
use crate::security::ratelimit::MessageRate;
use crate::tls::Session;

/// A connection of the loop.
pub(crate) struct Conn {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    pub phase: Phase,
    /// The TLS session, on the TLS listener (taken out while it is fed).
    pub tls: Option<Box<Tls>>,
    /// Which listener it came in on.
    pub via: Via,
    /// Whether it counts in `max_connections` or was let in only to be
    /// told `503`.
    pub slot: Slot,
    /// The client address it counts against.
    pub charge: Charge,
    /// What mio reported and what the loop did about it.
    pub io: Io,
    /// Earliest deadline with an entry in the timer wheel.
    pub timer_at: Option<Stamp>,
}

/// The phases of a connection (see the module's diagram). An explicit tag
/// (`repr(u8)`): the loop matches on the phase several times per message,
/// and a tag hidden in a niche of a field costs more to read.
#[repr(u8)]
pub(crate) enum Phase {
    /// Reading a request head (TLS handshake included).
    Head(Head),
    /// Reading the body of a `POST /login`.
    Body(Body),
    /// Waiting for a password check on the hashing workers; not read.
    Verify(Verify),
    /// A final response is being written; then the write side is shut and
    /// input discarded until EOF or the deadline, so the peer reads the
    /// response instead of a reset.
    Linger(Linger),
    /// An open WebSocket.
    Ws(Ws),
}

/// A long-polling `GET` held (in [`Head::parked`]) until its session has
/// packets to send: whose packets it waits for, and how to answer.
pub(crate) struct Parked {
    /// The session (a token of the loop's polling sessions).
    pub session: mio::Token,
    pub reply: Reply,
}

/// How a long-polling request is answered.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    /// The allowed `Origin` to name (CORS).
    pub cors: Option<String>,
    pub keep_alive: bool,
    pub hsts: bool,
}

/// What a body is read for: a log-in, or a long-polling `POST`.
pub(crate) struct PollPost {
    /// The connection's head reader, for its next request.
    pub reader: HeadReader,
    pub received: u64,
    pub session: mio::Token,
    pub reply: Reply,
}

/// Reading a request head; `out` holds responses not yet written
/// (keep-alive).
pub(crate) struct Head {
    pub reader: HeadReader,
    pub out: Vec<u8>,
    pub deadline: Stamp,
    /// Bytes ever received on this connection (0 = silent client).
    pub received: u64,
    /// When it last sent a byte (or was accepted): its place among the
    /// pending handshakes (`limits.max_pending_handshakes`).
    pub heard: Stamp,
    /// When it was accepted (the handshake-duration metric).
    pub began: Stamp,
    /// A long-polling `GET` answered only when its session has packets (its
    /// deadline is the poll's; it is no pending handshake).
    pub parked: Option<Box<Parked>>,
}

/// Reading a login body, or a long-polling `POST`'s.
pub(crate) struct Body {
    /// `None`: a login (or a publication, with `publish`).
    pub poll: Option<Box<PollPost>>,
    /// A `POST /api/publish`: the API key's name.
    pub publish: Option<Box<str>>,
    pub out: Vec<u8>,
    pub body: Vec<u8>,
    pub need: usize,
    pub deadline: Stamp,
    pub heard: Stamp,
}

/// Waiting for a password check.
pub(crate) struct Verify {
    pub out: Vec<u8>,
    pub kind: Box<Verifying>,
    pub deadline: Stamp,
}

/// What a password check is for.
pub(crate) enum Verifying {
    /// `POST /login`: answer with a token or `401`.
    Login { username: String },
    /// A handshake with `Authorization: Basic`; the head is kept to be
    /// routed again when the result is back.
    Handshake {
        reader: HeadReader,
        received: u64,
        began: Stamp,
        username: String,
        /// Bytes that came after the head in the same read (a client that
        /// did not wait for the `101`); fed to the connection once open.
        early: Vec<u8>,
    },
}

/// Writing a final response.
pub(crate) struct Linger {
    pub out: Vec<u8>,
    pub deadline: Stamp,
}

/// An open WebSocket and what the loop keeps beside the core's state.
pub(crate) struct Ws {
    pub ws: WebSocket,
    /// Messages per second (SPEC.md §8 `rate.messages_per_conn_per_s`).
    pub rate: MessageRate,
    /// Who it is, when authenticated or a subprotocol was chosen (boxed:
    /// most connections carry neither, and every one stays small).
    pub who: Option<Box<Who>>,
}

/// The identity a WebSocket opened with.
pub(crate) struct Who {
    pub user: Option<Box<str>>,
    /// The id of the token it opened with (what a log-out revokes).
    pub token: Option<crate::security::jwt::TokenId>,
    pub protocol: Option<&'static str>,
    /// The Socket.IO session it carries, on `socketio.path` (the
    /// connection's [`Io::SOCKETIO`] bit says so without a look in here).
    pub sio: Option<Box<super::sio::Sio>>,
    /// The long-polling session this WebSocket probes to take over (until
    /// the client's `5` moves the session here).
    pub probe: Option<Box<str>>,
}

/// The TLS side of a connection.
pub(crate) struct Tls {
    pub session: Session,
    /// Whether any byte arrived yet (to spot plain HTTP on a TLS port).
    pub seen_bytes: bool,
    pub close_notify_sent: bool,
}

/// The listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// The plain listener.
    Plain,
    /// The TLS listener.
    Tls,
    /// The plain listener that only redirects to https on this port.
    Redirect(u16),
}

/// Whether a connection counts in `max_connections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// One of the `max_connections`.
    Counted,
    /// Beyond them, read only to be answered `503`.
    Overflow,
}

/// Readiness and half-close state of a socket, as bits.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Io(u8);

impl Io {
    /// Readable until a read says `WouldBlock` (edge-triggered readiness).
    pub const READABLE: Io = Io(1);
    /// Writable until a write says `WouldBlock`.
    pub const WRITABLE: Io = Io(2);
    /// The last event reported the peer's FIN (`EPOLLRDHUP`): read on to
    /// EOF even after a short read.
    pub const HUP: Io = Io(4);
    /// In the loop's ready queue.
    pub const QUEUED: Io = Io(8);
    /// The peer shut its write side (EOF read): nothing more to read, but a
    /// response may still be on its way out.
    pub const READ_EOF: Io = Io(16);
    /// Our write side is shut.
    pub const WRITE_SHUT: Io = Io(32);
    /// The WebSocket carries Socket.IO (its session is in [`Who::sio`]).
    pub const SOCKETIO: Io = Io(64);

    pub fn has(self, flag: Io) -> bool {
        self.0 & flag.0 != 0
    }

    pub fn set(&mut self, flag: Io, on: bool) {
        if on {
            self.0 |= flag.0;
        } else {
            self.0 &= !flag.0;
        }
    }
}

impl Phase {
    /// Bytes waiting to be written.
    #[inline]
    pub fn output(&self) -> &[u8] {
        match self {
            Phase::Head(Head { out, .. })
            | Phase::Body(Body { out, .. })
            | Phase::Verify(Verify { out, .. })
            | Phase::Linger(Linger { out, .. }) => out,
            Phase::Ws(w) => w.ws.output(),
        }
    }

    /// Marks `n` bytes of [`Phase::output`] as written (inlined into the
    /// write of every message); returns the WebSocket messages queued since
    /// the last write, for the counts.
    #[inline(always)]
    pub fn consume(&mut self, n: usize) -> u64 {
        match self {
            Phase::Head(Head { out, .. })
            | Phase::Body(Body { out, .. })
            | Phase::Verify(Verify { out, .. })
            | Phase::Linger(Linger { out, .. }) => {
                out.drain(..n);
                0
            }
            Phase::Ws(w) => {
                w.ws.consume_output(n);
                u64::from(w.ws.take_messages_sent())
            }
        }
    }
}

impl Conn {
    /// Whether the connection came in over TLS.
    pub fn secure(&self) -> bool {
        self.via == Via::Tls
    }

    /// Its key among the pending handshakes, while it has not finished one.
    pub fn pending_key(&self) -> Option<Stamp> {
        match &self.phase {
            Phase::Head(h) if h.parked.is_none() => Some(h.heard),
            Phase::Body(b) => Some(b.heard),
            _ => None,
        }
    }

    /// Whether the loop should read more from the socket.
    pub fn wants_read(&self, limits: &Limits) -> bool {
        if self.io.has(Io::READ_EOF) {
            return false;
        }
        match &self.phase {
            Phase::Head(h) => h.out.len() < HTTP_OUT_HIGH,
            Phase::Body(_) | Phase::Linger(_) => true,
            Phase::Verify(_) => false,
            Phase::Ws(w) => w.ws.wants_read(limits),
        }
    }

    /// Whether it is a Socket.IO WebSocket whose session holds packets
    /// for a moment ([`crate::socketio::session::Session::hold`]).
    #[inline]
    pub fn sio_holding(&self) -> bool {
        self.io.has(Io::SOCKETIO)
            && matches!(&self.phase, Phase::Ws(w) if w.who.as_deref()
                .and_then(|w| w.sio.as_deref())
                .is_some_and(|s| s.session.holding()))
    }

    /// When the connection has something to do next.
    pub fn deadline(&self, limits: &Limits) -> Stamp {
        match &self.phase {
            Phase::Head(h) => h.deadline,
            Phase::Body(b) => b.deadline,
            Phase::Verify(v) => v.deadline,
            Phase::Linger(l) => l.deadline,
            Phase::Ws(w) => {
                let ws = w.ws.poll_timeout(limits);
                let sio = w.who.as_deref().and_then(|w| w.sio.as_deref());
                sio.map_or(ws, |s| ws.min(s.session.next_deadline()))
            }
        }
    }

    /// The unsent output of an HTTP phase, taken out (to start a final
    /// response after it).
    pub fn take_output(&mut self) -> Vec<u8> {
        match &mut self.phase {
            Phase::Head(Head { out, .. })
            | Phase::Body(Body { out, .. })
            | Phase::Verify(Verify { out, .. })
            | Phase::Linger(Linger { out, .. }) => std::mem::take(out),
            Phase::Ws(_) => Vec::new(),
        }
    }

    /// Ends the HTTP exchange: write `out`, then close by `deadline`.
    pub fn linger(&mut self, out: Vec<u8>, deadline: Stamp) {
        self.phase = Phase::Linger(Linger { out, deadline });
    }
}
