//! The event loop's connections to Redis (`cluster.redis_url`, SPEC.md
//! §10): two per loop, non-blocking like every socket of the loop, driven
//! by its readiness events and deadlines. The subscriber receives the
//! broadcasts of the other instances (and of Node `socket.io` servers with
//! the Redis adapter); the publisher sends this loop's publications. What
//! the bytes mean is `cluster::link` and `cluster::adapter`; this file
//! connects, reads, writes, and reconnects.
//!
//! A connection that fails, or is lost, is tried again after a back-off
//! that doubles from [`BACKOFF_MIN_MS`] to [`BACKOFF_MAX_MS`] and starts
//! over once a connection is ready. Meanwhile local delivery goes on;
//! publications this loop cannot hand to Redis are counted
//! (`palisade_cluster_unsent_total`) and `POST /api/publish` answers
//! `"cluster":"unavailable"`. Nothing here blocks: the address is resolved
//! once at start-up.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mio::{Interest, Registry, Token};

use crate::cluster::link::{Event, Link, Role};
use crate::cluster::resp::Limits;
use crate::cluster::{Target, adapter};
use crate::log;
use crate::metrics::Stats;
use crate::proto::Stamp;
use crate::tls::{Connector, ReadWrite};

/// The subscriber's token.
pub(super) const SUBSCRIBER: Token = Token(usize::MAX - 4);
/// The publisher's token.
pub(super) const PUBLISHER: Token = Token(usize::MAX - 5);

/// First wait before a new attempt, in milliseconds.
pub const BACKOFF_MIN_MS: u64 = 100;
/// Longest wait between attempts.
pub const BACKOFF_MAX_MS: u64 = 5_000;
/// How long a connection may take to be ready (connect, TLS, `AUTH`,
/// the first reply).
const SETUP_MS: u64 = 5_000;
/// Bytes queued for Redis at most (publications beyond it are unsent).
const MAX_QUEUED: usize = 8 << 20;
/// Bytes read from the subscriber per turn of the loop.
const READ_BUDGET: usize = 256 * 1024;

/// What every loop of the server shares: where Redis is, how to reach it,
/// and this instance's id in the adapter's messages.
pub(crate) struct Setup {
    pub target: Target,
    /// Every address the host had at start-up: a failed connection tries
    /// the next one.
    pub addrs: Vec<SocketAddr>,
    /// Bounds on what Redis sends (from `limits.max_message_bytes`).
    pub limits: Limits,
    pub connector: Option<Connector>,
    /// The adapter's `uid` of this instance (every loop's).
    pub uid: String,
    pub prefix: String,
    pub pattern: String,
}

impl Setup {
    /// From the settings: `None` without `cluster.redis_url`; an error
    /// naming the setting when it cannot be used. Resolves the host now
    /// (blocking, before the loops run).
    pub fn new(
        cluster: &crate::config::ClusterConfig,
        max_message_bytes: u64,
    ) -> Result<Option<Arc<Setup>>, String> {
        use std::net::ToSocketAddrs;
        let Some(url) = &cluster.redis_url else {
            return Ok(None);
        };
        let target = Target::parse(url).map_err(|e| format!("cluster.redis_url: {e}"))?;
        let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cluster.redis_url: {}: {e}", target.redacted()))?
            .collect();
        if addrs.is_empty() {
            return Err(format!(
                "cluster.redis_url: {} has no address",
                target.redacted()
            ));
        }
        let connector = if target.tls {
            let ca = cluster
                .redis_ca_file
                .clone()
                .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
            let c = Connector::new(&target.host, &ca)
                .map_err(|e| format!("cluster.redis_ca_file: {e}"))?;
            Some(c)
        } else {
            None
        };
        let mut id = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| "no randomness for the cluster id".to_owned())?;
        let uid: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let max_message = usize::try_from(max_message_bytes).unwrap_or(usize::MAX);
        Ok(Some(Arc::new(Setup {
            target,
            addrs,
            limits: Limits::for_messages(max_message),
            connector,
            uid: format!("palisade-{uid}"),
            prefix: cluster.prefix.clone(),
            pattern: adapter::pattern(&cluster.prefix),
        })))
    }
}

/// One of the two connections.
struct Side {
    role: Role,
    token: Token,
    state: State,
    /// The next wait after a failure.
    backoff_ms: u64,
    /// Readiness (edge-triggered): more to read; the socket takes bytes.
    readable: bool,
    writable: bool,
    /// An event or a publication since the last drive.
    poked: bool,
    /// Counted in `palisade_cluster_links_up`.
    counted_up: bool,
    /// Connections tried: the next one goes to `addrs[attempt % len]`.
    attempt: usize,
}

enum State {
    /// Not connected; the next attempt at the stamp.
    Down(Stamp),
    /// `connect` under way.
    Connecting {
        sock: mio::net::TcpStream,
        until: Stamp,
    },
    /// Connected; `until` while not ready yet.
    Open {
        stream: Box<dyn ReadWrite>,
        link: Link,
        out: Vec<u8>,
        until: Option<Stamp>,
    },
}

/// This loop's connections to Redis.
pub(crate) struct Cluster {
    setup: Arc<Setup>,
    sides: [Side; 2],
    /// Messages read this turn: (channel, payload).
    pub inbox: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Cluster {
    /// Both connections, to be made on the loop's first turn.
    pub fn new(setup: Arc<Setup>, now: Stamp) -> Cluster {
        let side = |role, token| Side {
            role,
            token,
            state: State::Down(now),
            backoff_ms: BACKOFF_MIN_MS,
            readable: false,
            writable: false,
            poked: false,
            counted_up: false,
            attempt: 0,
        };
        Cluster {
            setup,
            sides: [
                side(Role::Subscriber, SUBSCRIBER),
                side(Role::Publisher, PUBLISHER),
            ],
            inbox: Vec::new(),
        }
    }

    /// The adapter's prefix.
    pub fn prefix(&self) -> &str {
        &self.setup.prefix
    }

    /// This instance's id in the adapter's messages.
    pub fn uid(&self) -> &str {
        &self.setup.uid
    }

    /// A readiness event for one of the connections.
    pub fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        let side = &mut self.sides[usize::from(token == PUBLISHER)];
        side.readable |= readable;
        side.writable |= writable;
        side.poked = true;
    }

    /// Whether a connection has readiness to act on, or a deadline due.
    pub fn due(&self, now: Stamp) -> bool {
        self.sides
            .iter()
            .any(|s| s.poked || s.readable || s.deadline().is_some_and(|d| d <= now))
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Stamp> {
        self.sides.iter().filter_map(Side::deadline).min()
    }

    /// Whether the publisher is ready: a publication now goes to Redis.
    pub fn is_up(&self) -> bool {
        matches!(&self.sides[1].state,
            State::Open { link, out, .. } if link.is_ready() && out.len() < MAX_QUEUED)
    }

    /// Sends a publication of `data` (JSON) on `channel` to the other
    /// instances; false (and counted) when it cannot.
    pub fn publish(&mut self, channel: &str, data: &str, stats: &Stats) -> bool {
        let up = self.is_up();
        let side = &mut self.sides[1];
        let why = match (&mut side.state, serde_json::from_str(data)) {
            (State::Open { link, out, .. }, Ok(data)) if up => {
                let (name, msg) =
                    adapter::publication(&self.setup.prefix, &self.setup.uid, channel, &data);
                if msg.len() <= self.setup.limits.max_bulk {
                    link.publish(name.as_bytes(), &msg, out);
                    // Written on this turn's `drive`.
                    side.poked = true;
                    stats.cluster_sent.inc();
                    return true;
                }
                "larger than the cluster carries (twice limits.max_message_bytes)"
            }
            (_, Err(_)) => "data serde_json cannot hold (a number out of range, say)",
            _ => "no connection to Redis, or its queue is full",
        };
        stats.cluster_unsent.inc();
        log::limited(
            log::LogLevel::Warn,
            "publication not sent to the cluster",
            ("reason", "redis"),
            &[
                ("channel", &log::Target(channel)),
                ("reason", &why),
                ("redis", &self.setup.target.redacted()),
            ],
        );
        false
    }

    /// Acts on readiness and deadlines: connects, reads (the broadcasts go
    /// to [`Cluster::inbox`]), writes, reconnects.
    pub fn drive(&mut self, registry: &Registry, now: Stamp, stats: &Stats) {
        for side in &mut self.sides {
            side.poked = false;
            if let Err(why) = side.drive(&self.setup, registry, now, stats, &mut self.inbox) {
                side.fail(&self.setup, &why, now, stats);
            }
        }
    }

    /// Whether a connection has more to read than this turn took.
    pub fn busy(&self) -> bool {
        self.sides
            .iter()
            .any(|s| s.readable && matches!(s.state, State::Open { .. }))
    }
}

impl Side {
    fn deadline(&self) -> Option<Stamp> {
        match &self.state {
            State::Down(at) => Some(*at),
            State::Connecting { until, .. } => Some(*until),
            State::Open { until, .. } => *until,
        }
    }

    /// Connects when due, notices a connect that completed, then reads
    /// and writes.
    fn drive(
        &mut self,
        setup: &Setup,
        registry: &Registry,
        now: Stamp,
        stats: &Stats,
        inbox: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), String> {
        if self.deadline().is_some_and(|d| d <= now) {
            return match self.state {
                State::Down(_) => self.connect(setup, registry, now),
                _ => Err(format!("not ready within {SETUP_MS} ms")),
            };
        }
        if !self.connected(setup)? {
            return Ok(());
        }
        self.pump(setup, stats, inbox)
    }

    /// Starts a connection.
    fn connect(&mut self, setup: &Setup, registry: &Registry, now: Stamp) -> Result<(), String> {
        let addr = setup.addrs[self.attempt % setup.addrs.len()];
        let mut sock = mio::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        registry
            .register(
                &mut sock,
                self.token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
        self.state = State::Connecting {
            sock,
            until: now.plus_millis(SETUP_MS),
        };
        Ok(())
    }

    /// Whether the connection is open (a connect that just completed is
    /// set up: TLS, and the link's first commands queued).
    fn connected(&mut self, setup: &Setup) -> Result<bool, String> {
        let State::Connecting { sock, until } = &self.state else {
            return Ok(matches!(self.state, State::Open { .. }));
        };
        if let Some(e) = sock.take_error().map_err(|e| e.to_string())? {
            return Err(e.to_string());
        }
        match sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(e.to_string()),
        }
        let until = *until;
        let State::Connecting { sock, .. } = std::mem::replace(&mut self.state, State::Down(until))
        else {
            return Ok(false);
        };
        let _ = sock.set_nodelay(true);
        // A Redis that vanished (power, a NAT's idle timeout) is noticed
        // within about a minute (Linux: 9 probes) even on the subscriber,
        // which never sends.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(15))
            .with_interval(Duration::from_secs(5));
        let _ = socket2::SockRef::from(&sock).set_tcp_keepalive(&keepalive);
        let stream: Box<dyn ReadWrite> = match &setup.connector {
            Some(c) => c.connect(sock)?,
            None => Box::new(sock),
        };
        let mut out = Vec::new();
        let credentials = setup.target.credentials.as_ref();
        let link = Link::new(
            self.role,
            credentials,
            &setup.pattern,
            setup.limits,
            &mut out,
        );
        self.state = State::Open {
            stream,
            link,
            out,
            until: Some(until),
        };
        self.writable = true;
        self.readable = true;
        Ok(true)
    }

    /// Writes what is queued, reads what came (within the budget), and
    /// acts on the replies.
    fn pump(
        &mut self,
        setup: &Setup,
        stats: &Stats,
        inbox: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), String> {
        let State::Open {
            stream,
            link,
            out,
            until,
        } = &mut self.state
        else {
            return Ok(());
        };
        if self.writable {
            self.writable = write_out(stream.as_mut(), out).map_err(|e| e.to_string())?;
        }
        if !self.readable {
            return Ok(());
        }
        // Everything the budget allows, parsed at once (a long reply is
        // parsed again from its start each time more of it is here).
        let mut got = Vec::new();
        let mut ended = Ok(());
        // Past the budget `readable` stays set: the loop comes back at once.
        while got.len() < READ_BUDGET {
            let at = got.len();
            got.resize(at + 16 * 1024, 0);
            let r = stream.read(&mut got[at..]);
            got.truncate(at + *r.as_ref().unwrap_or(&0));
            match r {
                Ok(0) => {
                    ended = Err("Redis closed the connection".to_owned());
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    ended = Err(e.to_string());
                    break;
                }
            }
        }
        let mut events = Vec::new();
        let parsed = link.input(&got, &mut events).map_err(|e| e.to_string());
        // A TLS stream may have records to send after reading (and the
        // link's first commands wait for its handshake).
        let flushed = write_out(stream.as_mut(), out)
            .map(|_| ())
            .map_err(|e| e.to_string());
        // What came before an error counts: a Ready, the messages.
        for event in events {
            match event {
                Event::Ready => {
                    *until = None;
                    self.backoff_ms = BACKOFF_MIN_MS;
                    if !self.counted_up {
                        self.counted_up = true;
                        stats.cluster_links_up.add(1);
                    }
                    stats.cluster_connects.inc();
                    log::info(
                        "redis connection ready",
                        &[
                            ("role", &self.role.name()),
                            ("redis", &setup.target.redacted()),
                        ],
                    );
                }
                Event::Message { channel, payload } => inbox.push((channel, payload)),
                Event::Published(_) => {}
                Event::PublishRefused(why) => {
                    stats.cluster_unsent.inc();
                    log::limited(
                        log::LogLevel::Warn,
                        "publication refused by Redis",
                        ("reason", "redis"),
                        &[("error", &why)],
                    );
                }
            }
        }
        parsed.and(ended).and(flushed)
    }

    /// The connection failed or was lost: counted, logged, tried again
    /// after the back-off.
    fn fail(&mut self, setup: &Setup, why: &str, now: Stamp, stats: &Stats) {
        let state = std::mem::replace(&mut self.state, State::Down(now));
        let mut lost = 0;
        if let State::Open { link, .. } = &state {
            lost = link.unanswered();
        }
        if std::mem::take(&mut self.counted_up) {
            stats.cluster_links_up.sub(1);
        }
        // The next attempt tries the host's next address.
        self.attempt = self.attempt.wrapping_add(1);
        drop(state);
        stats.cluster_failures.inc();
        stats.cluster_unsent.add(lost as u64);
        let wait = self.backoff_ms;
        self.backoff_ms = (wait * 2).min(BACKOFF_MAX_MS);
        self.state = State::Down(now.plus_millis(wait));
        self.readable = false;
        self.writable = false;
        self.poked = false;
        log::limited(
            log::LogLevel::Warn,
            "redis connection failed",
            ("role", self.role.name()),
            &[
                ("role", &self.role.name()),
                ("redis", &setup.target.redacted()),
                ("error", &why),
                ("unconfirmed_publications", &lost),
                ("retry_in_ms", &wait),
            ],
        );
    }
}

/// Writes what `out` holds (and what TLS holds) until done or the socket
/// would block: whether it is still writable.
fn write_out(stream: &mut dyn ReadWrite, out: &mut Vec<u8>) -> io::Result<bool> {
    let mut written = 0;
    let result = loop {
        if written == out.len() {
            match stream.flush() {
                Ok(()) => break Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        }
        match stream.write(&out[written..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    out.drain(..written);
    result
}
