//! The single-threaded mio event loop around the core: listeners,
//! connections, deadlines, signals, the handle's commands.
//!
//! mio's rules bind everything here: readiness is edge-triggered, so every
//! socket is read and written until `WouldBlock` (cached per connection in
//! its [`Io`] bits); events may be spurious; `Interrupted` is retried; and
//! mio has no timers, so the earliest deadline becomes the poll timeout. One
//! connection gets at most [`READ_BUDGET`] bytes per turn; a connection
//! with more to read waits in the ready queue and the loop polls with a zero
//! timeout, so a fast client cannot starve the others.
//!
//! The files: `accept` (listeners, per-IP quota at accept, the pending
//! handshakes), `conn` (a connection and its phases), `drive` (reading,
//! routing and the WebSocket input of one connection), `io` (writing, and
//! TLS pumping), `commands` (what a [`Handle`] asks for), `timers`, `pool`
//! (reused buffers), `clock`, `slab`, `sys` (the `recv` and `send` of
//! every message), `channels` (subscriptions and fan-out), `redis` (the
//! connections to the cluster's Redis), `group` (several loops).

mod accept;
mod capacity;
mod channels;
mod clock;
mod commands;
mod conn;
mod drive;
mod group;
mod io;
mod phases;
mod poll;
mod pool;
mod redis;
mod sio;
mod slab;
mod sys;
mod timers;

use crate::proto::Stamp;
pub use clock::Clock;
use clock::Now;

use std::io as stdio;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Token};
use sys::{Events, Ready};

use crate::handler::{Command, Handle, Handler};
use crate::log;
use crate::metrics::{Registry, Stats};
use crate::router::{Quotas, Shared};
use crate::security::Auth;
use crate::security::hasher::Hasher;
use crate::tls::Acceptor;
use accept::{Listeners, Pending};
use conn::{Conn, Io, Phase};
use pool::Buffers;
use slab::Slab;
use timers::Timers;

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const REDIRECT: Token = Token(usize::MAX - 2);
const WAKER: Token = Token(usize::MAX - 3);
/// Bytes read from one connection per turn of the loop.
pub const READ_BUDGET: usize = 256 * 1024;

/// The event loop of one server, generic over its application.
pub struct Server<H: Handler> {
    poll: Poll,
    listeners: Listeners,
    conns: Slab<Conn>,
    pending: Pending,
    timers: Timers,
    /// Deadlines that came due this turn (kept for its capacity).
    due: Vec<(crate::proto::Stamp, Token)>,
    /// Connections to drive in the next turn, in order.
    ready: Vec<Token>,
    /// The turn being driven (kept for its capacity).
    driving: Vec<Token>,
    bufs: Buffers,
    env: Env<H>,
    clock: Clock,
    acceptor: Option<Acceptor>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    commands: Receiver<Command>,
    /// Wakes this loop (handles, password workers, the other loops).
    waker: Arc<mio::Waker>,
    /// Connections beyond `max_connections` that are read only to be
    /// answered `503`.
    overflow: usize,
    /// Set by a stop signal: when the server exits at the latest.
    stopping: Option<Stamp>,
    /// The demo user's password, when the server made one.
    demo_password: Option<String>,
    /// A second stop signal: the loop exited without waiting.
    exit_now: bool,
}

/// What the processing of a connection's input may use besides the
/// connection: the settings, the credentials, the quotas, the password
/// workers and the application. One field of the server, so that a
/// [`drive::Ctx`] is a pointer and a stamp.
pub(crate) struct Env<H> {
    pub shared: Arc<Shared>,
    pub auth: Auth,
    pub quotas: Quotas,
    pub hasher: Hasher<Token>,
    pub handler: H,
    pub handle: Handle,
    /// This loop's connections counted in `max_connections` (the count
    /// across loops, with long-polling sessions, is [`Env::capacity`]).
    pub open: usize,
    /// The counts behind the global caps, shared by every loop.
    pub capacity: Arc<capacity::Capacity>,
    /// The Engine.IO long-polling sessions.
    pub polls: poll::Polls,
    /// A graceful shutdown is under way.
    pub stopping: bool,
    /// This loop's figures (it is their only writer).
    pub stats: Arc<Stats>,
    /// Every loop's figures, for `/metrics`.
    pub metrics: Arc<Registry>,
    /// This loop's place among the loops of the server.
    pub group: Box<group::Group>,
    /// Who subscribes to which channel on this loop.
    pub channels: channels::Channels,
    /// Connections to hand to another loop at the end of the turn: the
    /// connection, the loop, the bytes read after the request head.
    pub moving: Vec<(Token, usize, Vec<u8>)>,
    /// The connections to the cluster's Redis (`cluster.redis_url`).
    pub cluster: Option<Box<redis::Cluster>>,
}

pub(crate) use redis::Setup as ClusterSetup;

impl<H: Handler> Server<H> {
    /// Binds the listeners and starts the hashing workers: loop `index`
    /// of a group of `group.size` (with more than one, the listeners join
    /// `reuse`'s addresses with `SO_REUSEPORT`).
    pub(crate) fn bind(
        shared: Arc<Shared>,
        acceptor: Option<Acceptor>,
        (auth, quotas): (Auth, Quotas),
        handler: H,
        group: Box<group::Group>,
        reuse: Option<&accept::Addresses>,
    ) -> stdio::Result<Server<H>> {
        let poll = Poll::new()?;
        let listeners = Listeners::bind(&shared.config, acceptor.is_some(), &poll, reuse)?;
        // The workers and every handle hold the waker.
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let wake = Arc::clone(&waker);
        let hasher = Hasher::new(
            shared.config.auth.hash_workers,
            shared.config.auth.hash_queue,
            move || {
                let _ = wake.wake();
            },
        )?;
        let wake = Arc::clone(&waker);
        let (handle, commands) = Handle::new(
            Arc::new(move || {
                let _ = wake.wake();
            }),
            Arc::clone(&group.shared.subscriptions.total),
            group.shared.cluster.is_some(),
        );
        let g = &group.shared;
        let capacity = Arc::clone(&g.capacity);
        Ok(Server {
            poll,
            listeners,
            conns: Slab::new(),
            pending: Pending::new(Arc::clone(&capacity)),
            timers: Timers::default(),
            due: Vec::new(),
            ready: Vec::new(),
            driving: Vec::new(),
            bufs: Buffers::new(),
            env: Env {
                quotas,
                auth,
                shared,
                hasher,
                handler,
                handle,
                open: 0,
                polls: poll::Polls::new(Arc::clone(&capacity), group.index, g.size),
                capacity,
                stopping: false,
                stats: g.metrics.worker(group.index),
                metrics: Arc::clone(&g.metrics),
                moving: Vec::new(),
                cluster: g
                    .cluster
                    .as_ref()
                    .map(|s| Box::new(redis::Cluster::new(Arc::clone(s), Stamp::EPOCH))),
                channels: channels::Channels::new(g.subscriptions.clone()),
                group,
            },
            clock: Clock::new(),
            acceptor,
            signals: None,
            commands,
            waker,
            overflow: 0,
            stopping: None,
            demo_password: None,
            exit_now: false,
        })
    }

    /// This loop as the others of its group see it.
    pub(crate) fn peer(&self) -> group::Peer {
        group::Peer {
            mailbox: self.env.group.mailbox_tx.clone(),
            waker: Arc::clone(&self.waker),
            handle: self.env.handle.clone(),
        }
    }

    /// Handles signals from now on: SIGHUP reloads the users file, the API keys and the
    /// TLS certificate without dropping connections (a bad new file is
    /// logged and the old one kept); SIGINT and SIGTERM start a graceful
    /// shutdown (a second one exits at once).
    pub fn handle_signals(&mut self) -> stdio::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Reloads what SIGHUP reloads: the users file, the API keys, the TLS
    /// certificate and key. A bad new file is kept out and the old one stays. One line
    /// says what was reloaded (`reloaded users=reloaded user_count=2
    /// revoked_users=0 tls=not_configured`), at warn level when a part
    /// failed (`reload failed in part ... tls=failed tls_error=...`).
    pub fn reload(&mut self) {
        use std::fmt::Display;
        let mut fields: Vec<(&str, Box<dyn Display>)> = Vec::new();
        let mut failed = false;
        let mut revoked = Vec::new();
        match self.env.auth.reload_users() {
            None => fields.push(("users", Box::new("not_configured"))),
            Some(Ok(reloaded)) => {
                fields.push(("users", Box::new("reloaded")));
                fields.push(("user_count", Box::new(reloaded.users)));
                fields.push(("revoked_users", Box::new(reloaded.revoked.len())));
                revoked = reloaded.revoked;
                crate::security::warn_mixed_iterations(&self.env.auth);
            }
            Some(Err(e)) => {
                failed = true;
                fields.push(("users", Box::new("failed")));
                fields.push(("users_error", Box::new(e)));
            }
        }
        match &self.env.shared.config.api.keys_file {
            None => fields.push(("api_keys", Box::new("not_configured"))),
            Some(path) => match crate::security::apikeys::ApiKeys::load(path) {
                Ok(keys) => {
                    fields.push(("api_keys", Box::new("reloaded")));
                    fields.push(("api_key_count", Box::new(keys.names().count())));
                    // Shared by every loop: one swap serves them all.
                    *self
                        .env
                        .shared
                        .api_keys
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
                }
                Err(e) => {
                    failed = true;
                    fields.push(("api_keys", Box::new("failed")));
                    fields.push(("api_keys_error", Box::new(e)));
                }
            },
        }
        let tls = &self.env.shared.config.tls;
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => match crate::tls::load(cert, key, tls.min_version) {
                Ok(acceptor) => {
                    fields.push(("tls", Box::new("reloaded")));
                    fields.push(("serial", Box::new(acceptor.serial.clone())));
                    self.acceptor = Some(acceptor);
                }
                Err(e) => {
                    failed = true;
                    fields.push(("tls", Box::new("failed")));
                    fields.push(("tls_error", Box::new(e)));
                }
            },
            _ => fields.push(("tls", Box::new("not_configured"))),
        }
        let fields: Vec<(&str, &dyn Display)> = fields.iter().map(|(k, v)| (*k, &**v)).collect();
        if failed {
            log::warn("reload failed in part; the current files stay", &fields);
        } else {
            log::info("reloaded", &fields);
        }
        // The other loops take the new certificate, and close the
        // connections of these users too.
        let shared: Arc<[String]> = revoked.clone().into();
        let acceptor = self.acceptor.clone();
        self.tell_others(|| group::Control::Reloaded {
            acceptor: acceptor.clone(),
            revoked: Arc::clone(&shared),
        });
        if revoked.is_empty() {
            return;
        }
        // Removed, or a new password: their tokens no longer verify, and
        // their connections end now.
        for user in &revoked {
            log::info("credentials revoked", &[("user", user)]);
        }
        let stamp = self.clock.now().stamp;
        self.close_users(stamp, &revoked);
    }

    /// Closes the connections of `users` (whose credentials changed).
    fn close_users(&mut self, stamp: Stamp, users: &[String]) {
        if users.is_empty() {
            return;
        }
        let users: std::collections::HashSet<&str> = users.iter().map(String::as_str).collect();
        self.close_revoked(stamp, "credentials revoked", |user, _| {
            user.is_some_and(|u| users.contains(u))
        });
    }

    /// The password of the `demo` user the server created because no users
    /// file was configured (SPEC.md §5): show it once, never log it.
    pub fn demo_password(&self) -> Option<&str> {
        self.demo_password.as_deref()
    }

    pub(crate) fn set_demo_password(&mut self, password: String) {
        self.demo_password = Some(password);
    }

    /// Whether the loop exited on a second stop signal.
    pub(crate) fn exited_at_once(&self) -> bool {
        self.exit_now
    }

    /// The application.
    pub fn handler(&self) -> &H {
        &self.env.handler
    }

    /// A handle to this server's connections, for other threads.
    pub fn handle(&self) -> Handle {
        self.env.handle.clone()
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> stdio::Result<SocketAddr> {
        self.listeners.main.local_addr()
    }

    /// The address of the redirect listener, when there is one.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .redirect
            .as_ref()
            .and_then(|r| r.local_addr().ok())
    }

    /// Runs the loop until an unrecoverable poll error, or until a
    /// graceful shutdown is done; every line logged by then is written
    /// before it returns.
    pub fn run(&mut self) -> stdio::Result<()> {
        let result = self.run_loop();
        log::flush(Duration::from_secs(1));
        result
    }

    /// The loop reads the clock once per turn, right after `epoll_wait`
    /// returns; everything the turn does (deadlines, stamps, the next poll
    /// timeout) uses that reading.
    fn run_loop(&mut self) -> stdio::Result<()> {
        let mut events = Events::with_capacity(1024);
        // busy_poll_us: after a turn with events, poll without sleeping for
        // a while; the wake-up from epoll_wait is most of a lone client's
        // round trip on an idle machine.
        let spin = Duration::from_micros(self.env.shared.config.busy_poll_us);
        let mut spin_until: Option<Instant> = None;
        let mut now = self.clock.now();
        loop {
            if self.stopping.is_some() && self.stopped(now) {
                return Ok(());
            }
            let timeout = match spin_until {
                Some(until) if Instant::now() < until => Some(0),
                _ => self.poll_timeout(now),
            };
            match events.wait(&mut self.poll, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == stdio::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            now = self.clock.now();
            if !spin.is_zero() && !events.is_empty() {
                spin_until = Some(Instant::now() + spin);
            }
            for event in events.iter() {
                if !self.on_event(event, now) {
                    return Ok(());
                }
            }
            self.turn(now);
        }
    }

    /// Whether a graceful shutdown is over (everyone gone, or out of time).
    fn stopped(&mut self, now: Now) -> bool {
        let Some(until) = self.stopping else {
            return false;
        };
        if !self.conns.is_empty() && now.stamp < until {
            return false;
        }
        let left = self.conns.tokens().len();
        log::info("stopped", &[("connections_dropped", &left)]);
        true
    }

    /// Notes one readiness event; false when the server must exit now.
    fn on_event(&mut self, event: Ready, now: Now) -> bool {
        match event.token {
            LISTENER => self.listeners.main_ready = true,
            REDIRECT => self.listeners.redirect_ready = true,
            WAKER => {
                self.collect_verified(now);
                self.apply_commands(now);
                self.apply_controls(now);
            }
            SIGNALS => return self.on_signals(now),
            token => {
                let Some(conn) = self.conns.get_mut(token) else {
                    self.on_other_event(token, event.readable || event.hup, event.writable);
                    return true;
                };
                if event.readable {
                    conn.io.set(Io::READABLE, true);
                }
                if event.hup {
                    conn.io.set(Io::HUP, true);
                }
                if event.writable {
                    conn.io.set(Io::WRITABLE, true);
                }
                if !conn.io.has(Io::QUEUED) {
                    conn.io.set(Io::QUEUED, true);
                    self.ready.push(token);
                }
            }
        }
        true
    }

    /// An event for no connection: the connections to Redis (or a closed
    /// connection's last).
    #[cold]
    #[inline(never)]
    fn on_other_event(&mut self, token: Token, readable: bool, writable: bool) {
        if let Some(c) = &mut self.env.cluster {
            if matches!(token, redis::SUBSCRIBER | redis::PUBLISHER) {
                c.on_event(token, readable, writable);
            }
        }
    }

    /// SIGHUP reloads; the first stop signal starts a graceful shutdown, a
    /// second one exits at once (false).
    fn on_signals(&mut self, now: Now) -> bool {
        let pending: Vec<i32> = match self.signals.as_mut() {
            Some(s) => s.pending().collect(),
            None => Vec::new(),
        };
        for signal in pending {
            if signal == signal_hook::consts::SIGHUP {
                self.reload();
            } else if self.stopping.is_some() {
                log::warn("second stop signal: exiting now", &[]);
                self.exit_now = true;
                return false;
            } else {
                self.shut_down(now);
            }
        }
        true
    }

    /// After the events of a turn: accept, drive every ready connection
    /// once, fire due timers.
    fn turn(&mut self, now: Now) {
        if self.stopping.is_none() && self.listeners.may_accept(now.stamp) {
            self.accept(now);
        }
        // What is queued while these are driven waits for the next turn.
        std::mem::swap(&mut self.ready, &mut self.driving);
        let mut batch = std::mem::take(&mut self.driving);
        for token in batch.drain(..) {
            self.drive(token, now);
        }
        self.driving = batch;
        self.fire_timers(now);
        if self.env.cluster.as_ref().is_some_and(|c| c.due(now.stamp)) {
            self.cluster_turn(now);
        }
        // Rare work shares the long-polling sessions' one test per turn.
        if self.env.polls.has_work() {
            if !self.env.moving.is_empty() {
                self.move_out();
            }
            poll::fire(&mut self.env, now.stamp);
            self.wake_polls(now);
            self.env.polls.recheck();
        }
    }

    /// The connections to Redis: set up, read (the broadcasts of other
    /// instances delivered here), written.
    #[cold]
    #[inline(never)]
    fn cluster_turn(&mut self, now: Now) {
        let Some(c) = &mut self.env.cluster else {
            return;
        };
        c.drive(self.poll.registry(), now.stamp, &self.env.stats);
        let inbox = std::mem::take(&mut c.inbox);
        for (channel, payload) in &inbox {
            self.deliver_remote(channel, payload, now);
        }
    }

    /// Answers the held long-polling `GET`s whose sessions have packets
    /// now; each is written on its next turn.
    fn wake_polls(&mut self, now: Now) {
        for token in std::mem::take(&mut self.env.polls.wake) {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let before = conn.pending_key();
            let mut ctx = drive::Ctx {
                env: &mut self.env,
                token,
                stamp: now.stamp,
            };
            poll::answer_parked(conn, false, &mut ctx);
            self.pending.update(token, before, conn.pending_key());
            self.enqueue(token);
        }
    }

    /// Puts a connection in the ready queue (once).
    fn enqueue(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !conn.io.has(Io::QUEUED) {
                conn.io.set(Io::QUEUED, true);
                self.ready.push(token);
            }
        }
    }

    /// Stops accepting, closes every WebSocket with `1001` and drops
    /// connections that are between requests; [`Server::run`] returns once
    /// all are gone or `shutdown_grace_ms` has passed (SPEC.md §7).
    pub fn begin_shutdown(&mut self, now: Instant) {
        self.shut_down(self.clock.at(now));
    }

    fn shut_down(&mut self, now: Now) {
        self.tell_others(|| group::Control::Shutdown);
        let grace = Duration::from_millis(self.env.shared.config.shutdown_grace_ms);
        self.stopping = Some(now.after(grace));
        self.env.stopping = true;
        self.listeners.stop(&self.poll);
        poll::end_where(&mut self.env, "server shutting down", |_, _| true);
        let tokens = self.conns.tokens();
        log::info(
            "shutting down",
            &[
                ("connections", &tokens.len()),
                ("grace_ms", &grace.as_millis()),
            ],
        );
        let stamp = now.stamp;
        let close_at = now.after(self.env.shared.limits.close_timeout);
        for token in tokens {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let drop_now = match &mut conn.phase {
                Phase::Ws(w) => {
                    if w.ws.is_open() {
                        let limits = &self.env.shared.limits;
                        let code = crate::proto::error::code::GOING_AWAY;
                        w.ws.close(stamp, limits, code, "server shutting down");
                    }
                    false
                }
                Phase::Linger(_) => false,
                Phase::Head(h) if !h.out.is_empty() => {
                    // A response on its way out: finish it, then close.
                    let out = std::mem::take(&mut h.out);
                    conn.linger(out, close_at);
                    false
                }
                // A request on its way (a readiness probe, say): it is
                // answered (`/readyz`: 503), then the connection closes.
                Phase::Head(h) if !h.reader.is_empty() && h.parked.is_none() => false,
                // Between requests, or a request not answered yet.
                Phase::Head(_) | Phase::Body(_) | Phase::Verify(_) => true,
            };
            if drop_now {
                self.close(token);
            } else {
                self.enqueue(token);
            }
        }
    }

    /// How long `epoll_wait` may sleep: until the earliest deadline, in
    /// whole milliseconds and never early (`now.stamp` is `now` rounded
    /// down, so waiting the difference of the stamps reaches the deadline).
    fn poll_timeout(&self, now: Now) -> Option<u64> {
        if !self.ready.is_empty() || self.listeners.wants_accept_now() {
            return Some(0);
        }
        let mut next = self.timers.next();
        // Rarely any: a shutdown, an accept retry, long-polling sessions,
        // the connections to Redis.
        if self.stopping.is_some()
            | self.listeners.retry_at.is_some()
            | self.env.polls.has_work()
            | self.env.cluster.is_some()
        {
            if self.env.cluster.as_ref().is_some_and(|c| c.busy()) {
                return Some(0);
            }
            next = [
                self.stopping,
                self.listeners.retry_at,
                self.env.polls.next(),
                self.env.cluster.as_ref().and_then(|c| c.next()),
            ]
            .into_iter()
            .flatten()
            .fold(next, |n, t| Some(n.map_or(t, |n| n.min(t))));
        }
        next.map(|t| t.millis_since(now.stamp))
    }
}

#[cfg(test)]
mod size_tests {
    /// Per-connection state is what an idle connection costs (see the idle
    /// figures in docs/BENCHMARKS.md): keep it from growing unnoticed.
    #[test]
    fn connection_state_stays_small() {
        use std::mem::size_of;
        let ws = size_of::<crate::proto::conn::WebSocket>();
        assert!(ws <= 80, "{ws}");
        let conn = size_of::<super::Conn>();
        assert!(conn <= 200, "{conn}");
    }
}
