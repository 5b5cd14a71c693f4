//! A Socket.IO session over an open WebSocket (the `websocket` transport of
//! Engine.IO): frames in and out through the WebSocket core, packets
//! through [`crate::socketio::session::Session`], and the application
//! reached through the same [`Handler`] as on `ws.path`.
//!
//! The bridge: an event `get_name` with arguments `[{"hero":"hulk"}]` (and
//! ack id 7) reaches the handler as the text message
//! `{"event":"get_name","data":{"hero":"hulk"},"id":7}`, the raw endpoint's
//! protocol; a text the handler sends that is such an object goes out as
//! the event it names (`42["name",{…}]`), and as the ack (`437[{…}]`) when
//! its `id` is the ack id of the event being answered. Other text goes out
//! as a `message` event, binary data as a `message` event with one
//! attachment.
//!
//! Credentials (SPEC.md §5) are checked before the client joins `/`: a
//! `{"token"}` or `{"username","password"}` (on the password workers, like
//! `/login`) in the CONNECT payload, else those of the handshake request
//! (cookie, `Authorization`). A refusal is `44{"message","data":{"code"}}`,
//! the client's `connect_error`.

use serde_json::Value;
use serde_json::value::RawValue;

use super::conn::{Conn, Phase, Who, Ws};
use super::drive::Ctx;
use crate::handler::{ConnId, Context, Handler, Outbound, SendError, SocketAck, SocketEvent, Text};
use crate::log;
use crate::metrics::Stats;
use crate::proto::conn::{Event as WsEvent, Sender, WebSocket};
use crate::proto::error::code;
use crate::proto::{Limits, Stamp};
use crate::router::{HandshakeCredential, unix_now};
use crate::security::ratelimit::MessageRate;
use crate::socketio::session::{Ended, Event, Out, Session, Settings};

/// The Socket.IO side of a WebSocket.
pub(crate) struct Sio {
    pub session: Session,
    /// The connection as the handler knows it (a session that moved from
    /// long-polling keeps the id it had there).
    pub id: ConnId,
    /// Whether the handler saw it open (it sees the close only then).
    pub opened: bool,
    credential: HandshakeCredential,
    /// A CONNECT whose password is being checked.
    checking: Option<Box<Checking>>,
}

/// A CONNECT waiting for its password check.
struct Checking {
    username: String,
    nsp: String,
    /// Its payload without the password (for [`Handler::on_join`]).
    auth: Value,
}

impl Sio {
    /// A session `id` opened at `now`; its open packet (with `upgrades`:
    /// `["websocket"]` on long-polling) is queued.
    pub fn new<H>(
        now: Stamp,
        credential: HandshakeCredential,
        id: ConnId,
        sid: &str,
        upgrades: &[&str],
        engine_only: bool,
        ctx: &Ctx<'_, H>,
    ) -> Sio {
        let config = &ctx.env.shared.config;
        let s = &config.socketio;
        let settings = Settings {
            ping_interval_ms: s.ping_interval_ms,
            ping_timeout_ms: s.ping_timeout_ms,
            connect_timeout_ms: s.connect_timeout_ms,
            max_payload: config.limits.max_message_bytes,
            max_attachments: s.max_attachments,
        };
        Sio {
            session: if engine_only {
                Session::engine_only(now, settings, sid, upgrades)
            } else {
                Session::new(now, settings, sid, upgrades)
            },
            id,
            opened: false,
            credential,
            checking: None,
        }
    }
}

/// 128 random bits, base64url: a session id.
pub(super) fn random_id() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut raw = [0u8; 16];
    // The system generator does not fail where this runs; zeros would
    // still be a working (if guessable) id.
    let _ = ring::rand::SystemRandom::new().fill(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// An Engine.IO session id: 128 random bits, then (with several loops)
/// the character naming the loop that owns the session.
pub(super) fn session_id(tag: Option<char>) -> String {
    let mut sid = random_id();
    sid.extend(tag);
    sid
}

/// Writes what the session queued as WebSocket frames.
fn flush(session: &mut Session, tx: &mut Sender<'_>) {
    for out in session.take_output() {
        let _ = match out {
            Out::Text(t) => tx.send_text(t.as_str()),
            Out::Binary(b) => tx.send_binary(&b),
        };
    }
}

/// Where a session's packets go: a WebSocket writes them as frames at
/// once; a long-polling session keeps them for its next `GET`.
pub(super) trait Wire {
    /// Sends what the session queued.
    fn flush(&mut self, session: &mut Session);
    /// Ends the transport with `code` (a WebSocket's close) and `reason`.
    fn close(&mut self, session: &mut Session, code: u16, reason: &'static str);
    /// The session just queued a CONNECT reply at `now`.
    fn connected(&mut self, _: &mut Session, _: Stamp) {}
}

/// How long the packets that follow a CONNECT reply on a WebSocket wait
/// ([`Session::hold`]): enough for the client to have read the reply
/// alone, short beside any round trip a client makes to connect.
const AFTER_CONNECT_MS: u64 = 1;

impl Wire for Sender<'_> {
    fn flush(&mut self, session: &mut Session) {
        flush(session, self);
    }

    fn connected(&mut self, session: &mut Session, now: Stamp) {
        session.hold(now.plus_millis(AFTER_CONNECT_MS));
    }

    fn close(&mut self, _: &mut Session, code: u16, reason: &'static str) {
        Sender::close(self, code, reason);
    }
}

/// The wire of a long-polling session: packets wait in the session.
pub(super) struct Held;

impl Wire for Held {
    fn flush(&mut self, _: &mut Session) {}

    fn close(&mut self, session: &mut Session, _: u16, reason: &'static str) {
        session.end_by_server(reason);
    }
}

/// Logs the end of a session.
pub(super) fn log_ended(why: Ended, peer: &std::net::SocketAddr) {
    log::limited(
        log::LogLevel::Info,
        "socket.io session closed",
        ("reason", why.reason()),
        &[("peer", peer), ("reason", &why.reason())],
    );
}

/// Ends the WebSocket when the session ended.
fn close_if_ended(session: &Session, tx: &mut Sender<'_>, peer: &std::net::SocketAddr) {
    let Some(why) = session.ended() else {
        return;
    };
    log_ended(why, peer);
    let code = match why {
        Ended::ClientClosed | Ended::PingTimeout | Ended::ConnectTimeout | Ended::Server(_) => {
            code::NORMAL
        }
        Ended::Malformed(_) | Ended::Transport(_) | Ended::Protocol(_) | Ended::TooLarge => {
            code::POLICY_VIOLATION
        }
    };
    tx.close(code, why.reason());
}

/// Writes the session's queued packets (the open packet, at first).
pub(super) fn write_out(sio: &mut Sio, ws: &mut WebSocket, now: Stamp, limits: &Limits) {
    ws.with_sender(now, limits, |tx| flush(&mut sio.session, tx));
}

/// A Socket.IO client's pieces, borrowed apart: over a WebSocket from its
/// connection, over long-polling from the loop's session table.
pub(super) struct Client<'c> {
    pub sio: &'c mut Sio,
    pub user: &'c mut Option<Box<str>>,
    pub token: &'c mut Option<crate::security::jwt::TokenId>,
    pub rate: &'c mut MessageRate,
    pub peer: &'c std::net::SocketAddr,
}

/// A WebSocket's Socket.IO pieces (None: not one, or still probing).
fn parts(conn: &mut Conn) -> Option<(&mut WebSocket, Client<'_>)> {
    let Conn { phase, peer, .. } = conn;
    let Phase::Ws(Ws { ws, rate, who }) = phase else {
        return None;
    };
    let Who {
        user, token, sio, ..
    } = who.as_deref_mut()?;
    Some((
        ws,
        Client {
            sio: sio.as_deref_mut()?,
            user,
            token,
            rate,
            peer,
        },
    ))
}

/// A Socket.IO WebSocket's input.
pub(super) fn input<H: Handler>(conn: &mut Conn, input: &mut [u8], ctx: &mut Ctx<'_, H>) {
    if conn_probing(conn) {
        return super::poll::probe_input(conn, input, ctx);
    }
    let Some((ws, mut c)) = parts(conn) else {
        return;
    };
    let stamp = ctx.stamp;
    let limits = ctx.env.shared.limits.clone();
    let mut expiry = None;
    ws.handle_input(stamp, input, &limits, |event, tx| {
        if let Some(at) = on_frame(&mut c, event, tx, ctx) {
            expiry = Some(at);
        }
    });
    if let Some(at) = expiry {
        ws.set_expiry(at);
    }
}

/// One WebSocket event of a Socket.IO client: to the session, what it
/// heard acted on, its packets written. Returns when an accepted token
/// expires.
pub(super) fn on_frame<H: Handler>(
    c: &mut Client<'_>,
    event: WsEvent<'_>,
    tx: &mut Sender<'_>,
    ctx: &mut Ctx<'_, H>,
) -> Option<Stamp> {
    let heard = match event {
        WsEvent::Text(t) => {
            ctx.env.stats.messages_received.inc();
            c.sio.session.handle_text(ctx.stamp, t.as_str())
        }
        WsEvent::Binary(b) => {
            ctx.env.stats.messages_received.inc();
            c.sio.session.handle_binary(b)
        }
        _ => None,
    };
    let expiry = dispatch(c, heard, tx, ctx);
    flush(&mut c.sio.session, tx);
    close_if_ended(&c.sio.session, tx, c.peer);
    expiry
}

/// Whether a Socket.IO WebSocket is still probing for a polling session.
fn conn_probing(conn: &Conn) -> bool {
    matches!(&conn.phase, Phase::Ws(Ws { who: Some(w), .. }) if w.probe.is_some())
}

/// What the session heard, acted on: a CONNECT checked, an event to the
/// handler (within the message rate), a DISCONNECT. Returns when an
/// accepted token expires.
pub(super) fn dispatch<H: Handler>(
    c: &mut Client<'_>,
    heard: Option<Event>,
    wire: &mut dyn Wire,
    ctx: &mut Ctx<'_, H>,
) -> Option<Stamp> {
    match heard {
        Some(Event::Connect { nsp, auth }) => return connect(c, &nsp, &auth, wire, ctx),
        Some(Event::Event {
            nsp,
            name,
            args,
            binary,
            ack,
        }) => {
            use crate::security::ratelimit::Verdict;
            let per_s = ctx.env.shared.config.rate.messages_per_conn_per_s;
            match c.rate.check(per_s, ctx.stamp) {
                Verdict::Allowed => args.with(|args| {
                    let event = SocketEvent {
                        namespace: &nsp,
                        name: &name,
                        args,
                        binary: &binary,
                        ack,
                    };
                    deliver(c.sio, c.user.as_deref(), &event, wire, ctx);
                }),
                Verdict::Refused { .. } => ctx.env.stats.rate_limited.inc("message"),
                Verdict::StrikeOut => {
                    ctx.env.stats.rate_limited.inc("message");
                    wire.close(
                        &mut c.sio.session,
                        code::POLICY_VIOLATION,
                        "message rate exceeded",
                    );
                }
            }
        }
        // The client left a namespace. The Engine.IO session stays open,
        // even without a namespace, as the reference server keeps it; the
        // channels it subscribed to through `/` (Socket.IO rooms of `/`)
        // are left with `/`.
        Some(Event::Disconnect { nsp }) => {
            if nsp == "/" {
                ctx.env.channels.gone(c.sio.id);
            }
            log::debug("socket.io left", &[("peer", c.peer), ("nsp", &nsp)]);
        }
        // The conformance echo of Engine.IO alone (`/engine.io/`).
        Some(Event::Message(text)) => c.sio.session.message(Some(&text), None),
        Some(Event::BinaryMessage(data)) => c.sio.session.message(None, Some(&data)),
        Some(Event::Ack {
            nsp,
            id,
            args,
            binary,
        }) => args.with(|args| {
            let ack = SocketAck {
                namespace: &nsp,
                id,
                args,
                binary: &binary,
            };
            let (handle, handler) = (&ctx.env.handle, &mut ctx.env.handler);
            let mut out = Bridge {
                session: &mut c.sio.session,
                wire,
                nsp: &nsp,
                ack: None,
                later: false,
            };
            let mut cx = Context {
                id: c.sio.id,
                user: c.user.as_deref(),
                protocol: None,
                out: &mut out,
                handle,
            };
            handler.on_ack(&mut cx, &ack);
        }),
        None => {}
    }
    None
}

/// A CONNECT: `/` or a namespace the handler serves, with credentials (a
/// client that proved who it is once need not again); the handler sees
/// the connection open. Returns when the token expires, if one was
/// accepted.
fn connect<H: Handler>(
    c: &mut Client<'_>,
    nsp: &str,
    auth: &Value,
    wire: &mut dyn Wire,
    ctx: &mut Ctx<'_, H>,
) -> Option<Stamp> {
    if nsp != "/" && !ctx.env.handler.namespaces().contains(&nsp) {
        c.sio.session.refuse(nsp, "Invalid namespace", None);
        return None;
    }
    let mut expiry = None;
    let outcome: Result<(), &'static str> = match (auth.get("token"), c.sio.credential) {
        (_, HandshakeCredential::NotRequired) => Ok(()),
        (None, _) if c.user.is_some() => Ok(()),
        (Some(Value::String(token)), _) => match ctx.env.auth.verify_token(token, unix_now()) {
            Ok(crate::security::Identity::User {
                name,
                expires_at,
                token,
            }) => {
                *c.user = Some(name.into_boxed_str());
                *c.token = token;
                if let Some(exp) = expires_at {
                    let left = exp.saturating_sub(unix_now()).min(1 << 32);
                    expiry = Some(ctx.stamp.after(std::time::Duration::from_secs(left)));
                }
                Ok(())
            }
            Ok(crate::security::Identity::Anonymous) => Ok(()),
            Err(reason) => Err(reason),
        },
        (Some(_), _) => Err("malformed"),
        (None, HandshakeCredential::Verified) => Ok(()),
        (None, _) if auth.get("username").is_some() || auth.get("password").is_some() => {
            // Checked off the loop like /login; the answer comes later.
            if let Err(reason) = check_password(c.sio, nsp, auth, c.peer, ctx) {
                refuse(c.sio, nsp, reason, c.peer, &ctx.env.stats);
            }
            return None;
        }
        (None, HandshakeCredential::Missing) => Err("missing"),
        (None, HandshakeCredential::Refused(reason)) => Err(reason),
    };
    if let Err(reason) = outcome {
        refuse(c.sio, nsp, reason, c.peer, &ctx.env.stats);
        return None;
    }
    joined(c.sio, c.user.as_deref(), nsp, auth, c.peer, wire, ctx);
    expiry
}

/// Refuses the CONNECT to `nsp` for `reason`: `44{"message","data":{"code"}}`.
fn refuse(
    sio: &mut Sio,
    nsp: &str,
    reason: &'static str,
    peer: &std::net::SocketAddr,
    stats: &Stats,
) {
    stats.auth_failures.inc(reason);
    log::limited(
        log::LogLevel::Info,
        "socket.io connect refused",
        ("reason", reason),
        &[("peer", peer), ("reason", &reason)],
    );
    let data = serde_json::json!({ "code": reason });
    sio.session.refuse(nsp, "unauthorized", Some(data));
}

/// A CONNECT with `{"username","password"}`: the login rate, then the
/// password check on the workers (as `/login`). Err: the refusal's code.
fn check_password<H: Handler>(
    sio: &mut Sio,
    nsp: &str,
    auth: &Value,
    peer: &std::net::SocketAddr,
    ctx: &mut Ctx<'_, H>,
) -> Result<(), &'static str> {
    let (Some(Value::String(username)), Some(Value::String(password))) =
        (auth.get("username"), auth.get("password"))
    else {
        return Err("malformed");
    };
    if sio.checking.is_some() {
        return Err("busy");
    }
    let ip = crate::security::client_ip::canonical(peer.ip());
    if ctx
        .env
        .auth
        .login_allowed(ip, std::time::Instant::now())
        .is_err()
    {
        return Err("rate_limited");
    }
    let (hash, known) = ctx.env.auth.password_check(username);
    let job = crate::security::hasher::Job {
        // The session's id says where the answer goes (a connection, or
        // a long-polling session).
        tag: mio::Token(sio.id.0 as usize),
        hash,
        password: password.as_bytes().to_vec(),
        known,
    };
    if ctx.env.hasher.submit(job).is_err() {
        return Err("busy");
    }
    let mut shown = auth.clone();
    if let Value::Object(m) = &mut shown {
        m.remove("password");
    }
    sio.checking = Some(Box::new(Checking {
        username: username.clone(),
        nsp: nsp.to_owned(),
        auth: shown,
    }));
    Ok(())
}

/// The password of a CONNECT over a WebSocket was checked.
pub(super) fn login_checked<H: Handler>(conn: &mut Conn, ok: bool, ctx: &mut Ctx<'_, H>) {
    let Some((ws, mut c)) = parts(conn) else {
        return;
    };
    let limits = ctx.env.shared.limits.clone();
    ws.with_sender(ctx.stamp, &limits, |tx| {
        password_checked(&mut c, ok, tx, ctx);
        flush(&mut c.sio.session, tx);
        close_if_ended(&c.sio.session, tx, c.peer);
    });
}

/// The password of a CONNECT was checked: the client joins `/`, or gets
/// `invalid_credentials`.
pub(super) fn password_checked<H: Handler>(
    c: &mut Client<'_>,
    ok: bool,
    wire: &mut dyn Wire,
    ctx: &mut Ctx<'_, H>,
) {
    let Some(checking) = c.sio.checking.take() else {
        return;
    };
    let Checking {
        username,
        nsp,
        auth,
    } = *checking;
    if ok {
        log::info("login succeeded", &[("peer", c.peer), ("user", &username)]);
        *c.user = Some(username.into_boxed_str());
        *c.token = None;
        joined(c.sio, c.user.as_deref(), &nsp, &auth, c.peer, wire, ctx);
    } else {
        refuse(c.sio, &nsp, "invalid_credentials", c.peer, &ctx.env.stats);
    }
}

/// The client joined `nsp`: `40<nsp>,{"sid"}`; the handler sees the
/// connection open (at its first namespace) and the join.
fn joined<H: Handler>(
    sio: &mut Sio,
    user: Option<&str>,
    nsp: &str,
    auth: &Value,
    peer: &std::net::SocketAddr,
    wire: &mut dyn Wire,
    ctx: &mut Ctx<'_, H>,
) {
    sio.session.accept(nsp, &random_id());
    wire.connected(&mut sio.session, ctx.stamp);
    log::info(
        "socket.io connected",
        &[
            ("peer", peer),
            ("user", &user.unwrap_or("-")),
            ("nsp", &nsp),
        ],
    );
    let (handle, handler) = (&ctx.env.handle, &mut ctx.env.handler);
    let mut out = Bridge {
        session: &mut sio.session,
        wire,
        nsp,
        ack: None,
        later: false,
    };
    let mut cx = Context {
        id: sio.id,
        user,
        protocol: None,
        out: &mut out,
        handle,
    };
    if !sio.opened {
        sio.opened = true;
        handler.on_open(&mut cx);
    }
    handler.on_join(&mut cx, nsp, auth);
}

/// An event from the client, to the handler.
fn deliver<H: Handler>(
    sio: &mut Sio,
    user: Option<&str>,
    event: &SocketEvent<'_>,
    wire: &mut dyn Wire,
    ctx: &mut Ctx<'_, H>,
) {
    let (handle, handler) = (&ctx.env.handle, &mut ctx.env.handler);
    let mut out = Bridge {
        session: &mut sio.session,
        wire,
        nsp: event.namespace,
        ack: event.ack,
        later: false,
    };
    let mut cx = Context {
        id: sio.id,
        user,
        protocol: None,
        out: &mut out,
        handle,
    };
    handler.on_event(&mut cx, event);
}

/// A message from a [`crate::handler::Handle`] to a Socket.IO client, sent
/// as the handler's replies are.
pub(super) fn push(session: &mut Session, message: &crate::handler::Outgoing, wire: &mut dyn Wire) {
    let mut out = Bridge {
        session,
        wire,
        nsp: "/",
        ack: None,
        later: true,
    };
    let _ = match message {
        crate::handler::Outgoing::Text(text) => out.text(Text::from(&**text)),
        crate::handler::Outgoing::Binary(data) => out.binary(data),
    };
}

/// The handler's replies, as Socket.IO events (see the module's text).
struct Bridge<'s, 'w, 'n> {
    session: &'s mut Session,
    wire: &'w mut dyn Wire,
    /// The namespace replies go to.
    nsp: &'n str,
    /// The ack id of the event being answered (taken once answered).
    ack: Option<u64>,
    /// A reply the loop sends later (a `subscribed`, say): its `id` is
    /// the ack id it answers.
    later: bool,
}

impl Bridge<'_, '_, '_> {
    fn send_json(&mut self, text: &str) {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(mut m)) if m.get("event").is_some_and(Value::is_string) => {
                let Some(Value::String(event)) = m.remove("event") else {
                    return;
                };
                let args: Vec<Value> = m.remove("data").into_iter().collect();
                self.session.emit(self.nsp, &event, &args, false);
                let id = m.get("id").and_then(Value::as_u64);
                let asked = if self.later { id } else { self.ack };
                if let (Some(asked), Some(id)) = (asked, id) {
                    if asked == id {
                        self.session.ack(self.nsp, id, &args);
                        self.ack = None;
                    }
                }
            }
            _ => {
                let args = [Value::String(text.to_owned())];
                self.session.emit(self.nsp, "message", &args, false);
            }
        }
        self.wire.flush(self.session);
    }
}

impl Outbound for Bridge<'_, '_, '_> {
    fn text(&mut self, text: Text<'_>) -> Result<(), SendError> {
        self.send_json(text.as_str());
        Ok(())
    }

    fn text_with(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Result<(), SendError> {
        let mut buf = Vec::new();
        write(&mut buf);
        let text = String::from_utf8(buf).map_err(|_| SendError::NotUtf8)?;
        self.send_json(&text);
        Ok(())
    }

    fn binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.session.emit_binary(self.nsp, "message", data);
        self.wire.flush(self.session);
        Ok(())
    }

    fn close(&mut self, code: u16, reason: &'static str) {
        self.wire.close(self.session, code, reason);
    }

    fn emit(&mut self, name: &str, args: &[Value], binary: &[&[u8]]) -> Result<(), SendError> {
        self.session.emit_with(self.nsp, name, args, binary);
        self.wire.flush(self.session);
        Ok(())
    }

    fn ack(&mut self, args: &[Value], binary: &[&[u8]]) -> bool {
        let Some(id) = self.ack.take() else {
            return false;
        };
        self.session.ack_with(self.nsp, id, args, binary);
        self.wire.flush(self.session);
        true
    }

    fn emit_raw(
        &mut self,
        name: &str,
        args: &[&RawValue],
        binary: &[&[u8]],
    ) -> Result<(), SendError> {
        self.session.emit_raw(self.nsp, name, args, binary);
        self.wire.flush(self.session);
        Ok(())
    }

    fn emit_with_ack(
        &mut self,
        name: &str,
        args: &[&RawValue],
        binary: &[&[u8]],
    ) -> Result<Option<u64>, SendError> {
        let id = self.session.emit_raw_with_ack(self.nsp, name, args, binary);
        self.wire.flush(self.session);
        Ok(Some(id))
    }

    fn ack_raw(&mut self, args: &[&RawValue], binary: &[&[u8]]) -> bool {
        let Some(id) = self.ack.take() else {
            return false;
        };
        self.session.ack_raw(self.nsp, id, args, binary);
        self.wire.flush(self.session);
        true
    }

    fn namespace(&self) -> Option<&str> {
        Some(self.nsp)
    }
}

/// The session's timers at `now` (a ping to send, or its end), written out.
pub(super) fn timeout(w: &mut Ws, now: Stamp, limits: &Limits, peer: &std::net::SocketAddr) {
    let Ws { ws, who, .. } = w;
    let Some(sio) = who.as_deref_mut().and_then(|w| w.sio.as_deref_mut()) else {
        return;
    };
    sio.session.poll(now);
    ws.with_sender(now, limits, |tx| {
        flush(&mut sio.session, tx);
        close_if_ended(&sio.session, tx, peer);
    });
}
