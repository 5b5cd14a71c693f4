//! The router driven with plain values: a request head, the facts about
//! its connection, and the outcome with the bytes it wrote.

use std::net::SocketAddr;
use std::time::Instant;

use super::*;
use crate::config::{AuthMode, Config};
use crate::http::StaticFiles;
use crate::security::Auth;

struct World {
    shared: Shared,
    auth: Auth,
    quotas: Quotas,
    metrics: std::sync::Arc<crate::metrics::Registry>,
}

impl World {
    fn new(config: Config) -> World {
        let (auth, _) = Auth::from_config(&config).unwrap();
        let quotas = Quotas::new(&config);
        let shared = Shared::new(config, StaticFiles::embedded(), Some("localhost")).unwrap();
        World {
            shared,
            auth,
            quotas,
            metrics: crate::metrics::Registry::new(1),
        }
    }

    fn open() -> World {
        let mut config = Config::default();
        config.auth.mode = AuthMode::None;
        World::new(config)
    }

    /// Routes `head` from `peer`; the outcome and the response text.
    fn route(&mut self, head: &str, peer: &Peer, charge: &mut Charge) -> (Outcome, String) {
        self.route_with(head, peer, charge, None)
    }

    fn route_with(
        &mut self,
        head: &str,
        peer: &Peer,
        charge: &mut Charge,
        basic: Option<BasicResult>,
    ) -> (Outcome, String) {
        let mut router = Router {
            shared: &self.shared,
            auth: &mut self.auth,
            quotas: &mut self.quotas,
            protocols: &["palisade.v1"],
            sessions: &crate::router::NoSessions,
            stopping: false,
            stats: &self.metrics.worker(0),
            metrics: &self.metrics,
            refused: None,
            now: Instant::now(),
            unix_now: unix_now(),
        };
        let mut out = Vec::new();
        let outcome = router.route(head.as_bytes(), peer, charge, basic, &mut out);
        (outcome, String::from_utf8(out).unwrap())
    }
}

fn peer(addr: &str) -> Peer {
    Peer {
        addr: addr.parse::<SocketAddr>().unwrap(),
        secure: false,
        redirect_to: None,
        over_capacity: false,
    }
}

fn direct(p: &Peer) -> Charge {
    Charge::Ip(canonical(p.addr.ip()))
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn upgrade_with(extra: &str) -> String {
    format!("{UPGRADE}{extra}\r\n")
}

#[test]
fn files_and_healthz_keep_the_connection() {
    let mut w = World::open();
    let p = peer("127.0.0.1:5000");
    let (o, text) = w.route(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &p,
        &mut direct(&p),
    );
    assert!(matches!(o, Outcome::KeepAlive), "{o:?}");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nok"));
    let (o, text) = w.route(
        "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &p,
        &mut direct(&p),
    );
    assert!(matches!(o, Outcome::Final));
    assert!(text.starts_with("HTTP/1.1 404 "));
}

#[test]
fn host_rules_come_before_the_route() {
    let mut w = World::open();
    let p = peer("127.0.0.1:5000");
    for (host, status) in [
        ("evil.example", "421"),
        ("x@evil.com", "400"),
        ("[::1", "400"),
    ] {
        let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (o, text) = w.route(&head, &p, &mut direct(&p));
        assert!(matches!(o, Outcome::Final), "{host}");
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{host}: {text}"
        );
    }
    // On the WebSocket path the method comes first (SPEC.md §2).
    let head = UPGRADE
        .replace("GET /ws", "POST /ws")
        .replace("localhost:8080", "evil.example")
        + "\r\n";
    let (_, text) = w.route(&head, &p, &mut direct(&p));
    assert!(text.starts_with("HTTP/1.1 405 "), "{text}");
}

#[test]
fn an_upgrade_writes_the_101_and_names_the_protocol() {
    let mut w = World::open();
    let p = peer("127.0.0.1:5000");
    let (o, text) = w.route(
        &upgrade_with("Sec-WebSocket-Protocol: x, palisade.v1\r\n"),
        &p,
        &mut direct(&p),
    );
    let Outcome::Upgrade(up) = o else {
        panic!("{o:?}");
    };
    assert_eq!(
        up,
        Upgraded {
            user: None,
            expires_at: None,
            token: None,
            protocol: Some("palisade.v1"),
            socketio: None,
            probe: None,
            engine_only: false,
        }
    );
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
}

#[test]
fn the_origin_is_checked_once_before_credentials() {
    let mut w = World::open();
    let p = peer("127.0.0.1:5000");
    let (o, text) = w.route(
        &upgrade_with("Origin: https://evil.example\r\n"),
        &p,
        &mut direct(&p),
    );
    assert!(matches!(o, Outcome::Final));
    assert!(text.starts_with("HTTP/1.1 403 ") && text.ends_with("origin not allowed\n"));
    let own = upgrade_with("Origin: http://localhost:8080\r\n");
    assert!(matches!(
        w.route(&own, &p, &mut direct(&p)).0,
        Outcome::Upgrade(_)
    ));
}

#[test]
fn login_heads_ask_for_their_body() {
    let mut w = World::open();
    let p = peer("127.0.0.1:5000");
    let head = "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n";
    let (o, text) = w.route(head, &p, &mut direct(&p));
    assert!(matches!(o, Outcome::LoginBody { need: 12 }), "{o:?}");
    assert!(text.starts_with("HTTP/1.1 100 Continue\r\n"));
    let (o, text) = w.route(
        "GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &p,
        &mut direct(&p),
    );
    assert!(matches!(o, Outcome::Final));
    assert!(
        text.starts_with("HTTP/1.1 405 ") && text.ends_with(r#"{"error":"method_not_allowed"}"#)
    );
}

#[test]
fn basic_is_checked_off_the_loop_then_routed_again() {
    use crate::security::password::PasswordHash;
    use crate::security::users::{Username, Users};
    let dir = std::env::temp_dir().join(format!("palisade-router-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.json");
    let mut users = Users::default();
    users.insert(
        Username::new("alice").unwrap(),
        PasswordHash::generate(b"pw", 10_000).unwrap(),
    );
    users.save(&file).unwrap();
    let mut config = Config::default();
    config.auth.users_file = Some(file);
    let mut w = World::new(config);
    let p = peer("127.0.0.1:5000");
    // "alice:pw"
    let head = upgrade_with("Authorization: Basic YWxpY2U6cHc=\r\n");
    let (o, text) = w.route(&head, &p, &mut direct(&p));
    let Outcome::CheckBasic { username, password } = o else {
        panic!("{o:?}");
    };
    assert_eq!(
        (username.as_str(), password.as_slice(), text.as_str()),
        ("alice", &b"pw"[..], "")
    );
    let verified = Some(BasicResult::Verified("alice".into()));
    let (o, _) = w.route_with(&head, &p, &mut direct(&p), verified);
    assert!(
        matches!(o, Outcome::Upgrade(Upgraded { user: Some(ref u), .. }) if u == "alice"),
        "{o:?}"
    );
    let (o, text) = w.route_with(&head, &p, &mut direct(&p), Some(BasicResult::Refused));
    assert!(matches!(o, Outcome::Final));
    assert!(text.starts_with("HTTP/1.1 401 "));
    // Not over TLS and not from loopback: no Basic at all.
    let far = peer("192.0.2.7:5000");
    let (_, text) = w.route(
        &head.replace("localhost:8080", "127.0.0.1"),
        &far,
        &mut direct(&far),
    );
    assert!(
        text.starts_with("HTTP/1.1 401 ") && text.ends_with("basic_not_allowed\n"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quotas_and_capacity_refuse_in_order() {
    let mut config = Config::default();
    config.auth.mode = AuthMode::None;
    config.trusted_proxies = vec!["127.0.0.0/8".into()];
    config.limits.max_connections_per_ip = 1;
    let mut w = World::new(config);
    let proxy = peer("127.0.0.9:5000");
    let head = |client: &str| upgrade_with(&format!("X-Forwarded-For: {client}\r\n"));
    // Behind the proxy each client has its quota of one connection.
    let mut first = Charge::Unknown;
    assert!(matches!(
        w.route(&head("203.0.113.1"), &proxy, &mut first).0,
        Outcome::Upgrade(_)
    ));
    assert_eq!(first, Charge::Ip("203.0.113.1".parse().unwrap()));
    let mut second = Charge::Unknown;
    let (o, text) = w.route(&head("203.0.113.1"), &proxy, &mut second);
    assert!(matches!(o, Outcome::Final));
    assert!(
        text.starts_with("HTTP/1.1 429 ") && text.contains("\r\nRetry-After: 1\r\n"),
        "{text}"
    );
    let mut third = Charge::Unknown;
    assert!(matches!(
        w.route(&head("203.0.113.2"), &proxy, &mut third).0,
        Outcome::Upgrade(_)
    ));
    // Over max_connections: 503 after the per-client checks.
    let full = Peer {
        over_capacity: true,
        ..peer("127.0.0.1:5000")
    };
    let (_, text) = w.route(&upgrade_with(""), &full, &mut direct(&full));
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
}

#[test]
fn the_redirect_listener_never_echoes_the_host() {
    let mut w = World::open();
    let p = Peer {
        redirect_to: Some(8443),
        ..peer("127.0.0.1:5000")
    };
    let (o, text) = w.route(
        "GET /a?b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        &p,
        &mut direct(&p),
    );
    assert!(matches!(o, Outcome::Final));
    assert!(
        text.starts_with("HTTP/1.1 308 ")
            && text.contains("\r\nLocation: https://localhost:8443/a?b\r\n"),
        "{text}"
    );
    let (_, text) = w.route(
        "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        &p,
        &mut direct(&p),
    );
    assert!(text.starts_with("HTTP/1.1 421 "));
}
