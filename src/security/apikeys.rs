//! API keys for `POST /api/publish` (SPEC.md §10): separate from user
//! tokens, kept in a file of hashes (`api.keys_file`).
//!
//! A key is `pk_` and 256 random bits (base64url); the file keeps only its
//! SHA-256 under the key's name, so reading the file gives no key away.
//! With that much entropy a salted, slow hash would buy nothing: a key is
//! checked with one SHA-256 and a constant-time comparison against each
//! stored hash.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use ring::digest;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

/// What a new key starts with (so it is recognizable in a secret scanner).
pub const KEY_PREFIX: &str = "pk_";

/// The keys: name to `sha256:<hex>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeys {
    keys: BTreeMap<String, String>,
}

fn hash_of(key: &str) -> String {
    let d = digest::digest(&digest::SHA256, key.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether `name` may name a key: 1 to 64 bytes of `A-Z a-z 0-9 _ . -`.
fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl ApiKeys {
    /// Reads a keys file; the error names it.
    pub fn load(path: &Path) -> Result<ApiKeys, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("api keys file {}: {e}", path.display()))?;
        let keys: ApiKeys = serde_json::from_str(&text)
            .map_err(|e| format!("api keys file {}: {e}", path.display()))?;
        for (name, hash) in &keys.keys {
            let hex = hash.strip_prefix("sha256:").unwrap_or("");
            if !valid_key_name(name)
                || hex.len() != 64
                || !hex.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(format!(
                    "api keys file {}: entry {name:?} is not a key name with a sha256:<64 hex digits> hash",
                    path.display()
                ));
            }
        }
        Ok(keys)
    }

    /// Writes the file atomically (mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(self).expect("keys serialize");
        text.push('\n');
        super::users::write_private(path, &text, "api keys file")
    }

    /// Makes a key named `name` and returns it: the only time it is seen.
    pub fn add(&mut self, name: &str) -> Result<String, String> {
        if !valid_key_name(name) {
            return Err(format!(
                "{name:?} is not a key name (1 to 64 bytes of A-Z a-z 0-9 _ . -)"
            ));
        }
        if self.keys.contains_key(name) {
            return Err(format!(
                "there is a key named {name} already; remove it first"
            ));
        }
        let mut raw = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| "the system random number generator failed".to_owned())?;
        let key = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        self.keys.insert(name.to_owned(), hash_of(&key));
        Ok(key)
    }

    /// Removes the key named `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        self.keys.remove(name).is_some()
    }

    /// The names of the keys.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The name of the key `presented` is, if it is one.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let hash = hash_of(presented);
        let mut found = None;
        for (name, stored) in &self.keys {
            // Every entry is compared, in constant time each.
            let same = stored.len() == hash.len()
                && stored
                    .bytes()
                    .zip(hash.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if same {
                found = Some(name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_verifies_by_name_and_the_file_keeps_only_its_hash() {
        let mut k = ApiKeys::default();
        let key = k.add("feed-bot").unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == 46, "{key}");
        assert_eq!(k.verify(&key), Some("feed-bot"));
        assert_eq!(k.verify("pk_nope"), None);
        let text = serde_json::to_string(&k).unwrap();
        assert!(!text.contains(&key[3..]), "{text}");
        assert!(k.add("feed-bot").is_err());
        assert!(k.add("a b").is_err());
        assert!(k.remove("feed-bot"));
        assert_eq!(k.verify(&key), None);
    }

    #[test]
    fn a_bad_file_is_named() {
        let dir = std::env::temp_dir().join(format!("palisade-apikeys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        std::fs::write(&path, r#"{"keys":{"x":"md5:00"}}"#).unwrap();
        let e = ApiKeys::load(&path).unwrap_err();
        assert!(e.contains("entry \"x\""), "{e}");
        let mut k = ApiKeys::default();
        let key = k.add("ok").unwrap();
        k.save(&path).unwrap();
        assert_eq!(ApiKeys::load(&path).unwrap().verify(&key), Some("ok"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
