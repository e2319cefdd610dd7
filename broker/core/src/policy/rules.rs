//! The three policy types compiled, and the decisions made over an endpoint's lists of them.
//!
//! Policies are tried in the order the endpoint lists them; a policy applies to a client when
//! every filter it gives matches ([`ClientFilters`]). The first that allows an action decides
//! what comes with it (a connection's limits, a message's time to live). A refusal is logged
//! with why each policy did not allow ([`explain`]): which filter failed, which action is
//! missing, or that the topic does not match; never a payload or a password.

use std::fmt::Write;

use super::filters::ClientFilters;
use super::pattern::Pattern;
use super::subject::Subject;
use crate::queue::QueueBehavior;

/// A ConnectionPolicy, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRule {
    pub name: String,
    pub filters: ClientFilters,
    pub allow_durable: bool,
    pub allow_persistent: bool,
    /// `u32::MAX` is no maximum.
    pub session_expiry_max_s: u32,
}

/// A TopicPolicy, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRule {
    pub name: String,
    pub filters: ClientFilters,
    pub topic: Pattern,
    pub publish: bool,
    pub subscribe: bool,
    pub queue_messages_max: u32,
    pub queue_behavior: QueueBehavior,
    pub message_ttl_max_s: Option<u32>,
    /// Marks the subscriptions this policy authorises: their messages, arriving while the
    /// session is disconnected, are notified on `$SYS/DisconnectedClientNotification`
    /// (`crate::notification`).
    pub disconnected_client_notification: bool,
}

/// A SubscriptionPolicy, compiled: who may join (Receive) and create (Control) the shared
/// subscriptions whose group names its `Subscription` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionRule {
    pub name: String,
    pub filters: ClientFilters,
    pub subscription: Pattern,
    pub receive: bool,
    pub control: bool,
    /// Kept for a shared subscription's own buffer, a later feature (members' session queues
    /// bound the messages today).
    pub queue_messages_max: u32,
    pub queue_behavior: QueueBehavior,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Publish => "Publish",
            Action::Subscribe => "Subscribe",
        }
    }
}

/// What a SubscriptionPolicy lets a client do with a shared subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareAction {
    /// Join a group that exists.
    Receive,
    /// Create a group (be its first member); Amlen requires Receive with it.
    Control,
}

impl TopicRule {
    fn grants(&self, action: Action) -> bool {
        match action {
            Action::Publish => self.publish,
            Action::Subscribe => self.subscribe,
        }
    }

    /// Action first, then the topic, then the filters: the cheapest refusal first, and the
    /// demo's `*` for everyone is two branches.
    fn allows(&self, action: Action, topic: &str, s: &Subject) -> bool {
        self.grants(action)
            && self.topic.matches_topic(topic, s)
            && self.filters.refuses(s).is_none()
    }
}

impl SubscriptionRule {
    fn grants(&self, action: ShareAction) -> bool {
        match action {
            ShareAction::Receive => self.receive,
            ShareAction::Control => self.control,
        }
    }
}

/// The first ConnectionPolicy whose filters all match `s`.
pub fn connection_rule<'r>(rules: &'r [ConnectionRule], s: &Subject) -> Option<&'r ConnectionRule> {
    rules.iter().find(|r| r.filters.refuses(s).is_none())
}

/// The first TopicPolicy whose filters match `s`: it sets the session's queue limits.
pub fn session_rule<'r>(rules: &'r [TopicRule], s: &Subject) -> Option<&'r TopicRule> {
    rules.iter().find(|r| r.filters.refuses(s).is_none())
}

/// The first TopicPolicy that lets `s` publish to `topic`.
pub fn publish_rule<'r>(rules: &'r [TopicRule], topic: &str, s: &Subject) -> Option<&'r TopicRule> {
    rules.iter().find(|r| r.allows(Action::Publish, topic, s))
}

/// Whether `s` may receive messages of `topic`: some policy lets it subscribe to the topic.
pub fn may_receive(rules: &[TopicRule], topic: &str, s: &Subject) -> bool {
    rules.iter().any(|r| r.allows(Action::Subscribe, topic, s))
}

/// Whether `s` may subscribe to the (plain) filter: every topic the filter matches must be one
/// it may receive, so a filter is authorised as a subset of what the policies allow, not as a
/// string. The filter text itself must be matched (its `+` and `#` only by a `*`), and a filter
/// ending in `/#` also matches its parent level (`d/a/#` matches `d/a`), which must be allowed
/// too; the two parts may be allowed by different policies.
pub fn may_subscribe(rules: &[TopicRule], filter: &str, s: &Subject) -> bool {
    let covered = |text: &str| may_receive(rules, text, s);
    covered(filter) && filter.strip_suffix("/#").is_none_or(covered)
}

/// Whether a subscription to the plain `filter` is marked for disconnected-client
/// notification: the first TopicPolicy that lets `s` subscribe to it has
/// `DisconnectedClientNotification` (Amlen marks what that policy authorises).
pub fn notifies(rules: &[TopicRule], filter: &str, s: &Subject) -> bool {
    rules
        .iter()
        .find(|r| r.allows(Action::Subscribe, filter, s))
        .is_some_and(|r| r.disconnected_client_notification)
}

/// The first SubscriptionPolicy that lets `s` do `action` with the shared subscription `group`.
pub fn share_rule<'r>(
    rules: &'r [SubscriptionRule],
    group: &str,
    action: ShareAction,
    s: &Subject,
) -> Option<&'r SubscriptionRule> {
    rules.iter().find(|r| {
        r.grants(action) && r.subscription.matches(group, s) && r.filters.refuses(s).is_none()
    })
}

/// Why no TopicPolicy allowed `action` on `topic`: one clause per policy. Built only for the
/// log of a refusal.
pub fn explain(rules: &[TopicRule], action: Action, topic: &str, s: &Subject) -> String {
    if rules.is_empty() {
        return "the endpoint lists no TopicPolicy".into();
    }
    let mut why = String::new();
    for r in rules {
        if !why.is_empty() {
            why.push_str("; ");
        }
        let _ = write!(why, "TopicPolicy \"{}\": ", r.name);
        if !r.grants(action) {
            let _ = write!(why, "ActionList lacks {}", action.name());
        } else if let Some(filter) = r.filters.refuses(s) {
            let _ = write!(why, "{filter} does not match");
        } else if !r.topic.matches_topic(topic, s) {
            let _ = write!(why, "Topic \"{}\" does not cover it", r.topic);
        } else {
            why.push_str("allows it");
        }
    }
    why
}

/// Why no ConnectionPolicy admits `s`, for the log: the first filter each one fails.
pub fn explain_connection(rules: &[ConnectionRule], s: &Subject) -> String {
    if rules.is_empty() {
        return "the endpoint lists no ConnectionPolicy".into();
    }
    let mut why = String::new();
    for r in rules {
        if !why.is_empty() {
            why.push_str("; ");
        }
        let failed = r.filters.refuses(s).unwrap_or("no filter");
        let _ = write!(
            why,
            "ConnectionPolicy \"{}\": {failed} does not match",
            r.name
        );
    }
    why
}
