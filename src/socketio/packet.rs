//! Socket.IO protocol version 5 packets, as pure code: each is the data of
//! one Engine.IO message, `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`.
//!
//! | type | name | payload |
//! | --- | --- | --- |
//! | 0 | CONNECT | an object (the client's `auth`), or none; the server answers `{"sid"}` |
//! | 1 | DISCONNECT | none |
//! | 2 | EVENT | a non-empty array: the event name, then its arguments |
//! | 3 | ACK | an array: the arguments |
//! | 4 | CONNECT_ERROR | `{"message","data"}` (server to client only) |
//! | 5 | BINARY_EVENT | as EVENT, with `{"_placeholder":true,"num":N}` for each attachment |
//! | 6 | BINARY_ACK | as ACK, with placeholders |
//!
//! The attachments of a binary packet follow it as binary Engine.IO
//! messages. Decoding is stricter than the reference parser where the
//! reference takes what no client sends: an EVENT without a payload, an
//! ACK without an array, an ack id of more than 20 digits, a placeholder
//! count that differs from the announced attachments.

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

/// The digit that starts a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Joins a namespace.
    Connect = 0,
    /// Leaves a namespace.
    Disconnect = 1,
    /// An event: name and arguments.
    Event = 2,
    /// The answer to an event that asked for one.
    Ack = 3,
    /// A refused CONNECT (server to client).
    ConnectError = 4,
    /// An event with binary attachments.
    BinaryEvent = 5,
    /// An answer with binary attachments.
    BinaryAck = 6,
}

impl Kind {
    fn from_digit(b: u8) -> Option<Kind> {
        Some(match b {
            b'0' => Kind::Connect,
            b'1' => Kind::Disconnect,
            b'2' => Kind::Event,
            b'3' => Kind::Ack,
            b'4' => Kind::ConnectError,
            b'5' => Kind::BinaryEvent,
            b'6' => Kind::BinaryAck,
            _ => return None,
        })
    }

    /// Whether attachments follow the packet.
    pub fn is_binary(self) -> bool {
        matches!(self, Kind::BinaryEvent | Kind::BinaryAck)
    }
}

/// Event names a client may not send: they are the library's own events.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Most digits of an ack id.
pub const MAX_ACK_DIGITS: usize = 20;

/// A decoded packet.
#[derive(Clone, Debug)]
pub struct Packet<'a> {
    /// Its type.
    pub kind: Kind,
    /// Attachments that follow it (binary packets only).
    pub attachments: usize,
    /// The namespace, `/` when the packet names none.
    pub nsp: &'a str,
    /// The ack id: an EVENT that asks for an answer, or the ACK that gives it.
    pub ack: Option<u64>,
    /// The JSON payload as sent (checked: JSON, of its type's shape).
    pub data: Option<&'a str>,
    /// The elements of an EVENT's or ACK's array, as sent: parsed once,
    /// never into values, so an event costs no allocation per argument.
    pub items: Vec<&'a RawValue>,
}

impl PartialEq for Packet<'_> {
    fn eq(&self, other: &Self) -> bool {
        (self.kind, self.attachments, self.nsp, self.ack)
            == (other.kind, other.attachments, other.nsp, other.ack)
            && self.data == other.data
    }
}

impl<'a> Packet<'a> {
    /// The payload as a value (a CONNECT's `auth`, binary packets).
    pub fn value(&self) -> Option<Value> {
        self.data.and_then(|d| serde_json::from_str(d).ok())
    }

    /// An EVENT's name: its first element, a string (or a number, as its
    /// text).
    pub fn name(&self) -> Option<Cow<'a, str>> {
        let first: &'a str = self.items.first()?.get();
        match first.as_bytes().first()? {
            // The item is a JSON string serde_json has checked, its quotes
            // at both ends: without a backslash, what lies between them is
            // the name itself (the usual case, decoded twice per event).
            b'"' if !first.contains('\\') => first.get(1..first.len() - 1).map(Cow::Borrowed),
            b'"' => match serde_json::from_str::<&'a str>(first) {
                Ok(s) => Some(Cow::Borrowed(s)),
                // Escapes: the name is decoded into a string of its own.
                Err(_) => serde_json::from_str::<String>(first).ok().map(Cow::Owned),
            },
            b'-' | b'0'..=b'9' => Some(Cow::Borrowed(first)),
            _ => None,
        }
    }
}

/// Why a packet is malformed; the session is closed with this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Empty, or a first character that is no packet type.
    UnknownType,
    /// A binary packet without a valid `<count>-`.
    Attachments,
    /// More attachments than `socketio.max_attachments`.
    TooManyAttachments,
    /// A namespace that holds whitespace or control characters.
    Namespace,
    /// An ack id of more than 20 digits or beyond 64 bits.
    AckId,
    /// A payload that is not JSON.
    Json,
    /// A payload of the wrong shape for the packet's type.
    Payload,
    /// An event with a reserved name.
    ReservedEvent,
    /// Placeholders that do not match the announced attachments.
    AttachmentMismatch,
    /// A packet only the server sends (CONNECT_ERROR).
    ServerOnly,
}

impl Malformed {
    /// The reason as logged.
    pub const fn reason(self) -> &'static str {
        match self {
            Malformed::UnknownType => "unknown packet type",
            Malformed::Attachments => "bad attachment count",
            Malformed::TooManyAttachments => "too many attachments",
            Malformed::Namespace => "bad namespace",
            Malformed::AckId => "bad ack id",
            Malformed::Json => "payload is not JSON",
            Malformed::Payload => "payload of the wrong shape",
            Malformed::ReservedEvent => "reserved event name",
            Malformed::AttachmentMismatch => "placeholders do not match the attachments",
            Malformed::ServerOnly => "a packet only the server sends",
        }
    }
}

/// Decodes a packet from a client, allowing at most `max_attachments`.
pub fn decode(text: &str, max_attachments: usize) -> Result<Packet<'_>, Malformed> {
    let bytes = text.as_bytes();
    let kind = bytes
        .first()
        .and_then(|&b| Kind::from_digit(b))
        .ok_or(Malformed::UnknownType)?;
    let mut pos = 1;
    let mut attachments = 0;
    if kind.is_binary() {
        let dash = text[pos..].find('-').ok_or(Malformed::Attachments)?;
        let digits = &text[pos..pos + dash];
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Malformed::Attachments);
        }
        attachments = digits.parse().map_err(|_| Malformed::Attachments)?;
        if attachments > max_attachments {
            return Err(Malformed::TooManyAttachments);
        }
        pos += dash + 1;
    }
    let mut nsp = "/";
    if bytes.get(pos) == Some(&b'/') {
        let end = text[pos..].find(',').map_or(text.len(), |i| pos + i);
        nsp = &text[pos..end];
        if nsp.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Malformed::Namespace);
        }
        pos = (end + 1).min(text.len());
    }
    let digits = bytes[pos..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let ack = if digits == 0 {
        None
    } else if digits > MAX_ACK_DIGITS {
        return Err(Malformed::AckId);
    } else {
        let id = text[pos..pos + digits]
            .parse()
            .map_err(|_| Malformed::AckId)?;
        pos += digits;
        Some(id)
    };
    let rest = &text[pos..];
    let mut items = Vec::new();
    let data = if rest.is_empty() {
        None
    } else if rest.trim_start().starts_with('[') {
        // An array (every EVENT and ACK): checked and split into its
        // elements in one pass.
        items = serde_json::from_str::<Vec<&RawValue>>(rest).map_err(|_| Malformed::Json)?;
        Some(rest)
    } else {
        serde_json::from_str::<&RawValue>(rest).map_err(|_| Malformed::Json)?;
        Some(rest)
    };
    let p = Packet {
        kind,
        attachments,
        nsp,
        ack,
        data,
        items,
    };
    check_payload(&p)?;
    if kind.is_binary() && placeholders(p.value().as_ref(), attachments)? != attachments {
        return Err(Malformed::AttachmentMismatch);
    }
    Ok(p)
}

/// Whether a client's payload has the shape its type needs.
fn check_payload(p: &Packet<'_>) -> Result<(), Malformed> {
    let first = |d: &str| d.trim_start().bytes().next();
    let array = p.data.is_some_and(|d| first(d) == Some(b'['));
    match (p.kind, p.data) {
        (Kind::Connect, None) => Ok(()),
        (Kind::Connect, Some(d)) if first(d) == Some(b'{') => Ok(()),
        (Kind::Disconnect, None) => Ok(()),
        (Kind::Event | Kind::BinaryEvent, _) if array => match p.name() {
            Some(name) if RESERVED_EVENTS.contains(&&*name) => Err(Malformed::ReservedEvent),
            Some(_) => Ok(()),
            None => Err(Malformed::Payload),
        },
        (Kind::Ack | Kind::BinaryAck, _) if array => Ok(()),
        (Kind::ConnectError, _) => Err(Malformed::ServerOnly),
        _ => Err(Malformed::Payload),
    }
}

/// Counts the placeholders in `data`, each `{"_placeholder":true,"num":N}`
/// with `N` below `attachments` and each `N` once.
fn placeholders(data: Option<&Value>, attachments: usize) -> Result<usize, Malformed> {
    // serde_json refuses nesting deeper than 128: the recursion is bounded.
    fn walk(v: &Value, attachments: usize, seen: &mut u64) -> Result<(), Malformed> {
        match v {
            Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
                let num = map
                    .get("num")
                    .and_then(Value::as_u64)
                    .filter(|&n| (n as usize) < attachments && n < 64)
                    .ok_or(Malformed::AttachmentMismatch)?;
                if *seen & (1 << num) != 0 {
                    return Err(Malformed::AttachmentMismatch);
                }
                *seen |= 1 << num;
                Ok(())
            }
            Value::Object(map) => map.values().try_for_each(|v| walk(v, attachments, seen)),
            Value::Array(items) => items.iter().try_for_each(|v| walk(v, attachments, seen)),
            _ => Ok(()),
        }
    }
    let mut seen = 0u64;
    if let Some(v) = data {
        walk(v, attachments, &mut seen)?;
    }
    Ok(seen.count_ones() as usize)
}

/// Appends a packet: `<type>[<attachments>-][<nsp>,][<ack>][<json>]`.
pub fn encode(
    out: &mut String,
    kind: Kind,
    attachments: usize,
    nsp: &str,
    ack: Option<u64>,
    data: Option<&Value>,
) {
    use std::fmt::Write as _;
    out.push(char::from(b'0' + kind as u8));
    if kind.is_binary() {
        let _ = write!(out, "{attachments}-");
    }
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = ack {
        push_decimal(out, id);
    }
    if let Some(v) = data {
        out.push_str(&v.to_string());
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// Appends a packet whose payload is an array written from JSON texts:
/// `[<first>,<items>...]` (an EVENT's name first, or nothing before an
/// ACK's arguments).
pub fn encode_raw(
    out: &mut String,
    kind: Kind,
    attachments: usize,
    nsp: &str,
    ack: Option<u64>,
    first: Option<&str>,
    items: &[&RawValue],
) {
    encode(out, kind, attachments, nsp, ack, None);
    out.push('[');
    if let Some(name) = first {
        // An event name: a JSON string (written as it is when nothing in it
        // needs an escape, the usual case).
        if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push('"');
            out.push_str(name);
            out.push('"');
        } else {
            let _ = serde_json::to_writer(string_writer::StringWriter(out), name);
        }
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 || first.is_some() {
            out.push(',');
        }
        out.push_str(item.get());
    }
    out.push(']');
}

/// `io::Write` into a `String` (serde_json writes UTF-8 only).
mod string_writer {
    pub struct StringWriter<'s>(pub &'s mut String);

    impl std::io::Write for StringWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let text = std::str::from_utf8(buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.0.push_str(text);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Packet<'_> {
        decode(text, 10).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    #[test]
    fn the_packets_of_the_protocol_decode() {
        let p = ok("0");
        assert_eq!(
            (p.kind, p.nsp, p.ack, p.value()),
            (Kind::Connect, "/", None, None)
        );
        let p = ok(r#"0{"token":"123"}"#);
        assert_eq!(p.value(), Some(json!({"token": "123"})));
        assert_eq!(ok("0/custom,").nsp, "/custom");
        assert_eq!(ok("0/custom").nsp, "/custom");
        let p = ok(r#"0/custom,{"token":"abc"}"#);
        assert_eq!(
            (p.nsp, p.value()),
            ("/custom", Some(json!({"token": "abc"})))
        );
        assert_eq!(ok("1").kind, Kind::Disconnect);
        assert_eq!(ok("1/custom,").nsp, "/custom");
        let p = ok(r#"2["hey","Jude"]"#);
        assert_eq!(
            (p.kind, p.value()),
            (Kind::Event, Some(json!(["hey", "Jude"])))
        );
        let p = ok(r#"2/admin,12["foo"]"#);
        assert_eq!((p.nsp, p.ack), ("/admin", Some(12)));
        let p = ok(r#"3456[1,"2",{"3":[false]}]"#);
        assert_eq!((p.kind, p.ack), (Kind::Ack, Some(456)));
        let p = ok(r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        assert_eq!((p.kind, p.attachments), (Kind::BinaryEvent, 2));
        let p = ok(r#"62-/admin,789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        assert_eq!(
            (p.kind, p.attachments, p.nsp, p.ack),
            (Kind::BinaryAck, 2, "/admin", Some(789))
        );
        assert_eq!(ok(r#"2[7,"x"]"#).kind, Kind::Event);
        assert_eq!(ok("0/,{}").nsp, "/");
    }

    #[test]
    fn event_names_plain_escaped_and_spaced() {
        let name = |text: &str| ok(text).name().map(Cow::into_owned);
        assert_eq!(name(r#"2["get_name",{}]"#).as_deref(), Some("get_name"));
        assert_eq!(name(r#"2[ "spaced" , 1 ]"#).as_deref(), Some("spaced"));
        assert_eq!(name(r#"2["héros ✓"]"#).as_deref(), Some("héros ✓"));
        assert_eq!(name(r#"2[""]"#).as_deref(), Some(""));
        assert_eq!(name(r#"2["a\"b\\c\u00e9"]"#).as_deref(), Some("a\"b\\cé"));
        assert_eq!(name(r#"2[12,"x"]"#).as_deref(), Some("12"));
        assert!(matches!(
            ok(r#"2["plain"]"#).name(),
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn malformed_packets_are_refused_with_their_reason() {
        use Malformed::*;
        let cases: &[(&str, Malformed)] = &[
            ("", UnknownType),
            ("abc", UnknownType),
            ("7", UnknownType),
            (" 0", UnknownType),
            ("2", Payload),
            ("2{}", Payload),
            ("2[]", Payload),
            ("2[{}]", Payload),
            ("2abc[\"x\"]", Json),
            (r#"2["connect"]"#, ReservedEvent),
            (r#"2["disconnecting",1]"#, ReservedEvent),
            (r#"2["newListener"]"#, ReservedEvent),
            ("0[]", Payload),
            ("0\"x\"", Payload),
            ("1{}", Payload),
            ("3", Payload),
            ("3{}", Payload),
            (r#"4{"message":"x"}"#, ServerOnly),
            (r#"2123456789012345678901["x"]"#, AckId),
            (r#"299999999999999999999["x"]"#, AckId),
            (r#"5["x"]"#, Attachments),
            (r#"5-["x"]"#, Attachments),
            (r#"5x-["x"]"#, Attachments),
            (r#"511-["x"]"#, TooManyAttachments),
            (r#"51-["x"]"#, AttachmentMismatch),
            (
                r#"51-["x",{"_placeholder":true,"num":1}]"#,
                AttachmentMismatch,
            ),
            (
                r#"52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#,
                AttachmentMismatch,
            ),
            (
                r#"51-["x",{"_placeholder":true,"num":"0"}]"#,
                AttachmentMismatch,
            ),
            ("0/a b,", Namespace),
            ("2/\u{7},[\"x\"]", Namespace),
        ];
        for (text, want) in cases {
            assert_eq!(decode(text, 10), Err(*want), "{text:?}");
        }
        // 20 digits that fit in 64 bits are an ack id.
        assert_eq!(ok(r#"218446744073709551615["x"]"#).ack, Some(u64::MAX));
        assert_eq!(
            decode(
                r#"52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
                1
            ),
            Err(TooManyAttachments)
        );
    }

    #[test]
    fn encoding_writes_what_the_clients_read() {
        let mut s = String::new();
        encode(
            &mut s,
            Kind::Connect,
            0,
            "/",
            None,
            Some(&json!({"sid": "x"})),
        );
        assert_eq!(s, r#"0{"sid":"x"}"#);
        let mut s = String::new();
        encode(
            &mut s,
            Kind::ConnectError,
            0,
            "/random",
            None,
            Some(&json!({"message": "Invalid namespace"})),
        );
        assert_eq!(s, r#"4/random,{"message":"Invalid namespace"}"#);
        let mut s = String::new();
        encode(
            &mut s,
            Kind::Ack,
            0,
            "/",
            Some(456),
            Some(&json!([1, "2", {"3": [false]}])),
        );
        assert_eq!(s, r#"3456[1,"2",{"3":[false]}]"#);
        let mut s = String::new();
        let args = json!(["message-back", {"_placeholder": true, "num": 0}]);
        encode(&mut s, Kind::BinaryEvent, 1, "/admin", None, Some(&args));
        assert_eq!(
            s,
            r#"51-/admin,["message-back",{"_placeholder":true,"num":0}]"#
        );
        let mut s = String::new();
        encode(&mut s, Kind::Disconnect, 0, "/", None, None);
        assert_eq!(s, "1");
        // What is encoded decodes back (a client's packets).
        for text in [r#"2/admin,12["foo",{"a":[1,2]}]"#, r#"31[]"#, "0/x,{}"] {
            let p = ok(text);
            let mut again = String::new();
            encode(
                &mut again,
                p.kind,
                p.attachments,
                p.nsp,
                p.ack,
                p.value().as_ref(),
            );
            assert_eq!(again, text);
        }
    }
}
