//! `allowed_hosts`: the names this server answers to (SPEC.md §2, §8).
//!
//! A web page can make a browser send requests to any name it controls;
//! with DNS rebinding that name can resolve to a server on the visitor's
//! own machine. The page's `Origin` then equals the request's `Host`
//! (`evil.example:8080` both times), so the same-origin rule alone lets it
//! through. Refusing every `Host` the server was not configured for closes
//! that door: a rebinding page can choose the address its name resolves
//! to, not the `Host` the browser sends.
//!
//! Default: on a loopback listener `localhost`, `127.0.0.1`, `[::1]` and
//! the listen address itself, any port; on any other listener every host
//! (the server cannot guess its public names; a start-up line recommends
//! setting the list). `"*"` allows any host (a warning at start-up).
//! A request for another host is answered `421 Misdirected Request`.

use std::net::IpAddr;

use crate::proto::host::Host;

/// The names requests may carry in `Host`.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    names: Vec<String>,
    any: bool,
    /// True when the list came from the defaults of a non-loopback
    /// listener (a start-up line says so).
    open_by_default: bool,
}

impl AllowedHosts {
    /// Builds the list from `allowed_hosts` and the listen address; an
    /// entry that is not a host (or carries a port) is an error naming it.
    pub fn new(entries: &[String], listen: IpAddr) -> Result<AllowedHosts, String> {
        let mut hosts = AllowedHosts {
            names: Vec::new(),
            any: false,
            open_by_default: false,
        };
        for entry in entries {
            if entry == "*" {
                hosts.any = true;
                continue;
            }
            let host = Host::parse(entry.as_bytes())
                .filter(|h| h.name().len() == entry.len())
                .ok_or_else(|| {
                    format!(
                        "allowed_hosts: {entry:?} is not a host name like app.example.com, 127.0.0.1 or [::1] (no port)"
                    )
                })?;
            hosts.names.push(host.name().to_ascii_lowercase());
        }
        if entries.is_empty() {
            if listen.is_loopback() {
                hosts.names = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
                let own = match listen {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                };
                if !hosts.names.contains(&own) {
                    hosts.names.push(own);
                }
            } else {
                hosts.any = true;
                hosts.open_by_default = true;
            }
        }
        Ok(hosts)
    }

    /// Whether a request for `host` is answered.
    pub fn allows(&self, host: Host<'_>) -> bool {
        self.any || self.names.iter().any(|n| host.is(n))
    }

    /// Whether `"*"` was listed (a warning at start-up).
    pub fn allows_any_explicitly(&self) -> bool {
        self.any && !self.open_by_default
    }

    /// Whether every host is allowed only because the list is unset on a
    /// non-loopback listener (a start-up line recommends setting it).
    pub fn open_by_default(&self) -> bool {
        self.open_by_default
    }

    /// The names, for the start-up line.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Host<'_> {
        Host::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn loopback_defaults() {
        let a = AllowedHosts::new(&[], "127.0.0.1".parse().unwrap()).unwrap();
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "127.0.0.1:1",
            "[::1]:80",
        ] {
            assert!(a.allows(h(ok)), "{ok}");
        }
        for no in [
            "evil.example:8080",
            "127.0.0.2",
            "localhost.evil.example",
            "0.0.0.0",
        ] {
            assert!(!a.allows(h(no)), "{no}");
        }
        assert!(!a.open_by_default() && !a.allows_any_explicitly());
        let a = AllowedHosts::new(&[], "127.0.0.2".parse().unwrap()).unwrap();
        assert!(a.allows(h("127.0.0.2:9")));
        let a = AllowedHosts::new(&[], "::1".parse().unwrap()).unwrap();
        assert!(a.allows(h("[::1]:9")) && a.allows(h("localhost")));
    }

    #[test]
    fn other_listeners_allow_any_until_configured() {
        let a = AllowedHosts::new(&[], "0.0.0.0".parse().unwrap()).unwrap();
        assert!(a.allows(h("anything.example")));
        assert!(a.open_by_default() && !a.allows_any_explicitly());
        let list = vec!["app.example.com".to_string(), "[2001:db8::1]".to_string()];
        let a = AllowedHosts::new(&list, "0.0.0.0".parse().unwrap()).unwrap();
        assert!(a.allows(h("App.Example.com:443")));
        assert!(a.allows(h("[2001:db8::1]:8443")));
        assert!(!a.allows(h("localhost")));
        let a = AllowedHosts::new(&["*".into()], "127.0.0.1".parse().unwrap()).unwrap();
        assert!(a.allows(h("evil.example")) && a.allows_any_explicitly());
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "a b",
            "a.com:443",
            "a.com:",
            "http://a.com",
            "",
            "[::1]:80",
            "a/b",
        ] {
            let e = AllowedHosts::new(&[bad.into()], "127.0.0.1".parse().unwrap()).unwrap_err();
            assert!(e.starts_with("allowed_hosts: "), "{e}");
        }
    }
}
