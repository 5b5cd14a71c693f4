//! Property tests of the frame codec (proptest): header encode → decode
//! round trips for every length around the 125/126/65535/65536 boundaries,
//! masking is an involution however the buffer is cut, close payloads round
//! trip, and a whole frame survives masking, splitting and decoding by the
//! connection.

use palisade_proto::close::{encode_close_payload, parse_close_payload};
use palisade_proto::conn::{Event, WebSocket};
use palisade_proto::frame::{MAX_HEADER_LEN, decode_header, encode_header};
use palisade_proto::mask::apply_mask;
use palisade_proto::{Limits, Stamp};
use proptest::prelude::*;

/// Lengths on and around each encoding boundary, plus anything else.
fn boundary_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..=3).prop_map(|d| 125 - d),
        (0u64..=3).prop_map(|d| 126 + d),
        (0u64..=3).prop_map(|d| 65535 - d),
        (0u64..=3).prop_map(|d| 65536 + d),
        Just((1u64 << 63) - 1),
        any::<u64>().prop_map(|l| l >> 1),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn header_round_trip(
        fin: bool,
        opcode in 0u8..16,
        len in boundary_len(),
        mask in proptest::option::of(any::<[u8; 4]>()),
    ) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = encode_header(fin, opcode, len, mask, &mut buf);
        // §5.2: the minimal length encoding.
        let expected = match len {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        } + if mask.is_some() { 4 } else { 0 };
        prop_assert_eq!(n, expected);
        let (h, m) = decode_header(&buf[..n]).unwrap().unwrap();
        prop_assert_eq!(m, n);
        prop_assert_eq!((h.fin, h.opcode, h.len, h.mask, h.rsv), (fin, opcode, len, mask, 0));
        // Any prefix is "need more", never an error or a wrong header.
        for cut in 0..n {
            prop_assert!(decode_header(&buf[..cut]).unwrap().is_none());
        }
    }

    #[test]
    fn masking_is_an_involution_however_it_is_cut(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        key: [u8; 4],
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.push(data.len());
        points.sort_unstable();
        let (mut at, mut offset) = (0, 0);
        for p in points {
            offset = apply_mask(&mut pieces[at..p], key, offset);
            at = p;
        }
        prop_assert_eq!(&whole, &pieces);
        apply_mask(&mut whole, key, 0);
        prop_assert_eq!(whole, data);
    }

    #[test]
    fn close_payload_round_trip(
        code in prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999],
        reason in "\\PC{0,40}",
    ) {
        let mut buf = [0u8; 125];
        let n = encode_close_payload(code, &reason, &mut buf);
        prop_assert!(n <= 125);
        let (c, r) = parse_close_payload(&buf[..n]).unwrap().unwrap();
        prop_assert_eq!(c, code);
        // The reason is kept whole when it fits, cut at a char boundary otherwise.
        prop_assert!(reason.starts_with(r));
        if reason.len() <= 123 {
            prop_assert_eq!(r, reason.as_str());
        }
    }

    #[test]
    fn a_masked_frame_decodes_to_its_payload_however_it_arrives(
        len in prop_oneof![0usize..=130, 65530usize..=65536],
        key: [u8; 4],
        cuts in proptest::collection::vec(any::<usize>(), 0..5),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut frame = vec![0u8; MAX_HEADER_LEN];
        let n = encode_header(true, 0x2, len as u64, Some(key), (&mut frame[..MAX_HEADER_LEN]).try_into().unwrap());
        frame.truncate(n);
        let mut masked = payload.clone();
        apply_mask(&mut masked, key, 0);
        frame.extend_from_slice(&masked);

        let limits = Limits::default();
        let now = Stamp::EPOCH;
        let mut ws = WebSocket::new(now, Vec::new());
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (frame.len() + 1)).collect();
        points.push(frame.len());
        points.sort_unstable();
        let mut got = Vec::new();
        let mut at = 0;
        for p in points {
            let mut piece = frame[at..p].to_vec();
            ws.handle_input(now, &mut piece, &limits, |e, _| {
                if let Event::Binary(b) = e {
                    got.push(b.to_vec());
                }
            });
            at = p;
        }
        prop_assert_eq!(got, vec![payload]);
    }
}

/// A frame whose length uses more bytes than needed (RFC 6455 §5.2).
fn non_minimal_frame(opcode: u8, payload: &[u8], wide: bool, key: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    if wide {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&key);
    let mut masked = payload.to_vec();
    apply_mask(&mut masked, key, 0);
    frame.extend_from_slice(&masked);
    frame
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// §5.2: "the minimal number of bytes MUST be used to encode the
    /// length". A text, binary or ping frame with a 16-bit length below 126
    /// or a 64-bit length below 65,536 is a protocol error (close 1002),
    /// whether it arrives whole (the fast path) or in pieces (the decoder),
    /// and nothing of it is delivered.
    #[test]
    fn a_length_in_more_bytes_than_needed_is_closed_1002(
        opcode in prop_oneof![Just(0x1u8), Just(0x2u8), Just(0x9u8)],
        len in prop_oneof![0usize..=125, 126usize..=200, 65530usize..=65535],
        wide: bool,
        key: [u8; 4],
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        // A 16-bit length can only be non-minimal below 126; control
        // frames carry at most 125 bytes.
        let len = if !wide { len % 126 } else { len };
        let len = if opcode == 0x9 { len % 126 } else { len };
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let frame = non_minimal_frame(opcode, &payload, wide, key);
        let hdr = decode_header(&frame);
        prop_assert_eq!(hdr, Err(palisade_proto::error::ProtocolError::NonMinimalLength));

        let limits = Limits::default();
        let now = Stamp::EPOCH;
        let mut ws = WebSocket::new(now, Vec::new());
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (frame.len() + 1)).collect();
        points.push(frame.len());
        points.sort_unstable();
        let mut delivered = 0;
        let mut at = 0;
        for p in points {
            let mut piece = frame[at..p].to_vec();
            ws.handle_input(now, &mut piece, &limits, |e, _| {
                if matches!(e, Event::Text(_) | Event::Binary(_) | Event::Ping(_)) {
                    delivered += 1;
                }
            });
            at = p;
        }
        prop_assert_eq!(delivered, 0);
        let info = ws.close_info();
        prop_assert_eq!(info.map(|i| i.code), Some(1002));
        // The close frame the server sent says 1002 too.
        let out = ws.output();
        prop_assert!(out.len() >= 4 && out[0] == 0x88 && out[2..4] == [0x03, 0xea], "{:?}", out);
    }
}
