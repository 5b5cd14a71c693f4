#![allow(dead_code)]
//! Shared harness for the integration tests.
//!
//! * [`Server`] runs the real `palisade` binary on an ephemeral loopback port,
//!   collects its output lines and kills it when dropped.
//! * A raw client written from RFC 6455 alone (it shares no code with the
//!   server): [`connect`], [`handshake`], [`open`], [`frame`], [`masked`],
//!   [`read_frame`], [`expect_close`] and helpers that send bytes in pieces.
//!
//! Every read is bounded: sockets get a 5 s read timeout, and the helpers that
//! wait for something take an explicit deadline.
//!
//! Only `std` is used.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The server binary built by Cargo for this package.
pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// The sample key of RFC 6455 §1.3 and the accept value it must produce.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The masking key used by [`masked`] and the frame builders below.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Read timeout set on every client socket.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Write timeout set on every client socket (large messages take a while).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Server::start`] waits for the `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame payload [`read_frame`] accepts (protects the test process).
pub const MAX_READ_PAYLOAD: u64 = 64 << 20;

/// Opcodes (RFC 6455 §5.2).
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

// ---------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------

/// A running `palisade` process.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    config: Option<PathBuf>,
}

impl Server {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0` unless the
    /// args already name a listen address) and waits for it to listen.
    pub fn start(args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Server::spawn(args, None)
    }

    /// Writes `json` to a temporary config file, then starts the binary with
    /// `--config FILE` followed by `args`.
    pub fn start_with_config(json: &str, args: &[&str]) -> Server {
        let path = write_temp_config(json);
        let mut all = vec!["--config".to_string(), path.display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        Server::spawn(all, Some(path))
    }

    /// Like [`Server::start_with_config`], with the binary run by a
    /// wrapper command that execs it (e.g. `["prlimit", "--nofile=256:256"]`),
    /// so the process id is still the server's.
    pub fn start_wrapped(wrapper: &[&str], json: &str, args: &[&str]) -> Server {
        let path = write_temp_config(json);
        let mut all = vec!["--config".to_string(), path.display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        Server::spawn_via(&wrapper, all, Some(path))
    }

    fn spawn(args: Vec<String>, config: Option<PathBuf>) -> Server {
        Server::spawn_via(&[], args, config)
    }

    fn spawn_via(wrapper: &[String], args: Vec<String>, config: Option<PathBuf>) -> Server {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(&args);
        let has_listen = args
            .iter()
            .any(|a| a == "--listen" || a.starts_with("--listen="));
        if !has_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        // Most tests are about the protocol, not authentication: they run
        // with auth off unless they choose (a flag, or an `auth` section).
        let config_sets_auth = config
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .is_some_and(|t| t.contains("\"auth\""));
        let chooses_auth = args
            .iter()
            .any(|a| a.starts_with("--auth-mode") || a.starts_with("--users-file"));
        if !chooses_auth && !config_sets_auth {
            cmd.args(["--auth-mode", "none"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                if let Some(p) = &config {
                    let _ = fs::remove_file(p);
                }
                panic!("cannot spawn {BIN}: {e}");
            }
        };
        let logs = Arc::new(Mutex::new(Vec::new()));
        let pid = child.id();
        if let Some(err) = child.stderr.take() {
            pump(err, format!("[palisade {pid} stderr]"), logs.clone());
        }
        if let Some(out) = child.stdout.take() {
            pump(out, format!("[palisade {pid} stdout]"), logs.clone());
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Some(addr) = find_listen_addr(&logs.lock().unwrap()) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the pumps drain what is left.
                thread::sleep(Duration::from_millis(100));
                if let Some(p) = &config {
                    let _ = fs::remove_file(p);
                }
                panic!(
                    "palisade {args:?} exited with {status} before listening; output:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(p) = &config {
                    let _ = fs::remove_file(p);
                }
                panic!(
                    "palisade {args:?} did not log `listening on` within {START_TIMEOUT:?}; output:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        Server {
            child,
            addr,
            logs,
            config,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// All output lines so far (stderr and stdout, in arrival order).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line contains `substr`; false on timeout.
    pub fn wait_for_log(&self, substr: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs.lock().unwrap().iter().any(|l| l.contains(substr)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the log line of one refusal: the line for `peer_port`
    /// with `detail` (e.g. `status=401 reason=expired`), or, when another
    /// refusal with the same `reason` was logged less than a second before
    /// (refusal lines are limited to one per reason per second), the
    /// `(repeated)` summary that counts it. False on timeout.
    pub fn wait_for_refusal_log(
        &self,
        msg: &str,
        peer_port: u16,
        detail: &str,
        reason: &str,
        timeout: Duration,
    ) -> bool {
        let own = format!(":{peer_port} {detail}");
        let summary = format!("{msg} (repeated) reason={reason}");
        let summary_quoted = format!("{msg} (repeated) reason=\"{reason}\"");
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs.lock().unwrap().iter().any(|l| {
                (l.contains(msg) && l.contains(&own))
                    || l.contains(&summary)
                    || l.contains(&summary_quoted)
            }) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {path}"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM (through the `kill` utility; std has no signal API).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if let Some(p) = self.config.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Writes `json` to a new temporary file and returns its path.
fn write_temp_config(json: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "palisade-test-{}-{}-{}.json",
        std::process::id(),
        n,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    fs::write(&path, json).expect("write temporary config file");
    path
}

/// Directory where every server's output is kept, so that one `grep` over
/// the whole test run can show no token or password was logged.
pub fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output/logs")
}

/// Copies lines from `pipe` into `logs` and a file in [`log_dir`], and
/// echoes them to the test's stderr.
fn pump(pipe: impl Read + Send + 'static, prefix: String, logs: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        let dir = log_dir();
        let _ = fs::create_dir_all(&dir);
        let name: String = prefix
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("rust{}.log", name.trim_end_matches('-'))))
            .ok();
        let mut r = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    eprintln!("{prefix} {line}");
                    if let Some(f) = &mut file {
                        let _ = writeln!(f, "{line}");
                    }
                    logs.lock().unwrap().push(line);
                }
            }
        }
    });
}

/// Finds `listening on <addr>` in the output (text or JSON log lines; an
/// optional `scheme://` before the address is skipped).
fn find_listen_addr(lines: &[String]) -> Option<SocketAddr> {
    for line in lines {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("listening on ") {
            rest = &rest[i + "listening on ".len()..];
            let mut s = rest;
            if let Some(j) = s.find("://") {
                if j < 8 {
                    s = &s[j + 3..];
                }
            }
            let end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
                .unwrap_or(s.len());
            if let Ok(a) = s[..end].parse() {
                return Some(a);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Raw client: connection and opening handshake
// ---------------------------------------------------------------------------

/// A TCP connection to `addr` with nodelay and the standard timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(WRITE_TIMEOUT)).unwrap();
    s
}

/// The raw request [`handshake`] sends.
pub fn handshake_request(host: &str, path: &str, extra_headers: &[(&str, &str)]) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Sends an RFC 6455 opening handshake for `path` and reads the response
/// head. Returns the status line, the header fields in order, and any bytes
/// read past the head (for an error response: the start of its body).
pub fn handshake(
    stream: &mut TcpStream,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> (String, Vec<(String, String)>, Vec<u8>) {
    let host = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "localhost".into());
    let req = handshake_request(&host, path, extra_headers);
    stream
        .write_all(req.as_bytes())
        .expect("write handshake request");
    read_response_head(stream)
}

/// Reads an HTTP response head (bounded at 64 KiB and by the read timeout).
pub fn read_response_head(stream: &mut TcpStream) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        assert!(buf.len() < 65536, "response head larger than 64 KiB");
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "connection closed before the response head was complete; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "reading the response head: {e}; got so far {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let leftover = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    (status, headers, leftover)
}

/// The value of header `name` (case-insensitive), first occurrence.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An open WebSocket connection: the socket plus any bytes read past the
/// handshake response. Reads drain those bytes first.
pub struct Client {
    pub stream: TcpStream,
    pending: Vec<u8>,
}

impl Client {
    /// Wraps a stream whose handshake is done; `pending` are bytes already read.
    pub fn new(stream: TcpStream, pending: Vec<u8>) -> Client {
        Client { stream, pending }
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        self.stream.read(buf)
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A byte stream the helpers can put timeouts on.
pub trait Conn: Read + Write {
    fn tcp(&self) -> &TcpStream;
    /// Bytes already buffered on the client side (they are "data", not silence).
    fn buffered(&self) -> usize {
        0
    }
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for Client {
    fn tcp(&self) -> &TcpStream {
        &self.stream
    }
    fn buffered(&self) -> usize {
        self.pending.len()
    }
}

/// Connects to `addr`, opens a WebSocket on `/ws` and checks the `101`.
pub fn open(addr: SocketAddr) -> Client {
    open_with(addr, "/ws", &[])
}

/// Like [`open`] with a path and extra request headers.
pub fn open_with(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> Client {
    let mut s = connect(addr);
    let (status, headers, leftover) = handshake(&mut s, path, extra_headers);
    assert!(
        status.starts_with("HTTP/1.1 101"),
        "expected 101, got {status:?} {headers:?} body {:?}",
        String::from_utf8_lossy(&leftover)
    );
    assert_eq!(
        header(&headers, "Sec-WebSocket-Accept"),
        Some(SAMPLE_ACCEPT),
        "{headers:?}"
    );
    Client::new(s, leftover)
}

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

/// A frame as received from the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1..RSV3 as a 3-bit number (RSV1 is the high bit).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Frame {{ fin: {}, rsv: {}, opcode: {:#x}, len: {}, payload: {} }}",
            self.fin,
            self.rsv,
            self.opcode,
            self.payload.len(),
            preview(&self.payload)
        )
    }
}

impl Frame {
    /// For a close frame: the status code, if any.
    pub fn close_code(&self) -> Option<u16> {
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A short printable view of a payload for assertion messages.
pub fn preview(p: &[u8]) -> String {
    const N: usize = 48;
    let shown = &p[..p.len().min(N)];
    let s = match std::str::from_utf8(shown) {
        Ok(s) => format!("{s:?}"),
        Err(_) => shown.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    };
    if p.len() > N {
        format!("{s}… ({} bytes)", p.len())
    } else {
        s
    }
}

/// A frame header: `rsv` is a 3-bit number, `len` the announced payload
/// length (any value, written in the shortest form; see [`frame_header_raw`]
/// for other forms).
pub fn frame_header(fin: bool, rsv: u8, opcode: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let form = if len < 126 {
        LenForm::Short
    } else if len <= 0xffff {
        LenForm::U16
    } else {
        LenForm::U64
    };
    frame_header_raw(fin, rsv, opcode, len, form, mask)
}

/// How the payload length is written.
#[derive(Clone, Copy, Debug)]
pub enum LenForm {
    /// 7-bit length (must be < 126).
    Short,
    /// 126 then a 16-bit length.
    U16,
    /// 127 then a 64-bit length (any value, even with the MSB set).
    U64,
}

/// A frame header with an explicit length encoding.
pub fn frame_header_raw(
    fin: bool,
    rsv: u8,
    opcode: u8,
    len: u64,
    form: LenForm,
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(14);
    h.push(((fin as u8) << 7) | ((rsv & 0x7) << 4) | (opcode & 0x0f));
    let m = if mask.is_some() { 0x80 } else { 0 };
    match form {
        LenForm::Short => {
            assert!(len < 126);
            h.push(m | len as u8);
        }
        LenForm::U16 => {
            assert!(len <= 0xffff);
            h.push(m | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        LenForm::U64 => {
            h.push(m | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(k) = mask {
        h.extend_from_slice(&k);
    }
    h
}

/// A whole frame; the payload is masked with `mask` when given.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = frame_header(fin, rsv, opcode, payload.len() as u64, mask);
    let start = f.len();
    f.extend_from_slice(payload);
    if let Some(k) = mask {
        for (i, b) in f[start..].iter_mut().enumerate() {
            *b ^= k[i & 3];
        }
    }
    f
}

/// A final, masked frame with no RSV bits (what a well-behaved client sends).
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, payload, Some(MASK))
}

/// A masked data or continuation frame with an explicit FIN bit.
pub fn fragment(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, opcode, payload, Some(MASK))
}

/// A masked text frame.
pub fn text(payload: impl AsRef<[u8]>) -> Vec<u8> {
    masked(op::TEXT, payload.as_ref())
}

/// A masked binary frame.
pub fn binary(payload: impl AsRef<[u8]>) -> Vec<u8> {
    masked(op::BINARY, payload.as_ref())
}

/// A masked ping frame.
pub fn ping(payload: impl AsRef<[u8]>) -> Vec<u8> {
    masked(op::PING, payload.as_ref())
}

/// A masked pong frame.
pub fn pong(payload: impl AsRef<[u8]>) -> Vec<u8> {
    masked(op::PONG, payload.as_ref())
}

/// The payload of a close frame: code then reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A masked close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    masked(op::CLOSE, &close_payload(code, reason))
}

/// Concatenates frames into one buffer (to send them in a single write).
pub fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// Reads one frame. Fails with `InvalidData` if the server sends a masked
/// frame (RFC 6455 §5.1) or a 64-bit length with the MSB set, and with the
/// socket's error (timeout, EOF) otherwise.
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> io::Result<Frame> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    let fin = h[0] & 0x80 != 0;
    let rsv = (h[0] >> 4) & 0x7;
    let opcode = h[0] & 0x0f;
    if h[1] & 0x80 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "server sent a masked frame",
        ));
    }
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_be_bytes(b) as u64
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            let l = u64::from_be_bytes(b);
            if l >> 63 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "server sent a 64-bit length with the MSB set",
                ));
            }
            l
        }
        n => n as u64,
    };
    if len > MAX_READ_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("server announced a {len}-byte frame (over the harness cap)"),
        ));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Frame {
        fin,
        rsv,
        opcode,
        payload,
    })
}

/// Reads the next frame and asserts it is a final, RSV-free frame with
/// `opcode` and exactly `payload`.
pub fn expect_frame<C: Conn + ?Sized>(c: &mut C, opcode: u8, payload: &[u8]) {
    let f = read_frame(c).unwrap_or_else(|e| {
        panic!(
            "expected frame opcode {opcode:#x} with {}: read failed: {e}",
            preview(payload)
        )
    });
    assert!(
        f.fin && f.rsv == 0 && f.opcode == opcode,
        "expected a final frame opcode {opcode:#x} ({}), got {f:?}",
        preview(payload)
    );
    if f.payload != payload {
        let at = f
            .payload
            .iter()
            .zip(payload)
            .position(|(a, b)| a != b)
            .unwrap_or(f.payload.len().min(payload.len()));
        panic!(
            "opcode {opcode:#x}: payload differs (got {} bytes, expected {}; first difference at byte {at}); got {} expected {}",
            f.payload.len(),
            payload.len(),
            preview(&f.payload),
            preview(payload)
        );
    }
}

/// Asserts the next frame is a close frame with exactly `code` (and a UTF-8
/// reason of at most 123 bytes), then that the server closes TCP within 2 s.
/// Returns the reason.
pub fn expect_close<C: Conn + ?Sized>(c: &mut C, code: u16) -> String {
    expect_close_within(c, code, Duration::from_secs(2))
}

/// Like [`expect_close`] with a bound on how soon TCP must be closed.
pub fn expect_close_within<C: Conn + ?Sized>(c: &mut C, code: u16, eof_within: Duration) -> String {
    let f = read_frame(c).unwrap_or_else(|e| panic!("expected close {code}: read failed: {e}"));
    assert_eq!(f.opcode, op::CLOSE, "expected close {code}, got {f:?}");
    assert!(
        f.fin && f.rsv == 0,
        "close frame must be final with no RSV bits: {f:?}"
    );
    assert!(
        f.payload.len() >= 2 && f.payload.len() <= 125,
        "close payload length {}: {f:?}",
        f.payload.len()
    );
    assert_eq!(
        f.close_code(),
        Some(code),
        "wrong close code; reason {:?}",
        String::from_utf8_lossy(&f.payload[2..])
    );
    let reason = String::from_utf8(f.payload[2..].to_vec())
        .unwrap_or_else(|_| panic!("close reason is not UTF-8: {f:?}"));
    expect_eof(c, eof_within);
    reason
}

/// Asserts the server closes the TCP connection (a read returns 0) within
/// `within`, without sending anything else first.
pub fn expect_eof<C: Conn + ?Sized>(c: &mut C, within: Duration) {
    let start = Instant::now();
    let mut b = [0u8; 256];
    loop {
        let left = within
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        c.tcp().set_read_timeout(Some(left)).unwrap();
        let r = c.read(&mut b);
        c.tcp().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match r {
            Ok(0) => return,
            Ok(n) => panic!(
                "expected the server to close TCP, got {n} more bytes: {}",
                preview(&b[..n])
            ),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server did not close TCP within {within:?}")
            }
            Err(e) => panic!("expected a clean TCP close (read returning 0), got {e}"),
        }
    }
}

/// Asserts nothing arrives (and the connection stays open) for `dur`.
pub fn expect_silence<C: Conn + ?Sized>(c: &mut C, dur: Duration) {
    assert_eq!(c.buffered(), 0, "unexpected buffered bytes");
    c.tcp().set_read_timeout(Some(dur)).unwrap();
    let mut b = [0u8; 256];
    let r = c.read(&mut b);
    c.tcp().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    match r {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Ok(0) => panic!("the server closed TCP; expected silence for {dur:?}"),
        Ok(n) => {
            let mut rest: &[u8] = &b[..n];
            let f = read_frame(&mut rest)
                .map(|f| format!("{f:?}"))
                .unwrap_or_else(|_| preview(&b[..n]));
            panic!("expected silence for {dur:?}, got {n} bytes: {f}")
        }
        Err(e) => panic!("expected silence for {dur:?}, got {e}"),
    }
}

/// Completes a normal closing handshake started by the client: sends close
/// 1000 and expects close 1000 back, then the TCP close.
pub fn close_normally<C: Conn + ?Sized>(c: &mut C) {
    c.write_all(&close_frame(1000, b"")).expect("write close");
    expect_close_within(c, 1000, Duration::from_secs(1));
}

// ---------------------------------------------------------------------------
// Sending in pieces
// ---------------------------------------------------------------------------

/// Writes `bytes` in pieces cut at `points` (offsets, increasing), flushing
/// and sleeping `pause` between pieces.
pub fn send_split<W: Write + ?Sized>(
    w: &mut W,
    bytes: &[u8],
    points: &[usize],
    pause: Duration,
) -> io::Result<()> {
    let mut start = 0;
    for &p in points.iter().chain(std::iter::once(&bytes.len())) {
        let p = p.min(bytes.len());
        if p < start {
            continue;
        }
        if start > 0 && !pause.is_zero() {
            thread::sleep(pause);
        }
        w.write_all(&bytes[start..p])?;
        w.flush()?;
        start = p;
    }
    Ok(())
}

/// Writes `bytes` in chops of `chop` bytes, sleeping `pause` between chops.
pub fn send_chopped<W: Write + ?Sized>(
    w: &mut W,
    bytes: &[u8],
    chop: usize,
    pause: Duration,
) -> io::Result<()> {
    assert!(chop > 0);
    for (i, piece) in bytes.chunks(chop).enumerate() {
        if i > 0 && !pause.is_zero() {
            thread::sleep(pause);
        }
        w.write_all(piece)?;
        w.flush()?;
    }
    Ok(())
}

/// Writes each frame separately, sleeping `pause` after each (frame-wise
/// chops: the server sees one frame per read).
pub fn send_frames<W: Write + ?Sized>(
    w: &mut W,
    frames: &[Vec<u8>],
    pause: Duration,
) -> io::Result<()> {
    for f in frames {
        w.write_all(f)?;
        w.flush()?;
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
    Ok(())
}

/// Half-closes the client's write side.
pub fn shutdown_write<C: Conn + ?Sized>(c: &C) {
    let _ = c.tcp().shutdown(Shutdown::Write);
}
