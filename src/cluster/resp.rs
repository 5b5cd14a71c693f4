//! RESP2, the Redis serialization protocol, without I/O: commands are
//! encoded as arrays of bulk strings; replies are decoded from the bytes
//! read so far, `Ok(None)` while one is incomplete (like httparse's
//! `Partial`), with every length, count and depth bounded so that a
//! server (or whatever answers on its port) cannot make the loop allocate
//! without limit or recurse deeply.
//!
//! The loop that talks to Redis (issue 19, to come) feeds it what `recv`
//! returned and takes whole replies: pub/sub `message` pushes are arrays
//! of bulk strings.

use std::fmt;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo` (`None`: `$-1`, the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...` (`None`: `*-1`, the null array).
    Array(Option<Vec<Reply>>),
}

/// Why bytes are not RESP (the connection cannot go on after one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// Not the protocol: the reason.
    Protocol(&'static str),
    /// A length, count or depth over [`Limits`].
    TooLarge,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Protocol(why) => write!(f, "not RESP: {why}"),
            RespError::TooLarge => f.write_str("a RESP reply over the limits"),
        }
    }
}

impl std::error::Error for RespError {}

/// Bounds on what a reply may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk or simple string, in bytes.
    pub max_bulk: usize,
    /// Most elements of one array.
    pub max_elements: usize,
    /// Deepest nesting of arrays (a pub/sub message is 1).
    pub max_depth: usize,
}

impl Default for Limits {
    /// For the default message cap (64 KiB): see [`Limits::for_messages`].
    fn default() -> Self {
        Limits::for_messages(64 * 1024)
    }
}

impl Limits {
    /// Bounds for a cluster whose publications are at most
    /// `max_message_bytes` (`limits.max_message_bytes`): strings up to
    /// twice that (the adapter's envelope, and MessagePack of JSON is never
    /// much larger than the JSON), at least 1 MiB, at most 256 MiB; the
    /// replies the loop asks for are never deep.
    pub fn for_messages(max_message_bytes: usize) -> Limits {
        Limits {
            max_bulk: max_message_bytes
                .saturating_mul(2)
                .clamp(1 << 20, 256 << 20),
            max_elements: 1024,
            max_depth: 4,
        }
    }
}

/// Appends the command `args` (`["PUBLISH", channel, payload]`) as an
/// array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Decodes one reply from the start of `buf`: the reply and the bytes it
/// took, `None` when `buf` holds only part of one.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Reply, usize)>, RespError> {
    let mut pos = 0;
    match reply(buf, &mut pos, limits, 0)? {
        Some(r) => Ok(Some((r, pos))),
        None => Ok(None),
    }
}

fn reply(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<Reply>, RespError> {
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    let Some(line) = line(buf, *pos + 1, limits)? else {
        return Ok(None);
    };
    let after_line = *pos + 1 + line.len() + 2;
    let text = || {
        std::str::from_utf8(line)
            .map(str::to_owned)
            .map_err(|_| RespError::Protocol("a simple string that is not UTF-8"))
    };
    let r = match kind {
        b'+' => Reply::Simple(text()?),
        b'-' => Reply::Error(text()?),
        b':' => Reply::Integer(integer(line)?),
        b'$' => {
            let n = integer(line)?;
            if n == -1 {
                *pos = after_line;
                return Ok(Some(Reply::Bulk(None)));
            }
            let n = usize::try_from(n).map_err(|_| RespError::Protocol("a negative length"))?;
            if n > limits.max_bulk {
                return Err(RespError::TooLarge);
            }
            let end = after_line + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::Protocol("a bulk string not followed by CRLF"));
            }
            *pos = end + 2;
            return Ok(Some(Reply::Bulk(Some(buf[after_line..end].to_vec()))));
        }
        b'*' => {
            let n = integer(line)?;
            if n == -1 {
                *pos = after_line;
                return Ok(Some(Reply::Array(None)));
            }
            let n = usize::try_from(n).map_err(|_| RespError::Protocol("a negative count"))?;
            if n > limits.max_elements || depth >= limits.max_depth {
                return Err(RespError::TooLarge);
            }
            let mut at = after_line;
            let mut items = Vec::with_capacity(n.min(16));
            for _ in 0..n {
                match reply(buf, &mut at, limits, depth + 1)? {
                    Some(r) => items.push(r),
                    None => return Ok(None),
                }
            }
            *pos = at;
            return Ok(Some(Reply::Array(Some(items))));
        }
        _ => return Err(RespError::Protocol("an unknown reply type")),
    };
    *pos = after_line;
    Ok(Some(r))
}

/// The line starting at `from`, without its CRLF (`None`: not all here).
fn line<'b>(buf: &'b [u8], from: usize, limits: &Limits) -> Result<Option<&'b [u8]>, RespError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r') {
        Some(i) => match rest.get(i + 1) {
            Some(b'\n') => Ok(Some(&rest[..i])),
            Some(_) => Err(RespError::Protocol("CR without LF")),
            None => Ok(None),
        },
        None if rest.len() > limits.max_bulk => Err(RespError::TooLarge),
        None => Ok(None),
    }
}

fn integer(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 20)
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::Protocol("not an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
        decode(bytes, &Limits::default())
    }

    fn bulk(b: &[u8]) -> Reply {
        Reply::Bulk(Some(b.to_vec()))
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"PUBLISH", b"palisade:lookups", b"{\"a\":1}"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$16\r\npalisade:lookups\r\n$7\r\n{\"a\":1}\r\n"
        );
        encode(&mut out, &[]);
        assert!(out.ends_with(b"*0\r\n"));
    }

    #[test]
    fn every_reply_type() {
        assert_eq!(one(b"+OK\r\n"), Ok(Some((Reply::Simple("OK".into()), 5))));
        assert_eq!(
            one(b"-ERR wrong\r\n"),
            Ok(Some((Reply::Error("ERR wrong".into()), 12)))
        );
        assert_eq!(one(b":-42\r\n"), Ok(Some((Reply::Integer(-42), 6))));
        assert_eq!(one(b"$3\r\nfoo\r\n"), Ok(Some((bulk(b"foo"), 9))));
        assert_eq!(one(b"$0\r\n\r\n"), Ok(Some((bulk(b""), 6))));
        assert_eq!(one(b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(one(b"*-1\r\n"), Ok(Some((Reply::Array(None), 5))));
        assert_eq!(one(b"*0\r\n"), Ok(Some((Reply::Array(Some(vec![])), 4))));
        // A pub/sub push, and what follows it stays for the next call.
        let push = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n+next\r\n";
        let (r, n) = one(push).unwrap().unwrap();
        assert_eq!(
            r,
            Reply::Array(Some(vec![bulk(b"message"), bulk(b"ch"), bulk(b"hello")]))
        );
        assert_eq!(&push[n..], b"+next\r\n");
        // Binary-safe bulk strings: CR and LF inside are data.
        assert_eq!(one(b"$4\r\na\r\nb\r\n"), Ok(Some((bulk(b"a\r\nb"), 10))));
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let push = b"*2\r\n$9\r\nsubscribe\r\n:1\r\n";
        for end in 0..push.len() {
            assert_eq!(one(&push[..end]), Ok(None), "{end} bytes");
        }
        assert!(one(push).unwrap().is_some());
    }

    #[test]
    fn not_resp_is_an_error_and_limits_hold() {
        assert_eq!(
            one(b"?\r\n"),
            Err(RespError::Protocol("an unknown reply type"))
        );
        assert_eq!(one(b":x\r\n"), Err(RespError::Protocol("not an integer")));
        assert_eq!(one(b"+a\rb\r\n"), Err(RespError::Protocol("CR without LF")));
        assert_eq!(
            one(b"$3\r\nfooX\r\n"),
            Err(RespError::Protocol("a bulk string not followed by CRLF"))
        );
        assert_eq!(
            one(b"$-2\r\n"),
            Err(RespError::Protocol("a negative length"))
        );
        assert_eq!(one(b"$99999999999\r\n"), Err(RespError::TooLarge));
        assert_eq!(one(b"*99999\r\n"), Err(RespError::TooLarge));
        assert_eq!(
            one(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
            Err(RespError::TooLarge)
        );
        let small = Limits {
            max_bulk: 8,
            ..Limits::default()
        };
        assert_eq!(decode(b"+0123456789", &small), Err(RespError::TooLarge));
        assert_eq!(decode(b"+01234567", &small), Ok(None));
    }
}
