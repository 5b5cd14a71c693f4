//! Frame header decoding and encoding (RFC 6455 §5.2).
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

use alloc::vec::Vec;

use super::error::ProtocolError;

/// The longest possible header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// Frame opcodes (§5.2, §11.8).
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// Text data frame.
    pub const TEXT: u8 = 0x1;
    /// Binary data frame.
    pub const BINARY: u8 = 0x2;
    /// Connection close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;

    /// Whether `op` is a control opcode (§5.5: the top bit of the nibble).
    pub const fn is_control(op: u8) -> bool {
        op & 0x8 != 0
    }

    /// Whether `op` is one of the six opcodes RFC 6455 defines.
    pub const fn is_known(op: u8) -> bool {
        matches!(op, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA)
    }
}

/// A decoded frame header, before any check against the protocol state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1–RSV3 as the low three bits.
    pub rsv: u8,
    /// Opcode (4 bits).
    pub opcode: u8,
    /// Masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Announced payload length.
    pub len: u64,
}

/// Length of the header that starts with `b0 b1` (only the second byte matters).
pub const fn header_len(second_byte: u8) -> usize {
    let ext = match second_byte & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second_byte & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Decodes a header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of the header, and the header
/// with its length in bytes otherwise. Fails for a 64-bit length with the
/// most significant bit set and for a length not in its minimal encoding
/// (both §5.2); every other check needs protocol state and lives in the
/// connection.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let n = header_len(b1);
    if buf.len() < n {
        return Ok(None);
    }
    let (len, mut pos) = match b1 & 0x7f {
        126 => {
            let len = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
            // §5.2: "the minimal number of bytes MUST be used to encode the
            // length": the 16-bit form is for 126 to 65,535.
            if len < 126 {
                return Err(ProtocolError::NonMinimalLength);
            }
            (len, 4)
        }
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            // §5.2: "the most significant bit MUST be 0".
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthMsbSet);
            }
            // §5.2: the 64-bit form is for 65,536 and more.
            if len <= u64::from(u16::MAX) {
                return Err(ProtocolError::NonMinimalLength);
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(key)
    } else {
        None
    };
    debug_assert_eq!(pos, n);
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0x0f,
        mask,
        len,
    };
    Ok(Some((header, n)))
}

/// Encodes a header into `out`, returning how many bytes of it are used.
///
/// Uses the shortest length encoding (§5.2: "the minimal number of bytes
/// MUST be used to encode the length").
pub fn encode_header(
    fin: bool,
    opcode: u8,
    len: u64,
    mask: Option<[u8; 4]>,
    out: &mut [u8; MAX_HEADER_LEN],
) -> usize {
    out[0] = (u8::from(fin) << 7) | (opcode & 0x0f);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if len <= 125 {
        out[1] = mask_bit | len as u8;
        2
    } else if len <= u64::from(u16::MAX) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    if let Some(key) = mask {
        out[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

/// Appends an unmasked, unfragmented frame (the form a server sends) to `out`.
/// (Inlined always: it is on the path of every reply, and with several
/// callers the compiler stopped inlining it, at 20 instructions a message.)
#[inline(always)]
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    // Most messages are short: a two-byte header, written as it is.
    if payload.len() <= 125 {
        out.reserve(2 + payload.len());
        out.extend_from_slice(&[0x80 | (opcode & 0x0f), payload.len() as u8]);
        out.extend_from_slice(payload);
        return;
    }
    write_long_frame(out, opcode, payload);
}

/// [`write_frame`] for a payload over 125 bytes.
fn write_long_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(true, opcode, payload.len() as u64, None, &mut h);
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    fn decode(buf: &[u8]) -> (FrameHeader, usize) {
        decode_header(buf).unwrap().unwrap()
    }

    #[test]
    fn rfc_5_7_single_frame_unmasked_text() {
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = decode(&bytes);
        assert_eq!((h.fin, h.opcode, h.mask, h.len, n), (true, 1, None, 5, 2));
        let mut out = Vec::new();
        write_frame(&mut out, opcode::TEXT, b"Hello");
        assert_eq!(out, bytes);
    }

    #[test]
    fn rfc_5_7_single_frame_masked_text() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = decode(&bytes);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!((h.len, n), (5, 6));
        let mut payload = bytes[n..].to_vec();
        super::super::mask::apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn rfc_5_7_fragmented_unmasked_text() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        let (h1, _) = decode(&first);
        let (h2, _) = decode(&second);
        assert_eq!((h1.fin, h1.opcode, h1.len), (false, opcode::TEXT, 3));
        assert_eq!((h2.fin, h2.opcode, h2.len), (true, opcode::CONTINUATION, 2));
    }

    #[test]
    fn rfc_5_7_ping_and_masked_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, _) = decode(&ping);
        assert_eq!((h.opcode, h.len), (opcode::PING, 5));
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, _) = decode(&pong);
        assert_eq!((h.opcode, h.len, h.mask.is_some()), (opcode::PONG, 5, true));
    }

    #[test]
    fn rfc_5_7_256_bytes_and_64_kib_binary() {
        let (h, n) = decode(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.opcode, h.len, n), (opcode::BINARY, 256, 4));
        let (h, n) = decode(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.len, n), (65536, 10));
        let mut out = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(true, 2, 256, None, &mut out), 4);
        assert_eq!(out[..4], [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(encode_header(true, 2, 65536, None, &mut out), 10);
        assert_eq!(out[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn partial_headers_need_more() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(decode_header(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(decode(&full).1, 14);
    }

    #[test]
    fn length_msb_set_is_an_error() {
        let bytes = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(decode_header(&bytes), Err(ProtocolError::LengthMsbSet));
        let max = [
            0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
        ];
        assert_eq!(decode(&max).0.len, i64::MAX as u64);
    }

    #[test]
    fn lengths_must_use_the_minimal_encoding() {
        // §5.2: 16-bit form below 126, 64-bit form below 65,536.
        for len in [0u16, 5, 125] {
            let [hi, lo] = len.to_be_bytes();
            let bytes = [0x81, 0xfe, hi, lo, 1, 2, 3, 4];
            assert_eq!(
                decode_header(&bytes),
                Err(ProtocolError::NonMinimalLength),
                "{len}"
            );
        }
        assert_eq!(decode(&[0x81, 0xfe, 0, 126, 1, 2, 3, 4]).0.len, 126);
        for len in [0u64, 125, 126, 65535] {
            let mut bytes = vec![0x82, 0xff];
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&[1, 2, 3, 4]);
            assert_eq!(
                decode_header(&bytes),
                Err(ProtocolError::NonMinimalLength),
                "{len}"
            );
        }
        let mut bytes = vec![0x82, 0xff];
        bytes.extend_from_slice(&65536u64.to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(decode(&bytes).0.len, 65536);
    }

    #[test]
    fn rsv_and_opcode_bits() {
        let (h, _) = decode(&[0xf3, 0x80, 1, 2, 3, 4]);
        assert_eq!((h.fin, h.rsv, h.opcode), (true, 7, 3));
        assert!(opcode::is_control(0xB) && !opcode::is_known(0xB));
    }

    #[test]
    fn length_encoding_boundaries_round_trip() {
        for len in [0u64, 125, 126, 127, 65535, 65536, 1 << 32] {
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = encode_header(false, 0, len, Some([9, 8, 7, 6]), &mut out);
            let (h, m) = decode(&out[..n]);
            assert_eq!(
                (h.len, m, h.fin, h.mask),
                (len, n, false, Some([9, 8, 7, 6]))
            );
        }
    }
}
