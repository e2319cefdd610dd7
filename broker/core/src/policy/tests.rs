//! The policies' rules, and the attack cases of issue 9 that are decided here, each with its
//! exact outcome.

use super::*;
use crate::auth::Principal;
use crate::queue::QueueBehavior;

fn topic(text: &str) -> Pattern {
    Pattern::parse(text, PatternKind::Topic).unwrap()
}

fn rule(name: &str, pattern: &str, publish: bool, subscribe: bool) -> TopicRule {
    TopicRule {
        name: name.into(),
        filters: ClientFilters::default(),
        topic: topic(pattern),
        publish,
        subscribe,
        queue_messages_max: 5000,
        queue_behavior: QueueBehavior::RejectNewMessages,
        message_ttl_max_s: None,
        disconnected_client_notification: false,
    }
}

fn client(id: &str) -> Subject<'_> {
    Subject {
        client_id: id,
        principal: None,
        common_name: None,
        addr: "127.0.0.1".parse().unwrap(),
    }
}

fn user<'a>(id: &'a str, principal: &'a Principal) -> Subject<'a> {
    Subject {
        principal: Some(principal),
        ..client(id)
    }
}

fn can_publish(rules: &[TopicRule], t: &str, s: &Subject) -> bool {
    publish_rule(rules, t, s).is_some()
}

/// Proves `*` spans levels and everything else is literal, as in Amlen's `ism_common_match`.
#[test]
fn star_matches_any_characters() {
    let s = client("c");
    assert!(topic("*").matches_topic("a/b/c", &s));
    assert!(topic("a/*").matches_topic("a/b/c", &s));
    assert!(topic("a/*").matches_topic("a/", &s));
    assert!(!topic("a/*").matches_topic("a", &s));
    assert!(!topic("a/*").matches_topic("b/a", &s));
    assert!(topic("*/end").matches_topic("x/y/end", &s));
    assert!(topic("a/*/c/*").matches_topic("a/b/c/d", &s));
    assert!(!topic("a/*/c/*").matches_topic("a/b/d/c", &s));
    assert!(topic("a*b*c").matches_topic("abbbc", &s));
    assert!(!topic("a*b*c").matches_topic("acb", &s));
    assert!(topic("exact").matches_topic("exact", &s));
    assert!(!topic("exact").matches_topic("exact/", &s));
    assert!(topic("a${*}b").matches_topic("a*b", &s));
    assert!(!topic("a${*}b").matches_topic("axb", &s));
}

/// Proves Amlen's advice example is safe here: under `MOBILEAPP/ACCOUNT/${ClientID}`, ids
/// holding a level separator or a wildcard reach nothing, `*` is a literal character, and an
/// id holding the text `${UserID}` is that text (single pass).
#[test]
fn client_ids_that_are_not_one_level_reach_nothing() {
    let rules = [rule("own", "MOBILEAPP/ACCOUNT/${ClientID}", true, true)];
    let privileged = client("x/PRIVILEGE");
    assert!(!can_publish(
        &rules,
        "MOBILEAPP/ACCOUNT/x/PRIVILEGE",
        &privileged
    ));
    assert!(!may_subscribe(
        &rules,
        "MOBILEAPP/ACCOUNT/x/PRIVILEGE",
        &privileged
    ));
    assert!(!may_subscribe(&rules, "MOBILEAPP/ACCOUNT/#", &client("#")));
    assert!(!may_subscribe(&rules, "MOBILEAPP/ACCOUNT/+", &client("+")));
    assert!(!may_subscribe(
        &rules,
        "MOBILEAPP/ACCOUNT/a/+",
        &client("a/+")
    ));
    let star = client("*");
    assert!(can_publish(&rules, "MOBILEAPP/ACCOUNT/*", &star));
    assert!(!can_publish(&rules, "MOBILEAPP/ACCOUNT/other", &star));
    let bob = Principal::new("bob", []);
    let literal = user("${UserID}", &bob);
    assert!(can_publish(&rules, "MOBILEAPP/ACCOUNT/${UserID}", &literal));
    assert!(!can_publish(&rules, "MOBILEAPP/ACCOUNT/bob", &literal));
}

/// The same attack cases as user ids, under `${UserID}`.
#[test]
fn user_ids_that_are_not_one_level_reach_nothing() {
    let rules = [rule("own", "APP/RESPONSE/${UserID}", true, true)];
    for bad in ["x/PRIVILEGE", "#", "+", "a/+", ""] {
        let p = Principal::new(bad, []);
        let s = user("c1", &p);
        for t in [
            "APP/RESPONSE/x/PRIVILEGE",
            "APP/RESPONSE/#",
            "APP/RESPONSE/+",
            "APP/RESPONSE/a/+",
            "APP/RESPONSE/",
        ] {
            assert!(
                !may_subscribe(&rules, t, &s),
                "user {bad:?} subscribing {t}"
            );
        }
    }
    let star = Principal::new("*", []);
    assert!(may_subscribe(&rules, "APP/RESPONSE/*", &user("c1", &star)));
    assert!(!may_subscribe(
        &rules,
        "APP/RESPONSE/bob",
        &user("c1", &star)
    ));
    let tricky = Principal::new("${ClientID}", []);
    assert!(!may_subscribe(
        &rules,
        "APP/RESPONSE/c1",
        &user("c1", &tricky)
    ));
    assert!(may_subscribe(
        &rules,
        "APP/RESPONSE/${ClientID}",
        &user("c1", &tricky)
    ));
    // No user (an endpoint without authentication): `${UserID}` matches nothing.
    assert!(!may_subscribe(&rules, "APP/RESPONSE/c1", &client("c1")));
}

/// Amlen's test `policy*08.3`: the client may use `/policy*08.3/dest10`, and the `*` in its id
/// is no wildcard, even after a `*` of the pattern.
#[test]
fn a_star_in_a_value_is_a_literal_character() {
    let rules = [
        rule("own", "/${ClientID}/dest10", true, false),
        rule("tail", "*/${ClientID}", true, false),
    ];
    let s = client("policy*08.3");
    assert!(can_publish(&rules, "/policy*08.3/dest10", &s));
    assert!(!can_publish(&rules, "/policyX08.3/dest10", &s));
    assert!(can_publish(&rules, "a/b/policy*08.3", &s));
    assert!(!can_publish(&rules, "a/b/policyXY08.3", &s));
}

/// Proves a value stands for a whole level: client `a` under `t/${ClientID}*` reaches `t/a`
/// and its subtree, not `t/ab` (client `ab`'s), and client `a/b` reaches nothing, so client `a`
/// and topics of `a/b` never collide.
#[test]
fn prefix_collisions_are_impossible() {
    let rules = [rule("own", "t/${ClientID}*", true, true)];
    let a = client("a");
    assert!(can_publish(&rules, "t/a", &a));
    assert!(can_publish(&rules, "t/a/b", &a));
    assert!(!can_publish(&rules, "t/ab", &a));
    assert!(may_subscribe(&rules, "t/a/#", &a));
    assert!(!may_subscribe(&rules, "t/+", &a));
    let ab = client("a/b");
    assert!(!can_publish(&rules, "t/a/b", &ab));
    assert!(!can_publish(&rules, "t/a/b/x", &ab));
}

/// Proves certificate common names are values like any other: `*.example.com` is literal, a
/// CN with `/` reaches nothing, and a client without a certificate matches no `${CommonName}`.
#[test]
fn common_names_are_literal_single_levels() {
    let rules = [rule("certs", "certs/${CommonName}/*", true, true)];
    let wildcard_cn = Subject {
        common_name: Some("*.example.com"),
        ..client("c")
    };
    assert!(can_publish(&rules, "certs/*.example.com/x", &wildcard_cn));
    assert!(!can_publish(&rules, "certs/a.example.com/x", &wildcard_cn));
    let slash_cn = Subject {
        common_name: Some("evil/x"),
        ..client("c")
    };
    assert!(!can_publish(&rules, "certs/evil/x/y", &slash_cn));
    assert!(!can_publish(&rules, "certs/c/x", &client("c")));
}

/// Proves `${GroupID}` matches any one of the user's groups (Amlen's drivers example), never a
/// group that is not one level, and never a client without a user.
#[test]
fn group_ids_match_any_group() {
    let rules = [rule("drivers", "drivers/USA/${GroupID}/*", false, true)];
    let p = Principal::new(
        "truck1",
        ["Los Angeles".into(), "San Francisco".into(), "a/b".into()],
    );
    let s = user("c", &p);
    assert!(!may_subscribe(&rules, "drivers/USA/Los Angeles/#", &s));
    assert!(may_subscribe(&rules, "drivers/USA/Los Angeles/+", &s));
    assert!(may_subscribe(&rules, "drivers/USA/San Francisco/news", &s));
    assert!(!may_subscribe(&rules, "drivers/USA/Denver/news", &s));
    assert!(!may_subscribe(&rules, "drivers/USA/a/b/news", &s));
    assert!(!may_subscribe(&rules, "drivers/USA/+/news", &s));
    assert!(!may_subscribe(
        &rules,
        "drivers/USA/Los Angeles/x",
        &client("c")
    ));
}

/// Proves filters are authorised as subsets: `d/a/#` matches `d/a` itself, which `d/a/*` does
/// not allow, so it is refused; a second policy allowing `d/a` completes it.
#[test]
fn filters_are_authorised_as_subsets() {
    let s = client("c");
    let sub = [rule("tree", "d/a/*", false, true)];
    assert!(!may_subscribe(&sub, "d/a/#", &s));
    assert!(may_subscribe(&sub, "d/a/+", &s));
    assert!(may_subscribe(&sub, "d/a/b/#", &s));
    assert!(may_subscribe(&sub, "d/a/x/+/y", &s));
    assert!(!may_subscribe(&sub, "d/#", &s));
    assert!(!may_subscribe(&sub, "d/+/x", &s));
    assert!(!may_subscribe(&sub, "#", &s));
    assert!(!may_subscribe(&sub, "+/a/b", &s));
    let both = [
        rule("tree", "d/a/*", false, true),
        rule("node", "d/a", false, true),
    ];
    assert!(may_subscribe(&both, "d/a/#", &s));
    // A Topic with a star right after the prefix covers the parent too.
    assert!(may_subscribe(
        &[rule("p", "d/a*", false, true)],
        "d/a/#",
        &s
    ));
    // Publishing rights do not let a client subscribe.
    assert!(!may_subscribe(&[rule("pub", "*", true, false)], "x", &s));
}

/// Proves `$SYS` is out of `*`'s reach: only a pattern beginning with `$SYS` grants it, and
/// `is_sys` names the topics only the broker publishes on; other `$` topics are ordinary.
#[test]
fn sys_topics_need_a_sys_pattern() {
    let s = client("c");
    let everything = [rule("all", "*", true, true)];
    assert!(!can_publish(&everything, "$SYS/broker/load", &s));
    assert!(!may_subscribe(&everything, "$SYS/#", &s));
    assert!(!may_subscribe(&everything, "$SYS/+/load", &s));
    assert!(
        may_subscribe(&everything, "#", &s),
        "# does not match $SYS topics"
    );
    let monitor = [rule("sys", "$SYS/*", false, true)];
    assert!(may_subscribe(&monitor, "$SYS/broker/+", &s));
    assert!(
        !may_subscribe(&monitor, "$SYS/#", &s),
        "$SYS itself is not $SYS/*"
    );
    assert!(may_subscribe(
        &[rule("sys", "$SYS*", false, true)],
        "$SYS/#",
        &s
    ));
    assert!(is_sys("$SYS") && is_sys("$SYS/x") && !is_sys("$SYSTEM") && !is_sys("a/$SYS"));
    assert!(can_publish(&everything, "$test/x", &s));
    assert!(!may_subscribe(
        &[rule("dollar", "$*", false, true)],
        "$SYS/x",
        &s
    ));
}

/// Proves the ConnectionPolicy's ClientID may tie the client id to the user or certificate,
/// as Amlen's `myClient/${UserID}` example does.
#[test]
fn connection_client_id_may_name_the_user() {
    let pattern = Pattern::parse("myClient/${UserID}", PatternKind::ConnectionClientId).unwrap();
    let a = Principal::new("userA", []);
    assert!(pattern.matches("myClient/userA", &user("myClient/userA", &a)));
    assert!(!pattern.matches("notMyClient", &user("notMyClient", &a)));
    assert!(!pattern.matches("myClient/userA", &client("myClient/userA")));
    let prefix = Pattern::parse("${CommonName}-*", PatternKind::ConnectionClientId).unwrap();
    let cn = Subject {
        common_name: Some("meter7"),
        ..client("meter7-a")
    };
    assert!(prefix.matches("meter7-a", &cn));
    assert!(!prefix.matches("meter8-a", &cn));
}

/// Proves shared subscriptions need Receive to join and Control to create, for group names
/// the policy's Subscription matches.
#[test]
fn share_rules_grant_receive_and_control() {
    let share = |name: &str, pattern: &str, receive, control| SubscriptionRule {
        name: name.into(),
        filters: ClientFilters::default(),
        subscription: Pattern::parse(pattern, PatternKind::ShareName).unwrap(),
        receive,
        control,
        queue_messages_max: 5000,
        queue_behavior: QueueBehavior::RejectNewMessages,
    };
    let rules = [
        share("workers", "billing-*", true, false),
        share("owners", "app-${UserID}", true, true),
    ];
    let bob = Principal::new("bob", []);
    let s = user("c", &bob);
    assert!(share_rule(&rules, "billing-1", ShareAction::Receive, &s).is_some());
    assert!(share_rule(&rules, "billing-1", ShareAction::Control, &s).is_none());
    assert!(share_rule(&rules, "app-bob", ShareAction::Control, &s).is_some());
    assert!(share_rule(&rules, "app-alice", ShareAction::Receive, &s).is_none());
    assert!(share_rule(&rules, "other", ShareAction::Receive, &s).is_none());
}

/// Proves the first policy that allows decides (its time-to-live cap), in the endpoint's order.
#[test]
fn the_first_policy_that_allows_decides() {
    let mut capped = rule("capped", "a/*", true, false);
    capped.message_ttl_max_s = Some(60);
    let rules = [
        rule("subscribe-only", "*", false, true),
        capped,
        rule("all", "*", true, true),
    ];
    let s = client("c");
    assert_eq!(
        publish_rule(&rules, "a/x", &s).map(|r| &*r.name),
        Some("capped")
    );
    assert_eq!(publish_rule(&rules, "b", &s).map(|r| &*r.name), Some("all"));
    let why = explain(&rules[..1], Action::Publish, "a/x", &s);
    assert_eq!(
        why,
        "TopicPolicy \"subscribe-only\": ActionList lacks Publish"
    );
}

/// Proves what a configuration may not write is refused with a reason: unknown or repeated
/// variables, a variable that is not a whole level, MQTT wildcards in a Topic, a `*` before
/// the end of a name filter, variables where Amlen allows none.
#[test]
fn invalid_patterns_are_refused() {
    let bad = [
        ("${Nope}/x", PatternKind::Topic, "names ${Nope}"),
        ("${ClientID", PatternKind::Topic, "without its '}'"),
        ("a/${UserID}/${UserID}", PatternKind::Topic, "twice"),
        ("a/x${UserID}", PatternKind::Topic, "whole topic level"),
        ("a/${UserID}x", PatternKind::Topic, "whole topic level"),
        ("a/+", PatternKind::Topic, "not an MQTT filter"),
        ("a/#", PatternKind::Topic, "not an MQTT filter"),
        ("", PatternKind::Topic, "is empty"),
        ("a*b", PatternKind::Name, "only as its last character"),
        ("**", PatternKind::Name, "only as its last character"),
        ("${UserID}", PatternKind::Name, "cannot be used here"),
        (
            "${GroupID}",
            PatternKind::ConnectionClientId,
            "cannot be used here",
        ),
        (
            "${ClientID}",
            PatternKind::ConnectionClientId,
            "cannot be used here",
        ),
        (
            "g-${ClientID}",
            PatternKind::ShareName,
            "cannot be used here",
        ),
        ("g/h", PatternKind::ShareName, "holds '/'"),
    ];
    for (text, kind, expected) in bad {
        let e = Pattern::parse(text, kind).unwrap_err().0;
        assert!(e.contains(expected), "{text:?}: {e}");
    }
    assert!(Pattern::parse("${$}SYS/*", PatternKind::Topic).is_ok());
    assert!(Pattern::parse("*${UserID}/x", PatternKind::Topic).is_ok());
    assert!(Pattern::parse("dev-*", PatternKind::Name).is_ok());
}
