//! Which address a request comes from (SPEC.md §8 `trusted_proxies`).
//!
//! The socket peer, unless the peer is a trusted proxy: then the right-most
//! address in `X-Forwarded-For` that is not itself a trusted proxy. Each
//! proxy appends the address it received the request from, so entries to
//! the left of the first untrusted one were written by the client and prove
//! nothing. A header from an untrusted peer is ignored entirely.

use std::net::IpAddr;

/// A CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a single address.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the block (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so one client has one key.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key a client counts under in per-IP tables: the address, except
/// that IPv6 clients count per /64 (one subscriber's usual allocation, so
/// one attacker cannot take 2^64 separate buckets).
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// A list of networks from a setting (`trusted_proxies`, `metrics.allow`).
#[derive(Debug, Clone, Default)]
pub struct Networks(Vec<Cidr>);

impl Networks {
    /// Parses the entries of `setting`; the error names the bad entry.
    pub fn new(setting: &str, entries: &[String]) -> Result<Networks, String> {
        entries
            .iter()
            .map(|e| {
                Cidr::parse(e.trim()).ok_or_else(|| {
                    format!("{setting}: {e:?} is not a CIDR like 10.0.0.0/8 or an address")
                })
            })
            .collect::<Result<_, _>>()
            .map(Networks)
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// The trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Networks);

impl TrustedProxies {
    /// Parses the `trusted_proxies` setting; the error names the bad entry.
    pub fn new(entries: &[String]) -> Result<TrustedProxies, String> {
        Networks::new("trusted_proxies", entries).map(TrustedProxies)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(ip)
    }

    /// The client address of a request from `peer` with these
    /// `X-Forwarded-For` header values (in order).
    pub fn client_ip<'v>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'v [u8]>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let values: Vec<&[u8]> = forwarded_for.collect();
        let mut client = peer;
        for entry in values.iter().rev().flat_map(|v| v.rsplit(|&b| b == b',')) {
            let Some(ip) = std::str::from_utf8(entry)
                .ok()
                .and_then(|s| parse_entry(s.trim()))
            else {
                // Garbage where an address should be: the last proxy we
                // trust is the best we know.
                return client;
            };
            let ip = canonical(ip);
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(proxies: &[&str], peer: &str, xff: &[&str]) -> IpAddr {
        let t = TrustedProxies::new(&proxies.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        t.client_ip(ip(peer), xff.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn rate_keys() {
        assert_eq!(rate_key(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(rate_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(rate_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            rate_key(ip("2001:db8:1:2::ffff")),
            rate_key(ip("2001:db8:1:2:1::"))
        );
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:1::5"))
        );
        assert!(
            !Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("10.0.0.1"))
        );
        for bad in ["10.0.0.0/33", "::/129", "x", "10.0.0.0/", "/8"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
        assert!(TrustedProxies::new(&["nope".into()]).is_err());
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        // Untrusted peer: a spoofed header changes nothing.
        assert_eq!(
            client(&[], "198.51.100.7", &["1.1.1.1"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(&["10.0.0.0/8"], "198.51.100.7", &["1.1.1.1"]),
            ip("198.51.100.7")
        );
        // Trusted peer: right-most untrusted entry.
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.2", &["6.6.6.6, 203.0.113.9"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.0.0.2",
                &["6.6.6.6", "203.0.113.9, 10.0.0.3"]
            ),
            ip("203.0.113.9")
        );
        // Ports and brackets; mapped addresses.
        assert_eq!(
            client(&["127.0.0.1"], "127.0.0.1", &["203.0.113.9:4711"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client(&["127.0.0.1"], "::ffff:127.0.0.1", &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        // No header, all trusted, or garbage: the last trusted hop.
        assert_eq!(client(&["10.0.0.0/8"], "10.0.0.2", &[]), ip("10.0.0.2"));
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.2", &["10.0.0.9"]),
            ip("10.0.0.9")
        );
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.2", &["1.1.1.1, garbage"]),
            ip("10.0.0.2")
        );
    }
}
