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
        let mut c = open(addr);
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
