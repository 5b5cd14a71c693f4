//! MessagePack without I/O, as far as the Socket.IO Redis adapter's
//! messages need it: to and from `serde_json::Value`.
//!
//! The adapter (`@socket.io/redis-adapter`, with its default `notepack.io`
//! parser) writes JavaScript values: `undefined` and `null` as nil, whole
//! numbers in the smallest integer form, other numbers as float 64, and
//! `Buffer`s as bin. JSON has no bytes, so bin (and any extension type but
//! the legacy `undefined`) decodes to [`MsgpackError::Unsupported`]: the
//! caller skips that message. Lengths, counts and depth are bounded, like
//! [`super::resp`], so no message can make the loop allocate without limit
//! or recurse deeply.

use serde_json::{Map, Number, Value};
use std::fmt;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgpackError {
    /// The bytes end inside a value.
    Truncated,
    /// Not MessagePack (or not UTF-8 where a string must be): the reason.
    Invalid(&'static str),
    /// A valid value JSON cannot hold (bytes, an extension type).
    Unsupported(&'static str),
    /// Deeper than the limit.
    TooDeep,
    /// Bytes left after the value.
    TrailingBytes,
}

impl fmt::Display for MsgpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgpackError::Truncated => f.write_str("MessagePack cut short"),
            MsgpackError::Invalid(why) => write!(f, "not MessagePack: {why}"),
            MsgpackError::Unsupported(what) => write!(f, "MessagePack {what} is not supported"),
            MsgpackError::TooDeep => f.write_str("MessagePack nested too deeply"),
            MsgpackError::TrailingBytes => f.write_str("bytes after the MessagePack value"),
        }
    }
}

impl std::error::Error for MsgpackError {}

/// Deepest nesting decoded: serde_json's own limit (128), so that what
/// is delivered (the data one level down in `{"event","data"}`) is JSON
/// every serde_json reader takes back. Data nested over 125 levels, inside
/// the adapter's 3, is skipped.
pub const MAX_DEPTH: usize = 128;

/// Appends `value` as MessagePack.
pub fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => number(out, n),
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            header(out, items.len(), 0x90, 0xdc);
            for item in items {
                encode(out, item);
            }
        }
        Value::Object(map) => {
            header(out, map.len(), 0x80, 0xde);
            for (k, v) in map {
                string(out, k);
                encode(out, v);
            }
        }
    }
}

/// Appends a string.
pub fn string(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// Appends an array's or a map's header: `fix` with the count for up to
/// 15 elements, else the 16-bit form `wide` (the 32-bit one after it).
pub fn header(out: &mut Vec<u8>, n: usize, fix: u8, wide: u8) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(wide);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        if u < 0x80 {
            out.push(u as u8);
        } else if u <= 0xff {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if let Some(i) = n.as_i64() {
        // Negative (non-negative ones are u64 above).
        if i >= -32 {
            out.push(i as i8 as u8);
        } else if i >= i64::from(i8::MIN) {
            out.extend_from_slice(&[0xd0, i as i8 as u8]);
        } else if i >= i64::from(i16::MIN) {
            out.push(0xd1);
            out.extend_from_slice(&(i as i16).to_be_bytes());
        } else if i >= i64::from(i32::MIN) {
            out.push(0xd2);
            out.extend_from_slice(&(i as i32).to_be_bytes());
        } else {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
    }
}

/// Decodes `buf`, which must hold exactly one value.
pub fn decode(buf: &[u8]) -> Result<Value, MsgpackError> {
    let mut r = Reader { buf, pos: 0 };
    let v = r.value(0)?;
    if r.pos != buf.len() {
        return Err(MsgpackError::TrailingBytes);
    }
    Ok(v)
}

struct Reader<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], MsgpackError> {
        let end = self.pos.checked_add(n).ok_or(MsgpackError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(MsgpackError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, bytes: usize) -> Result<u64, MsgpackError> {
        Ok(self
            .take(bytes)?
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b)))
    }

    fn int(&mut self, bytes: usize) -> Result<i64, MsgpackError> {
        let u = self.uint(bytes)?;
        let shift = 64 - 8 * bytes as u32;
        Ok(((u << shift) as i64) >> shift)
    }

    fn value(&mut self, depth: usize) -> Result<Value, MsgpackError> {
        if depth > MAX_DEPTH {
            return Err(MsgpackError::TooDeep);
        }
        let b = self.take(1)?[0];
        Ok(match b {
            0x00..=0x7f => Value::from(b),
            0x80..=0x8f => self.map(usize::from(b & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(b & 0x0f), depth)?,
            0xa0..=0xbf => self.str(usize::from(b & 0x1f))?,
            0xc0 => Value::Null,
            0xc1 => return Err(MsgpackError::Invalid("the unused type 0xc1")),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => return Err(MsgpackError::Unsupported("bin (bytes)")),
            0xc7..=0xc9 => {
                let n = self.uint(1 << (b - 0xc7))? as usize;
                self.ext(n)?
            }
            0xca => float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => float(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Value::from(self.uint(1 << (b - 0xcc))?),
            0xd0..=0xd3 => Value::from(self.int(1 << (b - 0xd0))?),
            0xd4..=0xd8 => self.ext(1 << (b - 0xd4))?,
            0xd9..=0xdb => {
                let n = self.uint(1 << (b - 0xd9))? as usize;
                self.str(n)?
            }
            0xdc | 0xdd => {
                let n = self.uint(2 << (b - 0xdc))? as usize;
                self.array(n, depth)?
            }
            0xde | 0xdf => {
                let n = self.uint(2 << (b - 0xde))? as usize;
                self.map(n, depth)?
            }
            0xe0..=0xff => Value::from(b as i8),
        })
    }

    fn str(&mut self, n: usize) -> Result<Value, MsgpackError> {
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(|s| Value::String(s.to_owned()))
            .map_err(|_| MsgpackError::Invalid("a string that is not UTF-8"))
    }

    /// An extension of `n` data bytes: notepack's `undefined` (type 0,
    /// one zero byte) is nil; anything else is not JSON.
    fn ext(&mut self, n: usize) -> Result<Value, MsgpackError> {
        let kind = self.take(1)?[0];
        let data = self.take(n)?;
        if kind == 0 && data == [0] {
            return Ok(Value::Null);
        }
        Err(MsgpackError::Unsupported("an extension type"))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, MsgpackError> {
        // Every element takes a byte at least: a count beyond what is
        // left is a lie, refused before anything is reserved for it.
        if n > self.buf.len() - self.pos {
            return Err(MsgpackError::Truncated);
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, MsgpackError> {
        if n.saturating_mul(2) > self.buf.len() - self.pos {
            return Err(MsgpackError::Truncated);
        }
        let mut map = Map::new();
        for _ in 0..n {
            let Value::String(key) = self.value(depth + 1)? else {
                return Err(MsgpackError::Unsupported("a map key that is not a string"));
            };
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// A float as JSON holds it (NaN and the infinities, which JSON cannot
/// write, become null, as `JSON.stringify` makes them).
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: Value) {
        let mut out = Vec::new();
        encode(&mut out, &v);
        assert_eq!(decode(&out), Ok(v.clone()), "{v} as {out:02x?}");
    }

    #[test]
    fn values_round_trip() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(127),
            json!(128),
            json!(255),
            json!(256),
            json!(65_535),
            json!(65_536),
            json!(4_294_967_296u64),
            json!(u64::MAX),
            json!(-1),
            json!(-32),
            json!(-33),
            json!(-128),
            json!(-129),
            json!(-32_769),
            json!(-2_147_483_649i64),
            json!(i64::MIN),
            json!(1.5),
            json!(-0.25),
            json!(""),
            json!("x".repeat(31)),
            json!("x".repeat(32)),
            json!("é".repeat(200)),
            json!("x".repeat(70_000)),
            json!([]),
            json!((0..16).collect::<Vec<_>>()),
            json!({"a": [1, {"b": null}], "c": "d"}),
        ] {
            round_trip(v);
        }
        let big: Map<String, Value> = (0..20).map(|i| (format!("k{i}"), json!(i))).collect();
        round_trip(Value::Object(big));
    }

    /// Bytes as notepack.io writes them: the adapter's message for
    /// `io.to("news").emit("hello", 1.5, "é")`, and its `undefined`.
    #[test]
    fn what_notepack_writes() {
        let mut msg = vec![0x93, 0xa6];
        msg.extend_from_slice(b"abcdef");
        msg.extend_from_slice(&[0x83, 0xa4]);
        msg.extend_from_slice(b"type");
        msg.push(0x02);
        msg.push(0xa4);
        msg.extend_from_slice(b"data");
        msg.extend_from_slice(&[0x93, 0xa5]);
        msg.extend_from_slice(b"hello");
        msg.push(0xcb);
        msg.extend_from_slice(&1.5f64.to_be_bytes());
        msg.extend_from_slice(&[0xa2, 0xc3, 0xa9, 0xa3]);
        msg.extend_from_slice(b"nsp");
        msg.extend_from_slice(&[0xa1, b'/', 0x83, 0xa5]);
        msg.extend_from_slice(b"rooms");
        msg.extend_from_slice(&[0x91, 0xa4]);
        msg.extend_from_slice(b"news");
        msg.push(0xa6);
        msg.extend_from_slice(b"except");
        msg.push(0x90);
        msg.push(0xa5);
        msg.extend_from_slice(b"flags");
        msg.extend_from_slice(&[0xd4, 0x00, 0x00]);
        assert_eq!(
            decode(&msg),
            Ok(json!(["abcdef",
                {"type": 2, "data": ["hello", 1.5, "é"], "nsp": "/"},
                {"rooms": ["news"], "except": [], "flags": null}]))
        );
        assert_eq!(decode(&[0xca, 0x3f, 0xc0, 0, 0]), Ok(json!(1.5)));
    }

    #[test]
    fn what_json_cannot_hold_and_broken_input_are_errors() {
        assert_eq!(
            decode(&[0xc4, 1, 0]),
            Err(MsgpackError::Unsupported("bin (bytes)"))
        );
        assert_eq!(
            decode(&[0xd6, 0xff, 0, 0, 0, 0]),
            Err(MsgpackError::Unsupported("an extension type"))
        );
        assert_eq!(
            decode(&[0x81, 0x01, 0x02]),
            Err(MsgpackError::Unsupported("a map key that is not a string"))
        );
        assert_eq!(
            decode(&[0xc1]),
            Err(MsgpackError::Invalid("the unused type 0xc1"))
        );
        assert_eq!(
            decode(&[0xa2, 0xff, 0xfe]),
            Err(MsgpackError::Invalid("a string that is not UTF-8"))
        );
        assert_eq!(decode(&[0xc0, 0xc0]), Err(MsgpackError::TrailingBytes));
        assert_eq!(decode(&[]), Err(MsgpackError::Truncated));
        // A count of 4 billion with nothing behind it reserves nothing.
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(MsgpackError::Truncated)
        );
        assert_eq!(
            decode(&[0xdb, 0xff, 0xff, 0xff, 0xff]),
            Err(MsgpackError::Truncated)
        );
        let deep = vec![0x91; MAX_DEPTH + 2];
        assert_eq!(decode(&deep), Err(MsgpackError::TooDeep));
        // Every prefix of a value is cut short, never a panic.
        let mut out = Vec::new();
        encode(&mut out, &json!({"a": [1, -300, 2.5, "xyz", {"b": null}]}));
        for end in 0..out.len() {
            assert!(decode(&out[..end]).is_err(), "{end}");
        }
    }
}
