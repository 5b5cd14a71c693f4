//! Attacks on the way in: cross-site pages, handshake floods from one and
//! from many addresses, per-IP quotas, spoofed and trusted `X-Forwarded-For`,
//! slowloris, header bombs, 10,000 idle connections.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

#[test]
fn cross_site_handshake_is_refused_403() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    let mut refused = 0;
    for i in 0..50 {
        let mut s = connect_from(loopback(i), server.addr()).unwrap();
        let (status, _, _) = handshake(&mut s, "/ws", &[("Origin", "https://evil.example")]);
        assert_eq!(status, "HTTP/1.1 403 Forbidden");
        refused += 1;
    }
    let own = format!("http://{}", server.addr());
    let mut s = connect(server.addr());
    let (status, _, _) = handshake(&mut s, "/ws", &[("Origin", &own)]);
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    let v = victim.finish();
    record(
        "cross-site page (`Origin: https://evil.example`)",
        &format!("403 x {refused}; same-origin 101"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn handshake_flood_from_one_ip_gets_429_after_the_burst() {
    handshake_flood_with(&[], "");
}

/// Two event loops: the flood's connections land on both, and the rate is
/// still one bucket for the address.
#[test]
fn handshake_flood_gets_429_after_the_burst_across_two_event_loops() {
    handshake_flood_with(&["--workers", "2"], ", two event loops");
}

fn handshake_flood_with(args: &[&str], what: &str) {
    let _s = serial();
    let server =
        Server::start_with_config(&config(r#""rate":{"handshakes_per_ip_per_s":50}"#), args);
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(7);
    let (mut ok, mut limited, mut retry_after) = (0, 0, String::new());
    let t = Instant::now();
    for _ in 0..300 {
        let mut s = connect_from(attacker, server.addr()).unwrap();
        let (status, h, _) = handshake(&mut s, "/ws", &[]);
        match status.as_str() {
            "HTTP/1.1 101 Switching Protocols" => ok += 1,
            "HTTP/1.1 429 Too Many Requests" => {
                limited += 1;
                retry_after = header(&h, "Retry-After").unwrap_or("").to_owned();
            }
            other => panic!("unexpected {other}"),
        }
    }
    let took = t.elapsed();
    // Burst of 100 plus what refilled at 50/s while the flood ran.
    let allowed = 100.0 + 50.0 * took.as_secs_f64() + 2.0;
    assert!(
        ok >= 100 && f64::from(ok) <= allowed,
        "{ok} accepted in {took:?}"
    );
    assert!(limited >= 300 - allowed as i32, "{limited}");
    assert_eq!(retry_after, "1");
    assert!(server.wait_for_log("limit=rate.handshakes_per_ip_per_s", Duration::from_secs(5)));
    let v = victim.finish();
    record(
        &format!("handshake flood, one IP (300 in a row){what}"),
        &format!("101 x {ok}, then 429 + Retry-After x {limited}"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn handshake_flood_from_1000_addresses_stays_bounded() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    let before = server.rss_kib();
    let mut ok = 0;
    for i in 0..1000 {
        let mut s = connect_from(loopback(1000 + i), server.addr()).unwrap();
        let (status, _, _) = handshake(&mut s, "/ws", &[]);
        assert_eq!(status, "HTTP/1.1 101 Switching Protocols", "address {i}");
        ok += 1;
        drop(s);
    }
    let grown = server.rss_kib().saturating_sub(before);
    eprintln!("1000 addresses, one handshake each: RSS grew {grown} KiB");
    // The per-IP table holds ~100 bytes per address; 1000 of them are
    // far below a megabyte.
    assert!(grown < 8 * 1024, "RSS grew {grown} KiB");
    let v = victim.finish();
    record(
        "handshake flood, 1,000 source addresses",
        &format!("101 x {ok} (each under its own rate)"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

/// More source addresses than the per-IP table holds (65,536): the table
/// stays bounded and memory with it.
#[test]
fn handshakes_from_70000_addresses_cannot_grow_memory_without_bound() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    let before = server.rss_kib();
    let t = Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..70_000u32 {
        let mut s = connect_from(loopback(100_000 + i), server.addr()).unwrap();
        s.write_all(handshake_request("x", "/ws", &[]).as_bytes())
            .unwrap();
        let st = status_of(&mut s);
        *statuses.entry(st).or_insert(0u32) += 1;
    }
    let took = t.elapsed();
    let grown = server.rss_kib().saturating_sub(before);
    let peak = peak_rss_kib(server.pid());
    eprintln!("70,000 addresses in {took:?}: {statuses:?}; RSS grew {grown} KiB, peak {peak} KiB");
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert!(grown < 24 * 1024, "RSS grew {grown} KiB");
    let v = victim.finish();
    record(
        "handshakes from 70,000 source addresses (more than the per-IP table holds)",
        &format!("101 each; RSS +{:.1} MiB", grown as f64 / 1024.0),
        &v,
        peak,
        SMALL_RSS_KIB,
    );
}

#[test]
fn connections_per_ip_are_capped() {
    connections_per_ip_are_capped_with(&[], "");
}

/// With two event loops the connections of one address land on both (the
/// kernel spreads them by port): the cap is one count across them.
#[test]
fn connections_per_ip_are_capped_across_two_event_loops() {
    connections_per_ip_are_capped_with(&["--workers", "2"], ", two event loops");
}

fn connections_per_ip_are_capped_with(args: &[&str], what: &str) {
    let _s = serial();
    let server =
        Server::start_with_config(&config(r#""limits":{"max_connections_per_ip":20}"#), args);
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(9);
    let held: Vec<Client> = (0..20)
        .map(|_| {
            let mut s = connect_from(attacker, server.addr()).unwrap();
            let (status, _, rest) = handshake(&mut s, "/ws", &[]);
            assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
            Client::new(s, rest)
        })
        .collect();
    let mut s = connect_from(attacker, server.addr()).unwrap();
    let (status, h, _) = handshake(&mut s, "/ws", &[]);
    assert_eq!(status, "HTTP/1.1 429 Too Many Requests");
    assert_eq!(header(&h, "Retry-After"), Some("1"));
    assert!(server.wait_for_log(
        "limit=limits.max_connections_per_ip",
        Duration::from_secs(5)
    ));
    // Another address is not affected; a freed slot can be used again.
    let mut other = connect_from(loopback(10), server.addr()).unwrap();
    assert_eq!(
        handshake(&mut other, "/ws", &[]).0,
        "HTTP/1.1 101 Switching Protocols"
    );
    drop(held);
    thread::sleep(Duration::from_millis(200));
    let mut again = connect_from(attacker, server.addr()).unwrap();
    assert_eq!(
        handshake(&mut again, "/ws", &[]).0,
        "HTTP/1.1 101 Switching Protocols"
    );
    let v = victim.finish();
    record(
        &format!("connections per IP over `limits.max_connections_per_ip` (20){what}"),
        "429 + Retry-After: 1 for the 21st",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let _s = serial();
    let server = Server::start_with_config(&config(r#""rate":{"handshakes_per_ip_per_s":5}"#), &[]);
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(11);
    let mut statuses = Vec::new();
    for i in 0..30 {
        let mut s = connect_from(attacker, server.addr()).unwrap();
        let fake = format!("198.51.100.{i}");
        let (status, _, _) = handshake(&mut s, "/ws", &[("X-Forwarded-For", &fake)]);
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| s.contains("101")).count();
    let limited = statuses.iter().filter(|s| s.contains("429")).count();
    assert!(
        ok <= 12 && limited >= 18,
        "{ok} accepted, {limited} limited"
    );
    let v = victim.finish();
    record(
        "`X-Forwarded-For` spoofing from an untrusted peer",
        &format!("one key for all: 101 x {ok}, 429 x {limited}"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn forwarded_for_from_a_trusted_proxy_keys_each_client() {
    let _s = serial();
    let server = Server::start_with_config(
        &config(
            r#""trusted_proxies":["127.0.0.0/8"],"rate":{"handshakes_per_ip_per_s":5,"logins_per_ip_per_min":2}"#,
        ),
        &[],
    );
    let proxy = loopback(12);
    // Ten handshakes for each of three clients behind the proxy: each
    // client has its own bucket (burst 10).
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        for _ in 0..10 {
            let mut s = connect_from(proxy, server.addr()).unwrap();
            let xff = format!("6.6.6.6, {client}");
            let (status, _, _) = handshake(&mut s, "/ws", &[("X-Forwarded-For", &xff)]);
            assert_eq!(status, "HTTP/1.1 101 Switching Protocols", "{client}");
        }
        let mut s = connect_from(proxy, server.addr()).unwrap();
        let (status, _, _) = handshake(&mut s, "/ws", &[("X-Forwarded-For", client)]);
        assert_eq!(status, "HTTP/1.1 429 Too Many Requests", "{client}");
    }
    // The first refusal is logged with its client; the two that follow
    // within the second are counted in one summary line.
    assert!(server.wait_for_log(
        "client=203.0.113.1 limit=rate.handshakes_per_ip_per_s",
        Duration::from_secs(5)
    ));
    assert!(server.wait_for_log(
        "rate limited (repeated) limit=rate.handshakes_per_ip_per_s repeated=2",
        Duration::from_secs(5)
    ));
    // Logins count per client too: one client over its login rate does
    // not lock out the others behind the same proxy.
    let login = |client: &str| {
        let body = r#"{"username":"nobody","password":"wrong"}"#;
        let mut s = connect_from(proxy, server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let req = format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {client}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        status_of(&mut s)
    };
    assert_eq!(login("203.0.113.1"), "HTTP/1.1 401 Unauthorized");
    assert_eq!(login("203.0.113.1"), "HTTP/1.1 401 Unauthorized");
    assert_eq!(login("203.0.113.1"), "HTTP/1.1 429 Too Many Requests");
    assert_eq!(login("203.0.113.2"), "HTTP/1.1 401 Unauthorized");
    // The log names both: the proxy that sent it and the client limited.
    let proxy_ip = proxy.to_string();
    assert!(server.wait_for_log(
        "client=203.0.113.1 limit=rate.logins_per_ip_per_min",
        Duration::from_secs(5)
    ));
    let line = server
        .logs()
        .into_iter()
        .find(|l| l.contains("limit=rate.logins_per_ip_per_min"))
        .unwrap();
    assert!(line.contains(&format!("peer={proxy_ip}:")), "{line}");
}

#[test]
fn slowloris_is_closed_at_the_handshake_timeout() {
    let _s = serial();
    let server =
        Server::start_with_config(&config(r#""limits":{"handshake_timeout_ms":2000}"#), &[]);
    let victim = WellBehaved::start(server.addr());
    let n = 1000;
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|i| connect_from(loopback(3000 + i % 100), server.addr()).unwrap())
        .collect();
    let head = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n";
    let t = Instant::now();
    let mut byte = 0;
    // One byte per connection per second until the server gives up.
    let mut closed_at = None;
    while t.elapsed() < Duration::from_secs(6) {
        let mut open = 0;
        for c in &mut conns {
            if c.write_all(&head[byte % head.len()..][..1]).is_ok() {
                open += 1;
            }
        }
        byte += 1;
        if open == 0 {
            closed_at = Some(t.elapsed());
            break;
        }
        thread::sleep(Duration::from_secs(1));
    }
    // Every connection got a 408 (or was reset after it) at ~2 s.
    let mut statuses = std::collections::BTreeMap::new();
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let st = status_of(c);
        let key = if st.starts_with("HTTP/1.1 408") {
            "408"
        } else {
            "reset/EOF"
        };
        *statuses.entry(key).or_insert(0) += 1;
    }
    eprintln!("slowloris: writes failing after {closed_at:?}; {statuses:?}");
    assert!(
        statuses.get("408").copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );
    let v = victim.finish();
    record(
        "slowloris: 1,000 connections, one header byte per second",
        &format!("closed at the 2 s handshake timeout ({statuses:?})"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn header_bombs_get_431_quickly() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(13);
    let many = {
        let mut h = String::from("GET /ws HTTP/1.1\r\nHost: localhost\r\n");
        for i in 0..100 {
            h.push_str(&format!("X-{i}: {i}\r\n"));
        }
        h + "\r\n"
    };
    let huge = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let tiny = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        "a:\r\n".repeat(5000)
    );
    let mut rows = Vec::new();
    for (what, req) in [
        ("100 headers", many),
        ("one 100 KB header line", huge),
        ("5,000 tiny headers", tiny),
    ] {
        let cpu0 = cpu_time(server.pid());
        let t = Instant::now();
        let rounds = 200;
        for _ in 0..rounds {
            let mut s = connect_from(attacker, server.addr()).unwrap();
            let _ = s.write_all(req.as_bytes());
            let st = status_of(&mut s);
            assert_eq!(st, "HTTP/1.1 431 Request Header Fields Too Large", "{what}");
        }
        let wall = t.elapsed() / rounds;
        let cpu = (cpu_time(server.pid()) - cpu0) / rounds;
        eprintln!("{what}: 431 in {wall:?} per request, server CPU {cpu:?} per request");
        rows.push(format!("{what}: {:.0} µs CPU", cpu.as_secs_f64() * 1e6));
    }
    let v = victim.finish();
    record(
        "header bombs (many / huge / thousands of tiny headers)",
        &format!("431 each; {}", rows.join(", ")),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn ten_thousand_idle_connections() {
    let _s = serial();
    let n: u32 = 10_000;
    need_open_files(u64::from(n) + 500);
    let server = Server::start_with_config(&config(r#""limits":{"max_connections":20000}"#), &[]);
    let victim = WellBehaved::start(server.addr());
    thread::sleep(Duration::from_millis(100));
    let before = server.rss_kib();
    let t = Instant::now();
    // 100 addresses x 100 connections: within the per-IP quota and rate.
    let conns: Vec<Client> = (0..n)
        .map(|i| {
            let mut s = connect_from(loopback(6000 + i / 100), server.addr()).unwrap();
            let (status, _, rest) = handshake(&mut s, "/ws", &[]);
            assert_eq!(status, "HTTP/1.1 101 Switching Protocols", "connection {i}");
            Client::new(s, rest)
        })
        .collect();
    let opened = t.elapsed();
    thread::sleep(Duration::from_millis(300));
    let after = server.rss_kib();
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / f64::from(n);
    eprintln!(
        "{n} idle WebSockets opened in {opened:?}; RSS {before} -> {after} KiB: {per_conn:.0} bytes per idle connection"
    );
    // A fresh client is served at once while they sit there.
    let mut fresh = open(server.addr());
    let t = Instant::now();
    fresh
        .write_all(&text(r#"{"event":"get_name","data":{"hero":"hulk"}}"#))
        .unwrap();
    let f = read_frame(&mut fresh).unwrap();
    assert!(f.payload.starts_with(br#"{"event":"name""#));
    eprintln!(
        "a new client's round trip with {n} idle connections open: {:?}",
        t.elapsed()
    );
    assert!(per_conn < 4096.0, "{per_conn:.0} bytes per idle connection");
    let v = victim.finish();
    record(
        "10,000 idle connections opened at once",
        &format!("all 101; {per_conn:.0} bytes of server RSS per idle connection"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
    drop(conns);
}

/// DNS rebinding: a page whose name now resolves to this server sends its
/// own name in `Host` and a matching `Origin`, which the same-origin rule
/// alone would accept; with `auth.mode` none it would then talk to the
/// server. Malformed `Host` values (and the open redirect they made) are
/// refused on every endpoint.
#[test]
fn dns_rebinding_and_malformed_hosts_are_refused() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    let port = server.addr().port();
    let rebound = format!("evil.example:{port}");
    let (mut misdirected, mut bad) = (0, 0);
    for i in 0..20 {
        let mut s = connect_from(loopback(40 + i), server.addr()).unwrap();
        s.write_all(
            handshake_request(&rebound, "/ws", &[("Origin", &format!("http://{rebound}"))])
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(status_of(&mut s), "HTTP/1.1 421 Misdirected Request");
        misdirected += 1;
    }
    for host in ["evil example", "a/b@c", "x@evil.com", "[::1"] {
        for path in ["/ws", "/healthz"] {
            let mut s = connect_from(loopback(60), server.addr()).unwrap();
            s.write_all(handshake_request(host, path, &[]).as_bytes())
                .unwrap();
            assert_eq!(
                status_of(&mut s),
                "HTTP/1.1 400 Bad Request",
                "{host} {path}"
            );
            bad += 1;
        }
    }
    let v = victim.finish();
    record(
        "DNS rebinding (`Host: evil.example:PORT`, same Origin) and malformed Host",
        &format!("421 x {misdirected} (not in `allowed_hosts`); 400 x {bad} on /ws and /healthz"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

/// A token put where the server does not read it (a matrix parameter, a
/// path segment, `access_token`) must still not reach the debug log.
#[test]
fn tokens_in_the_url_never_reach_the_debug_log() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &["--log-level", "debug"]);
    let victim = WellBehaved::start(server.addr());
    // Shaped like a JWT: header {"alg":"HS256"}, a payload, a signature.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJlLW9mLXRoZS1hdHRhY2tlcg";
    let targets = [
        format!("/ws;token={jwt}"),
        format!("/ws/{jwt}"),
        format!("/{jwt}"),
        format!("/ws?access_token={jwt}"),
        format!("/ws?password=hunter2-{}", &jwt[..8]),
    ];
    for t in &targets {
        let mut s = connect_from(loopback(70), server.addr()).unwrap();
        let (status, _, _) = handshake(&mut s, t, &[]);
        assert!(status.starts_with("HTTP/1.1 "), "{t}: {status}");
    }
    assert!(server.wait_for_log("target=/[redacted]", Duration::from_secs(5)));
    assert!(server.wait_for_log("access_token=[redacted]", Duration::from_secs(5)));
    let leaks = server
        .logs()
        .iter()
        .filter(|l| l.contains("eyJzdWIi") || l.contains("hunter2"))
        .count();
    assert_eq!(leaks, 0);
    let redacted = count_logs(&server, "[redacted]");
    let v = victim.finish();
    record(
        "token in the URL path, matrix or query (`--log-level debug`)",
        &format!("answered as usual; {redacted} log lines show `[redacted]`, none the token"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

/// Every error an attacker can cause carries the security headers, so an
/// error page cannot be framed, sniffed into HTML or cached.
#[test]
fn error_responses_carry_the_security_headers() {
    let _s = serial();
    let server = Server::start_with_config(&config(r#""limits":{"max_headers":8}"#), &[]);
    let victim = WellBehaved::start(server.addr());
    let many: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let requests = [
        ("400", "BLAH\r\n\r\n".to_string()),
        (
            "404",
            "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
        ),
        (
            "405",
            "DELETE /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
        ),
        ("421", "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n".into()),
        ("426", "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".into()),
        (
            "431",
            format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n"),
        ),
    ];
    for (want, req) in &requests {
        let mut s = connect_from(loopback(80), server.addr()).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let (status, h, _) = read_response_head(&mut s);
        assert!(status.starts_with(&format!("HTTP/1.1 {want} ")), "{status}");
        assert_eq!(
            header(&h, "Content-Security-Policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{want}"
        );
        assert_eq!(header(&h, "X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(header(&h, "Referrer-Policy"), Some("no-referrer"));
        assert_eq!(header(&h, "Cache-Control"), Some("no-store"));
    }
    let v = victim.finish();
    record(
        "error pages framed, sniffed or cached (400 404 405 421 426 431)",
        "each carries CSP `default-src 'none'; frame-ancestors 'none'`, nosniff, no-referrer, no-store",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}
