//! Finding the credential in an upgrade request (SPEC.md §5), first found
//! wins: `Authorization: Bearer`, the `palisade_token` cookie, a
//! `palisade.bearer.<jwt>` subprotocol, `?token=`, and `Authorization:
//! Basic` last and only over TLS or from loopback. Pure code: nothing here
//! verifies anything, it only says what was offered and how.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::proto::handshake::{Request, Single};

/// Cookie that carries the token (set by `POST /login`).
pub const COOKIE: &str = "palisade_token";
/// Prefix of the subprotocol that carries a token.
pub const SUBPROTOCOL_PREFIX: &str = "palisade.bearer.";

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `Authorization: Bearer`.
    Bearer,
    /// The `palisade_token` cookie.
    Cookie,
    /// `Sec-WebSocket-Protocol: palisade.bearer.<jwt>`.
    Subprotocol,
    /// `?token=`.
    Query,
}

/// What a request offers.
#[derive(PartialEq, Eq)]
pub enum Credential<'b> {
    /// A token to verify.
    Token {
        /// The token text.
        token: &'b str,
        /// Where it was found.
        via: Transport,
    },
    /// A user name and password to check.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Vec<u8>,
    },
    /// Nothing usable; the reason for the log (`missing`, `malformed`,
    /// `basic_not_allowed`, `unsupported_scheme`, `query_token_disabled`).
    Refused(&'static str),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token { via, .. } => write!(f, "Token({via:?})"),
            Credential::Basic { username, .. } => write!(f, "Basic({username:?})"),
            Credential::Refused(r) => write!(f, "Refused({r})"),
        }
    }
}

/// What the `Authorization` header says, if anything.
enum Authorization<'b> {
    None,
    /// A decision already: a Bearer token, or a malformed header.
    Decided(Credential<'b>),
    /// `Basic` with these encoded credentials (used last, SPEC.md §5).
    Basic(&'b [u8]),
    /// A scheme this server does not speak.
    OtherScheme,
}

fn authorization<'b>(request: &Request<'_, 'b>) -> Authorization<'b> {
    let v = match request.single_header("authorization") {
        Single::Absent => return Authorization::None,
        Single::Repeated => return Authorization::Decided(Credential::Refused("malformed")),
        Single::One(v) => trim(v),
    };
    let (scheme, rest) = match v.iter().position(|&b| b == b' ') {
        Some(i) => (&v[..i], trim(&v[i + 1..])),
        None => (v, &v[v.len()..]),
    };
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Authorization::Decided(token(rest, Transport::Bearer))
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        Authorization::Basic(rest)
    } else {
        Authorization::OtherScheme
    }
}

/// The first credential `request` carries.
pub fn find<'b>(
    request: &Request<'_, 'b>,
    allow_query_token: bool,
    basic_allowed: bool,
) -> Credential<'b> {
    let auth = authorization(request);
    if let Authorization::Decided(c) = auth {
        return c;
    }
    if let Some(c) = cookie_token(request) {
        return token(c, Transport::Cookie);
    }
    let offered = request
        .header_values("sec-websocket-protocol")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .find_map(|p| p.strip_prefix(SUBPROTOCOL_PREFIX.as_bytes()));
    if let Some(t) = offered {
        return token(t, Transport::Subprotocol);
    }
    let query = request.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::as_bytes)
    });
    match (query, auth) {
        (Some(_), _) if !allow_query_token => Credential::Refused("query_token_disabled"),
        (Some(t), _) => token(t, Transport::Query),
        (None, Authorization::Basic(_)) if !basic_allowed => {
            Credential::Refused("basic_not_allowed")
        }
        (None, Authorization::Basic(b)) => decode_basic(b),
        (None, Authorization::OtherScheme) => Credential::Refused("unsupported_scheme"),
        (None, _) => Credential::Refused("missing"),
    }
}

/// The token of a session request (`POST /logout`, `GET /session`):
/// `Authorization: Bearer`, else the cookie. A browser sends the cookie;
/// nothing else (query, subprotocol, Basic) names a session.
pub fn session_token<'b>(request: &Request<'_, 'b>) -> Credential<'b> {
    match authorization(request) {
        Authorization::Decided(c) => c,
        Authorization::Basic(_) | Authorization::OtherScheme => {
            Credential::Refused("unsupported_scheme")
        }
        Authorization::None => match cookie_token(request) {
            Some(c) => token(c, Transport::Cookie),
            None => Credential::Refused("missing"),
        },
    }
}

/// The `palisade_token` cookie, if sent.
fn cookie_token<'b>(request: &Request<'_, 'b>) -> Option<&'b [u8]> {
    request
        .header_values("cookie")
        .flat_map(|v| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            (trim(&pair[..eq]) == COOKIE.as_bytes()).then(|| trim(&pair[eq + 1..]))
        })
}

fn token(raw: &[u8], via: Transport) -> Credential<'_> {
    match std::str::from_utf8(raw) {
        Ok(t) if !t.is_empty() => Credential::Token { token: t, via },
        _ => Credential::Refused("malformed"),
    }
}

/// RFC 7617: base64 of `user:password`.
fn decode_basic(b64: &[u8]) -> Credential<'static> {
    let Ok(raw) = STANDARD.decode(b64) else {
        return Credential::Refused("malformed");
    };
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return Credential::Refused("malformed");
    };
    let Ok(username) = std::str::from_utf8(&raw[..colon]) else {
        return Credential::Refused("malformed");
    };
    Credential::Basic {
        username: username.to_owned(),
        password: raw[colon + 1..].to_vec(),
    }
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::parse_request;

    fn find_in(headers: &str, target: &str, query: bool, basic: bool) -> String {
        let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let req = parse_request(head.as_bytes(), &mut storage).unwrap();
        match find(&req, query, basic) {
            Credential::Token { token, via } => format!("{via:?}:{token}"),
            Credential::Basic { username, password } => {
                format!("Basic:{username}:{}", String::from_utf8_lossy(&password))
            }
            Credential::Refused(r) => format!("Refused:{r}"),
        }
    }

    #[test]
    fn each_transport() {
        assert_eq!(
            find_in("Authorization: Bearer abc\r\n", "/ws", true, false),
            "Bearer:abc"
        );
        assert_eq!(
            find_in("authorization: bearer   abc \r\n", "/ws", true, false),
            "Bearer:abc"
        );
        assert_eq!(
            find_in(
                "Cookie: a=1; palisade_token=xyz; b=2\r\n",
                "/ws",
                true,
                false
            ),
            "Cookie:xyz"
        );
        assert_eq!(
            find_in(
                "Sec-WebSocket-Protocol: palisade.v1, palisade.bearer.t0k\r\n",
                "/ws",
                true,
                false
            ),
            "Subprotocol:t0k"
        );
        assert_eq!(find_in("", "/ws?a=1&token=q", true, false), "Query:q");
        // "dXNlcjpwOnc=" is base64 of "user:p:w".
        assert_eq!(
            find_in("Authorization: Basic dXNlcjpwOnc=\r\n", "/ws", true, true),
            "Basic:user:p:w"
        );
    }

    #[test]
    fn first_found_wins_in_spec_order() {
        let all = "Authorization: Bearer h\r\nCookie: palisade_token=c\r\nSec-WebSocket-Protocol: palisade.bearer.p\r\n";
        assert_eq!(find_in(all, "/ws?token=q", true, true), "Bearer:h");
        let no_bearer = "Cookie: palisade_token=c\r\nSec-WebSocket-Protocol: palisade.bearer.p\r\n";
        assert_eq!(find_in(no_bearer, "/ws?token=q", true, true), "Cookie:c");
        let proto = "Sec-WebSocket-Protocol: palisade.bearer.p\r\n";
        assert_eq!(find_in(proto, "/ws?token=q", true, true), "Subprotocol:p");
        // Basic comes last even though it is in the first header.
        let basic = "Authorization: Basic dTpw\r\nCookie: palisade_token=c\r\n";
        assert_eq!(find_in(basic, "/ws", true, true), "Cookie:c");
    }

    #[test]
    fn refusals() {
        assert_eq!(find_in("", "/ws", true, true), "Refused:missing");
        assert_eq!(
            find_in("Authorization: Bearer\r\n", "/ws", true, true),
            "Refused:malformed"
        );
        assert_eq!(
            find_in(
                "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
                "/ws",
                true,
                true
            ),
            "Refused:malformed"
        );
        assert_eq!(
            find_in("Authorization: Basic dTpw\r\n", "/ws", true, false),
            "Refused:basic_not_allowed"
        );
        assert_eq!(
            find_in("Authorization: Basic !!!\r\n", "/ws", true, true),
            "Refused:malformed"
        );
        assert_eq!(
            find_in("Authorization: Digest x\r\n", "/ws", true, true),
            "Refused:unsupported_scheme"
        );
        assert_eq!(
            find_in("", "/ws?token=q", false, true),
            "Refused:query_token_disabled"
        );
        assert_eq!(
            find_in("Cookie: palisade_token=\r\n", "/ws", true, true),
            "Refused:malformed"
        );
    }
}
