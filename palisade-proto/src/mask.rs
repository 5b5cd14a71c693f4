//! Payload masking (RFC 6455 §5.3).
//!
//! Masking is an XOR with a 4-byte key that repeats over the payload. The
//! key position carries over between calls so a payload that arrives in
//! pieces can be unmasked in place as each piece arrives.

/// XORs `buf` in place with `key`, starting at key position `offset` (0..4).
///
/// Returns the key position for the byte after `buf`. Applying the same mask
/// twice restores the input (the operation is an involution).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let offset = offset & 3;
    mask_words(buf, rotate(key, offset));
    (offset + buf.len()) & 3
}

/// Unmasks a whole payload (key position 0) in place and reports whether
/// every unmasked byte is ASCII, which makes it valid UTF-8 without a
/// second pass over it.
pub fn unmask_is_ascii(buf: &mut [u8], key: [u8; 4]) -> bool {
    mask_words(buf, key) & 0x8080_8080_8080_8080 == 0
}

/// XORs `buf` with `rotated` repeated, 8 bytes at a time (a loop the
/// compiler vectorises); returns the OR of every unmasked byte, spread
/// over a word (bit 7 of some byte is set if any unmasked byte is 0x80 or
/// above).
#[inline(always)]
fn mask_words(buf: &mut [u8], rotated: [u8; 4]) -> u64 {
    // The key over 8 bytes, from its 4-byte word: built byte by byte it
    // costs more than unmasking a short message.
    let key = u64::from(u32::from_ne_bytes(rotated));
    let wide = key | (key << 32);
    let mut seen = 0u64;
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word: &mut [u8; 8] = chunk.try_into().expect("8 bytes");
        let x = u64::from_ne_bytes(*word) ^ wide;
        seen |= x;
        *word = x.to_ne_bytes();
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i & 3];
        seen |= u64::from(*byte);
    }
    seen
}

fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    [
        key[offset & 3],
        key[(offset + 1) & 3],
        key[(offset + 2) & 3],
        key[(offset + 3) & 3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_bytewise_definition_at_every_offset_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for offset in 0..4 {
            for len in 0..40 {
                let mut a: Vec<u8> = (0..len as u8).collect();
                let mut b = a.clone();
                let next = apply_mask(&mut a, key, offset);
                naive(&mut b, key, offset);
                assert_eq!(a, b, "offset {offset} len {len}");
                assert_eq!(next, (offset + len) % 4);
            }
        }
    }

    #[test]
    fn unmask_is_ascii_unmasks_and_finds_any_high_byte() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut masked = plain.clone();
            naive(&mut masked, key, 0);
            let mut buf = masked.clone();
            assert!(unmask_is_ascii(&mut buf, key), "len {len}");
            assert_eq!(buf, plain);
            // One byte at or above 0x80 anywhere, in a word or the tail.
            for at in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut plain = plain.clone();
                    plain[at] = high;
                    let mut buf = plain.clone();
                    naive(&mut buf, key, 0);
                    assert!(!unmask_is_ascii(&mut buf, key), "len {len} at {at}");
                    assert_eq!(buf, plain);
                }
            }
        }
    }

    #[test]
    fn split_application_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for cut in 0..data.len() {
            let mut split = data.clone();
            let (a, b) = split.split_at_mut(cut);
            let off = apply_mask(a, key, 0);
            apply_mask(b, key, off);
            assert_eq!(split, whole);
        }
    }

    #[test]
    fn rfc_5_7_masked_hello() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
