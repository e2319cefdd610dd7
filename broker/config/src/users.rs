//! The users file: MessageSight's messaging users and groups, for machines without a directory.
//!
//! MessageSight 1.x and 2.0 kept an internal user registry, administered as
//! `imaserver user add "UserID=alice" "Type=Messaging" "Password=..." "GroupMembership=ops"` and
//! `imaserver group add "GroupID=ops" "GroupMembership=staff"`. ironsight keeps the same facts
//! as two configuration objects, named by the user id and the group id:
//!
//! ```json
//! { "MessagingUser": { "alice": { "Password": "SCRAM-SHA-256$4096:...", "GroupMembership": "ops" } },
//!   "MessagingGroup": { "ops": { "GroupMembership": "staff" }, "staff": {} } }
//! ```
//!
//! - A password is stored only as a SCRAM-SHA-256 verifier in PostgreSQL's text form
//!   ([`ScramVerifier`]), made by `ironsight-passwd`; a clear-text password is refused. One
//!   verifier checks a CONNECT's user name and password and also answers MQTT 5 enhanced
//!   authentication with SCRAM, in which the password never crosses the wire.
//! - A group's `GroupMembership` names its parent groups: a user belongs to its own groups and to
//!   every group above them ([`Users::groups_of`]). A group that is not defined, and a group that
//!   is (through its parents) its own parent, are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::fields::Fields;
use crate::objects::{comma_list, named, names};
use crate::ConfigError;

/// Bytes of a SHA-256 output: the length of StoredKey and ServerKey.
pub const SCRAM_KEY_LEN: usize = 32;

/// The fewest PBKDF2 iterations a verifier may have. RFC 7677 section 4: the iteration count
/// "SHOULD be at least 4096"; ironsight makes it a must, so that a stolen configuration costs
/// a password guesser at least that much per guess.
pub const ITERATIONS_MIN: u32 = 4096;

/// The most PBKDF2 iterations a verifier may have. A CONNECT with a password runs them once
/// (unless its credentials are cached), on one of the authentication side's hashing threads (one per core): at
/// 1,000,000 a check takes some 150 ms of CPU on a 2026 x86 core (0.6 ms at 4096), so that a
/// handful of logins fill the authentication timeout. A count beyond this is a typing mistake.
pub const ITERATIONS_MAX: u32 = 1_000_000;

/// The shortest salt, in bytes: NIST SP 800-132 section 5.1 asks for at least 128 bits.
pub const SALT_LEN_MIN: usize = 16;

/// The longest salt, in bytes. A salt only has to be unique; longer ones add nothing.
pub const SALT_LEN_MAX: usize = 64;

/// The longest user or group id, in bytes: MQTT's strings (a CONNECT's user name) hold at most
/// 65,535 bytes, so a longer id could never be used.
pub const ID_LEN_MAX: usize = 65_535;

const _: () = assert!(ITERATIONS_MIN <= ITERATIONS_MAX);
const _: () = assert!(SALT_LEN_MIN <= SALT_LEN_MAX);

/// How a verifier starts: the SCRAM mechanism's name, as PostgreSQL writes it.
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

/// What a user's password is checked against: PBKDF2-HMAC-SHA256 of the password with `salt`
/// and `iterations` gives the SaltedPassword; `stored_key` is SHA-256 of HMAC(SaltedPassword,
/// "Client Key"), `server_key` is HMAC(SaltedPassword, "Server Key") (RFC 5802 section 3).
///
/// Text form (PostgreSQL's, so that a verifier from `pg_authid` works unchanged):
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, each binary part in base64.
///
/// `==` compares in variable time: it is for configurations, never for checking a password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: NonZeroU32,
    salt: Box<[u8]>,
    stored_key: [u8; SCRAM_KEY_LEN],
    server_key: [u8; SCRAM_KEY_LEN],
}

impl ScramVerifier {
    /// A verifier from its parts; refuses an iteration count or salt out of bounds.
    pub fn new(
        iterations: u32,
        salt: &[u8],
        stored_key: [u8; SCRAM_KEY_LEN],
        server_key: [u8; SCRAM_KEY_LEN],
    ) -> Result<ScramVerifier, String> {
        let iterations = ScramVerifier::check_iterations(iterations)?;
        if !(SALT_LEN_MIN..=SALT_LEN_MAX).contains(&salt.len()) {
            return Err(format!(
                "has a salt of {} bytes; use {SALT_LEN_MIN} to {SALT_LEN_MAX}",
                salt.len()
            ));
        }
        Ok(ScramVerifier {
            iterations,
            salt: salt.into(),
            stored_key,
            server_key,
        })
    }

    /// Whether a verifier may have this iteration count: checked before hashing, so that a
    /// bad count is refused before it costs anything.
    pub fn check_iterations(iterations: u32) -> Result<NonZeroU32, String> {
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(format!(
                "has {iterations} iterations; use {ITERATIONS_MIN} to {ITERATIONS_MAX}"
            ));
        }
        Ok(NonZeroU32::new(iterations).expect("ITERATIONS_MIN is positive"))
    }

    pub fn iterations(&self) -> NonZeroU32 {
        self.iterations
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub fn stored_key(&self) -> &[u8; SCRAM_KEY_LEN] {
        &self.stored_key
    }

    pub fn server_key(&self) -> &[u8; SCRAM_KEY_LEN] {
        &self.server_key
    }
}

impl FromStr for ScramVerifier {
    type Err = String;

    /// Reads the text form. The error says what is wrong without repeating the text: a
    /// mistyped attribute may hold a clear-text password.
    fn from_str(text: &str) -> Result<ScramVerifier, String> {
        let Some(rest) = text.strip_prefix(SCRAM_PREFIX) else {
            return Err("is not a SCRAM-SHA-256 verifier; a clear-text password or another kind of hash is refused".into());
        };
        let shape = "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
        let (params, keys) = rest
            .split_once('$')
            .ok_or_else(|| format!("is not of the form {shape}"))?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or_else(|| format!("is not of the form {shape}"))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or_else(|| format!("is not of the form {shape}"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| "has an iteration count that is not a number".to_string())?;
        let salt = BASE64
            .decode(salt)
            .map_err(|_| "has a salt that is not base64".to_string())?;
        let key = |part: &str, name: &str| -> Result<[u8; SCRAM_KEY_LEN], String> {
            let bytes = BASE64
                .decode(part)
                .map_err(|_| format!("has a {name} that is not base64"))?;
            bytes
                .try_into()
                .map_err(|_| format!("has a {name} that is not {SCRAM_KEY_LEN} bytes"))
        };
        ScramVerifier::new(
            iterations,
            &salt,
            key(stored, "StoredKey")?,
            key(server, "ServerKey")?,
        )
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCRAM_PREFIX}{}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }
}

/// Logs and error messages show the cost, never the keys: with them, a guesser can test
/// passwords offline.
impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Serialize for ScramVerifier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A messaging user (MessageSight's `user add ... Type=Messaging`), named by its user id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessagingUser {
    pub description: String,
    pub password: ScramVerifier,
    /// The groups the user is a member of directly.
    #[serde(serialize_with = "comma_list")]
    pub group_membership: Vec<String>,
}

/// A messaging group, named by its group id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessagingGroup {
    pub description: String,
    /// The groups this group is a member of: its members are members of those too.
    #[serde(serialize_with = "comma_list")]
    pub group_membership: Vec<String>,
}

/// Every messaging user and group; a parsed one has no unknown group and no cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Users {
    #[serde(rename = "MessagingUser")]
    pub users: BTreeMap<String, MessagingUser>,
    #[serde(rename = "MessagingGroup")]
    pub groups: BTreeMap<String, MessagingGroup>,
}

impl Users {
    /// Takes the `MessagingUser` and `MessagingGroup` objects out of a configuration document.
    pub(crate) fn parse(doc: &mut serde_json::Map<String, Value>) -> Result<Users, ConfigError> {
        let users = Users {
            users: named(doc, "MessagingUser", MessagingUser::parse)?,
            groups: named(doc, "MessagingGroup", MessagingGroup::parse)?,
        };
        users.check_membership()?;
        Ok(users)
    }

    /// Every group `user` belongs to, directly or through nested groups, each once.
    pub fn groups_of<'a>(&'a self, user: &'a MessagingUser) -> BTreeSet<&'a str> {
        let mut found = BTreeSet::new();
        let mut next: Vec<&str> = user.group_membership.iter().map(String::as_str).collect();
        while let Some(group) = next.pop() {
            if found.insert(group) {
                let parents = self
                    .groups
                    .get(group)
                    .map_or(&[][..], |g| g.group_membership.as_slice());
                next.extend(parents.iter().map(String::as_str));
            }
        }
        found
    }

    /// Every named group exists, and no group is its own ancestor.
    fn check_membership(&self) -> Result<(), ConfigError> {
        let missing = |object: &str, name: &str, group: &str| {
            ConfigError::attribute(
                object,
                name,
                "GroupMembership",
                format!("names MessagingGroup \"{group}\", which does not exist"),
            )
        };
        for (name, user) in &self.users {
            if let Some(g) = user
                .group_membership
                .iter()
                .find(|g| !self.groups.contains_key(*g))
            {
                return Err(missing("MessagingUser", name, g));
            }
        }
        for (name, group) in &self.groups {
            if let Some(g) = group
                .group_membership
                .iter()
                .find(|g| !self.groups.contains_key(*g))
            {
                return Err(missing("MessagingGroup", name, g));
            }
        }
        match self.find_cycle() {
            None => Ok(()),
            Some(cycle) => Err(ConfigError::attribute(
                "MessagingGroup",
                cycle[0],
                "GroupMembership",
                format!("makes the group a member of itself: {}", path_text(&cycle)),
            )),
        }
    }

    /// A membership cycle, as the path from a group back to itself, if there is one. Depth
    /// first with an explicit stack: a long chain of nested groups must not overflow the
    /// thread's stack.
    fn find_cycle(&self) -> Option<Vec<&str>> {
        #[derive(Clone, Copy)]
        enum Mark {
            OnPath,
            Done,
        }
        let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
        for start in self.groups.keys() {
            if marks.contains_key(start.as_str()) {
                continue;
            }
            // The path from `start`, each group with the index of the next parent to visit.
            let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
            marks.insert(start.as_str(), Mark::OnPath);
            while let Some((group, next)) = path.last_mut() {
                let parents = &self.groups[*group].group_membership;
                let Some(parent) = parents.get(*next).map(String::as_str) else {
                    marks.insert(*group, Mark::Done);
                    path.pop();
                    continue;
                };
                *next += 1;
                match marks.get(parent) {
                    Some(Mark::Done) => {}
                    Some(Mark::OnPath) => {
                        let from = path.iter().position(|(g, _)| *g == parent);
                        let from = from.expect("a group marked on the path is on it");
                        let mut cycle: Vec<&str> = path[from..].iter().map(|(g, _)| *g).collect();
                        cycle.push(parent);
                        return Some(cycle);
                    }
                    None => {
                        marks.insert(parent, Mark::OnPath);
                        path.push((parent, 0));
                    }
                }
            }
        }
        None
    }
}

/// The groups of a cycle shown in an error; a longer cycle shows its start and end.
const CYCLE_SHOWN_MAX: usize = 8;

fn path_text(cycle: &[&str]) -> String {
    if cycle.len() <= CYCLE_SHOWN_MAX {
        return cycle.join(" -> ");
    }
    let (head, tail) = (&cycle[..CYCLE_SHOWN_MAX - 2], &cycle[cycle.len() - 2..]);
    format!(
        "{} -> ... ({} more) -> {}",
        head.join(" -> "),
        cycle.len() - CYCLE_SHOWN_MAX,
        tail.join(" -> ")
    )
}

/// A user or group id: what a client sends as its user name, and what policies name.
fn check_id(object: &str, id: &str) -> Result<(), ConfigError> {
    let problem = if id.is_empty() {
        Some("an id must not be empty".to_string())
    } else if id.len() > ID_LEN_MAX {
        Some(format!("an id may have at most {ID_LEN_MAX} bytes"))
    } else if id.trim() != id {
        Some("an id must not start or end with white space".to_string())
    } else if id.chars().any(char::is_control) {
        Some("an id must not hold control characters".to_string())
    } else if object == "MessagingGroup" && id.contains(',') {
        Some(
            "a group id must not hold ',', which separates the groups of a GroupMembership"
                .to_string(),
        )
    } else {
        None
    };
    match problem {
        Some(message) => Err(ConfigError::object(object, id, message)),
        None => Ok(()),
    }
}

impl MessagingUser {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        check_id("MessagingUser", name)?;
        let mut f = Fields::new("MessagingUser", name, value)?;
        let password = f.required_string("Password")?;
        let password = password.parse::<ScramVerifier>().map_err(|problem| {
            f.error(
                "Password",
                format!("{problem}: make a verifier with ironsight-passwd, which reads the password from standard input"),
            )
        })?;
        let user = MessagingUser {
            description: f.string("Description", "")?,
            password,
            group_membership: names(&f.string("GroupMembership", "")?),
        };
        f.finish()?;
        Ok(user)
    }
}

impl MessagingGroup {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        check_id("MessagingGroup", name)?;
        let mut f = Fields::new("MessagingGroup", name, value)?;
        let group = MessagingGroup {
            description: f.string("Description", "")?,
            group_membership: names(&f.string("GroupMembership", "")?),
        };
        f.finish()?;
        Ok(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    /// The RFC 7677 example's verifier (user "user", password "pencil").
    const PENCIL: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    fn parse(users: Value) -> Result<Config, ConfigError> {
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        for (k, v) in users.as_object().unwrap() {
            doc[k] = v.clone();
        }
        Config::parse(&doc.to_string())
    }

    fn error(users: Value) -> String {
        parse(users).unwrap_err().to_string()
    }

    /// Proves the text form is read into its parts and written back byte for byte.
    #[test]
    fn verifier_text_round_trips() {
        let v: ScramVerifier = PENCIL.parse().unwrap();
        assert_eq!(v.iterations().get(), 4096);
        assert_eq!(v.salt().len(), 16);
        assert_eq!(v.stored_key()[0], 0x58);
        assert_eq!(v.server_key()[31], 0xd5);
        assert_eq!(v.to_string(), PENCIL);
        assert_eq!(format!("{v:?}"), "ScramVerifier { iterations: 4096, .. }");
    }

    /// Proves every malformed part is named, and that the text is never repeated.
    #[test]
    fn malformed_verifiers_say_what_is_wrong() {
        let salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
        let key = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
        let cases = [
            ("pencil".to_string(), "is not a SCRAM-SHA-256 verifier; a clear-text password or another kind of hash is refused"),
            ("$7$101$abc".to_string(), "is not a SCRAM-SHA-256 verifier; a clear-text password or another kind of hash is refused"),
            ("SCRAM-SHA-256$4096".to_string(), "is not of the form SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"),
            (format!("SCRAM-SHA-256$x:{salt}${key}:{key}"), "has an iteration count that is not a number"),
            (format!("SCRAM-SHA-256$4095:{salt}${key}:{key}"), "has 4095 iterations; use 4096 to 1000000"),
            (format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}"), "has a salt of 4 bytes; use 16 to 64"),
            (format!("SCRAM-SHA-256$4096:{salt}$!!:{key}"), "has a StoredKey that is not base64"),
            (format!("SCRAM-SHA-256$4096:{salt}${key}:c2FsdA=="), "has a ServerKey that is not 32 bytes"),
            // Base64 without its padding is not PostgreSQL's form.
            (format!("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ${key}:{key}"), "has a salt that is not base64"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                text.parse::<ScramVerifier>().unwrap_err(),
                expected,
                "{text}"
            );
        }
    }

    /// Proves users and nested groups are read, each user's groups include its groups'
    /// parents, and the configuration is written back with the verifier.
    #[test]
    fn users_and_nested_groups() {
        let config = parse(serde_json::json!({
            "MessagingUser": {
                "alice": {"Password": PENCIL, "GroupMembership": "ops, dev", "Description": "on call"},
                "bob": {"Password": PENCIL},
                "x/PRIVILEGE": {"Password": PENCIL},
            },
            "MessagingGroup": {
                "ops": {"GroupMembership": "staff"},
                "dev": {"GroupMembership": "staff,eng"},
                "staff": {"GroupMembership": "everyone"},
                "eng": {},
                "everyone": {"Description": "all of us"},
            },
        }))
        .unwrap();
        let users = &config.users;
        let groups = |u: &str| {
            users
                .groups_of(&users.users[u])
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(groups("alice"), ["dev", "eng", "everyone", "ops", "staff"]);
        assert!(groups("bob").is_empty());
        assert!(groups("x/PRIVILEGE").is_empty());
        assert_eq!(users.users["alice"].description, "on call");
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["MessagingUser"]["alice"]["Password"], PENCIL);
        assert_eq!(json["MessagingUser"]["alice"]["GroupMembership"], "ops,dev");
        assert_eq!(
            json["MessagingGroup"]["dev"]["GroupMembership"],
            "staff,eng"
        );
        let again = Config::parse(&json.to_string()).unwrap();
        assert_eq!(again.users, config.users);
    }

    /// Proves a configuration without users has none, and says so when written.
    #[test]
    fn no_users_by_default() {
        let config = Config::builtin();
        assert!(config.users.users.is_empty());
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["MessagingUser"], serde_json::json!({}));
    }

    #[test]
    fn clear_text_passwords_are_refused_without_echo() {
        let e = error(serde_json::json!({"MessagingUser": {"alice": {"Password": "s3cret!"}}}));
        assert_eq!(e, "MessagingUser \"alice\", attribute Password: is not a SCRAM-SHA-256 verifier; a clear-text password or another kind of hash is refused: make a verifier with ironsight-passwd, which reads the password from standard input");
        assert!(!e.contains("s3cret"));
        let e = error(serde_json::json!({"MessagingUser": {"alice": {}}}));
        assert_eq!(
            e,
            "MessagingUser \"alice\", attribute Password: is required"
        );
    }

    #[test]
    fn membership_mistakes_name_object_and_attribute() {
        let user =
            |groups: &str| serde_json::json!({"Password": PENCIL, "GroupMembership": groups});
        let cases = [
            (serde_json::json!({"MessagingUser": {"alice": user("ops")}}),
             "MessagingUser \"alice\", attribute GroupMembership: names MessagingGroup \"ops\", which does not exist"),
            (serde_json::json!({"MessagingGroup": {"ops": {"GroupMembership": "staff"}}}),
             "MessagingGroup \"ops\", attribute GroupMembership: names MessagingGroup \"staff\", which does not exist"),
            (serde_json::json!({"MessagingGroup": {"ops": {"GroupMembership": "ops"}}}),
             "MessagingGroup \"ops\", attribute GroupMembership: makes the group a member of itself: ops -> ops"),
            (serde_json::json!({"MessagingGroup": {
                "a": {"GroupMembership": "b"}, "b": {"GroupMembership": "z,c"},
                "c": {"GroupMembership": "a"}, "z": {}}}),
             "MessagingGroup \"a\", attribute GroupMembership: makes the group a member of itself: a -> b -> c -> a"),
            (serde_json::json!({"MessagingUser": {"alice": {"Password": PENCIL, "Groups": "x"}}}),
             "MessagingUser \"alice\", attribute Groups: is not an attribute of this object"),
            (serde_json::json!({"MessagingUser": {" alice": user("")}}),
             "MessagingUser \" alice\": an id must not start or end with white space"),
            (serde_json::json!({"MessagingUser": {"": user("")}}),
             "MessagingUser \"\": an id must not be empty"),
            (serde_json::json!({"MessagingUser": {"a\u{0}b": user("")}}),
             "MessagingUser \"a\u{0}b\": an id must not hold control characters"),
            (serde_json::json!({"MessagingGroup": {"a,b": {}}}),
             "MessagingGroup \"a,b\": a group id must not hold ',', which separates the groups of a GroupMembership"),
        ];
        for (users, expected) in cases {
            assert_eq!(error(users), expected);
        }
    }

    /// Proves a long chain of nested groups is resolved and checked without recursion.
    #[test]
    fn deep_nesting_does_not_overflow() {
        const DEPTH: usize = 30_000;
        let mut groups = serde_json::Map::new();
        for i in 0..DEPTH {
            let parent = if i + 1 < DEPTH {
                format!("g{}", i + 1)
            } else {
                String::new()
            };
            groups.insert(
                format!("g{i}"),
                serde_json::json!({"GroupMembership": parent}),
            );
        }
        let config = parse(serde_json::json!({
            "MessagingUser": {"u": {"Password": PENCIL, "GroupMembership": "g0"}},
            "MessagingGroup": groups,
        }))
        .unwrap();
        assert_eq!(
            config.users.groups_of(&config.users.users["u"]).len(),
            DEPTH
        );
    }

    /// Proves a long cycle is found without recursion, and shown shortened.
    #[test]
    fn long_cycles_are_shown_shortened() {
        let depth = 30_000;
        let mut groups = serde_json::Map::new();
        for i in 0..depth {
            groups.insert(
                format!("g{i}"),
                serde_json::json!({"GroupMembership": format!("g{}", (i + 1) % depth)}),
            );
        }
        let e = error(serde_json::json!({"MessagingGroup": groups}));
        let expected = format!("MessagingGroup \"g0\", attribute GroupMembership: makes the group a member of itself: g0 -> g1 -> g2 -> g3 -> g4 -> g5 -> ... ({} more) -> g{} -> g0", depth + 1 - 8, depth - 1);
        assert_eq!(e, expected);
    }
}
