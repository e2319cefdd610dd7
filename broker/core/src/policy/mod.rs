//! MessageSight's (Eclipse Amlen's) messaging policies, compiled: who may connect, publish,
//! subscribe, and join a shared subscription.
//!
//! # Layout
//! - [`subject`]: who is asking ([`Subject`]), the publisher kept with a retained message, and
//!   which values may be substituted.
//! - [`pattern`]: policy strings with `*` and `${...}` variables, and safe substitution.
//! - [`filters`]: a policy's `ClientID`, `ClientAddress`, `UserID`, `GroupID`, `CommonNames`.
//! - [`rules`]: ConnectionPolicy, TopicPolicy, SubscriptionPolicy, and the decisions over an
//!   endpoint's ordered lists of them.
//!
//! # Semantics (Amlen's documentation: "Authorizing client connections", "Topic policy",
//! # "Subscription policy", "Variable substitution in messaging policies", and the REST
//! # reference "Create or update a connection / topic / subscription policy")
//! - An endpoint's policies are tried in the order it lists them; a policy applies to a client
//!   when every filter it gives matches, and the first that allows decides.
//! - A publish needs a TopicPolicy with `Publish` whose Topic matches the topic; a subscribe,
//!   policies with `Subscribe` that together cover every topic the filter matches
//!   ([`rules::may_subscribe`]). `$SYS` topics match only patterns beginning with `$SYS` (`*`
//!   grants no `$SYS`), and no client publishes on `$SYS` at all.
//! - A shared subscription (`$share/g/f`, `$SharedSubscription/g/f`) needs the TopicPolicy for
//!   `f` and, on an endpoint that lists SubscriptionPolicies, one with `Receive` for the group
//!   name `g` (`Control` as well to create the group). An endpoint that lists none keeps
//!   Amlen's rule for non-durable shared subscriptions: the TopicPolicy alone.
//!
//! # Invariant
//! Deciding allocates nothing and never reads a clock: policies are compiled when the
//! configuration is read, and a decision borrows the client's facts.

pub mod filters;
pub mod pattern;
pub mod rules;
pub mod subject;

pub use filters::{AddressFilter, ClientFilters, CLIENT_ADDRESSES_MAX};
pub use pattern::{Pattern, PatternError, PatternKind, Var};
pub use rules::{
    connection_rule, explain, explain_connection, may_receive, may_subscribe, notifies,
    publish_rule, session_rule, share_rule, Action, ConnectionRule, ShareAction, SubscriptionRule,
    TopicRule,
};
pub use subject::{substitutable, Publisher, Subject};

/// Whether `topic` (or a filter) is under `$SYS`, where only the broker publishes and only a
/// policy whose Topic begins with `$SYS` grants reading.
pub fn is_sys(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

#[cfg(test)]
mod tests;
