//! `--mode fanout`: one publication to `--conns` subscribers, `--rounds`
//! times. Every subscriber connects, upgrades and subscribes (palisade:
//! the `subscribe` event, after logging in; Socket.IO: joins `/`, the
//! server puts it in the room; plain WebSocket peers: every client is a
//! subscriber). Then, round after round, one publication is triggered
//! (palisade: `POST /api/publish` with an API key; the peers: a message
//! on a control connection that the server broadcasts to every other
//! client) and the round ends when every subscriber has it. Reports
//! deliveries per second and per server-CPU-second, the time until the
//! last subscriber had it (median and worst round), and the server's RSS
//! per subscribed connection.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream as StdStream;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::Opts;
use crate::sys::{Rng, Server};
use crate::ws::{self, OP_PING, OP_PONG, OP_TEXT};

/// How the server under test speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// palisade's raw protocol and publish API.
    Palisade,
    /// A plain WebSocket server that broadcasts what the control
    /// connection (path `/control`) sends.
    Ws,
    /// A Socket.IO server: subscribers join `/` (the server puts them in
    /// the room); the control socket (`&control=1`) emits `publish`.
    SocketIo,
    /// palisade's Socket.IO endpoint: subscribers join `/` (logged in),
    /// then emit `subscribe`; the publication is a `POST /api/publish`.
    PalisadeSocketIo,
}

/// Handshakes under way at once.
const CONCURRENT_UPGRADES: usize = 256;

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum State {
    Connecting,
    Upgrading,
    /// Waiting for the answer that makes it a subscriber.
    Joining,
    /// (palisade's Socket.IO) joined, waiting for `subscribed`.
    Subscribing,
    Ready,
}

struct Conn {
    sock: TcpStream,
    state: State,
    accept: [u8; 28],
    input: Vec<u8>,
    out: Vec<u8>,
    /// Deliveries this round.
    got: u32,
}

/// The whole run: `Ok(line)` of key=value pairs.
pub fn run(o: &Opts) -> Result<String, String> {
    let kind = o
        .fanout
        .ok_or("--mode fanout needs --fanout palisade|ws|socketio")?;
    let server = Server::open(o.pid.ok_or("--mode fanout needs --pid")?)?;
    let deadline = Instant::now() + o.timeout;
    let token = match (&o.login, kind) {
        (Some(login), Kind::Palisade | Kind::PalisadeSocketIo) => Some(login_token(o, login)?),
        (None, Kind::Palisade | Kind::PalisadeSocketIo) => {
            return Err("--fanout palisade needs --login USER:PASSWORD".into());
        }
        _ => None,
    };
    let rss_before = server.rss_kib()?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut rng = Rng::new();
    let path = o.path.clone();
    let mut extra = String::new();
    if let Some(t) = &token {
        extra = format!("Authorization: Bearer {t}\r\n");
    }
    let mut conns: Vec<Conn> = Vec::with_capacity(o.conns);
    let mut waiting: VecDeque<usize> = (0..o.conns).collect();
    let mut upgrading = 0usize;
    let mut ready = 0usize;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 64 * 1024];
    let subscribe = match kind {
        Kind::Palisade => format!(
            r#"{{"event":"subscribe","data":{{"channel":"{}"}}}}"#,
            o.channel
        ),
        Kind::PalisadeSocketIo => format!(r#"42["subscribe",{{"channel":"{}"}}]"#, o.channel),
        Kind::SocketIo | Kind::Ws => String::new(),
    };
    // Connect, upgrade and subscribe every connection.
    while ready < o.conns {
        if Instant::now() > deadline {
            return Err(format!("timed out with {ready} of {} subscribed", o.conns));
        }
        while upgrading < CONCURRENT_UPGRADES {
            let Some(i) = waiting.pop_front() else { break };
            let c = open(o, &path, &extra, &mut rng)?;
            conns.push(c);
            debug_assert_eq!(conns.len() - 1, i);
            poll.registry()
                .register(
                    &mut conns[i].sock,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| e.to_string())?;
            upgrading += 1;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            let before = c.state;
            step(c, kind, &subscribe, &mut buf, ev.is_writable())?;
            if before != State::Ready && c.state == State::Ready {
                ready += 1;
                upgrading -= 1;
            }
        }
    }
    // Settle, then the memory figure.
    let settle_until = Instant::now() + o.settle;
    while Instant::now() < settle_until {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            step(c, kind, &subscribe, &mut buf, ev.is_writable())?;
        }
    }
    let rss_after = server.rss_kib()?;
    let mut control = match kind {
        Kind::Palisade | Kind::PalisadeSocketIo => None,
        _ => Some(open_control(o, kind, &mut rng)?),
    };
    // The rounds.
    let cpu_before = server.cpu_s()?;
    let user_before = server.user_cpu_s()?;
    let started = Instant::now();
    let mut lasts = Vec::with_capacity(o.rounds);
    let mut firsts = Vec::with_capacity(o.rounds);
    for round in 0..o.rounds {
        for c in conns.iter_mut() {
            c.got = 0;
        }
        let data = format!(r#"{{"round":{round},"pad":"{}"}}"#, "x".repeat(32));
        let t0 = Instant::now();
        let mut answer = None;
        match kind {
            Kind::Palisade | Kind::PalisadeSocketIo => answer = Some(publish(o, &data)?),
            Kind::Ws => {
                let text = format!(
                    r#"{{"event":"publication","data":{{"channel":"{}","data":{data}}}}}"#,
                    o.channel
                );
                send_blocking(control.as_mut().expect("control"), text.as_bytes())?
            }
            Kind::SocketIo => {
                let text = format!(
                    r#"42["publish",{{"channel":"{}","data":{data}}}]"#,
                    o.channel
                );
                send_blocking(control.as_mut().expect("control"), text.as_bytes())?
            }
        }
        let mut have = 0usize;
        let mut first = None;
        while have < o.conns {
            if Instant::now() > deadline {
                return Err(format!(
                    "round {round}: timed out with {have} of {} delivered",
                    o.conns
                ));
            }
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            for ev in events.iter() {
                let c = &mut conns[ev.token().0];
                let before = c.got;
                step(c, kind, &subscribe, &mut buf, ev.is_writable())?;
                if before == 0 && c.got > 0 {
                    have += 1;
                    first.get_or_insert_with(|| t0.elapsed());
                }
                if c.got > 1 {
                    return Err(format!(
                        "round {round}: a subscriber got {} deliveries",
                        c.got
                    ));
                }
            }
        }
        lasts.push(t0.elapsed());
        firsts.push(first.unwrap_or_default());
        if let Some(mut a) = answer {
            let mut resp = Vec::new();
            let _ = a.read_to_end(&mut resp);
            if !resp.starts_with(b"HTTP/1.1 200") {
                return Err(format!(
                    "round {round}: the publish API answered {:?}",
                    String::from_utf8_lossy(&resp[..resp.len().min(200)])
                ));
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = server.cpu_s()? - cpu_before;
    let user = server.user_cpu_s()? - user_before;
    let deliveries = (o.conns * o.rounds) as f64;
    lasts.sort();
    firsts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let rss_per_conn = (rss_after.saturating_sub(rss_before) * 1024) as f64 / o.conns as f64;
    Ok(format!(
        "mode=fanout conns={} rounds={} deliveries={} rate={:.0} server_cpu_s={cpu:.3} per_server_cpu_s={:.0} server_user_cpu_s={user:.3} per_server_user_cpu_s={:.0} last_p50_ms={:.2} last_max_ms={:.2} first_p50_ms={:.2} rss_per_conn_bytes={rss_per_conn:.0} errors=0",
        o.conns,
        o.rounds,
        deliveries as u64,
        deliveries / wall,
        if cpu > 0.0 { deliveries / cpu } else { 0.0 },
        if user > 0.0 { deliveries / user } else { 0.0 },
        ms(lasts[lasts.len() / 2]),
        ms(*lasts.last().unwrap_or(&Duration::ZERO)),
        ms(firsts[firsts.len() / 2]),
    ))
}

fn open(o: &Opts, path: &str, extra: &str, rng: &mut Rng) -> Result<Conn, String> {
    let sock = TcpStream::connect(o.addr).map_err(|e| e.to_string())?;
    let mut random = [0u8; 16];
    rng.fill(&mut random);
    let key = ws::key(&random);
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        o.authority,
        std::str::from_utf8(&key).expect("base64"),
    );
    Ok(Conn {
        sock,
        state: State::Connecting,
        accept: ws::accept(&key),
        input: Vec::new(),
        out: head.into_bytes(),
        got: 0,
    })
}

/// Writes what is queued, reads what arrived and acts on it.
fn step(
    c: &mut Conn,
    kind: Kind,
    subscribe: &str,
    buf: &mut [u8],
    writable: bool,
) -> Result<(), String> {
    if c.state == State::Connecting {
        if !writable {
            return Ok(());
        }
        if let Some(e) = c.sock.take_error().map_err(|e| e.to_string())? {
            return Err(format!("connect: {e}"));
        }
        c.state = State::Upgrading;
    }
    flush(c)?;
    loop {
        match c.sock.read(buf) {
            Ok(0) => return Err(format!("the server closed a connection ({:?})", c.state)),
            Ok(n) => c.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if c.state == State::Upgrading {
        let Some(end) = ws::head_end(&c.input) else {
            return Ok(());
        };
        ws::check_response(&c.input[..end], &c.accept)?;
        c.input.drain(..end);
        if kind == Kind::Ws {
            c.state = State::Ready;
        } else {
            c.state = State::Joining;
            if kind == Kind::Palisade {
                // After the greeting; sending it now is as good.
                frame(c, OP_TEXT, subscribe.as_bytes());
            } else {
                frame(c, OP_TEXT, b"40");
            }
        }
    }
    // Whole frames.
    while let Some((op, start, end)) = parse(&c.input)? {
        let payload = c.input[start..end].to_vec();
        c.input.drain(..end);
        match op {
            OP_PING => frame(c, OP_PONG, &payload),
            OP_TEXT => on_text(c, kind, subscribe, &payload),
            _ => {}
        }
    }
    flush(c)
}

fn on_text(c: &mut Conn, kind: Kind, subscribe: &str, text: &[u8]) {
    let subscribed = || text.windows(12).any(|w| w == b"\"subscribed\"");
    let sio = matches!(kind, Kind::SocketIo | Kind::PalisadeSocketIo);
    match (kind, c.state) {
        (Kind::Palisade, State::Joining) if subscribed() => c.state = State::Ready,
        (Kind::SocketIo, State::Joining) if text.starts_with(b"40") => c.state = State::Ready,
        (Kind::PalisadeSocketIo, State::Joining) if text.starts_with(b"40") => {
            frame(c, OP_TEXT, subscribe.as_bytes());
            c.state = State::Subscribing;
        }
        (Kind::PalisadeSocketIo, State::Subscribing) if subscribed() => c.state = State::Ready,
        _ if sio && text == b"2" => frame(c, OP_TEXT, b"3"),
        (_, State::Ready) if !sio || text.starts_with(b"42") => c.got += 1,
        _ => {}
    }
}

/// A frame from the server: (opcode, payload start, end), `None` while
/// incomplete.
fn parse(b: &[u8]) -> Result<Option<(u8, usize, usize)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[1] & 0x80 != 0 {
        return Err("a masked frame from the server".into());
    }
    let (len, at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => (
            u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
            10,
        ),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let end = at + len as usize;
    if b.len() < end {
        return Ok(None);
    }
    Ok(Some((b[0] & 0x0f, at, end)))
}

fn frame(c: &mut Conn, op: u8, payload: &[u8]) {
    ws::push_frame(op, payload, [1, 2, 3, 4], &mut c.out);
}

fn flush(c: &mut Conn) -> Result<(), String> {
    while !c.out.is_empty() {
        match c.sock.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// A blocking request; the answer's body.
fn request(o: &Opts, head_and_body: &str) -> Result<StdStream, String> {
    let mut s = StdStream::connect(o.addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(head_and_body.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// `POST /login`: the token.
fn login_token(o: &Opts, login: &str) -> Result<String, String> {
    let (user, password) = login.split_once(':').ok_or("--login USER:PASSWORD")?;
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    let mut s = request(
        o,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            o.authority,
            body.len()
        ),
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let at = resp
        .find(r#""token":""#)
        .ok_or_else(|| format!("login refused: {resp:?}"))?
        + 9;
    let end = resp[at..].find('"').ok_or("login: no token end")? + at;
    Ok(resp[at..end].to_owned())
}

/// `POST /api/publish` of `data` on the channel; the answer is read after
/// the round.
fn publish(o: &Opts, data: &str) -> Result<StdStream, String> {
    let key = o.key.as_deref().ok_or("--fanout palisade needs --key")?;
    let body = format!(r#"{{"channel":"{}","data":{data}}}"#, o.channel);
    request(
        o,
        &format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            o.authority,
            body.len()
        ),
    )
}

/// The peers' control connection: a blocking WebSocket.
fn open_control(o: &Opts, kind: Kind, rng: &mut Rng) -> Result<StdStream, String> {
    let path = match kind {
        Kind::SocketIo => format!("{}&control=1", o.path),
        _ => "/control".to_owned(),
    };
    let mut random = [0u8; 16];
    rng.fill(&mut random);
    let key = ws::key(&random);
    let mut s = request(
        o,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            o.authority,
            std::str::from_utf8(&key).expect("base64"),
        ),
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while ws::head_end(&head).is_none() {
        s.read_exact(&mut byte)
            .map_err(|e| format!("control: {e}"))?;
        head.push(byte[0]);
    }
    ws::check_response(&head, &ws::accept(&key))?;
    if kind == Kind::SocketIo {
        // Joined before it publishes: the open packet, then `40{"sid"}`.
        send_blocking(&mut s, b"40")?;
        let mut input = Vec::new();
        let mut chunk = [0u8; 4096];
        'joined: loop {
            let n = s.read(&mut chunk).map_err(|e| format!("control: {e}"))?;
            if n == 0 {
                return Err("control: closed before joining".into());
            }
            input.extend_from_slice(&chunk[..n]);
            while let Some((_, start, end)) = parse(&input)? {
                if input[start..end].starts_with(b"40") {
                    break 'joined;
                }
                input.drain(..end);
            }
        }
    }
    // What the server sends it later (pings) is never read: the rounds
    // are short.
    Ok(s)
}

fn send_blocking(s: &mut StdStream, text: &[u8]) -> Result<(), String> {
    let mut out = Vec::new();
    ws::push_frame(OP_TEXT, text, [5, 6, 7, 8], &mut out);
    s.write_all(&out).map_err(|e| format!("control: {e}"))
}
