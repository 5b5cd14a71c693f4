//! Driving one connection: read what the socket has (within a budget), feed
//! it to the connection's phase, write what that produced, then decide the
//! connection's fate and its next deadline. What the bytes mean to each
//! phase is in `phases`.

use std::io;
use std::time::{Duration, Instant};

use mio::Token;

use super::capacity::Count;
use super::clock::Now;
use super::conn::{Conn, Io, Phase, Slot, Verifying, Via};
use super::io::{feed_tls, flush, say_goodbye, settle};
use super::pool::{Buffers, KEEP_OUTPUT, SCRATCH};
use super::timers::Timers;
use super::{Env, READ_BUDGET, Server};
use crate::handler::{Closed, ConnId, Handler};
use crate::log;
use crate::proto::conn::{CloseInfo, Initiator};
use crate::proto::{Limits, Stamp};
use crate::router::{Peer, Router, unix_now};
use crate::security::BasicResult;

pub(super) use super::phases::{on_eof, process};

/// What to do with a connection after it was driven.
pub(crate) enum After {
    Keep,
    Close,
}

/// What the processing of input needs besides the connection.
pub(crate) struct Ctx<'a, H> {
    pub env: &'a mut Env<H>,
    pub token: Token,
    pub stamp: Stamp,
}

/// A [`Ctx`] over the server's fields (a macro, so that the connection can
/// be borrowed from `conns` at the same time).
macro_rules! ctx {
    ($server:expr, $token:expr, $now:expr) => {
        Ctx {
            env: &mut $server.env,
            token: $token,
            stamp: $now.stamp,
        }
    };
}

impl<H> Ctx<'_, H> {
    /// The stamp `d` from now (rounded up).
    pub fn after(&self, d: Duration) -> Stamp {
        Now { stamp: self.stamp }.after(d)
    }

    /// The connection's id, as the application sees it.
    pub fn conn_id(&self) -> ConnId {
        ConnId(self.token.0 as u64)
    }
}

impl<'a, H: Handler> Ctx<'a, H> {
    /// A router for this turn.
    pub fn router(&mut self) -> Router<'_> {
        Router {
            shared: &self.env.shared,
            auth: &mut self.env.auth,
            quotas: &mut self.env.quotas,
            protocols: self.env.handler.protocols(),
            sessions: &self.env.polls,
            stopping: self.env.stopping,
            stats: &self.env.stats,
            metrics: &self.env.metrics,
            refused: None,
            now: Instant::now(),
            unix_now: unix_now(),
        }
    }
}

/// The facts the router needs about `conn`.
pub(super) fn peer_of(conn: &Conn) -> Peer {
    Peer {
        addr: conn.peer,
        secure: conn.secure(),
        redirect_to: match conn.via {
            Via::Redirect(port) => Some(port),
            Via::Plain | Via::Tls => None,
        },
        over_capacity: conn.slot == Slot::Overflow,
    }
}

impl<H: Handler> Server<H> {
    /// Reads, processes and writes one connection, then decides its fate.
    pub(super) fn drive(&mut self, token: Token, now: Now) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.io.set(Io::QUEUED, false);
        // A WebSocket never goes back to an HTTP phase: it has no place in
        // the pending-handshake index before or after.
        let was_ws = matches!(conn.phase, Phase::Ws(_));
        let before = if was_ws { None } else { conn.pending_key() };
        let mut ctx = ctx!(self, token, now);
        let mut after = pump(conn, &mut self.bufs, &mut ctx);
        // Whether the connection is an open WebSocket: nothing to settle
        // (it is neither finished nor failed), and its deadline only moves
        // later while it stays open (see below).
        let open = matches!(&conn.phase, Phase::Ws(w) if w.ws.is_open());
        if matches!(after, After::Keep) && !open {
            after = settle(conn, &self.env.stats);
        }
        if let Phase::Ws(w) = &mut conn.phase {
            if w.ws.is_idle() {
                // The buffer that carried the `101` goes back: most
                // connections are idle after their handshake.
                let keep = if was_ws { KEEP_OUTPUT } else { 0 };
                w.ws.take_buffers(keep, |b| self.bufs.give(b));
            }
        }
        if !was_ws {
            let after_key = conn.pending_key();
            if before != after_key {
                self.pending.update(token, before, after_key);
            }
        }
        match after {
            After::Close => self.close(token),
            After::Keep => {
                let again = conn.io.has(Io::READABLE) && conn.wants_read(&self.env.shared.limits);
                if again && !conn.io.has(Io::QUEUED) {
                    conn.io.set(Io::QUEUED, true);
                    self.ready.push(token);
                }
                // An open WebSocket's deadline (idle ping, token expiry)
                // only moves later as messages come, so an entry armed
                // while it was open is early or on time: when it comes up,
                // the real deadline is armed instead. Working it out per
                // message would cost more than that one spare wake-up per
                // idle period. (The turn that opens it arms its deadline:
                // the handshake's entry may be later.) A Socket.IO
                // session that holds packets after a CONNECT reply wants
                // them out sooner.
                if !(was_ws && open && conn.timer_at.is_some()) || conn.sio_holding() {
                    rearm(conn, token, &mut self.timers, &self.env.shared.limits, now);
                }
            }
        }
    }

    /// Closes the connection or re-arms its deadline.
    pub(super) fn finish(&mut self, token: Token, after: After, now: Now) {
        match after {
            After::Close => self.close(token),
            After::Keep => {
                if let Some(conn) = self.conns.get_mut(token) {
                    rearm(conn, token, &mut self.timers, &self.env.shared.limits, now);
                }
            }
        }
    }

    /// Drops a connection: the last TLS word, the quota and counters, the
    /// close line, and the application's `on_close`.
    pub(super) fn close(&mut self, token: Token) {
        let Some(mut conn) = self.conns.remove(token) else {
            return;
        };
        say_goodbye(&mut conn);
        // On Linux closing the socket (it is never duplicated) removes it
        // from the epoll set: one system call fewer per connection.
        #[cfg(not(target_os = "linux"))]
        let _ = self.poll.registry().deregister(&mut conn.sock);
        if let Some(ip) = conn.charge.ip() {
            self.env.quotas.conns.lock().release(ip);
        }
        self.pending.update(token, conn.pending_key(), None);
        match conn.slot {
            Slot::Overflow => self.overflow -= 1,
            Slot::Counted => {
                self.env.capacity.give_back(Count::Open);
                self.env.open -= 1;
                self.env.stats.connections_open.set(self.env.open as u64);
            }
        }
        match &conn.phase {
            Phase::Head(h) => {
                if let Some(p) = &h.parked {
                    super::poll::unpark(&mut self.env, p.session, token);
                }
            }
            Phase::Body(b) => {
                if let Some(pp) = &b.poll {
                    super::poll::unpost(&mut self.env, pp.session);
                }
            }
            _ => {}
        }
        if let Phase::Ws(w) = &mut conn.phase {
            let info = match w.ws.close_info() {
                Some(info) => info,
                // Closed on a read, write or TLS error: still a 1006 to log.
                None => w.ws.handle_eof(),
            };
            log_close(&conn.peer, info);
            self.env.stats.closed(info.code);
            let user = w.who.as_ref().and_then(|who| who.user.as_deref());
            // A Socket.IO client is known to the handler by its session's
            // id, once it joined.
            let mut id = Some(ConnId(token.0 as u64));
            if let Some(who) = w.who.as_deref() {
                let sio = who.sio.as_deref();
                if sio.is_some() {
                    self.env.stats.socketio_websocket.sub(1);
                }
                if who.sio.is_some() || who.probe.is_some() {
                    self.env
                        .polls
                        .ws_gone(token, sio.map(|s| s.id), who.probe.as_deref());
                    id = sio.filter(|s| s.opened).map(|s| s.id);
                }
            }
            if let Some(id) = id {
                self.unsubscribe_all(id);
                let closed = Closed {
                    id,
                    user,
                    code: info.code,
                };
                self.env.handler.on_close(&closed);
            }
        }
    }

    /// Answers the connections whose password checks came back.
    pub(super) fn collect_verified(&mut self, now: Now) {
        while let Some(done) = self.env.hasher.try_recv() {
            let mut token = done.tag;
            if token.0 & super::poll::POLL_BIT != 0 {
                // A long-polling session's CONNECT (or one that moved).
                match self.env.polls.moved_to(ConnId(token.0 as u64)) {
                    Some(conn) => token = conn,
                    None => {
                        super::poll::password_checked(&mut self.env, token, done.ok, now.stamp);
                        continue;
                    }
                }
            }
            let Some(conn) = self.conns.get_mut(token) else {
                continue; // gone while its password was checked
            };
            if conn.io.has(Io::SOCKETIO) {
                // A Socket.IO CONNECT with a user name and password.
                let mut ctx = ctx!(self, token, now);
                super::sio::login_checked(conn, done.ok, &mut ctx);
                self.enqueue(token);
                continue;
            }
            let Phase::Verify(v) = &mut conn.phase else {
                continue;
            };
            let out = std::mem::take(&mut v.out);
            let kind = std::mem::replace(
                &mut v.kind,
                Box::new(Verifying::Login {
                    username: String::new(),
                }),
            );
            let mut ctx = ctx!(self, token, now);
            super::phases::verified(conn, *kind, out, done.ok, &mut ctx);
            self.enqueue(token);
        }
    }

    /// A connection's deadline came.
    pub(super) fn on_timeout(&mut self, token: Token, now: Now) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let before = conn.pending_key();
        let mut ctx = ctx!(self, token, now);
        let after = super::phases::timeout(conn, &mut ctx);
        // A quiet WebSocket gives back even a small output buffer.
        if let Phase::Ws(w) = &mut conn.phase {
            if w.ws.is_idle() {
                w.ws.take_buffers(0, |b| self.bufs.give(b));
            }
        }
        self.pending.update(token, before, conn.pending_key());
        self.finish(token, after, now);
    }
}

/// Re-arms a connection that stays: its next deadline, or the next turn
/// when that is due already (e.g. a timeout that queued output). Most
/// turns move the deadline later, which costs a comparison.
fn rearm(conn: &mut Conn, token: Token, timers: &mut Timers, limits: &Limits, now: Now) {
    let at = conn.deadline(limits).max(now.next_ms());
    timers.arm(conn, token, at);
}

/// The read-process-write loop of one connection for one turn, within
/// [`READ_BUDGET`].
fn pump<H: Handler>(conn: &mut Conn, bufs: &mut Buffers, ctx: &mut Ctx<'_, H>) -> After {
    let mut budget = READ_BUDGET;
    loop {
        // Input held back at the high-water mark goes first.
        if matches!(&conn.phase, Phase::Ws(w) if w.ws.wants_resume(&ctx.env.shared.limits)) {
            process(conn, &mut [], ctx);
        }
        while conn.io.has(Io::READABLE) && budget > 0 && conn.wants_read(&ctx.env.shared.limits) {
            match read_once(conn, bufs, ctx) {
                Ok(n) => budget = budget.saturating_sub(n),
                Err(after) => return after,
            }
        }
        // Write once for everything the reads produced.
        match flush(conn, &ctx.env.stats) {
            Ok(0) => {}
            Ok(_) => super::phases::extend_on_progress(conn, ctx),
            Err(e) => {
                log::debug("write failed", &[("peer", &conn.peer), ("error", &e)]);
                return After::Close;
            }
        }
        let resume =
            matches!(&conn.phase, Phase::Ws(w) if w.ws.wants_resume(&ctx.env.shared.limits));
        let readable = conn.io.has(Io::READABLE) && conn.wants_read(&ctx.env.shared.limits);
        if budget == 0 || !(resume || readable) {
            return After::Keep;
        }
    }
}

/// One read from the socket, processed; the bytes read, or how the
/// connection ends.
fn read_once<H: Handler>(
    conn: &mut Conn,
    bufs: &mut Buffers,
    ctx: &mut Ctx<'_, H>,
) -> Result<usize, After> {
    if let Phase::Ws(w) = &mut conn.phase {
        w.ws.provide_output_buffer(|| bufs.take());
    }
    match super::sys::recv(&conn.sock, &mut bufs.scratch) {
        Ok(0) => {
            conn.io.set(Io::READABLE, false);
            conn.io.set(Io::READ_EOF, true);
            match on_eof(conn, ctx) {
                After::Keep => Ok(0),
                close => Err(close),
            }
        }
        Ok(n) => {
            ctx.env.stats.bytes_received.add(n as u64);
            if conn.tls.is_some() {
                feed_tls(conn, &bufs.scratch[..n], &mut bufs.plain, ctx)?;
            } else if matches!(conn.phase, Phase::Ws(_)) {
                super::phases::ws_input(conn, &mut bufs.scratch[..n], ctx);
            } else {
                process(conn, &mut bufs.scratch[..n], ctx);
            }
            // Edge-triggered readiness: a short read emptied the socket,
            // and more data will raise a new event. This saves the read
            // that would only say EAGAIN, once the connection is a
            // WebSocket (the read that carried the upgrade included). HTTP
            // keeps reading to EAGAIN or EOF, so a half-close is seen with
            // the request.
            if n < SCRATCH && !conn.io.has(Io::HUP) && matches!(conn.phase, Phase::Ws(_)) {
                conn.io.set(Io::READABLE, false);
            }
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            conn.io.set(Io::READABLE, false);
            Ok(0)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => {
            log::debug("read failed", &[("peer", &conn.peer), ("error", &e)]);
            Err(After::Close)
        }
    }
}

/// A check of a Basic handshake came back: the same head is routed again.
pub(super) fn basic_result(ok: bool, username: String) -> BasicResult {
    if ok {
        BasicResult::Verified(username)
    } else {
        BasicResult::Refused
    }
}

fn log_close(peer: &std::net::SocketAddr, info: CloseInfo) {
    let by = match info.by {
        Initiator::Server => "server",
        Initiator::Client => "client",
    };
    log::info(
        "connection closed",
        &[
            ("peer", peer),
            ("code", &info.code),
            ("by", &by),
            ("reason", &info.reason),
        ],
    );
}
