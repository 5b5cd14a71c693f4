//! palisade-bench: a single-threaded, event-driven load generator for
//! WebSocket servers (plain `ws://` and TLS `wss://`).
//!
//! Modes:
//! - `echo`: `--conns` connections each keep `--inflight` text messages of
//!   `--size` bytes in flight; every reply is checked byte for byte (each
//!   message starts with a sequence counter, so stale or reordered replies
//!   are caught); reports round trips per second and latency percentiles.
//! - `hero`: the same with the hero application's `get_name` request and
//!   its exact reply.
//! - `connect`: `--conns` loops of connect, (TLS handshake,) upgrade,
//!   close handshake and TCP close; reports cycles per second.
//! - `idle`: opens `--conns` connections, lets them settle, reads the
//!   server's RSS and proves every connection is still open with a ping.
//! - `fanout`: `--conns` subscribers, then `--rounds` publications, each
//!   until every subscriber has it (see `fanout.rs`).
//!
//! The generator is meant to run pinned to another CPU than the server
//! (`taskset`), and is built to cost less per message than the server.

mod engine;
mod fanout;
mod hist;
mod probe;
mod sys;
mod ws;

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

const USAGE: &str = "\
usage: palisade-bench --url ws[s]://HOST:PORT/PATH [--ca FILE] [--origin ORIGIN]
  --mode echo|hero|connect|idle|fanout  [--conns N] [--inflight W] [--size S]
  [--duration SECS] [--warmup SECS] [--count N] [--pid PID] [--probe] [--timeout SECS]
  [--settle SECS] [--interval-ms MS] [--socketio]
  [--fanout palisade|palisade-socketio|ws|socketio] [--rounds N] [--login USER:PASSWORD] [--key KEY]

  --url URL        server to load; wss:// needs --ca
  --ca FILE        PEM file of the CA(s) that signed the server certificate; a
                   certificate chain verified once is trusted for the rest of the run
  --origin ORIGIN  send this Origin header in the upgrade request (default: none)
  --mode MODE      echo (default): N connections each keep W messages of S bytes
                   in flight, every reply checked byte for byte;
                   hero: the same with {\"event\":\"get_name\",...} requests;
                   connect: N loops of connect, upgrade, close handshake;
                   idle: open N connections, settle, read the server's RSS, ping all;
                   fanout: N subscribers, then --rounds publications, each until
                   every subscriber has it (--pid required)
  --conns N        connections (default 50; connect: concurrent loops, default 8;
                   idle: default 1000)
  --inflight W     messages in flight per connection (default 1)
  --size S         message payload bytes (echo; default 64); the first 8 are a
                   hex sequence counter
  --duration SECS  measurement window (default 5)
  --warmup SECS    unmeasured time once all connections are up (default 0.5)
  --count N        end the window after N round trips (connect: cycles)
  --pid PID        the server's pid: report its CPU use in the window (idle: RSS;
                   required for idle)
  --probe          echo/hero: one extra connection with 1 message in flight whose
                   latency is reported separately
  --timeout SECS   abort the run with an error after this long (default 60)
  --settle SECS    idle: wait this long after all upgrades before reading RSS
                   (default 2)
  --socketio       hero/idle: Socket.IO over the WebSocket transport (the URL's path
                   is the Engine.IO one, /socket.io/?EIO=4&transport=websocket):
                   each connection joins `/` after the upgrade and counts as up once
                   joined; hero sends acked get_name events (42<id>[...]) and
                   checks each ack (43<id>[...]) byte for byte, skipping the
                   `name` event, and answers the server's pings
  --interval-ms MS echo/hero: instead of keeping messages in flight, each
                   connection sends one message every MS milliseconds (the sends
                   of all connections spread evenly over the interval), and
                   waits for its reply; a send that comes due while the reply
                   is still awaited is skipped and counted (late=)

  --fanout KIND    fanout: palisade (subscribers send the subscribe event, the
                   publication is a POST /api/publish with --key after POST /login
                   with --login), ws (a plain WebSocket server broadcasting what a
                   control connection to /control sends) or socketio (the URL's
                   Engine.IO path; subscribers join /, a control socket with
                   &control=1 emits publish) or palisade-socketio (palisade's Engine.IO
                   path: subscribers join / and emit subscribe; POST /api/publish)
  --rounds N       fanout: publications (default 20)
  --login U:P      fanout palisade: the user the subscribers log in as
  --key KEY        fanout palisade: the API key that publishes on channel bench

Prints one line of key=value pairs; exits 1 when there were errors or nothing
was measured, 2 on bad arguments.";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Echo,
    Hero,
    Connect,
    Idle,
    Fanout,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Hero => "hero",
            Mode::Connect => "connect",
            Mode::Idle => "idle",
            Mode::Fanout => "fanout",
        }
    }
}

pub struct Tls {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

pub struct Opts {
    pub tls: Option<Tls>,
    /// `HOST:PORT` as written in the URL, for the `Host` header.
    pub authority: String,
    pub addr: SocketAddr,
    pub path: String,
    pub origin: Option<String>,
    pub mode: Mode,
    pub conns: usize,
    pub inflight: usize,
    pub size: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub count: Option<u64>,
    pub pid: Option<u32>,
    pub probe: bool,
    pub timeout: Duration,
    pub settle: Duration,
    /// Paced sending: one message per connection per interval.
    pub interval: Option<Duration>,
    /// `--socketio`.
    pub sio: bool,
    /// `--fanout`.
    pub fanout: Option<fanout::Kind>,
    pub rounds: usize,
    pub login: Option<String>,
    pub key: Option<String>,
    /// The channel (room) of the fan-out.
    pub channel: String,
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
}

fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = number(flag, v)?;
    Duration::try_from_secs_f64(s).map_err(|_| format!("{flag}: {v:?} is not a number of seconds"))
}

/// Parses the arguments; `Ok(None)` asks for the usage text.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Opts>, String> {
    let mut args = args.peekable();
    let mut url = None;
    let mut ca = None;
    let mut origin = None;
    let mut mode = Mode::Echo;
    let mut conns = None;
    let mut inflight = 1usize;
    let mut size = 64usize;
    let mut duration = Duration::from_secs(5);
    let mut warmup = Duration::from_millis(500);
    let mut count = None;
    let mut pid = None;
    let mut probe = false;
    let mut sio = false;
    let mut timeout = Duration::from_secs(60);
    let mut settle = Duration::from_secs(2);
    let mut interval = None;
    let mut fanout_kind = None;
    let mut rounds = 20usize;
    let mut login = None;
    let mut key = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut val = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => url = Some(val()?),
            "--ca" => ca = Some(val()?),
            "--origin" => origin = Some(val()?),
            "--mode" => {
                mode = match val()?.as_str() {
                    "echo" => Mode::Echo,
                    "hero" => Mode::Hero,
                    "connect" => Mode::Connect,
                    "idle" => Mode::Idle,
                    "fanout" => Mode::Fanout,
                    m => {
                        return Err(format!(
                            "--mode: {m:?} is not echo, hero, connect, idle or fanout"
                        ));
                    }
                }
            }
            "--conns" => conns = Some(number(&flag, &val()?)?),
            "--inflight" => inflight = number(&flag, &val()?)?,
            "--size" => size = number(&flag, &val()?)?,
            "--duration" => duration = seconds(&flag, &val()?)?,
            "--warmup" => warmup = seconds(&flag, &val()?)?,
            "--count" => count = Some(number(&flag, &val()?)?),
            "--pid" => pid = Some(number(&flag, &val()?)?),
            "--probe" if inline.is_none() => probe = true,
            "--socketio" if inline.is_none() => sio = true,
            "--timeout" => timeout = seconds(&flag, &val()?)?,
            "--settle" => settle = seconds(&flag, &val()?)?,
            "--fanout" => {
                fanout_kind = Some(match val()?.as_str() {
                    "palisade" => fanout::Kind::Palisade,
                    "ws" => fanout::Kind::Ws,
                    "socketio" => fanout::Kind::SocketIo,
                    "palisade-socketio" => fanout::Kind::PalisadeSocketIo,
                    k => {
                        return Err(format!(
                            "--fanout: {k:?} is not palisade, palisade-socketio, ws or socketio"
                        ));
                    }
                })
            }
            "--rounds" => rounds = number(&flag, &val()?)?,
            "--login" => login = Some(val()?),
            "--key" => key = Some(val()?),
            "--interval-ms" => {
                let ms: u64 = number(&flag, &val()?)?;
                interval = Some(Duration::from_millis(ms));
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("--url: expected ws://HOST:PORT/PATH")?;
    let tls = match scheme {
        "ws" => false,
        "wss" => true,
        _ => return Err("--url: the scheme must be ws or wss".into()),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = format!("/{path}");
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => h,
        _ => authority,
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<SocketAddr> = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_socket_addrs()
    } else {
        (host.as_str(), if tls { 443 } else { 80 }).to_socket_addrs()
    }
    .map_err(|e| format!("--url: {authority}: {e}"))?
    .collect();
    // Prefer IPv4: "localhost" servers usually listen on 127.0.0.1.
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or("--url: the host has no address")?;

    let conns = conns.unwrap_or(match mode {
        Mode::Connect => 8,
        Mode::Idle => 1000,
        _ => 50,
    });
    if conns == 0 || conns > 1_000_000 {
        return Err("--conns: 1 to 1000000".into());
    }
    if inflight == 0 || inflight > 65_536 {
        return Err("--inflight: 1 to 65536".into());
    }
    if size > 64 << 20 {
        return Err("--size: at most 64 MiB".into());
    }
    if duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    if timeout.is_zero() {
        return Err("--timeout must be more than 0".into());
    }
    if count == Some(0) {
        return Err("--count must be more than 0".into());
    }
    if mode == Mode::Idle && pid.is_none() {
        return Err("--mode idle needs --pid (the server's RSS is what it measures)".into());
    }
    let paced_ok = matches!(mode, Mode::Echo | Mode::Hero) && inflight == 1;
    if interval.is_some_and(|i| i.is_zero() || !paced_ok) {
        return Err(
            "--interval-ms needs --mode echo or hero, --inflight 1 and more than 0 ms".into(),
        );
    }
    if sio && !matches!(mode, Mode::Hero | Mode::Idle) {
        return Err("--socketio applies to hero and idle modes".into());
    }
    if probe && !matches!(mode, Mode::Echo | Mode::Hero) {
        return Err("--probe applies to echo and hero modes".into());
    }
    let tls = if tls {
        let ca = ca.ok_or("wss:// needs --ca FILE (the CA that signed the server certificate)")?;
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("--url: {host:?} is not a TLS server name: {e}"))?;
        Some(Tls {
            config: tls_config(&ca)?,
            name,
        })
    } else {
        None
    };
    Ok(Some(Opts {
        tls,
        authority: authority.to_owned(),
        addr,
        path,
        origin,
        mode,
        conns,
        inflight,
        size,
        duration,
        warmup,
        count,
        pid,
        probe,
        sio,
        timeout,
        settle,
        interval,
        fanout: fanout_kind,
        rounds: rounds.max(1),
        login,
        key,
        channel: "bench".into(),
    }))
}

/// A client configuration trusting the CAs in `ca`; sessions are never
/// resumed, so every connection pays a full handshake.
fn tls_config(ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e:?}"))? {
        roots
            .add(c.map_err(|e| format!("{ca}: {e:?}"))?)
            .map_err(|e| format!("{ca}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{ca}: no certificates"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{ca}: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RememberedChain {
            inner,
            verified: Mutex::new(None),
            signed: AtomicBool::new(false),
        }))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Verifies the server's certificate chain against the `--ca` roots and the
/// handshake signature with its key, then remembers the chain: a later
/// handshake presenting exactly the same certificates skips both checks.
/// Every connection still pays the full key exchange and record protection,
/// but not the client-only signature verifications, which would otherwise
/// make each client handshake dearer than the server's (an ECDSA verify
/// costs about twice the server's sign).
#[derive(Debug)]
struct RememberedChain {
    inner: Arc<WebPkiServerVerifier>,
    /// The last chain (end entity first) that passed verification.
    verified: Mutex<Option<Vec<Vec<u8>>>>,
    /// A handshake signature by the remembered end entity's key passed.
    signed: AtomicBool,
}

impl RememberedChain {
    fn remembered_signer(&self, cert: &CertificateDer<'_>) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.as_ref().is_some_and(|v| v[0] == cert[..])
    }

    fn signature<F>(
        &self,
        cert: &CertificateDer<'_>,
        verify: F,
    ) -> Result<HandshakeSignatureValid, rustls::Error>
    where
        F: FnOnce() -> Result<HandshakeSignatureValid, rustls::Error>,
    {
        let remembered = self.remembered_signer(cert);
        if remembered && self.signed.load(Ordering::Relaxed) {
            return Ok(HandshakeSignatureValid::assertion());
        }
        let ok = verify()?;
        if remembered {
            self.signed.store(true, Ordering::Relaxed);
        }
        Ok(ok)
    }
}

impl ServerCertVerifier for RememberedChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity).chain(intermediates);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.as_ref().is_some_and(|v| {
            v.len() == intermediates.len() + 1 && chain.clone().zip(v).all(|(c, v)| c[..] == v[..])
        }) {
            return Ok(ServerCertVerified::assertion());
        }
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        *verified = Some(chain.map(|c| c.to_vec()).collect());
        self.signed.store(false, Ordering::Relaxed);
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(cert, || {
            self.inner.verify_tls12_signature(message, cert, dss)
        })
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(cert, || {
            self.inner.verify_tls13_signature(message, cert, dss)
        })
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn main() {
    let o = match parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return;
        }
        Err(e) => {
            let synopsis: Vec<&str> = USAGE.lines().take_while(|l| !l.is_empty()).collect();
            eprintln!(
                "palisade-bench: {e}\n{}\n(--help for details)",
                synopsis.join("\n")
            );
            std::process::exit(2);
        }
    };
    sys::keep_heap();
    let nofile = sys::raise_nofile();
    let want = o.conns as u64 + u64::from(o.probe) + 16;
    if nofile != 0 && nofile < want {
        eprintln!(
            "palisade-bench: warning: the open file limit ({nofile}) is below the {want} this run needs"
        );
    }
    if o.mode == Mode::Fanout {
        match fanout::run(&o) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("palisade-bench: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let probe = match o.probe.then(|| probe::start(&o)).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("palisade-bench: {e}");
            std::process::exit(1);
        }
    };
    let mut r = match engine::run(&o) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("palisade-bench: {e}");
            std::process::exit(1);
        }
    };
    probe::WINDOW.store(2, Ordering::Relaxed);
    if let Some(p) = probe {
        match p.join() {
            Ok(Ok(hist)) => r.probe = Some(hist),
            Ok(Err(e)) => {
                eprintln!("palisade-bench: {e}");
                r.errors += 1;
            }
            Err(_) => {
                eprintln!("palisade-bench: the probe thread panicked");
                r.errors += 1;
            }
        }
    }
    let _ = writeln!(std::io::stdout(), "{}", report_line(&o, &r));
    let measured = match o.mode {
        Mode::Idle => r.pongs > 0,
        _ => r.counted > 0,
    };
    if r.errors > 0 || !measured {
        std::process::exit(1);
    }
}

fn us(ns: u64) -> u64 {
    (ns + 500) / 1000
}

fn report_line(o: &Opts, r: &engine::Report) -> String {
    use std::fmt::Write as _;
    let mut s = format!("mode={} tls={}", o.mode.name(), o.tls.is_some());
    if o.sio {
        s.push_str(" socketio=true");
    }
    let w = r.window_s;
    let per_s = |n: f64| if w > 0.0 { n / w } else { 0.0 };
    match o.mode {
        Mode::Fanout => unreachable!("fanout::run reports itself"),
        Mode::Idle => {
            let before = r.rss_before_kib.unwrap_or(0);
            // 0 when the run ended before the connections settled.
            let after = r.rss_after_kib.unwrap_or(0);
            let per_conn = match r.rss_after_kib {
                Some(after) => (after as i64 - before as i64) * 1024 / o.conns as i64,
                None => 0,
            };
            let _ = write!(
                s,
                " conns={} rss_before_kib={before} rss_after_kib={after} rss_per_conn_bytes={per_conn} pongs={} errors={}",
                o.conns, r.pongs, r.errors
            );
            return s;
        }
        Mode::Connect => {
            let _ = write!(
                s,
                " conns={} window_s={w:.2} cycles={} rate={:.0}",
                o.conns,
                r.counted,
                per_s(r.counted as f64)
            );
        }
        Mode::Echo | Mode::Hero => {
            let _ = write!(s, " conns={} inflight={}", o.conns, o.inflight);
            if o.mode == Mode::Echo {
                let _ = write!(s, " size={}", o.size);
            }
            let _ = write!(
                s,
                " window_s={w:.2} round_trips={} rate={:.0} bytes_per_s={:.0}",
                r.counted,
                per_s(r.counted as f64),
                per_s(r.counted as f64 * r.bytes_per_round_trip as f64)
            );
        }
    }
    let _ = write!(
        s,
        " p50_us={} p99_us={} max_us={} errors={}",
        us(r.hist.quantile(0.5)),
        us(r.hist.quantile(0.99)),
        us(r.hist.max()),
        r.errors
    );
    if let Some(cpu) = r.server_cpu_s {
        let _ = write!(s, " server_cpu_s={cpu:.3} server_util={:.3}", per_s(cpu));
    }
    let _ = write!(s, " gen_util={:.3}", per_s(r.gen_cpu_s));
    if let Some(i) = o.interval {
        let _ = write!(s, " interval_ms={} late={}", i.as_millis(), r.late);
    }
    let per_cpu = o.mode == Mode::Connect || o.interval.is_some() || o.sio;
    if let (true, Some(cpu)) = (per_cpu, r.server_cpu_s) {
        let per = if cpu > 0.0 {
            r.counted as f64 / cpu
        } else {
            0.0
        };
        let _ = write!(s, " per_server_cpu_s={per:.0}");
    }
    if let Some(p) = &r.probe {
        let _ = write!(
            s,
            " probe_p50_us={} probe_p99_us={} probe_max_us={}",
            us(p.quantile(0.5)),
            us(p.quantile(0.99)),
            us(p.max())
        );
    }
    s
}
