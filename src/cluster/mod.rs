//! Fan-out across instances (SPEC.md §10, `cluster.redis_url`), without
//! I/O: the Redis protocol ([`resp`]), one connection's commands and
//! replies ([`link`]), and the Socket.IO Redis adapter's messages
//! ([`adapter`], in [`msgpack`]). The event loop's connections to Redis
//! are in `net::redis`.

pub mod adapter;
pub mod link;
pub mod msgpack;
pub mod resp;

use link::Credentials;

/// Where Redis is: `cluster.redis_url`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// `rediss://`: TLS, checked against `cluster.redis_ca_file`.
    pub tls: bool,
    pub credentials: Option<Credentials>,
}

impl Target {
    /// Parses `redis://[[user]:password@]host[:port][/db]` (`rediss://`
    /// for TLS). The database number is accepted and unused: Redis
    /// pub/sub ignores it. Errors never repeat the password.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err("must start with redis:// or rediss://".into());
        };
        // The last `@` ends the user and password, which may hold `/`,
        // `?` or `#` unescaped; the path and query come after the host.
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let hostport = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let credentials = match userinfo {
            None => None,
            Some(u) => {
                let (user, password) = u.split_once(':').unwrap_or(("", u));
                let password = percent_decode(password)
                    .ok_or("the password has a bad %-escape (or is not UTF-8)")?;
                let user = percent_decode(user).ok_or("the user name has a bad %-escape")?;
                if password.is_empty() {
                    None
                } else {
                    Some(Credentials {
                        user: (!user.is_empty() && user != "default").then_some(user),
                        password,
                    })
                }
            }
        };
        let (host, port) = match hostport.strip_prefix('[') {
            // [::1]:6379
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or("an unclosed [ in the host")?;
                (host, after.strip_prefix(':'))
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let port = match port {
            None => 6379,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("the port is not a number from 1 to 65535")?,
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            tls,
            credentials,
        })
    }

    /// The URL for logs: the password never appears.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = match &self.credentials {
            None => String::new(),
            Some(c) => format!("{}:***@", c.user.as_deref().unwrap_or("")),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{auth}{host}:{}", self.port)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let t = Target::parse("redis://127.0.0.1:6380").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 6380, false));
        assert_eq!(t.credentials, None);
        let t = Target::parse("rediss://:p%40ss@redis.example:6390/0").unwrap();
        assert!(t.tls);
        assert_eq!(t.host, "redis.example");
        let c = t.credentials.clone().unwrap();
        assert_eq!((c.user, c.password.as_str()), (None, "p@ss"));
        assert_eq!(t.redacted(), "rediss://:***@redis.example:6390");
        let t = Target::parse("redis://app:pw@[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 6379));
        assert_eq!(t.credentials.as_ref().unwrap().user.as_deref(), Some("app"));
        assert_eq!(t.redacted(), "redis://app:***@[::1]:6379");
        // Unescaped `/`, `?`, `#` and `@` in a password: still the
        // password, never the host or the port.
        let t = Target::parse("redis://palisade:4821/x?y#z@w@h:6380/1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("h", 6380));
        let c = t.credentials.as_ref().unwrap();
        assert_eq!(c.user.as_deref(), Some("palisade"));
        assert_eq!(c.password, "4821/x?y#z@w");
        assert_eq!(t.redacted(), "redis://palisade:***@h:6380");
        for bad in [
            "http://x",
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://:%zz@h",
            "redis://u:secret@h:secret",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(!e.contains("zz") && !e.contains("secret"), "{e}");
        }
    }
}
