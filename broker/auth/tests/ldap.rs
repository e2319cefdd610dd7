//! `LdapDirectory` against a real slapd (`tests/integration/slapd.py`, started once for this
//! binary): right and wrong passwords, unknown users, empty passwords, ids that try to change
//! a filter or a DN, nested groups, IgnoreCase, the credential cache, a dead, silent or slow
//! directory, the connection bound, and ldaps:// with CheckServerCert. No test is skipped: without slapd they fail, saying
//! which Debian packages to install.
//!
//! Tests run side by side against one slapd; a test that counts a user's lines in slapd's log
//! uses a user no other test touches.

mod slapd;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironsight_auth::check::Demands;
use ironsight_auth::ldap::LdapDirectory;
use ironsight_auth::{Answer, AuthService, Checker, Directory};
use ironsight_codec::{ByteString, Bytes};
use ironsight_core::auth::{AuthAnswer, AuthRequest, AuthVerdict, Refusal};
use serde_json::Value;
use slapd::slapd;

fn directory(edit: impl FnOnce(&mut Value)) -> LdapDirectory {
    LdapDirectory::new(&slapd().ldap_object(edit), Path::new("."))
        .unwrap_or_else(|e| panic!("the directory cannot be made: {e}"))
}

/// The direct-bind configuration: user DNs are built under UserSuffix, not searched.
fn direct(ldap: &mut Value) {
    ldap["UserSuffix"] = slapd().people.clone().into();
}

fn groups(verdict: &AuthVerdict) -> Vec<&str> {
    let principal = verdict.as_ref().expect("authenticated");
    principal.groups.iter().map(|g| &**g).collect()
}

fn user_id(verdict: &AuthVerdict) -> &str {
    &verdict.as_ref().expect("authenticated").user_id
}

fn answered_user(answer: &AuthAnswer) -> &str {
    match answer {
        AuthAnswer::Done { verdict, .. } => user_id(verdict),
        other => panic!("expected a verdict, got {other:?}"),
    }
}

/// Makes sure everything slapd did before now is in its log: verifies the `marker` user
/// (never cached) and waits for its lines.
async fn sync_log() {
    let before = slapd().log_lines_with("uid=marker");
    let uncached = directory(|l| l["EnableCache"] = false.into());
    uncached.verify("marker", b"marker-pw").await.unwrap();
    slapd().wait_log("uid=marker", before);
}

/// A loopback port nothing listens on: connecting is refused at once.
fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Proves a user with the right password is authenticated, with the user id it gave and its
/// direct group (lowercased: IgnoreCase is on by default), found by search and by direct bind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_gives_the_user_and_its_groups() {
    for edit in [(|_: &mut Value| {}) as fn(&mut Value), direct] {
        let d = directory(edit);
        let verdict = d.verify("alice", b"alice-pw").await;
        assert_eq!(user_id(&verdict), "alice");
        assert_eq!(groups(&verdict), ["engineering"]);
        let verdict = d.verify("dave", b"dave-pw").await;
        assert!(groups(&verdict).is_empty(), "dave is in no group");
    }
}

/// Proves a wrong password and an unknown user get the same answer, BadCredentials, in both
/// ways of finding the DN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_both_bad_credentials() {
    for edit in [(|_: &mut Value| {}) as fn(&mut Value), direct] {
        let d = directory(edit);
        assert_eq!(
            d.verify("alice", b"bob-pw").await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            d.verify("alice", b"alice-pw ").await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            d.verify("nobody", b"alice-pw").await,
            Err(Refusal::BadCredentials)
        );
    }
}

/// Proves an empty password is refused without any request to the directory (a bind with a
/// name and no password is an unauthenticated bind, which many directories answer with success):
/// slapd's log has no line for the user afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_password_is_refused_before_any_bind() {
    for edit in [(|_: &mut Value| {}) as fn(&mut Value), direct] {
        let d = directory(edit);
        sync_log().await;
        let before = slapd().log_lines_with("uid=empty");
        assert_eq!(d.verify("empty", b"").await, Err(Refusal::BadCredentials));
        sync_log().await;
        assert_eq!(slapd().log_lines_with("uid=empty"), before);
        assert!(d.verify("empty", b"empty-pw").await.is_ok());
    }
}

/// Proves a user id holding `+` and `,` (DN syntax) is one value: it binds, by search and by
/// a built DN (escaped), and finds its group; its password is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_with_plus_and_comma_is_one_value() {
    for edit in [(|_: &mut Value| {}) as fn(&mut Value), direct] {
        let d = directory(edit);
        let verdict = d.verify("o+brien,jr", b"obrien-pw").await;
        assert_eq!(user_id(&verdict), "o+brien,jr");
        assert_eq!(groups(&verdict), ["plus"]);
        assert_eq!(
            d.verify("o+brien,jr", b"alice-pw").await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            d.verify("o+brien", b"obrien-pw").await,
            Err(Refusal::BadCredentials)
        );
    }
}

/// Proves ids that would widen a filter or change a DN if pasted in unescaped match nothing,
/// even with a real user's password, and that a literal `*` in an id is just a character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_match_nothing() {
    let attempts = [
        "*",
        "al*",
        "alice)(uid=*",
        "*)(|(uid=*",
        "alice)",
        "(uid=alice)",
        "alice\\",
        "alice\0",
        "alice,ou=people,dc=example,dc=com",
        "alice+cn=alice",
        "uid=alice",
    ];
    for edit in [(|_: &mut Value| {}) as fn(&mut Value), direct] {
        let d = directory(edit);
        for id in attempts {
            assert_eq!(
                d.verify(id, b"alice-pw").await,
                Err(Refusal::BadCredentials),
                "{id:?}"
            );
        }
        assert_eq!(user_id(&d.verify("star*", b"star-pw").await), "star*");
        assert_eq!(
            d.verify("st*", b"star-pw").await,
            Err(Refusal::BadCredentials)
        );
    }
}

/// Proves NestedGroupSearch: off, a user has its direct groups; on, also the groups those are
/// in, however deep, each once, and a cycle of groups ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_groups_are_followed_when_asked() {
    let flat = directory(|_| {});
    assert_eq!(groups(&flat.verify("bob", b"bob-pw").await), ["devs"]);
    let nested = directory(|l| l["NestedGroupSearch"] = true.into());
    assert_eq!(
        groups(&nested.verify("bob", b"bob-pw").await),
        ["devs", "engineering", "staff"]
    );
    assert_eq!(
        groups(&nested.verify("alice", b"alice-pw").await),
        ["engineering", "staff"]
    );
    assert_eq!(
        groups(&nested.verify("carol", b"carol-pw").await),
        ["loop-a", "loop-b"]
    );
}

/// Proves IgnoreCase: on (the default), any spelling of an id is the directory's one user with
/// one lowercased identity and lowercased groups; off, the id is kept as sent and group names
/// as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_case_gives_one_identity_per_entry() {
    let folded = directory(|_| {});
    let verdict = folded.verify("ALICE", b"alice-pw").await;
    assert_eq!(user_id(&verdict), "alice");
    assert_eq!(groups(&verdict), ["engineering"]);
    let exact = directory(|l| l["IgnoreCase"] = false.into());
    let verdict = exact.verify("ALICE", b"alice-pw").await;
    assert_eq!(user_id(&verdict), "ALICE");
    assert_eq!(groups(&verdict), ["Engineering"]);
    assert_eq!(
        exact.verify("ALICE", b"ALICE-PW").await,
        Err(Refusal::BadCredentials)
    );
}

/// Proves the credential cache: a second verification with the same password does not reach
/// slapd (no new line for the user in its log); a wrong password does, and is refused; with
/// EnableCache off every verification binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_password_does_not_reach_the_directory() {
    let d = directory(|_| {});
    assert!(d.verify("cache1", b"cache1-pw").await.is_ok());
    sync_log().await;
    let after_first = slapd().log_lines_with("uid=cache1");
    assert!(after_first > 0, "the first verification reached slapd");
    let verdict = d.verify("cache1", b"cache1-pw").await;
    assert_eq!(user_id(&verdict), "cache1");
    sync_log().await;
    assert_eq!(
        slapd().log_lines_with("uid=cache1"),
        after_first,
        "answered from the cache"
    );
    assert_eq!(
        d.verify("cache1", b"cache2-pw").await,
        Err(Refusal::BadCredentials)
    );
    sync_log().await;
    assert!(
        slapd().log_lines_with("uid=cache1") > after_first,
        "a wrong password goes to slapd"
    );

    let uncached = directory(|l| l["EnableCache"] = false.into());
    let dn = format!("uid=cache2,{}", slapd().people);
    for _ in 0..2 {
        sync_log().await;
        let before = slapd().binds(&dn);
        assert!(uncached.verify("cache2", b"cache2-pw").await.is_ok());
        sync_log().await;
        assert_eq!(slapd().binds(&dn), before + 1);
    }
}

/// Proves a user whose client certificate stands for the password (AllowNullPassword) is
/// identified without a bind: alice with her groups, a user the directory does not know with
/// none; the second time the cache answers (no new line for cache3 in slapd's log, and never
/// a bind); a dead directory is Unavailable, not "no groups".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_identified_without_a_bind() {
    let d = directory(|_| {});
    let alice = d.identify("alice").await;
    assert_eq!(
        (user_id(&alice), groups(&alice)),
        ("alice", vec!["engineering"])
    );
    let nobody = d.identify("nobody").await;
    assert_eq!((user_id(&nobody), groups(&nobody).len()), ("nobody", 0));

    let dn = format!("uid=cache3,{}", slapd().people);
    assert_eq!(user_id(&d.identify("cache3").await), "cache3");
    sync_log().await;
    let after_first = slapd().log_lines_with("uid=cache3");
    assert!(after_first > 0, "the first identification searched slapd");
    assert_eq!(user_id(&d.identify("cache3").await), "cache3");
    sync_log().await;
    assert_eq!(slapd().log_lines_with("uid=cache3"), after_first);
    assert_eq!(slapd().binds(&dn), 0);

    let dead = directory(|l| {
        l["URL"] = format!("ldap://127.0.0.1:{}", refused_port()).into();
        l["Timeout"] = 1.into();
    });
    assert_eq!(dead.identify("alice").await, Err(Refusal::Unavailable));
}

/// Proves a directory that refuses connections, and one that accepts and never answers, are
/// Unavailable (never BadCredentials), within Timeout (1 s here; the bound allows for a busy
/// machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_directory_is_unavailable_within_timeout() {
    for port in [refused_port(), slapd().blackhole()] {
        let d = directory(|l| {
            l["URL"] = format!("ldap://127.0.0.1:{port}").into();
            l["Timeout"] = 1.into();
        });
        let started = Instant::now();
        assert_eq!(
            d.verify("alice", b"alice-pw").await,
            Err(Refusal::Unavailable)
        );
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{:?}",
            started.elapsed()
        );
    }
}

/// Proves a directory slower than Timeout is Unavailable when Timeout ends (not earlier, not
/// much later), and that one slow but within Timeout still authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_directory_is_unavailable_within_timeout() {
    let slow = slapd().proxy(Duration::from_secs(3));
    let d = directory(|l| {
        l["URL"] = format!("ldap://127.0.0.1:{slow}").into();
        l["Timeout"] = 1.into();
    });
    let started = Instant::now();
    assert_eq!(
        d.verify("alice", b"alice-pw").await,
        Err(Refusal::Unavailable)
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");

    let sluggish = slapd().proxy(Duration::from_millis(200));
    let d = directory(|l| l["URL"] = format!("ldap://127.0.0.1:{sluggish}").into());
    assert_eq!(user_id(&d.verify("alice", b"alice-pw").await), "alice");
}

/// Proves at most MaxConnections connections are open to the directory however many
/// verifications run at once, and that they are reused: 16 verifications at once through a
/// counting proxy open exactly 2 connections with MaxConnections 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_holds_at_most_max_connections() {
    let proxy = slapd().proxy(Duration::from_millis(20));
    let d = Arc::new(directory(|l| {
        l["URL"] = format!("ldap://127.0.0.1:{proxy}").into();
        l["MaxConnections"] = 2.into();
        l["EnableCache"] = false.into();
    }));
    let mut verifications = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let d = d.clone();
        verifications.spawn(async move { d.verify("pool", b"pool-pw").await });
    }
    while let Some(verdict) = verifications.join_next().await {
        assert_eq!(user_id(&verdict.unwrap()), "pool");
    }
    let stats = slapd().proxy_stats(proxy);
    assert_eq!(stats.max_open, 2, "{stats:?}");
    assert_eq!(stats.accepted, 2, "{stats:?}");
    assert!(stats.open <= 2, "{stats:?}");
}

/// Proves a BindDN the directory refuses makes the directory Unavailable, not the user's
/// credentials bad: the fault is the broker's configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bind_dn_is_unavailable() {
    let d = directory(|l| l["BindPassword"] = "not-the-password".into());
    assert_eq!(
        d.verify("alice", b"alice-pw").await,
        Err(Refusal::Unavailable)
    );
}

/// Proves the URLs of a list are tried in order: a dead first one does not stop the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_are_tried_in_order() {
    let dead = refused_port();
    let d = directory(|l| {
        l["URL"] = format!("ldap://127.0.0.1:{dead}, ldap://127.0.0.1:{}", slapd().port).into();
    });
    assert_eq!(user_id(&d.verify("alice", b"alice-pw").await), "alice");
}

/// Proves ldaps:// checks the directory's certificate as CheckServerCert asks: TrustStore takes
/// slapd's certificate when Certificate is the CA that signed it, and is Unavailable (no
/// credentials sent) with another CA; DisableVerify takes it without a CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_checks_the_directory_certificate_as_asked() {
    let s = slapd();
    let url = format!("ldaps://127.0.0.1:{}", s.ldaps_port);
    let tls = |check: &str, ca: Option<&Path>| {
        directory(|l| {
            l["URL"] = url.clone().into();
            l["CheckServerCert"] = check.into();
            l["Certificate"] = ca
                .map(|p| p.display().to_string())
                .unwrap_or_default()
                .into();
        })
    };
    let trusted = tls("TrustStore", Some(&s.ca));
    assert_eq!(
        user_id(&trusted.verify("alice", b"alice-pw").await),
        "alice"
    );
    assert_eq!(
        trusted.verify("alice", b"bob-pw").await,
        Err(Refusal::BadCredentials)
    );
    let stranger = tls("TrustStore", Some(&s.other_ca));
    assert_eq!(
        stranger.verify("alice", b"alice-pw").await,
        Err(Refusal::Unavailable)
    );
    let unchecked = tls("DisableVerify", None);
    assert_eq!(
        user_id(&unchecked.verify("alice", b"alice-pw").await),
        "alice"
    );
}

/// Proves the directory on the auth service's runtime never holds up other clients: while a
/// verification waits on a slow directory, a cached user's CONNECT is answered at once, and
/// the slow one is answered later, authenticated.
#[test]
fn a_slow_directory_does_not_hold_up_cached_users() {
    let slow = slapd().proxy(Duration::from_millis(300));
    let d = directory(|l| l["URL"] = format!("ldap://127.0.0.1:{slow}").into());
    let endpoints = vec![Demands {
        password: true,
        ..Demands::default()
    }];
    let checker = Checker::new(endpoints, Some(Arc::new(d)), Duration::from_secs(10));
    let (answers, answered) = std::sync::mpsc::channel::<(Answer, Instant)>();
    let answers = std::sync::Mutex::new(answers);
    let reply = Arc::new(move |answer: Answer| {
        let _ = answers.lock().unwrap().send((answer, Instant::now()));
    });
    let service = AuthService::start(checker, reply).unwrap();
    let request = |ticket: u64, user: &str, password: &'static [u8]| AuthRequest {
        shard: 0,
        conn: ticket as u32,
        ticket,
        endpoint: 0,
        client_id: format!("client-{ticket}").into(),
        user_name: Some(ByteString::from(user)),
        password: Some(Bytes::from_static(password)),
        peer: "127.0.0.1".parse().unwrap(),
        common_name: None,
        method: None,
        data: None,
        step: 0,
    };
    let wait = || {
        answered
            .recv_timeout(Duration::from_secs(20))
            .expect("an answer")
    };

    service.submit(request(1, "alice", b"alice-pw")); // slow: caches alice
    let (first, _) = wait();
    assert_eq!(answered_user(&first.answer), "alice");

    let started = Instant::now();
    service.submit(request(2, "bob", b"bob-pw")); // slow: four round trips of 300 ms
    service.submit(request(3, "alice", b"alice-pw")); // cached
    let (cached, cached_at) = wait();
    assert_eq!(cached.ticket, 3, "the cached user is answered first");
    assert_eq!(answered_user(&cached.answer), "alice");
    assert!(
        cached_at - started < Duration::from_millis(250),
        "{:?}",
        cached_at - started
    );
    let (slow, slow_at) = wait();
    assert_eq!(slow.ticket, 2);
    assert_eq!(answered_user(&slow.answer), "bob");
    assert!(
        slow_at - started >= Duration::from_millis(600),
        "{:?}",
        slow_at - started
    );
}
