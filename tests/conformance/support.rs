//! Case runner and scripted exchanges for the conformance suite.

use std::io::Write;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::common::*;

/// The config file of every conformance server. Authentication is turned
/// off and the rate and per-IP quotas are raised far above what the suite
/// needs, so that only the protocol decides the outcome; `extra_limits` are
/// more `"limits"` members (JSON, without braces).
///
/// Settings the binary does not know (`--print-config` does not list them)
/// are left out, since unknown settings are a start-up error.
pub fn conformance_config(extra_limits: &str) -> String {
    let known = std::process::Command::new(BIN)
        .arg("--print-config")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let has = |key: &str| known.contains(&format!("\"{key}\""));
    let mut sections = Vec::new();
    if has("auth") && has("mode") {
        sections.push(r#""auth": {"mode": "none"}"#.to_string());
    }
    let mut rate = Vec::new();
    for key in ["handshakes_per_ip_per_s", "messages_per_conn_per_s"] {
        if has(key) {
            rate.push(format!("\"{key}\": 1000000"));
        }
    }
    if !rate.is_empty() {
        sections.push(format!("\"rate\": {{{}}}", rate.join(", ")));
    }
    let mut limits = vec![r#""close_timeout_ms": 1000"#.to_string()];
    if has("max_connections_per_ip") {
        limits.push(r#""max_connections_per_ip": 100000"#.to_string());
    }
    if !extra_limits.is_empty() {
        limits.push(extra_limits.to_string());
    }
    sections.push(format!("\"limits\": {{{}}}", limits.join(", ")));
    format!("{{{}}}", sections.join(", "))
}

/// An echo server with [`conformance_config`] and extra command-line flags.
pub fn echo_server(extra_args: &[&str]) -> Server {
    echo_server_with(&conformance_config(""), extra_args)
}

/// An echo server with a given config file and extra flags.
pub fn echo_server_with(config: &str, extra_args: &[&str]) -> Server {
    let mut args = vec!["--app", "echo"];
    args.extend_from_slice(extra_args);
    Server::start_with_config(config, &args)
}

/// Runs the cases of one group against one server, keeps going after a
/// failure, and fails at the end with the list of failed cases.
pub struct Group {
    name: String,
    addr: SocketAddr,
    cases: usize,
    failures: Vec<String>,
    started: Instant,
}

impl Group {
    pub fn new(name: &str, server: &Server) -> Group {
        Group {
            name: name.to_string(),
            addr: server.addr(),
            cases: 0,
            failures: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Runs one case; a panic inside it is recorded as that case's failure.
    pub fn case(&mut self, id: impl Into<String>, f: impl FnOnce(SocketAddr)) {
        let id = id.into();
        self.cases += 1;
        let addr = self.addr;
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(addr))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            self.failures.push(format!("{id}: {msg}"));
        }
    }

    /// A scripted case run once per sending mode (ids get a mode suffix).
    pub fn script(&mut self, id: &str, modes: &[Mode], frames: Vec<Vec<u8>>, exp: Vec<Exp>) {
        for &m in modes {
            self.case(format!("{id} [{}]", m.name()), |a| run(a, &frames, &exp, m));
        }
    }

    /// Prints the summary and fails the test if any case failed.
    pub fn finish(self) {
        eprintln!(
            "group {}: {} cases, {} failed, {:.1?}",
            self.name,
            self.cases,
            self.failures.len(),
            self.started.elapsed()
        );
        if !self.failures.is_empty() {
            let shown: Vec<&String> = self.failures.iter().take(60).collect();
            let mut report = format!(
                "group {}: {} of {} cases failed:\n",
                self.name,
                self.failures.len(),
                self.cases
            );
            for f in shown {
                report.push_str("  - ");
                report.push_str(f);
                report.push('\n');
            }
            if self.failures.len() > 60 {
                report.push_str(&format!("  … and {} more\n", self.failures.len() - 60));
            }
            panic!("{report}");
        }
    }
}

/// How the frames of a script are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// All frames in one write.
    Bulk,
    /// One write per frame with a pause after each (the server sees frame
    /// boundaries as read boundaries).
    FrameWise,
    /// One write per byte (the server sees every byte as its own read).
    OctetWise,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bulk => "bulk",
            Mode::FrameWise => "frame-wise",
            Mode::OctetWise => "octet-wise",
        }
    }
}

pub const ALL_MODES: &[Mode] = &[Mode::Bulk, Mode::FrameWise, Mode::OctetWise];
pub const BULK: &[Mode] = &[Mode::Bulk];

/// What the script expects back, in order.
#[derive(Clone, Debug)]
pub enum Exp {
    /// A final unfragmented frame with this opcode and exactly this payload.
    Frame(u8, Vec<u8>),
    /// A close frame with exactly this code, then the TCP close.
    Close(u16),
}

pub fn echo_text(p: impl AsRef<[u8]>) -> Exp {
    Exp::Frame(op::TEXT, p.as_ref().to_vec())
}

pub fn echo_binary(p: impl AsRef<[u8]>) -> Exp {
    Exp::Frame(op::BINARY, p.as_ref().to_vec())
}

pub fn pong_of(p: impl AsRef<[u8]>) -> Exp {
    Exp::Frame(op::PONG, p.as_ref().to_vec())
}

/// Sends `frames` in `mode` on a new connection, checks `exp` in order, and
/// when `exp` does not end in a close, finishes with a normal closing
/// handshake (which also proves nothing else was sent).
///
/// Write errors are not failures by themselves (a server may stop reading
/// once it has failed the connection); the expectations decide.
pub fn run(addr: SocketAddr, frames: &[Vec<u8>], exp: &[Exp], mode: Mode) {
    let mut c = open(addr);
    send(&mut c, frames, mode);
    check(&mut c, exp);
}

/// Writes `frames` on `c` in `mode`.
pub fn send(c: &mut Client, frames: &[Vec<u8>], mode: Mode) {
    let r = match mode {
        Mode::Bulk => c.write_all(&frames.concat()).and_then(|_| c.flush()),
        Mode::FrameWise => send_frames(c, frames, Duration::from_millis(5)),
        Mode::OctetWise => {
            let all = frames.concat();
            let pause = if all.len() <= 2048 {
                Duration::from_micros(200)
            } else {
                Duration::ZERO
            };
            send_chopped(c, &all, 1, pause)
        }
    };
    if let Err(e) = r {
        eprintln!("write failed ({e}); checking what the server sent");
    }
}

/// Checks `exp` on `c` (see [`run`]).
pub fn check(c: &mut Client, exp: &[Exp]) {
    for e in exp {
        match e {
            Exp::Frame(opcode, payload) => expect_frame(c, *opcode, payload),
            Exp::Close(code) => {
                expect_close(c, *code);
                return;
            }
        }
    }
    close_normally(c);
}

/// Expects a close with `code` while the rest of a frame or message is
/// withheld: the server must decide without it, so the close has to arrive
/// promptly (bounded at 2 s to stay robust on a loaded machine).
pub fn expect_close_soon(c: &mut Client, code: u16) {
    let bound = Duration::from_secs(2);
    c.stream.set_read_timeout(Some(bound)).unwrap();
    let t = Instant::now();
    let f = read_frame(c).unwrap_or_else(|e| panic!("expected close {code} within {bound:?}: {e}"));
    assert!(t.elapsed() < bound, "close took {:?}", t.elapsed());
    c.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    assert_eq!(f.opcode, op::CLOSE, "expected close {code}, got {f:?}");
    assert!(
        f.fin && f.rsv == 0 && f.payload.len() <= 125,
        "malformed close frame {f:?}"
    );
    assert_eq!(f.close_code(), Some(code), "wrong close code: {f:?}");
    assert!(
        std::str::from_utf8(&f.payload[2..]).is_ok(),
        "close reason is not UTF-8: {f:?}"
    );
    expect_eof(c, Duration::from_secs(2));
}

/// Valid UTF-8 text of exactly `n` bytes mixing 1- to 4-byte code points.
pub fn utf8_text(n: usize) -> Vec<u8> {
    const PAT: &str = "Hello-µ@ßöäüàá-κόσμε-€-𤭢-\u{10FFFF}-\u{FFFD}*";
    let mut out = String::with_capacity(n);
    'outer: loop {
        for ch in PAT.chars() {
            if out.len() + ch.len_utf8() > n {
                break 'outer;
            }
            out.push(ch);
        }
    }
    while out.len() < n {
        out.push('*');
    }
    out.into_bytes()
}

/// Binary payload of `n` bytes covering every byte value.
pub fn bin_data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + 7) as u8).collect()
}

/// Splits `payload` into masked frames of at most `size` bytes: the first
/// with `opcode`, the rest continuations, the last final.
pub fn fragments(opcode: u8, payload: &[u8], size: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(size).collect()
    };
    let last = chunks.len() - 1;
    for (i, c) in chunks.iter().enumerate() {
        let opc = if i == 0 { opcode } else { op::CONT };
        out.push(fragment(opc, i == last, c));
    }
    out
}
