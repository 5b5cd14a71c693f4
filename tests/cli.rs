//! The command line: help, version, print-config, and one-line errors with exit code 2.

mod common;

use std::process::Command;

use common::BIN;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary with `input` on stdin: (exit code, stdout, stderr).
fn run_with_stdin(args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command may exit before it reads stdin (e.g. a refused `users add`).
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("stdin: {e}"),
        _ => {}
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_version_and_print_config() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--max-message-bytes") && out.contains("--static-dir"));
    let (code, out, _) = run(&["--version"]);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            format!("palisade {}", env!("CARGO_PKG_VERSION")).as_str()
        )
    );
    let (code, out, _) = run(&["--print-config", "--max-fragments", "9"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["limits"]["max_fragments"], 9);
    assert_eq!(v["limits"]["max_frame_bytes"], 65536);
    assert_eq!(v["listen"], "127.0.0.1:8080");
    assert_eq!(v["ws"]["path"], "/ws");
}

#[test]
fn invalid_settings_are_one_line_errors_with_exit_code_2() {
    let dir = std::env::temp_dir().join(format!("palisade-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, r#"{"limits":{"max_frame_bytez":1}}"#).unwrap();
    let bad_heroes = dir.join("h.json");
    std::fs::write(&bad_heroes, r#"{"a":"A","a":"B"}"#).unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--max-frame-bytes", "x"],
            "--max-frame-bytes: \"x\" is not a non-negative integer".into(),
        ),
        (
            vec!["--max-fragments", "0"],
            "limits.max_fragments: 0 is out of range".into(),
        ),
        (
            vec!["--listen", "nowhere"],
            "listen: \"nowhere\" is not an address".into(),
        ),
        (
            vec!["--app", "chat"],
            "--app: \"chat\" is not hero or echo".into(),
        ),
        (
            vec!["--config", cfg.to_str().unwrap()],
            "unknown setting `limits.max_frame_bytez`".into(),
        ),
        (
            vec!["--heroes", bad_heroes.to_str().unwrap()],
            "appears twice".into(),
        ),
        (
            vec!["--static-dir", "/nonexistent/palisade"],
            "static dir /nonexistent/palisade".into(),
        ),
        (vec!["--frobnicate"], "frobnicate".into()),
    ];
    for (args, needle) in cases {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("palisade: ") && first.contains(&needle),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hash_password_reads_stdin_and_prints_a_phc_hash() {
    let (code, phc, _) = run_with_stdin(
        &["hash-password", "--iterations", "10000"],
        b"s3cret pass\n",
    );
    assert_eq!(code, Some(0));
    let phc = phc.trim_end();
    assert!(phc.starts_with("$pbkdf2-sha256$i=10000$"), "{phc}");
    let hash = palisade::auth::PasswordHash::parse(phc).unwrap();
    assert!(
        hash.verify(b"s3cret pass"),
        "the trailing newline is not part of the password"
    );
    assert!(!hash.verify(b"s3cret pass\n"));
    let (code, _, err) = run(&["hash-password", "--iterations", "5"]);
    assert_eq!(code, 2);
    assert!(err.contains("--iterations: 5 is out of range"), "{err}");
}

/// `palisade users` with the password piped on stdin (one line).
fn users(file: &std::path::Path, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut all: Vec<&str> = vec!["users"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--users-file", file.to_str().unwrap()]);
    if args[0] == "add" || args[0] == "passwd" {
        all.extend_from_slice(&["--iterations", "10000"]);
    }
    run_with_stdin(&all, stdin.as_bytes())
}

const RELOAD_HINT: &str = "a running server reads the users file again on SIGHUP (kill -HUP <pid>, or systemctl reload palisade)\n";

#[test]
fn users_add_passwd_remove_list_through_a_pipe() {
    let dir = std::env::temp_dir().join(format!("palisade-users-add-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.json");
    let shown = file.display().to_string();
    assert_eq!(
        users(&file, &["add", "alice"], "pw-a\n"),
        (
            Some(0),
            format!("added user alice to {shown}\n{RELOAD_HINT}"),
            String::new()
        )
    );
    // One line is the password: what follows it is not.
    assert_eq!(users(&file, &["add", "bob"], "pw-b\nignored\n").0, Some(0));
    // add does not replace; passwd does.
    let (code, out, err) = users(&file, &["add", "alice"], "pw-x\n");
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        err,
        format!(
            "palisade: users: user alice is already in {shown}; set a new password with: palisade users passwd alice\n"
        )
    );
    let (code, out, _) = users(&file, &["passwd", "alice"], "pw-a2\r\n");
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("changed the password of alice in "),
        "{out}"
    );
    assert!(out.ends_with(RELOAD_HINT), "{out}");
    let (code, _, err) = users(&file, &["passwd", "carol"], "x\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("no user carol in"), "{err}");
    let (code, _, err) = users(&file, &["add", "carol"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("no password on stdin"), "{err}");
    let loaded = palisade::auth::Users::load(&file).unwrap();
    assert_eq!(loaded.len(), 2);
    assert!(loaded.get("alice").unwrap().verify(b"pw-a2"));
    assert!(loaded.get("bob").unwrap().verify(b"pw-b"));
    // list: names only, in file order, never a hash.
    let (code, out, err) = users(&file, &["list"], "");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(0), "alice\nbob\n", "")
    );
    let (code, out, _) = users(&file, &["remove", "bob"], "");
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with(&format!("removed user bob from {shown};")),
        "{out}"
    );
    assert_eq!(users(&file, &["list"], "").1, "alice\n");
    let (code, _, err) = users(&file, &["remove", "bob"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("no user bob in"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("pw-a2") && !text.contains("pw-b"),
        "no password in the file"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file left behind"
    );
    // The file named through --config.
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auth":{{"users_file":{}}}}}"#,
            serde_json::json!(shown)
        ),
    )
    .unwrap();
    let (code, out, _) = run_with_stdin(
        &["users", "list", "--config", config.to_str().unwrap()],
        b"",
    );
    assert_eq!((code, out.as_str()), (Some(0), "alice\n"));
    // Usage errors are exit 2.
    let (code, _, err) = users(&file, &["add", "bad name"], "x\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("username \"bad name\""), "{err}");
    let (code, _, err) = run_with_stdin(&["users", "frobnicate", "x"], b"");
    assert_eq!(code, Some(2));
    assert!(err.contains("usage: palisade users add NAME"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_auth_files_stop_the_start_with_exit_code_2() {
    let dir = std::env::temp_dir().join(format!("palisade-cli-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.json");
    std::fs::write(
        &users,
        "{\n  \"users\": [\n    {\"username\": \"alice\", \"password_hash\": \"$md5$nope\"}\n  ]\n}\n",
    )
    .unwrap();
    let u = users.to_str().unwrap();
    let (code, _, err) = run(&["--listen", "127.0.0.1:0", "--users-file", u]);
    assert_eq!(code, 2, "{err}");
    let line = err.lines().next().unwrap_or("");
    assert!(
        line.starts_with("palisade: users file ")
            && line.contains("line 3")
            && line.contains("password_hash"),
        "{err}"
    );
    let secret = dir.join("short.secret");
    std::fs::write(&secret, "too short").unwrap();
    let config = dir.join("c.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auth":{{"jwt_secret_file":{:?}}}}}"#,
            secret.to_str().unwrap()
        ),
    )
    .unwrap();
    let (code, _, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("palisade: auth.jwt_secret_file ") && err.contains("at least 32 bytes"),
        "{err}"
    );
    let (code, _, err) = run(&["--auth-mode", "maybe"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("palisade: --auth-mode: \"maybe\" is not required or none"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_taken_port_is_named_and_no_demo_password_is_shown() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out, err) = run(&["--listen", &addr]);
    assert_ne!(code, 0, "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("palisade: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        line,
        format!(
            "palisade: cannot listen: listen {addr}: Address already in use (os error 98) (another process listens there: stop it, or choose another port)"
        )
    );
    // Bound first, so nothing was printed for a server that never ran.
    assert!(
        !out.contains("password") && !err.contains("password"),
        "{out}{err}"
    );
}

#[test]
fn json_logs_write_numbers_as_numbers_and_the_demo_line_as_json() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let listening = v["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on"));
        seen.push(v);
        if listening {
            break;
        }
    }
    // SIGTERM: the shutdown line carries numbers.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    for line in lines {
        seen.push(serde_json::from_str(&line.unwrap()).unwrap());
    }
    let _ = child.wait();
    let demo = seen
        .iter()
        .find(|v| v["msg"] == "demo login")
        .expect("a demo login line");
    assert_eq!(demo["username"], "demo");
    assert_eq!(demo["password"].as_str().map(str::len), Some(24));
    let stop = seen
        .iter()
        .find(|v| v["msg"] == "shutting down")
        .expect("a shutdown line");
    assert_eq!(stop["grace_ms"], 5000);
    assert_eq!(stop["connections"], 0);
}
