//! The messages of the Socket.IO Redis adapter (`@socket.io/redis-adapter`,
//! the classic `createAdapter`), which palisade instances also use among
//! themselves: the cluster has one protocol, and Node `socket.io` servers
//! with that adapter are members of it.
//!
//! A broadcast to namespace `/` is published on the Redis channel
//! `{prefix}#/#` (`{prefix}#/#{room}#` when it names exactly one room), as
//! the MessagePack array `[uid, packet, opts]`: `uid` names the sending
//! server (which ignores its own messages), `packet` is the Socket.IO
//! packet `{"type":2,"data":[event, ...args],"nsp":"/"}`, `opts` is
//! `{"rooms":[...],"except":[...],"flags":{...}}`. Every server
//! subscribes to the pattern `{prefix}#/#*`.
//!
//! A palisade publication on channel C is the broadcast of the event
//! `publication` with `{"channel":C,"data":...}` to room C: what a
//! Socket.IO client of palisade receives, and what `io.to(C).emit(
//! "publication", {...})` sends from Node. A broadcast arriving from
//! elsewhere reaches the subscribers of its rooms: a Socket.IO client as
//! the packet's event, a raw client as `{"event":E,"data":D}` (D the one
//! argument; `null` for none, an array for several).
//!
//! The adapter's requests (`fetchSockets`, `serverSideEmit`, broadcasts
//! with acknowledgements) travel on other channels palisade does not
//! subscribe to: Node servers count their peers on those channels, so
//! they do not wait for palisade.

use super::msgpack::{self, MsgpackError};
use serde_json::Value;

/// The Socket.IO EVENT packet type.
const EVENT: u64 = 2;

/// The channel every server of the cluster subscribes to (a pattern).
pub fn pattern(prefix: &str) -> String {
    format!("{prefix}#/#*")
}

/// The Redis channel and message of a palisade publication: `data` (JSON
/// text) on `channel`, from server `uid`.
pub fn publication(prefix: &str, uid: &str, channel: &str, data: &Value) -> (String, Vec<u8>) {
    let mut msg = Vec::with_capacity(64 + channel.len());
    msgpack::header(&mut msg, 3, 0x90, 0xdc);
    msgpack::string(&mut msg, uid);
    // packet: {"type":2,"data":["publication",{"channel","data"}],"nsp":"/"}
    msgpack::header(&mut msg, 3, 0x80, 0xde);
    msgpack::string(&mut msg, "type");
    msg.push(EVENT as u8);
    msgpack::string(&mut msg, "data");
    msgpack::header(&mut msg, 2, 0x90, 0xdc);
    msgpack::string(&mut msg, "publication");
    msgpack::header(&mut msg, 2, 0x80, 0xde);
    msgpack::string(&mut msg, "channel");
    msgpack::string(&mut msg, channel);
    msgpack::string(&mut msg, "data");
    msgpack::encode(&mut msg, data);
    msgpack::string(&mut msg, "nsp");
    msgpack::string(&mut msg, "/");
    // opts: {"rooms":[channel],"except":[],"flags":{}}
    msgpack::header(&mut msg, 3, 0x80, 0xde);
    msgpack::string(&mut msg, "rooms");
    msgpack::header(&mut msg, 1, 0x90, 0xdc);
    msgpack::string(&mut msg, channel);
    msgpack::string(&mut msg, "except");
    msgpack::header(&mut msg, 0, 0x90, 0xdc);
    msgpack::string(&mut msg, "flags");
    msgpack::header(&mut msg, 0, 0x80, 0xde);
    (format!("{prefix}#/#{channel}#"), msg)
}

/// The room a Redis channel names (`{prefix}#/#{room}#`): `Some("")` for
/// the namespace's channel, `None` for a channel not of namespace `/`.
pub fn room_of<'c>(prefix: &str, channel: &'c str) -> Option<&'c str> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix("#/#")
        .map(|rest| rest.strip_suffix('#').unwrap_or(rest))
}

/// A broadcast from another server, ready for this one's clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The rooms (channels) it goes to; empty: every client of `/`.
    pub rooms: Vec<String>,
    /// Rooms whose members it skips.
    pub except: Vec<String>,
    /// The raw protocol's text: `{"event":E,"data":D}`.
    pub raw: String,
    /// The Socket.IO event: `["E",...args]` (after `42` on the wire).
    pub event: String,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// This server sent it.
    Own,
    /// Another namespace than `/`, or a packet that is not an event
    /// (a binary one, say).
    NotForUs(&'static str),
    /// Not the adapter's message.
    Invalid(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Own => f.write_str("this server's own"),
            Skip::NotForUs(why) => f.write_str(why),
            Skip::Invalid(why) => f.write_str(why),
        }
    }
}

impl From<MsgpackError> for Skip {
    fn from(e: MsgpackError) -> Skip {
        Skip::Invalid(e.to_string())
    }
}

/// Decodes a message of the pattern's channels; `uid` is this server's.
pub fn broadcast(msg: &[u8], uid: &str) -> Result<Broadcast, Skip> {
    let value = msgpack::decode(msg)?;
    let invalid = |why: &str| Skip::Invalid(why.to_owned());
    let Value::Array(mut parts) = value else {
        return Err(invalid("not an array"));
    };
    if parts.len() != 3 {
        return Err(invalid("not [uid, packet, opts]"));
    }
    let opts = parts.pop().unwrap_or_default();
    let packet = parts.pop().unwrap_or_default();
    if parts[0].as_str() == Some(uid) {
        return Err(Skip::Own);
    }
    match packet.get("nsp") {
        None | Some(Value::Null) => {}
        Some(Value::String(nsp)) if nsp == "/" => {}
        _ => return Err(Skip::NotForUs("another namespace")),
    }
    if packet.get("type").and_then(Value::as_u64) != Some(EVENT) {
        return Err(Skip::NotForUs("not an EVENT packet"));
    }
    let Some(Value::Array(data)) = packet.get("data") else {
        return Err(invalid("an event without data"));
    };
    let Some(Value::String(event)) = data.first() else {
        return Err(invalid("an event without a name"));
    };
    let args = &data[1..];
    let names = |key: &str| -> Vec<String> {
        match opts.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|r| match r {
                    Value::String(s) => Some(s.clone()),
                    // Socket.IO rooms may be numbers.
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let one = match args {
        [] => Value::Null,
        [one] => one.clone(),
        many => Value::Array(many.to_vec()),
    };
    let raw = format!(
        r#"{{"event":{},"data":{one}}}"#,
        Value::String(event.clone())
    );
    let event = Value::Array(data.clone()).to_string();
    Ok(Broadcast {
        rooms: names("rooms"),
        except: names("except"),
        raw,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_publication_is_the_adapters_broadcast_to_one_room() {
        let (channel, msg) = publication("socket.io", "pal1", "news", &json!({"n": 1}));
        assert_eq!(channel, "socket.io#/#news#");
        assert_eq!(
            msgpack::decode(&msg),
            Ok(json!(["pal1",
                {"type": 2, "data": ["publication", {"channel": "news", "data": {"n": 1}}], "nsp": "/"},
                {"rooms": ["news"], "except": [], "flags": {}}]))
        );
        // Another server reads it back; the sender skips it.
        let b = broadcast(&msg, "other").unwrap();
        assert_eq!(b.rooms, ["news"]);
        assert!(b.except.is_empty());
        assert_eq!(
            b.raw,
            r#"{"event":"publication","data":{"channel":"news","data":{"n":1}}}"#
        );
        assert_eq!(
            b.event,
            r#"["publication",{"channel":"news","data":{"n":1}}]"#
        );
        assert_eq!(broadcast(&msg, "pal1"), Err(Skip::Own));
    }

    #[test]
    fn broadcasts_from_node() {
        let node = |packet: Value, opts: Value| {
            let mut m = Vec::new();
            msgpack::encode(&mut m, &json!(["node1", packet, opts]));
            m
        };
        let msg = node(
            json!({"type": 2, "data": ["news", 1, "two"], "nsp": "/"}),
            json!({"rooms": ["a", 7], "except": ["b"], "flags": null}),
        );
        let b = broadcast(&msg, "pal1").unwrap();
        assert_eq!(b.rooms, ["a", "7"]);
        assert_eq!(b.except, ["b"]);
        assert_eq!(b.raw, r#"{"event":"news","data":[1,"two"]}"#);
        assert_eq!(b.event, r#"["news",1,"two"]"#);
        let none = node(json!({"type": 2, "data": ["ping"]}), json!({}));
        let b = broadcast(&none, "pal1").unwrap();
        assert_eq!(b.raw, r#"{"event":"ping","data":null}"#);
        assert!(b.rooms.is_empty());
        let other = node(
            json!({"type": 2, "data": ["x"], "nsp": "/admin"}),
            json!({}),
        );
        assert_eq!(
            broadcast(&other, "pal1"),
            Err(Skip::NotForUs("another namespace"))
        );
        let ack = node(json!({"type": 3, "data": [], "nsp": "/"}), json!({}));
        assert_eq!(
            broadcast(&ack, "pal1"),
            Err(Skip::NotForUs("not an EVENT packet"))
        );
        assert!(matches!(
            broadcast(b"\xc4\x01\x00", "p"),
            Err(Skip::Invalid(_))
        ));
        assert!(matches!(
            broadcast(&node(json!({"type": 2, "data": []}), json!({})), "p"),
            Err(Skip::Invalid(_))
        ));
    }

    /// Bytes notepack.io wrote (the fuzz seed): a Node server's
    /// `io.to("news.a").except("x").emit("news", 1, "two", {...})`.
    #[test]
    fn a_message_node_wrote() {
        let msg = include_bytes!("../../fuzz/corpus/adapter/seed-node-emit");
        let b = broadcast(msg, "palisade-1").unwrap();
        assert_eq!(b.rooms, ["news.a"]);
        assert_eq!(b.except, ["x"]);
        assert_eq!(
            b.raw,
            r#"{"event":"news","data":[1,"two",{"a":[1.5,null,true]}]}"#
        );
        assert_eq!(b.event, r#"["news",1,"two",{"a":[1.5,null,true]}]"#);
        let bin = include_bytes!("../../fuzz/corpus/adapter/seed-binary");
        assert!(matches!(broadcast(bin, "p"), Err(Skip::Invalid(_))));
    }

    #[test]
    fn rooms_from_channel_names() {
        assert_eq!(room_of("socket.io", "socket.io#/#news#"), Some("news"));
        assert_eq!(room_of("socket.io", "socket.io#/#"), Some(""));
        assert_eq!(room_of("socket.io", "socket.io#/admin#x#"), None);
        assert_eq!(room_of("socket.io", "other#/#x#"), None);
    }
}
