//! The Origin policy against cross-site WebSocket hijacking (SPEC.md §4).
//!
//! A browser attaches cookies to a WebSocket handshake whatever page opens
//! it, so a page on `https://evil.example` could open an authenticated
//! connection to this server in its visitor's name. The `Origin` header is
//! how the server tells: only listed origins (or, by default, only the
//! server's own host) may connect.
//!
//! Origins are compared as (scheme, host, port) after normalising: scheme
//! and host lower-cased, one trailing dot of the host removed, the default
//! port of the scheme filled in (`https://a.com` = `https://a.com:443`).
//! An Origin with userinfo, a path, a query, or anything else a browser
//! never sends is malformed and refused; so is `null` (sandboxed frames,
//! `file:` pages), unless `"*"` allows everything.

use crate::proto::host::Host;

/// A normalised origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https` (also `ws` / `wss` in the allow-list).
    pub scheme: String,
    /// Lower-case host without a trailing dot; IPv6 in brackets.
    pub host: String,
    /// Explicit or default port.
    pub port: u16,
}

/// Parses `scheme://host[:port]` as browsers serialise an origin.
pub fn parse(text: &str) -> Option<Origin> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '\\']) {
        return None;
    }
    let (host, port) = split_host_port(rest)?;
    let port = match port {
        Some(p) => p,
        None => default_port,
    };
    Some(Origin {
        scheme,
        host: normalize_host(host)?,
        port,
    })
}

/// Splits `host[:port]` (IPv6 in brackets); `None` for a bad port.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let host = &s[..v6.len() + 2];
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

fn normalize_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'));
    ok.then(|| host.to_ascii_lowercase())
}

/// Why an Origin was refused (the log's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not in the allow-list / not the server's own host.
    NotAllowed,
    /// Not a serialised origin (userinfo, path, `null`, ...).
    Malformed,
    /// No Origin while `require_origin` is on.
    Missing,
    /// More than one Origin header.
    Repeated,
}

impl Refusal {
    /// The reason as logged and sent in the `403` body.
    pub const fn reason(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "origin not allowed",
            Refusal::Malformed => "origin malformed",
            Refusal::Missing => "origin required",
            Refusal::Repeated => "origin repeated",
        }
    }
}

/// Proof that a request's Origin passed the policy (only
/// [`OriginPolicy::check`] makes one).
#[derive(Debug)]
pub struct OriginChecked(());

/// The configured policy.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allowed: Vec<Origin>,
    any: bool,
    require: bool,
}

impl OriginPolicy {
    /// Builds the policy from `allowed_origins` and `require_origin`; an
    /// entry that is not an origin is an error naming it.
    pub fn new(allowed: &[String], require: bool) -> Result<OriginPolicy, String> {
        let mut policy = OriginPolicy {
            require,
            ..OriginPolicy::default()
        };
        for entry in allowed {
            if entry == "*" {
                policy.any = true;
                continue;
            }
            let o = parse(entry).ok_or_else(|| {
                format!("allowed_origins: {entry:?} is not an origin like https://app.example.com")
            })?;
            policy.allowed.push(o);
        }
        Ok(policy)
    }

    /// Whether `"*"` is in the list (logged as a warning at start-up).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Checks the request's Origin values against the policy; `host` is
    /// the request's `Host` and `https` whether the request came over TLS
    /// (for same-origin when the list is empty). The [`OriginChecked`] it
    /// returns is what the security gate needs to exist: the Origin is
    /// checked once, here, and cannot be skipped.
    pub fn check<'v>(
        &self,
        mut origins: impl Iterator<Item = &'v [u8]>,
        host: Host<'_>,
        https: bool,
    ) -> Result<OriginChecked, Refusal> {
        let value = match (origins.next(), origins.next()) {
            (None, _) => {
                return if self.require {
                    Err(Refusal::Missing)
                } else {
                    Ok(OriginChecked(())) // not a browser: nothing to hijack
                };
            }
            (Some(_), Some(_)) => return Err(Refusal::Repeated),
            (Some(v), None) => v,
        };
        if self.any {
            return Ok(OriginChecked(()));
        }
        let text = std::str::from_utf8(value)
            .map_err(|_| Refusal::Malformed)?
            .trim();
        let origin = parse(text).ok_or(Refusal::Malformed)?;
        if self.allowed.is_empty() {
            return if same_host(&origin, host, https) {
                Ok(OriginChecked(()))
            } else {
                Err(Refusal::NotAllowed)
            };
        }
        if self.allowed.iter().any(|a| same_origin(a, &origin)) {
            Ok(OriginChecked(()))
        } else {
            Err(Refusal::NotAllowed)
        }
    }
}

/// Same scheme, host and port; `ws`/`wss` in the list stand for
/// `http`/`https`.
fn same_origin(allowed: &Origin, o: &Origin) -> bool {
    let web = |s: &str| match s {
        "ws" => "http".to_owned(),
        "wss" => "https".to_owned(),
        other => other.to_owned(),
    };
    web(&allowed.scheme) == web(&o.scheme) && allowed.host == o.host && allowed.port == o.port
}

/// Same-origin default: the Origin's scheme is the request's, and its host
/// and port equal the `Host` (a `Host` without a port means the default
/// port of the request's scheme). A page on `http://a.com`, which anyone on
/// the network path can inject into, is not the origin of `wss://a.com`.
fn same_host(o: &Origin, host: Host<'_>, https: bool) -> bool {
    let scheme = if https { "https" } else { "http" };
    if o.scheme != scheme {
        return false;
    }
    let Some(name) = normalize_host(host.name()) else {
        return false;
    };
    let port = host.port().unwrap_or(default_port(scheme));
    name == o.host && port == o.port
}

fn default_port(scheme: &str) -> u16 {
    if matches!(scheme, "https" | "wss") {
        443
    } else {
        80
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(host: &str) -> Host<'_> {
        Host::parse(host.as_bytes()).expect("a valid Host in the test")
    }

    fn check(policy: &OriginPolicy, origin: Option<&str>, host: &str) -> Result<(), Refusal> {
        let https = origin.is_some_and(|o| o.to_ascii_lowercase().starts_with("https:"));
        policy
            .check(origin.map(str::as_bytes).into_iter(), h(host), https)
            .map(|_| ())
    }

    #[test]
    fn parsing_normalises() {
        let o = parse("HTTPS://App.Example.COM.").unwrap();
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "app.example.com", 443)
        );
        assert_eq!(parse("http://a.com:8080").unwrap().port, 8080);
        assert_eq!(parse("http://[::1]:8080").unwrap().host, "[::1]");
        assert_eq!(parse("http://[::1]").unwrap().port, 80);
        for bad in [
            "null",
            "a.com",
            "ftp://a.com",
            "https://user:pw@a.com",
            "https://a.com@evil.example",
            "https://a.com/",
            "https://a.com/path",
            "https://a.com?q",
            "https://a.com:",
            "https://a.com:99999",
            "https://a.com:8x",
            "https://",
            "https://a b.com",
            "https://[::1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn allow_list_is_exact_after_normalising() {
        let p = OriginPolicy::new(
            &[
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
            ],
            false,
        )
        .unwrap();
        let h = "server.example";
        for ok in [
            "https://app.example.com",
            "https://APP.example.com",
            "HTTPS://app.example.com:443",
            "https://app.example.com.",
            "http://localhost:3000",
        ] {
            assert_eq!(check(&p, Some(ok), h), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("https://evil.example", Refusal::NotAllowed),
            ("http://app.example.com", Refusal::NotAllowed),
            ("https://app.example.com:8443", Refusal::NotAllowed),
            ("https://app.example.com.evil.example", Refusal::NotAllowed),
            ("https://evil.example@app.example.com", Refusal::Malformed),
            ("https://app.example.com@evil.example", Refusal::Malformed),
            ("null", Refusal::Malformed),
            ("http://localhost", Refusal::NotAllowed),
        ] {
            assert_eq!(check(&p, Some(bad), h), Err(why), "{bad}");
        }
        // No Origin: a non-browser client, accepted unless required.
        assert_eq!(check(&p, None, h), Ok(()));
        let strict = OriginPolicy::new(&[], true).unwrap();
        assert_eq!(check(&strict, None, h), Err(Refusal::Missing));
        assert!(OriginPolicy::new(&["app.example.com".into()], false).is_err());
    }

    #[test]
    fn same_origin_by_default() {
        let p = OriginPolicy::new(&[], false).unwrap();
        assert_eq!(
            check(&p, Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            Ok(())
        );
        assert_eq!(check(&p, Some("https://a.com"), "a.com"), Ok(()));
        assert_eq!(check(&p, Some("https://a.com:443"), "A.COM."), Ok(()));
        assert_eq!(check(&p, Some("https://a.com"), "a.com:443"), Ok(()));
        assert_eq!(check(&p, Some("http://a.com"), "a.com"), Ok(()));
        // The request's scheme decides: http pages do not open wss, and
        // the reverse.
        fn o(s: &str) -> std::option::IntoIter<&[u8]> {
            Some(s.as_bytes()).into_iter()
        }
        assert_eq!(
            p.check(o("http://a.com"), h("a.com"), true).map(|_| ()),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            p.check(o("https://a.com"), h("a.com"), false).map(|_| ()),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            p.check(o("https://a.com"), h("a.com"), true).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            check(&p, Some("http://127.0.0.1:9999"), "127.0.0.1:8080"),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            check(&p, Some("https://evil.example"), "a.com"),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            check(&p, Some("https://a.com:8443"), "a.com"),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(check(&p, Some("null"), "a.com"), Err(Refusal::Malformed));
        let two = [&b"https://a.com"[..], b"https://a.com"];
        assert_eq!(
            p.check(two.into_iter(), h("a.com"), true).map(|_| ()),
            Err(Refusal::Repeated)
        );
    }

    #[test]
    fn star_allows_any() {
        let p = OriginPolicy::new(&["*".into()], false).unwrap();
        assert!(p.allows_any());
        assert_eq!(check(&p, Some("https://evil.example"), "a.com"), Ok(()));
        assert_eq!(check(&p, Some("null"), "a.com"), Ok(()));
    }
}
