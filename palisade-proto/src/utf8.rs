//! Incremental UTF-8 validation (RFC 6455 §8.1, RFC 3629).
//!
//! Text payloads arrive in pieces: split across reads, across frames of a
//! fragmented message, and in the middle of a code point. The validator keeps
//! at most three bytes of an unfinished code point between calls and reports
//! an error at the first byte that cannot begin or continue a valid sequence,
//! so a bad message is refused before the rest of it arrives.

use core::fmt;

/// The input is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

/// Streaming validator; feed pieces in order, then call [`Utf8Validator::finish`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Utf8Validator {
            partial: [0; 4],
            len: 0,
        }
    }

    /// Forgets any unfinished code point.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Whether the text so far ends on a code point boundary.
    pub fn is_complete(&self) -> bool {
        self.len == 0
    }

    /// Validates the next piece of the text.
    ///
    /// Fails as soon as a byte cannot be part of valid UTF-8, even when the
    /// sequence it belongs to is not complete yet (e.g. `F4 90`, which would
    /// exceed U+10FFFF, fails at `90`).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Utf8Error> {
        while self.len > 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return Ok(());
            };
            self.partial[self.len as usize] = b;
            self.len += 1;
            bytes = rest;
            match core::str::from_utf8(&self.partial[..self.len as usize]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_some() => return Err(Utf8Error),
                Err(_) => {}
            }
        }
        match core::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            Err(e) => {
                let tail = &bytes[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the text: an unfinished code point is an error.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.len == 0;
        self.len = 0;
        if complete { Ok(()) } else { Err(Utf8Error) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    fn whole(bytes: &[u8]) -> bool {
        let mut v = Utf8Validator::new();
        v.feed(bytes).is_ok() && v.finish().is_ok()
    }

    const CASES: &[&[u8]] = &[
        b"",
        b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
        "κόσμε".as_bytes(),
        b"\xf0\x90\x80\x80",
        b"\xf4\x8f\xbf\xbf",
        b"\xef\xbf\xbf",
        b"\xed\x9f\xbf",
        b"\xee\x80\x80",
        b"\xf4\x90\x80\x80",
        b"\xed\xa0\x80",
        b"\xed\xbf\xbf",
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xf8\x88\x80\x80\xaf",
        b"\xfe",
        b"\xff",
        b"\x80",
        b"\xce\xba\xe1\xbd",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        b"\xc2",
        b"a\xf4",
    ];

    #[test]
    fn agrees_with_std_on_every_two_way_split() {
        for case in CASES {
            let expected = core::str::from_utf8(case).is_ok();
            assert_eq!(whole(case), expected, "{case:x?}");
            for cut in 0..=case.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&case[..cut]).is_ok()
                    && v.feed(&case[cut..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, expected, "{case:x?} cut at {cut}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        for case in CASES {
            let mut v = Utf8Validator::new();
            let ok = case.iter().all(|b| v.feed(&[*b]).is_ok()) && v.finish().is_ok();
            assert_eq!(ok, core::str::from_utf8(case).is_ok(), "{case:x?}");
        }
    }

    #[test]
    fn fails_at_first_bad_byte_before_sequence_ends() {
        // F4 90: the second byte already puts the code point above U+10FFFF.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xf4").is_ok());
        assert_eq!(v.feed(b"\x90"), Err(Utf8Error));
        // ED A0: a UTF-16 surrogate, refused at the second byte.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ab\xed\xa0"), Err(Utf8Error));
        // An invalid byte in the middle of a long valid prefix.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"hello\xffworld"), Err(Utf8Error));
    }

    #[test]
    fn truncated_code_point_fails_at_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert!(!v.is_complete());
        assert_eq!(v.finish(), Err(Utf8Error));
    }
}
