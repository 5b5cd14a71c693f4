//! Who may subscribe to and publish on which channel (SPEC.md §10): the
//! `channels` rules, checked once per subscription or publication.

use crate::config::ChannelRule;

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 64;

/// Whether `name` is a channel name: 1 to 64 bytes of `A-Z a-z 0-9 _ . : -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The rules, parsed.
#[derive(Debug, Clone, Default)]
pub struct ChannelPolicy {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// The name, or the prefix before a final `*`.
    stem: Box<str>,
    prefix: bool,
    subscribe: Principals,
    publish: Principals,
}

#[derive(Debug, Clone, Default)]
struct Principals {
    authenticated: bool,
    users: Vec<Box<str>>,
    keys: Vec<Box<str>>,
}

impl Principals {
    fn parse(setting: &str, entries: &[String]) -> Result<Principals, String> {
        let mut p = Principals::default();
        for e in entries {
            if e == "authenticated" {
                p.authenticated = true;
            } else if let Some(user) = e.strip_prefix("user:").filter(|u| !u.is_empty()) {
                p.users.push(user.into());
            } else if let Some(key) = e.strip_prefix("key:").filter(|k| !k.is_empty()) {
                p.keys.push(key.into());
            } else {
                return Err(format!(
                    "{setting}: {e:?} is not \"authenticated\", \"user:NAME\" or \"key:NAME\""
                ));
            }
        }
        Ok(p)
    }
}

impl ChannelPolicy {
    /// Parses the `channels` setting; the error names the bad entry.
    pub fn new(rules: &[ChannelRule]) -> Result<ChannelPolicy, String> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (stem, prefix) = match r.pattern.strip_suffix('*') {
                    Some(stem) => (stem, true),
                    None => (r.pattern.as_str(), false),
                };
                let stem_ok = (prefix && stem.is_empty()) || valid_name(stem);
                if !stem_ok {
                    return Err(format!(
                        "channels[{i}].pattern: {:?} is not a channel name (1 to 64 bytes of A-Z a-z 0-9 _ . : -), optionally ending in *",
                        r.pattern
                    ));
                }
                Ok(Rule {
                    stem: stem.into(),
                    prefix,
                    subscribe: Principals::parse(&format!("channels[{i}].subscribe"), &r.subscribe)?,
                    publish: Principals::parse(&format!("channels[{i}].publish"), &r.publish)?,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ChannelPolicy { rules })
    }

    fn rule(&self, channel: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            if r.prefix {
                channel.starts_with(&*r.stem)
            } else {
                channel == &*r.stem
            }
        })
    }

    /// Whether a client may subscribe to `channel`: `user` is who it
    /// authenticated as (`None` when `auth.mode` is none, where
    /// `authenticated` admits everyone).
    pub fn may_subscribe(&self, channel: &str, user: Option<&str>) -> bool {
        let Some(rule) = self.rule(channel) else {
            return false;
        };
        let s = &rule.subscribe;
        s.authenticated || user.is_some_and(|u| s.users.iter().any(|x| &**x == u))
    }

    /// Whether the API key named `key` may publish on `channel`.
    pub fn may_publish_with_key(&self, channel: &str, key: &str) -> bool {
        self.rule(channel)
            .is_some_and(|r| r.publish.keys.iter().any(|k| &**k == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, subscribe: &[&str]) -> ChannelRule {
        ChannelRule {
            pattern: pattern.into(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            publish: vec!["key:feed".into()],
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("prices.EUR-USD:1_m"));
        assert!(valid_name(&"a".repeat(64)));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("é"));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let p = ChannelPolicy::new(&[
            rule("admin.*", &["user:root"]),
            rule("lookups", &["authenticated"]),
            rule("*", &[]),
        ])
        .unwrap();
        assert!(p.may_subscribe("lookups", Some("alice")));
        assert!(p.may_subscribe("lookups", None));
        assert!(p.may_subscribe("admin.logs", Some("root")));
        assert!(!p.may_subscribe("admin.logs", Some("alice")));
        assert!(!p.may_subscribe("prices", Some("alice")), "* names nobody");
        assert!(p.may_publish_with_key("prices", "feed"));
        assert!(!p.may_publish_with_key("prices", "other"));
    }

    #[test]
    fn a_bad_rule_is_named() {
        let e = ChannelPolicy::new(&[rule("a b", &[])]).unwrap_err();
        assert!(e.starts_with("channels[0].pattern"), "{e}");
        let e = ChannelPolicy::new(&[rule("x", &["everyone"])]).unwrap_err();
        assert!(e.starts_with("channels[0].subscribe"), "{e}");
    }
}
