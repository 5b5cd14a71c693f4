//! WebSocket wire pieces the generator needs: the upgrade request and its
//! response check, and masked client frames.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The upgrade request with a placeholder key, and the offset of the 24
/// base64 key characters to overwrite per connection.
pub fn request_template(path: &str, host: &str, origin: Option<&str>) -> (Vec<u8>, usize) {
    let mut s = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    );
    if let Some(o) = origin {
        s.push_str("Origin: ");
        s.push_str(o);
        s.push_str("\r\n");
    }
    s.push_str("Sec-WebSocket-Key: ");
    let at = s.len();
    s.push_str("AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    (s.into_bytes(), at)
}

/// A fresh `Sec-WebSocket-Key` for 16 random bytes.
pub fn key(random: &[u8; 16]) -> [u8; 24] {
    let mut out = [0u8; 24];
    let n = STANDARD
        .encode_slice(random, &mut out)
        .expect("24 bytes hold the base64 of 16");
    debug_assert_eq!(n, 24);
    out
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
pub fn accept(key: &[u8; 24]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    let mut out = [0u8; 28];
    let n = STANDARD
        .encode_slice(sha.finalize(), &mut out)
        .expect("28 bytes hold the base64 of 20");
    debug_assert_eq!(n, 28);
    out
}

/// The length of the response head in `buf` (through the blank line).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Checks a complete response head: `HTTP/1.1 101` and the right
/// `Sec-WebSocket-Accept`.
pub fn check_response(head: &[u8], accept: &[u8; 28]) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    if parts.next() != Some("HTTP/1.1") || parts.next() != Some("101") {
        return Err(format!("upgrade refused: {status:?}"));
    }
    let mut got = None;
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed response header {line:?}"));
        };
        if name.trim().eq_ignore_ascii_case("sec-websocket-accept") {
            got = Some(value.trim());
        }
    }
    match got {
        Some(v) if v.as_bytes() == accept => Ok(()),
        Some(v) => Err(format!(
            "wrong Sec-WebSocket-Accept {v:?} (expected {:?})",
            String::from_utf8_lossy(accept)
        )),
        None => Err("101 without Sec-WebSocket-Accept".into()),
    }
}

/// Appends a final masked client frame; returns the offset of its payload
/// from the start of the frame.
pub fn push_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let off = out.len() - start;
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    off
}

/// The length of a server frame header whose second byte is `b1`.
pub fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_example() {
        assert_eq!(
            &accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn response_check() {
        let a = accept(b"dGhlIHNhbXBsZSBub25jZQ==");
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSEC-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(head_end(ok), Some(ok.len()));
        assert!(check_response(ok, &a).is_ok());
        let no = b"HTTP/1.1 429 Too Many Requests\r\n\r\n";
        assert!(check_response(no, &a).unwrap_err().contains("429"));
    }

    #[test]
    fn masked_frame() {
        let mut out = Vec::new();
        let off = push_frame(OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d], &mut out);
        assert_eq!(off, 6);
        assert_eq!(
            out,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }
}
