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
