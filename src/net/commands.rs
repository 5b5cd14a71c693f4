//! What a [`Handle`](crate::handler::Handle) asks for, applied on the
//! loop: a message sent to one, some or all open WebSockets (encoded once
//! per command, queued on each), a close, a shutdown.

use mio::Token;

use super::Server;
use super::clock::Now;
use super::conn::{Phase, Who};
use crate::handler::{Command, ConnId, Handler, Outgoing, Target};
use crate::proto::Stamp;
use crate::proto::error::code::POLICY_VIOLATION;
use crate::security::Revoke;
use crate::security::jwt::TokenId;

impl<H: Handler> Server<H> {
    /// Applies every command queued since the last wake-up.
    pub(super) fn apply_commands(&mut self, now: Now) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Send(to, message) => {
                    for token in self.targets(&to) {
                        let _ = self.send_to(token, &message, now);
                    }
                    // Socket.IO clients on long-polling.
                    let ids: Vec<ConnId> = match &to {
                        Target::Conn(id) => vec![*id],
                        Target::Conns(ids) => ids.clone(),
                        Target::All => self.env.polls.ids(),
                    };
                    for id in ids {
                        super::poll::push(&mut self.env, id, &message);
                    }
                }
                Command::Close(to, code, reason) => {
                    // Socket.IO clients on long-polling.
                    let ids: Vec<ConnId> = match &to {
                        Target::Conn(id) => vec![*id],
                        Target::Conns(ids) => ids.clone(),
                        Target::All => self.env.polls.ids(),
                    };
                    for id in ids {
                        super::poll::close(&mut self.env, id, reason);
                    }
                    let stamp = now.stamp;
                    for token in self.targets(&to) {
                        if let Some(Phase::Ws(w)) = self.conns.get_mut(token).map(|c| &mut c.phase)
                        {
                            w.ws.close(stamp, &self.env.shared.limits, code, reason);
                            self.enqueue(token);
                        }
                    }
                }
                Command::Revoke(revoke, reason) => {
                    self.close_revoked(now.stamp, reason, |user, token| match &revoke {
                        Revoke::Token(id) => token == Some(id),
                        Revoke::UserTokens(u) => token.is_some() && user == Some(u.as_str()),
                    });
                }
                Command::Subscribe {
                    conn,
                    channel,
                    request,
                    on,
                } => self.subscription(conn, &channel, request, on, now),
                Command::Publish(publication) => self.publish(publication, now),
                Command::Shutdown => {
                    if self.stopping.is_none() {
                        self.shut_down(now);
                    }
                }
            }
        }
    }

    /// Closes every open WebSocket whose identity `revoked` matches with
    /// `1008` and `reason` (a log-out, or users whose credentials the
    /// operator changed). A scan of the connections: revocations are rare.
    pub(super) fn close_revoked(
        &mut self,
        stamp: Stamp,
        reason: &'static str,
        revoked: impl Fn(Option<&str>, Option<&TokenId>) -> bool,
    ) {
        super::poll::end_where(&mut self.env, reason, &revoked);
        let limits = &self.env.shared.limits;
        let mut closed = Vec::new();
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let Phase::Ws(w) = &mut conn.phase else {
                continue;
            };
            let hit = |who: &Who| revoked(who.user.as_deref(), who.token.as_ref());
            if w.ws.is_open() && w.who.as_deref().is_some_and(hit) {
                w.ws.close(stamp, limits, POLICY_VIOLATION, reason);
                closed.push(token);
            }
        }
        for token in closed {
            self.enqueue(token);
        }
    }

    /// The connections a target names (gone ones are left out later).
    fn targets(&self, to: &Target) -> Vec<Token> {
        match to {
            Target::Conn(id) => vec![self.token_of(*id)],
            Target::Conns(ids) => ids.iter().map(|id| self.token_of(*id)).collect(),
            Target::All => self.conns.tokens(),
        }
    }

    /// The connection of a handler's id (a Socket.IO session that moved
    /// from long-polling keeps its id).
    fn token_of(&self, id: ConnId) -> Token {
        self.env.polls.moved_to(id).unwrap_or(Token(id.0 as usize))
    }

    /// Queues `message` on `token` if it is an open WebSocket (whether it
    /// did).
    pub(super) fn send_to(&mut self, token: Token, message: &Outgoing, now: Now) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return false;
        };
        let Phase::Ws(w) = &mut conn.phase else {
            return false;
        };
        if !w.ws.is_open() {
            return false;
        }
        w.ws.provide_output_buffer(|| self.bufs.take());
        let stamp = now.stamp;
        let sio = w.who.as_deref_mut().and_then(|who| who.sio.as_deref_mut());
        match sio {
            // A Socket.IO client gets it as the handler's replies go.
            Some(sio) if sio.opened => {
                w.ws.with_sender(stamp, &self.env.shared.limits, |tx| {
                    super::sio::push(&mut sio.session, message, tx);
                });
            }
            Some(_) => return false,
            None if conn.io.has(super::conn::Io::SOCKETIO) => return false,
            None => {
                let _ =
                    w.ws.with_sender(stamp, &self.env.shared.limits, |tx| match message {
                        Outgoing::Text(text) => tx.send_text(&**text),
                        Outgoing::Binary(data) => tx.send_binary(data),
                    });
            }
        }
        self.enqueue(token);
        true
    }
}
