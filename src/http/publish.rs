//! The client side of `POST /api/publish`, for `palisade publish`: one
//! blocking request over plain TCP or TLS.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde_json::value::RawValue;

/// Publishes `data` (JSON text) on `channel` through the publish API of the
/// server at `url` (`http://host:port` or `https://host:port`) with the API
/// key `key`, trusting only the certificates in `ca` for https. Returns the
/// answer's status and body (`{"delivered": n}` when it is 200).
pub fn publish(
    url: &str,
    key: &str,
    channel: &str,
    data: &str,
    ca: Option<&Path>,
) -> Result<(u16, String), String> {
    let data: &RawValue =
        serde_json::from_str(data).map_err(|e| format!("the data is not JSON: {e}"))?;
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
    };
    let authority = rest.trim_end_matches('/');
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>().map_err(|_| format!("{url:?}: bad port"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("{url}: {e}"))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let mut stream: Box<dyn crate::tls::ReadWrite> = if tls {
        let ca = ca.ok_or("https needs --cacert FILE (the certificates to trust)")?;
        crate::tls::client(tcp, host, ca)?
    } else {
        Box::new(tcp)
    };
    let body = format!(
        r#"{{"channel":{},"data":{}}}"#,
        serde_json::to_string(channel).expect("a string serializes"),
        data.get()
    );
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| format!("{url}: {e}"))?;
    let mut answer = Vec::new();
    // A TLS peer that closes without close_notify still sent its answer.
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: no HTTP answer"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}
