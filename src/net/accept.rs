//! Accepting: the listeners, the per-IP quota counted from `accept`, the
//! global cap, and the pending handshakes (SPEC.md §2).
//!
//! A direct client counts against `limits.max_connections_per_ip` from the
//! moment it is accepted; over its quota it is told `429` and closed at
//! once. Connections that have not finished their handshake sit in
//! [`Pending`], ordered by when they last sent a byte: when
//! `limits.max_pending_handshakes` are waiting, the one silent the longest
//! is closed to admit the new one. At most half that many are accepted per
//! turn, so every connection is read in the turn it was accepted before a
//! later batch can push it out.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};

use super::capacity::{Capacity, Count};
use super::clock::Now;
use super::conn::{Conn, Head, Io, Phase, Slot, Tls, Via};
use super::{LISTENER, REDIRECT, Server};
use crate::config::Config;
use crate::handler::Handler;
use crate::http::response;
use crate::log;
use crate::proto::Stamp;
use crate::proto::handshake::HeadReader;
use crate::router::{Charge, Shared};
use crate::security::client_ip::canonical;
use crate::tls::Session;

/// Connections accepted per turn at most (see the module docs for the
/// smaller bound that `max_pending_handshakes` sets).
const ACCEPT_BATCH: usize = 1024;
/// Connections beyond `max_connections` that are read only to answer 503.
const OVERFLOW: usize = 64;

/// The listening sockets and whether they may have connections waiting.
pub(super) struct Listeners {
    pub main: TcpListener,
    /// The plain listener that only redirects to https (`tls.redirect_listen`).
    pub redirect: Option<TcpListener>,
    pub main_ready: bool,
    pub redirect_ready: bool,
    /// Out of descriptors with nothing to give up: try again then.
    pub retry_at: Option<Stamp>,
}

impl Listeners {
    /// Binds `listen` (and `tls.redirect_listen` when TLS is on); with
    /// `reuse`, those addresses with `SO_REUSEPORT`, one listener of a
    /// group of loops.
    pub fn bind(
        config: &Config,
        tls: bool,
        poll: &Poll,
        reuse: Option<&Addresses>,
    ) -> io::Result<Listeners> {
        let backlog = config.limits.listen_backlog;
        let (main_addr, redirect_addr) = match reuse {
            Some(a) => (a.main, a.redirect),
            None => configured(config, tls)?,
        };
        let reuse_port = reuse.is_some();
        let mut main =
            listen(main_addr, backlog, reuse_port).map_err(named("listen", main_addr))?;
        let mut redirect = match redirect_addr {
            Some(addr) => Some(
                listen(addr, backlog, reuse_port).map_err(named("tls.redirect_listen", addr))?,
            ),
            None => None,
        };
        poll.registry()
            .register(&mut main, LISTENER, Interest::READABLE)?;
        if let Some(r) = &mut redirect {
            poll.registry().register(r, REDIRECT, Interest::READABLE)?;
        }
        Ok(Listeners {
            main,
            redirect_ready: redirect.is_some(),
            redirect,
            main_ready: true,
            retry_at: None,
        })
    }

    /// Whether to accept in this turn (a listener is ready and no back-off
    /// is running).
    pub fn may_accept(&mut self, now: Stamp) -> bool {
        let ready = self.main_ready || (self.redirect_ready && self.redirect.is_some());
        if !ready || self.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        self.retry_at = None;
        true
    }

    /// Whether the loop should not sleep: a listener may have more.
    pub fn wants_accept_now(&self) -> bool {
        (self.main_ready || (self.redirect_ready && self.redirect.is_some()))
            && self.retry_at.is_none()
    }

    /// Stops listening (a graceful shutdown).
    pub fn stop(&mut self, poll: &Poll) {
        let _ = poll.registry().deregister(&mut self.main);
        if let Some(r) = &mut self.redirect {
            let _ = poll.registry().deregister(r);
        }
        self.main_ready = false;
        self.redirect_ready = false;
    }
}

/// The addresses every loop of a group listens on, ports resolved.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Addresses {
    pub main: SocketAddr,
    pub redirect: Option<SocketAddr>,
}

impl Addresses {
    /// Reserves the configured addresses for a group of loops: each is
    /// bound once without `SO_REUSEPORT`, so that a port another process
    /// holds is an error naming it (and a port of 0 becomes a real one),
    /// then let go for the group's listeners to bind.
    pub fn reserve(config: &Config, tls: bool) -> io::Result<Addresses> {
        let (main, redirect) = configured(config, tls)?;
        let probe = |what: &'static str, addr: SocketAddr| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.local_addr())
                .map_err(named(what, addr))
        };
        Ok(Addresses {
            main: probe("listen", main)?,
            redirect: redirect
                .map(|r| probe("tls.redirect_listen", r))
                .transpose()?,
        })
    }
}

/// `listen` and, when TLS is on, `tls.redirect_listen`.
fn configured(config: &Config, tls: bool) -> io::Result<(SocketAddr, Option<SocketAddr>)> {
    let main = config
        .listen_addr()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
    let redirect = match (&config.tls.redirect_listen, tls) {
        (Some(r), true) => Some(r.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tls.redirect_listen: {r:?} is not an address"),
            )
        })?),
        _ => None,
    };
    Ok((main, redirect))
}

/// An error that names the address (and the setting) that failed.
fn named(what: &'static str, addr: SocketAddr) -> impl Fn(io::Error) -> io::Error {
    move |e: io::Error| {
        let hint = if e.kind() == io::ErrorKind::AddrInUse {
            " (another process listens there: stop it, or choose another port)"
        } else {
            ""
        };
        io::Error::new(e.kind(), format!("{what} {addr}: {e}{hint}"))
    }
}

/// The connections that have not finished their handshake, the longest
/// silent first (`limits.max_pending_handshakes`).
pub(super) struct Pending {
    set: BTreeSet<(Stamp, usize)>,
    /// Pending connections closed to admit others, since start.
    evicted: u64,
    /// The count across loops.
    capacity: Arc<Capacity>,
}

impl Pending {
    pub fn new(capacity: Arc<Capacity>) -> Pending {
        Pending {
            set: BTreeSet::new(),
            evicted: 0,
            capacity,
        }
    }

    /// Moves `token` from its old key to its new one (either may be none).
    pub fn update(&mut self, token: Token, before: Option<Stamp>, after: Option<Stamp>) {
        if before == after {
            return;
        }
        if let Some(b) = before {
            if self.set.remove(&(b, token.0)) {
                self.capacity.give_back(Count::Pending);
            }
        }
        if let Some(a) = after {
            if self.set.insert((a, token.0)) {
                self.capacity.take(Count::Pending);
            }
        }
    }
}

impl<H: Handler> Server<H> {
    pub(super) fn accept(&mut self, now: Now) {
        if self.listeners.redirect_ready && self.listeners.redirect.is_some() {
            self.listeners.redirect_ready = self.accept_from(now, true);
        }
        self.listeners.main_ready = self.accept_from(now, false);
    }

    /// Accepts from one listener; returns whether it may have more.
    fn accept_from(&mut self, now: Now, redirect: bool) -> bool {
        let batch = ACCEPT_BATCH.min((self.env.shared.config.limits.pending_cap() / 2).max(1));
        for _ in 0..batch {
            let listener = match (redirect, &self.listeners.redirect) {
                (true, Some(r)) => r,
                _ => &self.listeners.main,
            };
            match listener.accept() {
                Ok((sock, peer)) => self.admit(sock, peer, redirect, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_fd_exhaustion(&e) => {
                    // Out of descriptors: the connection silent the longest
                    // gives its up, and the loop accepts again. With none
                    // pending, established clients hold every descriptor:
                    // back off instead of spinning (they are served on).
                    if self.evict_pending("out of file descriptors", now) {
                        continue;
                    }
                    log::limited(
                        log::LogLevel::Warn,
                        "accept failed",
                        ("error", "out of file descriptors"),
                        &[("error", &e), ("open", &self.env.open)],
                    );
                    self.listeners.retry_at = Some(now.after(Duration::from_millis(100)));
                    return true;
                }
                Err(e) => log::debug("accept failed", &[("error", &e)]),
            }
        }
        // Batch used up: come back on the next turn.
        true
    }

    /// Takes in one accepted socket, or refuses it at once.
    fn admit(&mut self, sock: TcpStream, peer: SocketAddr, redirect: bool, now: Now) {
        let Some(charge) = self.charge_at_accept(&sock, peer, redirect) else {
            return;
        };
        let release = |env: &super::Env<H>| {
            if let Some(ip) = charge.ip() {
                env.quotas.conns.lock().release(ip);
            }
        };
        let cap = self.env.shared.config.limits.pending_cap();
        if self.env.capacity.taken(Count::Pending) >= cap
            && !self.evict_pending("limits.max_pending_handshakes", now)
        {
            // Every waiting handshake is another loop's: this one cannot
            // make room, and the cap holds across loops.
            log::limited(
                log::LogLevel::Info,
                "connection refused",
                ("reason", "limits.max_pending_handshakes"),
                &[
                    ("peer", &peer),
                    ("reason", &"limits.max_pending_handshakes"),
                ],
            );
            return release(&self.env);
        }
        let Some(tls) = self.tls_session(redirect, peer) else {
            return release(&self.env);
        };
        // Last, so that nothing above has to give the slot back.
        let Some(over) = self.capacity(peer) else {
            return release(&self.env);
        };
        #[cfg(not(target_os = "linux"))]
        let _ = sock.set_nodelay(true);
        let head_by = now.after(self.env.shared.config.limits.handshake_timeout());
        let via = match (&tls, self.https_port(redirect)) {
            (_, Some(port)) => Via::Redirect(port),
            (Some(_), None) => Via::Tls,
            (None, None) => Via::Plain,
        };
        let slot = if over { Slot::Overflow } else { Slot::Counted };
        let heard = now.stamp;
        let conn = new_conn(sock, peer, tls, via, slot, charge, heard, head_by);
        let Some(token) = self.register(conn) else {
            if !over {
                self.env.capacity.give_back(Count::Open);
            }
            return;
        };
        self.pending.update(token, None, Some(heard));
        match over {
            true => self.overflow += 1,
            false => {
                self.env.open += 1;
                self.env.stats.connections_open.set(self.env.open as u64);
            }
        }
        self.ready.push(token);
        self.schedule_at(token, head_by);
    }

    /// Whether a new connection is over `max_connections` (`Some(true)`:
    /// let in only to be told `503`), or refused outright because the
    /// overflow is full too (`None`).
    fn capacity(&self, peer: SocketAddr) -> Option<bool> {
        let max = self.env.shared.config.limits.max_connections;
        let over = !self.env.capacity.try_take(Count::Open, max);
        if over && self.overflow >= OVERFLOW {
            let fields: [(&str, &dyn std::fmt::Display); 3] = [
                ("peer", &peer),
                ("reason", &"server full"),
                ("max_connections", &max),
            ];
            log::limited(
                log::LogLevel::Warn,
                "connection refused",
                ("reason", "server full"),
                &fields,
            );
            return None;
        }
        Some(over)
    }

    /// Stores a new connection and registers its socket with the poller.
    pub(super) fn register(&mut self, conn: Conn) -> Option<Token> {
        let peer = conn.peer;
        let token = self.conns.insert(conn);
        let conn = self.conns.get_mut(token).expect("just inserted");
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self
            .poll
            .registry()
            .register(&mut conn.sock, token, interest)
        {
            Ok(()) => Some(token),
            Err(e) => {
                let fields: [(&str, &dyn std::fmt::Display); 2] = [("peer", &peer), ("error", &e)];
                log::limited(
                    log::LogLevel::Warn,
                    "register failed",
                    ("error", "register"),
                    &fields,
                );
                if let Some(ip) = self.conns.remove(token).and_then(|c| c.charge.ip()) {
                    self.env.quotas.conns.lock().release(ip);
                }
                None
            }
        }
    }

    /// A direct client counts against its address from this moment, before
    /// it sends a byte; over its quota it is refused here (`None`). Behind a
    /// trusted proxy the client is known only from the request head (see
    /// the router's admission).
    fn charge_at_accept(
        &mut self,
        sock: &TcpStream,
        peer: SocketAddr,
        redirect: bool,
    ) -> Option<Charge> {
        let ip = canonical(peer.ip());
        if self.env.shared.proxies.contains(ip) {
            return Some(Charge::Unknown);
        }
        let max = self.env.shared.config.limits.max_connections_per_ip;
        if self.env.quotas.conns.lock().charge(ip, max) {
            return Some(Charge::Ip(ip));
        }
        self.env.quotas.conns.lock().release(ip);
        refuse_over_quota(
            sock,
            peer,
            redirect || self.acceptor.is_none(),
            &self.env.shared,
        );
        None
    }

    /// A new TLS session on the TLS listener (`Some(None)` elsewhere);
    /// `None` when rustls cannot make one.
    fn tls_session(&self, redirect: bool, peer: SocketAddr) -> Option<Option<Box<Tls>>> {
        let acceptor = match &self.acceptor {
            Some(a) if !redirect => a,
            _ => return Some(None),
        };
        match Session::new(acceptor) {
            Ok(session) => Some(Some(Box::new(Tls {
                session,
                seen_bytes: false,
                close_notify_sent: false,
            }))),
            Err(e) => {
                let fields: [(&str, &dyn std::fmt::Display); 2] = [("peer", &peer), ("error", &e)];
                log::limited(
                    log::LogLevel::Warn,
                    "tls session failed",
                    ("error", "session"),
                    &fields,
                );
                None
            }
        }
    }

    /// On the redirect listener: the port of https (the main listener).
    fn https_port(&self, redirect: bool) -> Option<u16> {
        if redirect {
            self.local_addr().ok().map(|a| a.port())
        } else {
            None
        }
    }

    /// Closes the pending connection that has been silent the longest
    /// (SPEC.md §2, `limits.max_pending_handshakes`); false if none.
    pub(super) fn evict_pending(&mut self, why: &'static str, now: Now) -> bool {
        let Some(&(heard, t)) = self.pending.set.first() else {
            return false;
        };
        self.pending.evicted += 1;
        if let Some(conn) = self.conns.get_mut(Token(t)) {
            let silent = now.stamp.millis_since(heard);
            log::limited(
                log::LogLevel::Info,
                "pending connection closed",
                ("reason", why),
                &[
                    ("peer", &conn.peer),
                    ("reason", &why),
                    ("silent_ms", &silent),
                    ("closed_total", &self.pending.evicted),
                ],
            );
        }
        self.close(Token(t));
        // close() takes it out of the set; a stale entry goes too.
        self.pending.set.remove(&(heard, t));
        true
    }
}

/// A connection just accepted: reading its request head.
#[allow(clippy::too_many_arguments)]
fn new_conn(
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<Box<Tls>>,
    via: Via,
    slot: Slot,
    charge: Charge,
    heard: Stamp,
    deadline: Stamp,
) -> Conn {
    Conn {
        sock,
        peer,
        phase: Phase::Head(Head {
            reader: HeadReader::new(),
            out: Vec::new(),
            deadline,
            received: 0,
            heard,
            began: heard,
            parked: None,
        }),
        tls,
        via,
        slot,
        charge,
        io: io_at_accept(),
        timer_at: None,
    }
}

/// A new connection may be read and written at once (the request is often
/// there already).
fn io_at_accept() -> Io {
    let mut io = Io::default();
    io.set(Io::READABLE, true);
    io.set(Io::WRITABLE, true);
    io.set(Io::QUEUED, true);
    io
}

/// A direct client over `limits.max_connections_per_ip` at `accept`: it
/// is told `429` in one non-blocking write (plain listeners only: a TLS
/// client cannot read plain text) and closed at once, so it holds no
/// descriptor and costs no more than the accept.
fn refuse_over_quota(sock: &TcpStream, peer: SocketAddr, plain: bool, shared: &Shared) {
    const REASON: &str = "too many connections from this address";
    let client = canonical(peer.ip());
    log::limited(
        log::LogLevel::Warn,
        "connection refused",
        ("reason", REASON),
        &[
            ("peer", &peer),
            ("client", &client),
            ("reason", &REASON),
            ("limit", &"limits.max_connections_per_ip"),
            ("max", &shared.config.limits.max_connections_per_ip),
        ],
    );
    if plain {
        let mut out = Vec::with_capacity(512);
        response::write_error(&mut out, 429, REASON, &[("Retry-After", "1")], false);
        let mut sock = sock;
        let _ = sock.write(&out);
    }
}

/// Binds a non-blocking listener with `backlog` pending connections (std and
/// mio fix it at 128, which a burst of connections overflows: each dropped
/// SYN costs that client a one-second retransmit).
fn listen(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        // Every loop's listener on the same address: the kernel spreads
        // new connections over them.
        rustix::net::sockopt::set_socket_reuseport(&socket, true)?;
    }
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one
    // setsockopt per connection fewer (see the test below).
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(e.raw_os_error(), Some(23 | 24))
}

#[cfg(test)]
mod tests {
    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = super::listen("127.0.0.1:0".parse().unwrap(), 8, false).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
