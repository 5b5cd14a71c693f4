//! The hero look-up application: JSON requests in, JSON replies out.
//!
//! Requests are parsed borrowing the message text (no allocation unless a
//! string has escapes) and replies are serialized straight into the
//! connection's output buffer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use serde_json::value::RawValue;

use crate::handler::{Context, Text};

/// Longest hero id a request may carry (SPEC.md §6).
pub const MAX_HERO_ID_BYTES: usize = 64;
/// Most heroes a heroes file may hold.
pub const MAX_HEROES: usize = 10_000;
/// Largest heroes file.
pub const MAX_HEROES_FILE_BYTES: u64 = 4 << 20;
/// Longest real name.
pub const MAX_NAME_BYTES: usize = 256;

const BUILT_IN: &[(&str, &str)] = &[
    ("ironMan", "Tony Stark"),
    ("hulk", "Bruce Banner"),
    ("wonderWoman", "Diana"),
    ("batMan", "Bruce Wayne"),
    ("blackPanther", "T'Challa"),
];

/// FNV-1a, for the maps of [`Heroes`]: they are filled once from the
/// heroes file and only looked up afterwards, so no request can lengthen
/// a probe sequence, and a keyed hash (std's SipHash) would buy nothing
/// here. It cost 3 % of the server's time answering Socket.IO `get_name`
/// (`perf record`, hero 100 x 16).
#[derive(Clone, Copy, Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// The heroes and their real names, in file order.
#[derive(Clone, Debug)]
pub struct Heroes {
    order: Vec<Box<str>>,
    names: Map<Box<str>, Box<str>>,
    /// The `name` reply to a plain `get_name` for each hero, serialized
    /// once (see [`plain_get_name`]).
    replies: Map<Box<[u8]>, Box<str>>,
    /// The data of that reply, `{"hero":…,"hero_name":…}`, as JSON text:
    /// the `name` event's argument and the ack over Socket.IO.
    data: Map<Box<str>, Box<RawValue>>,
}

/// The request as the demo page and most clients send it, around the id.
const GET_NAME_PREFIX: &str = r#"{"event":"get_name","data":{"hero":""#;
const GET_NAME_SUFFIX: &str = r#""}}"#;

/// The hero id of a `get_name` request in exactly the plain form
/// `{"event":"get_name","data":{"hero":"ID"}}`, with no escapes in the id:
/// such a request is answered from [`Heroes::replies`] without parsing.
/// Any other form goes through serde_json and gets the same reply.
fn plain_get_name(text: &[u8]) -> Option<&[u8]> {
    let id = text
        .strip_prefix(GET_NAME_PREFIX.as_bytes())?
        .strip_suffix(GET_NAME_SUFFIX.as_bytes())?;
    let plain =
        id.len() <= MAX_HERO_ID_BYTES && id.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
    plain.then_some(id)
}

impl Default for Heroes {
    fn default() -> Self {
        Heroes::from_pairs(
            BUILT_IN
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
        .expect("built-in heroes are valid")
    }
}

struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of hero id to real name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut v = Vec::new();
                while let Some((k, n)) = map.next_entry::<String, String>()? {
                    if v.len() == MAX_HEROES {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_HEROES} heroes"
                        )));
                    }
                    v.push((k, n));
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl Heroes {
    /// Loads a heroes file: `{"heroId": "Real Name", ...}`.
    pub fn load(path: &Path) -> Result<Heroes, String> {
        let what = format!("heroes file {}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| format!("{what}: {e}"))?;
        if meta.len() > MAX_HEROES_FILE_BYTES {
            return Err(format!("{what}: larger than {MAX_HEROES_FILE_BYTES} bytes"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
        let Pairs(pairs) = serde_json::from_str(&text).map_err(|e| format!("{what}: {e}"))?;
        Heroes::from_pairs(pairs).map_err(|e| format!("{what}: {e}"))
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Heroes, String> {
        if pairs.is_empty() {
            return Err("no heroes".into());
        }
        let mut names = Map::with_capacity_and_hasher(pairs.len(), Default::default());
        let mut replies = Map::with_capacity_and_hasher(pairs.len(), Default::default());
        let mut data = Map::with_capacity_and_hasher(pairs.len(), Default::default());
        let mut order = Vec::with_capacity(pairs.len());
        for (id, name) in pairs {
            if id.is_empty() || id.len() > MAX_HERO_ID_BYTES {
                return Err(format!(
                    "hero id {id:?} must be 1 to {MAX_HERO_ID_BYTES} bytes"
                ));
            }
            if name.is_empty() || name.len() > MAX_NAME_BYTES {
                return Err(format!(
                    "name of {id:?} must be 1 to {MAX_NAME_BYTES} bytes"
                ));
            }
            let id: Box<str> = id.into();
            let reply = Reply {
                event: "name",
                data: &NameData {
                    hero: &id,
                    hero_name: &name,
                },
                id: None,
            };
            let reply = serde_json::to_string(&reply).expect("strings serialize");
            replies.insert(id.as_bytes().into(), reply.into());
            let raw = serde_json::value::to_raw_value(&NameData {
                hero: &id,
                hero_name: &name,
            })
            .expect("strings serialize");
            data.insert(id.clone(), raw);
            if names.insert(id.clone(), name.into()).is_some() {
                return Err(format!("hero id {id:?} appears twice"));
            }
            order.push(id);
        }
        Ok(Heroes {
            order,
            names,
            replies,
            data,
        })
    }

    /// Hero ids in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|s| &**s)
    }

    /// The real name of `id`.
    pub fn name(&self, id: &str) -> Option<&str> {
        self.names.get(id).map(|s| &**s)
    }

    /// The reply data for `id` as JSON text, `{"hero":…,"hero_name":…}`.
    pub fn reply_data(&self, id: &str) -> Option<&RawValue> {
        self.data.get(id).map(|b| &**b)
    }

    /// Answers one text message; JSON is parsed from its bytes, so the
    /// message is never converted to a `&str`.
    pub fn handle_text(&self, text: Text<'_>, tx: &mut Context<'_>) {
        let text = text.as_bytes();
        if let Some((id, reply)) =
            plain_get_name(text).and_then(|id| Some((id, self.replies.get(id)?)))
        {
            let _ = tx.send_text(&**reply);
            self.announce(tx, id);
            return;
        }
        let req: Request<'_> = match serde_json::from_slice(text) {
            Ok(r) => r,
            Err(e) => {
                let (code, message, id) = match e.classify() {
                    // Valid JSON of the wrong shape: say which field, and answer
                    // with its id when it has a usable one (this path may
                    // allocate; it is an error).
                    serde_json::error::Category::Data => {
                        ("invalid_message", wrong_field(text), lenient_id(text))
                    }
                    _ => ("invalid_json", "message is not valid JSON", None),
                };
                return send(tx, "error", &ErrorData { code, message }, id);
            }
        };
        let id = req.id;
        match &*req.event {
            "get_name" => self.get_name(req.data.and_then(|d| d.hero), id, tx),
            event @ ("subscribe" | "unsubscribe") => {
                let Some(channel) = req.data.and_then(|d| d.channel) else {
                    let e = ErrorData {
                        code: "invalid_message",
                        message: "subscribe and unsubscribe need data.channel",
                    };
                    return send(tx, "error", &e, id);
                };
                if event == "subscribe" {
                    tx.subscribe(&channel, id);
                } else {
                    tx.unsubscribe(&channel, id);
                }
            }
            "list_heroes" => send(
                tx,
                "heroes",
                &HeroesData {
                    heroes: &self.order,
                },
                id,
            ),
            _ => {
                let e = ErrorData {
                    code: "unknown_event",
                    message: "unknown event",
                };
                send(tx, "error", &e, id)
            }
        }
    }

    /// Publishes a look-up by a logged-in user on the channel `lookups`
    /// (the demo's live feed): `{"user","hero","hero_name"}`. Nothing is
    /// built while no connection subscribes to anything.
    pub fn announce(&self, tx: &Context<'_>, hero: &[u8]) {
        let Some(user) = tx.user() else {
            return;
        };
        if !tx.has_subscribers() {
            return;
        }
        let Some((hero, name)) = std::str::from_utf8(hero)
            .ok()
            .and_then(|h| Some((h, self.name(h)?)))
        else {
            return;
        };
        #[derive(Serialize)]
        struct Lookup<'a> {
            user: &'a str,
            hero: &'a str,
            hero_name: &'a str,
        }
        let data = Lookup {
            user,
            hero,
            hero_name: name,
        };
        if let Ok(data) = serde_json::value::to_raw_value(&data) {
            let _ = tx.publish(LOOKUPS, &data);
        }
    }

    /// `get_name` with `data.hero` (SPEC.md §6).
    fn get_name(&self, hero: Option<Cow<'_, str>>, id: Option<u32>, tx: &mut Context<'_>) {
        let error = |code, message| ErrorData { code, message };
        let Some(hero) = hero else {
            let e = error("invalid_message", "get_name needs data.hero");
            return send(tx, "error", &e, id);
        };
        if hero.len() > MAX_HERO_ID_BYTES {
            let e = error("invalid_message", "data.hero is longer than 64 bytes");
            return send(tx, "error", &e, id);
        }
        match self.name(&hero) {
            Some(name) => {
                send(
                    tx,
                    "name",
                    &NameData {
                        hero: &hero,
                        hero_name: name,
                    },
                    id,
                );
                self.announce(tx, hero.as_bytes());
            }
            None => send(tx, "error", &error("unknown_hero", "no such hero"), id),
        }
    }
}

/// The `id` of a message that failed the schema, when it is a u32.
/// Which field of a JSON message has the wrong type (SPEC.md §6:
/// `{"event": <string>, "data": <object>, "id": <u32>}`).
fn wrong_field(text: &[u8]) -> &'static str {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(text) else {
        return "message does not match the schema";
    };
    let Some(m) = v.as_object() else {
        return "a message must be a JSON object";
    };
    match (m.get("event"), m.get("data"), m.get("id")) {
        (None, _, _) => "event is missing",
        (Some(e), _, _) if !e.is_string() => "event must be a string",
        (_, _, Some(id))
            if !id.is_null() && id.as_u64().is_none_or(|n| n > u64::from(u32::MAX)) =>
        {
            "id must be a whole number from 0 to 4294967295"
        }
        (_, Some(d), _) if !d.is_null() && !d.is_object() => "data must be an object",
        (_, Some(d), _)
            if d.get("hero")
                .is_some_and(|h| !h.is_null() && !h.is_string()) =>
        {
            "data.hero must be a string"
        }
        _ => "message does not match the schema",
    }
}

fn lenient_id(text: &[u8]) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    u32::try_from(v.get("id")?.as_u64()?).ok()
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<RequestData<'a>>,
    #[serde(default)]
    id: Option<u32>,
}

#[derive(Deserialize)]
struct RequestData<'a> {
    #[serde(default, borrow)]
    hero: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
}

/// The channel of the demo's live feed of look-ups.
pub const LOOKUPS: &str = "lookups";

#[derive(Serialize)]
struct Reply<'a, D> {
    event: &'a str,
    data: &'a D,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
}

#[derive(Serialize)]
struct NameData<'a> {
    hero: &'a str,
    hero_name: &'a str,
}

#[derive(Serialize)]
struct HeroesData<'a> {
    heroes: &'a [Box<str>],
}

#[derive(Serialize)]
struct ErrorData<'a> {
    code: &'a str,
    message: &'a str,
}

fn send<D: Serialize>(tx: &mut Context<'_>, event: &str, data: &D, id: Option<u32>) {
    let reply = Reply { event, data, id };
    // Serializing into a Vec cannot fail; a closed connection just drops it.
    let _ = tx.send_text_with(|buf| {
        let _ = serde_json::to_writer(buf, &reply);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::testing::replies;

    fn ask(heroes: &Heroes, text: &str) -> serde_json::Value {
        let r = replies(None, |cx| heroes.handle_text(text.into(), cx));
        assert_eq!(r.texts.len(), 1, "{r:?}");
        serde_json::from_str(&r.texts[0]).unwrap()
    }

    #[test]
    fn fnv_1a_known_values() {
        let hash = |b: &[u8]| {
            let mut h = Fnv::default();
            h.write(b);
            h.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn get_name_for_every_built_in_hero() {
        let h = Heroes::default();
        for (id, name) in BUILT_IN {
            let v = ask(
                &h,
                &format!(r#"{{"event":"get_name","data":{{"hero":"{id}"}}}}"#),
            );
            assert_eq!(
                v,
                serde_json::json!({"event":"name","data":{"hero":id,"hero_name":name}})
            );
        }
    }

    /// The bytes of the reply to `text`.
    fn reply_bytes(heroes: &Heroes, text: &str) -> Vec<u8> {
        let r = replies(None, |cx| heroes.handle_text(text.into(), cx));
        r.texts.concat().into_bytes()
    }

    #[test]
    fn the_plain_get_name_reply_is_the_parsed_one() {
        let h = Heroes::default();
        for (id, _) in BUILT_IN {
            let plain = format!(r#"{{"event":"get_name","data":{{"hero":"{id}"}}}}"#);
            assert!(plain_get_name(plain.as_bytes()).is_some());
            // A space makes serde_json parse it: the same bytes must come out.
            let spaced = format!(r#"{{ "event":"get_name","data":{{"hero":"{id}"}}}}"#);
            assert!(plain_get_name(spaced.as_bytes()).is_none());
            assert_eq!(reply_bytes(&h, &plain), reply_bytes(&h, &spaced));
        }
        // Not the plain form: escapes, quotes, unknown heroes, trailing data.
        for text in [
            r#"{"event":"get_name","data":{"hero":"iron\u004dan"}}"#,
            r#"{"event":"get_name","data":{"hero":"a"}}"}}"#,
            r#"{"event":"get_name","data":{"hero":"ironMan"}},"#,
        ] {
            assert!(plain_get_name(text.as_bytes()).is_none(), "{text}");
        }
        let unknown = ask(&h, r#"{"event":"get_name","data":{"hero":"nobody"}}"#);
        assert_eq!(unknown["data"]["code"], "unknown_hero");
    }

    #[test]
    fn id_is_echoed_and_errors_are_typed() {
        let h = Heroes::default();
        let v = ask(
            &h,
            r#"{"event":"get_name","data":{"hero":"ironMan"},"id":7,"extra":true}"#,
        );
        assert_eq!(v["id"], 7);
        let cases = [
            (
                r#"{"event":"get_name","data":{"hero":"nobody"},"id":3}"#,
                "unknown_hero",
            ),
            (r#"{not json"#, "invalid_json"),
            (r#"{"event":"fly","id":3}"#, "unknown_event"),
            (
                r#"{"event":"get_name","data":{"hero":5}}"#,
                "invalid_message",
            ),
            (r#"{"event":"get_name"}"#, "invalid_message"),
            (r#"{"event":"get_name","id":-1}"#, "invalid_message"),
            (r#"[1,2]"#, "invalid_message"),
            (r#"{"event":"list_heroes"} trailing"#, "invalid_json"),
        ];
        for (text, code) in cases {
            let v = ask(&h, text);
            assert_eq!(v["event"], "error", "{text}");
            assert_eq!(v["data"]["code"], code, "{text}");
        }
        assert_eq!(ask(&h, cases[0].0)["id"], 3);
        // A wrong-shape message still gets its id back.
        let v = ask(&h, r#"{"event":"get_name","data":{"hero":5},"id":3}"#);
        assert_eq!(v["data"]["code"], "invalid_message");
        assert_eq!(v["id"], 3);
        let long = format!(
            r#"{{"event":"get_name","data":{{"hero":"{}"}}}}"#,
            "a".repeat(65)
        );
        assert_eq!(ask(&h, &long)["data"]["code"], "invalid_message");
        // The message names the field of the wrong type.
        for (text, message) in [
            (
                r#"{"event":"get_name","id":"7"}"#,
                "id must be a whole number from 0 to 4294967295",
            ),
            (
                r#"{"event":"get_name","id":4294967296}"#,
                "id must be a whole number from 0 to 4294967295",
            ),
            (r#"{"event":3}"#, "event must be a string"),
            (r#"{"id":1}"#, "event is missing"),
            (
                r#"{"event":"get_name","data":[1]}"#,
                "data must be an object",
            ),
            (
                r#"{"event":"get_name","data":{"hero":5}}"#,
                "data.hero must be a string",
            ),
            (r#"[1,2]"#, "a message must be a JSON object"),
        ] {
            let v = ask(&h, text);
            assert_eq!(v["data"]["code"], "invalid_message", "{text}");
            assert_eq!(v["data"]["message"], message, "{text}");
        }
    }

    #[test]
    fn list_heroes_in_order() {
        let v = ask(&Heroes::default(), r#"{"event":"list_heroes","id":1}"#);
        assert_eq!(
            v,
            serde_json::json!({"event":"heroes","data":{"heroes":["ironMan","hulk","wonderWoman","batMan","blackPanther"]},"id":1})
        );
    }

    #[test]
    fn escaped_hero_ids_work() {
        let v = ask(
            &Heroes::default(),
            r#"{"event":"get_name","data":{"hero":"iron\u004dan"}}"#,
        );
        assert_eq!(v["data"]["hero_name"], "Tony Stark");
    }

    #[test]
    fn heroes_file_validation() {
        let dir = std::env::temp_dir().join(format!("palisade-heroes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("h.json");
        std::fs::write(&p, r#"{"zed":"Z","amy":"A"}"#).unwrap();
        let h = Heroes::load(&p).unwrap();
        assert_eq!(h.ids().collect::<Vec<_>>(), ["zed", "amy"]);
        std::fs::write(&p, r#"{"a":"A","a":"B"}"#).unwrap();
        assert!(Heroes::load(&p).unwrap_err().contains("appears twice"));
        std::fs::write(&p, r#"["a"]"#).unwrap();
        assert!(Heroes::load(&p).is_err());
        std::fs::write(&p, r#"{}"#).unwrap();
        assert!(Heroes::load(&p).unwrap_err().contains("no heroes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
