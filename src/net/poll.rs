//! Engine.IO long-polling, the Socket.IO clients' first transport: the
//! loop's table of polling sessions, the requests that carry their
//! packets, and the move of a session to a WebSocket.
//!
//! A session lives here, not in a connection: its client reaches it with
//! `GET`s (held until packets wait, a ping at the latest) and `POST`s (its
//! packets), over whatever connections it has. Each session counts like a
//! connection (`limits.max_connections`, `limits.max_connections_per_ip`,
//! and until it joins a namespace `limits.max_pending_handshakes`). It ends
//! when its client stops answering pings, closes it, breaks the protocol (a
//! second pending `GET`, two `POST`s at once, a malformed packet, a body
//! over `maxPayload`), or when it moves to a WebSocket:
//!
//! ```text
//!  GET ?sid=…&transport=websocket ─101─► 2probe ─► 3probe  (a pending GET gets 6)
//!                                        5      ─► the session moves to the WebSocket
//! ```
//!
//! The handler knows a polling session by an id with [`POLL_BIT`] set, and
//! keeps that id after the move; a password check of its CONNECT is tagged
//! with it too.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mio::Token;

use super::Env;
use super::capacity::{Capacity, Count};
use super::conn::{Body, Conn, Head, Parked, Phase, PollPost, Reply, Ws};
use super::drive::Ctx;
use super::sio::{self, Client, Held, Sio};
use super::slab::Slab;
use crate::handler::{Closed, ConnId, Handler, Outgoing};
use crate::http::response;
use crate::log;
use crate::metrics::Stats;
use crate::proto::Stamp;
use crate::proto::conn::Event as WsEvent;
use crate::proto::engineio::EioError;
use crate::proto::error::code;
use crate::router::{PollWhat, Polling, Upgraded, cors_headers};
use crate::security::client_ip::canonical;
use crate::security::jwt::TokenId;
use crate::security::ratelimit::MessageRate;
use crate::socketio::session::{Ended, Out};

/// Set in the handler's id (and a password check's tag) of a session that
/// started on long-polling; the rest is its token in [`Polls`].
pub(super) const POLL_BIT: usize = 1 << (usize::BITS - 1);

/// The long-polling sessions of the loop.
pub(crate) struct Polls {
    /// Boxed and taken out while the handler runs for them.
    sessions: Slab<Option<Box<Polled>>>,
    by_sid: HashMap<Box<str>, Token>,
    /// Deadlines (lazy: an entry whose session moved its deadline is
    /// skipped).
    timers: BinaryHeap<Reverse<(Stamp, Token)>>,
    /// Connections holding a `GET` that can be answered now.
    pub wake: Vec<Token>,
    /// The global counts: sessions count in `max_connections`, and until
    /// they join a namespace against the pending cap.
    capacity: Arc<Capacity>,
    /// This loop, and how many there are (a session id names its loop).
    loop_index: usize,
    loops: usize,
    /// Sessions that moved to a WebSocket: the handler's id → connection
    /// and session id.
    moved: HashMap<u64, (Token, Box<str>)>,
    /// The session ids of those: a second WebSocket for one is closed.
    upgraded: HashSet<Box<str>>,
    /// Deadlines or woken `GET`s wait, or connections to hand to another
    /// loop (`Env::moving`): the loop's one test per turn.
    pub active: bool,
}

/// One session.
pub(crate) struct Polled {
    sid: Box<str>,
    sio: Sio,
    user: Option<Box<str>>,
    token: Option<TokenId>,
    /// When the token it was opened with expires.
    expiry: Option<Stamp>,
    rate: MessageRate,
    /// Where its first request came from (for the logs).
    peer: SocketAddr,
    /// The client address it counts against.
    charge: IpAddr,
    /// The connection holding its `GET`.
    waiting: Option<Token>,
    /// A `POST` body is being read.
    posting: bool,
    /// The WebSocket that probed to take it over.
    probe: Option<Token>,
    /// Closed by its client while no `GET` was held: until then, a `GET`
    /// that was on its way gets its `6` (see [`post_complete`]).
    linger: Option<Stamp>,
    armed: Option<Stamp>,
    counted_unjoined: bool,
}

impl crate::router::Sessions for Polls {
    fn knows(&self, sid: &str) -> bool {
        self.by_sid.contains_key(sid) || self.upgraded.contains(sid)
    }

    fn owner(&self, sid: &str) -> Option<usize> {
        super::group::owner(sid, self.loop_index, self.loops)
    }
}

impl Polls {
    /// The sessions of loop `loop_index` of `loops`.
    pub fn new(capacity: Arc<Capacity>, loop_index: usize, loops: usize) -> Polls {
        Polls {
            loop_index,
            loops,
            sessions: Slab::default(),
            by_sid: HashMap::new(),
            timers: BinaryHeap::new(),
            wake: Vec::new(),
            capacity,
            moved: HashMap::new(),
            upgraded: HashSet::new(),
            active: false,
        }
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.by_sid.len()
    }

    /// Whether there are deadlines or held `GET`s to see to (one test per
    /// turn of the loop while no client uses long-polling).
    #[inline]
    pub fn has_work(&self) -> bool {
        self.active
    }

    /// After deadlines were fired or `GET`s woken.
    pub fn recheck(&mut self) {
        self.active = !self.timers.is_empty() || !self.wake.is_empty();
    }

    /// The earliest deadline.
    #[inline]
    pub fn next(&self) -> Option<Stamp> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn get(&mut self, token: Token) -> Option<&mut Polled> {
        self.sessions.get_mut(token)?.as_deref_mut()
    }

    fn take(&mut self, token: Token) -> Option<Box<Polled>> {
        self.sessions.get_mut(token)?.take()
    }

    fn put(&mut self, token: Token, p: Box<Polled>) {
        if let Some(slot) = self.sessions.get_mut(token) {
            *slot = Some(p);
        }
    }

    /// A WebSocket that probed, or carried a moved session, is gone.
    pub fn ws_gone(&mut self, conn: Token, sio_id: Option<ConnId>, probe: Option<&str>) {
        if let Some(id) = sio_id {
            if self.moved.get(&id.0).is_some_and(|(c, _)| *c == conn) {
                if let Some((_, sid)) = self.moved.remove(&id.0) {
                    self.upgraded.remove(&sid);
                }
            }
        }
        if let Some(&t) = probe.and_then(|sid| self.by_sid.get(sid)) {
            if let Some(p) = self.get(t) {
                if p.probe == Some(conn) {
                    p.probe = None;
                }
            }
        }
    }

    /// The connection a moved session's id is on now.
    pub fn moved_to(&self, id: ConnId) -> Option<Token> {
        self.moved.get(&id.0).map(|(conn, _)| *conn)
    }

    /// Why a WebSocket that asks to take over session `sid` is closed as
    /// soon as it opens, as the reference server does: the session moved
    /// to another WebSocket already, or one is probing for it now.
    pub fn refuse_probe(&mut self, sid: &str) -> Option<&'static str> {
        if self.upgraded.contains(sid) {
            return Some("session already upgraded");
        }
        let Some(&token) = self.by_sid.get(sid) else {
            return Some("session unknown");
        };
        match self.get(token) {
            Some(p) if p.probe.is_some() => Some("another WebSocket is upgrading the session"),
            _ => None,
        }
    }

    /// The handler's ids of every session that joined.
    pub fn ids(&self) -> Vec<ConnId> {
        self.by_sid.values().map(|t| id_of(*t)).collect()
    }

    /// The tokens of every session.
    pub fn tokens(&self) -> Vec<Token> {
        self.by_sid.values().copied().collect()
    }

    /// After a change: a held `GET` with packets to take is woken; the
    /// deadline is armed.
    fn settle_one(&mut self, token: Token) {
        let Some(p) = self.get(token) else {
            return;
        };
        let joined_now = p.counted_unjoined && p.sio.session.is_joined();
        if joined_now {
            p.counted_unjoined = false;
        }
        let ended = p.sio.session.ended().is_some();
        let ready = ended || p.sio.session.has_output();
        let wake = p.waiting.filter(|_| ready);
        let mut at = p.sio.session.next_deadline();
        if let Some(e) = p.expiry {
            at = at.min(e);
        }
        // An ended session waits only for its held GET to say `1` (no
        // deadline: it would be in the past), or lingers.
        if let (true, Some(until)) = (ended, p.linger) {
            at = until;
        }
        let arm = match p.armed {
            _ if ended && p.linger.is_none() => false,
            Some(armed) if armed <= at => false,
            _ => {
                p.armed = Some(at);
                true
            }
        };
        if joined_now {
            self.capacity.give_back(Count::Unjoined);
        }
        if let Some(w) = wake {
            self.wake.push(w);
            self.active = true;
        }
        if arm {
            self.timers.push(Reverse((at, token)));
            self.active = true;
        }
    }
}

/// The handler's id of the session `token`.
fn id_of(token: Token) -> ConnId {
    ConnId((token.0 | POLL_BIT) as u64)
}

/// Writes a long-polling answer (with `extra` headers after the CORS ones).
fn write(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8], reply: &Reply) {
    write_with(out, status, content_type, body, reply, &[]);
}

fn write_with(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    reply: &Reply,
    more: &[(&'static str, &str)],
) {
    let mut extra = Vec::new();
    cors_headers(reply.cors.as_deref(), &mut extra);
    let mut extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    extra.extend_from_slice(more);
    let head = response::Head {
        status,
        content_type,
        content_length: body.len(),
        keep_alive: reply.keep_alive,
        cache: response::Cache::NoStore,
        hsts: reply.hsts,
    };
    response::write_head(out, head, &extra);
    out.extend_from_slice(body);
}

/// Answers with the protocol's JSON error (the connection then closes).
fn write_error(out: &mut Vec<u8>, e: EioError, reply: &Reply, peer: &SocketAddr) {
    log::limited(
        log::LogLevel::Info,
        "socket.io request refused",
        ("reason", e.message()),
        &[
            ("peer", peer),
            ("status", &e.status()),
            ("reason", &e.message()),
        ],
    );
    let reply = Reply {
        keep_alive: false,
        ..reply.clone()
    };
    write(
        out,
        e.status(),
        "application/json",
        e.body().as_bytes(),
        &reply,
    );
}

/// The connection after an answer: the next request, or closing.
fn answered<H>(conn: &mut Conn, keep_alive: bool, ctx: &Ctx<'_, H>) {
    let Phase::Head(h) = &mut conn.phase else {
        return;
    };
    if keep_alive {
        h.reader.clear();
        h.deadline = ctx.after(ctx.env.shared.config.limits.handshake_timeout());
    } else {
        let out = std::mem::take(&mut h.out);
        conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
    }
}

/// The packets waiting in a session, as one payload (`6` when there are
/// none; `1` after them when the session ended).
fn payload(p: &mut Polled, stats: &Stats) -> Vec<u8> {
    use crate::proto::engineio::{Outgoing as EioOut, encode_payload};
    let mut out = Vec::new();
    for packet in p.sio.session.take_output() {
        stats.messages_sent.inc();
        if !out.is_empty() {
            out.push(0x1e);
        }
        match packet {
            // A text packet carries its type digit already.
            Out::Text(t) => out.extend_from_slice(t.as_bytes()),
            Out::Binary(b) => encode_payload(&mut out, [&EioOut::Binary(b)]),
        }
    }
    // The server's close is a `1` to the client; a client that closed
    // itself (its `1` in a POST) gets what was queued, or the `6` below,
    // as the reference server ends the poll it held.
    if p.sio
        .session
        .ended()
        .is_some_and(|e| e != Ended::ClientClosed)
    {
        if !out.is_empty() {
            out.push(0x1e);
        }
        out.push(b'1');
    }
    if out.is_empty() {
        out.push(b'6');
    }
    out
}

/// A long-polling request the router let through.
pub(super) fn request<H: Handler>(conn: &mut Conn, p: Polling, ctx: &mut Ctx<'_, H>) {
    let Polling {
        what,
        cors,
        keep_alive,
        hsts,
    } = p;
    let reply = Reply {
        cors,
        keep_alive,
        hsts,
    };
    match what {
        PollWhat::Open(up) => open(conn, up, reply, ctx),
        PollWhat::Get { sid } => get(conn, &sid, reply, ctx),
        PollWhat::Post { sid, need } => post(conn, &sid, need, reply, ctx),
        PollWhat::TooLarge { sid, length } => {
            let peer = conn.peer;
            if let Some(&t) = ctx.env.polls.by_sid.get(sid.as_str()) {
                if let Some(p) = ctx.env.polls.get(t) {
                    p.sio.session.end_by_server("payload too large");
                }
                settle(ctx.env, t);
            }
            log::limited(
                log::LogLevel::Info,
                "socket.io request refused",
                ("reason", "payload too large"),
                &[("peer", &peer), ("status", &413), ("length", &length)],
            );
            if let Phase::Head(h) = &mut conn.phase {
                let reply = Reply {
                    keep_alive: false,
                    ..reply
                };
                let body = br#"{"code":3,"message":"Bad request"}"#;
                write(&mut h.out, 413, "application/json", body, &reply);
            }
            answered(conn, false, ctx);
        }
    }
}

/// Refuses to open a session: `status`, `reason`, and the limit in the log.
fn refuse_open<H>(
    conn: &mut Conn,
    status: u16,
    reason: &'static str,
    reply: &Reply,
    ctx: &Ctx<'_, H>,
) {
    log::limited(
        log::LogLevel::Warn,
        "socket.io session refused",
        ("reason", reason),
        &[
            ("peer", &conn.peer),
            ("status", &status),
            ("reason", &reason),
        ],
    );
    if let Phase::Head(h) = &mut conn.phase {
        let reply = Reply {
            keep_alive: false,
            ..reply.clone()
        };
        let body = format!("{reason}\n");
        let retry = [("Retry-After", "1")];
        let ct = "text/plain; charset=utf-8";
        write_with(&mut h.out, status, ct, body.as_bytes(), &reply, &retry);
    }
    answered(conn, false, ctx);
}

/// A new session: within the caps, then its open packet.
fn open<H: Handler>(conn: &mut Conn, up: Upgraded, reply: Reply, ctx: &mut Ctx<'_, H>) {
    let limits = &ctx.env.shared.config.limits;
    let capacity = &ctx.env.capacity;
    if !capacity.try_take(Count::Open, limits.max_connections) {
        return refuse_open(conn, 503, "server at max_connections", &reply, ctx);
    }
    let engine_only = up.engine_only;
    if !engine_only && !capacity.try_take(Count::Unjoined, limits.pending_cap()) {
        capacity.give_back(Count::Open);
        return refuse_open(
            conn,
            503,
            "too many sessions waiting for CONNECT",
            &reply,
            ctx,
        );
    }
    let ip = conn
        .charge
        .ip()
        .unwrap_or_else(|| canonical(conn.peer.ip()));
    if !ctx
        .env
        .quotas
        .conns
        .lock()
        .charge(ip, limits.max_connections_per_ip)
    {
        ctx.env.quotas.conns.lock().release(ip);
        ctx.env.capacity.give_back(Count::Open);
        if !engine_only {
            ctx.env.capacity.give_back(Count::Unjoined);
        }
        return refuse_open(
            conn,
            429,
            "too many connections from this address",
            &reply,
            ctx,
        );
    }
    let sid = sio::session_id(ctx.env.group.sid_tag());
    let credential = up
        .socketio
        .unwrap_or(crate::router::HandshakeCredential::Missing);
    let sio = Sio::new(
        ctx.stamp,
        credential,
        ConnId(0),
        &sid,
        &["websocket"],
        engine_only,
        ctx,
    );
    let expiry = up.expires_at.map(|exp| {
        let left = exp.saturating_sub(crate::router::unix_now()).min(1 << 32);
        ctx.stamp.after(std::time::Duration::from_secs(left))
    });
    let per_s = ctx.env.shared.config.rate.messages_per_conn_per_s;
    let polls = &mut ctx.env.polls;
    let token = polls.sessions.insert(None);
    let mut p = Box::new(Polled {
        sid: sid.as_str().into(),
        sio,
        user: up.user.map(String::into_boxed_str),
        token: up.token,
        expiry,
        rate: MessageRate::new(per_s.saturating_mul(2), ctx.stamp),
        peer: conn.peer,
        charge: ip,
        waiting: None,
        posting: false,
        probe: None,
        linger: None,
        armed: None,
        // Engine.IO alone has no namespace to join.
        counted_unjoined: !engine_only,
    });
    p.sio.id = id_of(token);
    let body = payload(&mut p, &ctx.env.stats);
    polls.put(token, p);
    polls.by_sid.insert(sid.as_str().into(), token);
    polls.settle_one(token);
    ctx.env.stats.socketio_polling.set(polls.len() as u64);
    let began = match &conn.phase {
        Phase::Head(h) => h.began,
        _ => ctx.stamp,
    };
    ctx.env.stats.accepted(ctx.stamp.millis_since(began));
    log::debug(
        "socket.io session opened",
        &[("peer", &conn.peer), ("transport", &"polling")],
    );
    if let Phase::Head(h) = &mut conn.phase {
        write(&mut h.out, 200, "text/plain; charset=UTF-8", &body, &reply);
    }
    answered(conn, reply.keep_alive, ctx);
}

/// The session a `GET` or `POST` names, unless the request is refused: an
/// unknown `sid` (`400`, code 1), or a request that overlaps another one
/// (`busy` says why: the session ends, `400`, code 3).
fn lookup<H: Handler>(
    conn: &mut Conn,
    sid: &str,
    reply: &Reply,
    busy: impl Fn(&Polled) -> Option<&'static str>,
    ctx: &mut Ctx<'_, H>,
) -> Option<Token> {
    let peer = conn.peer;
    let Phase::Head(h) = &mut conn.phase else {
        return None;
    };
    let Some(&token) = ctx.env.polls.by_sid.get(sid) else {
        write_error(&mut h.out, EioError::SessionIdUnknown, reply, &peer);
        answered(conn, false, ctx);
        return None;
    };
    let p = ctx.env.polls.get(token)?;
    // The session's clock first: a request that comes as the session's
    // time runs out (its pong overdue, say) in the same turn finds it
    // gone, as if its deadline had been seen first.
    p.sio.session.poll(ctx.stamp);
    if matches!(
        p.sio.session.ended(),
        Some(Ended::PingTimeout | Ended::ConnectTimeout)
    ) {
        settle(ctx.env, token);
        write_error(&mut h.out, EioError::SessionIdUnknown, reply, &peer);
        answered(conn, false, ctx);
        return None;
    }
    let Some(why) = busy(p) else {
        return Some(token);
    };
    p.sio.session.end_by_server(why);
    write_error(&mut h.out, EioError::BadRequest, reply, &peer);
    settle(ctx.env, token);
    answered(conn, false, ctx);
    None
}

/// A `GET`: the waiting packets now, or held until there are some.
fn get<H: Handler>(conn: &mut Conn, sid: &str, reply: Reply, ctx: &mut Ctx<'_, H>) {
    // The protocol: a second pending GET closes the session (the first
    // one gets its `1`).
    let busy = |p: &Polled| p.waiting.is_some().then_some("a second pending GET");
    let Some(token) = lookup(conn, sid, &reply, busy, ctx) else {
        return;
    };
    let Phase::Head(h) = &mut conn.phase else {
        return;
    };
    let Some(p) = ctx.env.polls.get(token) else {
        return;
    };
    if p.probe.is_some() && !p.sio.session.has_output() {
        // Moving to a WebSocket: the client only waits for this to end
        // (the probe's `6` may be queued already).
        p.sio.session.noop();
    }
    if p.sio.session.has_output() || p.sio.session.ended().is_some() {
        p.linger = None;
        let body = payload(p, &ctx.env.stats);
        write(&mut h.out, 200, "text/plain; charset=UTF-8", &body, &reply);
        settle(ctx.env, token);
        return answered(conn, reply.keep_alive, ctx);
    }
    p.waiting = Some(ctx.token);
    // The session's ping answers it within the ping interval; this is a
    // safety net.
    let s = &ctx.env.shared.config.socketio;
    let wait = std::time::Duration::from_millis(s.ping_interval_ms + s.ping_timeout_ms);
    h.reader.clear();
    h.deadline = ctx.after(wait);
    h.parked = Some(Box::new(Parked {
        session: token,
        reply,
    }));
}

/// A held `GET` whose session may have packets now (woken, or its
/// deadline came): answered if so, or when `force`d.
pub(super) fn answer_parked<H: Handler>(conn: &mut Conn, force: bool, ctx: &mut Ctx<'_, H>) {
    let Phase::Head(Head {
        parked: Some(parked),
        ..
    }) = &mut conn.phase
    else {
        return;
    };
    let token = parked.session;
    let body = match ctx.env.polls.get(token) {
        Some(p) if p.waiting == Some(ctx.token) => {
            let ready = p.sio.session.has_output() || p.sio.session.ended().is_some();
            if !ready && !force {
                return;
            }
            p.waiting = None;
            payload(p, &ctx.env.stats)
        }
        // Gone (moved to a WebSocket, or another GET took over).
        _ => b"6".to_vec(),
    };
    let Phase::Head(h) = &mut conn.phase else {
        return;
    };
    let Some(parked) = h.parked.take() else {
        return;
    };
    let reply = parked.reply;
    write(&mut h.out, 200, "text/plain; charset=UTF-8", &body, &reply);
    settle(ctx.env, token);
    answered(conn, reply.keep_alive, ctx);
}

/// A `POST`: its body is read next.
fn post<H: Handler>(conn: &mut Conn, sid: &str, need: usize, reply: Reply, ctx: &mut Ctx<'_, H>) {
    let busy = |p: &Polled| p.posting.then_some("two POSTs at once");
    let Some(token) = lookup(conn, sid, &reply, busy, ctx) else {
        return;
    };
    let Phase::Head(h) = &mut conn.phase else {
        return;
    };
    let Some(p) = ctx.env.polls.get(token) else {
        return;
    };
    p.posting = true;
    let out = std::mem::take(&mut h.out);
    let mut reader = std::mem::take(&mut h.reader);
    reader.clear();
    conn.phase = Phase::Body(Body {
        publish: None,
        poll: Some(Box::new(PollPost {
            reader,
            received: h.received,
            session: token,
            reply,
        })),
        out,
        body: Vec::with_capacity(need),
        need,
        deadline: ctx.after(ctx.env.shared.config.limits.handshake_timeout()),
        heard: ctx.stamp,
    });
    if need == 0 {
        post_complete(conn, ctx);
    }
}

/// A `POST` body is in: its packets go to the session, and `ok` back.
pub(super) fn post_complete<H: Handler>(conn: &mut Conn, ctx: &mut Ctx<'_, H>) {
    let Phase::Body(b) = &mut conn.phase else {
        return;
    };
    let Some(pp) = b.poll.take() else {
        return;
    };
    let body = std::mem::take(&mut b.body);
    let PollPost {
        reader,
        received,
        session: token,
        reply,
    } = *pp;
    conn.phase = Phase::Head(Head {
        reader,
        out: std::mem::take(&mut b.out),
        deadline: ctx.stamp,
        received,
        heard: ctx.stamp,
        began: ctx.stamp,
        parked: None,
    });
    let peer = conn.peer;
    let Phase::Head(h) = &mut conn.phase else {
        return;
    };
    let Some(mut p) = ctx.env.polls.take(token) else {
        write_error(&mut h.out, EioError::SessionIdUnknown, &reply, &peer);
        return answered(conn, false, ctx);
    };
    p.posting = false;
    let was_ended = p.sio.session.ended().is_some();
    let mut unreadable = false;
    match std::str::from_utf8(&body) {
        Ok(text) if !text.is_empty() => {
            for packet in text.split('\x1e') {
                ctx.env.stats.messages_received.inc();
                let heard = p.sio.session.handle_text(ctx.stamp, packet);
                let Polled {
                    sio,
                    user,
                    token: tid,
                    rate,
                    peer,
                    expiry,
                    ..
                } = &mut *p;
                let mut c = Client {
                    sio,
                    user,
                    token: tid,
                    rate,
                    peer,
                };
                if let Some(at) = sio::dispatch(&mut c, heard, &mut Held, ctx) {
                    *expiry = Some(at);
                }
                if p.sio.session.ended().is_some() {
                    break;
                }
            }
        }
        _ => {
            unreadable = true;
            p.sio
                .session
                .end_by_server("an empty payload, or one not UTF-8 text");
        }
    }
    // A packet that broke the protocol gets `400`; a client that closed or
    // left gets its `ok`.
    let bad = !was_ended
        && (unreadable
            || matches!(
                p.sio.session.ended(),
                Some(
                    Ended::Malformed(_)
                        | Ended::Transport(_)
                        | Ended::Protocol(_)
                        | Ended::TooLarge
                )
            ));
    // The client closed with no GET held: a GET it sent before its `1`,
    // on another connection, may still be on its way. It gets its `6`
    // within the ping timeout, as if it had been held first.
    if !was_ended && p.sio.session.ended() == Some(Ended::ClientClosed) && p.waiting.is_none() {
        let ms = ctx.env.shared.config.socketio.ping_timeout_ms;
        p.linger = Some(ctx.stamp.plus_millis(ms));
    }
    ctx.env.polls.put(token, p);
    settle(ctx.env, token);
    if bad {
        write_error(&mut h.out, EioError::BadRequest, &reply, &peer);
        return answered(conn, false, ctx);
    }
    write(&mut h.out, 200, "text/html", b"ok", &reply);
    answered(conn, reply.keep_alive, ctx);
}

/// A connection that held a `GET` of `session` is gone: a session that
/// ended meanwhile is removed now.
pub(super) fn unpark<H: Handler>(env: &mut Env<H>, session: Token, conn: Token) {
    if let Some(p) = env.polls.get(session) {
        if p.waiting == Some(conn) {
            p.waiting = None;
            settle(env, session);
        }
    }
}

/// A `POST` body of `session` that will not complete (the connection timed
/// out or went away).
pub(super) fn unpost<H: Handler>(env: &mut Env<H>, session: Token) {
    if let Some(p) = env.polls.get(session) {
        p.posting = false;
    }
}

/// After a change to session `token`: a held `GET` is woken, a session
/// that ended with nobody to tell is removed.
fn settle<H: Handler>(env: &mut Env<H>, token: Token) {
    let max = env.shared.limits.max_outbound_bytes;
    let Some(p) = env.polls.get(token) else {
        return;
    };
    if p.sio.session.queued_bytes() > max {
        // A client that stopped collecting its packets (as a WebSocket
        // reader that stops reading is closed).
        p.sio
            .session
            .end_by_server("packets not collected (over limits.max_outbound_bytes)");
    }
    if p.sio.session.ended().is_some() && p.waiting.is_none() && p.linger.is_none() {
        return finish(env, token);
    }
    env.polls.settle_one(token);
}

/// Removes an ended session: its quota back, the handler told.
fn finish<H: Handler>(env: &mut Env<H>, token: Token) {
    let Some(p) = env.polls.take(token) else {
        return;
    };
    env.polls.sessions.remove(token);
    env.polls.by_sid.remove(&p.sid);
    env.stats.socketio_polling.set(env.polls.len() as u64);
    env.capacity.give_back(Count::Open);
    env.channels.gone(p.sio.id);
    if p.counted_unjoined {
        env.capacity.give_back(Count::Unjoined);
    }
    env.quotas.conns.lock().release(p.charge);
    if let Some(why) = p.sio.session.ended() {
        sio::log_ended(why, &p.peer);
    }
    if p.sio.opened {
        let code = match p.sio.session.ended() {
            Some(Ended::ClientClosed | Ended::Server(_)) | None => code::NORMAL,
            Some(Ended::PingTimeout | Ended::ConnectTimeout) => 1006,
            Some(_) => code::POLICY_VIOLATION,
        };
        env.handler.on_close(&Closed {
            id: p.sio.id,
            user: p.user.as_deref(),
            code,
        });
    }
}

/// The sessions whose deadlines came: pings queued, silent or expired
/// ones ended.
pub(super) fn fire<H: Handler>(env: &mut Env<H>, now: Stamp) {
    // What comes due now; what is armed meanwhile waits for the next turn.
    let mut due = Vec::new();
    while let Some(&Reverse((at, token))) = env.polls.timers.peek() {
        if at > now {
            break;
        }
        env.polls.timers.pop();
        due.push((at, token));
    }
    for (at, token) in due {
        let Some(p) = env.polls.get(token) else {
            continue;
        };
        if p.armed != Some(at) {
            continue;
        }
        p.armed = None;
        if p.linger.is_some_and(|until| now >= until) {
            p.linger = None;
        }
        p.sio.session.poll(now);
        if p.expiry.is_some_and(|e| e <= now) {
            p.sio.session.end_by_server("token expired");
        }
        settle(env, token);
    }
}

/// A password check of a polling session's CONNECT came back.
pub(super) fn password_checked<H: Handler>(env: &mut Env<H>, tag: Token, ok: bool, now: Stamp) {
    let token = Token(tag.0 & !POLL_BIT);
    let Some(mut p) = env.polls.take(token) else {
        return;
    };
    let mut ctx = Ctx {
        env,
        token,
        stamp: now,
    };
    {
        let Polled {
            sio,
            user,
            token: tid,
            rate,
            peer,
            ..
        } = &mut *p;
        let mut c = Client {
            sio,
            user,
            token: tid,
            rate,
            peer,
        };
        sio::password_checked(&mut c, ok, &mut Held, &mut ctx);
    }
    env.polls.put(token, p);
    settle(env, token);
}

/// A message from a [`crate::handler::Handle`] to a polling session.
pub(super) fn push<H: Handler>(env: &mut Env<H>, id: ConnId, message: &Outgoing) -> bool {
    if id.0 as usize & POLL_BIT == 0 {
        return false;
    }
    let token = Token(id.0 as usize & !POLL_BIT);
    let Some(p) = env.polls.get(token) else {
        return false;
    };
    if !p.sio.opened || p.sio.session.ended().is_some() {
        return true;
    }
    sio::push(&mut p.sio.session, message, &mut Held);
    settle(env, token);
    true
}

/// Queues the Socket.IO event `event` (its JSON array, `["name",...args]`)
/// for the polling session `id`: a publication, or another instance's
/// broadcast, with its arguments as they are. `None`: `id` is no polling
/// session here (a WebSocket, or a session that moved to one).
pub(super) fn push_event<H: Handler>(env: &mut Env<H>, id: ConnId, event: &str) -> Option<bool> {
    if id.0 as usize & POLL_BIT == 0 {
        return None;
    }
    let token = Token(id.0 as usize & !POLL_BIT);
    let p = env.polls.get(token)?;
    if !p.sio.opened || p.sio.session.ended().is_some() {
        return Some(true);
    }
    let Ok(mut args) = serde_json::from_str::<Vec<serde_json::Value>>(event) else {
        return Some(false);
    };
    let Some(serde_json::Value::String(name)) = (!args.is_empty()).then(|| args.remove(0)) else {
        return Some(false);
    };
    p.sio.session.emit("/", &name, &args, false);
    settle(env, token);
    Some(true)
}

/// The user of the polling session the handler knows as `id`
/// (`Some(None)`: anonymous; `None`: no such session).
pub(super) fn user_of<H>(env: &Env<H>, id: ConnId) -> Option<Option<String>> {
    if id.0 as usize & POLL_BIT == 0 {
        return None;
    }
    let token = Token(id.0 as usize & !POLL_BIT);
    let p = env.polls.sessions.get(token)?.as_deref()?;
    Some(p.user.as_deref().map(str::to_owned))
}

/// Ends the polling session the handler knows as `id` (a
/// [`crate::handler::Handle`]'s close); false when there is none.
pub(super) fn close<H: Handler>(env: &mut Env<H>, id: ConnId, reason: &'static str) -> bool {
    if id.0 as usize & POLL_BIT == 0 {
        return false;
    }
    let token = Token(id.0 as usize & !POLL_BIT);
    let Some(p) = env.polls.get(token) else {
        return false;
    };
    p.sio.session.end_by_server(reason);
    settle(env, token);
    true
}

/// Ends polling sessions: those `which` picks, for `reason`.
pub(super) fn end_where<H: Handler>(
    env: &mut Env<H>,
    reason: &'static str,
    which: impl Fn(Option<&str>, Option<&TokenId>) -> bool,
) {
    for token in env.polls.tokens() {
        let Some(p) = env.polls.get(token) else {
            continue;
        };
        if which(p.user.as_deref(), p.token.as_ref()) {
            p.sio.session.end_by_server(reason);
            settle(env, token);
        }
    }
}

/// The input of a WebSocket that probes to take over a polling session:
/// `2probe` is answered `3probe` (and a held `GET` `6`), then `5` moves
/// the session here. Anything else closes the WebSocket.
pub(super) fn probe_input<H: Handler>(conn: &mut Conn, input: &mut [u8], ctx: &mut Ctx<'_, H>) {
    let Conn { phase, peer, .. } = conn;
    let Phase::Ws(Ws { ws, who, rate }) = phase else {
        return;
    };
    let peer = &*peer;
    let Some(who) = who.as_deref_mut() else {
        return;
    };
    let stamp = ctx.stamp;
    let limits = ctx.env.shared.limits.clone();
    let me = ctx.token;
    let mut expiry = None;
    ws.handle_input(stamp, input, &limits, |event, tx| {
        let Some(sid) = who.probe.as_deref() else {
            // Moved already: what follows is the session's.
            let Some(sio) = who.sio.as_deref_mut() else {
                return;
            };
            let mut c = Client {
                sio,
                user: &mut who.user,
                token: &mut who.token,
                rate,
                peer,
            };
            if let Some(at) = sio::on_frame(&mut c, event, tx, ctx) {
                expiry = Some(at);
            }
            return;
        };
        let text = match event {
            WsEvent::Text(t) => t.as_str(),
            WsEvent::Binary(_) => "",
            _ => return,
        };
        ctx.env.stats.messages_received.inc();
        let polls = &mut ctx.env.polls;
        let Some(&token) = polls.by_sid.get(sid) else {
            tx.close(code::POLICY_VIOLATION, "session unknown");
            return;
        };
        let Some(p) = polls.get(token) else {
            return;
        };
        match text {
            "2probe" if p.probe.is_none() || p.probe == Some(me) => {
                p.probe = Some(me);
                let _ = tx.send_text("3probe");
                p.sio.session.noop();
                polls.settle_one(token);
            }
            "5" if p.probe == Some(me) => {
                let Some(p) = polls.take(token) else {
                    return;
                };
                polls.sessions.remove(token);
                polls.by_sid.remove(&p.sid);
                let stats = &ctx.env.stats;
                stats.socketio_polling.set(polls.len() as u64);
                stats.socketio_websocket.add(1);
                // The WebSocket counts as a connection itself (here, in
                // max_connections and against its address).
                polls.capacity.give_back(Count::Open);
                if p.counted_unjoined {
                    polls.capacity.give_back(Count::Unjoined);
                }
                polls.upgraded.insert(p.sid.clone());
                polls.moved.insert(p.sio.id.0, (me, p.sid.clone()));
                if let Some(w) = p.waiting {
                    polls.wake.push(w);
                    polls.active = true;
                }
                ctx.env.quotas.conns.lock().release(p.charge);
                let p = *p;
                log::debug("socket.io upgraded", &[("peer", peer)]);
                who.user = p.user;
                who.token = p.token;
                who.probe = None;
                expiry = p.expiry;
                let mut s = Box::new(p.sio);
                for out in s.session.take_output() {
                    let _ = match out {
                        // Noops were for the polling side.
                        Out::Text(t) if t == "6" => Ok(()),
                        Out::Text(t) => tx.send_text(t.as_str()),
                        Out::Binary(b) => tx.send_binary(&b),
                    };
                }
                who.sio = Some(s);
            }
            _ => tx.close(code::POLICY_VIOLATION, "expected a probe or an upgrade"),
        }
    });
    if let Some(at) = expiry {
        ws.set_expiry(at);
    }
}
