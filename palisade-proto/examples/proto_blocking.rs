//! A WebSocket echo server on blocking `std::net` sockets with palisade-proto alone.
use palisade_proto::conn::{Event, WebSocket};
use palisade_proto::handshake::{self as hs, Accept, Decision};
use palisade_proto::{Limits, Stamp};
use std::io::{Error, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn serve(mut sock: TcpStream) -> std::io::Result<()> {
    let (limits, start, mut buf) = (Limits::default(), Instant::now(), vec![0; 65536]);
    let now = || Stamp::from_millis(start.elapsed().as_millis() as u64);
    let (mut head, mut n) = (hs::HeadReader::new(), sock.read(&mut buf)?);
    let taken = loop {
        match head.push(&buf[..n], limits.max_request_head_bytes).map_err(Error::other)? {
            (taken, Some(_)) => break taken,
            _ if n == 0 => return Ok(()),
            _ => n = sock.read(&mut buf)?,
        }
    };
    // The decision point: anyone may connect here (a real policy checks Origin and credentials).
    let mut anyone = |_: &hs::UpgradeRequest| Decision::Accept(Accept::new(None, ()));
    let mut out = Vec::new();
    if hs::answer(head.head(), limits.max_headers, &mut anyone, &mut out).is_err() {
        return sock.write_all(&out); // 400, 405, 426: the refusal with its status
    }
    let (mut ws, mut input) = (WebSocket::new(now(), out), buf[taken..n].to_vec());
    while !ws.is_finished() {
        ws.handle_input(now(), &mut input, &limits, |event, tx| match event {
            Event::Text(text) => drop(tx.send_text(text)),
            Event::Binary(data) => drop(tx.send_binary(data)),
            _ => {} // the core answers pings and finishes the close by itself
        });
        sock.write_all(ws.output())?;
        ws.consume_output(ws.output().len());
        let n = if ws.is_finished() { 0 } else { sock.read(&mut buf)? };
        (n == 0).then(|| ws.handle_eof()); // the peer is gone, or we are done
        input = buf[..n].to_vec();
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(std::env::args().nth(1).as_deref().unwrap_or("[::1]:8080"))?;
    eprintln!("listening on {}", listener.local_addr()?);
    for sock in listener.incoming().flatten() {
        std::thread::spawn(move || serve(sock));
    }
    Ok(())
}
