//! The single-threaded mio event loop: listener, connections, deadlines.
//!
//! mio's rules bind everything here: readiness is edge-triggered, so every
//! socket is read and written until `WouldBlock` (cached per connection as
//! `readable` / `writable`); events may be spurious; `Interrupted` is
//! retried; and mio has no timers, so the earliest deadline becomes the poll
//! timeout. One connection gets at most [`READ_BUDGET`] bytes per turn; a
//! connection with more to read waits in the ready queue and the loop polls
//! with a zero timeout, so a fast client cannot starve the others.

mod clock;
mod slab;

pub use clock::Clock;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::app::App;
use crate::config::Config;
use crate::http::login;
use crate::http::{self, StaticFiles, response};
use crate::log;
use crate::proto::Stamp;
use crate::proto::conn::{Event, Initiator, WebSocket};
use crate::proto::error::HandshakeError;
use crate::proto::handshake::{self, HeadReader, UpgradeRequest};
use crate::proto::{self, Limits};
use crate::security::client_ip::{TrustedProxies, canonical};
use crate::security::hasher::{Hasher, Job};
use crate::security::hosts::AllowedHosts;
use crate::security::origin::OriginPolicy;
use crate::security::ratelimit::{ConnectionCounts, MessageRate, PerIp, Verdict};
use crate::security::{Auth, BasicResult, Gate, Identity};
use crate::tls::{Acceptor, Fed, Session};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const REDIRECT: Token = Token(usize::MAX - 2);
const WAKER: Token = Token(usize::MAX - 3);
/// Longest wait for a password check before the connection is dropped
/// (the queue is bounded, so this is only a safety net).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes read from one connection per turn of the loop.
pub const READ_BUDGET: usize = 256 * 1024;
/// Size of the loop's shared read buffer.
const SCRATCH: usize = 64 * 1024;
/// Connections accepted per turn before the others get a turn.
const ACCEPT_BATCH: usize = 1024;
/// Connections beyond `max_connections` that are read only to answer 503.
const OVERFLOW: usize = 64;
/// Buffers kept for reuse.
const POOL_MAX: usize = 1024;
/// Largest buffer kept for reuse; bigger ones are freed.
const POOL_BUF_MAX: usize = 128 * 1024;
/// Response bytes an HTTP connection may queue before it is not read.
const HTTP_OUT_HIGH: usize = 256 * 1024;

/// Everything connections share: settings, the application, the files.
#[derive(Debug)]
pub struct Shared {
    /// All settings.
    pub config: Config,
    /// Limits for the core.
    pub limits: Limits,
    /// The application.
    pub app: App,
    /// Files for the HTTP responder.
    pub files: StaticFiles,
    /// The Origin policy (SPEC.md §4).
    pub origins: OriginPolicy,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub proxies: TrustedProxies,
    /// The names requests may carry in `Host` (SPEC.md §2).
    pub hosts: AllowedHosts,
    /// Instants as the core's stamps.
    pub clock: Clock,
    /// Where the redirect listener sends clients.
    pub redirect_host: RedirectHost,
}

/// The https authority the redirect listener names in `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectHost {
    /// Host name, IPv4 address or bracketed IPv6 address.
    pub name: String,
    /// Port, when not the TLS listener's own.
    pub port: Option<u16>,
}

impl RedirectHost {
    /// `tls.redirect_host` when set, else `dns_name` (the certificate's
    /// first DNS name), else the listen address.
    pub fn new(configured: Option<&str>, dns_name: Option<&str>, listen: IpAddr) -> RedirectHost {
        if let Some(h) = configured.and_then(|c| crate::proto::host::Host::parse(c.as_bytes())) {
            return RedirectHost {
                name: h.name().to_owned(),
                port: h.port(),
            };
        }
        let name = match (dns_name, listen) {
            (Some(n), _) => n.to_owned(),
            (None, IpAddr::V4(v4)) => v4.to_string(),
            (None, IpAddr::V6(v6)) => format!("[{v6}]"),
        };
        RedirectHost { name, port: None }
    }
}

/// Per-client-IP state: the handshake rate and the open connections.
/// Both tables are bounded (see [`PerIp`] and [`ConnectionCounts`]).
struct Quotas {
    handshakes: PerIp,
    conns: ConnectionCounts,
}

enum Phase {
    /// Reading a request head; `out` holds responses not yet written.
    Head {
        reader: HeadReader,
        out: Vec<u8>,
        deadline: Stamp,
        /// Bytes ever received on this connection (0 = silent client).
        received: u64,
    },
    /// An open WebSocket connection.
    Ws(WebSocket),
    /// Reading the body of a `POST /login`.
    Body {
        out: Vec<u8>,
        body: Vec<u8>,
        need: usize,
        deadline: Stamp,
    },
    /// Waiting for a password check on the hashing workers; not read.
    Verify {
        out: Vec<u8>,
        kind: Box<Verifying>,
        deadline: Stamp,
    },
    /// A final response is being written; then the write side is shut and
    /// input discarded until EOF or the deadline, so the peer reads the
    /// response instead of a reset.
    Linger { out: Vec<u8>, deadline: Stamp },
}

/// What a password check is for.
enum Verifying {
    /// `POST /login`: answer with a token or `401`.
    Login { username: String },
    /// A handshake with `Authorization: Basic`; the head is kept to be
    /// answered when the result is back.
    Handshake {
        reader: HeadReader,
        received: u64,
        username: String,
        /// Bytes that came after the head in the same read (a client that
        /// did not wait for the `101`); fed to the connection once open.
        early: Vec<u8>,
    },
}

/// What the processing of input needs besides the connection.
struct Ctx<'a> {
    shared: &'a Shared,
    auth: &'a mut Auth,
    quotas: &'a mut Quotas,
    hasher: &'a Hasher<Token>,
    token: Token,
    now: Instant,
}

struct Conn {
    sock: TcpStream,
    peer: SocketAddr,
    phase: Phase,
    /// TLS session when the listener speaks TLS.
    tls: Option<Box<Session>>,
    /// Whether the connection came in on the TLS listener.
    secure: bool,
    /// Set on the redirect listener: answer every request with a 308 to
    /// https on this port.
    redirect_to: Option<u16>,
    /// Whether any byte arrived yet (to spot plain HTTP on a TLS port).
    seen_bytes: bool,
    close_notify_sent: bool,
    readable: bool,
    writable: bool,
    queued: bool,
    over_capacity: bool,
    write_shut: bool,
    /// The peer shut its write side (EOF read): nothing more to read, but
    /// a response may still be on its way out.
    read_eof: bool,
    /// The last event reported the peer's FIN (`EPOLLRDHUP`): read on to
    /// EOF even after a short read.
    hup: bool,
    /// Earliest deadline with an entry in the timer heap.
    timer_at: Option<Stamp>,
    /// The client address this connection counts against, once known.
    charged: Option<std::net::IpAddr>,
    /// The client had `limits.max_connections_per_ip` open already.
    over_quota: bool,
    /// Messages per second (SPEC.md §8 `rate.messages_per_conn_per_s`).
    msg_rate: MessageRate,
    /// While the connection has not finished its handshake: when it last
    /// sent a byte (or was accepted). Its key in `Server::pending`.
    heard: Option<Stamp>,
}

/// What to do with a connection after it was driven.
enum After {
    Keep,
    Close,
}

/// The server: bind with [`Server::bind`], then [`Server::run`].
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    /// Connections that have not finished their handshake, the longest
    /// silent first (`limits.max_pending_handshakes`).
    pending: BTreeSet<(Stamp, usize)>,
    /// Pending connections closed to admit others, since start.
    evicted: u64,
    timers: BinaryHeap<Reverse<(Stamp, usize)>>,
    ready: VecDeque<Token>,
    scratch: Vec<u8>,
    plain: Vec<u8>,
    pool: Vec<Vec<u8>>,
    shared: Arc<Shared>,
    acceptor: Option<Acceptor>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// The plain listener that only redirects to https (`tls.redirect_listen`).
    redirect: Option<TcpListener>,
    redirect_ready: bool,
    auth: Auth,
    quotas: Quotas,
    hasher: Hasher<Token>,
    open: usize,
    overflow: usize,
    accept_ready: bool,
    accept_retry_at: Option<Instant>,
    /// Set by a stop signal: when the server exits at the latest.
    stopping: Option<Instant>,
}

impl Server {
    /// Binds the listener.
    pub fn bind(shared: Shared, acceptor: Option<Acceptor>, auth: Auth) -> io::Result<Server> {
        let addr = shared
            .config
            .listen_addr()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
        let mut listener = listen(addr, shared.config.limits.listen_backlog)?;
        let mut redirect = match (&shared.config.tls.redirect_listen, &acceptor) {
            (Some(r), Some(_)) => {
                let addr: SocketAddr = r.parse().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("tls.redirect_listen: {r:?} is not an address"),
                    )
                })?;
                Some(listen(addr, shared.config.limits.listen_backlog)?)
            }
            _ => None,
        };
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(r) = &mut redirect {
            poll.registry().register(r, REDIRECT, Interest::READABLE)?;
        }
        let per_s = shared.config.rate.handshakes_per_ip_per_s;
        let quotas = Quotas {
            handshakes: PerIp::new(
                f64::from(per_s),
                per_s.saturating_mul(2),
                crate::security::ratelimit::DEFAULT_MAX_ENTRIES,
            ),
            conns: ConnectionCounts::default(),
        };
        // The workers hold the waker; it lives as long as they do.
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let hasher = Hasher::new(
            shared.config.auth.hash_workers,
            shared.config.auth.hash_queue,
            move || {
                let _ = waker.wake();
            },
        )?;
        Ok(Server {
            poll,
            listener,
            conns: Slab::new(),
            pending: BTreeSet::new(),
            evicted: 0,
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            scratch: vec![0; SCRATCH],
            plain: vec![0; SCRATCH],
            pool: Vec::new(),
            shared: Arc::new(shared),
            acceptor,
            signals: None,
            redirect_ready: redirect.is_some(),
            redirect,
            quotas,
            auth,
            hasher,
            open: 0,
            overflow: 0,
            accept_ready: true,
            accept_retry_at: None,
            stopping: None,
        })
    }

    /// Handles signals from now on: SIGHUP reloads the users file and the
    /// TLS certificate without dropping connections (a bad new file is
    /// logged and the old one kept); SIGINT and SIGTERM start a graceful
    /// shutdown (a second one exits at once). For the daemon; an embedding
    /// program may call [`Server::reload`] and [`Server::begin_shutdown`]
    /// itself.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Reloads what SIGHUP reloads: the users file, the TLS certificate
    /// and key. A bad new file is logged and the old one kept.
    pub fn reload(&mut self) {
        match self.auth.reload_users() {
            None => {}
            Some(Ok(n)) => {
                log::info("users file reloaded", &[("users", &n)]);
                warn_mixed_iterations(&self.auth);
            }
            Some(Err(e)) => log::warn(
                "users reload failed; keeping the current users",
                &[("error", &e)],
            ),
        }
        let tls = &self.shared.config.tls;
        let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
            log::info(
                "reload: nothing to reload (no TLS certificate configured)",
                &[],
            );
            return;
        };
        match crate::tls::load(cert, key, tls.min_version) {
            Ok(acceptor) => {
                log::info("tls certificate reloaded", &[("serial", &acceptor.serial)]);
                self.acceptor = Some(acceptor);
            }
            Err(e) => log::warn(
                "tls reload failed; keeping the current certificate",
                &[("error", &e)],
            ),
        }
    }

    /// The application connections are served by.
    pub fn app(&self) -> &App {
        &self.shared.app
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs the loop until an unrecoverable poll error, or until a
    /// graceful shutdown is done.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // busy_poll_us: after a turn with events, poll without sleeping for
        // a while; the wake-up from epoll_wait is most of a lone client's
        // round trip on an idle machine.
        let spin = Duration::from_micros(self.shared.config.busy_poll_us);
        let mut spin_until: Option<Instant> = None;
        loop {
            if let Some(until) = self.stopping {
                let now = Instant::now();
                if self.conns.is_empty() || now >= until {
                    let left = self.conns.tokens().len();
                    log::info("stopped", &[("connections_dropped", &left)]);
                    return Ok(());
                }
            }
            let timeout = match spin_until {
                Some(until) if Instant::now() < until => Some(Duration::ZERO),
                _ => self.poll_timeout(Instant::now()),
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if !events.is_empty() && !spin.is_zero() {
                spin_until = Some(now + spin);
            }
            for event in events.iter() {
                let token = event.token();
                if token == LISTENER {
                    self.accept_ready = true;
                    continue;
                }
                if token == REDIRECT {
                    self.redirect_ready = true;
                    continue;
                }
                if token == WAKER {
                    self.collect_verified(now);
                    continue;
                }
                if token == SIGNALS {
                    let pending: Vec<i32> = match self.signals.as_mut() {
                        Some(s) => s.pending().collect(),
                        None => Vec::new(),
                    };
                    for signal in pending {
                        if signal == signal_hook::consts::SIGHUP {
                            self.reload();
                        } else if self.stopping.is_some() {
                            log::warn("second stop signal: exiting now", &[]);
                            return Ok(());
                        } else {
                            self.begin_shutdown(now);
                        }
                    }
                    continue;
                }
                let Some(conn) = self.conns.get_mut(token) else {
                    continue;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    conn.readable = true;
                    conn.hup |= event.is_read_closed() || event.is_error();
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    conn.writable = true;
                }
                if !conn.queued {
                    conn.queued = true;
                    self.ready.push_back(token);
                }
            }
            if (self.accept_ready || self.redirect_ready)
                && self.stopping.is_none()
                && self.accept_retry_at.is_none_or(|t| now >= t)
            {
                self.accept_retry_at = None;
                self.accept(now);
            }
            // Drive each connection that had events or budget left, once.
            for _ in 0..self.ready.len() {
                let Some(token) = self.ready.pop_front() else {
                    break;
                };
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.queued = false;
                }
                self.drive(token, now);
            }
            self.fire_timers(Instant::now());
        }
    }

    /// Stops accepting, closes every WebSocket with `1001` and drops
    /// connections that are between requests; [`Server::run`] returns once
    /// all are gone or `shutdown_grace_ms` has passed (SPEC.md §7).
    pub fn begin_shutdown(&mut self, now: Instant) {
        let grace = Duration::from_millis(self.shared.config.shutdown_grace_ms);
        self.stopping = Some(now + grace);
        let _ = self.poll.registry().deregister(&mut self.listener);
        if let Some(r) = &mut self.redirect {
            let _ = self.poll.registry().deregister(r);
        }
        self.accept_ready = false;
        self.redirect_ready = false;
        let tokens = self.conns.tokens();
        log::info(
            "shutting down",
            &[
                ("connections", &tokens.len()),
                ("grace_ms", &grace.as_millis()),
            ],
        );
        let shared = Arc::clone(&self.shared);
        let limits = &shared.limits;
        for token in tokens {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let close = match &mut conn.phase {
                Phase::Ws(ws) => {
                    if ws.is_open() {
                        ws.close(
                            shared.clock.stamp(now),
                            limits,
                            proto::error::code::GOING_AWAY,
                            "server shutting down",
                        );
                    }
                    false
                }
                Phase::Linger { .. } => false,
                Phase::Head { out, .. } if !out.is_empty() => {
                    // A response on its way out: finish it, then close.
                    let out = std::mem::take(out);
                    conn.phase = Phase::Linger {
                        out,
                        deadline: self.shared.clock.ceil(now + limits.close_timeout),
                    };
                    false
                }
                // Between requests, or a request not answered yet.
                Phase::Head { .. } | Phase::Body { .. } | Phase::Verify { .. } => true,
            };
            if close {
                self.close(token);
            } else if !conn.queued {
                conn.queued = true;
                self.ready.push_back(token);
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty()
            || ((self.accept_ready || (self.redirect_ready && self.redirect.is_some()))
                && self.accept_retry_at.is_none())
        {
            return Some(Duration::ZERO);
        }
        let mut next = self
            .timers
            .peek()
            .map(|Reverse((t, _))| self.shared.clock.instant(*t));
        if let Some(t) = self.stopping {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if let Some(t) = self.accept_retry_at {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        // Round up to whole milliseconds so a deadline is never polled early.
        next.map(|t| {
            let d = t.saturating_duration_since(now);
            Duration::from_millis(
                d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0),
            )
        })
    }

    /// The address of the redirect listener, when there is one.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|r| r.local_addr().ok())
    }

    fn accept(&mut self, now: Instant) {
        if self.redirect_ready && self.redirect.is_some() {
            self.redirect_ready = self.accept_from(now, true);
        }
        self.accept_ready = self.accept_from(now, false);
    }

    /// Accepts from one listener; returns whether it may have more.
    ///
    /// At most half of `limits.max_pending_handshakes` per turn: every
    /// connection accepted in a turn is read in that turn before the next
    /// batch can push it out of the pending set, so a client whose request
    /// is already there always gets its answer.
    fn accept_from(&mut self, now: Instant, redirect: bool) -> bool {
        let redirect_to = if redirect {
            self.local_addr().ok().map(|a| a.port())
        } else {
            None
        };
        let batch = ACCEPT_BATCH.min((self.shared.config.limits.pending_cap() / 2).max(1));
        for _ in 0..batch {
            let listener = match (redirect, &self.redirect) {
                (true, Some(r)) => r,
                _ => &self.listener,
            };
            let (sock, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
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
                        &[("error", &e), ("open", &self.open)],
                    );
                    self.accept_retry_at = Some(now + Duration::from_millis(100));
                    return true;
                }
                Err(e) => {
                    log::debug("accept failed", &[("error", &e)]);
                    continue;
                }
            };
            let max = self.shared.config.limits.max_connections;
            let over = self.open >= max;
            if over && self.overflow >= OVERFLOW {
                log::limited(
                    log::LogLevel::Warn,
                    "connection refused",
                    ("reason", "server full"),
                    &[
                        ("peer", &peer),
                        ("reason", &"server full"),
                        ("max_connections", &max),
                    ],
                );
                continue;
            }
            // A direct client counts against its address from this moment,
            // before it sends a byte; behind a trusted proxy the client is
            // known only from the request head (see `admission`).
            let ip = canonical(peer.ip());
            let charged = if self.shared.proxies.contains(ip) {
                None
            } else {
                let max = self.shared.config.limits.max_connections_per_ip;
                if !self.quotas.conns.charge(ip, max) {
                    self.quotas.conns.release(ip);
                    refuse_over_quota(
                        sock,
                        peer,
                        redirect || self.acceptor.is_none(),
                        &self.shared,
                    );
                    continue;
                }
                Some(ip)
            };
            if self.pending.len() >= self.shared.config.limits.pending_cap() {
                self.evict_pending("limits.max_pending_handshakes", now);
            }
            #[cfg(not(target_os = "linux"))]
            let _ = sock.set_nodelay(true);
            let tls = match &self.acceptor {
                Some(_) if redirect => None,
                Some(a) => match Session::new(a) {
                    Ok(s) => Some(Box::new(s)),
                    Err(e) => {
                        log::limited(
                            log::LogLevel::Warn,
                            "tls session failed",
                            ("error", "session"),
                            &[("peer", &peer), ("error", &e)],
                        );
                        if let Some(ip) = charged {
                            self.quotas.conns.release(ip);
                        }
                        continue;
                    }
                },
                None => None,
            };
            let deadline = now + self.shared.config.limits.handshake_timeout();
            let rate = self.shared.config.rate.messages_per_conn_per_s;
            let heard = self.shared.clock.stamp(now);
            let conn = Conn {
                charged,
                over_quota: false,
                msg_rate: MessageRate::new(rate.saturating_mul(2), self.shared.clock.stamp(now)),
                sock,
                peer,
                secure: tls.is_some(),
                redirect_to,
                tls,
                seen_bytes: false,
                close_notify_sent: false,
                phase: Phase::Head {
                    reader: HeadReader::new(),
                    out: Vec::new(),
                    deadline: self.shared.clock.ceil(deadline),
                    received: 0,
                },
                readable: true,
                writable: true,
                queued: true,
                over_capacity: over,
                write_shut: false,
                read_eof: false,
                hup: false,
                timer_at: None,
                heard: Some(heard),
            };
            let token = self.conns.insert(conn);
            let conn = self.conns.get_mut(token).expect("just inserted");
            if let Err(e) = self.poll.registry().register(
                &mut conn.sock,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::limited(
                    log::LogLevel::Warn,
                    "register failed",
                    ("error", "register"),
                    &[("peer", &peer), ("error", &e)],
                );
                if let Some(ip) = self.conns.remove(token).and_then(|c| c.charged) {
                    self.quotas.conns.release(ip);
                }
                continue;
            }
            self.pending.insert((heard, token.0));
            if over {
                self.overflow += 1;
            } else {
                self.open += 1;
            }
            self.ready.push_back(token);
            self.schedule(token, deadline);
        }
        // Batch used up: come back on the next turn.
        true
    }

    /// Closes the pending connection that has been silent the longest
    /// (SPEC.md §2, `limits.max_pending_handshakes`); false if none.
    fn evict_pending(&mut self, why: &'static str, now: Instant) -> bool {
        let Some(&(heard, t)) = self.pending.first() else {
            return false;
        };
        self.evicted += 1;
        if let Some(conn) = self.conns.get_mut(Token(t)) {
            log::limited(
                log::LogLevel::Info,
                "pending connection closed",
                ("reason", why),
                &[
                    ("peer", &conn.peer),
                    ("reason", &why),
                    (
                        "silent_ms",
                        &self.shared.clock.stamp(now).millis_since(heard),
                    ),
                    ("closed_total", &self.evicted),
                ],
            );
        }
        self.close(Token(t));
        // close() takes it out of the set; a stale entry goes too.
        self.pending.remove(&(heard, t));
        true
    }

    /// Keeps `pending` in step with the connection's phase: a connection
    /// that finished its handshake (or waits on the server) leaves it; one
    /// that sent bytes moves to the back. Cheap for open WebSockets.
    fn track_pending(&mut self, token: Token, got_bytes: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let waiting = matches!(conn.phase, Phase::Head { .. } | Phase::Body { .. });
        match conn.heard {
            None if !waiting => {}
            None => {
                let at = self.shared.clock.stamp(now);
                conn.heard = Some(at);
                self.pending.insert((at, token.0));
            }
            Some(old) if !waiting => {
                self.pending.remove(&(old, token.0));
                conn.heard = None;
            }
            Some(old) if got_bytes => {
                let at = self.shared.clock.stamp(now);
                if at != old {
                    self.pending.remove(&(old, token.0));
                    self.pending.insert((at, token.0));
                    conn.heard = Some(at);
                }
            }
            Some(_) => {}
        }
    }

    fn schedule(&mut self, token: Token, at: Instant) {
        // Rounded up: a timer that fired before its instant would find
        // nothing to do and be scheduled again for the same moment.
        let at = self.shared.clock.ceil(at);
        self.schedule_at(token, at);
    }

    fn schedule_at(&mut self, token: Token, at: Stamp) {
        if let Some(conn) = self.conns.get_mut(token) {
            if conn.timer_at.is_none_or(|t| at < t) {
                conn.timer_at = Some(at);
                self.timers.push(Reverse((at, token.0)));
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let stamp = self.shared.clock.stamp(now);
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > stamp {
                break;
            }
            self.timers.pop();
            let token = Token(t);
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.timer_at != Some(at) {
                continue; // superseded by an earlier entry
            }
            conn.timer_at = None;
            let after = on_timeout(conn, &self.shared, now);
            self.track_pending(token, false, now);
            self.finish(token, after, now);
        }
    }

    /// Answers the connections whose password checks came back.
    fn collect_verified(&mut self, now: Instant) {
        while let Some(done) = self.hasher.try_recv() {
            let token = done.tag;
            let Some(conn) = self.conns.get_mut(token) else {
                continue; // gone while its password was checked
            };
            let Phase::Verify { out, kind, .. } = &mut conn.phase else {
                continue;
            };
            let out = std::mem::take(out);
            match *std::mem::replace(
                kind,
                Box::new(Verifying::Login {
                    username: String::new(),
                }),
            ) {
                Verifying::Login { username } => {
                    let mut out = out;
                    if done.ok {
                        let jwt = self.auth.issue(&username, unix_now());
                        let hsts = hsts(conn, &self.shared);
                        let ttl = self.auth.token_ttl_s;
                        login::write_success(&jwt, ttl, conn.secure, hsts, &mut out);
                        log::info(
                            "login succeeded",
                            &[("peer", &conn.peer), ("user", &username)],
                        );
                    } else {
                        let hsts = hsts(conn, &self.shared);
                        login::write_refusal(login::INVALID_CREDENTIALS, &[], hsts, &mut out);
                        log::limited(
                            log::LogLevel::Info,
                            "login refused",
                            ("reason", login::INVALID_CREDENTIALS.error),
                            &[
                                ("peer", &conn.peer),
                                ("status", &401),
                                ("reason", &login::INVALID_CREDENTIALS.error),
                            ],
                        );
                    }
                    conn.phase = Phase::Linger {
                        out,
                        deadline: self
                            .shared
                            .clock
                            .ceil(now + self.shared.limits.close_timeout),
                    };
                }
                Verifying::Handshake {
                    reader,
                    received,
                    username,
                    mut early,
                } => {
                    let result = if done.ok {
                        BasicResult::Verified(username)
                    } else {
                        BasicResult::Refused
                    };
                    conn.phase = Phase::Head {
                        reader,
                        out,
                        deadline: self
                            .shared
                            .clock
                            .ceil(now + self.shared.config.limits.handshake_timeout()),
                        received,
                    };
                    let mut ctx = Ctx {
                        shared: &self.shared,
                        auth: &mut self.auth,
                        quotas: &mut self.quotas,
                        hasher: &self.hasher,
                        token,
                        now,
                    };
                    handle_head(conn, &mut ctx, Some(result));
                    if !early.is_empty() {
                        process(conn, &mut early, &mut ctx);
                    }
                }
            }
            if !conn.queued {
                conn.queued = true;
                self.ready.push_back(token);
            }
        }
    }

    /// Reads, processes and writes one connection, then decides its fate.
    fn drive(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let mut budget = READ_BUDGET;
        let mut after = After::Keep;
        let mut ctx = Ctx {
            shared: &self.shared,
            auth: &mut self.auth,
            quotas: &mut self.quotas,
            hasher: &self.hasher,
            token,
            now,
        };
        loop {
            // Input held back at the high-water mark goes first.
            if let Phase::Ws(ws) = &conn.phase {
                if ws.wants_resume(&self.shared.limits) {
                    process(conn, &mut [], &mut ctx);
                }
            }
            // Read and process everything available, within the budget.
            while conn.readable && budget > 0 && wants_read(conn, &self.shared.limits) {
                if let Phase::Ws(ws) = &mut conn.phase {
                    ws.provide_output_buffer(|| self.pool.pop());
                }
                match conn.sock.read(&mut self.scratch) {
                    Ok(0) => {
                        conn.readable = false;
                        conn.read_eof = true;
                        after = on_eof(conn, now, &self.shared);
                        break;
                    }
                    Ok(n) => {
                        budget = budget.saturating_sub(n);
                        let short = n < self.scratch.len();
                        let first = !conn.seen_bytes;
                        conn.seen_bytes = true;
                        if conn.tls.is_some() {
                            let input = &self.scratch[..n];
                            let plain = &mut self.plain;
                            if let Err(a) = feed_tls(conn, input, first, plain, &mut ctx) {
                                after = a;
                                break;
                            }
                        } else {
                            let input = &mut self.scratch[..n];
                            process(conn, input, &mut ctx);
                        }
                        // Edge-triggered readiness: a short read emptied the
                        // socket, and more data will raise a new event. This
                        // saves the read that would only say EAGAIN, once the
                        // connection is a WebSocket (the read that carried
                        // the upgrade included). HTTP keeps reading to EAGAIN
                        // or EOF, so a half-close is seen with the request.
                        if short && !conn.hup && matches!(conn.phase, Phase::Ws(_)) {
                            conn.readable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug("read failed", &[("peer", &conn.peer), ("error", &e)]);
                        after = After::Close;
                        break;
                    }
                }
            }
            // Write once for everything the reads produced.
            match flush(conn) {
                Ok(0) => {}
                Ok(_) => extend_on_progress(conn, now, &self.shared),
                Err(e) => {
                    log::debug("write failed", &[("peer", &conn.peer), ("error", &e)]);
                    after = After::Close;
                }
            }
            let resume =
                matches!(&conn.phase, Phase::Ws(ws) if ws.wants_resume(&self.shared.limits));
            let more = matches!(after, After::Keep)
                && budget > 0
                && (resume || (conn.readable && wants_read(conn, &self.shared.limits)));
            if !more {
                break;
            }
        }
        if matches!(after, After::Keep) {
            after = settle(conn);
        }
        if let Phase::Ws(ws) = &mut conn.phase {
            if ws.is_idle() {
                let pool = &mut self.pool;
                ws.take_buffers(|b| {
                    if pool.len() < POOL_MAX && b.capacity() <= POOL_BUF_MAX {
                        pool.push(b);
                    }
                });
            }
        }
        if matches!(after, After::Keep)
            && conn.readable
            && wants_read(conn, &self.shared.limits)
            && !conn.queued
        {
            conn.queued = true;
            self.ready.push_back(token);
        }
        if conn.heard.is_some() || !matches!(conn.phase, Phase::Ws(_)) {
            self.track_pending(token, budget < READ_BUDGET, now);
        }
        self.finish(token, after, now);
    }

    /// Closes the connection or re-arms its deadline.
    fn finish(&mut self, token: Token, after: After, now: Instant) {
        match after {
            After::Close => self.close(token),
            After::Keep => {
                let Some(conn) = self.conns.get_mut(token) else {
                    return;
                };
                let at = deadline(conn, &self.shared.limits);
                let now = self.shared.clock.ceil(now);
                // Already due (e.g. a timeout that queued output): next turn.
                self.schedule_at(token, at.max(now));
            }
        }
    }

    fn close(&mut self, token: Token) {
        let Some(mut conn) = self.conns.remove(token) else {
            return;
        };
        if let Some(s) = &mut conn.tls {
            // Best effort: tell the peer the TLS stream ends here.
            if !conn.close_notify_sent && !s.is_handshaking() {
                s.send_close_notify();
                let _ = s.write_tls(&mut conn.sock);
            }
        }
        // On Linux closing the socket (it is never duplicated) removes it
        // from the epoll set: one system call fewer per connection.
        #[cfg(not(target_os = "linux"))]
        let _ = self.poll.registry().deregister(&mut conn.sock);
        if let Some(ip) = conn.charged {
            self.quotas.conns.release(ip);
        }
        if let Some(heard) = conn.heard {
            self.pending.remove(&(heard, token.0));
        }
        if conn.over_capacity {
            self.overflow -= 1;
        } else {
            self.open -= 1;
        }
        if let Phase::Ws(ws) = &mut conn.phase {
            if ws.close_info().is_none() {
                // Closed on a read, write or TLS error: still a 1006 to log.
                ws.handle_eof();
            }
            log_close(&conn.peer, ws);
        }
    }
}

/// The limits the core enforces, from the `limits` settings.
pub fn core_limits(l: &crate::config::LimitsConfig) -> Limits {
    Limits {
        max_request_head_bytes: l.max_request_head_bytes,
        max_headers: l.max_headers,
        max_frame_bytes: l.max_frame_bytes,
        max_message_bytes: l.max_message_bytes,
        max_fragments: l.max_fragments,
        max_outbound_bytes: l.max_outbound_bytes,
        idle_timeout: Duration::from_millis(l.idle_timeout_ms),
        close_timeout: Duration::from_millis(l.close_timeout_ms),
    }
}

/// Checks the settings the policies parse (origins, hosts, proxies, the
/// redirect host): a bad entry is an error naming it. `Config::validate`
/// checks the rest; config itself imports none of the policies.
pub fn check_policies(config: &Config) -> Result<(), String> {
    OriginPolicy::new(&config.allowed_origins, config.require_origin)?;
    let listen = config.listen_addr().map_err(|e| e.0)?;
    AllowedHosts::new(&config.allowed_hosts, listen.ip())?;
    TrustedProxies::new(&config.trusted_proxies)?;
    if let Some(h) = &config.tls.redirect_host {
        if crate::proto::host::Host::parse(h.as_bytes()).is_none() || h.trim() != h {
            return Err(format!(
                "tls.redirect_host: {h:?} is not a host like app.example.com or app.example.com:8443"
            ));
        }
    }
    Ok(())
}

/// Warns when stored hashes use different iteration counts.
pub fn warn_mixed_iterations(auth: &Auth) {
    if let Some((lo, hi)) = auth.mixed_iterations() {
        log::warn(
            "users file mixes PBKDF2 iteration counts: logins of users with fewer iterations answer faster than unknown names; rehash them with palisade users add",
            &[("min", &lo), ("max", &hi)],
        );
    }
}

/// Binds a non-blocking listener with `backlog` pending connections (std and
/// mio fix it at 128, which a burst of connections overflows: each dropped
/// SYN costs that client a one-second retransmit).
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one
    // setsockopt per connection fewer (see the test below).
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
}

/// A direct client over `limits.max_connections_per_ip` at `accept`: it
/// is told `429` in one non-blocking write (plain listeners only: a TLS
/// client cannot read plain text) and closed at once, so it holds no
/// descriptor and costs no more than the accept.
fn refuse_over_quota(mut sock: TcpStream, peer: SocketAddr, plain: bool, shared: &Shared) {
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
        let _ = sock.write(&out);
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(e.raw_os_error(), Some(23 | 24))
}

fn log_close(peer: &SocketAddr, ws: &WebSocket) {
    let Some(info) = ws.close_info() else {
        return;
    };
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

fn wants_read(conn: &Conn, limits: &Limits) -> bool {
    if conn.read_eof {
        return false;
    }
    match &conn.phase {
        Phase::Head { out, .. } => out.len() < HTTP_OUT_HIGH,
        Phase::Body { .. } | Phase::Linger { .. } => true,
        Phase::Verify { .. } => false,
        Phase::Ws(ws) => ws.wants_read(limits),
    }
}

fn deadline(conn: &Conn, limits: &Limits) -> Stamp {
    match &conn.phase {
        Phase::Head { deadline, .. }
        | Phase::Body { deadline, .. }
        | Phase::Verify { deadline, .. }
        | Phase::Linger { deadline, .. } => *deadline,
        Phase::Ws(ws) => ws.poll_timeout(limits),
    }
}

fn pending_output(phase: &Phase) -> &[u8] {
    match phase {
        Phase::Head { out, .. }
        | Phase::Body { out, .. }
        | Phase::Verify { out, .. }
        | Phase::Linger { out, .. } => out,
        Phase::Ws(ws) => ws.output(),
    }
}

fn consume_output(phase: &mut Phase, n: usize) {
    match phase {
        Phase::Head { out, .. }
        | Phase::Body { out, .. }
        | Phase::Verify { out, .. }
        | Phase::Linger { out, .. } => {
            out.drain(..n);
        }
        Phase::Ws(ws) => ws.consume_output(n),
    }
}

/// The phase's unsent output, taken out (to start a final response after it).
fn take_output(phase: &mut Phase) -> Vec<u8> {
    match phase {
        Phase::Head { out, .. }
        | Phase::Body { out, .. }
        | Phase::Verify { out, .. }
        | Phase::Linger { out, .. } => std::mem::take(out),
        Phase::Ws(_) => Vec::new(),
    }
}

/// Moves plaintext into rustls and writes ciphertext until the socket is
/// full or nothing is left. A full rustls buffer just stops the move.
fn flush_tls(conn: &mut Conn) -> io::Result<usize> {
    let Conn {
        tls: Some(session),
        phase,
        sock,
        writable,
        ..
    } = conn
    else {
        return Ok(0);
    };
    let mut taken = 0;
    loop {
        let buf = pending_output(phase);
        let moved = if buf.is_empty() {
            0
        } else {
            session.write_plaintext(buf)
        };
        consume_output(phase, moved);
        taken += moved;
        while session.wants_write() {
            if !*writable {
                return Ok(taken);
            }
            match session.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *writable = false;
                    return Ok(taken);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if moved == 0 {
            return Ok(taken);
        }
    }
}

/// An HTTP response still being written keeps its connection as long as
/// it moves: after each write that made progress, the peer has
/// `limits.idle_timeout_ms` for the next one (a large file to a slow client
/// is not cut off at the request's deadline; the kernel may not report the
/// socket writable again until half of a multi-megabyte send buffer has
/// drained). Once everything is out, the usual short deadlines apply.
fn extend_on_progress(conn: &mut Conn, now: Instant, shared: &Shared) {
    let limits = &shared.limits;
    match &mut conn.phase {
        Phase::Head { out, deadline, .. } => {
            let next = if out.is_empty() {
                shared.config.limits.handshake_timeout()
            } else {
                limits.idle_timeout
            };
            *deadline = shared.clock.ceil(now + next);
        }
        Phase::Linger { out, deadline } => {
            let next = if out.is_empty() {
                limits.close_timeout
            } else {
                limits.idle_timeout
            };
            *deadline = shared.clock.ceil(now + next);
        }
        _ => {}
    }
}

/// Writes queued output until it is gone or the socket is full; returns
/// how many bytes of it were taken.
fn flush(conn: &mut Conn) -> io::Result<usize> {
    if conn.tls.is_some() {
        return flush_tls(conn);
    }
    let mut written = 0;
    loop {
        if !conn.writable {
            return Ok(written);
        }
        let buf = pending_output(&conn.phase);
        if buf.is_empty() {
            return Ok(written);
        }
        match conn.sock.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                consume_output(&mut conn.phase, n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// After reading and writing: shut the write side or close when due.
fn settle(conn: &mut Conn) -> After {
    let shut_now = match &conn.phase {
        Phase::Linger { out, .. } => {
            if out.is_empty() && conn.read_eof {
                return After::Close; // all sent, and the peer is gone
            }
            out.is_empty()
        }
        Phase::Ws(ws) => {
            if ws.is_finished() {
                return After::Close;
            }
            ws.wants_shutdown_write()
        }
        Phase::Head { .. } | Phase::Body { .. } | Phase::Verify { .. } => false,
    };
    if shut_now && !conn.write_shut {
        if conn.tls.is_some() {
            if !conn.close_notify_sent {
                conn.close_notify_sent = true;
                if let Some(s) = &mut conn.tls {
                    s.send_close_notify();
                }
                if flush(conn).is_err() {
                    return After::Close;
                }
            }
            if conn.tls.as_ref().is_some_and(|s| s.wants_write()) {
                return After::Keep; // shut once the alert is out
            }
        }
        conn.write_shut = true;
        if conn.sock.shutdown(Shutdown::Write).is_err() {
            return After::Close;
        }
    }
    After::Keep
}

fn on_eof(conn: &mut Conn, now: Instant, shared: &Shared) -> After {
    let limits = &shared.limits;
    if let Phase::Head { out, .. } | Phase::Linger { out, .. } = &mut conn.phase {
        if !out.is_empty() {
            // The peer is done sending, not necessarily done reading (a
            // request followed by a half-close): finish the responses.
            let out = std::mem::take(out);
            conn.phase = Phase::Linger {
                out,
                deadline: shared.clock.ceil(now + limits.close_timeout),
            };
            return After::Keep;
        }
    }
    match &mut conn.phase {
        Phase::Head {
            reader, received, ..
        } => {
            if !reader.is_empty() {
                log::debug(
                    "closed before the request head was complete",
                    &[("peer", &conn.peer), ("received", received)],
                );
            }
            After::Close
        }
        Phase::Ws(ws) => {
            ws.handle_eof();
            After::Close
        }
        Phase::Body { body, need, .. } => {
            log::limited(
                log::LogLevel::Info,
                "login refused",
                ("reason", "closed before the body was complete"),
                &[
                    ("peer", &conn.peer),
                    ("reason", &"closed before the body was complete"),
                    ("received", &body.len()),
                    ("expected", need),
                ],
            );
            After::Close
        }
        Phase::Verify { .. } | Phase::Linger { .. } => After::Close,
    }
}

fn on_timeout(conn: &mut Conn, shared: &Shared, now: Instant) -> After {
    match &mut conn.phase {
        Phase::Head {
            reader,
            out,
            deadline,
            received,
        } => {
            if now < shared.clock.instant(*deadline) {
                return After::Keep;
            }
            if conn.tls.as_ref().is_some_and(|s| s.is_handshaking()) {
                // Nothing can be sent before the TLS handshake: just close.
                log::limited(
                    log::LogLevel::Info,
                    "tls handshake timed out",
                    ("reason", "tls handshake timed out"),
                    &[("peer", &conn.peer), ("received_any", &conn.seen_bytes)],
                );
                return After::Close;
            }
            if *received > 0 && reader.is_empty() && out.is_empty() {
                // An idle keep-alive connection: close quietly.
                return After::Close;
            }
            if reader.is_empty() && !out.is_empty() {
                // Responses the peer stopped reading: nothing to add.
                log::debug(
                    "response not read in time",
                    &[("peer", &conn.peer), ("unsent", &out.len())],
                );
                return After::Close;
            }
            let e = HandshakeError::Timeout;
            log::limited(
                log::LogLevel::Info,
                "handshake refused",
                ("reason", e.reason()),
                &[
                    ("peer", &conn.peer),
                    ("status", &e.status()),
                    ("reason", &e.reason()),
                    ("received", received),
                ],
            );
            let mut out = std::mem::take(out);
            let hsts = conn.secure && shared.config.tls.hsts;
            response::write_error(&mut out, e.status(), e.reason(), &[], hsts);
            conn.phase = Phase::Linger {
                out,
                deadline: shared.clock.ceil(now + shared.limits.close_timeout),
            };
            let _ = flush(conn);
            settle(conn)
        }
        Phase::Ws(ws) => match ws.handle_timeout(shared.clock.stamp(now), &shared.limits) {
            Some(expired) => {
                log::limited(
                    log::LogLevel::Info,
                    "connection timed out",
                    ("timeout", "ws"),
                    &[
                        ("peer", &conn.peer),
                        (
                            "timeout",
                            &match expired {
                                proto::conn::Expired::Idle => "idle",
                                proto::conn::Expired::Close => "close",
                            },
                        ),
                    ],
                );
                After::Close
            }
            None => {
                let _ = flush(conn);
                After::Keep
            }
        },
        Phase::Body {
            deadline,
            body,
            need,
            ..
        } => {
            if now < shared.clock.instant(*deadline) {
                return After::Keep;
            }
            let detail = format!("{} of {} body bytes", body.len(), need);
            log::limited(
                log::LogLevel::Info,
                "login refused",
                ("reason", "body timeout"),
                &[
                    ("peer", &conn.peer),
                    ("status", &408),
                    ("reason", &"body timeout"),
                    ("received", &detail),
                ],
            );
            let mut out = take_output(&mut conn.phase);
            login::write_refusal(login::TIMEOUT, &[], hsts(conn, shared), &mut out);
            conn.phase = Phase::Linger {
                out,
                deadline: shared.clock.ceil(now + shared.limits.close_timeout),
            };
            let _ = flush(conn);
            settle(conn)
        }
        Phase::Verify { deadline, .. } | Phase::Linger { deadline, .. } => {
            if now < shared.clock.instant(*deadline) {
                After::Keep
            } else {
                After::Close
            }
        }
    }
}

/// Feeds bytes read from the socket to the connection's current phase.
fn process(conn: &mut Conn, mut input: &mut [u8], ctx: &mut Ctx<'_>) {
    let shared = ctx.shared;
    let now = ctx.now;
    loop {
        match &mut conn.phase {
            Phase::Ws(ws) => {
                let per_s = shared.config.rate.messages_per_conn_per_s;
                let (bucket, peer, charged) = (&mut conn.msg_rate, conn.peer, &conn.charged);
                // Behind a proxy the peer is the proxy: the client is who
                // the connection counts against.
                let client = || charged.unwrap_or_else(|| canonical(peer.ip()));
                let stamp = ctx.shared.clock.stamp(now);
                ws.handle_input(stamp, input, &shared.limits, |event, tx| {
                    if matches!(event, Event::Text(_) | Event::Binary(_)) {
                        match bucket.check(per_s, stamp) {
                            Verdict::Allowed => {}
                            Verdict::Refused { first } => {
                                if first {
                                    log::limited(
                                        log::LogLevel::Warn,
                                        "rate limited",
                                        ("limit", "rate.messages_per_conn_per_s"),
                                        &[
                                            ("peer", &peer),
                                            ("client", &client()),
                                            ("limit", &"rate.messages_per_conn_per_s"),
                                        ],
                                    );
                                    let _ = tx.send_text(RATE_LIMITED_EVENT);
                                }
                                return;
                            }
                            Verdict::StrikeOut => {
                                log::limited(
                                    log::LogLevel::Warn,
                                    "closing a client that ignored its message rate",
                                    ("limit", "rate.messages_per_conn_per_s"),
                                    &[
                                        ("peer", &peer),
                                        ("client", &client()),
                                        ("limit", &"rate.messages_per_conn_per_s"),
                                    ],
                                );
                                tx.close(
                                    proto::error::code::POLICY_VIOLATION,
                                    "message rate exceeded",
                                );
                                return;
                            }
                        }
                    }
                    shared.app.on_event(event, tx)
                });
                return;
            }
            Phase::Linger { .. } | Phase::Verify { .. } => return,
            Phase::Body { body, need, .. } => {
                let take = (*need - body.len()).min(input.len());
                body.extend_from_slice(&input[..take]);
                if body.len() == *need {
                    // Anything after the body is discarded: the answer
                    // closes the connection.
                    login_body_complete(conn, ctx);
                }
                return;
            }
            Phase::Head {
                reader, received, ..
            } => {
                *received += input.len() as u64;
                let taken = match reader.push(input, shared.limits.max_request_head_bytes) {
                    Ok((taken, Some(_))) => taken,
                    Ok((_, None)) => return,
                    Err(e) => {
                        refuse(conn, e.status(), e.reason(), &[], shared, now);
                        return;
                    }
                };
                input = &mut input[taken..];
                *received -= input.len() as u64;
                handle_head(conn, ctx, None);
                if input.is_empty() {
                    return;
                }
                if let Phase::Verify { kind, .. } = &mut conn.phase {
                    if let Verifying::Handshake { early, .. } = kind.as_mut() {
                        // Not read again until the password check is back.
                        early.extend_from_slice(input);
                        return;
                    }
                }
            }
        }
    }
}

/// The error event for a message over the rate (SPEC.md §6).
const RATE_LIMITED_EVENT: &str =
    r#"{"event":"error","data":{"code":"rate_limited","message":"too many messages; slow down"}}"#;

/// Seconds since the Unix epoch (token times).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `Authorization: Basic` may be used: over TLS, or from a loopback
/// peer that is not a proxy forwarding someone else's request.
fn basic_allowed(
    secure: bool,
    peer: SocketAddr,
    proxies: &TrustedProxies,
    req: &handshake::Request<'_, '_>,
) -> bool {
    let ip = canonical(peer.ip());
    let proxied = proxies.contains(ip)
        || req.header_values("x-forwarded-for").next().is_some()
        || req.header_values("forwarded").next().is_some();
    secure || (ip.is_loopback() && !proxied)
}

/// Answers a complete request head. `basic` is the result of the password
/// check of a Basic handshake whose head is answered again.
fn handle_head(conn: &mut Conn, ctx: &mut Ctx<'_>, basic: Option<BasicResult>) {
    let (shared, now) = (ctx.shared, ctx.now);
    let Phase::Head {
        reader,
        out,
        deadline,
        ..
    } = &mut conn.phase
    else {
        return;
    };
    let limits = &shared.limits;
    let mut small = [httparse::EMPTY_HEADER; 64];
    let mut large;
    let storage: &mut [httparse::Header<'_>] = if limits.max_headers <= small.len() {
        &mut small[..limits.max_headers]
    } else {
        large = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut large
    };
    let req = match handshake::parse_request(reader.head(), storage) {
        Ok(r) => r,
        Err(e) => {
            let (status, reason) = (e.status(), e.reason());
            return refuse(conn, status, reason, &[], shared, now);
        }
    };
    if let Some(port) = conn.redirect_to {
        if let Some((status, reason)) = host_refusal(&req, &shared.hosts) {
            return refuse(conn, status, reason, &[], shared, now);
        }
        let location = redirect_location(&req, &shared.redirect_host, port);
        return redirect(conn, location, shared, now);
    }
    let client = shared
        .proxies
        .client_ip(conn.peer.ip(), req.header_values("x-forwarded-for"));
    // A Basic handshake answered again after its password check passed
    // these checks the first time.
    if basic.is_none() {
        let seat = Seat {
            peer: conn.peer,
            charged: &mut conn.charged,
            over_quota: &mut conn.over_quota,
            over_capacity: conn.over_capacity,
        };
        if let Some(refusal) = admission(seat, client, req.path(), ctx) {
            let (status, reason, retry) = refusal;
            return refuse(
                conn,
                status,
                reason,
                &[("Retry-After", &retry)],
                shared,
                now,
            );
        }
    }
    // SPEC.md §2: on the WebSocket path the request line is checked
    // before the Host; then the Host, on every path.
    if req.path() == shared.config.ws.path {
        if let Err(e) = UpgradeRequest::check_request_line(&req) {
            let header = e.extra_header();
            return refuse(conn, e.status(), e.reason(), header.as_slice(), shared, now);
        }
    }
    if let Some((status, reason)) = host_refusal(&req, &shared.hosts) {
        return refuse(conn, status, reason, &[], shared, now);
    }
    if req.path() == login::PATH {
        return match login_head(&req, conn.peer, client, ctx) {
            Ok(need) => {
                let expect_continue = req.has_token("expect", "100-continue");
                start_login_body(conn, need, expect_continue, ctx)
            }
            Err((refusal, retry)) => {
                let retry = retry.map(|r| r.to_string());
                let extra: Vec<(&str, &str)> =
                    retry.iter().map(|r| ("Retry-After", r.as_str())).collect();
                refuse_login(conn, refusal, &extra, ctx)
            }
        };
    }
    if req.path() != shared.config.ws.path {
        let hsts = conn.secure && shared.config.tls.hsts;
        // Pipelined requests are answered from one read without going back
        // to the socket: once the queued responses reach the high-water
        // mark, this one ends the connection (and the rest of the input is
        // discarded) instead of queueing without bound.
        let keep_alive_ok = out.len() < HTTP_OUT_HIGH;
        let outcome = http::respond(&req, &shared.files, out, hsts, keep_alive_ok);
        log::debug(
            "http request",
            &[
                ("peer", &conn.peer),
                ("method", &req.method),
                ("target", &log::Target(req.target)),
                ("status", &outcome.status),
            ],
        );
        if outcome.keep_alive {
            reader.clear();
            *deadline = ctx
                .shared
                .clock
                .ceil(now + shared.config.limits.handshake_timeout());
        } else {
            let out = std::mem::take(out);
            conn.phase = Phase::Linger {
                out,
                deadline: ctx.shared.clock.ceil(now + limits.close_timeout),
            };
        }
        return;
    }
    let upgrade = match UpgradeRequest::from_request(&req) {
        Ok(u) => u,
        Err(e) => {
            let header = e.extra_header();
            return refuse(conn, e.status(), e.reason(), header.as_slice(), shared, now);
        }
    };
    let basic_ok = basic_allowed(conn.secure, conn.peer, &shared.proxies, &req);
    let https = conn.secure
        || (shared.proxies.contains(canonical(conn.peer.ip()))
            && matches!(
                req.single_header("x-forwarded-proto"),
                handshake::Single::One(p) if p.trim_ascii().eq_ignore_ascii_case(b"https")
            ));
    let origin_ok = shared
        .origins
        .check(req.header_values("origin"), upgrade.host(), https)
        .is_ok();
    if basic.is_none() && origin_ok && ctx.auth.mode == crate::config::AuthMode::Required {
        if let crate::security::credentials::Credential::Basic { username, password } =
            ctx.auth.credential(&upgrade, basic_ok)
        {
            // The password is checked off the loop; the head stays in the
            // reader and is answered when the result is back.
            return start_basic_check(conn, username, password, ctx);
        }
    }
    let unix = unix_now();
    let mut gate = Gate::new(ctx.auth, &shared.origins, unix, basic_ok, https);
    if let Some(result) = basic {
        gate = gate.with_basic(result);
    }
    let mut buf = std::mem::take(out);
    match handshake::respond(&upgrade, &mut gate, &mut buf) {
        Ok(accepted) => {
            let user = match &accepted.identity {
                Identity::User { name, .. } => name.as_str(),
                Identity::Anonymous => "-",
            };
            log::info(
                "handshake accepted",
                &[
                    ("peer", &conn.peer),
                    ("target", &log::Target(req.target)),
                    ("protocol", &accepted.protocol.unwrap_or("-")),
                    ("user", &user),
                ],
            );
            let stamp = shared.clock.stamp(now);
            let mut ws = WebSocket::new(stamp, buf);
            if let Identity::User { name, expires_at } = &accepted.identity {
                if let Some(exp) = expires_at {
                    // Clamped: a token from another holder of the secret
                    // may carry any exp.
                    let left = Duration::from_secs(exp.saturating_sub(unix).min(1 << 32));
                    ws.set_expiry(stamp.after(left));
                }
                ws.with_sender(stamp, limits, |tx| shared.app.on_open(Some(name), tx));
            }
            conn.phase = Phase::Ws(ws);
        }
        Err(reject) => {
            let origin = req.header_values("origin").next().unwrap_or_default();
            log::debug(
                "refused request",
                &[
                    ("peer", &conn.peer),
                    ("target", &log::Target(req.target)),
                    ("origin", &log::Header("origin", origin)),
                ],
            );
            let extra: &[(&str, &str)] = match &reject.header {
                Some(h) => std::slice::from_ref(h),
                None => &[],
            };
            // Responses queued before this request go out first.
            if let Phase::Head { out, .. } = &mut conn.phase {
                *out = buf;
            }
            refuse(conn, reject.status, reject.reason, extra, shared, now);
        }
    }
}

/// The per-client checks of SPEC.md §2 between parsing and the method:
/// connections per IP (`429`), handshakes per IP on the WebSocket path
/// (`429`), the global cap (`503`). Returns the refusal: status, reason
/// and `Retry-After`.
/// The fields of a connection [`admission`] reads and updates.
struct Seat<'c> {
    peer: SocketAddr,
    charged: &'c mut Option<IpAddr>,
    over_quota: &'c mut bool,
    over_capacity: bool,
}

fn admission(
    conn: Seat<'_>,
    client: IpAddr,
    path: &str,
    ctx: &mut Ctx<'_>,
) -> Option<(u16, &'static str, String)> {
    let shared = ctx.shared;
    let max = shared.config.limits.max_connections_per_ip;
    if *conn.charged != Some(client) && shared.proxies.contains(canonical(conn.peer.ip())) {
        // Behind a proxy each request on a connection may come from
        // another client (proxies reuse upstream connections): the
        // connection counts against the client of its latest request.
        if let Some(old) = conn.charged.take() {
            ctx.quotas.conns.release(old);
        }
        *conn.charged = Some(client);
        *conn.over_quota = !ctx.quotas.conns.charge(client, max);
    }
    let limited = |limit: &'static str| {
        log::limited(
            log::LogLevel::Warn,
            "rate limited",
            ("limit", limit),
            &[("peer", &conn.peer), ("client", &client), ("limit", &limit)],
        );
    };
    if *conn.over_quota {
        limited("limits.max_connections_per_ip");
        return Some((429, "too many connections from this address", "1".into()));
    }
    if path == shared.config.ws.path {
        if let Err(l) = ctx.quotas.handshakes.check(client, ctx.now) {
            limited("rate.handshakes_per_ip_per_s");
            return Some((
                429,
                "too many handshakes from this address",
                l.retry_after_s.to_string(),
            ));
        }
    }
    if conn.over_capacity {
        return Some((503, "server at max_connections", "1".into()));
    }
    None
}

/// Counts a Basic handshake against the client's login rate; on refusal
/// answers `429` and returns false.
fn login_rate_ok(conn: &mut Conn, ctx: &mut Ctx<'_>) -> bool {
    let client = conn.charged.unwrap_or(canonical(conn.peer.ip()));
    let Err(limited) = ctx.auth.login_allowed(client, ctx.now) else {
        return true;
    };
    log_rate_limited(conn.peer, client, limited.retry_after_s);
    let retry = limited.retry_after_s.to_string();
    refuse(
        conn,
        429,
        "too many login attempts",
        &[("Retry-After", &retry)],
        ctx.shared,
        ctx.now,
    );
    false
}

/// Queues the password check of a Basic handshake.
fn start_basic_check(conn: &mut Conn, username: String, password: Vec<u8>, ctx: &mut Ctx<'_>) {
    if !login_rate_ok(conn, ctx) {
        return;
    }
    let (hash, known) = ctx.auth.password_check(&username);
    let job = Job {
        tag: ctx.token,
        hash,
        password,
        known,
    };
    let username = username.clone();
    if ctx.hasher.submit(job).is_err() {
        return refuse(
            conn,
            503,
            "password checks queue full",
            &[("Retry-After", "1")],
            ctx.shared,
            ctx.now,
        );
    }
    let Phase::Head {
        reader,
        out,
        received,
        ..
    } = &mut conn.phase
    else {
        return;
    };
    conn.phase = Phase::Verify {
        out: std::mem::take(out),
        kind: Box::new(Verifying::Handshake {
            reader: std::mem::take(reader),
            received: *received,
            username,
            early: Vec::new(),
        }),
        deadline: ctx.shared.clock.ceil(ctx.now + VERIFY_TIMEOUT),
    };
}

/// Checks a `POST /login` head in order: method, rate, content type and
/// length. Returns the body length, or the refusal and its `Retry-After`.
fn login_head(
    req: &handshake::Request<'_, '_>,
    peer: SocketAddr,
    client: IpAddr,
    ctx: &mut Ctx<'_>,
) -> Result<usize, (login::Refusal, Option<u64>)> {
    login::check_method(req).map_err(|r| (r, None))?;
    if let Err(limited) = ctx.auth.login_allowed(client, ctx.now) {
        log_rate_limited(peer, client, limited.retry_after_s);
        return Err((login::RATE_LIMITED, Some(limited.retry_after_s)));
    }
    login::check_head(req).map_err(|r| (r, None))
}

fn log_rate_limited(peer: SocketAddr, client: IpAddr, retry_after_s: u64) {
    log::limited(
        log::LogLevel::Warn,
        "rate limited",
        ("limit", "rate.logins_per_ip_per_min"),
        &[
            ("peer", &peer),
            ("client", &client),
            ("limit", &"rate.logins_per_ip_per_min"),
            ("retry_after_s", &retry_after_s),
        ],
    );
}

/// Starts reading a login body of `need` bytes (after a `100 Continue`
/// when the client waits for one, as curl does for larger bodies).
fn start_login_body(conn: &mut Conn, need: usize, expect_continue: bool, ctx: &mut Ctx<'_>) {
    let mut out = take_output(&mut conn.phase);
    if expect_continue && need > 0 {
        response::write_continue(&mut out, hsts(conn, ctx.shared));
    }
    conn.phase = Phase::Body {
        out,
        body: Vec::with_capacity(need),
        need,
        deadline: ctx
            .shared
            .clock
            .ceil(ctx.now + ctx.shared.config.limits.handshake_timeout()),
    };
    if need == 0 {
        login_body_complete(conn, ctx);
    }
}

/// The login body is in: parse it and queue the password check.
fn login_body_complete(conn: &mut Conn, ctx: &mut Ctx<'_>) {
    let Phase::Body { body, out, .. } = &mut conn.phase else {
        return;
    };
    let parsed = login::parse_body(body);
    body.fill(0);
    let creds = match parsed {
        Ok(c) => c,
        Err(r) => return refuse_login(conn, r, &[], ctx),
    };
    let (hash, known) = ctx.auth.password_check(&creds.username);
    let job = Job {
        tag: ctx.token,
        hash,
        password: creds.password.into_bytes(),
        known,
    };
    if ctx.hasher.submit(job).is_err() {
        return refuse_login(conn, login::BUSY, &[("Retry-After", "1")], ctx);
    }
    conn.phase = Phase::Verify {
        out: std::mem::take(out),
        kind: Box::new(Verifying::Login {
            username: creds.username,
        }),
        deadline: ctx.shared.clock.ceil(ctx.now + VERIFY_TIMEOUT),
    };
}

/// Answers a login request with a JSON refusal and lingers.
fn refuse_login(
    conn: &mut Conn,
    refusal: login::Refusal,
    extra: &[(&str, &str)],
    ctx: &mut Ctx<'_>,
) {
    log::limited(
        log::LogLevel::Info,
        "login refused",
        ("reason", refusal.error),
        &[
            ("peer", &conn.peer),
            ("status", &refusal.status),
            ("reason", &refusal.error),
        ],
    );
    let mut out = take_output(&mut conn.phase);
    login::write_refusal(refusal, extra, hsts(conn, ctx.shared), &mut out);
    conn.phase = Phase::Linger {
        out,
        deadline: ctx
            .shared
            .clock
            .ceil(ctx.now + ctx.shared.limits.close_timeout),
    };
}

/// Sends an error response and lingers.
fn refuse(
    conn: &mut Conn,
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
    shared: &Shared,
    now: Instant,
) {
    log::limited(
        log::LogLevel::Info,
        "handshake refused",
        ("reason", reason),
        &[
            ("peer", &conn.peer),
            ("status", &status),
            ("reason", &reason),
        ],
    );
    let mut out = take_output(&mut conn.phase);
    response::write_error(&mut out, status, reason, extra, hsts(conn, shared));
    conn.phase = Phase::Linger {
        out,
        deadline: shared.clock.ceil(now + shared.limits.close_timeout),
    };
}

/// Whether responses on `conn` carry `Strict-Transport-Security`.
fn hsts(conn: &Conn, shared: &Shared) -> bool {
    conn.secure && shared.config.tls.hsts
}

/// Feeds ciphertext to the TLS session and its plaintext to the phase.
fn feed_tls(
    conn: &mut Conn,
    ciphertext: &[u8],
    first: bool,
    plain: &mut [u8],
    ctx: &mut Ctx<'_>,
) -> Result<(), After> {
    let Some(mut session) = conn.tls.take() else {
        return Ok(());
    };
    let looks_like_http = ciphertext.first().is_some_and(|b| b.is_ascii_uppercase());
    if first && session.is_handshaking() && looks_like_http {
        // Plain HTTP on the TLS port: answer in plain text, then close.
        let reason = "plain HTTP request on the TLS port: use https:// or wss://";
        log::limited(
            log::LogLevel::Info,
            "handshake refused",
            ("reason", reason),
            &[("peer", &conn.peer), ("status", &400), ("reason", &reason)],
        );
        let mut out = Vec::new();
        response::write_error(&mut out, 400, reason, &[], false);
        conn.phase = Phase::Linger {
            out,
            deadline: ctx
                .shared
                .clock
                .ceil(ctx.now + ctx.shared.limits.close_timeout),
        };
        return Ok(());
    }
    let result = session.feed(ciphertext, |p| process(conn, p, ctx), plain);
    conn.tls = Some(session);
    match result {
        Ok(Fed::Ok) => Ok(()),
        Ok(Fed::Closed) => {
            conn.read_eof = true;
            match on_eof(conn, ctx.now, ctx.shared) {
                After::Keep => Ok(()),
                close => Err(close),
            }
        }
        Err(e) => {
            // A client that gives up mid-handshake says close_notify: not a failure.
            let level = if e.contains("CloseNotify") {
                crate::config::LogLevel::Debug
            } else {
                crate::config::LogLevel::Info
            };
            log::limited(
                level,
                "tls error",
                ("error", &e),
                &[("peer", &conn.peer), ("error", &e)],
            );
            // The alert is queued: one last write so the peer learns why.
            let _ = flush(conn);
            Err(After::Close)
        }
    }
}

/// Checks the request's `Host` (SPEC.md §2): `400` when it is missing,
/// repeated or not RFC 3986 `host [":" port]`, `421` when it is not one of
/// `allowed_hosts`. Returns the refusal's status and reason.
fn host_refusal(
    req: &handshake::Request<'_, '_>,
    hosts: &AllowedHosts,
) -> Option<(u16, &'static str)> {
    match req.host() {
        Ok(host) if hosts.allows(host) => None,
        Ok(_) => Some((421, "host not allowed")),
        Err(e) => Some((e.status(), e.reason())),
    }
}

/// Where the redirect listener sends a request: https at the configured
/// name (`tls.redirect_host`, else the certificate's name), on `port`
/// unless the name carries one, with the request's target. The request's
/// own `Host` is never used, so the redirect cannot be pointed elsewhere.
fn redirect_location(req: &handshake::Request<'_, '_>, to: &RedirectHost, port: u16) -> String {
    let port = to.port.unwrap_or(port);
    if port == 443 {
        format!("https://{}{}", to.name, req.target)
    } else {
        format!("https://{}:{port}{}", to.name, req.target)
    }
}

/// Answers a request on the redirect listener with a 308 to `location`.
fn redirect(conn: &mut Conn, location: String, shared: &Shared, now: Instant) {
    // The target is not logged: its query may carry a token.
    log::debug("redirect to https", &[("peer", &conn.peer)]);
    let mut out = take_output(&mut conn.phase);
    let extra = [("Location", location.as_str())];
    response::write_error(&mut out, 308, "use https", &extra, false);
    conn.phase = Phase::Linger {
        out,
        deadline: shared.clock.ceil(now + shared.limits.close_timeout),
    };
}

#[cfg(test)]
mod listener_tests {
    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = super::listen("127.0.0.1:0".parse().unwrap(), 8).unwrap();
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

#[cfg(test)]
mod limits_tests {
    /// The settings' defaults are the core's (two crates, one set of numbers).
    #[test]
    fn config_defaults_are_the_core_defaults() {
        let from_config = super::core_limits(&crate::config::LimitsConfig::default());
        assert_eq!(from_config, crate::proto::Limits::default());
    }
}

#[cfg(test)]
mod size_tests {
    /// Per-connection state is what an idle connection costs (see the idle
    /// figures in docs/BENCHMARKS.md): keep it from growing unnoticed.
    #[test]
    fn connection_state_stays_small() {
        use std::mem::size_of;
        assert!(
            size_of::<super::WebSocket>() <= 80,
            "{}",
            size_of::<super::WebSocket>()
        );
        assert!(
            size_of::<super::Conn>() <= 200,
            "{}",
            size_of::<super::Conn>()
        );
    }
}
