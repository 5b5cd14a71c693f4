//! The application interface: what a server built on palisade runs for its
//! connections, whatever transport carries their messages.
//!
//! A [`Handler`] sees a connection open (with the authenticated user and
//! the chosen subprotocol), each text or binary message, and the close. It
//! answers through the [`Context`] it is given, and reaches any open
//! connection from anywhere else (another thread, a timer, a callback about
//! another connection) through a [`Handle`]: a cloneable channel to the
//! event loop that wakes it with mio's `Waker`.
//!
//! The server is generic over its handler, so calls are static; the
//! transport behind a `Context` is reached through one indirect call per
//! reply, which is what lets the same handler answer the raw WebSocket
//! endpoint and any other transport the server adds.

use std::fmt;

pub use serde_json::value::RawValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

pub use crate::proto::conn::Text;
pub use crate::proto::error::SendError;

/// A connection, for as long as the server runs: ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A complete message from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Text (validated UTF-8).
    Text(Text<'a>),
    /// Binary data.
    Binary(&'a [u8]),
}

/// How a connection ended, as [`Handler::on_close`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed<'a> {
    /// The connection.
    pub id: ConnId,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// The close code sent or received (1006 when TCP ended without one).
    pub code: u16,
}

/// An application: called on the event loop for every open connection.
///
/// Calls for one connection come in order: [`Handler::on_open`] once,
/// [`Handler::on_message`] for each message, then [`Handler::on_close`]
/// once. Nothing here may block: the loop serves every other client
/// meanwhile (hand slow work to a thread and answer through a [`Handle`]).
pub trait Handler: 'static {
    /// Subprotocols this application speaks. The server confirms the first
    /// one the client offers that is in this list (RFC 6455 §4.2.2), and
    /// [`Context::protocol`] tells which.
    fn protocols(&self) -> &[&'static str] {
        &[]
    }

    /// A connection opened (its `101` is sent).
    fn on_open(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// A complete message arrived.
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>);

    /// The connection is gone; nothing can be sent to it any more.
    fn on_close(&mut self, closed: &Closed<'_>) {
        let _ = closed;
    }

    /// Socket.IO namespaces this application serves besides `/` (a CONNECT
    /// to any other is refused `Invalid namespace`).
    fn namespaces(&self) -> &[&'static str] {
        &[]
    }

    /// A Socket.IO client joined `namespace` (after [`Handler::on_open`]
    /// for its first one), with its CONNECT's `auth` payload (`{}` when it
    /// sent none).
    fn on_join(&mut self, cx: &mut Context<'_>, namespace: &str, auth: &serde_json::Value) {
        let _ = (cx, namespace, auth);
    }

    /// A Socket.IO event. [`Context::emit`] answers in its namespace and
    /// [`Context::ack`] answers its ack. By default it reaches
    /// [`Handler::on_message`] as the raw protocol's JSON text
    /// ([`SocketEvent::to_message`]), and a reply that names the same `id`
    /// is also the ack: an application written for raw messages serves
    /// Socket.IO clients unchanged. Binary attachments are in
    /// `event.binary` (their placeholders in the arguments); the default
    /// leaves them out.
    fn on_event(&mut self, cx: &mut Context<'_>, event: &SocketEvent<'_>) {
        let text = event.to_message();
        self.on_message(cx, Message::Text(Text::from(text.as_str())));
    }

    /// A Socket.IO client answered an event sent with
    /// [`Context::emit_with_ack`] (`ack.id` is the id that returned).
    fn on_ack(&mut self, cx: &mut Context<'_>, ack: &SocketAck<'_>) {
        let _ = (cx, ack);
    }
}

/// A Socket.IO client's answer to an event the server asked an ack for.
#[derive(Clone, Copy, Debug)]
pub struct SocketAck<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// The id [`Context::emit_with_ack`] returned.
    pub id: u64,
    /// The answer's arguments, each as the JSON text the client sent.
    pub args: &'a [&'a RawValue],
    /// Binary attachments, in the order of their placeholders.
    pub binary: &'a [Vec<u8>],
}

/// A Socket.IO event from a client.
#[derive(Clone, Copy, Debug)]
pub struct SocketEvent<'a> {
    /// Its namespace (`/`, or one of [`Handler::namespaces`]).
    pub namespace: &'a str,
    /// The event name.
    pub name: &'a str,
    /// The arguments after the name, each as the JSON text the client sent
    /// (read one with [`SocketEvent::arg`]; nothing is parsed unless asked).
    pub args: &'a [&'a RawValue],
    /// Binary attachments, in the order of their placeholders.
    pub binary: &'a [Vec<u8>],
    /// The id of the ack the client asked for.
    pub ack: Option<u64>,
}

impl<'a> SocketEvent<'a> {
    /// Argument `i` read as a `T`, if there is one and it is one.
    pub fn arg<T: serde::Deserialize<'a>>(&self, i: usize) -> Option<T> {
        serde_json::from_str(self.args.get(i)?.get()).ok()
    }

    /// The raw protocol's JSON text of this event:
    /// `{"event":<name>,"data":<the argument, or the array of them>,"id":<ack id>}`.
    pub fn to_message(&self) -> String {
        use std::fmt::Write as _;
        let size =
            32 + self.name.len() + self.args.iter().map(|a| a.get().len() + 1).sum::<usize>();
        let mut text = String::with_capacity(size);
        text.push_str(r#"{"event":"#);
        text.push_str(&serde_json::to_string(self.name).expect("a string serializes"));
        match self.args {
            [] => {}
            [one] => {
                text.push_str(r#","data":"#);
                text.push_str(one.get());
            }
            many => {
                text.push_str(r#","data":["#);
                for (i, a) in many.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(a.get());
                }
                text.push(']');
            }
        }
        if let Some(id) = self.ack {
            let _ = write!(text, r#","id":{id}"#);
        }
        text.push('}');
        text
    }
}

/// What a transport does with replies: a WebSocket writes frames; another
/// transport writes its own packets. Crate-private: applications see only
/// [`Context`].
pub(crate) trait Outbound {
    /// Queues a text message (`text` is UTF-8).
    fn text(&mut self, text: Text<'_>) -> Result<(), SendError>;
    /// Queues a text message written by `write` straight into the output.
    fn text_with(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Result<(), SendError>;
    /// Queues a binary message.
    fn binary(&mut self, data: &[u8]) -> Result<(), SendError>;
    /// Starts the close.
    fn close(&mut self, code: u16, reason: &'static str);
    /// Sends an event: on a raw WebSocket the JSON text
    /// `{"event":<name>,"data":<args>}` (one argument as itself); binary
    /// attachments go after it as binary messages.
    fn emit(
        &mut self,
        name: &str,
        args: &[serde_json::Value],
        binary: &[&[u8]],
    ) -> Result<(), SendError> {
        let data = match args {
            [one] => one.clone(),
            many => serde_json::Value::from(many.to_vec()),
        };
        let text = serde_json::json!({ "event": name, "data": data }).to_string();
        self.text(Text::from(text.as_str()))?;
        binary.iter().try_for_each(|b| self.binary(b))
    }
    /// [`Outbound::emit`] with arguments that are JSON texts.
    fn emit_raw(
        &mut self,
        name: &str,
        args: &[&RawValue],
        binary: &[&[u8]],
    ) -> Result<(), SendError> {
        let values: Vec<serde_json::Value> = args
            .iter()
            .filter_map(|a| serde_json::from_str(a.get()).ok())
            .collect();
        self.emit(name, &values, binary)
    }
    /// [`Outbound::emit_raw`] asking for an ack; its id (none on a raw
    /// WebSocket, which sends the event without one).
    fn emit_with_ack(
        &mut self,
        name: &str,
        args: &[&RawValue],
        binary: &[&[u8]],
    ) -> Result<Option<u64>, SendError> {
        self.emit_raw(name, args, binary).map(|()| None)
    }
    /// Answers the ack of the event being handled; false when there is
    /// none (a raw WebSocket has none).
    fn ack(&mut self, args: &[serde_json::Value], binary: &[&[u8]]) -> bool {
        let _ = (args, binary);
        false
    }
    /// [`Outbound::ack`] with arguments that are JSON texts.
    fn ack_raw(&mut self, args: &[&RawValue], binary: &[&[u8]]) -> bool {
        let _ = (args, binary);
        false
    }
    /// The Socket.IO namespace of the event being handled.
    fn namespace(&self) -> Option<&str> {
        None
    }
}

/// What a handler gets with every call about a connection: who it is, and
/// a way to answer.
pub struct Context<'a> {
    pub(crate) id: ConnId,
    pub(crate) user: Option<&'a str>,
    pub(crate) protocol: Option<&'static str>,
    pub(crate) out: &'a mut dyn Outbound,
    pub(crate) handle: &'a Handle,
}

impl<'a> Context<'a> {
    /// The connection.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The authenticated user (`None` with `auth.mode` none).
    pub fn user(&self) -> Option<&'a str> {
        self.user
    }

    /// The confirmed subprotocol, if any.
    pub fn protocol(&self) -> Option<&'static str> {
        self.protocol
    }

    /// Sends a text message: a `&str`, or a received [`Text`] as it is.
    pub fn send_text<'t>(&mut self, text: impl Into<Text<'t>>) -> Result<(), SendError> {
        self.out.text(text.into())
    }

    /// Sends a text message that `write` appends straight into the output
    /// (serialize JSON into it, for example). What it writes must be UTF-8,
    /// or nothing is sent and the result is `Err(SendError::NotUtf8)`.
    pub fn send_text_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), SendError> {
        let mut write = Some(write);
        self.out.text_with(&mut |buf| {
            if let Some(w) = write.take() {
                w(buf);
            }
        })
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.out.binary(data)
    }

    /// Subscribes this connection to `channel` (SPEC.md §10) if the
    /// `channels` rules let its user, within `limits.max_subscriptions`:
    /// the server answers `subscribed` `{"channel"}` (with `request` as
    /// the reply's `id`), or an `error` event (`forbidden`,
    /// `invalid_message`). Publications then arrive as `publication`.
    pub fn subscribe(&self, channel: &str, request: Option<u32>) {
        let _ = self.handle.subscribe(self.id, channel, request, true);
    }

    /// Ends this connection's subscription to `channel`: the server
    /// answers `unsubscribed` `{"channel"}`.
    pub fn unsubscribe(&self, channel: &str, request: Option<u32>) {
        let _ = self.handle.subscribe(self.id, channel, request, false);
    }

    /// Publishes `data` on `channel` to its subscribers on every event
    /// loop ([`Handle::publish`]).
    pub fn publish(&self, channel: &str, data: &RawValue) -> Result<(), HandleError> {
        self.handle.publish(channel, data)
    }

    /// Whether any connection of the server subscribes to any channel (to
    /// skip building a publication nobody would get).
    pub fn has_subscribers(&self) -> bool {
        self.handle.has_subscribers()
    }

    /// Closes the connection with `code` and `reason` (RFC 6455 §7.1.2).
    pub fn close(&mut self, code: u16, reason: &'static str) {
        self.out.close(code, reason)
    }

    /// Sends the event `name` with `args`: to a Socket.IO client in the
    /// namespace of the event being handled (`/` otherwise), with `binary`
    /// as the attachments its args' placeholders
    /// (`{"_placeholder":true,"num":N}`) name; to a raw WebSocket as
    /// `{"event":<name>,"data":<args>}` (one argument as itself).
    pub fn emit(
        &mut self,
        name: &str,
        args: &[serde_json::Value],
        binary: &[&[u8]],
    ) -> Result<(), SendError> {
        self.out.emit(name, args, binary)
    }

    /// [`Context::emit`] with arguments that are JSON texts (those of a
    /// [`SocketEvent`], or serialized once and kept), written as they are.
    pub fn emit_raw(
        &mut self,
        name: &str,
        args: &[&RawValue],
        binary: &[&[u8]],
    ) -> Result<(), SendError> {
        self.out.emit_raw(name, args, binary)
    }

    /// [`Context::emit_raw`] asking a Socket.IO client for an ack: the id
    /// its answer comes back with, in [`Handler::on_ack`] (`None` on a raw
    /// WebSocket, which gets the event as `{"event","data"}` without one).
    pub fn emit_with_ack(
        &mut self,
        name: &str,
        args: &[&RawValue],
        binary: &[&[u8]],
    ) -> Result<Option<u64>, SendError> {
        self.out.emit_with_ack(name, args, binary)
    }

    /// Answers the ack the Socket.IO client asked for with the event being
    /// handled; false when it asked for none (or on a raw WebSocket).
    pub fn ack(&mut self, args: &[serde_json::Value], binary: &[&[u8]]) -> bool {
        self.out.ack(args, binary)
    }

    /// [`Context::ack`] with arguments that are JSON texts.
    pub fn ack_raw(&mut self, args: &[&RawValue], binary: &[&[u8]]) -> bool {
        self.out.ack_raw(args, binary)
    }

    /// The Socket.IO namespace of the event being handled (`None` on a raw
    /// WebSocket).
    pub fn namespace(&self) -> Option<&str> {
        self.out.namespace()
    }

    /// The server's handle: to reach other connections, now or later.
    pub fn handle(&self) -> &'a Handle {
        self.handle
    }
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Which open connections a [`Handle`] message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One connection.
    Conn(ConnId),
    /// These connections (a group the application keeps).
    Conns(Vec<ConnId>),
    /// Every open WebSocket connection.
    All,
}

impl From<ConnId> for Target {
    fn from(id: ConnId) -> Target {
        Target::Conn(id)
    }
}

impl From<Vec<ConnId>> for Target {
    fn from(ids: Vec<ConnId>) -> Target {
        Target::Conns(ids)
    }
}

/// A message to send from outside a callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Text.
    Text(Arc<str>),
    /// Binary data.
    Binary(Arc<[u8]>),
}

/// What the loop is asked to do through a [`Handle`].
#[derive(Debug)]
pub(crate) enum Command {
    Send(Target, Outgoing),
    /// Subscribe `conn` to a channel (or unsubscribe it), answering the
    /// request `request` carried (its `id`).
    Subscribe {
        conn: ConnId,
        channel: Box<str>,
        request: Option<u32>,
        on: bool,
    },
    /// Deliver a publication to the channel's subscribers.
    Publish(Arc<Publication>),
    Close(Target, u16, &'static str),
    /// Close `1008` with the reason the connections a log-out revoked.
    Revoke(crate::security::Revoke, &'static str),
    Shutdown,
}

/// A publication, encoded once for every subscriber: the raw protocol's
/// `{"event":"publication","data":{"channel","data"}}` (SPEC.md §10).
#[derive(Debug)]
pub(crate) struct Publication {
    pub channel: Box<str>,
    pub text: Arc<str>,
}

impl Publication {
    /// The publication of `data` (JSON text) on `channel`.
    pub fn new(channel: &str, data: &str) -> Publication {
        let mut text = String::with_capacity(48 + channel.len() + data.len());
        text.push_str(r#"{"event":"publication","data":{"channel":""#);
        text.push_str(channel);
        text.push_str(r#"","data":"#);
        text.push_str(data);
        text.push_str("}}");
        Publication {
            channel: channel.into(),
            text: text.into(),
        }
    }

    /// The published data (JSON text).
    pub fn data(&self) -> &str {
        let head = r#"{"event":"publication","data":{"channel":""#.len() + self.channel.len();
        let head = head + r#"","data":"#.len();
        &self.text[head..self.text.len() - 2]
    }
}

/// Why a [`Handle`] could not pass a command on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The loop has not taken the commands already queued
    /// ([`COMMAND_QUEUE`] of them); try again later.
    Full,
    /// The server has stopped.
    Stopped,
    /// Not a channel name (1 to 64 bytes of `A-Z a-z 0-9 _ . : -`).
    InvalidChannel,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandleError::Full => "the server's command queue is full",
            HandleError::Stopped => "the server has stopped",
            HandleError::InvalidChannel => "not a channel name",
        })
    }
}

impl std::error::Error for HandleError {}

/// Commands a [`Handle`] may queue before the loop takes them.
pub const COMMAND_QUEUE: usize = 64 * 1024;

/// A cloneable way to reach the server's connections from anywhere: sends
/// queue a command and wake the event loop, which applies it on its next
/// turn. `Send` and `Sync`: share it with other threads.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Command>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// Subscriptions on every loop of the server: a publication nobody
    /// could receive is not queued at all (unless other instances may
    /// have subscribers: `cluster`).
    subscriptions: Arc<AtomicUsize>,
    /// Publications also go to other instances (`cluster.redis_url`).
    cluster: bool,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    /// A handle and the receiving end the loop drains; `wake` wakes the
    /// loop (mio's `Waker`).
    pub(crate) fn new(
        wake: Arc<dyn Fn() + Send + Sync>,
        subscriptions: Arc<AtomicUsize>,
        cluster: bool,
    ) -> (Handle, Receiver<Command>) {
        let (tx, rx) = sync_channel(COMMAND_QUEUE);
        let handle = Handle {
            tx,
            wake,
            subscriptions,
            cluster,
        };
        (handle, rx)
    }

    /// Publishes `data` (a JSON value) on `channel`: every connection
    /// subscribed to it, on every event loop, gets `{"event":"publication",
    /// "data":{"channel","data"}}` (a Socket.IO client the event
    /// `publication`), and with `cluster.redis_url` every other instance's.
    /// Encoded once here; nothing is queued when no connection has a
    /// subscription (and there is no cluster).
    pub fn publish(&self, channel: &str, data: &RawValue) -> Result<(), HandleError> {
        if !crate::security::channels::valid_name(channel) {
            return Err(HandleError::InvalidChannel);
        }
        if !self.has_subscribers() {
            return Ok(());
        }
        let publication = Publication::new(channel, data.get());
        self.submit(Command::Publish(Arc::new(publication)))
    }

    /// Whether a publication may reach anyone: a connection of the
    /// server subscribes to some channel, or there are other instances
    /// (`cluster.redis_url`), whose subscriptions this one does not know.
    pub fn has_subscribers(&self) -> bool {
        self.cluster || self.subscriptions.load(Ordering::Relaxed) > 0
    }

    /// Subscribes connection `conn` to `channel` (`on`), or unsubscribes
    /// it; the loop answers `subscribed` / `unsubscribed` or an `error`
    /// (with `request` as the reply's `id`).
    pub(crate) fn subscribe(
        &self,
        conn: ConnId,
        channel: &str,
        request: Option<u32>,
        on: bool,
    ) -> Result<(), HandleError> {
        self.submit(Command::Subscribe {
            conn,
            channel: channel.into(),
            request,
            on,
        })
    }

    fn submit(&self, command: Command) -> Result<(), HandleError> {
        match self.tx.try_send(command) {
            Ok(()) => {
                (self.wake)();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(HandleError::Full),
            Err(TrySendError::Disconnected(_)) => Err(HandleError::Stopped),
        }
    }

    /// Closes the connections that `revoke` names with `1008` and `reason`
    /// (a log-out, from the loop itself). The token is refused already;
    /// should the queue be full, those connections live until it expires.
    pub(crate) fn revoke(&self, revoke: crate::security::Revoke, reason: &'static str) {
        if let Err(e) = self.submit(Command::Revoke(revoke, reason)) {
            crate::log::warn(
                "could not close the connections of a revoked token",
                &[("error", &e)],
            );
        }
    }

    /// Sends a text message to `to`: encoded once, queued for each open
    /// connection it names (connections that are gone are skipped).
    pub fn send_text(
        &self,
        to: impl Into<Target>,
        text: impl Into<Arc<str>>,
    ) -> Result<(), HandleError> {
        self.submit(Command::Send(to.into(), Outgoing::Text(text.into())))
    }

    /// Sends a binary message to `to`.
    pub fn send_binary(
        &self,
        to: impl Into<Target>,
        data: impl Into<Arc<[u8]>>,
    ) -> Result<(), HandleError> {
        self.submit(Command::Send(to.into(), Outgoing::Binary(data.into())))
    }

    /// Sends a text message to every open WebSocket connection.
    pub fn broadcast_text(&self, text: impl Into<Arc<str>>) -> Result<(), HandleError> {
        self.send_text(Target::All, text)
    }

    /// Closes `to` with `code` and `reason`.
    pub fn close(
        &self,
        to: impl Into<Target>,
        code: u16,
        reason: &'static str,
    ) -> Result<(), HandleError> {
        self.submit(Command::Close(to.into(), code, reason))
    }

    /// Starts a graceful shutdown, as SIGTERM does: every WebSocket is
    /// closed `1001` and the server's `run` returns once they are gone or
    /// `shutdown_grace_ms` has passed.
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.submit(Command::Shutdown)
    }
}

/// The raw WebSocket transport: replies are frames queued on the
/// connection (the core's [`Sender`](crate::proto::conn::Sender)).
impl Outbound for crate::proto::conn::Sender<'_> {
    fn text(&mut self, text: Text<'_>) -> Result<(), SendError> {
        self.send_text(text)
    }

    fn text_with(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Result<(), SendError> {
        self.send_text_with(write)
    }

    fn binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_binary(data)
    }

    fn close(&mut self, code: u16, reason: &'static str) {
        crate::proto::conn::Sender::close(self, code, reason)
    }
}

/// A transport that keeps what a handler sends, for unit tests of
/// applications.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// What a handler sent through a [`Context`].
    #[derive(Debug, Default)]
    pub struct Replies {
        /// Text messages, in order.
        pub texts: Vec<String>,
        /// Binary messages, in order.
        pub binaries: Vec<Vec<u8>>,
        /// The close, if it closed.
        pub closed: Option<(u16, &'static str)>,
    }

    impl Outbound for Replies {
        fn text(&mut self, text: Text<'_>) -> Result<(), SendError> {
            self.texts.push(text.as_str().to_owned());
            Ok(())
        }

        fn text_with(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Result<(), SendError> {
            let mut buf = Vec::new();
            write(&mut buf);
            let text = String::from_utf8(buf).map_err(|_| SendError::NotUtf8)?;
            self.texts.push(text);
            Ok(())
        }

        fn binary(&mut self, data: &[u8]) -> Result<(), SendError> {
            self.binaries.push(data.to_vec());
            Ok(())
        }

        fn close(&mut self, code: u16, reason: &'static str) {
            self.closed = Some((code, reason));
        }
    }

    /// Runs `f` with a context for connection 1 of `user`; returns what it sent.
    pub fn replies(user: Option<&str>, f: impl FnOnce(&mut Context<'_>)) -> Replies {
        let mut out = Replies::default();
        let (handle, _rx) = Handle::new(Arc::new(|| {}), Default::default(), false);
        let mut cx = Context {
            id: ConnId(1),
            user,
            protocol: None,
            out: &mut out,
            handle: &handle,
        };
        f(&mut cx);
        out
    }
}
