//! What every attack test shares: clients bound to any 127.x.y.z source
//! address, the well-behaved client that keeps doing `get_name` round trips
//! while the attack runs, the server's CPU time and peak RSS, and the
//! summary table.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// RSS bound for each attack, in KiB (the server idles at ~7 MiB).
pub const SMALL_RSS_KIB: u64 = 64 * 1024;

/// Attacks run one at a time: each measures RSS and latency of its own
/// server, and a 2-core machine has no room for two floods at once.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `127.a.b.c` for a number `n` (never 127.0.0.1, the well-behaved client).
pub fn loopback(n: u32) -> IpAddr {
    let n = n + 2;
    IpAddr::V4(Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8))
}

/// Connects from `source` (any 127.0.0.0/8 address works on Linux).
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(source, 0).into())?;
    s.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// A settings file for attack servers: auth off (credentials are not what
/// these attacks test), `extra` JSON members added at the top level.
pub fn config(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(r#"{{"auth":{{"mode":"none"}}{sep}{extra}}}"#)
}

/// What the well-behaved client saw.
#[derive(Debug, Default, Clone)]
pub struct Victim {
    pub sent: u32,
    pub answered: u32,
    pub lost_or_wrong: u32,
    pub max_rtt: Duration,
    pub error: Option<String>,
}

/// A client from 127.0.0.1 doing one `get_name` round trip every 10 ms
/// (well under `rate.messages_per_conn_per_s`) until stopped; every reply
/// must come back, in order, with its id.
pub struct WellBehaved {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Victim>,
}

impl WellBehaved {
    pub fn start(addr: SocketAddr) -> WellBehaved {
        WellBehaved::run(open(addr))
    }

    /// Like [`WellBehaved::start`], from the source address `source`.
    pub fn start_from(addr: SocketAddr, source: IpAddr) -> WellBehaved {
        let mut s = connect_from(source, addr).expect("well-behaved client connects");
        let (status, _, rest) = handshake(&mut s, "/ws", &[]);
        assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
        WellBehaved::run(Client::new(s, rest))
    }

    fn run(mut c: Client) -> WellBehaved {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let progress = Arc::new(AtomicU32::new(0));
        let p = Arc::clone(&progress);
        let handle = thread::spawn(move || {
            let mut v = Victim::default();
            let mut id = 0u32;
            while !s.load(Ordering::Relaxed) {
                id += 1;
                let t = Instant::now();
                let req = format!(r#"{{"event":"get_name","data":{{"hero":"batMan"}},"id":{id}}}"#);
                if let Err(e) = c.write_all(&text(req)) {
                    v.error = Some(format!("write: {e}"));
                    break;
                }
                v.sent += 1;
                match read_frame(&mut c) {
                    Ok(f) => {
                        let want = format!(
                            r#"{{"event":"name","data":{{"hero":"batMan","hero_name":"Bruce Wayne"}},"id":{id}}}"#
                        );
                        if f.opcode == op::TEXT && f.payload == want.as_bytes() {
                            v.answered += 1;
                            p.store(v.answered, Ordering::Relaxed);
                        } else {
                            v.lost_or_wrong += 1;
                        }
                    }
                    Err(e) => {
                        v.error = Some(format!("read: {e}"));
                        break;
                    }
                }
                v.max_rtt = v.max_rtt.max(t.elapsed());
                thread::sleep(Duration::from_millis(10));
            }
            v
        });
        // The attack starts once the client is in its stride.
        let t = Instant::now();
        while progress.load(Ordering::Relaxed) < 5 && t.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(1));
        }
        WellBehaved { stop, handle }
    }

    /// Stops the client and asserts it lost nothing.
    pub fn finish(self) -> Victim {
        self.stop.store(true, Ordering::Relaxed);
        let v = self.handle.join().expect("well-behaved client thread");
        assert!(v.error.is_none(), "well-behaved client failed: {v:?}");
        assert!(v.sent > 0, "well-behaved client sent nothing");
        assert_eq!(
            v.answered, v.sent,
            "well-behaved client lost replies: {v:?}"
        );
        assert_eq!(v.lost_or_wrong, 0, "{v:?}");
        v
    }
}

/// User + system CPU time of a process, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Peak RSS of the process so far (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Appends one row to the summary table printed at the end of the suite
/// (`target/test-output/attacks.md`, shown by `scripts/test-all.sh`).
pub fn record(
    attack: &str,
    attacker_saw: &str,
    victim: &Victim,
    peak_rss_kib: u64,
    bound_kib: u64,
) {
    assert!(
        peak_rss_kib < bound_kib,
        "{attack}: peak RSS {peak_rss_kib} KiB over the bound of {bound_kib} KiB"
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-output");
    let _ = std::fs::create_dir_all(&dir);
    let line = format!(
        "| {attack} | {attacker_saw} | {} of {} | {} | {:.1} MiB (bound {} MiB) |\n",
        victim.sent - victim.answered,
        victim.sent,
        format_args!("{:.1} ms", victim.max_rtt.as_secs_f64() * 1000.0),
        peak_rss_kib as f64 / 1024.0,
        bound_kib / 1024
    );
    eprint!("{line}");
    let path = dir.join("attacks.md");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open attacks.md");
    let _ = f.write_all(line.as_bytes());
}

/// Reads an HTTP response head from a raw stream; the status line, or the
/// error that ended the read.
pub fn status_of(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            return String::from_utf8_lossy(&buf[..i]).into_owned();
        }
        match s.read(&mut b) {
            Ok(0) => return format!("EOF after {} bytes", buf.len()),
            Ok(n) => buf.extend_from_slice(&b[..n]),
            Err(e) => return format!("error: {e}"),
        }
    }
}

/// The soft limit on open files of this process.
pub fn nofile_limit() -> u64 {
    nofile_field(3)
}

/// The hard limit on open files.
pub fn nofile_hard() -> u64 {
    nofile_field(4)
}

fn nofile_field(n: usize) -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(n))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Makes sure this process (and the servers it starts, which inherit it)
/// may hold `n` descriptors: raises the soft limit to the hard one with
/// prlimit(1), which does what std cannot, and fails the test otherwise.
pub fn need_open_files(n: u64) {
    if nofile_limit() < n {
        let _ = std::process::Command::new("prlimit")
            .arg("--pid")
            .arg(std::process::id().to_string())
            .arg(format!("--nofile={}:{}", nofile_hard(), nofile_hard()))
            .status();
    }
    let limit = nofile_limit();
    assert!(
        limit >= n,
        "this test holds {n} descriptors: the open-file limit is {limit} and prlimit could not raise it: run ulimit -n {n} first"
    );
}

/// Sockets the process `pid` holds open (listeners, pipes of the poller
/// and the connections), from `/proc/<pid>/fd`.
pub fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// Log lines of `server` that contain `needle`.
pub fn count_logs(server: &Server, needle: &str) -> usize {
    server.logs().iter().filter(|l| l.contains(needle)).count()
}

/// The honest client of the silent-socket attacks: connects from
/// `source`, opens a WebSocket and does one `get_name` round trip. Returns
/// how long all of it took (TCP connect to the reply).
pub fn honest_round_trip(source: IpAddr, addr: SocketAddr) -> Duration {
    let t = Instant::now();
    let mut s = connect_from(source, addr).expect("the honest client connects");
    let (status, _, rest) = handshake(&mut s, "/ws", &[]);
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    let mut c = Client::new(s, rest);
    c.write_all(&text(
        r#"{"event":"get_name","data":{"hero":"hulk"},"id":1}"#,
    ))
    .unwrap();
    expect_frame(
        &mut c,
        op::TEXT,
        br#"{"event":"name","data":{"hero":"hulk","hero_name":"Bruce Banner"},"id":1}"#,
    );
    t.elapsed()
}

/// Sockets that connect and never send a byte, from a set of source
/// addresses, re-opened when the server closes them (as an attacker holding
/// the server's slots would), on a thread, until stopped or for at most
/// `max_time`.
pub struct SilentFlood {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<SilentStats>,
}

/// What the silent flood saw.
#[derive(Debug, Default, Clone)]
pub struct SilentStats {
    /// Connections opened in all (first ones and re-opens).
    pub opened: u64,
    /// Closed by the server (EOF, reset or an answer).
    pub closed_by_server: u64,
    /// Answers seen on closed sockets, by status line.
    pub answers: std::collections::BTreeMap<String, u64>,
    /// Sockets still open when the flood stopped.
    pub open_at_end: usize,
}

impl SilentFlood {
    /// Opens `per_source` sockets from each of `sources` at once, then
    /// keeps them open (re-opening every one the server closes).
    pub fn start(
        sources: Vec<IpAddr>,
        per_source: usize,
        addr: SocketAddr,
        max_time: Duration,
    ) -> SilentFlood {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let ready = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ready);
        let handle = thread::spawn(move || {
            let t = Instant::now();
            let mut stats = SilentStats::default();
            let mut socks: Vec<(IpAddr, Option<TcpStream>)> = Vec::new();
            for &src in &sources {
                for _ in 0..per_source {
                    socks.push((src, connect_silent(src, addr)));
                    stats.opened += 1;
                }
            }
            r.store(true, Ordering::Relaxed);
            let mut buf = [0u8; 512];
            // Bounded in count as well as in time.
            const MAX_OPENS: u64 = 500_000;
            while !s.load(Ordering::Relaxed) && t.elapsed() < max_time && stats.opened < MAX_OPENS {
                for (src, sock) in socks.iter_mut() {
                    let closed = match sock {
                        None => true,
                        Some(c) => match c.read(&mut buf) {
                            Ok(0) => true,
                            Ok(n) => {
                                let text = String::from_utf8_lossy(&buf[..n]);
                                let line = text.lines().next().unwrap_or("").to_owned();
                                *stats.answers.entry(line).or_insert(0) += 1;
                                true
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                            Err(_) => true,
                        },
                    };
                    if closed {
                        if sock.is_some() {
                            stats.closed_by_server += 1;
                        }
                        *sock = connect_silent(*src, addr);
                        stats.opened += 1;
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            stats.open_at_end = socks.iter().filter(|(_, s)| s.is_some()).count();
            stats
        });
        let t = Instant::now();
        while !ready.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(5));
        }
        SilentFlood { stop, handle }
    }

    /// Stops the flood and closes its sockets.
    pub fn stop(self) -> SilentStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("silent flood thread")
    }
}

/// A non-blocking socket from `source` that sends nothing; `None` when the
/// connect fails (the backlog is full: the next round tries again).
fn connect_silent(source: IpAddr, addr: SocketAddr) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::new(source, 0).into()).ok()?;
    s.connect_timeout(&addr.into(), Duration::from_secs(2))
        .ok()?;
    let s: TcpStream = s.into();
    s.set_nonblocking(true).ok()?;
    Some(s)
}
