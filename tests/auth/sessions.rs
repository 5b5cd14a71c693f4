//! Sessions (SPEC.md §5): `POST /logout` revokes the token and closes its
//! connections `1008` `logged out`; removing a user or changing a password
//! (then `SIGHUP`) closes that user's connections `1008` `credentials
//! revoked` and refuses every older token; `GET /session` tells a page
//! whether it has a session; a token with less than a second left is
//! refused at the handshake. Over real sockets, against the real binary.

use super::*;

/// One request on a fresh connection; the whole response (read to EOF:
/// the request says `Connection: close`).
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    let (status, headers, body) = http(addr, &raw);
    Response {
        status,
        headers,
        body,
    }
}

struct Response {
    status: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

const SAME_ORIGIN: (&str, &str) = ("Origin", "http://localhost");
const CLEARED: &str = "palisade_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0";

fn cookie(token: &str) -> String {
    format!("palisade_token={token}")
}

/// The server closes `c` with `1008` and `reason`; the client answers the
/// close and the server ends TCP.
fn expect_revoked(c: &mut Client, reason: &str) {
    let f = read_frame(c).unwrap();
    assert_eq!(f.opcode, op::CLOSE, "{f:?}");
    assert_eq!(f.close_code(), Some(1008));
    assert_eq!(String::from_utf8_lossy(&f.payload[2..]), reason);
    c.write_all(&close_frame(1008, b"")).unwrap();
    expect_eof(c, Duration::from_secs(2));
}

fn connected(addr: SocketAddr, user: &str, headers: &[(&str, &str)]) -> Client {
    let mut c = open_with(addr, "/ws", headers);
    expect_frame(&mut c, op::TEXT, user_authorized(user).as_bytes());
    c
}

#[test]
fn logout_revokes_the_token_and_closes_its_connections() {
    let f = Fixture::new(10_000);
    let server = f.start("", 1000);
    let addr = server.addr();
    let t1 = token_for(addr, "alice", ALICE_PW);
    let t2 = token_for(addr, "alice", ALICE_PW);
    let bearer1 = format!("Bearer {t1}");
    let mut a1 = connected(addr, "alice", &[("Authorization", &bearer1)]);
    let mut a1_cookie = connected(addr, "alice", &[("Cookie", &cookie(&t1))]);
    let mut a2 = connected(addr, "alice", &[("Authorization", &format!("Bearer {t2}"))]);

    // Refusals first: none of them revokes anything.
    let r = request(addr, "GET", "/logout", &[("Cookie", &cookie(&t1))]);
    assert_eq!(r.status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(r.header("Allow"), Some("POST"));
    let r = request(
        addr,
        "POST",
        "/logout",
        &[("Cookie", &cookie(&t1)), ("Origin", "http://evil.example")],
    );
    assert_eq!(r.status, "HTTP/1.1 403 Forbidden", "{}", r.body);
    assert_eq!(r.header("Set-Cookie"), None);
    let r = request(addr, "POST", "/logout", &[SAME_ORIGIN]);
    assert_eq!(r.status, "HTTP/1.1 401 Unauthorized");
    assert_eq!(r.body, r#"{"error":"missing"}"#);
    assert_eq!(r.header("Set-Cookie"), Some(CLEARED));
    expect_hero_round_trip(&mut a1);

    // The log-out: the cookie goes, the token is revoked.
    let r = request(
        addr,
        "POST",
        "/logout",
        &[SAME_ORIGIN, ("Cookie", &cookie(&t1))],
    );
    assert_eq!(r.status, "HTTP/1.1 200 OK", "{}", r.body);
    assert_eq!(r.body, r#"{"logged_out":true,"username":"alice"}"#);
    assert_eq!(r.header("Set-Cookie"), Some(CLEARED));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    // Both connections opened with that token are closed, the other
    // session of the same user is not.
    for c in [&mut a1, &mut a1_cookie] {
        expect_revoked(c, "logged out");
    }
    expect_hero_round_trip(&mut a2);
    expect_401(&server, "/ws", &[("Authorization", &bearer1)], "revoked");
    expect_401(&server, "/ws", &[("Cookie", &cookie(&t1))], "revoked");
    assert!(
        server.wait_for_log("reason=\"logged out\"", Duration::from_secs(5)),
        "{:?}",
        server.logs()
    );
    assert!(server.wait_for_log("logged out peer=", Duration::from_secs(5)));
    // Logging out again is no error; a non-browser client sends no Origin.
    let r = request(addr, "POST", "/logout", &[("Authorization", &bearer1)]);
    assert_eq!(r.status, "HTTP/1.1 200 OK", "{}", r.body);
    let r = request(
        addr,
        "POST",
        "/logout",
        &[("Authorization", "Bearer x.y.z")],
    );
    assert_eq!(
        (r.status.as_str(), r.body.as_str()),
        ("HTTP/1.1 401 Unauthorized", r#"{"error":"malformed"}"#)
    );
    close_normally(&mut a2);
    let logs = server.logs().join("\n");
    assert!(
        !logs.contains(&t1) && !logs.contains(&t2),
        "a token reached the log"
    );
}

/// `palisade_worker_connections_open` of each loop, from `/metrics` (the
/// request's own connection counts too).
fn per_loop(addr: SocketAddr) -> Vec<u64> {
    let r = request(addr, "GET", "/metrics", &[]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    (0..2)
        .map(|i| {
            let name = format!("palisade_worker_connections_open{{worker=\"{i}\"}} ");
            let line = r.body.lines().find(|l| l.starts_with(&name)).unwrap();
            line[name.len()..].parse().unwrap()
        })
        .collect()
}

/// With two event loops a user's connections sit on both: a log-out and a
/// users reload close them on each.
#[test]
fn a_logout_and_a_reload_close_connections_on_every_event_loop() {
    let f = Fixture::new(10_000);
    let server = Server::start_with_config(&f.config("", 1000), &["--workers", "2"]);
    let addr = server.addr();
    let alice = token_for(addr, "alice", ALICE_PW);
    let bob = token_for(addr, "bob", BOB_PW);
    let bearer = |t: &str| format!("Bearer {t}");
    let mut a: Vec<Client> = (0..16)
        .map(|_| connected(addr, "alice", &[("Authorization", &bearer(&alice))]))
        .collect();
    let mut b: Vec<Client> = (0..16)
        .map(|_| connected(addr, "bob", &[("Authorization", &bearer(&bob))]))
        .collect();
    let loops = per_loop(addr);
    assert!(loops.iter().all(|&n| n >= 2), "{loops:?}");
    assert_eq!(loops.iter().sum::<u64>(), 33, "{loops:?}");

    let r = request(
        addr,
        "POST",
        "/logout",
        &[("Authorization", &bearer(&alice))],
    );
    assert_eq!(r.status, "HTTP/1.1 200 OK", "{}", r.body);
    for c in &mut a {
        expect_revoked(c, "logged out");
    }
    expect_hero_round_trip(&mut b[0]);
    expect_401(
        &server,
        "/ws",
        &[("Authorization", &bearer(&alice))],
        "revoked",
    );

    // bob's password changes; the loop that takes SIGHUP tells the other.
    f.write_users(
        &[("alice", ALICE_PW), ("bob", "bob-new-Zq8Rt3Vm6k")],
        10_000,
    );
    hup(server.pid());
    for c in &mut b {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        expect_revoked(c, "credentials revoked");
    }
    assert!(server.wait_for_log("credentials revoked user=bob", Duration::from_secs(5)));
}

#[test]
fn removing_a_user_closes_their_connections_within_a_second() {
    let f = Fixture::new(10_000);
    let server = f.start("", 1000);
    let addr = server.addr();
    let alice = token_for(addr, "alice", ALICE_PW);
    let bob = token_for(addr, "bob", BOB_PW);
    let mut a = connected(
        addr,
        "alice",
        &[("Authorization", &format!("Bearer {alice}"))],
    );
    let mut b = connected(addr, "bob", &[("Authorization", &format!("Bearer {bob}"))]);
    let file = f.users_file();
    let out = std::process::Command::new(BIN)
        .args([
            "users",
            "remove",
            "alice",
            "--users-file",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    hup(server.pid());
    a.stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    expect_revoked(&mut a, "credentials revoked");
    let took = t.elapsed();
    eprintln!("alice's connection closed {took:?} after SIGHUP");
    assert!(took < Duration::from_secs(1), "{took:?}");
    expect_hero_round_trip(&mut b);
    assert!(server.wait_for_log("credentials revoked user=alice", Duration::from_secs(5)));
    assert!(server.wait_for_log("user_count=1 revoked_users=1", Duration::from_secs(5)));
    expect_401(&server, &format!("/ws?token={alice}"), &[], "revoked");
    close_normally(&mut b);
}

#[test]
fn a_password_change_refuses_older_tokens_and_accepts_a_new_login() {
    let f = Fixture::new(10_000);
    let server = f.start("", 1000);
    let addr = server.addr();
    let old = token_for(addr, "alice", ALICE_PW);
    let bob = token_for(addr, "bob", BOB_PW);
    let mut a = connected(
        addr,
        "alice",
        &[("Authorization", &format!("Bearer {old}"))],
    );
    let file = f.users_file();
    let mut child = std::process::Command::new(BIN)
        .args([
            "users",
            "passwd",
            "alice",
            "--iterations",
            "10000",
            "--users-file",
        ])
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a new password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("changed the password of alice in "));
    hup(server.pid());
    expect_revoked(&mut a, "credentials revoked");
    expect_401(&server, &format!("/ws?token={old}"), &[], "revoked");
    assert_eq!(
        login(addr, "alice", ALICE_PW).0,
        "HTTP/1.1 401 Unauthorized"
    );
    let new = token_for(addr, "alice", "a new password");
    let mut a = connected(
        addr,
        "alice",
        &[("Authorization", &format!("Bearer {new}"))],
    );
    expect_hero_round_trip(&mut a);
    close_normally(&mut a);
    // bob's password did not change: his token still opens a connection.
    let mut b = connected(addr, "bob", &[("Authorization", &format!("Bearer {bob}"))]);
    close_normally(&mut b);
}

#[test]
fn session_says_whether_the_request_carries_a_session() {
    let f = Fixture::new(10_000);
    let server = f.start("", 1000);
    let addr = server.addr();
    let token = token_for(addr, "alice", ALICE_PW);
    let r = request(addr, "GET", "/session", &[]);
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(r.body, r#"{"auth_required":true,"authenticated":false}"#);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let r = request(addr, "GET", "/session", &[("Cookie", &cookie(&token))]);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["authenticated"], true);
    assert_eq!(v["username"], "alice");
    let exp = v["expires_at"].as_u64().unwrap();
    assert!(exp > now() && exp <= now() + 3600, "{exp}");
    let r = request(addr, "POST", "/session", &[]);
    assert_eq!(r.status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    // Keep-alive: a page asks on every load; two answers on one connection.
    let mut s = connect(addr);
    let ask = "GET /session HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for _ in 0..2 {
        s.write_all(ask.as_bytes()).unwrap();
        let (status, h, body) = read_response_head(&mut s);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(header(&h, "Connection"), None);
        let len: usize = header(&h, "Content-Length").unwrap().parse().unwrap();
        let mut body = body;
        while body.len() < len {
            let mut b = [0u8; 256];
            let n = s.read(&mut b).unwrap();
            assert!(n > 0);
            body.extend_from_slice(&b[..n]);
        }
        assert_eq!(
            &body[..len],
            br#"{"auth_required":true,"authenticated":false}"#
        );
    }
    // After a log-out the same cookie is no session.
    let r = request(
        addr,
        "POST",
        "/logout",
        &[SAME_ORIGIN, ("Cookie", &cookie(&token))],
    );
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    let r = request(addr, "GET", "/session", &[("Cookie", &cookie(&token))]);
    assert_eq!(r.body, r#"{"auth_required":true,"authenticated":false}"#);
}

#[test]
fn a_token_with_less_than_a_second_left_is_refused_at_the_handshake() {
    let f = Fixture::new(10_000);
    let server = f.start(r#""leeway_s":0"#, 1000);
    let fp = f.fp("alice");
    // exp one second after now: less than a second of it is left.
    let ending = signer().issue("alice", &fp, now(), 1);
    expect_401(&server, &format!("/ws?token={ending}"), &[], "expired");
    let fine = signer().issue("alice", &fp, now(), 5);
    connected(
        server.addr(),
        "alice",
        &[("Authorization", &format!("Bearer {fine}"))],
    );
}

#[test]
fn the_revocation_table_stays_bounded_under_100000_logouts() {
    const LOGOUTS: usize = 100_000;
    const THREADS: usize = 4;
    const BATCH: usize = 200;
    let _serial = heavy();
    let f = Fixture::new(10_000);
    let server = f.start("", 1000);
    let addr = server.addr();
    let fp = f.fp("alice");
    let issued = now();
    let tokens: Vec<String> = (0..LOGOUTS)
        .map(|_| signer().issue("alice", &fp, issued, 3600))
        .collect();
    let rss_before = server.rss_kib();
    let started = Instant::now();
    // Pipelined log-outs on keep-alive connections, a batch per write.
    thread::scope(|scope| {
        for part in tokens.chunks(LOGOUTS / THREADS) {
            scope.spawn(move || {
                let mut s = connect(addr);
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                for batch in part.chunks(BATCH) {
                    let mut raw = String::new();
                    for t in batch {
                        raw.push_str(&format!(
                            "POST /logout HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n\r\n"
                        ));
                    }
                    s.write_all(raw.as_bytes()).unwrap();
                    let mut seen = 0;
                    let mut buf = Vec::new();
                    while seen < batch.len() {
                        let mut b = [0u8; 64 * 1024];
                        let n = s.read(&mut b).unwrap();
                        assert!(n > 0, "the server closed the connection");
                        buf.extend_from_slice(&b[..n]);
                        seen = count(&buf, b"HTTP/1.1 200 OK\r\n");
                    }
                    assert_eq!(count(&buf, b"HTTP/1.1 "), batch.len());
                }
            });
        }
    });
    let took = started.elapsed();
    let rss_after = server.rss_kib();
    assert!(server.wait_for_log(
        "revoked_tokens=10000 revoked_users=1",
        Duration::from_secs(10)
    ));
    assert!(server.wait_for_log(
        "revocation table full: every earlier token of the user is revoked",
        Duration::from_secs(5)
    ));
    let last = server
        .logs()
        .into_iter()
        .rfind(|l| l.contains("logged out peer="))
        .unwrap();
    eprintln!(
        "{LOGOUTS} log-outs in {took:?}; table: {}; server RSS {rss_before} KiB -> {rss_after} KiB",
        last.split(" user=alice ").nth(1).unwrap_or(&last)
    );
    // 10,000 entries of about 100 bytes: well under 8 MiB more.
    assert!(
        rss_after < rss_before + 8 * 1024,
        "{rss_before} -> {rss_after}"
    );
    // Every one of them is refused, including those logged out after the
    // table was full (all of alice's tokens up to then are revoked).
    for t in [&tokens[0], &tokens[LOGOUTS - 1]] {
        expect_401(&server, &format!("/ws?token={t}"), &[], "revoked");
    }
    // A token issued after that second still opens a connection.
    thread::sleep(Duration::from_millis(1100));
    let later = signer().issue("alice", &fp, now(), 600);
    connected(
        addr,
        "alice",
        &[("Authorization", &format!("Bearer {later}"))],
    );
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}
