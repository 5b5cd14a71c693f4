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
    let rotated = rotate(key, offset);
    let wide = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&x.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i & 3];
    }
    (offset + buf.len()) & 3
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
