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

use super::conn::{Conn, Phase, Who, Ws};
use super::drive::Ctx;
use crate::handler::{Context, Handler, Message, Outbound, SendError, Text};
use crate::log;
use crate::proto::conn::{Event as WsEvent, Sender, WebSocket};
use crate::proto::error::code;
use crate::proto::{Limits, Stamp};
use crate::router::{HandshakeCredential, unix_now};
use crate::security::ratelimit::MessageRate;
use crate::socketio::session::{Ended, Event, Out, Session, Settings};

/// The Socket.IO side of a WebSocket.
pub(crate) struct Sio {
    pub session: Session,
    credential: HandshakeCredential,
    /// The user name of a CONNECT whose password is being checked.
    checking: Option<String>,
}

impl Sio {
    /// A session opened at `now` over a WebSocket; its open packet is
    /// queued.
    pub fn new<H>(now: Stamp, credential: HandshakeCredential, ctx: &Ctx<'_, H>) -> Sio {
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
            session: Session::new(now, settings, &random_id(), &[]),
            credential,
            checking: None,
        }
    }
}

/// 128 random bits, base64url: a session id.
fn random_id() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut raw = [0u8; 16];
    // The system generator does not fail where this runs; zeros would
    // still be a working (if guessable) id.
    let _ = ring::rand::SystemRandom::new().fill(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
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

/// Ends the WebSocket when the session ended.
fn close_if_ended(session: &Session, tx: &mut Sender<'_>, peer: &std::net::SocketAddr) {
    let Some(why) = session.ended() else {
        return;
    };
    log::limited(
        log::LogLevel::Info,
        "socket.io session closed",
        ("reason", why.reason()),
        &[("peer", peer), ("reason", &why.reason())],
    );
    let code = match why {
        Ended::ClientClosed | Ended::PingTimeout | Ended::ConnectTimeout => code::NORMAL,
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

/// A Socket.IO connection's pieces, borrowed apart.
struct Parts<'c> {
    ws: &'c mut WebSocket,
    rate: &'c mut MessageRate,
    user: &'c mut Option<Box<str>>,
    token: &'c mut Option<crate::security::jwt::TokenId>,
    sio: &'c mut Sio,
    peer: &'c std::net::SocketAddr,
}

fn parts(conn: &mut Conn) -> Option<Parts<'_>> {
    let Conn { phase, peer, .. } = conn;
    let Phase::Ws(Ws { ws, rate, who }) = phase else {
        return None;
    };
    let Who {
        user, token, sio, ..
    } = who.as_deref_mut()?;
    Some(Parts {
        ws,
        rate,
        user,
        token,
        sio: sio.as_deref_mut()?,
        peer,
    })
}

/// A Socket.IO WebSocket's input.
pub(super) fn input<H: Handler>(conn: &mut Conn, input: &mut [u8], ctx: &mut Ctx<'_, H>) {
    let Some(Parts {
        ws,
        rate,
        user,
        token,
        sio,
        peer,
    }) = parts(conn)
    else {
        return;
    };
    let stamp = ctx.stamp;
    let limits = ctx.env.shared.limits.clone();
    let per_s = ctx.env.shared.config.rate.messages_per_conn_per_s;
    let mut expiry = None;
    ws.handle_input(stamp, input, &limits, |event, tx| {
        let heard = match event {
            WsEvent::Text(t) => sio.session.handle_text(stamp, t.as_str()),
            WsEvent::Binary(b) => sio.session.handle_binary(b),
            _ => None,
        };
        match heard {
            Some(Event::Connect { nsp, auth }) => {
                let id = Identity { user, token };
                expiry = connect(sio, id, &nsp, &auth, peer, tx, ctx);
            }
            Some(Event::Event {
                name, args, ack, ..
            }) => {
                use crate::security::ratelimit::Verdict;
                match rate.check(per_s, stamp) {
                    Verdict::Allowed => deliver(sio, user.as_deref(), &name, args, ack, tx, ctx),
                    Verdict::Refused { .. } => {}
                    Verdict::StrikeOut => tx.close(code::POLICY_VIOLATION, "message rate exceeded"),
                }
            }
            // The client left `/`: the session has nothing more to carry.
            Some(Event::Disconnect { .. }) => tx.close(code::NORMAL, "disconnected"),
            Some(Event::Ack { .. }) | None => {}
        }
        flush(&mut sio.session, tx);
        close_if_ended(&sio.session, tx, peer);
    });
    if let Some(at) = expiry {
        ws.set_expiry(at);
    }
}

/// Where a CONNECT's credentials land: the connection's identity.
struct Identity<'a> {
    user: &'a mut Option<Box<str>>,
    token: &'a mut Option<crate::security::jwt::TokenId>,
}

/// A CONNECT: `/` only, with credentials; the handler sees the
/// connection open. Returns when the token expires, if one was accepted.
fn connect<H: Handler>(
    sio: &mut Sio,
    id: Identity<'_>,
    nsp: &str,
    auth: &Value,
    peer: &std::net::SocketAddr,
    tx: &mut Sender<'_>,
    ctx: &mut Ctx<'_, H>,
) -> Option<Stamp> {
    if nsp != "/" {
        sio.session.refuse(nsp, "Invalid namespace", None);
        return None;
    }
    let mut expiry = None;
    let outcome: Result<(), &'static str> = match (auth.get("token"), sio.credential) {
        (_, HandshakeCredential::NotRequired) => Ok(()),
        (Some(Value::String(token)), _) => match ctx.env.auth.verify_token(token, unix_now()) {
            Ok(crate::security::Identity::User {
                name,
                expires_at,
                token,
            }) => {
                *id.user = Some(name.into_boxed_str());
                *id.token = token;
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
            if let Err(reason) = check_password(sio, auth, peer, ctx) {
                refuse(sio, nsp, reason, peer);
            }
            return None;
        }
        (None, HandshakeCredential::Missing) => Err("missing"),
        (None, HandshakeCredential::Refused(reason)) => Err(reason),
    };
    if let Err(reason) = outcome {
        refuse(sio, nsp, reason, peer);
        return None;
    }
    joined(sio, id.user.as_deref(), peer, tx, ctx);
    expiry
}

/// Refuses the CONNECT to `nsp` for `reason`: `44{"message","data":{"code"}}`.
fn refuse(sio: &mut Sio, nsp: &str, reason: &'static str, peer: &std::net::SocketAddr) {
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
        tag: ctx.token,
        hash,
        password: password.as_bytes().to_vec(),
        known,
    };
    if ctx.env.hasher.submit(job).is_err() {
        return Err("busy");
    }
    sio.checking = Some(username.clone());
    Ok(())
}

/// The password of a CONNECT was checked: the client joins `/`, or gets
/// `invalid_credentials`.
pub(super) fn login_checked<H: Handler>(conn: &mut Conn, ok: bool, ctx: &mut Ctx<'_, H>) {
    let Some(Parts {
        ws,
        user,
        token,
        sio,
        peer,
        ..
    }) = parts(conn)
    else {
        return;
    };
    let Some(username) = sio.checking.take() else {
        return;
    };
    let limits = ctx.env.shared.limits.clone();
    ws.with_sender(ctx.stamp, &limits, |tx| {
        if ok {
            log::info("login succeeded", &[("peer", peer), ("user", &username)]);
            *user = Some(username.into_boxed_str());
            *token = None;
            joined(sio, user.as_deref(), peer, tx, ctx);
        } else {
            refuse(sio, "/", "invalid_credentials", peer);
        }
        flush(&mut sio.session, tx);
        close_if_ended(&sio.session, tx, peer);
    });
}

/// The client joined `/`: `40{"sid"}`, and the handler sees it open.
fn joined<H: Handler>(
    sio: &mut Sio,
    user: Option<&str>,
    peer: &std::net::SocketAddr,
    tx: &mut Sender<'_>,
    ctx: &mut Ctx<'_, H>,
) {
    sio.session.accept("/", &random_id());
    log::info(
        "socket.io connected",
        &[("peer", peer), ("user", &user.unwrap_or("-"))],
    );
    let (conn_id, handle, handler) = (ctx.conn_id(), &ctx.env.handle, &mut ctx.env.handler);
    let mut out = Bridge {
        session: &mut sio.session,
        tx,
        ack: None,
    };
    let mut cx = Context {
        id: conn_id,
        user,
        protocol: None,
        out: &mut out,
        handle,
    };
    handler.on_open(&mut cx);
}

/// An event from the client, to the handler as the raw endpoint's JSON.
fn deliver<H: Handler>(
    sio: &mut Sio,
    user: Option<&str>,
    name: &str,
    mut args: Vec<Value>,
    ack: Option<u64>,
    tx: &mut Sender<'_>,
    ctx: &mut Ctx<'_, H>,
) {
    let mut message = serde_json::Map::new();
    message.insert("event".into(), Value::String(name.to_owned()));
    match args.len() {
        0 => {}
        1 => {
            message.insert("data".into(), args.remove(0));
        }
        _ => {
            message.insert("data".into(), Value::Array(args));
        }
    }
    if let Some(id) = ack {
        message.insert("id".into(), Value::from(id));
    }
    let text = Value::Object(message).to_string();
    let (id, handle, handler) = (ctx.conn_id(), &ctx.env.handle, &mut ctx.env.handler);
    let mut out = Bridge {
        session: &mut sio.session,
        tx,
        ack,
    };
    let mut cx = Context {
        id,
        user,
        protocol: None,
        out: &mut out,
        handle,
    };
    handler.on_message(&mut cx, Message::Text(Text::from(text.as_str())));
}

/// The handler's replies, as Socket.IO events (see the module's text).
struct Bridge<'s, 't, 'x> {
    session: &'s mut Session,
    tx: &'t mut Sender<'x>,
    /// The ack id of the event being answered.
    ack: Option<u64>,
}

impl Bridge<'_, '_, '_> {
    fn send_json(&mut self, text: &str) {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(mut m)) if m.get("event").is_some_and(Value::is_string) => {
                let Some(Value::String(event)) = m.remove("event") else {
                    return;
                };
                let args: Vec<Value> = m.remove("data").into_iter().collect();
                self.session.emit("/", &event, &args, false);
                let id = m.get("id").and_then(Value::as_u64);
                if let (Some(asked), Some(id)) = (self.ack, id) {
                    if asked == id {
                        self.session.ack("/", id, &args);
                        self.ack = None;
                    }
                }
            }
            _ => {
                self.session
                    .emit("/", "message", &[Value::String(text.to_owned())], false);
            }
        }
        flush(self.session, self.tx);
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
        self.session.emit_binary("/", "message", data);
        flush(self.session, self.tx);
        Ok(())
    }

    fn close(&mut self, code: u16, reason: &'static str) {
        self.tx.close(code, reason);
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
