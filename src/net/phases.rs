//! What bytes, deadlines and password results mean to each phase of a
//! connection: the request head goes to the router and its outcome is
//! applied; a login body is collected; a WebSocket's input goes through
//! the core, the message rate, and the application.

use super::conn::{Body, Conn, Head, Io, Phase, Verify, Verifying, Who, Ws};
use super::drive::{After, Ctx, basic_result, peer_of};
use super::io::{flush, settle};
use crate::handler::{Context, Handler, Message};
use crate::http::login;
use crate::log;
use crate::proto::conn::{Event, Expired, WebSocket};
use crate::proto::error::{HandshakeError, code};
use crate::router::{self, Outcome, Upgraded};
use crate::security::BasicResult;
use crate::security::client_ip::canonical;
use crate::security::hasher::Job;
use crate::security::ratelimit::{MessageRate, Verdict};

/// Longest wait for a password check before the connection is dropped
/// (the queue is bounded, so this is only a safety net).
const VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The error event for a message over the rate (SPEC.md §6).
const RATE_LIMITED_EVENT: &str =
    r#"{"event":"error","data":{"code":"rate_limited","message":"too many messages; slow down"}}"#;

/// Feeds bytes read from the socket to the connection's current phase.
pub(crate) fn process<H: Handler>(conn: &mut Conn, mut input: &mut [u8], ctx: &mut Ctx<'_, H>) {
    loop {
        match &mut conn.phase {
            Phase::Ws(_) => return ws_input(conn, input, ctx),
            Phase::Linger(_) | Phase::Verify(_) => return,
            Phase::Head(Head {
                parked: Some(p), ..
            }) => {
                // Clients wait for the answer before the next request.
                log::debug(
                    "request while a poll is held; closing",
                    &[("peer", &conn.peer), ("bytes", &input.len())],
                );
                let session = p.session;
                super::poll::unpark(ctx.env, session, ctx.token);
                return conn.linger(Vec::new(), ctx.stamp);
            }
            Phase::Body(b) => {
                let take = (b.need - b.body.len()).min(input.len());
                b.body.extend_from_slice(&input[..take]);
                b.heard = ctx.stamp;
                if b.body.len() < b.need {
                    return;
                }
                if b.poll.is_none() {
                    // Anything after the body is discarded: the answer
                    // closes the connection.
                    return body_complete(conn, ctx);
                }
                // A long-polling POST: the connection goes on.
                input = &mut input[take..];
                super::poll::post_complete(conn, ctx);
                if input.is_empty() {
                    return;
                }
            }
            Phase::Head(_) => {
                let Some(rest) = head_input(conn, input, ctx) else {
                    return;
                };
                input = rest;
                if input.is_empty() {
                    return;
                }
                if let Phase::Verify(v) = &mut conn.phase {
                    if let Verifying::Handshake { early, .. } = v.kind.as_mut() {
                        // Not read again until the password check is back.
                        early.extend_from_slice(input);
                        return;
                    }
                }
            }
        }
    }
}

/// Bytes of a request head: once the head is complete it is routed and
/// what follows it in `input` is returned (`None`: nothing to go on with).
fn head_input<'i, H: Handler>(
    conn: &mut Conn,
    input: &'i mut [u8],
    ctx: &mut Ctx<'_, H>,
) -> Option<&'i mut [u8]> {
    let Phase::Head(h) = &mut conn.phase else {
        return None;
    };
    h.received += input.len() as u64;
    h.heard = ctx.stamp;
    let max = ctx.env.shared.limits.max_request_head_bytes;
    let taken = match h.reader.push(input, max) {
        Ok((taken, Some(_))) => taken,
        Ok((_, None)) => return None,
        Err(e) => {
            refuse_and_linger(conn, e, ctx);
            return None;
        }
    };
    let rest = &mut input[taken..];
    h.received -= rest.len() as u64;
    handle_head(conn, ctx, None);
    if let Some((_, _, after)) = ctx.env.moving.last_mut().filter(|m| m.0 == ctx.token) {
        after.extend_from_slice(rest);
        return None;
    }
    Some(rest)
}

/// A connection another loop handed over (see `net::group`): its complete
/// request head is routed here, then what followed it.
pub(super) fn adopted<H: Handler>(conn: &mut Conn, mut rest: Vec<u8>, ctx: &mut Ctx<'_, H>) {
    handle_head(conn, ctx, None);
    if !rest.is_empty() {
        process(conn, &mut rest, ctx);
    }
}

/// Routes a complete request head and applies the outcome. `basic` is the
/// result of the password check of a Basic handshake routed again.
fn handle_head<H: Handler>(conn: &mut Conn, ctx: &mut Ctx<'_, H>, basic: Option<BasicResult>) {
    let peer = peer_of(conn);
    let Phase::Head(h) = &mut conn.phase else {
        return;
    };
    let outcome = ctx
        .router()
        .route(h.reader.head(), &peer, &mut conn.charge, basic, &mut h.out);
    match outcome {
        Outcome::KeepAlive => {
            h.reader.clear();
            h.deadline = ctx.after(ctx.env.shared.config.limits.handshake_timeout());
        }
        Outcome::Final => {
            let out = std::mem::take(&mut h.out);
            conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
        }
        Outcome::LoggedOut { revoke, keep_alive } => {
            // Every loop closes the revoked connections on its next turn.
            for peer in ctx.env.group.others() {
                peer.handle.revoke(revoke.clone(), "logged out");
            }
            ctx.env.handle.revoke(revoke, "logged out");
            if keep_alive {
                h.reader.clear();
                h.deadline = ctx.after(ctx.env.shared.config.limits.handshake_timeout());
            } else {
                let out = std::mem::take(&mut h.out);
                conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
            }
        }
        Outcome::Upgrade(up) => {
            let out = std::mem::take(&mut h.out);
            ctx.env.stats.accepted(ctx.stamp.millis_since(h.began));
            open_ws(conn, up, out, ctx);
        }
        Outcome::Polling(p) => super::poll::request(conn, *p, ctx),
        Outcome::Handoff(to) => {
            // Moved to its loop at the end of the turn, with what follows
            // the head (`head_input` adds it); not read here again.
            conn.io.set(Io::READABLE, false);
            ctx.env.moving.push((ctx.token, to, Vec::new()));
            ctx.env.polls.active = true;
        }
        Outcome::LoginBody { need } => read_body(conn, need, None, ctx),
        Outcome::PublishBody { need, key } => read_body(conn, need, Some(key), ctx),
        Outcome::CheckBasic { username, password } => start_basic(conn, username, password, ctx),
    }
}

/// The `101` is in `out`: the connection becomes a WebSocket and the
/// application sees it open.
fn open_ws<H: Handler>(conn: &mut Conn, up: Upgraded, out: Vec<u8>, ctx: &mut Ctx<'_, H>) {
    let limits = &ctx.env.shared.limits;
    let mut ws = WebSocket::new(ctx.stamp, out);
    if let Some(exp) = up.expires_at {
        // Clamped: a token from another holder of the secret may carry any exp.
        let left = exp.saturating_sub(router::unix_now()).min(1 << 32);
        ws.set_expiry(ctx.stamp.after(std::time::Duration::from_secs(left)));
    }
    // A Socket.IO WebSocket: a new session, or a probe to take over a
    // long-polling one (its session moves here on the client's `5`).
    let probe = up.probe;
    let refused = probe
        .as_deref()
        .and_then(|sid| ctx.env.polls.refuse_probe(sid));
    let sio = match up.socketio {
        Some(credential) if probe.is_none() => {
            let sid = super::sio::session_id(ctx.env.group.sid_tag());
            let id = ctx.conn_id();
            let engine_only = up.engine_only;
            let sio = super::sio::Sio::new(ctx.stamp, credential, id, &sid, &[], engine_only, ctx);
            ctx.env.stats.socketio_websocket.add(1);
            Some(Box::new(sio))
        }
        _ => None,
    };
    let socketio = up.socketio.is_some();
    let who = (up.user.is_some() || up.protocol.is_some() || socketio).then(|| {
        Box::new(Who {
            user: up.user.map(String::into_boxed_str),
            token: up.token,
            protocol: up.protocol,
            sio,
            probe,
        })
    });
    let rate = ctx.env.shared.config.rate.messages_per_conn_per_s;
    let mut w = Ws {
        ws,
        rate: MessageRate::new(rate.saturating_mul(2), ctx.stamp),
        who,
    };
    if socketio {
        // Socket.IO: the open packet now; the handler sees the connection
        // open when the client has joined `/`. A probe for a session that
        // cannot move here is closed at once.
        if let Some(sio) = w.who.as_deref_mut().and_then(|w| w.sio.as_deref_mut()) {
            super::sio::write_out(sio, &mut w.ws, ctx.stamp, limits);
        } else if let Some(why) = refused {
            log::debug(
                "socket.io probe refused",
                &[("peer", &conn.peer), ("reason", &why)],
            );
            w.ws.with_sender(ctx.stamp, limits, |tx| {
                tx.close(code::POLICY_VIOLATION, why)
            });
        }
        conn.io.set(Io::SOCKETIO, true);
        conn.phase = Phase::Ws(w);
        return;
    }
    let (id, handle, handler) = (ctx.conn_id(), &ctx.env.handle, &mut ctx.env.handler);
    let (user, protocol) = who_of(&w.who);
    w.ws.with_sender(ctx.stamp, limits, |tx| {
        let mut cx = Context {
            id,
            user,
            protocol,
            out: tx,
            handle,
        };
        handler.on_open(&mut cx);
    });
    conn.phase = Phase::Ws(w);
}

fn who_of(who: &Option<Box<Who>>) -> (Option<&str>, Option<&'static str>) {
    match who.as_deref() {
        Some(w) => (w.user.as_deref(), w.protocol),
        None => (None, None),
    }
}

/// A WebSocket's input: the core decodes it; each message is counted
/// against the message rate and handed to the application.
/// (`drive` calls it straight for an open WebSocket, the common read.)
pub(super) fn ws_input<H: Handler>(conn: &mut Conn, input: &mut [u8], ctx: &mut Ctx<'_, H>) {
    if conn.io.has(Io::SOCKETIO) {
        return super::sio::input(conn, input, ctx);
    }
    let Conn {
        phase,
        peer,
        charge,
        ..
    } = conn;
    let Phase::Ws(Ws { ws, rate, who }) = phase else {
        return;
    };
    let per_s = ctx.env.shared.config.rate.messages_per_conn_per_s;
    let (peer, charge) = (&*peer, &*charge);
    let (id, handle, handler, stamp) = (
        ctx.conn_id(),
        &ctx.env.handle,
        &mut ctx.env.handler,
        ctx.stamp,
    );
    let who = &*who;
    let stats = &*ctx.env.stats;
    ws.handle_input(stamp, input, &ctx.env.shared.limits, |event, tx| {
        let message = match event {
            Event::Text(t) => Message::Text(t),
            Event::Binary(b) => Message::Binary(b),
            _ => return,
        };
        stats.messages_received.inc();
        // Behind a proxy the peer is the proxy: the client is who the
        // connection counts against.
        let client = || charge.ip().unwrap_or_else(|| canonical(peer.ip()));
        match rate.check(per_s, stamp) {
            Verdict::Allowed => {}
            Verdict::Refused { first } => {
                stats.rate_limited.inc("message");
                if first {
                    log_message_rate("rate limited", *peer, client());
                    let _ = tx.send_text(RATE_LIMITED_EVENT);
                }
                return;
            }
            Verdict::StrikeOut => {
                stats.rate_limited.inc("message");
                log_message_rate(
                    "closing a client that ignored its message rate",
                    *peer,
                    client(),
                );
                tx.close(code::POLICY_VIOLATION, "message rate exceeded");
                return;
            }
        }
        let (user, protocol) = who_of(who);
        let mut cx = Context {
            id,
            user,
            protocol,
            out: tx,
            handle,
        };
        handler.on_message(&mut cx, message);
    });
}

fn log_message_rate(msg: &'static str, peer: std::net::SocketAddr, client: std::net::IpAddr) {
    const LIMIT: &str = "rate.messages_per_conn_per_s";
    log::limited(
        log::LogLevel::Warn,
        msg,
        ("limit", LIMIT),
        &[("peer", &peer), ("client", &client), ("limit", &LIMIT)],
    );
}

/// A body of `need` bytes comes next: a log-in's, or (with the key's
/// name) a publication's.
fn read_body<H: Handler>(
    conn: &mut Conn,
    need: usize,
    publish: Option<Box<str>>,
    ctx: &mut Ctx<'_, H>,
) {
    let Phase::Head(h) = &mut conn.phase else {
        return;
    };
    let out = std::mem::take(&mut h.out);
    conn.phase = Phase::Body(Body {
        poll: None,
        publish,
        out,
        body: Vec::with_capacity(need),
        need,
        deadline: ctx.after(ctx.env.shared.config.limits.handshake_timeout()),
        heard: ctx.stamp,
    });
    if need == 0 {
        body_complete(conn, ctx);
    }
}

/// A `POST /api/publish` body is in (SPEC.md §10): `{"channel","data"}`,
/// checked against the key's `publish` rules, published; answered
/// `{"delivered": n}` (the subscribers of the channel on every loop of
/// this instance), with `"cluster":"published"` or `"unavailable"` (this
/// loop's connection to Redis is down: other instances miss it) when
/// there is a cluster.
fn publish_body<H: Handler>(conn: &mut Conn, key: &str, ctx: &mut Ctx<'_, H>) {
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        channel: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let hsts = hsts(conn, ctx);
    let peer = conn.peer;
    let Phase::Body(b) = &mut conn.phase else {
        return;
    };
    let mut out = std::mem::take(&mut b.out);
    let (status, answer) = match serde_json::from_slice::<Request<'_>>(&b.body) {
        Err(_) => (400, r#"{"error":"invalid_body"}"#.to_owned()),
        Ok(r) if !crate::security::channels::valid_name(&r.channel) => {
            (400, r#"{"error":"invalid_channel"}"#.to_owned())
        }
        Ok(r)
            if !ctx
                .env
                .shared
                .channels
                .may_publish_with_key(&r.channel, key) =>
        {
            (403, r#"{"error":"forbidden"}"#.to_owned())
        }
        Ok(r) => {
            let delivered = ctx.env.channels.shared().subscribers(&r.channel);
            // This loop's publisher sends it to Redis on its next turn.
            let cluster = ctx.env.cluster.as_ref().map(|c| match c.is_up() {
                true => "published",
                false => "unavailable",
            });
            match ctx.env.handle.publish(&r.channel, r.data) {
                Ok(()) => {
                    log::info(
                        "published",
                        &[
                            ("peer", &peer),
                            ("key", &key),
                            ("channel", &log::Target(&r.channel)),
                            ("delivered", &delivered),
                            ("cluster", &cluster.unwrap_or("none")),
                        ],
                    );
                    let answer = match cluster {
                        Some(c) => format!(r#"{{"delivered":{delivered},"cluster":"{c}"}}"#),
                        None => format!(r#"{{"delivered":{delivered}}}"#),
                    };
                    (200, answer)
                }
                Err(_) => (503, r#"{"error":"busy"}"#.to_owned()),
            }
        }
    };
    if status != 200 {
        log::limited(
            log::LogLevel::Info,
            "publish refused",
            ("reason", "body"),
            &[("peer", &peer), ("status", &status), ("key", &key)],
        );
    }
    crate::http::response::write_json(&mut out, status, &answer, &[], hsts);
    conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
}

/// The login body is in: parse it and queue the password check (a
/// publication's goes to [`publish_body`]).
fn body_complete<H: Handler>(conn: &mut Conn, ctx: &mut Ctx<'_, H>) {
    if let Phase::Body(Body {
        publish: Some(key), ..
    }) = &mut conn.phase
    {
        let key = std::mem::take(key);
        return publish_body(conn, &key, ctx);
    }
    let peer = peer_of(conn);
    let Phase::Body(b) = &mut conn.phase else {
        return;
    };
    let mut out = std::mem::take(&mut b.out);
    let parsed = ctx.router().login_body(&b.body, &peer, &mut out);
    b.body.fill(0);
    let creds = match parsed {
        Ok(c) => c,
        Err(_) => return conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout)),
    };
    let (hash, known) = ctx.env.auth.password_check(&creds.username);
    let job = Job {
        tag: ctx.token,
        hash,
        password: creds.password.into_bytes(),
        known,
    };
    if ctx.env.hasher.submit(job).is_err() {
        ctx.router()
            .refuse_login(&mut out, &peer, login::BUSY, &[("Retry-After", "1")]);
        return conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
    }
    let kind = Box::new(Verifying::Login {
        username: creds.username,
    });
    conn.phase = Phase::Verify(Verify {
        out,
        kind,
        deadline: ctx.after(VERIFY_TIMEOUT),
    });
}

/// Queues the password check of a Basic handshake; the head waits in the
/// `Verify` phase.
fn start_basic<H: Handler>(
    conn: &mut Conn,
    username: String,
    password: Vec<u8>,
    ctx: &mut Ctx<'_, H>,
) {
    let peer = peer_of(conn);
    let Phase::Head(h) = &mut conn.phase else {
        return;
    };
    let (hash, known) = ctx.env.auth.password_check(&username);
    let job = Job {
        tag: ctx.token,
        hash,
        password,
        known,
    };
    let mut out = std::mem::take(&mut h.out);
    if ctx.env.hasher.submit(job).is_err() {
        let extra = [("Retry-After", "1")];
        ctx.router()
            .refuse(&mut out, &peer, 503, "password checks queue full", &extra);
        ctx.env.stats.handshakes_refused.inc("capacity");
        return conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
    }
    let kind = Box::new(Verifying::Handshake {
        reader: std::mem::take(&mut h.reader),
        received: h.received,
        began: h.began,
        username,
        early: Vec::new(),
    });
    conn.phase = Phase::Verify(Verify {
        out,
        kind,
        deadline: ctx.after(VERIFY_TIMEOUT),
    });
}

/// A password check came back for a connection in `Verify`.
pub(super) fn verified<H: Handler>(
    conn: &mut Conn,
    kind: Verifying,
    mut out: Vec<u8>,
    ok: bool,
    ctx: &mut Ctx<'_, H>,
) {
    let peer = peer_of(conn);
    match kind {
        Verifying::Login { username } => {
            ctx.router().login_checked(&username, ok, &peer, &mut out);
            conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
        }
        Verifying::Handshake {
            reader,
            received,
            began,
            username,
            mut early,
        } => {
            conn.phase = Phase::Head(Head {
                reader,
                out,
                deadline: ctx.after(ctx.env.shared.config.limits.handshake_timeout()),
                received,
                heard: ctx.stamp,
                began,
                parked: None,
            });
            handle_head(conn, ctx, Some(basic_result(ok, username)));
            if !early.is_empty() {
                process(conn, &mut early, ctx);
            }
        }
    }
}

/// The peer closed its side of TCP (EOF read).
pub(crate) fn on_eof<H: Handler>(conn: &mut Conn, ctx: &mut Ctx<'_, H>) -> After {
    let close_at = ctx.after(ctx.env.shared.limits.close_timeout);
    match &mut conn.phase {
        // The peer is done sending, not necessarily done reading (a request
        // followed by a half-close): finish the responses.
        Phase::Head(Head { out, .. }) if !out.is_empty() => {
            let out = std::mem::take(out);
            conn.linger(out, close_at);
            After::Keep
        }
        Phase::Linger(l) if !l.out.is_empty() => {
            l.deadline = close_at;
            After::Keep
        }
        Phase::Head(h) => {
            if !h.reader.is_empty() {
                let fields: [(&str, &dyn std::fmt::Display); 2] =
                    [("peer", &conn.peer), ("received", &h.received)];
                log::debug("closed before the request head was complete", &fields);
            }
            After::Close
        }
        Phase::Ws(w) => {
            w.ws.handle_eof();
            After::Close
        }
        Phase::Body(b) => {
            const REASON: &str = "closed before the body was complete";
            log::limited(
                log::LogLevel::Info,
                "login refused",
                ("reason", REASON),
                &[
                    ("peer", &conn.peer),
                    ("reason", &REASON),
                    ("received", &b.body.len()),
                    ("expected", &b.need),
                ],
            );
            After::Close
        }
        Phase::Verify(_) | Phase::Linger(_) => After::Close,
    }
}

/// A connection's deadline came: ping or drop a WebSocket, answer `408`
/// to a request that did not arrive in time, drop what is over.
pub(super) fn timeout<H: Handler>(conn: &mut Conn, ctx: &mut Ctx<'_, H>) -> After {
    let now = ctx.stamp;
    match &mut conn.phase {
        Phase::Ws(w) => match w.ws.handle_timeout(now, &ctx.env.shared.limits) {
            Some(expired) => {
                let what = match expired {
                    Expired::Idle => "idle",
                    Expired::Close => "close",
                };
                let fields: [(&str, &dyn std::fmt::Display); 2] =
                    [("peer", &conn.peer), ("timeout", &what)];
                log::limited(
                    log::LogLevel::Info,
                    "connection timed out",
                    ("timeout", what),
                    &fields,
                );
                After::Close
            }
            None => {
                super::sio::timeout(w, now, &ctx.env.shared.limits, &conn.peer);
                let _ = flush(conn, &ctx.env.stats);
                After::Keep
            }
        },
        Phase::Head(h) if h.parked.is_some() && now >= h.deadline => {
            super::poll::answer_parked(conn, true, ctx);
            let _ = flush(conn, &ctx.env.stats);
            After::Keep
        }
        Phase::Head(h) if now >= h.deadline => head_timeout(conn, ctx),
        Phase::Body(b) if now >= b.deadline => body_timeout(conn, ctx),
        Phase::Verify(Verify { deadline, .. })
        | Phase::Linger(super::conn::Linger { deadline, .. })
            if now >= *deadline =>
        {
            After::Close
        }
        _ => After::Keep,
    }
}

/// The request head did not come in time (SPEC.md §2: `408` if anything
/// can still be sent).
fn head_timeout<H: Handler>(conn: &mut Conn, ctx: &mut Ctx<'_, H>) -> After {
    let Phase::Head(h) = &mut conn.phase else {
        return After::Keep;
    };
    if let Some(tls) = conn.tls.as_ref().filter(|t| t.session.is_handshaking()) {
        // Nothing can be sent before the TLS handshake: just close.
        let fields: [(&str, &dyn std::fmt::Display); 2] =
            [("peer", &conn.peer), ("received_any", &tls.seen_bytes)];
        let reason = "tls handshake timed out";
        log::limited(log::LogLevel::Info, reason, ("reason", reason), &fields);
        return After::Close;
    }
    if h.reader.is_empty() && (h.received > 0 || !h.out.is_empty()) {
        // An idle keep-alive connection, or responses the peer stopped
        // reading: close quietly.
        if !h.out.is_empty() {
            log::debug(
                "response not read in time",
                &[("peer", &conn.peer), ("unsent", &h.out.len())],
            );
        }
        return After::Close;
    }
    refuse_and_linger(conn, HandshakeError::Timeout, ctx);
    let _ = flush(conn, &ctx.env.stats);
    settle(conn, &ctx.env.stats)
}

/// The login body did not come in time: `408`.
fn body_timeout<H: Handler>(conn: &mut Conn, ctx: &mut Ctx<'_, H>) -> After {
    let peer = peer_of(conn);
    let Phase::Body(b) = &mut conn.phase else {
        return After::Keep;
    };
    if let Some(pp) = &b.poll {
        super::poll::unpost(ctx.env, pp.session);
    }
    let detail = format!("{} of {} body bytes", b.body.len(), b.need);
    log::limited(
        log::LogLevel::Info,
        "login refused",
        ("reason", "body timeout"),
        &[
            ("peer", &peer.addr),
            ("status", &408),
            ("reason", &"body timeout"),
            ("received", &detail),
        ],
    );
    let mut out = std::mem::take(&mut b.out);
    login::write_refusal(login::TIMEOUT, &[], hsts(conn, ctx), &mut out);
    conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
    let _ = flush(conn, &ctx.env.stats);
    settle(conn, &ctx.env.stats)
}

/// An HTTP response still being written keeps its connection as long as
/// it moves: after each write that made progress, the peer has
/// `limits.idle_timeout_ms` for the next one (a large file to a slow client
/// is not cut off at the request's deadline; the kernel may not report the
/// socket writable again until half of a multi-megabyte send buffer has
/// drained). Once everything is out, the usual short deadlines apply.
pub(super) fn extend_on_progress<H: Handler>(conn: &mut Conn, ctx: &Ctx<'_, H>) {
    let limits = &ctx.env.shared.limits;
    match &mut conn.phase {
        Phase::Head(h) => {
            let next = if h.out.is_empty() {
                ctx.env.shared.config.limits.handshake_timeout()
            } else {
                limits.idle_timeout
            };
            h.deadline = ctx.after(next);
        }
        Phase::Linger(l) => {
            let next = if l.out.is_empty() {
                limits.close_timeout
            } else {
                limits.idle_timeout
            };
            l.deadline = ctx.after(next);
        }
        _ => {}
    }
}

/// Answers a refused request after any responses still unsent, then
/// lingers until that is written.
fn refuse_and_linger<H>(conn: &mut Conn, e: HandshakeError, ctx: &Ctx<'_, H>) {
    let mut out = conn.take_output();
    let hsts = hsts(conn, ctx);
    router::refuse(&mut out, conn.peer, e.status(), e.reason(), &[], hsts);
    conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
}

/// Whether responses on `conn` carry `Strict-Transport-Security`.
fn hsts<H>(conn: &Conn, ctx: &Ctx<'_, H>) -> bool {
    conn.secure() && ctx.env.shared.config.tls.hsts
}
