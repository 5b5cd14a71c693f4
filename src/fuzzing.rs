//! The bodies of the fuzz targets in `fuzz/`, here so that `cargo test`
//! replays the same code on `fuzz/regressions/` and the seed corpora.
//!
//! Each function takes arbitrary bytes and panics only when a property
//! fails: no input may panic the code under test, hang it, buffer past the
//! configured caps, or answer differently when the same bytes arrive split
//! differently.

use std::time::Duration;

use crate::app::{Echo, Hero, PROTOCOL};
use crate::handler::{ConnId, Context, Handle, Handler, Message};
use crate::http::{self, StaticFiles, login};
use crate::proto::conn::{Event, WebSocket};
use crate::proto::frame::{decode_header, encode_header, header_len};
use crate::proto::handshake::{
    self, Accept, Decision, HeadReader, Policy, UpgradeRequest, parse_request,
};
use crate::proto::utf8::Utf8Validator;
use crate::proto::{Limits, Stamp};
use crate::security::credentials;
use crate::security::jwt::Signer;
use crate::security::origin::OriginPolicy;

/// Small caps, so that the fuzzer reaches them.
fn limits() -> Limits {
    Limits {
        max_request_head_bytes: 2048,
        max_headers: 16,
        max_frame_bytes: 1024,
        max_message_bytes: 2048,
        max_fragments: 8,
        max_outbound_bytes: 8192,
        idle_timeout: Duration::from_secs(30),
        close_timeout: Duration::from_secs(3),
    }
}

/// Hands a message event to `app` as the server does (other events are the
/// core's business).
fn deliver(
    app: &mut dyn Handler,
    handle: &Handle,
    event: Event<'_>,
    tx: &mut crate::proto::conn::Sender<'_>,
) {
    let message = match event {
        Event::Text(t) => Message::Text(t),
        Event::Binary(b) => Message::Binary(b),
        _ => return,
    };
    let mut cx = Context {
        id: ConnId(1),
        user: None,
        protocol: None,
        out: tx,
        handle,
    };
    app.on_message(&mut cx, message);
}

/// Accepts every upgrade, selecting `palisade.v1` when offered.
struct AcceptAll;

impl Policy for AcceptAll {
    type Identity = ();
    fn decide(&mut self, request: &UpgradeRequest<'_, '_, '_>) -> Decision<()> {
        Decision::Accept(Accept {
            protocol: request.select_protocol(&[PROTOCOL]),
            identity: (),
        })
    }
}

/// `handshake`: arbitrary bytes as a request head → a response or an
/// error, and the security parsers on whatever parses.
pub fn handshake(data: &[u8]) {
    let limits = limits();
    let mut reader = HeadReader::new();
    let Ok((_, Some(_))) = reader.push(data, limits.max_request_head_bytes) else {
        return;
    };
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let Ok(req) = parse_request(reader.head(), &mut storage) else {
        return;
    };
    // Whatever the target and headers hold, what would be logged of them
    // holds no JWT-shaped run any more (SPEC.md §5).
    let logged = crate::log::Target(req.target).to_string();
    assert!(!crate::log::holds_jwt(&logged), "{logged}");
    for name in [
        "authorization",
        "cookie",
        "origin",
        "sec-websocket-protocol",
    ] {
        for v in req.header_values(name) {
            let logged = crate::log::Header(name, v).to_string();
            assert!(!crate::log::holds_jwt(&logged), "{name}: {logged}");
        }
    }
    let _ = credentials::find(&req, true, true);
    let upgrade = match UpgradeRequest::from_request(&req) {
        Ok(u) => u,
        Err(e) => {
            let status = e.status();
            assert!((400..600).contains(&status), "{status}");
            return;
        }
    };
    let policy = OriginPolicy::new(&[], false).expect("empty policy");
    for https in [false, true] {
        let _ = policy.check(req.header_values("origin"), upgrade.host(), https);
    }
    let mut out = Vec::new();
    let accepted = handshake::respond(&upgrade, &mut AcceptAll, &mut out).is_ok();
    assert!(accepted);
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(out.ends_with(b"\r\n\r\n"));
}

/// `frame_decode`: arbitrary bytes into the frame header decoder; every
/// header it decodes re-encodes to a header of the announced length.
pub fn frame_decode(data: &[u8]) {
    let mut rest = data;
    while rest.len() >= 2 {
        match decode_header(rest) {
            Ok(None) => return,
            Err(e) => {
                // Only the two length rules of §5.2 fail here, and only
                // when they are really broken.
                let (short, ext) = (rest[1] & 0x7f, &rest[2..header_len(rest[1])]);
                match e {
                    crate::proto::error::ProtocolError::LengthMsbSet => {
                        assert!(short == 127 && ext[0] & 0x80 != 0)
                    }
                    crate::proto::error::ProtocolError::NonMinimalLength => {
                        assert!(short == 126 || short == 127)
                    }
                    other => panic!("decode_header failed with {other:?}"),
                }
                return;
            }
            Ok(Some((h, n))) => {
                assert_eq!(n, header_len(rest[1]));
                assert!(h.len >> 63 == 0);
                assert!(h.opcode <= 0x0f && h.rsv <= 7);
                let mut enc = [0u8; crate::proto::frame::MAX_HEADER_LEN];
                let m = encode_header(h.fin, h.opcode, h.len, h.mask, &mut enc);
                // Every accepted length is in its minimal encoding (§5.2),
                // so encoding it again gives back the same bytes.
                assert_eq!(m, n);
                assert_eq!(enc[1..m], rest[1..n]);
                let (again, k) = decode_header(&enc[..m]).unwrap().unwrap();
                assert_eq!(
                    (again.len, again.mask, again.fin, again.opcode),
                    (h.len, h.mask, h.fin, h.opcode)
                );
                assert_eq!(k, m);
                // Skip the payload that is there (bounded by the input).
                let skip = n.saturating_add(usize::try_from(h.len).unwrap_or(usize::MAX));
                if skip >= rest.len() {
                    return;
                }
                rest = &rest[skip..];
            }
        }
    }
}

/// What a connection did, for comparing two runs.
#[derive(Debug, PartialEq, Eq, Default)]
struct Trace {
    response: Vec<u8>,
    events: Vec<(u8, Vec<u8>)>,
    output: Vec<u8>,
    failed_head: Option<u16>,
}

/// The full sans-IO connection: head, `101`, frames through the hero or
/// echo application, close.
struct Driver {
    reader: HeadReader,
    ws: Option<WebSocket>,
    app: Box<dyn Handler>,
    handle: Handle,
    trace: Trace,
    now: Stamp,
    limits: Limits,
}

impl Driver {
    fn new(echo: bool, now: Stamp) -> Driver {
        Driver {
            reader: HeadReader::new(),
            ws: None,
            app: if echo {
                Box::new(Echo)
            } else {
                Box::new(Hero::default())
            },
            handle: Handle::new(std::sync::Arc::new(|| {}), Default::default(), false).0,
            trace: Trace::default(),
            now,
            limits: limits(),
        }
    }

    fn feed(&mut self, mut chunk: Vec<u8>) {
        if self.trace.failed_head.is_some() {
            return;
        }
        let mut start = 0;
        if self.ws.is_none() {
            match self.reader.push(&chunk, self.limits.max_request_head_bytes) {
                Err(e) => {
                    self.trace.failed_head = Some(e.status());
                    return;
                }
                Ok((_, None)) => return,
                Ok((taken, Some(_))) => {
                    start = taken;
                    let mut storage = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
                    let parsed = parse_request(self.reader.head(), &mut storage);
                    let upgrade = match &parsed {
                        Ok(req) => UpgradeRequest::from_request(req),
                        Err(e) => Err(*e),
                    };
                    let mut out = Vec::new();
                    match upgrade {
                        Ok(u) => {
                            handshake::respond(&u, &mut AcceptAll, &mut out).expect("accepted");
                        }
                        Err(e) => {
                            self.trace.failed_head = Some(e.status());
                            return;
                        }
                    }
                    self.trace.response = out;
                    self.ws = Some(WebSocket::new(self.now, Vec::new()));
                }
            }
        }
        if self.ws.is_none() {
            return;
        }
        // Like the server, read only when the connection wants input: a
        // connection over its high-water mark first gets its replies read.
        self.settle();
        let piece = chunk.len() - start;
        self.input(&mut chunk[start..]);
        // The caps hold after every chunk (held-back input is at most one
        // chunk, as the server reads only when the connection wants it).
        let ws = self.ws.as_ref().expect("checked above");
        let cap = 2 * (self.limits.max_message_bytes as usize)
            + 2 * self.limits.max_outbound_bytes
            + piece
            + 4096;
        assert!(
            ws.buffered_bytes() <= cap,
            "{} > {cap}",
            ws.buffered_bytes()
        );
    }

    fn input(&mut self, bytes: &mut [u8]) {
        let Some(ws) = &mut self.ws else {
            return;
        };
        let (app, handle) = (&mut self.app, &self.handle);
        let events = &mut self.trace.events;
        ws.handle_input(self.now, bytes, &self.limits, |event, tx| {
            let rec = match &event {
                Event::Text(t) => (1, t.as_bytes().to_vec()),
                Event::Binary(b) => (2, b.to_vec()),
                Event::Ping(p) => (9, p.to_vec()),
                Event::Pong(p) => (10, p.to_vec()),
                Event::Close { code, reason } => (8, format!("{code:?} {reason}").into_bytes()),
            };
            events.push(rec);
            deliver(app.as_mut(), handle, event, tx);
        });
    }

    /// Reads the replies of a connection that stopped decoding at its
    /// high-water mark, and lets it decode what it held, until it wants
    /// input again (or is done).
    fn settle(&mut self) {
        while let Some(ws) = &mut self.ws {
            if ws.wants_read(&self.limits) {
                return;
            }
            if ws.wants_resume(&self.limits) {
                self.input(&mut []);
                continue;
            }
            if ws.output().is_empty() {
                return; // closed: nothing more to read or decode
            }
            let out = ws.output().to_vec();
            ws.consume_output(out.len());
            self.trace.output.extend_from_slice(&out);
        }
    }

    /// Everything the connection queued. Taken only at the end, in both
    /// runs: whether a peer that does not read its replies reaches
    /// `max_outbound_bytes` depends on when it reads, not on how its
    /// bytes were cut, so the two runs drain on the same schedule.
    fn finish(mut self) -> Trace {
        while let Some(ws) = &mut self.ws {
            let out = ws.output().to_vec();
            ws.consume_output(out.len());
            self.trace.output.extend_from_slice(&out);
            if !ws.wants_resume(&self.limits) {
                break;
            }
            self.input(&mut []);
        }
        self.trace
    }
}

/// A valid opening handshake, to put in front of fuzzed frames.
pub const HANDSHAKE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// `connection`: the first byte chooses the application and whether a
/// valid handshake goes first; the next ones where to cut the rest. Fed in
/// one piece and in those pieces, the connection must do the same.
pub fn connection(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(mode >> 4).min(rest.len());
    let (cut_bytes, body) = rest.split_at(cuts);
    let mut input = Vec::new();
    if mode & 1 == 1 {
        input.extend_from_slice(HANDSHAKE);
    }
    input.extend_from_slice(body);
    let echo = mode & 2 == 2;
    let now = Stamp::from_millis(0);

    let mut whole = Driver::new(echo, now);
    whole.feed(input.clone());

    let mut points: Vec<usize> = cut_bytes
        .iter()
        .map(|&b| usize::from(b) * input.len() / 256)
        .collect();
    points.sort_unstable();
    let mut split = Driver::new(echo, now);
    let mut at = 0;
    for p in points.into_iter().chain(std::iter::once(input.len())) {
        if p > at {
            split.feed(input[at..p].to_vec());
            at = p;
        }
    }
    let (whole, split) = (whole.finish(), split.finish());
    if whole != split {
        panic!(
            "fed whole and fed in pieces differ: {}",
            first_difference(&whole, &split)
        );
    }
}

/// Where two traces part, in a few words (the traces themselves can be long).
fn first_difference(a: &Trace, b: &Trace) -> String {
    if a.failed_head != b.failed_head {
        return format!("head: {:?} vs {:?}", a.failed_head, b.failed_head);
    }
    if a.response != b.response {
        return "the handshake responses".into();
    }
    if let Some(i) =
        (0..a.events.len().max(b.events.len())).find(|&i| a.events.get(i) != b.events.get(i))
    {
        return format!(
            "event {i} of {}/{}: {:?} vs {:?}",
            a.events.len(),
            b.events.len(),
            a.events.get(i),
            b.events.get(i)
        );
    }
    let i = a
        .output
        .iter()
        .zip(&b.output)
        .position(|(x, y)| x != y)
        .unwrap_or(a.output.len().min(b.output.len()));
    format!(
        "output byte {i} of {}/{}: {:?} vs {:?}",
        a.output.len(),
        b.output.len(),
        &a.output[i.min(a.output.len())..(i + 16).min(a.output.len())],
        &b.output[i.min(b.output.len())..(i + 16).min(b.output.len())]
    )
}

/// `utf8`: the incremental validator agrees with `std::str::from_utf8`
/// however the input is cut: in chunks of the size the first byte gives,
/// at every single cut point, and byte by byte.
pub fn utf8(data: &[u8]) {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let expected = std::str::from_utf8(bytes).is_ok();
    let step = usize::from(cut).max(1);
    let mut v = Utf8Validator::default();
    let mut ok = true;
    for chunk in bytes.chunks(step) {
        if v.feed(chunk).is_err() {
            ok = false;
            break;
        }
    }
    if ok {
        ok = v.finish().is_ok();
    }
    assert_eq!(ok, expected);
    // Cut once at every point (inputs up to 256 bytes).
    if bytes.len() <= 256 {
        for at in 0..=bytes.len() {
            let (x, y) = bytes.split_at(at);
            let mut v = Utf8Validator::default();
            let two = v.feed(x).is_ok() && v.feed(y).is_ok() && v.finish().is_ok();
            assert_eq!(two, expected, "cut at {at}");
        }
    }
    // Byte by byte as well.
    let mut v = Utf8Validator::default();
    let by_byte = bytes
        .iter()
        .all(|b| v.feed(std::slice::from_ref(b)).is_ok())
        && v.finish().is_ok();
    assert_eq!(by_byte, expected);
}

/// The fixed key of the `jwt` target.
pub const JWT_TEST_SECRET: &[u8] = b"fuzzing key, not a secret: 0123456789";

/// `jwt`: arbitrary tokens never verify against a fixed key unless they are
/// byte-identical to the token the encoder makes for the same claims.
pub fn jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let signer = Signer::new(JWT_TEST_SECRET).expect("long enough");
    // A fixed "now" inside any token the seeds carry.
    if let Ok(claims) = signer.verify(token, 1_800_000_000) {
        let again = signer.sign(&claims);
        assert_eq!(
            again, token,
            "a token that verifies must be the canonical one"
        );
    }
}

/// `dispatch`: arbitrary text into the hero application → a reply or an
/// `error` event, as well-formed JSON text frames.
pub fn dispatch(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = limits();
    let now = Stamp::from_millis(0);
    let mut app = Hero::default();
    let handle = Handle::new(std::sync::Arc::new(|| {}), Default::default(), false).0;
    let mut ws = WebSocket::new(now, Vec::new());
    ws.with_sender(now, &limits, |tx| {
        deliver(&mut app, &handle, Event::Text(text.into()), tx)
    });
    let mut out = ws.output();
    assert!(!out.is_empty(), "every text message gets an answer");
    while !out.is_empty() {
        assert_eq!(out[0], 0x81, "a final text frame");
        let (h, n) = decode_header(out).unwrap().unwrap();
        let len = usize::try_from(h.len).unwrap();
        let payload = &out[n..n + len];
        let v: serde_json::Value = serde_json::from_slice(payload).expect("JSON reply");
        assert!(v.get("event").is_some_and(serde_json::Value::is_string));
        out = &out[n + len..];
    }
}

/// `http_request`: arbitrary bytes into the non-upgrade HTTP path (static
/// files, the login head and body).
pub fn http_request(data: &[u8]) {
    let limits = limits();
    let mut reader = HeadReader::new();
    let Ok((taken, Some(_))) = reader.push(data, limits.max_request_head_bytes) else {
        return;
    };
    let body = &data[taken..];
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let Ok(req) = parse_request(reader.head(), &mut storage) else {
        return;
    };
    let mut out = Vec::new();
    if req.path() == login::PATH {
        let refused = login::check_method(&req).and_then(|()| login::check_head(&req));
        match refused {
            Err(r) => login::write_refusal(r, &[], false, &mut out),
            Ok(need) => {
                assert!(need <= login::MAX_BODY_BYTES);
                let body = &body[..need.min(body.len())];
                match login::parse_body(body) {
                    Ok(b) => assert!(!b.username.is_empty() && !b.password.is_empty()),
                    Err(r) => login::write_refusal(r, &[], false, &mut out),
                }
            }
        }
    } else {
        let files = StaticFiles::embedded();
        let outcome = http::respond(&req, &files, &mut out, true, true, data.len() % 2 == 0);
        assert!((200..600).contains(&outcome.status));
    }
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "));
}

/// `socketio_packet`: arbitrary text as a Socket.IO packet from a client.
/// A packet that decodes encodes back (its JSON payload as sent) to a
/// packet that decodes to the same type, namespace, ack id, attachments and
/// payload, and encodes to the same text again; an event's name is there
/// and is a string or a number.
pub fn socketio_packet(data: &[u8]) {
    use crate::socketio::packet::{Kind, Packet, decode, encode};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = decode(text, 10) else {
        return;
    };
    assert!(p.attachments <= 10);
    if matches!(p.kind, Kind::Event | Kind::BinaryEvent) {
        assert!(p.name().is_some(), "{text:?}: an event without a name");
    }
    let encoded = |p: &Packet<'_>| {
        let mut s = String::new();
        encode(&mut s, p.kind, p.attachments, p.nsp, p.ack, None);
        s.push_str(p.data.unwrap_or(""));
        s
    };
    let once = encoded(&p);
    let q = decode(&once, 10).unwrap_or_else(|e| panic!("{text:?} -> {once:?}: {e:?}"));
    assert_eq!(q, p, "{text:?} -> {once:?}");
    assert_eq!(encoded(&q), once, "{text:?}");
}

/// `socketio_session`: a session fed arbitrary packets (split at `\0`; a
/// piece starting with `0xff` is a binary message, the rest text), with
/// the time moving 50 ms a packet. It never panics, answers each CONNECT
/// and each ack request once, queues a bounded output, and once ended
/// stays ended and hears nothing more.
pub fn socketio_session(data: &[u8]) {
    use crate::socketio::session::{Event, Session, Settings};
    let settings = Settings {
        ping_interval_ms: 300,
        ping_timeout_ms: 200,
        connect_timeout_ms: 1000,
        max_payload: 4096,
        max_attachments: 10,
    };
    let mut s = Session::new(Stamp::from_millis(0), settings, "SID", &[]);
    let mut now = 0;
    let mut ended = None;
    for piece in data.split(|&b| b == 0) {
        now += 50;
        let t = Stamp::from_millis(now);
        s.poll(t);
        let event = match piece.split_first() {
            Some((0xff, raw)) => s.handle_binary(raw),
            _ => match std::str::from_utf8(piece) {
                Ok(text) => s.handle_text(t, text),
                Err(_) => None,
            },
        };
        if ended.is_some() {
            assert_eq!(event, None, "an ended session heard something");
            assert_eq!(s.ended(), ended, "the reason changed");
        }
        match event {
            Some(Event::Connect { nsp, .. }) if nsp == "/" => s.accept(&nsp, "S"),
            Some(Event::Connect { nsp, .. }) => s.refuse(&nsp, "Invalid namespace", None),
            Some(Event::Event {
                nsp,
                ack: Some(id),
                args,
                ..
            }) => args.with(|a| s.ack_raw(&nsp, id, a, &[])),
            Some(Event::Event { binary, .. } | Event::Ack { binary, .. }) => {
                assert!(binary.iter().map(Vec::len).sum::<usize>() <= 4096);
            }
            _ => {}
        }
        ended = s.ended();
        assert!(
            s.take_output().count() <= 2,
            "more output than one packet asks for"
        );
    }
}

/// `engineio_payload`: arbitrary text as an Engine.IO long-polling
/// payload. A payload that decodes encodes back to one that decodes to the
/// same packets.
pub fn engineio_payload(data: &[u8]) {
    use crate::proto::engineio::{Outgoing, Packet, decode_payload, encode_payload};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(packets) = decode_payload(text) else {
        return;
    };
    let out: Vec<Outgoing> = packets
        .iter()
        .map(|p| match p {
            Packet::Text(kind, data) => Outgoing::Text(*kind, (*data).to_owned()),
            Packet::Binary(raw) => Outgoing::Binary(raw.to_vec()),
        })
        .collect();
    let mut bytes = Vec::new();
    encode_payload(&mut bytes, &out);
    let again = std::str::from_utf8(&bytes).expect("the encoding is text");
    assert_eq!(decode_payload(again).as_ref(), Ok(&packets), "{text:?}");
}

/// `resp`: arbitrary bytes as replies from a Redis server. Decoding takes
/// whole replies until the bytes run out or are not RESP, never panics,
/// and a reply encoded again as a command decodes back to bulk strings.
pub fn resp(data: &[u8]) {
    use crate::cluster::resp::{Limits, Reply, decode, encode};
    let limits = Limits::default();
    let mut rest = data;
    while let Ok(Some((reply, used))) = decode(rest, &limits) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
        if let Reply::Array(Some(items)) = &reply {
            let args: Vec<&[u8]> = items
                .iter()
                .filter_map(|r| match r {
                    Reply::Bulk(Some(b)) => Some(b.as_slice()),
                    _ => None,
                })
                .collect();
            let mut out = Vec::new();
            encode(&mut out, &args);
            let (again, n) = decode(&out, &limits).unwrap().unwrap();
            assert_eq!(n, out.len());
            let want: Vec<Reply> = args.iter().map(|a| Reply::Bulk(Some(a.to_vec()))).collect();
            assert_eq!(again, Reply::Array(Some(want)));
        }
    }
}

/// `adapter`: arbitrary bytes as a message of the Socket.IO Redis
/// adapter from another instance. MessagePack decoding never panics and
/// what it decodes encodes back to the same value; a message taken as a
/// broadcast has a raw text that is `{"event":E,"data":D}` and a Socket.IO
/// event that is an array starting with E.
pub fn adapter(data: &[u8]) {
    use crate::cluster::{adapter, msgpack};
    if let Ok(value) = msgpack::decode(data) {
        let mut out = Vec::new();
        msgpack::encode(&mut out, &value);
        assert_eq!(msgpack::decode(&out).as_ref(), Ok(&value));
    }
    if let Ok(b) = adapter::broadcast(data, "palisade-fuzz") {
        let raw: serde_json::Value = serde_json::from_str(&b.raw).expect("the raw text is JSON");
        let event: Vec<serde_json::Value> =
            serde_json::from_str(&b.event).expect("the event is a JSON array");
        assert_eq!(raw["event"], event[0]);
        assert!(event[0].is_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_accept_their_obvious_inputs() {
        handshake(HANDSHAKE);
        frame_decode(&[0x81, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 0]);
        let mut c = vec![0x31, 3];
        c.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'{', b'}']);
        connection(&c);
        utf8("\x03κόσμε".as_bytes());
        let token = Signer::new(JWT_TEST_SECRET).unwrap().issue(
            "alice",
            "AAAAAAAAAAAAAAAA",
            1_800_000_000,
            60,
        );
        jwt(token.as_bytes());
        dispatch(br#"{"event":"get_name","data":{"hero":"hulk"}}"#);
        http_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        http_request(b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    }
}
