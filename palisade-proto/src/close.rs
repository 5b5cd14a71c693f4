//! Close frame payloads (RFC 6455 §5.5.1, §7.4).

use super::error::ProtocolError;

/// Largest close reason in bytes: 125 bytes of control payload less the code.
pub const MAX_REASON_LEN: usize = 123;

/// Whether a peer may send `code` in a close frame.
///
/// RFC 6455 §7.4.1 defines 1000–1003 and 1007–1011; 1004 is reserved and
/// 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close control
/// frame". 1012–1014 are registered in the IANA WebSocket Close Code
/// registry (§11.7) and are accepted. 1016–2999 are reserved for future
/// revisions and refused (the strict reading of §7.4.2). 3000–3999 are
/// registered by IANA and 4000–4999 are private use; both are accepted.
pub const fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close payload into `(code, reason)`; `None` for an empty payload.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        // §5.5.1: a body, when present, starts with a 2-byte status code.
        1 => Err(ProtocolError::InvalidClosePayload),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_received_code(code) {
                return Err(ProtocolError::InvalidCloseCode);
            }
            // §5.5.1: the reason is UTF-8 (a 1007 when it is not).
            let reason =
                core::str::from_utf8(&payload[2..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Writes a close payload for `code` and `reason` into `out`, cutting the
/// reason at a character boundary to at most [`MAX_REASON_LEN`] bytes.
pub fn encode_close_payload(code: u16, reason: &str, out: &mut [u8; 125]) -> usize {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[..2].copy_from_slice(&code.to_be_bytes());
    out[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    2 + end
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    #[test]
    fn valid_and_invalid_codes() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(is_valid_received_code(c), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_received_code(c), "{c}");
        }
    }

    #[test]
    fn payload_rules() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(
            parse_close_payload(&[0x03]),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(parse_close_payload(&[0x03, 0xe8]), Ok(Some((1000, ""))));
        assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(Some((1000, "bye"))));
        assert_eq!(
            parse_close_payload(&[0x03, 0xed]),
            Err(ProtocolError::InvalidCloseCode)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn reason_is_cut_at_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let mut out = [0u8; 125];
        let n = encode_close_payload(1001, &reason, &mut out);
        assert!(n <= 125);
        assert_eq!(n - 2, 122);
        assert!(core::str::from_utf8(&out[2..n]).is_ok());
        assert_eq!(parse_close_payload(&out[..n]).unwrap().unwrap().0, 1001);
    }
}
