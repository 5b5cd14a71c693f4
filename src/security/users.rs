//! The users file: `{"users":[{"username":"alice","password_hash":"$pbkdf2-sha256$..."}]}`.
//!
//! Each field is validated while it is parsed, so an error names the line
//! and column of the bad field (serde_json adds the position). Writes are
//! atomic: a temporary file in the same directory, synced, then renamed.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::password::PasswordHash;

/// Longest user name.
pub const MAX_USERNAME_BYTES: usize = 64;
/// Largest users file read.
pub const MAX_USERS_FILE_BYTES: u64 = 16 << 20;

/// A validated user name: 1–64 bytes, letters, digits and `._-@`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Username(String);

impl Username {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Username, String> {
        let ok = !name.is_empty()
            && name.len() <= MAX_USERNAME_BYTES
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
        if ok {
            Ok(Username(name.to_owned()))
        } else {
            Err(format!(
                "username {name:?} must be 1 to {MAX_USERNAME_BYTES} letters, digits or ._-@"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Username::new(&s).map_err(de::Error::custom)
    }
}

/// A stored hash, validated as it is parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHash(PasswordHash);

impl<'de> Deserialize<'de> for StoredHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PasswordHash::parse(&s)
            .map(StoredHash)
            .map_err(|e| de::Error::custom(format!("password_hash: {e}")))
    }
}

impl Serialize for StoredHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_phc())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    username: Username,
    password_hash: StoredHash,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    users: Vec<Entry>,
}

/// The users, by name.
#[derive(Clone, Default)]
pub struct Users {
    order: Vec<Username>,
    hashes: HashMap<Username, PasswordHash>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Users({} users)", self.order.len())
    }
}

impl Users {
    /// Parses the text of a users file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Users, String> {
        let file: File =
            serde_json::from_str(text).map_err(|e| format!("users file {origin}: {e}"))?;
        let mut users = Users::default();
        for entry in file.users {
            if users.hashes.contains_key(&entry.username) {
                return Err(format!(
                    "users file {origin}: user {:?} appears twice",
                    entry.username.0
                ));
            }
            users.insert(entry.username, entry.password_hash.0);
        }
        Ok(users)
    }

    /// Reads and parses a users file.
    pub fn load(path: &Path) -> Result<Users, String> {
        let origin = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| format!("users file {origin}: {e}"))?;
        if meta.len() > MAX_USERS_FILE_BYTES {
            return Err(format!(
                "users file {origin}: larger than {MAX_USERS_FILE_BYTES} bytes"
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("users file {origin}: {e}"))?;
        Users::parse(&text, &origin)
    }

    /// Adds or replaces a user; returns whether it replaced one.
    pub fn insert(&mut self, name: Username, hash: PasswordHash) -> bool {
        let replaced = self.hashes.insert(name.clone(), hash).is_some();
        if !replaced {
            self.order.push(name);
        }
        replaced
    }

    /// The hash of `name`, if that user exists.
    pub fn get(&self, name: &str) -> Option<&PasswordHash> {
        self.hashes.get(&Username(name.to_owned()))
    }

    /// Removes a user; returns whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let name = Username(name.to_owned());
        if self.hashes.remove(&name).is_none() {
            return false;
        }
        self.order.retain(|n| *n != name);
        true
    }

    /// Every user and hash, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PasswordHash)> {
        self.order.iter().map(|n| (n.as_str(), &self.hashes[n]))
    }

    /// Every user's hash.
    pub fn hashes(&self) -> impl Iterator<Item = &PasswordHash> {
        self.hashes.values()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The file's JSON text.
    pub fn to_json(&self) -> String {
        let users = self
            .order
            .iter()
            .map(|n| Entry {
                username: n.clone(),
                password_hash: StoredHash(self.hashes[n].clone()),
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&File { users }).expect("users serialize");
        s.push('\n');
        s
    }

    /// Writes the file atomically: a temporary file beside it, synced, renamed.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        write_private(path, &self.to_json(), "users file")
    }
}

/// Writes `text` to `path` atomically (a temporary file beside it, mode
/// 0600, synced, renamed over it); errors name `what` and the path.
pub fn write_private(path: &Path, text: &str, what: &str) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{what} {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::password::MIN_ITERATIONS;

    fn hash(p: &str) -> PasswordHash {
        PasswordHash::generate(p.as_bytes(), MIN_ITERATIONS).unwrap()
    }

    #[test]
    fn round_trip_and_replace() {
        let mut u = Users::default();
        assert!(!u.insert(Username::new("alice").unwrap(), hash("a")));
        assert!(!u.insert(Username::new("bob").unwrap(), hash("b")));
        assert!(u.insert(Username::new("alice").unwrap(), hash("a2")));
        let back = Users::parse(&u.to_json(), "t").unwrap();
        assert_eq!(back.len(), 2);
        assert!(back.get("alice").unwrap().verify(b"a2"));
        assert!(back.get("bob").unwrap().verify(b"b"));
        assert!(back.get("carol").is_none());
        assert_eq!(format!("{back:?}"), "Users(2 users)");
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let good = hash("x").to_phc();
        let bad_hash = "{\n  \"users\": [\n    {\"username\": \"alice\", \"password_hash\": \"$md5$nope\"}\n  ]\n}";
        let e = Users::parse(bad_hash, "u.json").unwrap_err();
        assert!(
            e.contains("password_hash: must start with") && e.contains("line 3"),
            "{e}"
        );
        let bad_name =
            format!("{{\"users\": [\n{{\"username\": \"a b\", \"password_hash\": \"{good}\"}}]}}");
        let e = Users::parse(&bad_name, "u.json").unwrap_err();
        assert!(
            e.contains("username \"a b\"") && e.contains("line 2"),
            "{e}"
        );
        let unknown = format!("{{\"users\": [{{\"username\": \"a\", \"password\": \"{good}\"}}]}}");
        assert!(
            Users::parse(&unknown, "u.json")
                .unwrap_err()
                .contains("unknown field `password`")
        );
        let twice = format!(
            "{{\"users\": [{{\"username\": \"a\", \"password_hash\": \"{good}\"}},{{\"username\": \"a\", \"password_hash\": \"{good}\"}}]}}"
        );
        assert!(
            Users::parse(&twice, "u.json")
                .unwrap_err()
                .contains("appears twice")
        );
    }

    #[test]
    fn save_is_atomic_and_private() {
        let dir = std::env::temp_dir().join(format!("palisade-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.json");
        let mut u = Users::default();
        u.insert(Username::new("alice").unwrap(), hash("a"));
        u.save(&path).unwrap();
        u.save(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(Users::load(&path).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
