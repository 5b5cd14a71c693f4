//! The one redaction of everything a log line takes from a request (SPEC.md
//! §5: tokens and passwords never reach a log, at any level or format).
//!
//! A request carries credentials where a client puts them, not only where
//! this server reads them: `?token=`, `;access_token=` matrix parameters,
//! a token as a path segment (`/ws/<jwt>`), an `Authorization` or `Cookie`
//! header. So the rule is about shapes, not about our own parameters:
//!
//! - a query or matrix parameter whose name is credential-like (`token`,
//!   `access_token`, `auth`, `password`, `key`, `secret`, `session`, ... in
//!   any case, percent-encoded or not) keeps its name and shows its value
//!   as `[redacted]`;
//! - any path segment, parameter value or header value holding something
//!   shaped like a JWT (base64url segments joined by dots, one decoding to
//!   the start of a JSON object, as every JWS and JWE header does) shows as
//!   `[redacted]`;
//! - `Authorization` keeps its scheme only; `Cookie` keeps cookie names only.
//!
//! Use [`Target`] for a request target and [`Header`] for a header value;
//! nothing from a request is logged any other way.

use std::fmt::{self, Display, Write as _};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// A request target (path, matrix parameters, query) as it may be logged.
pub struct Target<'a>(pub &'a str);

/// A header value as it may be logged: `Header(name, value)`.
pub struct Header<'a>(pub &'a str, pub &'a [u8]);

impl Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_checked(f, |w| self.write_parts(w))
    }
}

impl Display for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_checked(f, |w| self.write_parts(w))
    }
}

/// Writes what `parts` produces, unless it still holds a JWT shape (a form
/// the rules below did not foresee): then only `[redacted]`. The rules keep
/// what is useful to read; this keeps the promise whatever they miss.
fn write_checked(
    f: &mut fmt::Formatter<'_>,
    parts: impl FnOnce(&mut String) -> fmt::Result,
) -> fmt::Result {
    let mut text = String::new();
    parts(&mut text)?;
    f.write_str(if holds_jwt(&text) { REDACTED } else { &text })
}

impl Target<'_> {
    fn write_parts(&self, f: &mut String) -> fmt::Result {
        let (path, query) = match self.0.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.0, None),
        };
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                f.write_char('/')?;
            }
            // `segment;name=value;name=value` (RFC 3986 §3.3 parameters).
            let mut parts = segment.split(';');
            let name = parts.next().unwrap_or("");
            f.write_str(if looks_like_jwt(name) { REDACTED } else { name })?;
            for param in parts {
                f.write_char(';')?;
                write_param(f, param)?;
            }
        }
        if let Some(query) = query {
            f.write_char('?')?;
            for (i, param) in query.split('&').enumerate() {
                if i > 0 {
                    f.write_char('&')?;
                }
                write_param(f, param)?;
            }
        }
        Ok(())
    }
}

/// `name=value` with the value redacted when the name is credential-like
/// or the value holds a JWT; a bare item redacted when it holds a JWT.
fn write_param(f: &mut String, param: &str) -> fmt::Result {
    match param.split_once('=') {
        Some((name, value)) if credential_name(name) || looks_like_jwt(value) => {
            write!(f, "{name}={REDACTED}")
        }
        Some(_) => f.write_str(param),
        None if looks_like_jwt(param) => f.write_str(REDACTED),
        None => f.write_str(param),
    }
}

impl Header<'_> {
    fn write_parts(&self, f: &mut String) -> fmt::Result {
        let value = String::from_utf8_lossy(self.1);
        let value = value.trim();
        let name = self.0.to_ascii_lowercase();
        match name.as_str() {
            "authorization" | "proxy-authorization" => {
                // Only a plain scheme name is kept (`Bearer`, `Basic`): a
                // credential run into it (`Bearer\`eyJ...`) is not a scheme.
                let scheme = value.split_whitespace().next().unwrap_or("");
                let plain = scheme.len() <= 32
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if plain && !scheme.is_empty() {
                    write!(f, "{scheme} {REDACTED}")
                } else {
                    f.write_str(REDACTED)
                }
            }
            "cookie" | "set-cookie" => {
                for (i, cookie) in value.split(';').enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    let cookie = cookie.trim();
                    match cookie.split_once('=') {
                        Some((n, _)) => {
                            write_redacting_jwts(f, n)?;
                            write!(f, "={REDACTED}")?;
                        }
                        None => write_redacting_jwts(f, cookie)?,
                    }
                }
                Ok(())
            }
            _ => write_redacting_jwts(f, value),
        }
    }
}

/// Writes `text` with every run that looks like a JWT replaced.
fn write_redacting_jwts(f: &mut String, text: &str) -> fmt::Result {
    let is_run = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '%');
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(is_run).unwrap_or(rest.len());
        f.write_str(&rest[..start])?;
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_run(c)).unwrap_or(rest.len());
        let run = &rest[..end];
        f.write_str(if looks_like_jwt(run) { REDACTED } else { run })?;
        rest = &rest[end..];
    }
    Ok(())
}

/// Parameter names that carry credentials (compared without case, after
/// percent-decoding, so `%74oken` is `token`).
fn credential_name(name: &str) -> bool {
    const EXACT: &[&str] = &["key", "auth", "pass", "pwd", "sig", "code", "jwt"];
    const CONTAINS: &[&str] = &[
        "token",
        "password",
        "passwd",
        "secret",
        "auth",
        "key",
        "session",
        "credential",
        "signature",
        "jwt",
    ];
    let name = percent_decode(name).to_ascii_lowercase();
    EXACT.contains(&name.as_str()) || CONTAINS.iter().any(|c| name.contains(c))
}

/// Whether `s` holds anything shaped like a JWT (see [`Target`]'s rules);
/// what [`Target`] and [`Header`] write never does.
pub fn holds_jwt(s: &str) -> bool {
    looks_like_jwt(s)
}

/// Whether `s` (percent-decoded) holds base64url segments joined by dots
/// where one segment decodes to the start of a JSON object and another
/// follows it: the shape of every JWT (`eyJ...`), signed or encrypted,
/// whole or cut after the payload. Host names and version numbers
/// (`api.example.com`, `1.2.3`) do not decode to `{"`.
fn looks_like_jwt(s: &str) -> bool {
    let decoded = percent_decode(s);
    decoded
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .any(|run| {
            // Any segment may start the token (`palisade.bearer.<jwt>`).
            let segments: Vec<&str> = run.split('.').collect();
            segments
                .windows(2)
                .any(|w| !w[1].is_empty() && json_object_start(w[0]))
        })
}

/// Whether a base64url segment decodes to the start of a JSON object with
/// a member: `{`, optional whitespace, `"` (a JWT header is `{"alg":...}`,
/// base64url `eyJ...`).
fn json_object_start(segment: &str) -> bool {
    let head = &segment.as_bytes()[..segment.len().min(8)];
    if head.len() < 4 {
        return false;
    }
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(&head[..head.len() / 4 * 4]) else {
        return false;
    };
    let mut rest = bytes.iter().copied();
    rest.next() == Some(b'{')
        && rest
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|b| b == b'"')
}

/// `%XX` decoded (invalid escapes kept as they are); lossy UTF-8.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

    fn t(s: &str) -> String {
        Target(s).to_string()
    }

    #[test]
    fn credential_parameters_are_redacted_by_name() {
        let cases = [
            ("/ws", "/ws"),
            ("/ws?token=abc", "/ws?token=[redacted]"),
            ("/ws?a=1&TOKEN=x&b=2", "/ws?a=1&TOKEN=[redacted]&b=2"),
            ("/ws?access_token=x", "/ws?access_token=[redacted]"),
            (
                "/ws?Auth=x&password=hunter2",
                "/ws?Auth=[redacted]&password=[redacted]",
            ),
            (
                "/ws?key=k&api_key=k2&apiKey=k3",
                "/ws?key=[redacted]&api_key=[redacted]&apiKey=[redacted]",
            ),
            ("/ws?%74oken=x", "/ws?%74oken=[redacted]"),
            (
                "/ws?session_id=s&client_secret=c",
                "/ws?session_id=[redacted]&client_secret=[redacted]",
            ),
            ("/ws;token=abc", "/ws;token=[redacted]"),
            ("/a;jsessionid=abc/b", "/a;jsessionid=[redacted]/b"),
            ("/ws?next=/a/b&q=1&token", "/ws?next=/a/b&q=1&token"),
            ("/index.html?v=1.2.3", "/index.html?v=1.2.3"),
        ];
        for (raw, logged) in cases {
            assert_eq!(t(raw), logged, "{raw}");
        }
    }

    #[test]
    fn anything_shaped_like_a_jwt_is_redacted_wherever_it_is() {
        let cases = [
            (format!("/ws/{JWT}"), "/ws/[redacted]".to_string()),
            (format!("/{JWT}"), "/[redacted]".to_string()),
            (format!("/ws;{JWT}"), "/ws;[redacted]".to_string()),
            (format!("/ws?x={JWT}"), "/ws?x=[redacted]".to_string()),
            (format!("/ws?{JWT}"), "/ws?[redacted]".to_string()),
            (
                format!("/ws?x=Bearer%20{JWT}"),
                "/ws?x=[redacted]".to_string(),
            ),
            (
                format!("/ws?x={}", JWT.replace('.', "%2E")),
                "/ws?x=[redacted]".to_string(),
            ),
            // Header and payload only (no signature) is still a token.
            (
                format!("/p/{}", &JWT[..JWT.rfind('.').unwrap()]),
                "/p/[redacted]".to_string(),
            ),
        ];
        for (raw, logged) in cases {
            assert_eq!(t(&raw), logged, "{raw}");
            assert!(!t(&raw).contains("eyJ"));
        }
        // Names with dots are not tokens.
        for plain in [
            "/a.b.c",
            "/example.com/x",
            "/v1.2.3",
            "/ws?h=api.example.com",
        ] {
            assert_eq!(t(plain), plain);
        }
    }

    #[test]
    fn headers_keep_no_secret() {
        let h = |n: &str, v: &str| Header(n, v.as_bytes()).to_string();
        assert_eq!(
            h("Authorization", &format!("Bearer {JWT}")),
            "Bearer [redacted]"
        );
        assert_eq!(
            h("authorization", "Basic YWxpY2U6c2VjcmV0"),
            "Basic [redacted]"
        );
        // Found by the handshake fuzz target: a cookie item without `=`.
        assert_eq!(
            h("Cookie", &format!("x=1;  Bearer {JWT}")),
            "x=[redacted]; Bearer [redacted]"
        );
        // Found by the handshake fuzz target: no space after the scheme.
        assert_eq!(h("Authorization", &format!("Bearer`{JWT}")), "[redacted]");
        assert_eq!(h("Authorization", JWT), "[redacted]");
        assert_eq!(
            h("Cookie", &format!("palisade_token={JWT}; theme=dark")),
            "palisade_token=[redacted]; theme=[redacted]"
        );
        assert_eq!(
            h(
                "Sec-WebSocket-Protocol",
                &format!("palisade.v1, palisade.bearer.{JWT}")
            ),
            "palisade.v1, [redacted]"
        );
        assert_eq!(
            h("Origin", "https://app.example.com"),
            "https://app.example.com"
        );
        assert_eq!(h("Origin", &format!("https://{JWT}")), "https://[redacted]");
        assert_eq!(h("User-Agent", "curl/8.5.0"), "curl/8.5.0");
    }
}
