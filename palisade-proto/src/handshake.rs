//! The opening handshake (RFC 6455 §4.2).
//!
//! Reading: [`find_head_end`] finds the end of a request head while looking
//! only at bytes it has not seen. Parsing: [`parse_request`] runs httparse with
//! a caller-sized header array (too many headers is a `431`). Checking:
//! [`UpgradeRequest::from_request`] applies the §4.2.1 rules in the order of
//! SPEC.md §2. Deciding: [`respond`] asks a [`Policy`] and only then writes the
//! `101` — there is no other way to produce one, so the policy cannot be
//! skipped.

use alloc::vec::Vec;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use super::error::HandshakeError;
pub use super::host::Host;
/// An empty header slot, to size the storage [`parse_request`] fills.
pub use httparse::{EMPTY_HEADER, Header};

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Where the head ends, if it has ended.
///
/// `scanned` is how many bytes of `buf` an earlier call already looked at;
/// only the bytes after them (plus three for a terminator that straddles the
/// boundary) are searched, so feeding a head one byte at a time stays linear.
/// A head ends at an empty line: `\r\n\r\n`, or a bare `\n\n` (which httparse
/// then accepts or refuses).
pub fn find_head_end(buf: &[u8], scanned: usize) -> Option<usize> {
    let start = scanned.min(buf.len());
    for i in start..buf.len() {
        if buf[i] != b'\n' || i == 0 {
            continue;
        }
        let prev = buf[i - 1];
        if prev == b'\n' || (prev == b'\r' && i >= 2 && buf[i - 2] == b'\n') {
            return Some(i + 1);
        }
    }
    None
}

/// Accumulates a request head under a byte cap (SPEC.md §2, first row).
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
    scanned: usize,
}

impl HeadReader {
    /// An empty reader; it allocates when the first byte arrives.
    pub const fn new() -> Self {
        HeadReader {
            buf: Vec::new(),
            scanned: 0,
        }
    }

    /// Takes bytes from `input` until the head is complete or `max` bytes
    /// are held. Returns how many bytes of `input` were taken and, once the
    /// head is complete, its length. Bytes after the head stay in `input`.
    pub fn push(
        &mut self,
        input: &[u8],
        max: usize,
    ) -> Result<(usize, Option<usize>), HandshakeError> {
        let room = max.saturating_sub(self.buf.len());
        let take = input.len().min(room);
        self.buf.extend_from_slice(&input[..take]);
        if let Some(end) = find_head_end(&self.buf, self.scanned.saturating_sub(3)) {
            let extra = self.buf.len() - end;
            self.buf.truncate(end);
            self.scanned = end;
            return Ok((take - extra, Some(end)));
        }
        self.scanned = self.buf.len();
        if self.buf.len() >= max {
            return Err(HandshakeError::HeadTooLarge);
        }
        Ok((take, None))
    }

    /// The bytes held so far (the whole head once `push` reported it).
    pub fn head(&self) -> &[u8] {
        &self.buf
    }

    /// Whether no byte of a head has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets the head, keeping the allocation for the next one.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
    }

    /// Frees the buffer.
    pub fn release(&mut self) {
        self.buf = Vec::new();
        self.scanned = 0;
    }
}

/// A header that should appear once: absent, once, or more than once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Single<'b> {
    /// Not sent.
    Absent,
    /// Sent once, with this value.
    One(&'b [u8]),
    /// Sent more than once.
    Repeated,
}

/// A parsed request head, borrowing the buffer it came from.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    /// Method, e.g. `GET`.
    pub method: &'b str,
    /// Request target as sent (origin form: path and optional query).
    pub target: &'b str,
    /// Minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    headers: &'h [httparse::Header<'b>],
}

/// Parses a complete request head (as delimited by [`find_head_end`]).
///
/// `headers` is the storage for header fields; its length is the
/// `limits.max_headers` cap.
pub fn parse_request<'h, 'b>(
    head: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Request<'h, 'b>, HandshakeError> {
    let mut req = httparse::Request::new(headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HandshakeError::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(_) => return Err(HandshakeError::Malformed),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HandshakeError::Malformed);
    };
    // Origin form only (RFC 9112 §3.2.1); RFC 6455 §3 forbids fragments.
    if !target.starts_with('/') || target.contains('#') {
        return Err(HandshakeError::BadTarget);
    }
    Ok(Request {
        method,
        target,
        version,
        headers: req.headers,
    })
}

impl<'h, 'b> Request<'h, 'b> {
    /// The path part of the target (before any `?`).
    pub fn path(&self) -> &'b str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&'b str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The value of `name` when it appears exactly once.
    pub fn single_header(&self, name: &str) -> Single<'b> {
        let mut it = self.header_values(name);
        match (it.next(), it.next()) {
            (None, _) => Single::Absent,
            (Some(v), None) => Single::One(v),
            (Some(_), Some(_)) => Single::Repeated,
        }
    }

    /// Whether any comma-separated element of any `name` header equals `token`
    /// (case-insensitive), as RFC 9110 §5.6.1 lists are read.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The `Host` (RFC 9112 §3.2: exactly one, and RFC 3986 `host [":"
    /// port]`); `BadHost` (`400`) for a missing, repeated or invalid one.
    pub fn host(&self) -> Result<Host<'b>, HandshakeError> {
        match self.single_header("host") {
            Single::One(h) => Host::parse(h).ok_or(HandshakeError::BadHost),
            _ => Err(HandshakeError::BadHost),
        }
    }

    /// Whether the request announces a body (`Content-Length` > 0 or any
    /// `Transfer-Encoding`).
    pub fn has_body(&self) -> bool {
        self.header_values("transfer-encoding").next().is_some()
            || self
                .header_values("content-length")
                .any(|v| trim(v).iter().any(|&b| b != b'0'))
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn is_token(t: &[u8]) -> bool {
    !t.is_empty()
        && t.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A request that passed every RFC 6455 check and waits for the policy.
#[derive(Debug)]
pub struct UpgradeRequest<'r, 'h, 'b> {
    request: &'r Request<'h, 'b>,
    key: &'b str,
    host: Host<'b>,
}

impl<'r, 'h, 'b> UpgradeRequest<'r, 'h, 'b> {
    /// The checks of the request line that come before the `Host` (SPEC.md
    /// §2): HTTP/1.1 (`400`), `GET` (`405`), no body (`400`). A server that
    /// checks the `Host` against its own list before
    /// [`UpgradeRequest::from_request`] runs these first to keep the order.
    pub fn check_request_line(request: &Request<'_, '_>) -> Result<(), HandshakeError> {
        // §4.2.1 (1): "An HTTP/1.1 or higher GET request".
        if request.version != 1 {
            return Err(HandshakeError::HttpVersion);
        }
        if request.method != "GET" {
            return Err(HandshakeError::MethodNotAllowed);
        }
        // A GET with a body would have its body read as frames.
        if request.has_body() {
            return Err(HandshakeError::UnexpectedBody);
        }
        Ok(())
    }

    /// Applies RFC 6455 §4.2.1 to a request for the WebSocket path, in the
    /// order of SPEC.md §2.
    pub fn from_request(request: &'r Request<'h, 'b>) -> Result<Self, HandshakeError> {
        Self::check_request_line(request)?;
        // §4.2.1 (2): a |Host| header field; RFC 9112 §3.2: exactly one,
        // and RFC 3986 host [":" port].
        let host = request.host()?;
        // §4.2.1 (3), (4): Upgrade contains "websocket", Connection contains
        // "Upgrade", both case-insensitive and possibly among other tokens.
        if !request.has_token("upgrade", "websocket") || !request.has_token("connection", "upgrade")
        {
            return Err(HandshakeError::NotUpgrade);
        }
        // §4.2.1 (6): Sec-WebSocket-Version 13 (a 426 with our version, §4.4).
        match request.single_header("sec-websocket-version") {
            Single::One(v) if trim(v) == b"13" => {}
            _ => return Err(HandshakeError::UnsupportedVersion),
        }
        // §4.2.1 (5): base64 that decodes to exactly 16 bytes, not repeated.
        let key = match request.single_header("sec-websocket-key") {
            Single::One(k) => trim(k),
            _ => return Err(HandshakeError::BadKey),
        };
        let mut decoded = [0u8; 18];
        if key.len() != 24 || STANDARD.decode_slice(key, &mut decoded) != Ok(16) {
            return Err(HandshakeError::BadKey);
        }
        let key = core::str::from_utf8(key).map_err(|_| HandshakeError::BadKey)?;
        // §4.1: Sec-WebSocket-Protocol is a comma list of unique tokens.
        for v in request.header_values("sec-websocket-protocol") {
            if !v.split(|&b| b == b',').all(|t| is_token(trim(t))) {
                return Err(HandshakeError::BadProtocol);
            }
        }
        Ok(UpgradeRequest { request, key, host })
    }

    /// The underlying request (path, query, other headers).
    pub fn request(&self) -> &'r Request<'h, 'b> {
        self.request
    }

    /// The `Host`.
    pub fn host(&self) -> Host<'b> {
        self.host
    }

    /// The `Origin` header, if sent exactly once.
    pub fn origin(&self) -> Option<&'b [u8]> {
        match self.request.single_header("origin") {
            Single::One(v) => Some(v),
            _ => None,
        }
    }

    /// The client's `Sec-WebSocket-Key`.
    pub fn key(&self) -> &'b str {
        self.key
    }

    /// Subprotocols the client offered, in its order of preference.
    pub fn offered_protocols(&self) -> impl Iterator<Item = &'b [u8]> + '_ {
        self.request
            .header_values("sec-websocket-protocol")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim)
            .filter(|t| !t.is_empty())
    }

    /// The first protocol the client offered that is in `supported` (§4.2.2:
    /// the server selects one of the client's values, or none).
    pub fn select_protocol(&self, supported: &[&'static str]) -> Option<&'static str> {
        self.offered_protocols()
            .find_map(|offered| supported.iter().copied().find(|s| s.as_bytes() == offered))
    }
}

/// What a [`Policy`] decided about an upgrade request.
#[derive(Debug)]
pub enum Decision<I> {
    /// Answer `101`.
    Accept(Accept<I>),
    /// Answer with an error status.
    Reject(Reject),
}

/// Acceptance: the selected subprotocol and who the peer is.
#[derive(Debug)]
pub struct Accept<I> {
    /// Subprotocol to confirm; must be one the client offered.
    pub protocol: Option<&'static str>,
    /// The authenticated identity, or whatever the policy wants to keep.
    pub identity: I,
}

impl<I> Accept<I> {
    /// Acceptance with `protocol` (if the client offered it) for `identity`.
    pub const fn new(protocol: Option<&'static str>, identity: I) -> Accept<I> {
        Accept { protocol, identity }
    }
}

/// Refusal: status, reason (logged and sent as the body), one extra header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status, e.g. 403.
    pub status: u16,
    /// Short reason, no secrets.
    pub reason: &'static str,
    /// Extra header such as `("WWW-Authenticate", "Bearer")`.
    pub header: Option<(&'static str, &'static str)>,
}

/// The security decision point: origin, credentials, quotas.
pub trait Policy {
    /// What the policy keeps about an accepted peer.
    type Identity;
    /// Decides about a request that passed every RFC 6455 check.
    fn decide(&mut self, request: &UpgradeRequest<'_, '_, '_>) -> Decision<Self::Identity>;
}

/// An accepted upgrade: the `101` is already in the output buffer.
#[derive(Debug)]
pub struct Accepted<I> {
    /// The confirmed subprotocol.
    pub protocol: Option<&'static str>,
    /// The identity the policy returned.
    pub identity: I,
}

/// Asks `policy` about `request`; on acceptance writes the `101` (with
/// `Sec-WebSocket-Accept` and the selected protocol) to `out`. This is the
/// only function that writes a `101`. A refusal writes nothing: the caller
/// answers it with the headers of its own HTTP layer (see
/// [`write_error_response`] for a plain one).
pub fn respond<P: Policy>(
    request: &UpgradeRequest<'_, '_, '_>,
    policy: &mut P,
    out: &mut Vec<u8>,
) -> Result<Accepted<P::Identity>, Reject> {
    match policy.decide(request) {
        Decision::Accept(accept) => {
            // §4.2.2: the protocol must be one the client offered.
            let protocol = accept
                .protocol
                .filter(|p| request.offered_protocols().any(|o| o == p.as_bytes()));
            write_switching_protocols(request.key(), protocol, out);
            Ok(Accepted {
                protocol,
                identity: accept.identity,
            })
        }
        Decision::Reject(reject) => Err(reject),
    }
}

/// Why a request head was not answered `101`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The head broke HTTP or RFC 6455 (SPEC.md §2's rows).
    Invalid(HandshakeError),
    /// The policy said no.
    Rejected(Reject),
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub const fn status(&self) -> u16 {
        match self {
            Refusal::Invalid(e) => e.status(),
            Refusal::Rejected(r) => r.status,
        }
    }

    /// Its short reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            Refusal::Invalid(e) => e.reason(),
            Refusal::Rejected(r) => r.reason,
        }
    }
}

/// Answers a complete request head in one call: parses it (with up to
/// `max_headers` header fields), applies RFC 6455 §4.2.1, asks `policy`,
/// and writes the `101` to `out`, or a plain error response (with the
/// header a refusal calls for) when it is refused. For servers that need
/// no finer control; [`parse_request`], [`UpgradeRequest::from_request`]
/// and [`respond`] are the steps.
pub fn answer<P: Policy>(
    head: &[u8],
    max_headers: usize,
    policy: &mut P,
    out: &mut Vec<u8>,
) -> Result<Accepted<P::Identity>, Refusal> {
    let mut storage = alloc::vec![EMPTY_HEADER; max_headers];
    let result = parse_request(head, &mut storage)
        .and_then(|req| UpgradeRequest::from_request(&req).map(|up| respond(&up, policy, out)));
    let refusal = match result {
        Ok(Ok(accepted)) => return Ok(accepted),
        Ok(Err(reject)) => Refusal::Rejected(reject),
        Err(e) => Refusal::Invalid(e),
    };
    let extra = match refusal {
        Refusal::Invalid(e) => e.extra_header(),
        Refusal::Rejected(r) => r.header,
    };
    write_error_response(refusal.status(), refusal.reason(), extra.as_slice(), out);
    Err(refusal)
}

/// A closure is a policy too: `|request| Decision::Accept(...)`.
impl<I, F> Policy for F
where
    F: FnMut(&UpgradeRequest<'_, '_, '_>) -> Decision<I>,
{
    type Identity = I;
    fn decide(&mut self, request: &UpgradeRequest<'_, '_, '_>) -> Decision<I> {
        self(request)
    }
}

/// `Sec-WebSocket-Accept` for `key` (§4.2.2 step 5.4).
pub fn accept_key(key: &str) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    let n = STANDARD
        .encode_slice(digest, &mut out)
        .expect("28 bytes hold the base64 of 20");
    debug_assert_eq!(n, 28);
    out
}

fn write_switching_protocols(key: &str, protocol: Option<&str>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accept_key(key));
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase of a status this server sends.
pub const fn status_text(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a plain error response: the status line, a `text/plain` reason,
/// `Connection: close`, and the caller's `extra` headers (palisade's own
/// responses add their security headers in `http::response`; an embedder of
/// the core passes its own).
pub fn write_error_response(status: u16, reason: &str, extra: &[(&str, &str)], out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(status_text(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    write_decimal(out, reason.len() as u64 + 1);
    out.extend_from_slice(b"\r\nConnection: close\r\n");
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// A plain error response as a new buffer (see [`write_error_response`]).
pub fn error_response(status: u16, reason: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_error_response(status, reason, &[], &mut out);
    out
}

/// Appends `n` in decimal.
fn write_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests;
