//! `POST /login` (SPEC.md §5) as pure code: checking the request head,
//! parsing the body, writing the answers. The event loop reads the body,
//! applies the rate limit and runs the password check off the loop.
//!
//! Every answer is JSON with `Connection: close` and `Cache-Control:
//! no-store`. The checks, in order: method (`405`), rate (`429`, by the
//! loop), `Content-Type` (`415`), `Content-Length` (`411`, `413`), body
//! (`400`), queue (`503`), password (`401` / `200`).

use serde::Deserialize;

use super::response;
use crate::proto::handshake::{Request, Single};
use crate::security::credentials::COOKIE;

/// The login path.
pub const PATH: &str = "/login";
/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 4096;

/// A refused login request: status, JSON error code, extra header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The `error` field of the body, also the reason logged.
    pub error: &'static str,
}

impl Refusal {
    const fn new(status: u16, error: &'static str) -> Refusal {
        Refusal { status, error }
    }
}

/// `405` for anything but `POST`.
pub fn check_method(req: &Request<'_, '_>) -> Result<(), Refusal> {
    if req.method == "POST" {
        Ok(())
    } else {
        Err(Refusal::new(405, "method_not_allowed"))
    }
}

/// Checks the head of a `POST /login`; returns the body length.
pub fn check_head(req: &Request<'_, '_>) -> Result<usize, Refusal> {
    let json = match req.single_header("content-type") {
        Single::One(v) => {
            let media = v.split(|&b| b == b';').next().unwrap_or(v).trim_ascii();
            media.eq_ignore_ascii_case(b"application/json")
        }
        _ => false,
    };
    if !json {
        return Err(Refusal::new(415, "unsupported_media_type"));
    }
    if req.header_values("transfer-encoding").next().is_some() {
        // A 4 KiB JSON body has a length: chunked bodies are not read.
        return Err(Refusal::new(411, "length_required"));
    }
    let len = match req.single_header("content-length") {
        Single::Absent => return Err(Refusal::new(411, "length_required")),
        Single::Repeated => return Err(Refusal::new(400, "invalid_request")),
        Single::One(v) => {
            let digits = v.trim_ascii();
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(Refusal::new(400, "invalid_request"));
            }
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse::<u64>().ok())
                .ok_or(Refusal::new(400, "invalid_request"))?
        }
    };
    if len > MAX_BODY_BYTES as u64 {
        return Err(Refusal::new(413, "body_too_large"));
    }
    Ok(len as usize)
}

/// The user name and password of a login body.
#[derive(Deserialize)]
pub struct LoginBody {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginBody {{ username: {:?}, .. }}", self.username)
    }
}

/// Parses the body: a JSON object with string `username` and `password`.
pub fn parse_body(body: &[u8]) -> Result<LoginBody, Refusal> {
    // serde fills a struct from an array by position too: only an object
    // is a login body.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Refusal::new(400, "invalid_request"));
    }
    let parsed: LoginBody =
        serde_json::from_slice(body).map_err(|_| Refusal::new(400, "invalid_request"))?;
    if parsed.username.is_empty() || parsed.password.is_empty() {
        return Err(Refusal::new(400, "invalid_request"));
    }
    Ok(parsed)
}

/// The `401` for an unknown user or a wrong password (the same for both).
pub const INVALID_CREDENTIALS: Refusal = Refusal::new(401, "invalid_credentials");
/// The `503` when the password queue is full.
pub const BUSY: Refusal = Refusal::new(503, "busy");
/// The `408` for a body that does not arrive in time.
pub const TIMEOUT: Refusal = Refusal::new(408, "request_timeout");
/// The `429` over the login rate.
pub const RATE_LIMITED: Refusal = Refusal::new(429, "rate_limited");

/// Writes the JSON answer for a refusal, with `extra` headers
/// (`Strict-Transport-Security` with `hsts`).
pub fn write_refusal(r: Refusal, extra: &[(&str, &str)], hsts: bool, out: &mut Vec<u8>) {
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if r.status == 405 {
        headers.push(("Allow", "POST"));
    }
    let body = format!("{{\"error\":\"{}\"}}", r.error);
    response::write_json(out, r.status, &body, &headers, hsts);
}

/// Writes the `200` with the token in the body and in the cookie (`Secure`
/// over TLS).
pub fn write_success(token: &str, ttl_s: u64, secure: bool, hsts: bool, out: &mut Vec<u8>) {
    let quoted = serde_json::to_string(token).expect("a string serializes");
    let body = format!(r#"{{"token":{quoted},"token_type":"Bearer","expires_in":{ttl_s}}}"#);
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={ttl_s}{}",
        if secure { "; Secure" } else { "" }
    );
    response::write_json(out, 200, &body, &[("Set-Cookie", &cookie)], hsts);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::parse_request;

    fn head(h: &str) -> Result<usize, Refusal> {
        let text = format!("POST /login HTTP/1.1\r\nHost: a\r\n{h}\r\n");
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let req = parse_request(text.as_bytes(), &mut storage).unwrap();
        check_method(&req)?;
        check_head(&req)
    }

    #[test]
    fn head_checks_in_order() {
        let json = "Content-Type: application/json\r\n";
        assert_eq!(head(&format!("{json}Content-Length: 12\r\n")), Ok(12));
        assert_eq!(
            head("Content-Type: Application/JSON; charset=utf-8\r\nContent-Length: 2\r\n"),
            Ok(2)
        );
        assert_eq!(head("Content-Length: 2\r\n").unwrap_err().status, 415);
        assert_eq!(
            head("Content-Type: text/plain\r\nContent-Length: 2\r\n")
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(head(json).unwrap_err().status, 411);
        assert_eq!(
            head(&format!("{json}Transfer-Encoding: chunked\r\n"))
                .unwrap_err()
                .status,
            411
        );
        assert_eq!(
            head(&format!("{json}Content-Length: 4097\r\n"))
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(
            head(&format!(
                "{json}Content-Length: 99999999999999999999999\r\n"
            ))
            .unwrap_err()
            .status,
            400
        );
        assert_eq!(
            head(&format!("{json}Content-Length: -1\r\n"))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(head(&format!("{json}Content-Length: 4096\r\n")), Ok(4096));
        let text = "GET /login HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut storage = [httparse::EMPTY_HEADER; 4];
        let req = parse_request(text.as_bytes(), &mut storage).unwrap();
        assert_eq!(check_method(&req).unwrap_err().status, 405);
    }

    #[test]
    fn bodies() {
        let ok = parse_body(br#"{"username":"alice","password":"pw","extra":1}"#).unwrap();
        assert_eq!(
            (ok.username.as_str(), ok.password.as_str()),
            ("alice", "pw")
        );
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"username":"alice"}"#,
            br#"{"username":1,"password":"x"}"#,
            br#"{"username":"","password":"x"}"#,
            br#"["alice","pw"]"#,
            br#" ["alice","pw"]"#,
            b"\xff",
        ] {
            assert_eq!(parse_body(bad).unwrap_err().status, 400);
        }
        assert!(!format!("{ok:?}").contains("pw"));
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_success("a.b.c", 60, true, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains(
            "\r\nSet-Cookie: palisade_token=a.b.c; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure\r\n"
        ));
        assert!(text.ends_with(r#"{"token":"a.b.c","token_type":"Bearer","expires_in":60}"#));
        let mut out = Vec::new();
        write_refusal(RATE_LIMITED, &[("Retry-After", "6")], false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(text.contains("\r\nRetry-After: 6\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"rate_limited\"}"));
    }
}
