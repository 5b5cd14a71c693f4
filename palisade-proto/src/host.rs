//! The `Host` header field: `host [ ":" port ]` exactly as RFC 3986 §3.2.2
//! and §3.2.3 define them (RFC 9112 §3.2: "Host = uri-host [ ":" port ]").
//!
//! ```text
//!  host        = IP-literal / IPv4address / reg-name
//!  IP-literal  = "[" ( IPv6address / IPvFuture  ) "]"
//!  IPvFuture   = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
//!  reg-name    = *( unreserved / pct-encoded / sub-delims )
//!  port        = *DIGIT
//! ```
//!
//! Anything else (a space, `/`, `@`, an unclosed bracket, a port that is
//! not digits) is not a host, and the request is answered `400`. An empty
//! host is refused too: RFC 9110 §4.2.1 forbids an `http` URI with an empty
//! host. Every IPv4address is also a reg-name, so the grammar needs no
//! separate rule for it.

/// A `Host` value that follows the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host<'a> {
    name: &'a str,
    port: Option<u16>,
}

impl<'a> Host<'a> {
    /// Parses a field value (surrounding whitespace is ignored).
    pub fn parse(value: &'a [u8]) -> Option<Host<'a>> {
        let value = core::str::from_utf8(value.trim_ascii()).ok()?;
        let (name, port) = if value.starts_with('[') {
            let end = value.find(']')?;
            let (literal, rest) = value.split_at(end + 1);
            if !ip_literal(&literal[1..end]) {
                return None;
            }
            match rest {
                "" => (literal, None),
                _ => (literal, Some(rest.strip_prefix(':')?)),
            }
        } else {
            match value.split_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (value, None),
            }
        };
        if name.is_empty() || (!name.starts_with('[') && !reg_name(name)) {
            return None;
        }
        let port = match port {
            // `port = *DIGIT`: an empty port is the default (§6.2.3).
            None | Some("") => None,
            Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().ok()?)
            }
            Some(_) => return None,
        };
        Some(Host { name, port })
    }

    /// The host as sent, without the port: a name, an IPv4 address, or a
    /// bracketed IPv6 literal (`[::1]`).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The port, when one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether this host is `name` (case-insensitive, one trailing dot of
    /// a domain name ignored on either side).
    pub fn is(&self, name: &str) -> bool {
        fn bare(n: &str) -> &str {
            n.strip_suffix('.').unwrap_or(n)
        }
        bare(self.name).eq_ignore_ascii_case(bare(name))
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn reg_name(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if unreserved(b[i]) || sub_delim(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// The inside of `[...]`: an IPv6 address (no zone identifier) or IPvFuture.
fn ip_literal(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix(['v', 'V']) {
        let Some((version, addr)) = rest.split_once('.') else {
            return false;
        };
        return !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_hexdigit())
            && !addr.is_empty()
            && addr
                .bytes()
                .all(|b| unreserved(b) || sub_delim(b) || b == b':');
    }
    s.parse::<core::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    #[test]
    fn valid_hosts_parse() {
        let cases: &[(&str, &str, Option<u16>)] = &[
            ("localhost", "localhost", None),
            ("localhost:8080", "localhost", Some(8080)),
            ("127.0.0.1:1", "127.0.0.1", Some(1)),
            ("[::1]", "[::1]", None),
            ("[::1]:443", "[::1]", Some(443)),
            ("[2001:db8::a]:80", "[2001:db8::a]", Some(80)),
            ("Example.COM.", "Example.COM.", None),
            ("a-b_c~d", "a-b_c~d", None),
            ("xn--bcher-kva.example", "xn--bcher-kva.example", None),
            ("ex%41mple", "ex%41mple", None),
            ("host:", "host", None),
            ("[::1]:", "[::1]", None),
            ("  a.b  ", "a.b", None),
            ("[v1.fe80::a+en1]", "[v1.fe80::a+en1]", None),
            ("a:65535", "a", Some(65535)),
            ("a:0080", "a", Some(80)),
        ];
        for &(raw, name, port) in cases {
            let h = Host::parse(raw.as_bytes()).unwrap_or_else(|| core::panic!("{raw:?}"));
            assert_eq!((h.name(), h.port()), (name, port), "{raw:?}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for raw in [
            "",
            " ",
            "evil example",
            "a/b@c",
            "x@evil.com",
            "user:pw@host",
            "[::1",
            "::1",
            "[::1]x",
            "[]",
            "[127.0.0.1]",
            "[fe80::1%25eth0]",
            "[v.x]",
            "[v1.]",
            "a:b",
            "a:1:2",
            "a:65536",
            "a:123456",
            ":80",
            "a%2",
            "a%zz",
            "a\tb",
            "a\\b",
            "a?b",
            "a#b",
            "a\"b",
            "ä.example",
            "a<b>",
        ] {
            assert_eq!(Host::parse(raw.as_bytes()), None, "{raw:?}");
        }
        assert_eq!(Host::parse(b"\xff"), None);
    }

    #[test]
    fn comparison_ignores_case_and_one_trailing_dot() {
        let h = Host::parse(b"LocalHost.:8080").unwrap();
        assert!(h.is("localhost"));
        assert!(h.is("localhost."));
        assert!(!h.is("localhost.."));
        assert!(!h.is("127.0.0.1"));
        assert!(Host::parse(b"[::1]").unwrap().is("[::1]"));
    }
}
