//! `--probe`: a lone client on its own thread and blocking socket, one
//! message in flight, measured while the event loop floods the server.
//!
//! On its own thread the probe is woken by the kernel as soon as its reply
//! arrives, instead of waiting for the flooding loop to come round to it:
//! its round trip is the server's latency under load, not the generator's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::hist::Hist;
use crate::ws::{self, OP_TEXT};
use crate::{Mode, Opts};

/// Set by the event loop: 0 before the window, 1 while measuring, 2 after.
pub static WINDOW: AtomicU8 = AtomicU8::new(0);

/// Starts the probe: connects and upgrades now, then sends one message at a
/// time until the window ends. The thread returns its histogram, or the
/// first error.
pub fn start(o: &Opts) -> Result<thread::JoinHandle<Result<Hist, String>>, String> {
    if o.tls.is_some() {
        return Err("--probe needs a ws:// URL".into());
    }
    let mut s = TcpStream::connect(o.addr).map_err(|e| format!("probe: connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("probe: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("probe: {e}"))?;
    let (mut request, at) = ws::request_template(&o.path, &o.authority, o.origin.as_deref());
    let key = ws::key(&[7; 16]);
    request[at..at + 24].copy_from_slice(&key);
    s.write_all(&request).map_err(|e| format!("probe: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    let head = loop {
        let n = s
            .read(&mut buf[have..])
            .map_err(|e| format!("probe: {e}"))?;
        if n == 0 {
            return Err("probe: closed during the upgrade".into());
        }
        have += n;
        if let Some(end) = ws::head_end(&buf[..have]) {
            break end;
        }
        if have == buf.len() {
            return Err("probe: response head too long".into());
        }
    };
    ws::check_response(&buf[..head], &ws::accept(&key)).map_err(|e| format!("probe: {e}"))?;
    let rest = buf[head..have].to_vec();
    let (message, reply): (Vec<u8>, Vec<u8>) = match o.mode {
        Mode::Hero => (
            crate::engine::HERO_REQUEST.to_vec(),
            crate::engine::HERO_REPLY.to_vec(),
        ),
        _ => {
            let p: Vec<u8> = (0..o.size).map(|i| b'a' + (i % 26) as u8).collect();
            (p.clone(), p)
        }
    };
    let mut frame = Vec::new();
    ws::push_frame(OP_TEXT, &message, [1, 2, 3, 4], &mut frame);
    Ok(thread::spawn(move || run(s, rest, &frame, &reply)))
}

fn run(mut s: TcpStream, mut pending: Vec<u8>, frame: &[u8], reply: &[u8]) -> Result<Hist, String> {
    let mut hist = Hist::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let window = WINDOW.load(Ordering::Relaxed);
        if window == 2 {
            return Ok(hist);
        }
        let sent = Instant::now();
        s.write_all(frame)
            .map_err(|e| format!("probe: write: {e}"))?;
        // One unfragmented, unmasked text frame back, exactly the reply.
        let header = if reply.len() < 126 { 2 } else { 4 };
        let want = header + reply.len();
        while pending.len() < want {
            let n = s.read(&mut buf).map_err(|e| format!("probe: read: {e}"))?;
            if n == 0 {
                return Err("probe: the server closed the connection".into());
            }
            pending.extend_from_slice(&buf[..n]);
        }
        let ok = pending[0] == 0x80 | OP_TEXT
            && ws::header_len(pending[1]) == header
            && &pending[header..want] == reply;
        if !ok {
            return Err(format!(
                "probe: unexpected reply {:?}",
                String::from_utf8_lossy(&pending[..want.min(pending.len())])
            ));
        }
        pending.drain(..want);
        if window == 1 {
            hist.record(sent.elapsed().as_nanos() as u64);
        }
    }
}
