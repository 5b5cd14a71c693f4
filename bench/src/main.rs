//! palisade-bench: a load generator for WebSocket servers.
//!
//! Modes:
//! - `connect`: each worker opens a connection, (TLS handshake,) upgrades,
//!   sends a close and waits for the server's; reports handshakes per second.
//! - `echo`: `--conns` connections each keep `--inflight` messages of
//!   `--size` bytes in flight; every reply is checked byte for byte; reports
//!   round trips per second and latency percentiles.
//!
//! Threads and blocking sockets keep it simple; run it on another core than
//! the server (`taskset`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const USAGE: &str = "usage: palisade-bench --url ws[s]://HOST:PORT/PATH [--ca FILE] [--mode echo|connect] [--conns N] [--inflight W] [--size S] [--duration SECS] [--workers N]";

struct Opts {
    tls: bool,
    host: String,
    addr: SocketAddr,
    path: String,
    ca: Option<String>,
    mode: String,
    conns: usize,
    inflight: usize,
    size: usize,
    duration: Duration,
    workers: usize,
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut o = Opts {
        tls: false,
        host: String::new(),
        addr: "127.0.0.1:0".parse().unwrap(),
        path: "/ws".into(),
        ca: None,
        mode: "echo".into(),
        conns: 50,
        inflight: 1,
        size: 64,
        duration: Duration::from_secs(5),
        workers: 8,
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--url" => url = Some(val()?),
            "--ca" => o.ca = Some(val()?),
            "--mode" => o.mode = val()?,
            "--conns" => o.conns = val()?.parse().map_err(|_| "--conns: a number")?,
            "--inflight" => o.inflight = val()?.parse().map_err(|_| "--inflight: a number")?,
            "--size" => o.size = val()?.parse().map_err(|_| "--size: a number")?,
            "--duration" => {
                o.duration =
                    Duration::from_secs_f64(val()?.parse().map_err(|_| "--duration: seconds")?)
            }
            "--workers" => o.workers = val()?.parse().map_err(|_| "--workers: a number")?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let url = url.ok_or(USAGE)?;
    let (scheme, rest) = url.split_once("://").ok_or("--url: ws://HOST:PORT/PATH")?;
    o.tls = match scheme {
        "ws" => false,
        "wss" => true,
        _ => return Err("--url: scheme must be ws or wss".into()),
    };
    let (authority, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    o.path = format!("/{}", path.trim_start_matches('/'));
    o.host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_owned();
    o.addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("--url: {e}"))?
        .next()
        .ok_or("--url: no address")?;
    if !matches!(o.mode.as_str(), "echo" | "connect") {
        return Err(format!("--mode: {} is not echo or connect", o.mode));
    }
    Ok(o)
}

/// A plain socket with buffered reads (rustls buffers the TLS side), so
/// both measure the server, not the generator's syscalls.
struct Buffered(io::BufReader<TcpStream>);

impl Read for Buffered {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn tls_config(ca: &Option<String>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = ca
        .as_ref()
        .ok_or("wss:// needs --ca FILE (the CA that signed the server certificate)")?;
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e:?}"))? {
        roots
            .add(c.map_err(|e| format!("{ca}: {e:?}"))?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn open(o: &Opts, tls: &Option<Arc<rustls::ClientConfig>>) -> io::Result<Box<dyn Stream>> {
    let sock = TcpStream::connect(o.addr)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut s: Box<dyn Stream> = match tls {
        Some(cfg) => {
            let name = ServerName::try_from(o.host.clone()).map_err(io::Error::other)?;
            let conn =
                rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, sock))
        }
        None => Box::new(Buffered(io::BufReader::with_capacity(64 * 1024, sock))),
    };
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        o.path, o.host
    )?;
    s.flush()?;
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
        if head.len() > 8192 {
            return Err(io::Error::other("response head too large"));
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other(format!(
            "no 101: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(s)
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let key = [0x12, 0x34, 0x56, 0x78];
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 65535 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}

/// Reads one server frame: (opcode, payload).
fn read_frame(s: &mut dyn Stream, payload: &mut Vec<u8>) -> io::Result<u8> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    payload.resize(len as usize, 0);
    s.read_exact(payload)?;
    Ok(h[0] & 0x0f)
}

fn echo_worker(
    o: &Opts,
    tls: &Option<Arc<rustls::ClientConfig>>,
    stop: &AtomicBool,
    lat: &mut Vec<u32>,
) -> io::Result<u64> {
    let mut s = open(o, tls)?;
    let msg: Vec<u8> = (0..o.size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut one = Vec::new();
    frame(1, &msg, &mut one);
    let mut batch = Vec::with_capacity(one.len() * o.inflight);
    for _ in 0..o.inflight {
        batch.extend_from_slice(&one);
    }
    let mut payload = Vec::new();
    let mut done = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        s.write_all(&batch)?;
        s.flush()?;
        for _ in 0..o.inflight {
            let op = read_frame(&mut *s, &mut payload)?;
            if op != 1 || payload != msg {
                return Err(io::Error::other("wrong echo"));
            }
        }
        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        done += o.inflight as u64;
    }
    let mut close = Vec::new();
    frame(8, &1000u16.to_be_bytes(), &mut close);
    let _ = s.write_all(&close);
    let _ = s.flush();
    Ok(done)
}

fn connect_worker(
    o: &Opts,
    tls: &Option<Arc<rustls::ClientConfig>>,
    stop: &AtomicBool,
    lat: &mut Vec<u32>,
) -> io::Result<u64> {
    let mut done = 0u64;
    let mut close = Vec::new();
    frame(8, &1000u16.to_be_bytes(), &mut close);
    let mut payload = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let mut s = open(o, tls)?;
        s.write_all(&close)?;
        s.flush()?;
        if read_frame(&mut *s, &mut payload)? != 8 {
            return Err(io::Error::other("expected close"));
        }
        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        done += 1;
    }
    Ok(done)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let tls = if o.tls {
        match tls_config(&o.ca) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    let threads = if o.mode == "echo" { o.conns } else { o.workers };
    let stop = Arc::new(AtomicBool::new(false));
    let o = Arc::new(o);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (o, tls, stop) = (o.clone(), tls.clone(), stop.clone());
            thread::spawn(move || {
                let mut lat = Vec::new();
                let r = if o.mode == "echo" {
                    echo_worker(&o, &tls, &stop, &mut lat)
                } else {
                    connect_worker(&o, &tls, &stop, &mut lat)
                };
                (r, lat)
            })
        })
        .collect();
    thread::sleep(o.duration);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0u64;
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (r, l) = h.join().expect("worker");
        match r {
            Ok(n) => total += n,
            Err(e) => {
                errors += 1;
                eprintln!("worker error: {e}");
            }
        }
        lat.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let what = if o.mode == "echo" {
        "round trips"
    } else {
        "handshakes"
    };
    println!(
        "mode={} tls={} conns={} inflight={} size={} duration={:.1}s {what}={total} rate={:.0}/s p50={}us p99={}us max={}us errors={errors}",
        o.mode,
        o.tls,
        threads,
        if o.mode == "echo" { o.inflight } else { 1 },
        o.size,
        secs,
        total as f64 / secs,
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0),
    );
    if errors > 0 {
        std::process::exit(1);
    }
}
