//! The users file as a [`Directory`]: the configuration's `MessagingUser` and `MessagingGroup`
//! objects, checked without a directory server.
//!
//! A [`UserRegistry`] is built once per configuration: each user's groups, nested ones
//! included, are resolved then, and its [`Principal`] made once. A change of configuration
//! builds a new registry, whose cache starts empty: a removed user or a changed password is
//! never answered from an old cache.
//!
//! Checking a password is slow on purpose (PBKDF2, [`scram::ITERATIONS_DEFAULT`] iterations):
//! it runs on tokio's blocking pool, at most [`hashing_threads`] at a time, never on the side
//! runtime's worker threads, which keep answering other requests meanwhile. So that a storm of
//! returning clients does not hash each time, credentials that verified are remembered for
//! [`CACHE_TTL`]: by user, with a keyed hash of the password (HMAC-SHA256 under a key drawn
//! when the registry is built), so the cache holds no password and a wrong password never
//! matches an entry.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::{constant_time, hmac, rand};
use ironsight_config::users::{ScramVerifier, Users, SCRAM_KEY_LEN};
use ironsight_config::Config;
use ironsight_core::auth::{AuthVerdict, Principal, Refusal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use crate::check::{BoxFuture, Directory};
use crate::scram;

/// Password hashes that run at once: one per core the broker may run on. Each takes a core for
/// its PBKDF2 (0.6 to 0.7 ms at the default cost), so first logins scale with the machine:
/// after a restart, a 16-core appliance hashes the returning fleet eight times as fast as two
/// cores would. They cannot starve the message path: the side runtime's threads run at a lower
/// priority than the shards (`service.rs`), so a hash gets only the CPU that traffic leaves.
/// More logins wait their turn, within the authentication timeout.
pub fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get())
}

/// How long a verified user name and password are accepted without hashing again. Long
/// enough for a storm of reconnections after a network failure or a load balancer's restart,
/// which MQTT clients spread over their reconnect back-off (the Paho clients' back-off tops out
/// at two minutes: 120 s in Python, 128 s in Java); short, so that a password lives in this
/// quickly checked form for minutes only. A changed configuration empties the cache at once.
pub const CACHE_TTL: Duration = Duration::from_secs(180);

/// Users whose credentials the cache holds at most: some 100 bytes each, 6.5 MB in all. A
/// users file is for machines without a directory, with up to tens of thousands of users; with
/// more, the oldest entries make way (they expire first anyway).
pub const CACHE_ENTRIES_MAX: usize = 65_536;

/// The HMAC-SHA256 of a password under the registry's cache key.
type PasswordMac = [u8; SCRAM_KEY_LEN];

/// One user, as the checks need it.
struct Account {
    verifier: Arc<ScramVerifier>,
    principal: Arc<Principal>,
}

/// The users file, ready to check CONNECTs and to answer SCRAM exchanges.
pub struct UserRegistry {
    ids: HashMap<Box<str>, usize>,
    accounts: Vec<Account>,
    /// What an unknown user's password is checked against, so that an unknown user costs
    /// what a wrong password costs and the time of the answer does not tell them apart. At
    /// the default cost, which `ironsight-passwd` gives every verifier unless told otherwise.
    decoy: Arc<ScramVerifier>,
    cache: Mutex<Cache>,
    cache_key: hmac::Key,
    hashing: Arc<Semaphore>,
    hashes: AtomicU64,
}

impl UserRegistry {
    /// The registry of a checked configuration's users (no user: every check is refused).
    pub fn from_config(config: &Config) -> UserRegistry {
        UserRegistry::new(&config.users)
    }

    /// The registry of these users and groups (a parsed [`Users`] has no unknown group and no
    /// cycle).
    pub fn new(users: &Users) -> UserRegistry {
        let mut ids = HashMap::with_capacity(users.users.len());
        let mut accounts = Vec::with_capacity(users.users.len());
        for (id, user) in &users.users {
            let groups = users.groups_of(user).into_iter().map(Box::from);
            ids.insert(Box::from(id.as_str()), accounts.len());
            accounts.push(Account {
                verifier: Arc::new(user.password.clone()),
                principal: Arc::new(Principal::new(id.as_str(), groups)),
            });
        }
        let random = rand::SystemRandom::new();
        let mut salt = [0; scram::SALT_LEN];
        rand::fill(&mut salt).expect("the system's random number generator works");
        let decoy = ScramVerifier::new(
            scram::ITERATIONS_DEFAULT,
            &salt,
            [0; SCRAM_KEY_LEN],
            [0; SCRAM_KEY_LEN],
        )
        .expect("the default cost is within bounds");
        UserRegistry {
            ids,
            accounts,
            decoy: Arc::new(decoy),
            cache: Mutex::new(Cache::new(CACHE_TTL, CACHE_ENTRIES_MAX)),
            cache_key: hmac::Key::generate(hmac::HMAC_SHA256, &random)
                .expect("the system's random number generator works"),
            hashing: Arc::new(Semaphore::new(hashing_threads())),
            hashes: AtomicU64::new(0),
        }
    }

    /// A user's verifier, for [`scram::ScramServer::start`]'s lookup.
    pub fn verifier(&self, user: &str) -> Option<ScramVerifier> {
        let index = *self.ids.get(user)?;
        Some((*self.accounts[index].verifier).clone())
    }

    /// Who a user is, once a SCRAM exchange has proven it. `None` when the user is gone
    /// (the configuration changed during the exchange): refuse the client.
    pub fn principal(&self, user: &str) -> Option<Arc<Principal>> {
        let index = *self.ids.get(user)?;
        Some(self.accounts[index].principal.clone())
    }

    /// Password hashes run since the registry was built (cache misses, unknown users and
    /// wrong passwords), for statistics.
    pub fn hashes_run(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    async fn check(&self, user: &str, password: &[u8]) -> AuthVerdict {
        let Some(&index) = self.ids.get(user) else {
            // Hashed for the time it takes only: the answer is no whatever the password.
            let permit = self.hashing_thread().await?;
            let (_, permit) = self.hash(permit, self.decoy.clone(), password).await?;
            drop(permit);
            return Err(Refusal::BadCredentials);
        };
        let account = &self.accounts[index];
        let mac = self.password_mac(password);
        if self.cached(index, &mac) {
            return Ok(account.principal.clone());
        }
        let permit = self.hashing_thread().await?;
        // Checked again with a thread in hand: the CONNECTs of a storm that carry the same
        // credentials wait here while the first one hashes, and then find them cached.
        if self.cached(index, &mac) {
            return Ok(account.principal.clone());
        }
        let (verified, permit) = self
            .hash(permit, account.verifier.clone(), password)
            .await?;
        if !verified {
            return Err(Refusal::BadCredentials);
        }
        self.lock_cache().insert(index, mac, Instant::now());
        drop(permit);
        Ok(account.principal.clone())
    }

    fn password_mac(&self, password: &[u8]) -> PasswordMac {
        let tag = hmac::sign(&self.cache_key, password);
        tag.as_ref().try_into().expect("HMAC-SHA256 gives 32 bytes")
    }

    fn cached(&self, index: usize, mac: &PasswordMac) -> bool {
        self.lock_cache().holds(index, mac, Instant::now())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Nothing panics while holding the lock; if something did, the cache is still whole
        // (every change to it is a single insert or remove).
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One of the [`hashing_threads`] turns to hash, waited for in order of arrival.
    async fn hashing_thread(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Refusal::Unavailable)
    }

    /// Whether `password` verifies, hashed on the blocking pool. The turn goes with the hash
    /// and comes back with its result: a check abandoned at the timeout holds its turn until
    /// its hash ends, so that no more than [`hashing_threads`] ever run.
    async fn hash(
        &self,
        permit: OwnedSemaphorePermit,
        verifier: Arc<ScramVerifier>,
        password: &[u8],
    ) -> Result<(bool, OwnedSemaphorePermit), Refusal> {
        self.hashes.fetch_add(1, Ordering::Relaxed);
        let password = Zeroizing::new(password.to_vec());
        let hashing = tokio::task::spawn_blocking(move || {
            (scram::verify_password(&verifier, &password), permit)
        });
        hashing.await.map_err(|error| {
            tracing::error!(%error, "a password check did not finish");
            Refusal::Unavailable
        })
    }
}

impl Directory for UserRegistry {
    fn verify<'a>(&'a self, user: &'a str, password: &'a [u8]) -> BoxFuture<'a, AuthVerdict> {
        Box::pin(self.check(user, password))
    }

    fn identify<'a>(&'a self, user: &'a str) -> BoxFuture<'a, AuthVerdict> {
        let principal = self
            .principal(user)
            .unwrap_or_else(|| Arc::new(Principal::new(user, [])));
        Box::pin(std::future::ready(Ok(principal)))
    }
}

/// Credentials that verified recently: the password's keyed hash per user, until it expires.
struct Cache {
    ttl: Duration,
    entries_max: usize,
    entries: HashMap<usize, Entry>,
    /// Users in the order their entries were made, which (with one TTL for all) is the order
    /// they expire in. A user verified again while its entry lives has two records here; the
    /// older one, when it comes out, leaves the newer entry alone.
    order: VecDeque<(usize, Instant)>,
}

#[derive(Clone, Copy)]
struct Entry {
    password_mac: PasswordMac,
    expires: Instant,
}

impl Cache {
    fn new(ttl: Duration, entries_max: usize) -> Cache {
        assert!(entries_max > 0);
        Cache {
            ttl,
            entries_max,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `user`'s entry, still valid at `now`, is for this password.
    fn holds(&self, user: usize, mac: &PasswordMac, now: Instant) -> bool {
        self.entries.get(&user).is_some_and(|entry| {
            now < entry.expires
                && constant_time::verify_slices_are_equal(&entry.password_mac, mac).is_ok()
        })
    }

    fn insert(&mut self, user: usize, password_mac: PasswordMac, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|&(_, expires)| expires <= now)
        {
            self.pop_oldest();
        }
        if self.holds(user, &password_mac, now) {
            return;
        }
        while self.order.len() >= self.entries_max {
            self.pop_oldest();
        }
        let expires = now + self.ttl;
        self.entries.insert(
            user,
            Entry {
                password_mac,
                expires,
            },
        );
        self.order.push_back((user, expires));
        assert!(self.entries.len() <= self.order.len());
        assert!(self.order.len() <= self.entries_max);
    }

    fn pop_oldest(&mut self) {
        let Some((user, expires)) = self.order.pop_front() else {
            return;
        };
        if self
            .entries
            .get(&user)
            .is_some_and(|e| e.expires == expires)
        {
            self.entries.remove(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PENCIL: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    fn config(users: serde_json::Value) -> Config {
        let mut doc: serde_json::Value =
            serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
        for (k, v) in users.as_object().unwrap() {
            doc[k] = v.clone();
        }
        Config::parse(&doc.to_string()).unwrap()
    }

    fn registry() -> UserRegistry {
        UserRegistry::from_config(&config(serde_json::json!({
            "MessagingUser": {
                "alice": {"Password": PENCIL, "GroupMembership": "ops"},
                "bob": {"Password": scram::hash_password(b"hunter2", 4096).unwrap().to_string()},
            },
            "MessagingGroup": {"ops": {"GroupMembership": "staff"}, "staff": {}},
        })))
    }

    /// Proves the right password gives the user with its nested groups, and that a wrong
    /// password, another user's password and an unknown user are all refused alike.
    #[tokio::test]
    async fn passwords_are_checked() {
        let users = registry();
        let alice = users.verify("alice", b"pencil").await.unwrap();
        assert_eq!(&*alice.user_id, "alice");
        assert_eq!(
            &*alice.groups,
            &["ops".into(), "staff".into()] as &[Box<str>]
        );
        assert_eq!(
            users.verify("bob", b"hunter2").await.unwrap().groups.len(),
            0
        );
        assert_eq!(
            users.verify("alice", b"Pencil").await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            users.verify("alice", b"hunter2").await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            users.verify("carol", b"pencil").await,
            Err(Refusal::BadCredentials)
        );
        // An unknown user is hashed too (against the decoy), like a wrong password.
        assert_eq!(users.hashes_run(), 5);
    }

    /// Proves a returning user is answered from the cache without hashing, and that a wrong
    /// password after a hit is hashed and refused, never accepted from the cache.
    #[tokio::test]
    async fn verified_credentials_are_cached() {
        let users = registry();
        assert!(users.verify("alice", b"pencil").await.is_ok());
        assert_eq!(users.hashes_run(), 1);
        for _ in 0..10 {
            assert!(users.verify("alice", b"pencil").await.is_ok());
        }
        assert_eq!(users.hashes_run(), 1);
        assert_eq!(
            users.verify("alice", b"pencil!").await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(users.hashes_run(), 2);
        // The wrong password did not evict the right one.
        assert!(users.verify("alice", b"pencil").await.is_ok());
        assert_eq!(users.hashes_run(), 2);
    }

    /// Proves a storm of one user's CONNECTs hashes at most once per hashing thread: the
    /// others wait for a thread, and find the credentials cached when they get one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_storm_of_one_user_hashes_once_per_thread() {
        let users = Arc::new(registry());
        let storm: Vec<_> = (0..200)
            .map(|_| {
                let users = users.clone();
                tokio::spawn(async move { users.verify("alice", b"pencil").await.is_ok() })
            })
            .collect();
        for connect in storm {
            assert!(connect.await.unwrap());
        }
        assert!(
            users.hashes_run() <= hashing_threads() as u64,
            "{}",
            users.hashes_run()
        );
    }

    /// Proves a user whose certificate stands for the password is who the users file says,
    /// with its groups and no hash; a user it does not know has no groups.
    #[tokio::test]
    async fn identify_gives_the_users_groups_without_hashing() {
        let users = registry();
        let alice = users.identify("alice").await.unwrap();
        assert_eq!(
            &*alice.groups,
            &["ops".into(), "staff".into()] as &[Box<str>]
        );
        let stranger = users.identify("stranger").await.unwrap();
        assert_eq!((&*stranger.user_id, stranger.groups.len()), ("stranger", 0));
        assert_eq!(users.hashes_run(), 0);
    }

    /// Proves a changed configuration (a user removed, a password changed) is in force at
    /// once: the new registry's cache starts empty.
    #[tokio::test]
    async fn a_rebuilt_registry_forgets_old_credentials() {
        let old = registry();
        assert!(old.verify("alice", b"pencil").await.is_ok());
        assert!(old.verify("bob", b"hunter2").await.is_ok());
        let new = UserRegistry::from_config(&config(serde_json::json!({
            "MessagingUser": {
                "alice": {"Password": scram::hash_password(b"new pencil", 4096).unwrap().to_string()},
            },
        })));
        assert_eq!(
            new.verify("alice", b"pencil").await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            new.verify("bob", b"hunter2").await,
            Err(Refusal::BadCredentials)
        );
        assert!(new.verify("alice", b"new pencil").await.is_ok());
        assert!(new
            .verify("alice", b"new pencil")
            .await
            .unwrap()
            .groups
            .is_empty());
    }

    /// Proves the registry answers SCRAM lookups and names the principal afterwards.
    #[test]
    fn scram_lookups() {
        let users = registry();
        assert_eq!(users.verifier("alice").unwrap().to_string(), PENCIL);
        assert!(users.verifier("carol").is_none());
        assert_eq!(users.principal("alice").unwrap().groups.len(), 2);
        let (server, _) =
            scram::ScramServer::start(b"n,,n=alice,r=abc", |u| users.verifier(u)).unwrap();
        assert_eq!(server.user(), "alice");
    }

    fn mac(byte: u8) -> PasswordMac {
        [byte; SCRAM_KEY_LEN]
    }

    /// Proves an entry holds for its password only, and only until it expires (time passed
    /// in, no sleeping).
    #[test]
    fn cache_entries_expire() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut cache = Cache::new(ttl, 4);
        cache.insert(7, mac(1), t0);
        assert!(cache.holds(7, &mac(1), t0));
        assert!(!cache.holds(7, &mac(2), t0));
        assert!(!cache.holds(8, &mac(1), t0));
        assert!(cache.holds(7, &mac(1), t0 + ttl - Duration::from_millis(1)));
        assert!(!cache.holds(7, &mac(1), t0 + ttl));
        // An insert after expiry drops the expired entry.
        cache.insert(8, mac(1), t0 + ttl);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.order.len(), 1);
    }

    /// Proves the cache never holds more than its bound, making way oldest first, and that a
    /// user re-verified keeps its newer entry when its older record comes out.
    #[test]
    fn cache_size_is_bounded() {
        let t0 = Instant::now();
        let mut cache = Cache::new(Duration::from_secs(10), 3);
        for user in 0..10 {
            cache.insert(
                user,
                mac(user as u8),
                t0 + Duration::from_millis(user as u64),
            );
            assert!(cache.entries.len() <= 3);
            assert!(cache.order.len() <= 3);
        }
        let now = t0 + Duration::from_millis(10);
        let held: Vec<usize> = (0..10)
            .filter(|&u| cache.holds(u, &mac(u as u8), now))
            .collect();
        assert_eq!(held, [7, 8, 9]);
    }

    /// Proves a user verified again while its entry lives (two records in the order) keeps
    /// its newer entry when the older record comes out.
    #[test]
    fn cache_keeps_the_newer_entry_of_a_user() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut cache = Cache::new(Duration::from_secs(10), 3);
        cache.insert(1, mac(1), t0);
        cache.insert(1, mac(2), t0 + ms(1));
        cache.insert(2, mac(2), t0 + ms(2));
        assert_eq!(cache.order.len(), 3);
        cache.insert(3, mac(3), t0 + ms(3));
        assert_eq!(cache.order.len(), 3);
        assert!(cache.holds(1, &mac(2), t0 + ms(3)));
        assert!(!cache.holds(1, &mac(1), t0 + ms(3)));
        // The same credentials again make no second record.
        cache.insert(3, mac(3), t0 + ms(4));
        assert!(cache.holds(2, &mac(2), t0 + ms(4)));
    }
}
