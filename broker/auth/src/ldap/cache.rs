//! What the directory said lately, by user id: the user's DN and groups (for
//! `GroupCacheTimeout`), and with `EnableCache` the proof that a password was right (for
//! `CacheTimeout`), so that a connection storm of known users does not become a storm of
//! binds.
//!
//! A password is never kept: the proof is an HMAC-SHA256 of the user id and the password
//! under a key drawn at start and never stored, compared in constant time. A memory dump thus
//! yields no password, and without the key not even a hash to guess against offline.
//!
//! A proof expires `CacheTimeout` after the directory last accepted the password, not after
//! its last use (Amlen extends it on every hit, so that a user who keeps connecting keeps an
//! old password working forever). A wrong password never answers from the cache: it goes to
//! the directory, as does the password of an entry whose proof expired, so that a password
//! changed in the directory works at once and an old one stops within `CacheTimeout`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::{constant_time, hmac, rand};
use ironsight_config::ldap::Ldap as LdapObject;
use ironsight_core::auth::Principal;

/// Users the cache holds at most. When it is full, expired entries are swept (at most once
/// per [`SWEEP_INTERVAL`]); if it is still full, new users are verified but not kept.
const CACHE_USERS_MAX: usize = 100_000;
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// HMAC-SHA256's output.
const PROOF_BYTES: usize = 32;

pub(super) struct Cache {
    key: hmac::Key,
    /// `CacheTimeout`, or `None` when `EnableCache` is false.
    proofs_for: Option<Duration>,
    /// `GroupCacheTimeout`.
    groups_for: Duration,
    entries: Mutex<Entries>,
}

struct Entries {
    map: HashMap<Box<str>, Entry>,
    next_sweep: Instant,
}

struct Entry {
    dn: Arc<str>,
    principal: Arc<Principal>,
    /// The DN and groups are used until then.
    groups_until: Instant,
    proof: Option<Proof>,
}

struct Proof {
    mac: [u8; PROOF_BYTES],
    until: Instant,
}

/// What the cache knows of a user and a password.
pub(super) enum Lookup {
    /// The password was proved within CacheTimeout, and the groups are fresh.
    Proved(Arc<Principal>),
    /// The DN and groups are fresh; the password must go to the directory.
    Known {
        dn: Arc<str>,
        principal: Arc<Principal>,
    },
    Unknown,
}

impl Cache {
    pub(super) fn new(ldap: &LdapObject) -> Result<Cache, String> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new())
            .map_err(|_| "no randomness for the LDAP credential cache's key".to_string())?;
        Ok(Cache {
            key,
            proofs_for: ldap
                .enable_cache
                .then(|| Duration::from_secs(u64::from(ldap.cache_timeout))),
            groups_for: Duration::from_secs(u64::from(ldap.group_cache_timeout)),
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                next_sweep: Instant::now(),
            }),
        })
    }

    pub(super) fn lookup(&self, user: &str, password: &str, now: Instant) -> Lookup {
        let entries = self.lock();
        let Some(entry) = entries.map.get(user).filter(|e| e.groups_until > now) else {
            return Lookup::Unknown;
        };
        let proved = entry.proof.as_ref().is_some_and(|proof| {
            proof.until > now
                && constant_time::verify_slices_are_equal(&proof.mac, &self.mac(user, password))
                    .is_ok()
        });
        if proved {
            Lookup::Proved(entry.principal.clone())
        } else {
            Lookup::Known {
                dn: entry.dn.clone(),
                principal: entry.principal.clone(),
            }
        }
    }

    /// Who the user is while its groups are fresh, whatever the password (for a client whose
    /// certificate stands for the password).
    pub(super) fn known(&self, user: &str, now: Instant) -> Option<Arc<Principal>> {
        let entries = self.lock();
        let entry = entries.map.get(user).filter(|e| e.groups_until > now)?;
        Some(entry.principal.clone())
    }

    /// A user the directory knows afresh, with the password it accepted just now (none when
    /// only the groups were read).
    pub(super) fn insert(
        &self,
        user: &str,
        password: Option<&str>,
        dn: Arc<str>,
        principal: Arc<Principal>,
        now: Instant,
    ) {
        let entry = Entry {
            dn,
            principal,
            groups_until: now + self.groups_for,
            proof: password.and_then(|password| self.proof(user, password, now)),
        };
        let mut entries = self.lock();
        if entries.map.len() >= CACHE_USERS_MAX && !entries.map.contains_key(user) {
            if now < entries.next_sweep {
                return;
            }
            entries.next_sweep = now + SWEEP_INTERVAL;
            entries.map.retain(|_, e| e.groups_until > now);
            if entries.map.len() >= CACHE_USERS_MAX {
                tracing::warn!(limit = CACHE_USERS_MAX, "the LDAP cache is full");
                return;
            }
        }
        entries.map.insert(user.into(), entry);
    }

    /// The directory accepted the password of a user whose DN and groups were cached: the
    /// groups keep their own expiry.
    pub(super) fn proved(&self, user: &str, password: &str, now: Instant) {
        let proof = self.proof(user, password, now);
        if let Some(entry) = self.lock().map.get_mut(user) {
            entry.proof = proof;
        }
    }

    fn proof(&self, user: &str, password: &str, now: Instant) -> Option<Proof> {
        self.proofs_for.map(|ttl| Proof {
            mac: self.mac(user, password),
            until: now + ttl,
        })
    }

    /// HMAC(key, len(user) || user || password): the length keeps ("ab", "c") and ("a", "bc")
    /// apart.
    fn mac(&self, user: &str, password: &str) -> [u8; PROOF_BYTES] {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&(user.len() as u64).to_be_bytes());
        context.update(user.as_bytes());
        context.update(password.as_bytes());
        let tag = context.sign();
        let mut mac = [0; PROOF_BYTES];
        mac.copy_from_slice(tag.as_ref());
        mac
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cache(enable_cache: bool) -> Cache {
        let mut doc: serde_json::Value =
            serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
        doc["LDAP"] = json!({"Enabled": false, "EnableCache": enable_cache,
                             "CacheTimeout": 10, "GroupCacheTimeout": 300});
        let config = ironsight_config::Config::parse(&doc.to_string()).unwrap();
        Cache::new(config.ldap.as_ref().unwrap()).unwrap()
    }

    fn principal() -> Arc<Principal> {
        Arc::new(Principal::new("alice", ["staff".into()]))
    }

    /// Proves a proved password answers within CacheTimeout and not after, that another
    /// password never answers from the cache, and that the DN and groups outlive the proof.
    #[test]
    fn a_proof_answers_for_its_password_until_it_expires() {
        let cache = cache(true);
        let t0 = Instant::now();
        cache.insert("alice", Some("right"), "uid=alice".into(), principal(), t0);
        assert!(
            matches!(cache.lookup("alice", "right", t0), Lookup::Proved(p) if p.user_id.as_ref() == "alice")
        );
        assert!(
            matches!(cache.lookup("alice", "wrong", t0), Lookup::Known { dn, .. } if &*dn == "uid=alice")
        );
        assert!(matches!(cache.lookup("bob", "right", t0), Lookup::Unknown));
        let later = t0 + Duration::from_secs(11);
        assert!(matches!(
            cache.lookup("alice", "right", later),
            Lookup::Known { .. }
        ));
        cache.proved("alice", "right", later);
        assert!(matches!(
            cache.lookup("alice", "right", later),
            Lookup::Proved(_)
        ));
        let stale = t0 + Duration::from_secs(301);
        assert!(matches!(
            cache.lookup("alice", "right", stale),
            Lookup::Unknown
        ));
    }

    #[test]
    fn without_enable_cache_no_password_is_proved() {
        let cache = cache(false);
        let t0 = Instant::now();
        cache.insert("alice", Some("right"), "uid=alice".into(), principal(), t0);
        assert!(matches!(
            cache.lookup("alice", "right", t0),
            Lookup::Known { .. }
        ));
    }

    /// Proves the proof depends on the user as well as the password, with the boundary
    /// between them fixed, and on a key of its own cache.
    #[test]
    fn the_proof_is_a_keyed_hash_of_user_and_password() {
        let (one, other) = (cache(true), cache(true));
        assert_ne!(one.mac("ab", "c"), one.mac("a", "bc"));
        assert_ne!(one.mac("alice", "pw"), one.mac("bob", "pw"));
        assert_eq!(one.mac("alice", "pw"), one.mac("alice", "pw"));
        assert_ne!(
            one.mac("alice", "pw"),
            other.mac("alice", "pw"),
            "a key per cache"
        );
    }
}
