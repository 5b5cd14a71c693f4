//! One connection to Redis, without I/O: the commands it sends and what
//! the replies mean. Each event loop keeps two (a subscribed connection
//! takes no other commands in RESP2): the subscriber sends `AUTH` when
//! configured, then `PSUBSCRIBE` to the cluster's pattern, and reports
//! every `pmessage`; the publisher sends `AUTH`, then `PING`, and then
//! `PUBLISH`es, whose integer replies it counts.

use super::resp::{self, Limits, Reply, RespError};
use std::collections::VecDeque;
use std::fmt;

/// What the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Subscriber,
    Publisher,
}

impl Role {
    /// For logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Subscriber => "subscriber",
            Role::Publisher => "publisher",
        }
    }
}

/// `AUTH`'s arguments.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.user)
    }
}

/// What the replies said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The connection may be used: subscribed, or answering `PING`.
    Ready,
    /// A message on a channel the pattern matches.
    Message { channel: Vec<u8>, payload: Vec<u8> },
    /// A `PUBLISH` reached this many subscribed connections.
    Published(i64),
    /// A `PUBLISH` was refused (an ACL, say): Redis's words.
    PublishRefused(String),
}

/// Why the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    Resp(RespError),
    /// Redis refused `AUTH`, `PING` or `PSUBSCRIBE`: its words.
    Refused(String),
    /// A reply nothing asked for.
    Unexpected,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Resp(e) => e.fmt(f),
            LinkError::Refused(why) => write!(f, "Redis refused: {why}"),
            LinkError::Unexpected => f.write_str("a reply nothing asked for"),
        }
    }
}

impl std::error::Error for LinkError {}

/// What a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Auth,
    Ping,
    Subscribe,
    Publish,
}

/// The state of one connection.
#[derive(Debug)]
pub struct Link {
    role: Role,
    awaiting: VecDeque<Awaiting>,
    ready: bool,
    input: Vec<u8>,
    limits: Limits,
}

impl Link {
    /// A new connection whose replies are bounded by `limits`: its first
    /// commands go to `out`.
    pub fn new(
        role: Role,
        credentials: Option<&Credentials>,
        pattern: &str,
        limits: Limits,
        out: &mut Vec<u8>,
    ) -> Link {
        let mut awaiting = VecDeque::new();
        if let Some(c) = credentials {
            match &c.user {
                Some(user) => resp::encode(out, &[b"AUTH", user.as_bytes(), c.password.as_bytes()]),
                None => resp::encode(out, &[b"AUTH", c.password.as_bytes()]),
            }
            awaiting.push_back(Awaiting::Auth);
        }
        match role {
            Role::Subscriber => {
                resp::encode(out, &[b"PSUBSCRIBE", pattern.as_bytes()]);
                awaiting.push_back(Awaiting::Subscribe);
            }
            Role::Publisher => {
                resp::encode(out, &[b"PING"]);
                awaiting.push_back(Awaiting::Ping);
            }
        }
        Link {
            role,
            awaiting,
            ready: false,
            input: Vec::new(),
            limits,
        }
    }

    /// Whether the connection is set up.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// `PUBLISH`es already sent that Redis has not answered.
    pub fn unanswered(&self) -> usize {
        self.awaiting
            .iter()
            .filter(|a| **a == Awaiting::Publish)
            .count()
    }

    /// Queues `PUBLISH channel message` (publisher only).
    pub fn publish(&mut self, channel: &[u8], message: &[u8], out: &mut Vec<u8>) {
        debug_assert_eq!(self.role, Role::Publisher);
        resp::encode(out, &[b"PUBLISH", channel, message]);
        self.awaiting.push_back(Awaiting::Publish);
    }

    /// Takes bytes read from Redis; what they said goes to `events` (also
    /// when an error follows them). What is left unparsed is one reply
    /// under way, at most a string's bound and some slack: more is an
    /// error, whatever the lengths inside claim.
    pub fn input(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), LinkError> {
        self.input.extend_from_slice(bytes);
        let mut used = 0;
        let result = loop {
            match resp::decode(&self.input[used..], &self.limits) {
                Ok(Some((reply, n))) => {
                    used += n;
                    if let Err(e) = self.reply(reply, events) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(LinkError::Resp(e)),
            }
        };
        self.input.drain(..used);
        if result.is_ok() && self.input.len() > self.limits.max_bulk + 64 * 1024 {
            return Err(LinkError::Resp(RespError::TooLarge));
        }
        result
    }

    fn reply(&mut self, reply: Reply, events: &mut Vec<Event>) -> Result<(), LinkError> {
        // Pushes on a subscribed connection answer nothing.
        if self.role == Role::Subscriber && !self.awaiting.contains(&Awaiting::Auth) {
            if let Reply::Array(Some(items)) = &reply {
                return self.push(items, events);
            }
        }
        let Some(awaiting) = self.awaiting.pop_front() else {
            return Err(LinkError::Unexpected);
        };
        match (awaiting, reply) {
            (Awaiting::Publish, Reply::Integer(n)) => events.push(Event::Published(n)),
            // A replica (after a fail-over that kept its address) takes no
            // PUBLISH: a new connection may reach the new primary.
            (Awaiting::Publish, Reply::Error(e)) if e.starts_with("READONLY") => {
                return Err(LinkError::Refused(e));
            }
            (Awaiting::Publish, Reply::Error(e)) => events.push(Event::PublishRefused(e)),
            (_, Reply::Error(e)) => return Err(LinkError::Refused(e)),
            (Awaiting::Auth, Reply::Simple(_)) => {}
            (Awaiting::Ping, Reply::Simple(_)) => {
                self.ready = true;
                events.push(Event::Ready);
            }
            _ => return Err(LinkError::Unexpected),
        }
        Ok(())
    }

    /// A push of the subscriber: `psubscribe` confirms, `pmessage`
    /// carries a message.
    fn push(&mut self, items: &[Reply], events: &mut Vec<Event>) -> Result<(), LinkError> {
        let bulk = |i: usize| match items.get(i) {
            Some(Reply::Bulk(Some(b))) => Some(b.as_slice()),
            _ => None,
        };
        match bulk(0) {
            Some(b"pmessage") => match (bulk(2), bulk(3)) {
                (Some(channel), Some(payload)) => events.push(Event::Message {
                    channel: channel.to_vec(),
                    payload: payload.to_vec(),
                }),
                _ => return Err(LinkError::Unexpected),
            },
            Some(b"psubscribe") if self.awaiting.front() == Some(&Awaiting::Subscribe) => {
                self.awaiting.pop_front();
                self.ready = true;
                events.push(Event::Ready);
            }
            // `pong` and anything a newer Redis adds.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(link: &mut Link, bytes: &[u8]) -> Result<Vec<Event>, LinkError> {
        let mut events = Vec::new();
        link.input(bytes, &mut events).map(|()| events)
    }

    #[test]
    fn the_subscriber_authenticates_subscribes_and_reports_messages() {
        let creds = Credentials {
            user: None,
            password: "s3cret".into(),
        };
        let mut out = Vec::new();
        let mut link = Link::new(
            Role::Subscriber,
            Some(&creds),
            "socket.io#/#*",
            Limits::default(),
            &mut out,
        );
        assert_eq!(
            out,
            b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*2\r\n$10\r\nPSUBSCRIBE\r\n$13\r\nsocket.io#/#*\r\n"
        );
        assert_eq!(feed(&mut link, b"+OK\r\n"), Ok(vec![]));
        assert!(!link.is_ready());
        // The confirmation, split anywhere, then a message.
        let confirm = b"*3\r\n$10\r\npsubscribe\r\n$13\r\nsocket.io#/#*\r\n:1\r\n";
        assert_eq!(feed(&mut link, &confirm[..7]), Ok(vec![]));
        assert_eq!(feed(&mut link, &confirm[7..]), Ok(vec![Event::Ready]));
        assert!(link.is_ready());
        let msg = b"*4\r\n$8\r\npmessage\r\n$13\r\nsocket.io#/#*\r\n$14\r\nsocket.io#/#a#\r\n$2\r\n\x91\xc0\r\n";
        assert_eq!(
            feed(&mut link, msg),
            Ok(vec![Event::Message {
                channel: b"socket.io#/#a#".to_vec(),
                payload: b"\x91\xc0".to_vec()
            }])
        );
    }

    #[test]
    fn refusals_end_the_connection() {
        let mut out = Vec::new();
        let creds = Credentials {
            user: Some("app".into()),
            password: "wrong".into(),
        };
        let mut link = Link::new(
            Role::Subscriber,
            Some(&creds),
            "p*",
            Limits::default(),
            &mut out,
        );
        assert!(out.starts_with(b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n"));
        assert_eq!(
            feed(&mut link, b"-WRONGPASS invalid username-password pair\r\n"),
            Err(LinkError::Refused(
                "WRONGPASS invalid username-password pair".into()
            ))
        );
        let mut link = Link::new(
            Role::Subscriber,
            None,
            "p*",
            Limits::default(),
            &mut Vec::new(),
        );
        assert_eq!(
            feed(&mut link, b"-NOAUTH Authentication required.\r\n"),
            Err(LinkError::Refused("NOAUTH Authentication required.".into()))
        );
        let mut link = Link::new(
            Role::Publisher,
            None,
            "p*",
            Limits::default(),
            &mut Vec::new(),
        );
        assert_eq!(
            feed(&mut link, b":1\r\n"),
            Err(LinkError::Unexpected),
            "an integer for PING"
        );
        assert_eq!(
            feed(
                &mut Link::new(
                    Role::Publisher,
                    None,
                    "p*",
                    Limits::default(),
                    &mut Vec::new()
                ),
                b"?\r\n"
            ),
            Err(LinkError::Resp(RespError::Protocol(
                "an unknown reply type"
            )))
        );
    }

    #[test]
    fn the_publisher_pings_then_publishes() {
        let mut out = Vec::new();
        let mut link = Link::new(Role::Publisher, None, "unused", Limits::default(), &mut out);
        assert_eq!(out, b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(feed(&mut link, b"+PONG\r\n"), Ok(vec![Event::Ready]));
        out.clear();
        link.publish(b"ch", b"m", &mut out);
        link.publish(b"ch", b"n", &mut out);
        assert_eq!(link.unanswered(), 2);
        assert_eq!(
            feed(&mut link, b":3\r\n-NOPERM no\r\n"),
            Ok(vec![
                Event::Published(3),
                Event::PublishRefused("NOPERM no".into())
            ])
        );
        assert_eq!(link.unanswered(), 0);
        link.publish(b"ch", b"o", &mut out);
        assert_eq!(
            feed(
                &mut link,
                b"-READONLY You can't write against a read only replica.\r\n"
            ),
            Err(LinkError::Refused(
                "READONLY You can't write against a read only replica.".into()
            )),
            "a replica: the connection is dropped and made again"
        );
        assert_eq!(feed(&mut link, b":1\r\n"), Err(LinkError::Unexpected));
    }

    #[test]
    fn what_waits_unparsed_is_bounded() {
        let limits = Limits::for_messages(1);
        let mut link = Link::new(Role::Subscriber, None, "p*", limits, &mut Vec::new());
        let mut events = Vec::new();
        let confirm = b"*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:1\r\n";
        link.input(confirm, &mut events).unwrap();
        // An array of 1,024 strings of 1 MiB each, arriving in 64 KiB
        // pieces: refused once more than one string's worth waits, not at
        // 1 GiB.
        let mut stream = b"*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$1\r\nc\r\n*1024\r\n".to_vec();
        for _ in 0..3 {
            stream.extend_from_slice(b"$1048576\r\n");
            stream.resize(stream.len() + (1 << 20), b'x');
            stream.extend_from_slice(b"\r\n");
        }
        let mut result = Ok(());
        let mut fed = 0;
        for piece in stream.chunks(64 * 1024) {
            result = link.input(piece, &mut events);
            fed += piece.len();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(LinkError::Resp(RespError::TooLarge)));
        assert!(fed < (1 << 20) + 200 * 1024, "{fed}");
    }
}
