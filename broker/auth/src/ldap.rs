//! An LDAP directory as a [`Directory`]: Amlen's `LDAP` object (`ironsight_config::ldap`).
//!
//! One verification ([`LdapDirectory::verify`]), all of it within `Timeout`:
//! 1. What no directory should see is refused first: an empty password (a bind with a name and
//!    an empty password is an *unauthenticated bind*, RFC 4513 5.1.2, which many directories
//!    answer with success and anonymous rights; slapd refuses it unless told otherwise), a
//!    password that is not UTF-8 (ldap3 sends passwords as text), and ids or passwords over
//!    their bounds.
//! 2. The cache ([`cache`]): credentials this user proved within `CacheTimeout` answer at once,
//!    compared as keyed hashes.
//! 3. The user's DN: `<UserIdMap>=<user id>,<UserSuffix>` when there is a UserSuffix (a direct
//!    bind, as in Amlen); otherwise searched, as BindDN, under BaseDN by `(<UserIdMap>=<id>)`,
//!    which must find exactly one entry.
//! 4. A bind as that DN with the password, on a connection of the pool ([`pool`]).
//! 5. The user's groups, cached with the DN for `GroupCacheTimeout`: the entries under
//!    GroupSuffix whose GroupMemberIdMap holds the user's DN, and with NestedGroupSearch the
//!    groups that hold those, level by level (one search per level, cycles stop).
//!
//! User ids go into filters escaped as RFC 4515 says and into DNs escaped as RFC 4514 says
//! (ldap3's `ldap_escape` and `dn_escape`): `*`, `(`, `)`, `\`, NUL, `+`, `,`, `=` in an id
//! are characters of one value, never structure of the filter or the DN. An unknown user and a
//! wrong password are both [`Refusal::BadCredentials`]; a directory that refuses the broker's
//! own bind, fails, or does not answer in time is [`Refusal::Unavailable`].
//!
//! With IgnoreCase (Amlen's default) the principal's user id and group names are lowercased:
//! the directory matches `uid` and `cn` without case, so one entry gets one identity whatever
//! spelling the client sent. Without it, the user id is as the client sent it and group names
//! as the directory stores them. A group's name is its GroupIdMap attribute (the first value,
//! when it has several).
//!
//! `Timeout` bounds a verification as a whole (Amlen applies it to each LDAP call, so that one
//! verification could take several times it).

mod cache;
mod pool;
mod tls;

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironsight_config::ldap::Ldap as LdapObject;
use ironsight_core::auth::{AuthVerdict, Principal, Refusal};
use ldap3::asn1::StructureTag;
use ldap3::{dn_escape, ldap_escape, LdapError, ResultEntry, Scope, SearchOptions, SearchResult};

use crate::check::{BoxFuture, Directory};
use cache::{Cache, Lookup};
use pool::{Pool, Role};

/// Longest user id sent to the directory, in bytes (Amlen's policies take user ids of at
/// most 1024 characters).
const USER_ID_BYTES_MAX: usize = 1024;
/// Longest password sent to the directory, in bytes.
const PASSWORD_BYTES_MAX: usize = 4096;
/// Most groups a user is taken to be in; a user in more gets the first this many the
/// directory returns (rights only shrink), and a warning.
const GROUPS_MAX: usize = 1024;
/// Levels of nested groups followed with NestedGroupSearch; deeper nesting is not followed.
const NESTING_LEVELS_MAX: usize = 16;
/// Member DNs asked about in one group search (`(|(member=a)(member=b)...)`), which bounds a
/// filter's length.
const MEMBERS_PER_SEARCH: usize = 32;

/// The users and groups of an LDAP directory.
pub struct LdapDirectory {
    user_dn: UserDn,
    user_attribute: String,
    group_base: String,
    group_attribute: String,
    member_attribute: String,
    ignore_case: bool,
    nested: bool,
    timeout: Duration,
    pool: Pool,
    cache: Cache,
}

/// How a user's DN is found.
enum UserDn {
    /// `<UserIdMap>=<id>,<suffix>` (UserSuffix set).
    Direct { suffix: String },
    /// Searched under BaseDN as BindDN (no UserSuffix).
    Search { base: String },
}

impl LdapDirectory {
    /// The directory an enabled LDAP object describes. `base_dir` is where a relative
    /// `Certificate` is found (the configuration file's directory). Nothing is connected yet:
    /// connections open on the first verification, on the auth service's runtime.
    pub fn new(ldap: &LdapObject, base_dir: &Path) -> Result<LdapDirectory, String> {
        if !ldap.enabled {
            return Err("LDAP \"ldapconfig\": Enabled is false".into());
        }
        let timeout = Duration::from_secs(u64::from(ldap.timeout));
        let user_dn = match ldap.user_suffix.trim() {
            "" => UserDn::Search {
                base: ldap.base_dn.clone(),
            },
            suffix => UserDn::Direct {
                suffix: suffix.to_string(),
            },
        };
        Ok(LdapDirectory {
            user_dn,
            user_attribute: ldap.user_attribute().to_string(),
            group_base: ldap.group_suffix.clone(),
            group_attribute: ldap.group_attribute().to_string(),
            member_attribute: ldap.member_attribute().to_string(),
            ignore_case: ldap.ignore_case,
            nested: ldap.nested_group_search,
            timeout,
            pool: Pool::new(ldap, tls::client_config(ldap, base_dir)?, timeout),
            cache: Cache::new(ldap)?,
        })
    }

    async fn check(&self, user: &str, password: &[u8]) -> AuthVerdict {
        let password = admissible(user, password)?;
        let id = self.identity(user);
        let now = Instant::now();
        match self.cache.lookup(&id, password, now) {
            Lookup::Proved(principal) => Ok(principal),
            Lookup::Known { dn, principal } => {
                self.bind_user(&dn, password).await?;
                self.cache.proved(&id, password, now);
                Ok(principal)
            }
            Lookup::Unknown => {
                let dn = self.find_user(user).await?;
                self.bind_user(&dn, password).await?;
                let principal = Arc::new(Principal::new(id.as_str(), self.groups(&dn).await?));
                self.cache
                    .insert(&id, Some(password), dn.into(), principal.clone(), now);
                Ok(principal)
            }
        }
    }

    /// The user and its groups, without a bind: from the cache while they are fresh, else
    /// searched. A user the directory does not know (or knows twice) has no groups.
    async fn identify_user(&self, user: &str) -> AuthVerdict {
        let id = self.identity(user);
        let now = Instant::now();
        if let Some(principal) = self.cache.known(&id, now) {
            return Ok(principal);
        }
        let dn = match self.find_user(user).await {
            Ok(dn) => dn,
            Err(Refusal::BadCredentials) => return Ok(Arc::new(Principal::new(id.as_str(), []))),
            Err(refusal) => return Err(refusal),
        };
        let principal = Arc::new(Principal::new(id.as_str(), self.groups(&dn).await?));
        self.cache
            .insert(&id, None, dn.into(), principal.clone(), now);
        Ok(principal)
    }

    /// Runs a directory operation within Timeout: a directory that does not answer in time is
    /// Unavailable.
    async fn within_timeout(
        &self,
        user: &str,
        work: impl Future<Output = AuthVerdict>,
    ) -> AuthVerdict {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(verdict) => verdict,
            Err(_) => {
                tracing::warn!(user, timeout = ?self.timeout, "the directory did not answer in time");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// The principal's user id, also the cache's key.
    fn identity(&self, user: &str) -> String {
        if self.ignore_case {
            user.to_lowercase()
        } else {
            user.to_string()
        }
    }

    async fn find_user(&self, user: &str) -> Result<String, Refusal> {
        let base = match &self.user_dn {
            UserDn::Direct { suffix } => {
                return Ok(format!(
                    "{}={},{suffix}",
                    self.user_attribute,
                    dn_escape(user)
                ))
            }
            UserDn::Search { base } => base,
        };
        let filter = format!("({}={})", self.user_attribute, ldap_escape(user));
        let mut lease = self.pool.lease(Role::Service).await?;
        // Two entries are enough to know the id is ambiguous; the directory sends no more.
        let options = self.search_options().sizelimit(2);
        let found = lease
            .ldap()
            .with_search_options(options)
            .search(base, Scope::Subtree, &filter, vec!["1.1"])
            .await;
        let SearchResult(entries, result) = found.map_err(|e| failed("user search", &e))?;
        lease.release();
        if result.rc != 0 && result.rc != SIZE_LIMIT_EXCEEDED {
            tracing::warn!(%result, base = %base, "the directory refused the user search");
            return Err(Refusal::Unavailable);
        }
        let mut dns = entries.into_iter().filter_map(|e| read_entry(e, None));
        match (dns.next(), dns.next()) {
            (Some(entry), None) if result.rc == 0 => Ok(entry.dn),
            (None, _) => {
                tracing::debug!(user, "no such user in the directory");
                Err(Refusal::BadCredentials)
            }
            _ => {
                tracing::warn!(user, base = %base, "the user id names several directory entries");
                Err(Refusal::BadCredentials)
            }
        }
    }

    async fn bind_user(&self, dn: &str, password: &str) -> Result<(), Refusal> {
        let mut lease = self.pool.lease(Role::User).await?;
        let bound = lease
            .bind(dn, password)
            .await
            .map_err(|e| failed("user bind", &e))?;
        lease.release();
        match bound.rc {
            0 => Ok(()),
            // invalidCredentials, and what directories answer for a DN that is not there or
            // may not bind (noSuchObject, invalidDNSyntax, inappropriateAuthentication,
            // insufficientAccessRights, unwillingToPerform).
            49 | 32 | 34 | 48 | 50 | 53 => {
                tracing::debug!(dn, rc = bound.rc, "the directory refused the bind");
                Err(Refusal::BadCredentials)
            }
            _ => {
                tracing::warn!(result = %bound, dn, "the user bind failed");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// The names of the groups `user_dn` is in (and, nested, the groups those are in).
    async fn groups(&self, user_dn: &str) -> Result<Vec<Box<str>>, Refusal> {
        let mut lease = self.pool.lease(Role::Service).await?;
        let levels = if self.nested { NESTING_LEVELS_MAX } else { 1 };
        let attributes = [self.group_attribute.as_str()];
        let options = self.search_options().sizelimit(GROUPS_MAX as i32);
        let mut names = Vec::new();
        let mut seen = HashSet::new();
        let mut members = vec![user_dn.to_string()];
        for level in 1..=levels {
            let mut found = Vec::new();
            for chunk in members.chunks(MEMBERS_PER_SEARCH) {
                let filter = self.member_filter(chunk);
                let SearchResult(entries, result) = lease
                    .ldap()
                    .with_search_options(options.clone())
                    .search(&self.group_base, Scope::Subtree, &filter, attributes)
                    .await
                    .map_err(|e| failed("group search", &e))?;
                match result.rc {
                    0 => {}
                    SIZE_LIMIT_EXCEEDED => {
                        tracing::warn!(user_dn, limit = GROUPS_MAX, "more groups than the limit")
                    }
                    _ => {
                        tracing::warn!(%result, base = %self.group_base, "the group search failed");
                        return Err(Refusal::Unavailable);
                    }
                }
                for entry in entries {
                    let Some(group) = read_entry(entry, Some(&self.group_attribute)) else {
                        continue;
                    };
                    let Some(name) = group.value else {
                        tracing::debug!(dn = %group.dn, "a group without a name attribute");
                        continue;
                    };
                    if names.len() < GROUPS_MAX && seen.insert(group.dn.to_lowercase()) {
                        names.push(self.group_name(name));
                        found.push(group.dn);
                    }
                }
            }
            if found.is_empty() {
                break;
            }
            if level == levels && self.nested {
                tracing::warn!(user_dn, levels, "groups nested deeper are not followed");
            }
            members = found;
        }
        lease.release();
        Ok(names)
    }

    /// Searches carry Timeout as their time limit, so that the directory too stops working
    /// on a search the broker no longer waits for.
    fn search_options(&self) -> SearchOptions {
        SearchOptions::new().timelimit(self.timeout.as_secs() as i32)
    }

    /// `(member=<dn>)`, or `(|(member=<dn1>)(member=<dn2>)...)` for several.
    fn member_filter(&self, members: &[String]) -> String {
        let one = |dn: &String| format!("({}={})", self.member_attribute, ldap_escape(dn.as_str()));
        match members {
            [dn] => one(dn),
            _ => format!("(|{})", members.iter().map(one).collect::<String>()),
        }
    }

    fn group_name(&self, name: String) -> Box<str> {
        if self.ignore_case {
            name.to_lowercase().into()
        } else {
            name.into()
        }
    }
}

impl Directory for LdapDirectory {
    fn verify<'a>(&'a self, user: &'a str, password: &'a [u8]) -> BoxFuture<'a, AuthVerdict> {
        Box::pin(self.within_timeout(user, self.check(user, password)))
    }

    fn identify<'a>(&'a self, user: &'a str) -> BoxFuture<'a, AuthVerdict> {
        Box::pin(self.within_timeout(user, self.identify_user(user)))
    }
}

/// LDAP's sizeLimitExceeded: the search found more entries than it was allowed to return.
const SIZE_LIMIT_EXCEEDED: u32 = 4;

/// The password, if a directory should see it at all.
fn admissible<'p>(user: &str, password: &'p [u8]) -> Result<&'p str, Refusal> {
    if password.is_empty() {
        tracing::debug!(user, "an empty password is refused before any bind");
        return Err(Refusal::BadCredentials);
    }
    if user.is_empty() || user.len() > USER_ID_BYTES_MAX || password.len() > PASSWORD_BYTES_MAX {
        tracing::debug!(
            user_bytes = user.len(),
            password_bytes = password.len(),
            "a user id or password outside its bounds"
        );
        return Err(Refusal::BadCredentials);
    }
    std::str::from_utf8(password).map_err(|_| {
        tracing::debug!(user, "a password that is not UTF-8 cannot be sent to LDAP");
        Refusal::BadCredentials
    })
}

/// A connection that failed under an operation: the directory is unavailable for this one.
fn failed(operation: &str, error: &LdapError) -> Refusal {
    tracing::warn!(operation, %error, "the directory connection failed");
    Refusal::Unavailable
}

/// A search result entry: its DN and the first UTF-8 value of one attribute.
struct Entry {
    dn: String,
    value: Option<String>,
}

/// Reads an entry without ldap3's `SearchEntry::construct`, which panics on an entry it cannot
/// parse: a malformed answer from the directory is skipped, it does not stop the broker.
fn read_entry(entry: ResultEntry, attribute: Option<&str>) -> Option<Entry> {
    let mut parts = entry.0.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let value = match attribute {
        None => None,
        Some(wanted) => parts
            .next()?
            .expect_constructed()?
            .into_iter()
            .find_map(|pair| attribute_value(pair, wanted)),
    };
    Some(Entry { dn, value })
}

/// The first UTF-8 value of a `PartialAttribute` (type and set of values) if it is `wanted`.
fn attribute_value(pair: StructureTag, wanted: &str) -> Option<String> {
    let mut pair = pair.expect_constructed()?.into_iter();
    let name = pair.next()?.expect_primitive()?;
    if !name.eq_ignore_ascii_case(wanted.as_bytes()) {
        return None;
    }
    pair.next()?
        .expect_constructed()?
        .into_iter()
        .find_map(|v| String::from_utf8(v.expect_primitive()?).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves what the escaping functions this module relies on do with hostile ids: every
    /// character that has meaning in a filter (RFC 4515) or a DN (RFC 4514) becomes a hex
    /// escape, so the id stays one value.
    #[test]
    fn ids_are_escaped_for_filters_and_dns() {
        assert_eq!(ldap_escape("*"), "\\2a");
        assert_eq!(ldap_escape("a)(uid=*"), "a\\29\\28uid=\\2a");
        assert_eq!(ldap_escape("a\\b\0"), "a\\5cb\\00");
        assert_eq!(dn_escape("o+brien,jr"), "o\\2bbrien\\2cjr");
        assert_eq!(dn_escape("a=b;c<d>\"e\\"), "a\\3db\\3bc\\3cd\\3e\\22e\\5c");
        assert_eq!(dn_escape(" #lead"), "\\20#lead");
        assert_eq!(dn_escape("#x"), "\\23x");
        assert_eq!(dn_escape("trail "), "trail\\20");
    }

    #[test]
    fn empty_long_and_binary_passwords_never_reach_the_directory() {
        assert_eq!(admissible("alice", b""), Err(Refusal::BadCredentials));
        assert_eq!(admissible("", b"pw"), Err(Refusal::BadCredentials));
        assert_eq!(
            admissible("alice", &[0xff, 0xfe]),
            Err(Refusal::BadCredentials)
        );
        let long = "u".repeat(USER_ID_BYTES_MAX + 1);
        assert_eq!(admissible(&long, b"pw"), Err(Refusal::BadCredentials));
        let long = vec![b'p'; PASSWORD_BYTES_MAX + 1];
        assert_eq!(admissible("alice", &long), Err(Refusal::BadCredentials));
        assert_eq!(admissible("alice", b"pw"), Ok("pw"));
    }
}
