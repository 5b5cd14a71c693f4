//! Moving bytes: writing a connection's output (through TLS when it has
//! it), feeding ciphertext to its TLS session, and shutting the write side
//! when the connection is done with it.
//!
//! A full rustls buffer is backpressure, never an error; after a TLS error
//! one last write carries the alert to the peer.

use std::io;
use std::net::Shutdown;

use super::conn::{Conn, Io, Phase, Tls};
use super::drive::{After, Ctx, on_eof, process};
use crate::handler::Handler;
use crate::log;
use crate::metrics::Stats;
use crate::router;
use crate::tls::Fed;

/// Writes queued output until it is gone or the socket is full; returns
/// how many bytes of it were taken.
pub(super) fn flush(conn: &mut Conn, stats: &Stats) -> io::Result<usize> {
    if conn.tls.is_some() {
        return flush_tls(conn, stats);
    }
    let mut written = 0;
    loop {
        if !conn.io.has(Io::WRITABLE) {
            return Ok(written);
        }
        let buf = conn.phase.output();
        if buf.is_empty() {
            return Ok(written);
        }
        let all = buf.len();
        match super::sys::send(&conn.sock, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                stats.bytes_sent.add(n as u64);
                stats.messages_sent.add(conn.phase.consume(n));
                if n == all {
                    return Ok(written);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.io.set(Io::WRITABLE, false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Moves plaintext into rustls and writes ciphertext until the socket is
/// full or nothing is left. A full rustls buffer just stops the move.
fn flush_tls(conn: &mut Conn, stats: &Stats) -> io::Result<usize> {
    let Conn {
        tls: Some(tls),
        phase,
        sock,
        io,
        ..
    } = conn
    else {
        return Ok(0);
    };
    let mut taken = 0;
    loop {
        let buf = phase.output();
        let moved = if buf.is_empty() {
            0
        } else {
            tls.session.write_plaintext(buf)
        };
        stats.messages_sent.add(phase.consume(moved));
        taken += moved;
        while tls.session.wants_write() {
            if !io.has(Io::WRITABLE) {
                return Ok(taken);
            }
            match tls.session.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => stats.bytes_sent.add(n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.set(Io::WRITABLE, false);
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

/// Feeds ciphertext to the TLS session and its plaintext to the phase.
pub(super) fn feed_tls<H: Handler>(
    conn: &mut Conn,
    ciphertext: &[u8],
    plain: &mut [u8],
    ctx: &mut Ctx<'_, H>,
) -> Result<(), After> {
    let Some(mut tls) = conn.tls.take() else {
        return Ok(());
    };
    let first = !tls.seen_bytes;
    tls.seen_bytes = true;
    let looks_like_http = ciphertext.first().is_some_and(|b| b.is_ascii_uppercase());
    if first && tls.session.is_handshaking() && looks_like_http {
        // Plain HTTP on the TLS port: answer in plain text, then close.
        let reason = "plain HTTP request on the TLS port: use https:// or wss://";
        let mut out = Vec::new();
        router::refuse(&mut out, conn.peer, 400, reason, &[], false);
        conn.linger(out, ctx.after(ctx.env.shared.limits.close_timeout));
        return Ok(());
    }
    let result = tls
        .session
        .feed(ciphertext, |p| process(conn, p, ctx), plain);
    conn.tls = Some(tls);
    match result {
        Ok(Fed::Ok) => Ok(()),
        Ok(Fed::Closed) => {
            conn.io.set(Io::READ_EOF, true);
            match on_eof(conn, ctx) {
                After::Keep => Ok(()),
                close => Err(close),
            }
        }
        Err(e) => {
            // A client that gives up mid-handshake says close_notify: not a failure.
            let level = if e.contains("CloseNotify") {
                log::LogLevel::Debug
            } else {
                log::LogLevel::Info
            };
            log::limited(
                level,
                "tls error",
                ("error", &e),
                &[("peer", &conn.peer), ("error", &e)],
            );
            // The alert is queued: one last write so the peer learns why.
            let _ = flush(conn, &ctx.env.stats);
            Err(After::Close)
        }
    }
}

/// After reading and writing: shut the write side or close when due.
pub(super) fn settle(conn: &mut Conn, stats: &Stats) -> After {
    let shut_now = match &conn.phase {
        Phase::Linger(l) => {
            if l.out.is_empty() && conn.io.has(Io::READ_EOF) {
                return After::Close; // all sent, and the peer is gone
            }
            l.out.is_empty()
        }
        Phase::Ws(w) => {
            if w.ws.is_finished() {
                return After::Close;
            }
            w.ws.wants_shutdown_write()
        }
        Phase::Head(_) | Phase::Body(_) | Phase::Verify(_) => false,
    };
    if !shut_now || conn.io.has(Io::WRITE_SHUT) {
        return After::Keep;
    }
    if let Some(tls) = conn.tls.as_deref_mut().filter(|t| !t.close_notify_sent) {
        tls.close_notify_sent = true;
        tls.session.send_close_notify();
        if flush(conn, stats).is_err() {
            return After::Close;
        }
    }
    if conn.tls.as_ref().is_some_and(|t| t.session.wants_write()) {
        return After::Keep; // shut once the alert is out
    }
    conn.io.set(Io::WRITE_SHUT, true);
    if conn.sock.shutdown(Shutdown::Write).is_err() {
        return After::Close;
    }
    After::Keep
}

/// The last word of a TLS connection that is closed: close_notify, best
/// effort.
pub(super) fn say_goodbye(conn: &mut Conn) {
    let Conn { tls, sock, .. } = conn;
    if let Some(Tls {
        session,
        close_notify_sent: false,
        ..
    }) = tls.as_deref_mut()
    {
        if !session.is_handshaking() {
            session.send_close_notify();
            let _ = session.write_tls(sock);
        }
    }
}
