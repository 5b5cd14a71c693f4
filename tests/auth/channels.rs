//! Channels (SPEC.md §10) over real sockets: `subscribe` / `unsubscribe`
//! answered, the `channels` rules (`forbidden`), names checked,
//! `limits.max_subscriptions`, and the demo's feed: every look-up by a
//! logged-in user reaches every subscriber of `lookups`, once, on either
//! event loop.

use super::*;

fn send(c: &mut Client, json: &str) {
    c.write_all(&text(json)).unwrap();
}

fn expect_text(c: &mut Client, json: &str) {
    expect_frame(c, op::TEXT, json.as_bytes());
}

/// A WebSocket of `user`, greeted.
fn logged_in(addr: SocketAddr, user: &str, password: &str) -> Client {
    let token = token_for(addr, user, password);
    let mut c = open_with(
        addr,
        "/ws",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    expect_text(&mut c, &user_authorized(user));
    c
}

/// The config of the fixture plus `extra` top-level members.
fn config_with(f: &Fixture, extra: &str) -> String {
    let base = f.config("", 1000);
    format!("{},{extra}}}", &base[..base.len() - 1])
}

#[test]
fn subscribe_is_answered_and_checked() {
    let f = Fixture::new(10_000);
    let rules = r#""channels":[{"pattern":"lookups","subscribe":["authenticated"]},{"pattern":"ops.*","subscribe":["user:bob"]}],"limits":{"max_subscriptions":2}"#;
    let server = Server::start_with_config(&config_with(&f, rules), &[]);
    let addr = server.addr();
    let mut a = logged_in(addr, "alice", ALICE_PW);

    send(
        &mut a,
        r#"{"event":"subscribe","data":{"channel":"lookups"},"id":1}"#,
    );
    expect_text(
        &mut a,
        r#"{"event":"subscribed","data":{"channel":"lookups"},"id":1}"#,
    );
    // Again: still subscribed, answered the same.
    send(
        &mut a,
        r#"{"event":"subscribe","data":{"channel":"lookups"}}"#,
    );
    expect_text(
        &mut a,
        r#"{"event":"subscribed","data":{"channel":"lookups"}}"#,
    );
    send(
        &mut a,
        r#"{"event":"subscribe","data":{"channel":"ops.logs"},"id":2}"#,
    );
    expect_text(
        &mut a,
        r#"{"event":"error","data":{"code":"forbidden","message":"not allowed to subscribe to this channel"},"id":2}"#,
    );
    send(
        &mut a,
        r#"{"event":"subscribe","data":{"channel":"prices"},"id":3}"#,
    );
    expect_text(
        &mut a,
        r#"{"event":"error","data":{"code":"forbidden","message":"not allowed to subscribe to this channel"},"id":3}"#,
    );
    send(
        &mut a,
        r#"{"event":"subscribe","data":{"channel":"a b"},"id":4}"#,
    );
    expect_text(
        &mut a,
        r#"{"event":"error","data":{"code":"invalid_message","message":"data.channel must be 1 to 64 bytes of A-Z a-z 0-9 _ . : -"},"id":4}"#,
    );
    let long = "x".repeat(65);
    send(
        &mut a,
        &format!(r#"{{"event":"subscribe","data":{{"channel":"{long}"}},"id":5}}"#),
    );
    expect_text(
        &mut a,
        r#"{"event":"error","data":{"code":"invalid_message","message":"data.channel must be 1 to 64 bytes of A-Z a-z 0-9 _ . : -"},"id":5}"#,
    );
    send(&mut a, r#"{"event":"subscribe","id":6}"#);
    expect_text(
        &mut a,
        r#"{"event":"error","data":{"code":"invalid_message","message":"subscribe and unsubscribe need data.channel"},"id":6}"#,
    );
    send(
        &mut a,
        r#"{"event":"unsubscribe","data":{"channel":"lookups"},"id":7}"#,
    );
    expect_text(
        &mut a,
        r#"{"event":"unsubscribed","data":{"channel":"lookups"},"id":7}"#,
    );

    // bob may subscribe to ops.*; his third channel is over the cap of 2.
    let bob = token_for(addr, "bob", BOB_PW);
    let mut b = open_with(addr, "/ws", &[("Authorization", &format!("Bearer {bob}"))]);
    expect_text(&mut b, &user_authorized("bob"));
    for (i, ch) in ["ops.logs", "lookups"].iter().enumerate() {
        send(
            &mut b,
            &format!(r#"{{"event":"subscribe","data":{{"channel":"{ch}"}},"id":{i}}}"#),
        );
        expect_text(
            &mut b,
            &format!(r#"{{"event":"subscribed","data":{{"channel":"{ch}"}},"id":{i}}}"#),
        );
    }
    send(
        &mut b,
        r#"{"event":"subscribe","data":{"channel":"ops.audit"},"id":9}"#,
    );
    expect_text(
        &mut b,
        r#"{"event":"error","data":{"code":"forbidden","message":"limits.max_subscriptions reached"},"id":9}"#,
    );
    assert!(server.wait_for_log("subscription refused", Duration::from_secs(5)));
    close_normally(&mut a);
    close_normally(&mut b);
}

/// Two event loops, eight subscribers of `lookups` and one client that
/// looks heroes up: each look-up reaches every subscriber exactly once,
/// whichever loop holds it, and a subscriber that left gets nothing.
#[test]
fn lookups_reach_every_subscriber_once_on_every_loop() {
    let f = Fixture::new(10_000);
    let server = Server::start_with_config(&f.config("", 1000), &["--workers", "2"]);
    let addr = server.addr();
    let bob = token_for(addr, "bob", BOB_PW);
    let bearer = format!("Bearer {bob}");
    let mut subs: Vec<Client> = (0..8)
        .map(|i| {
            let mut c = open_with(addr, "/ws", &[("Authorization", &bearer)]);
            expect_text(&mut c, &user_authorized("bob"));
            send(
                &mut c,
                &format!(r#"{{"event":"subscribe","data":{{"channel":"lookups"}},"id":{i}}}"#),
            );
            expect_text(
                &mut c,
                &format!(r#"{{"event":"subscribed","data":{{"channel":"lookups"}},"id":{i}}}"#),
            );
            c
        })
        .collect();
    let mut a = logged_in(addr, "alice", ALICE_PW);
    for hero in ["hulk", "ironMan"] {
        send(
            &mut a,
            &format!(r#"{{"event":"get_name","data":{{"hero":"{hero}"}}}}"#),
        );
        let _ = read_frame(&mut a).unwrap();
    }
    let hulk = r#"{"event":"publication","data":{"channel":"lookups","data":{"user":"alice","hero":"hulk","hero_name":"Bruce Banner"}}}"#;
    let iron = r#"{"event":"publication","data":{"channel":"lookups","data":{"user":"alice","hero":"ironMan","hero_name":"Tony Stark"}}}"#;
    for c in &mut subs {
        expect_text(c, hulk);
        expect_text(c, iron);
    }
    // One leaves its subscription; the next look-up skips it, once each for the others.
    send(
        &mut subs[0],
        r#"{"event":"unsubscribe","data":{"channel":"lookups"}}"#,
    );
    expect_text(
        &mut subs[0],
        r#"{"event":"unsubscribed","data":{"channel":"lookups"}}"#,
    );
    send(&mut a, r#"{"event":"get_name","data":{"hero":"hulk"}}"#);
    let _ = read_frame(&mut a).unwrap();
    for c in &mut subs[1..] {
        expect_text(c, hulk);
    }
    for c in &mut subs {
        expect_silence(c, Duration::from_millis(300));
    }
}

/// A new API key named `name` in `keys` (`palisade apikeys add`).
fn new_key(keys: &std::path::Path, name: &str) -> String {
    let made = std::process::Command::new(BIN)
        .args([
            "apikeys",
            "add",
            name,
            "--keys-file",
            keys.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    String::from_utf8(made.stdout).unwrap().trim().to_owned()
}

/// `POST /api/publish` with `key` (if any), `content_type` and `body`: the
/// status line and the body.
fn publish(
    addr: SocketAddr,
    key: Option<&str>,
    content_type: &str,
    body: &str,
) -> (String, String) {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let raw = format!(
        "POST /api/publish HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = http(addr, &raw);
    (status, body)
}

/// The publish API (SPEC.md §10): keys made by `palisade apikeys add`, the
/// `publish` rules, every refusal with its status, and a publication that
/// reaches the subscriber with `{"delivered": 1}`.
#[test]
fn the_publish_api_needs_a_key_the_rules_allow() {
    let f = Fixture::new(10_000);
    let keys = f.dir.join("keys.json");
    let key = new_key(&keys, "feed");
    assert!(key.starts_with("pk_"), "{key}");
    assert!(!fs::read_to_string(&keys).unwrap().contains(&key[3..]));
    let listed = std::process::Command::new(BIN)
        .args(["apikeys", "list", "--keys-file", keys.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "feed\n");

    let extra = format!(
        r#""api":{{"keys_file":{:?}}},"channels":[{{"pattern":"prices.*","subscribe":["authenticated"],"publish":["key:feed"]}},{{"pattern":"lookups","subscribe":["authenticated"]}}]"#,
        keys.display().to_string()
    );
    let server = Server::start_with_config(&config_with(&f, &extra), &[]);
    let addr = server.addr();
    let mut s = logged_in(addr, "alice", ALICE_PW);
    send(
        &mut s,
        r#"{"event":"subscribe","data":{"channel":"prices.eur"}}"#,
    );
    expect_text(
        &mut s,
        r#"{"event":"subscribed","data":{"channel":"prices.eur"}}"#,
    );

    let body = r#"{"channel":"prices.eur","data":{"bid":1.08}}"#;
    let json = "application/json";
    let refusals = [
        (
            publish(addr, None, json, body),
            "401",
            r#"{"error":"missing"}"#,
        ),
        (
            publish(addr, Some("pk_wrong"), json, body),
            "401",
            r#"{"error":"invalid_api_key"}"#,
        ),
        (
            publish(addr, Some(&key), "text/plain", body),
            "415",
            r#"{"error":"unsupported_media_type"}"#,
        ),
        (
            publish(addr, Some(&key), json, "{"),
            "400",
            r#"{"error":"invalid_body"}"#,
        ),
        (
            publish(addr, Some(&key), json, r#"{"channel":"a b","data":1}"#),
            "400",
            r#"{"error":"invalid_channel"}"#,
        ),
        (
            publish(addr, Some(&key), json, r#"{"channel":"lookups","data":1}"#),
            "403",
            r#"{"error":"forbidden"}"#,
        ),
        (
            publish(
                addr,
                Some(&key),
                json,
                &format!(
                    r#"{{"channel":"prices.eur","data":"{}"}}"#,
                    "x".repeat(70_000)
                ),
            ),
            "413",
            r#"{"error":"too_large"}"#,
        ),
    ];
    for ((status, answer), code, want) in refusals {
        assert!(
            status.starts_with(&format!("HTTP/1.1 {code} ")),
            "{status} {answer}"
        );
        assert_eq!(answer, want);
    }
    let (status, answer) = publish(addr, Some(&key), json, body);
    assert_eq!(status, "HTTP/1.1 200 OK", "{answer}");
    assert_eq!(answer, r#"{"delivered":1}"#);
    expect_text(
        &mut s,
        r#"{"event":"publication","data":{"channel":"prices.eur","data":{"bid":1.08}}}"#,
    );
    let (status, answer) = publish(
        addr,
        Some(&key),
        json,
        r#"{"channel":"prices.usd","data":null}"#,
    );
    assert_eq!(
        (status.as_str(), answer.as_str()),
        ("HTTP/1.1 200 OK", r#"{"delivered":0}"#)
    );
    expect_silence(&mut s, Duration::from_millis(300));
    assert!(server.wait_for_log("published peer=", Duration::from_secs(5)));
    // The key removed, and the server told (SIGHUP): refused from now on.
    let removed = std::process::Command::new(BIN)
        .args([
            "apikeys",
            "remove",
            "feed",
            "--keys-file",
            keys.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(removed.success());
    hup(server.pid());
    assert!(server.wait_for_log("api_keys=reloaded api_key_count=0", Duration::from_secs(5)));
    let (status, answer) = publish(addr, Some(&key), json, body);
    assert_eq!(
        (status.as_str(), answer.as_str()),
        (
            "HTTP/1.1 401 Unauthorized",
            r#"{"error":"invalid_api_key"}"#
        )
    );
    assert!(
        !server.logs().join("\n").contains(&key),
        "the key reached the log"
    );
}

/// `palisade publish` against a running server, over http and https (the
/// key from the environment, never the command line).
#[test]
fn palisade_publish_over_http_and_https() {
    let f = Fixture::new(10_000);
    let keys = f.dir.join("keys.json");
    let key = new_key(&keys, "cli");
    let extra = format!(
        r#""api":{{"keys_file":{:?}}},"channels":[{{"pattern":"news","subscribe":["authenticated"],"publish":["key:cli"]}}]"#,
        keys.display().to_string()
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let (cert, tls_key, ca) = (
        format!("{root}/certs/localhost.pem"),
        format!("{root}/certs/localhost.key"),
        format!("{root}/certs/ca.pem"),
    );
    for tls in [false, true] {
        let args: Vec<&str> = if tls {
            vec!["--tls-cert", &cert, "--tls-key", &tls_key]
        } else {
            vec![]
        };
        let server = Server::start_with_config(&config_with(&f, &extra), &args);
        let port = server.addr().port();
        let url = if tls {
            format!("https://localhost:{port}")
        } else {
            format!("http://127.0.0.1:{port}")
        };
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["publish", "news", r#"{"headline":"hi"}"#, "--url", &url])
            .env("PALISADE_API_KEY", &key);
        if tls {
            cmd.args(["--cacert", &ca]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"delivered\":0}\n");
        let wrong = std::process::Command::new(BIN)
            .args(["publish", "news", "1", "--url", &url])
            .args(if tls {
                vec!["--cacert", ca.as_str()]
            } else {
                vec![]
            })
            .env("PALISADE_API_KEY", "pk_wrong")
            .output()
            .unwrap();
        assert_eq!(wrong.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&wrong.stderr),
            "palisade: publish: 401 {\"error\":\"invalid_api_key\"}\n"
        );
        let _ = server;
    }
}

/// `palisade_publications_dropped_total` from `/metrics`.
fn dropped_total(addr: SocketAddr) -> u64 {
    let (_, _, body) = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let line = body
        .lines()
        .find(|l| l.starts_with("palisade_publications_dropped_total "))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A subscriber that does not read: publications that would pass its
/// `limits.max_outbound_bytes` are dropped for it and counted; once it
/// reads, the next publication comes after an `error` event `dropped`
/// with the number lost.
#[test]
fn a_slow_subscriber_loses_publications_and_is_told() {
    let f = Fixture::new(10_000);
    let keys = f.dir.join("keys.json");
    let key = new_key(&keys, "bulk");
    let extra = format!(
        r#""api":{{"keys_file":{:?}}},"limits":{{"max_outbound_bytes":65536}},"channels":[{{"pattern":"bulk","subscribe":["authenticated"],"publish":["key:bulk"]}}]"#,
        keys.display().to_string()
    );
    let server = Server::start_with_config(&config_with(&f, &extra), &[]);
    let addr = server.addr();
    let token = token_for(addr, "alice", ALICE_PW);
    // A small receive buffer, so that the server's queue fills soon.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (status, _, rest) = handshake(
        &mut stream,
        "/ws",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    let mut s = Client::new(stream, rest);
    expect_text(&mut s, &user_authorized("alice"));
    send(&mut s, r#"{"event":"subscribe","data":{"channel":"bulk"}}"#);
    expect_text(
        &mut s,
        r#"{"event":"subscribed","data":{"channel":"bulk"}}"#,
    );

    let big = format!(r#"{{"channel":"bulk","data":"{}"}}"#, "x".repeat(60_000));
    let mut published = 0;
    while published < 400 && (published % 10 != 0 || published == 0 || dropped_total(addr) < 3) {
        let (status, answer) = publish(addr, Some(&key), "application/json", &big);
        assert_eq!(
            (status.as_str(), answer.as_str()),
            ("HTTP/1.1 200 OK", r#"{"delivered":1}"#)
        );
        published += 1;
    }
    let dropped = dropped_total(addr);
    assert!(dropped >= 3, "{dropped} dropped of {published}");
    // Read everything queued: the publications that fit, and a `dropped`
    // error wherever the server had room again after losing some.
    s.stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let (mut got, mut told) = (0, 0);
    while let Ok(f) = read_frame(&mut s) {
        let text = String::from_utf8_lossy(&f.payload).into_owned();
        if text.starts_with(r#"{"event":"publication""#) {
            got += 1;
        } else {
            told += lost_in(&text);
        }
    }
    assert_eq!(
        got + dropped,
        published,
        "{got} received, {dropped} dropped"
    );
    // The next publication comes after the word about the rest.
    s.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (status, _) = publish(
        addr,
        Some(&key),
        "application/json",
        r#"{"channel":"bulk","data":"after"}"#,
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    if told < dropped {
        let f = read_frame(&mut s).unwrap();
        told += lost_in(&String::from_utf8_lossy(&f.payload));
    }
    assert_eq!(told, dropped);
    expect_text(
        &mut s,
        r#"{"event":"publication","data":{"channel":"bulk","data":"after"}}"#,
    );
}

/// The number an `error` event `dropped` reports.
fn lost_in(text: &str) -> u64 {
    let rest = text
        .strip_prefix(r#"{"event":"error","data":{"code":"dropped","message":""#)
        .unwrap_or_else(|| panic!("not a dropped error: {text}"));
    let (n, tail) = rest.split_once(' ').unwrap();
    assert_eq!(
        tail,
        r#"publications were dropped: this connection reads too slowly"}}"#
    );
    n.parse().unwrap()
}
