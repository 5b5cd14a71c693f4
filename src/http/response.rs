//! Every HTTP response head the server writes (the `101` aside, which the
//! core writes) goes through [`write_head`], so every one carries the same
//! security headers, built here and nowhere else (SPEC.md §7):
//!
//! - `Content-Security-Policy`: the page's own policy for HTML, and
//!   `default-src 'none'; frame-ancestors 'none'` for everything else (an
//!   error body or a JSON answer is never a document that may load or frame
//!   anything);
//! - `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
//!   `Referrer-Policy: no-referrer`;
//! - `Cache-Control: no-store` on errors, redirects and `/login` answers,
//!   `no-cache` on files;
//! - `Strict-Transport-Security` on https responses when `tls.hsts` is on.

use std::io::Write as _;

use crate::proto::handshake::status_text;

/// Content-Security-Policy of the demo page and other HTML: only this
/// origin's scripts, styles, images and WebSocket; no framing, no inline code.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Content-Security-Policy of every response that is not HTML.
pub const NONE_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// `Strict-Transport-Security` sent on https responses (`tls.hsts`).
pub const HSTS: &str = "max-age=31536000";

/// How a response may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// `no-cache`: files, revalidated before reuse.
    Revalidate,
    /// `no-store`: errors, redirects, credentials.
    NoStore,
}

/// The head of one response.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    /// Status code.
    pub status: u16,
    /// `Content-Type`; `text/html` selects the page's CSP.
    pub content_type: &'a str,
    /// `Content-Length`.
    pub content_length: usize,
    /// Without it the head says `Connection: close`.
    pub keep_alive: bool,
    /// `Cache-Control`.
    pub cache: Cache,
    /// Over TLS with `tls.hsts` on.
    pub hsts: bool,
}

/// Writes the status line, the common headers, `extra`, and the empty line.
pub fn write_head(out: &mut Vec<u8>, head: Head<'_>, extra: &[(&str, &str)]) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        head.status,
        status_text(head.status),
        head.content_type,
        head.content_length
    );
    if !head.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    write_security_headers(out, is_html(head.content_type), head.cache, head.hsts);
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The one place the security headers are written.
fn write_security_headers(out: &mut Vec<u8>, html: bool, cache: Cache, hsts: bool) {
    let csp = if html { PAGE_CSP } else { NONE_CSP };
    let cache = match cache {
        Cache::Revalidate => "no-cache",
        Cache::NoStore => "no-store",
    };
    let _ = write!(
        out,
        "Content-Security-Policy: {csp}\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\nCache-Control: {cache}\r\n"
    );
    if hsts {
        let _ = write!(out, "Strict-Transport-Security: {HSTS}\r\n");
    }
}

fn is_html(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("text/html")
}

/// Writes an error (or redirect) response that ends the connection: a
/// `text/plain` body with `reason` and a newline, `no-store`.
pub fn write_error(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
    hsts: bool,
) {
    let head = Head {
        status,
        content_type: "text/plain; charset=utf-8",
        content_length: reason.len() + 1,
        keep_alive: false,
        cache: Cache::NoStore,
        hsts,
    };
    write_head(out, head, extra);
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// Writes a JSON response that ends the connection, `no-store` (the
/// `/login` answers).
pub fn write_json(out: &mut Vec<u8>, status: u16, body: &str, extra: &[(&str, &str)], hsts: bool) {
    write_json_keep(out, status, body, extra, hsts, false);
}

/// Writes a JSON response, `no-store`; without `keep_alive` it ends the
/// connection.
pub fn write_json_keep(
    out: &mut Vec<u8>,
    status: u16,
    body: &str,
    extra: &[(&str, &str)],
    hsts: bool,
    keep_alive: bool,
) {
    let head = Head {
        status,
        content_type: "application/json",
        content_length: body.len(),
        keep_alive,
        cache: Cache::NoStore,
        hsts,
    };
    write_head(out, head, extra);
    out.extend_from_slice(body.as_bytes());
}

/// `100 Continue`, with the common headers like every other response.
pub fn write_continue(out: &mut Vec<u8>, hsts: bool) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n");
    write_security_headers(out, false, Cache::NoStore, hsts);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(text: &str) -> Vec<(String, String)> {
        text.split("\r\n\r\n")
            .next()
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn get<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn errors_carry_the_common_set_and_no_store() {
        let mut out = Vec::new();
        write_error(&mut out, 404, "not found", &[("Allow", "GET")], false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nnot found\n"));
        let h = headers(&text);
        assert_eq!(get(&h, "Content-Security-Policy"), Some(NONE_CSP));
        assert_eq!(get(&h, "X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(get(&h, "Referrer-Policy"), Some("no-referrer"));
        assert_eq!(get(&h, "Cache-Control"), Some("no-store"));
        assert_eq!(get(&h, "Connection"), Some("close"));
        assert_eq!(get(&h, "Allow"), Some("GET"));
        assert_eq!(get(&h, "Content-Length"), Some("10"));
        assert_eq!(get(&h, "Strict-Transport-Security"), None);
    }

    #[test]
    fn html_gets_the_page_policy_and_hsts_when_asked() {
        let mut out = Vec::new();
        let head = Head {
            status: 200,
            content_type: "text/html; charset=utf-8",
            content_length: 0,
            keep_alive: true,
            cache: Cache::Revalidate,
            hsts: true,
        };
        write_head(&mut out, head, &[]);
        let text = String::from_utf8(out).unwrap();
        let h = headers(&text);
        assert_eq!(get(&h, "Content-Security-Policy"), Some(PAGE_CSP));
        assert_eq!(get(&h, "Cache-Control"), Some("no-cache"));
        assert_eq!(get(&h, "Strict-Transport-Security"), Some(HSTS));
        assert_eq!(get(&h, "Connection"), None);
    }
}
