//! `POST /logout` and `GET /session` (SPEC.md §2, §5) as pure code: the
//! answers. The router checks the method, the Origin and the token.
//!
//! Both answer JSON with `Cache-Control: no-store`. They may keep the
//! connection open (HTTP/1.1, no body, no `Connection: close`): a page
//! asks `/session` on every load.

use super::response;
use crate::security::Session;
use crate::security::credentials::COOKIE;

/// The log-out path.
pub const LOGOUT: &str = "/logout";
/// The session path.
pub const SESSION: &str = "/session";

/// The `Set-Cookie` that removes the token cookie (`Secure` over TLS).
pub fn cleared_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// How an answer goes out.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    /// Over TLS: the cleared cookie says `Secure`.
    pub secure: bool,
    /// `Strict-Transport-Security`.
    pub hsts: bool,
    /// The connection may carry another request.
    pub keep_alive: bool,
}

/// The `200` of a log-out: the token is revoked and the cookie cleared.
pub fn write_logged_out(out: &mut Vec<u8>, user: &str, a: Answer) {
    let body = serde_json::json!({ "logged_out": true, "username": user }).to_string();
    let cookie = cleared_cookie(a.secure);
    response::write_json_keep(
        out,
        200,
        &body,
        &[("Set-Cookie", &cookie)],
        a.hsts,
        a.keep_alive,
    );
}

/// A refused log-out (`401` for a missing or invalid token, `403` for
/// another origin, `405`): JSON `{"error"}`. A `401` clears the cookie too,
/// since what it holds is no session.
pub fn write_logout_refused(out: &mut Vec<u8>, status: u16, error: &str, a: Answer) {
    let body = serde_json::json!({ "error": error }).to_string();
    let cookie = cleared_cookie(a.secure);
    let mut extra: Vec<(&str, &str)> = Vec::new();
    match status {
        401 => extra.push(("Set-Cookie", &cookie)),
        405 => extra.push(("Allow", "POST")),
        _ => {}
    }
    response::write_json_keep(out, status, &body, &extra, a.hsts, a.keep_alive);
}

/// The `200` of `GET /session`: whether the request carries a valid
/// session, and (beyond SPEC.md) whether the server wants one at all
/// (`auth_required`), so the page knows to show the form or to connect.
pub fn write_session(out: &mut Vec<u8>, session: Option<&Session>, auth_required: bool, a: Answer) {
    let body = match session {
        Some(s) => serde_json::json!({
            "authenticated": true,
            "username": s.username,
            "expires_at": s.expires_at,
            "auth_required": auth_required,
        }),
        None => serde_json::json!({ "authenticated": false, "auth_required": auth_required }),
    };
    response::write_json_keep(out, 200, &body.to_string(), &[], a.hsts, a.keep_alive);
}

/// `405` for `/session` with another method than `GET` or `HEAD`.
pub fn write_session_method(out: &mut Vec<u8>, a: Answer) {
    let body = r#"{"error":"method_not_allowed"}"#;
    response::write_json_keep(
        out,
        405,
        body,
        &[("Allow", "GET, HEAD")],
        a.hsts,
        a.keep_alive,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn a_log_out_clears_the_cookie_and_is_not_stored() {
        let mut out = Vec::new();
        let a = Answer {
            secure: true,
            hsts: false,
            keep_alive: true,
        };
        write_logged_out(&mut out, "alice", a);
        let t = text(&out);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
        assert!(t.contains("\r\nSet-Cookie: palisade_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure\r\n"), "{t}");
        assert!(t.contains("\r\nCache-Control: no-store\r\n"), "{t}");
        assert!(!t.contains("Connection: close"), "{t}");
        assert!(
            t.ends_with(r#"{"logged_out":true,"username":"alice"}"#),
            "{t}"
        );
    }

    #[test]
    fn refusals() {
        let a = Answer {
            secure: false,
            hsts: false,
            keep_alive: false,
        };
        let mut out = Vec::new();
        write_logout_refused(&mut out, 401, "missing", a);
        let t = text(&out);
        assert!(
            t.contains("Max-Age=0\r\n") && t.contains("Connection: close"),
            "{t}"
        );
        let mut out = Vec::new();
        write_logout_refused(&mut out, 403, "origin not allowed", a);
        assert!(!text(&out).contains("Set-Cookie"));
        let mut out = Vec::new();
        write_logout_refused(&mut out, 405, "method_not_allowed", a);
        assert!(text(&out).contains("\r\nAllow: POST\r\n"));
    }

    #[test]
    fn session_answers() {
        let a = Answer {
            secure: false,
            hsts: false,
            keep_alive: true,
        };
        let mut out = Vec::new();
        write_session(&mut out, None, true, a);
        assert!(text(&out).ends_with(r#"{"auth_required":true,"authenticated":false}"#));
        let s = Session {
            username: "alice".into(),
            expires_at: 7,
        };
        let mut out = Vec::new();
        write_session(&mut out, Some(&s), true, a);
        assert!(text(&out).ends_with(
            r#"{"auth_required":true,"authenticated":true,"expires_at":7,"username":"alice"}"#
        ));
    }
}
