//! Several event loops serving one port (`--workers N`): what they share
//! and how they reach each other.
//!
//! Each loop is a whole [`Server`](super::Server) on its own thread, with
//! its own listener on the same address (`SO_REUSEPORT`: the kernel spreads
//! new connections over them), its own connections, timers and
//! application. What must hold across them is shared: the global counts
//! ([`Capacity`]), the per-client tables and revoked tokens (behind a lock
//! each, see `security`), the metrics ([`Registry`], one writer per
//! loop). A loop reaches another through its mailbox ([`Control`]) and its
//! waker:
//!
//! - a Socket.IO long-polling request for a session another loop owns (the
//!   owner is the last character of the session id) is handed over whole:
//!   the socket, its TLS session and the bytes read after the head;
//! - a log-out closes the revoked connections on every loop;
//! - the loop that handles signals passes on a reload (the new certificate
//!   and the users whose credentials changed) and a shutdown.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, OnceLock};

use super::capacity::Capacity;
use super::conn::Conn;
use crate::handler::Handle;
use crate::log;
use crate::metrics::Registry;
use crate::router::Quotas;
use crate::security::Auth;
use crate::tls::Acceptor;

/// The characters that name a loop at the end of a session id (a loop's
/// index; at most [`crate::config::MAX_WORKERS`]).
const TAGS: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";

/// What a loop asks of another.
pub(crate) enum Control {
    /// A connection whose request belongs to this loop: route its head.
    Adopt(Box<Adopted>),
    /// The signal-handling loop reloaded: the certificate to use from now
    /// on, and the users whose credentials changed (their connections
    /// close).
    Reloaded {
        acceptor: Option<Acceptor>,
        revoked: Arc<[String]>,
    },
    /// Start a graceful shutdown.
    Shutdown,
    /// A publication made on another loop, for this loop's subscribers.
    Publish(Arc<crate::handler::Publication>),
}

/// A connection handed over, with the bytes read after its request head.
pub(crate) struct Adopted {
    pub conn: Conn,
    pub rest: Vec<u8>,
}

/// One loop as the others see it.
#[derive(Clone)]
pub(crate) struct Peer {
    pub mailbox: Sender<Control>,
    pub waker: Arc<mio::Waker>,
    pub handle: Handle,
}

impl Peer {
    /// Posts `control` and wakes the loop (false when it has stopped).
    pub fn post(&self, control: Control) -> bool {
        self.mailbox.send(control).is_ok() && self.waker.wake().is_ok()
    }
}

/// What every loop of one server shares.
#[derive(Clone)]
pub(crate) struct Common {
    pub size: usize,
    pub metrics: Arc<Registry>,
    pub capacity: Arc<Capacity>,
    /// Channel subscriptions on every loop.
    pub subscriptions: super::channels::Shared,
    /// Every loop, by index (set once all are built).
    pub peers: Arc<OnceLock<Vec<Peer>>>,
    /// Where the cluster's Redis is (`cluster.redis_url`).
    pub cluster: Option<Arc<super::ClusterSetup>>,
}

/// A loop's place in its group.
pub(crate) struct Group {
    pub index: usize,
    pub shared: Common,
    pub mailbox: Receiver<Control>,
    pub mailbox_tx: Sender<Control>,
}

impl Group {
    /// Loop `index` of `shared`.
    pub fn new(index: usize, shared: Common) -> Group {
        let (mailbox_tx, mailbox) = channel();
        Group {
            index,
            shared,
            mailbox,
            mailbox_tx,
        }
    }

    /// The other loops (none until the group is complete).
    pub fn others(&self) -> impl Iterator<Item = &Peer> {
        let index = self.index;
        self.shared
            .peers
            .get()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(move |(i, _)| *i != index)
            .map(|(_, p)| p)
    }

    /// Loop `i`.
    pub fn peer(&self, i: usize) -> Option<&Peer> {
        self.shared.peers.get().and_then(|p| p.get(i))
    }

    /// The character that ends this loop's session ids (none with one loop).
    pub fn sid_tag(&self) -> Option<char> {
        (self.shared.size > 1).then(|| char::from(TAGS[self.index]))
    }
}

/// The loop that owns session `sid`, when it is another loop than `me` of
/// `size` (`None`: this one, or an id no loop made).
pub(crate) fn owner(sid: &str, me: usize, size: usize) -> Option<usize> {
    if size < 2 {
        return None;
    }
    let tag = *sid.as_bytes().last()?;
    let i = TAGS.iter().position(|&t| t == tag)?;
    (i != me && i < size).then_some(i)
}

impl<H: crate::handler::Handler> super::Server<H> {
    /// Binds `size` loops of one server (one with `size` 1), the handler
    /// of loop `i` made by `make(i)`.
    pub(crate) fn bind_group(
        shared: crate::router::Shared,
        acceptor: Option<Acceptor>,
        auth: Auth,
        cluster: Option<Arc<super::ClusterSetup>>,
        size: usize,
        mut make: impl FnMut(usize) -> H,
    ) -> std::io::Result<Vec<super::Server<H>>> {
        let reuse = match size {
            1 => None,
            _ => Some(super::accept::Addresses::reserve(
                &shared.config,
                acceptor.is_some(),
            )?),
        };
        let common = Common {
            size,
            metrics: Registry::new(size),
            capacity: Arc::default(),
            subscriptions: super::channels::Shared::default(),
            peers: Arc::new(OnceLock::new()),
            cluster,
        };
        let quotas = Quotas::new(&shared.config);
        let shared = Arc::new(shared);
        let mut servers = Vec::with_capacity(size);
        for i in 0..size {
            let group = Group::new(i, common.clone());
            let handler = make(i);
            let server = super::Server::bind(
                Arc::clone(&shared),
                acceptor.clone(),
                (auth.clone(), quotas.clone()),
                handler,
                Box::new(group),
                reuse.as_ref(),
            )?;
            servers.push(server);
        }
        let _ = common.peers.set(servers.iter().map(|s| s.peer()).collect());
        Ok(servers)
    }

    /// Hands the connections routed to another loop this turn to it.
    #[cold]
    #[inline(never)]
    pub(super) fn move_out(&mut self) {
        for (token, to, rest) in std::mem::take(&mut self.env.moving) {
            let Some(mut conn) = self.conns.remove(token) else {
                continue;
            };
            // The socket stays open: out of this loop's epoll set.
            let _ = self.poll.registry().deregister(&mut conn.sock);
            self.pending.update(token, conn.pending_key(), None);
            match conn.slot {
                super::conn::Slot::Counted => {
                    self.env.open -= 1;
                    self.env.stats.connections_open.set(self.env.open as u64);
                }
                super::conn::Slot::Overflow => self.overflow -= 1,
            }
            conn.io.set(super::conn::Io::QUEUED, false);
            conn.timer_at = None;
            self.env.stats.handoffs.inc();
            log::debug(
                "request handed to the loop owning its session",
                &[("peer", &conn.peer), ("loop", &to)],
            );
            let moved = Control::Adopt(Box::new(Adopted { conn, rest }));
            let Some(peer) = self.env.group.peer(to) else {
                self.drop_moved(moved);
                continue;
            };
            if let Err(std::sync::mpsc::SendError(moved)) = peer.mailbox.send(moved) {
                self.drop_moved(moved);
                continue;
            }
            let _ = peer.waker.wake();
        }
    }

    /// A connection that could not be handed over (its loop stopped): its
    /// counts go back, and it is closed.
    fn drop_moved(&mut self, moved: Control) {
        let Control::Adopt(a) = moved else {
            return;
        };
        if let Some(ip) = a.conn.charge.ip() {
            self.env.quotas.conns.lock().release(ip);
        }
        if a.conn.slot == super::conn::Slot::Counted {
            self.env.capacity.give_back(super::capacity::Count::Open);
        }
    }

    /// Takes in a connection another loop handed over and routes its head.
    fn adopt(&mut self, a: Adopted, now: super::clock::Now) {
        let Adopted { mut conn, rest } = a;
        let counted = conn.slot == super::conn::Slot::Counted;
        // Its readiness comes with the registration (epoll reports a
        // ready socket when it is added).
        conn.io.set(super::conn::Io::READABLE, false);
        conn.io.set(super::conn::Io::WRITABLE, true);
        let Some(token) = self.register(conn) else {
            if counted {
                self.env.capacity.give_back(super::capacity::Count::Open);
            }
            return;
        };
        if counted {
            self.env.open += 1;
            self.env.stats.connections_open.set(self.env.open as u64);
        } else {
            self.overflow += 1;
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let mut ctx = super::drive::Ctx {
            env: &mut self.env,
            token,
            stamp: now.stamp,
        };
        super::phases::adopted(conn, rest, &mut ctx);
        let key = conn.pending_key();
        self.pending.update(token, None, key);
        self.enqueue(token);
        self.finish(token, super::drive::After::Keep, now);
    }

    /// Applies what the other loops posted.
    #[inline(never)]
    pub(super) fn apply_controls(&mut self, now: super::clock::Now) {
        while let Ok(control) = self.env.group.mailbox.try_recv() {
            match control {
                Control::Adopt(a) => self.adopt(*a, now),
                Control::Reloaded { acceptor, revoked } => {
                    if acceptor.is_some() {
                        self.acceptor = acceptor;
                    }
                    self.close_users(now.stamp, &revoked);
                }
                Control::Shutdown => {
                    if self.stopping.is_none() {
                        self.shut_down(now);
                    }
                }
                Control::Publish(p) => {
                    self.deliver(&p, now);
                }
            }
        }
    }

    /// Tells the other loops.
    pub(super) fn tell_others(&self, control: impl Fn() -> Control) {
        for peer in self.env.group.others() {
            peer.post(control());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_character_names_the_owner() {
        assert_eq!(owner("abc1", 0, 2), Some(1));
        assert_eq!(owner("abc1", 1, 2), None);
        assert_eq!(owner("abc2", 0, 2), None, "no loop 2");
        assert_eq!(owner("abc1", 0, 1), None, "one loop");
        assert_eq!(owner("", 0, 2), None);
    }
}
