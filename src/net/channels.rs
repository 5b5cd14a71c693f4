//! Channels on one event loop (SPEC.md §10): who subscribes to what, the
//! answers to `subscribe` / `unsubscribe`, and the fan-out of a
//! publication.
//!
//! A publication arrives encoded once (the raw protocol's JSON text in an
//! `Arc<str>`, see [`Publication`]); the loop makes its WebSocket frame
//! once, and the Socket.IO event's (`Frames`), and writes those shared
//! bytes straight to each subscriber whose queue is empty (no copy of
//! ours); a subscriber with output queued, or on TLS, gets a copy behind
//! it, and a long-polling one the packet in its session. A subscriber whose queue would pass
//! `limits.max_outbound_bytes` with it is skipped for that publication
//! (counted in `palisade_publications_dropped_total`), so a slow reader
//! loses publications instead of holding memory; once it has room again
//! it first gets an `error` event `dropped` with the number lost, then
//! publications again. A subscriber that stops reading altogether stops
//! answering pings too, and is closed at twice `limits.idle_timeout_ms`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Server;
use super::clock::Now;
use super::conn::{Io, Phase};
use crate::handler::{ConnId, Handler, Outgoing, Publication};
use crate::log;
use crate::security::channels::valid_name;

/// Subscriptions on this loop, both ways, and the counts every loop
/// shares.
pub(crate) struct Channels {
    by_channel: HashMap<Box<str>, HashSet<ConnId>>,
    by_conn: HashMap<ConnId, Vec<Box<str>>>,
    /// Subscribers that lost publications since they last had room: how
    /// many (they are told before their next publication).
    dropped: HashMap<ConnId, u64>,
    shared: Shared,
}

/// The subscriptions of every loop: in all (a publication nobody could
/// receive is not queued, see `Handle::publish`), and per channel (the
/// `delivered` of `POST /api/publish`).
#[derive(Clone, Default)]
pub(crate) struct Shared {
    pub total: Arc<AtomicUsize>,
    pub per_channel: Arc<Mutex<HashMap<Box<str>, usize>>>,
}

impl Shared {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, usize>> {
        self.per_channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn added(&self, channel: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.counts().entry(channel.into()).or_default() += 1;
    }

    fn removed(&self, channel: &str) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let mut counts = self.counts();
        if let Some(n) = counts.get_mut(channel) {
            *n -= 1;
            if *n == 0 {
                counts.remove(channel);
            }
        }
    }

    /// Subscribers of `channel` on every loop.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.counts().get(channel).copied().unwrap_or(0)
    }
}

/// Why a subscription was refused.
enum Refusal {
    Invalid,
    Forbidden,
    TooMany,
}

impl Channels {
    pub fn new(shared: Shared) -> Channels {
        Channels {
            by_channel: HashMap::new(),
            by_conn: HashMap::new(),
            dropped: HashMap::new(),
            shared,
        }
    }

    /// The counts of every loop.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Adds a subscription; false when `conn` has `max` already.
    fn add(&mut self, conn: ConnId, channel: &str, max: usize) -> Result<bool, Refusal> {
        let mine = self.by_conn.entry(conn).or_default();
        if mine.iter().any(|c| &**c == channel) {
            return Ok(false);
        }
        if mine.len() >= max {
            if mine.is_empty() {
                self.by_conn.remove(&conn);
            }
            return Err(Refusal::TooMany);
        }
        mine.push(channel.into());
        self.by_channel
            .entry(channel.into())
            .or_default()
            .insert(conn);
        self.shared.added(channel);
        Ok(true)
    }

    /// Ends a subscription; whether there was one.
    fn remove(&mut self, conn: ConnId, channel: &str) -> bool {
        let Some(mine) = self.by_conn.get_mut(&conn) else {
            return false;
        };
        let Some(i) = mine.iter().position(|c| &**c == channel) else {
            return false;
        };
        mine.swap_remove(i);
        if mine.is_empty() {
            self.by_conn.remove(&conn);
        }
        if let Some(set) = self.by_channel.get_mut(channel) {
            set.remove(&conn);
            if set.is_empty() {
                self.by_channel.remove(channel);
            }
        }
        self.shared.removed(channel);
        true
    }

    /// A connection is gone: its subscriptions end.
    pub fn gone(&mut self, conn: ConnId) {
        self.dropped.remove(&conn);
        let Some(mine) = self.by_conn.remove(&conn) else {
            return;
        };
        for channel in &mine {
            if let Some(set) = self.by_channel.get_mut(channel) {
                set.remove(&conn);
                if set.is_empty() {
                    self.by_channel.remove(channel);
                }
            }
            self.shared.removed(channel);
        }
    }
}

/// A publication's WebSocket frames, encoded once per loop for every
/// subscriber: the raw protocol's text, and the Socket.IO event
/// (`42["publication",{"channel","data"}]`, or another instance's event).
struct Frames {
    raw: Arc<[u8]>,
    socketio: Arc<[u8]>,
    /// The Socket.IO event's JSON array (`["name",...args]`), for the
    /// long-polling sessions.
    event: Box<str>,
}

impl Frames {
    /// The frames of `raw` (the raw protocol's text) and of `event` (the
    /// Socket.IO event's JSON array).
    fn new(raw: &str, event: &str) -> Frames {
        use crate::proto::frame::{opcode, write_frame};
        let mut r = Vec::with_capacity(raw.len() + 10);
        write_frame(&mut r, opcode::TEXT, raw.as_bytes());
        let packet = format!("42{event}");
        let mut s = Vec::with_capacity(packet.len() + 10);
        write_frame(&mut s, opcode::TEXT, packet.as_bytes());
        Frames {
            raw: r.into(),
            socketio: s.into(),
            event: event.into(),
        }
    }

    fn of(p: &Publication) -> Frames {
        // The raw text is {"event":"publication","data":DATA}: DATA is
        // the event's one argument.
        let data = p
            .text
            .strip_prefix(r#"{"event":"publication","data":"#)
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or("null");
        Frames::new(&p.text, &format!(r#"["publication",{data}]"#))
    }
}

/// A reply of the raw protocol: `{"event":E,"data":D[,"id":N]}`.
fn reply(event: &str, data: serde_json::Value, request: Option<u32>) -> Outgoing {
    let mut text = format!(r#"{{"event":"{event}","data":{data}"#);
    if let Some(id) = request {
        text.push_str(&format!(r#","id":{id}"#));
    }
    text.push('}');
    Outgoing::Text(text.into())
}

impl<H: Handler> Server<H> {
    /// A `subscribe` (`on`) or `unsubscribe` from the application for
    /// connection `conn`: checked, applied, answered.
    pub(super) fn subscription(
        &mut self,
        conn: ConnId,
        channel: &str,
        request: Option<u32>,
        on: bool,
        now: Now,
    ) {
        let Some(user) = self.user_of(conn) else {
            return; // gone meanwhile
        };
        let answer = if !on {
            self.env.channels.remove(conn, channel);
            Ok(reply(
                "unsubscribed",
                serde_json::json!({ "channel": channel }),
                request,
            ))
        } else if !valid_name(channel) {
            Err(Refusal::Invalid)
        } else if !self
            .env
            .shared
            .channels
            .may_subscribe(channel, user.as_deref())
        {
            Err(Refusal::Forbidden)
        } else {
            let max = self.env.shared.config.limits.max_subscriptions;
            self.env.channels.add(conn, channel, max).map(|_| {
                let data = serde_json::json!({ "channel": channel });
                reply("subscribed", data, request)
            })
        };
        let message = answer.unwrap_or_else(|refusal| {
            let (code, message) = match refusal {
                Refusal::Invalid => (
                    "invalid_message",
                    "data.channel must be 1 to 64 bytes of A-Z a-z 0-9 _ . : -",
                ),
                Refusal::Forbidden => ("forbidden", "not allowed to subscribe to this channel"),
                Refusal::TooMany => ("forbidden", "limits.max_subscriptions reached"),
            };
            log::limited(
                log::LogLevel::Info,
                "subscription refused",
                ("reason", code),
                &[("channel", &log::Target(channel)), ("reason", &message)],
            );
            reply(
                "error",
                serde_json::json!({ "code": code, "message": message }),
                request,
            )
        });
        self.deliver_to(conn, &message, usize::MAX, now);
    }

    /// The user of connection `conn` (`Some(None)`: anonymous; `None`: no
    /// such connection).
    fn user_of(&self, conn: ConnId) -> Option<Option<String>> {
        if let Some(user) = super::poll::user_of(&self.env, conn) {
            return Some(user);
        }
        let token = self
            .env
            .polls
            .moved_to(conn)
            .unwrap_or(mio::Token(conn.0 as usize));
        match &self.conns.get(token)?.phase {
            Phase::Ws(w) => Some(
                w.who
                    .as_ref()
                    .and_then(|w| w.user.as_deref().map(str::to_owned)),
            ),
            _ => None,
        }
    }

    /// Delivers a publication to this loop's subscribers; returns how many
    /// got it.
    pub(super) fn deliver(&mut self, publication: &Publication, now: Now) -> usize {
        let Some(set) = self.env.channels.by_channel.get(&publication.channel) else {
            return 0;
        };
        let subscribers: Vec<ConnId> = set.iter().copied().collect();
        let message = Outgoing::Text(Arc::clone(&publication.text));
        self.deliver_frames(subscribers, &message, &Frames::of(publication), now)
    }

    /// A message read from the cluster's Redis: a broadcast of another
    /// instance (palisade, or Node `socket.io` with the Redis adapter)
    /// for this loop's subscribers of its rooms.
    pub(super) fn deliver_remote(&mut self, channel: &[u8], payload: &[u8], now: Now) {
        use crate::cluster::adapter::{self, Skip};
        let Some(cluster) = &self.env.cluster else {
            return;
        };
        let Some(room) = std::str::from_utf8(channel)
            .ok()
            .and_then(|c| adapter::room_of(cluster.prefix(), c))
        else {
            return;
        };
        // A broadcast to one room nobody here subscribes to is not even
        // decoded.
        if !room.is_empty() && !self.env.channels.by_channel.contains_key(room) {
            return;
        }
        let b = match adapter::broadcast(payload, cluster.uid()) {
            Ok(b) => b,
            Err(Skip::Own) => return,
            Err(why) => {
                log::limited(
                    log::LogLevel::Info,
                    "cluster message skipped",
                    ("reason", "cluster"),
                    &[("channel", &log::Target(room)), ("reason", &why)],
                );
                return;
            }
        };
        self.env.stats.cluster_received.inc();
        let channels = &self.env.channels;
        let mut subscribers: Vec<ConnId> = b
            .rooms
            .iter()
            .filter_map(|r| channels.by_channel.get(r.as_str()))
            .flatten()
            .copied()
            .filter(|c| {
                b.except.is_empty()
                    || !b.except.iter().any(|e| {
                        channels
                            .by_channel
                            .get(e.as_str())
                            .is_some_and(|s| s.contains(c))
                    })
            })
            .collect();
        if b.rooms.len() > 1 {
            subscribers.sort_unstable_by_key(|c| c.0);
            subscribers.dedup();
        }
        let message = Outgoing::Text(b.raw.as_str().into());
        let frames = Frames::new(&b.raw, &b.event);
        self.deliver_frames(subscribers, &message, &frames, now);
    }

    /// Delivers `message` (encoded once as `frames`) to `subscribers`;
    /// returns how many got it.
    fn deliver_frames(
        &mut self,
        subscribers: Vec<ConnId>,
        message: &Outgoing,
        frames: &Frames,
        now: Now,
    ) -> usize {
        let cap = self.env.shared.config.limits.max_outbound_bytes;
        let mut delivered = 0;
        for conn in subscribers {
            // A subscriber that lost publications hears it first, once it
            // has room again (rarely any: no lookup while there is none).
            let dropped = &self.env.channels.dropped;
            if !dropped.is_empty() && !self.tell_dropped(conn, cap, now) {
                self.env.stats.publications_dropped.inc();
                *self.env.channels.dropped.entry(conn).or_default() += 1;
                continue;
            }
            if self.deliver_publication(conn, message, frames, cap, now) {
                delivered += 1;
            } else {
                self.env.stats.publications_dropped.inc();
                *self.env.channels.dropped.entry(conn).or_default() += 1;
            }
        }
        delivered
    }

    /// Tells `conn` how many publications it lost, if it lost any: false
    /// when it still has no room (it loses this one too).
    #[cold]
    fn tell_dropped(&mut self, conn: ConnId, cap: usize, now: Now) -> bool {
        let Some(&lost) = self.env.channels.dropped.get(&conn) else {
            return true;
        };
        let data = serde_json::json!({
            "code": "dropped",
            "message": format!("{lost} publications were dropped: this connection reads too slowly"),
        });
        if self.deliver_to(conn, &reply("error", data, None), cap, now) {
            self.env.channels.dropped.remove(&conn);
            return true;
        }
        false
    }

    /// A publication for `conn`: over a WebSocket the frame encoded once
    /// for every subscriber ([`Frames`]), else (long-polling) as any
    /// message.
    fn deliver_publication(
        &mut self,
        conn: ConnId,
        message: &Outgoing,
        frames: &Frames,
        cap: usize,
        now: Now,
    ) -> bool {
        // A raw WebSocket's id is its token; a Socket.IO session's that
        // began on long-polling has the polling bit, and its WebSocket's
        // token once it moved to one.
        let token = if conn.0 as usize & super::poll::POLL_BIT == 0 {
            mio::Token(conn.0 as usize)
        } else if let Some(queued) = super::poll::push_event(&mut self.env, conn, &frames.event) {
            return queued;
        } else {
            match self.env.polls.moved_to(conn) {
                Some(token) => token,
                None => return false,
            }
        };
        // A raw WebSocket, or a Socket.IO one whose session is open here;
        // anything else (a probe, say) the way every message goes.
        let shared = match self
            .conns
            .get(token)
            .map(|c| (&c.phase, c.io.has(Io::SOCKETIO)))
        {
            Some((Phase::Ws(w), sio_bit)) => match w.who.as_deref() {
                None => (!sio_bit).then_some(&frames.raw),
                Some(who) => match who.sio.as_deref() {
                    None => (!sio_bit && who.probe.is_none()).then_some(&frames.raw),
                    Some(sio) => (sio.opened && who.probe.is_none()).then_some(&frames.socketio),
                },
            },
            _ => return false,
        };
        let Some(frame) = shared else {
            return self.deliver_to(conn, message, cap, now);
        };
        let Some(c) = self.conns.get_mut(token) else {
            return false;
        };
        let Phase::Ws(w) = &mut c.phase else {
            return false;
        };
        if !w.ws.is_open() || w.ws.output().len().saturating_add(frame.len()) > cap {
            return false;
        }
        // Nothing queued ahead of it: straight from the shared bytes to the
        // socket, no copy of ours. What the socket does not take (or all of
        // it, behind other output or over TLS) is queued.
        let mut rest: &[u8] = frame;
        if c.tls.is_none() && w.ws.output().is_empty() && c.io.has(Io::WRITABLE) {
            match super::sys::send(&c.sock, frame) {
                Ok(n) => {
                    self.env.stats.bytes_sent.add(n as u64);
                    rest = &frame[n..];
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    c.io.set(Io::WRITABLE, false);
                }
                // The next write meets the error and closes it.
                Err(_) => {}
            }
            if rest.is_empty() {
                self.env.stats.messages_sent.inc();
                return true;
            }
        }
        w.ws.provide_output_buffer(|| self.bufs.take());
        let limits = &self.env.shared.limits;
        let queued =
            w.ws.with_sender(now.stamp, limits, |tx| tx.send_encoded(rest).is_ok());
        self.enqueue(token);
        queued
    }

    /// Queues `message` for `conn` unless its queue would pass `cap`.
    fn deliver_to(&mut self, conn: ConnId, message: &Outgoing, cap: usize, now: Now) -> bool {
        if super::poll::push(&mut self.env, conn, message) {
            return true;
        }
        let token = self
            .env
            .polls
            .moved_to(conn)
            .unwrap_or(mio::Token(conn.0 as usize));
        let Some(c) = self.conns.get(token) else {
            return false;
        };
        let Phase::Ws(w) = &c.phase else {
            return false;
        };
        let len = match message {
            Outgoing::Text(t) => t.len(),
            Outgoing::Binary(b) => b.len(),
        };
        if w.ws.output().len().saturating_add(len) > cap {
            return false;
        }
        self.send_to(token, message, now)
    }

    /// A publication made on this loop: its subscribers here, every other
    /// loop's, and (through Redis) every other instance's.
    pub(super) fn publish(&mut self, publication: Arc<Publication>, now: Now) {
        self.deliver(&publication, now);
        self.tell_others(|| super::group::Control::Publish(Arc::clone(&publication)));
        if let Some(cluster) = &mut self.env.cluster {
            let data = publication.data();
            cluster.publish(&publication.channel, data, &self.env.stats);
        }
    }

    /// A connection is gone: its subscriptions end.
    pub(super) fn unsubscribe_all(&mut self, conn: ConnId) {
        self.env.channels.gone(conn);
    }
}
