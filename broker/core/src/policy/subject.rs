//! Who is asking: the facts about a client that the policies' filters and variables use.

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::Principal;

/// A client as the policies see it, borrowed from its connection and session for one decision.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub client_id: &'a str,
    /// `None`: the endpoint does not authenticate; the client has no user id and no groups, and
    /// `UserID`/`GroupID` filters and `${UserID}`/`${GroupID}` never match it.
    pub principal: Option<&'a Principal>,
    /// The common name of the client certificate the transport verified.
    pub common_name: Option<&'a str>,
    /// The client's address (IPv4 clients of a dual-stack listener in their IPv4 form).
    pub addr: IpAddr,
}

impl Subject<'_> {
    pub fn user_id(&self) -> Option<&str> {
        self.principal.map(|p| &*p.user_id)
    }

    pub fn groups(&self) -> &[Box<str>] {
        self.principal.map_or(&[], |p| &p.groups)
    }
}

/// The publisher of a retained message, kept with the message so that its right to publish
/// there can be checked again whenever the message is delivered from the store (the policies in
/// force then decide). Built only for retained messages: the live fan-out never needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publisher {
    /// The endpoint it published through: its TopicPolicies decide.
    pub endpoint: u16,
    pub client_id: Box<str>,
    pub principal: Option<Arc<Principal>>,
    pub common_name: Option<Box<str>>,
    pub addr: IpAddr,
}

impl Publisher {
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            client_id: &self.client_id,
            principal: self.principal.as_deref(),
            common_name: self.common_name.as_deref(),
            addr: self.addr,
        }
    }
}

/// Whether `value` (a user id, group, client id or common name) may stand in for a variable.
/// A substituted value stands for exactly one topic level: one holding a level separator or a
/// wildcard would reach other clients' topics (client id `x/PRIVILEGE` under
/// `MOBILEAPP/ACCOUNT/${ClientID}`, client id `+` subscribing to `devices/+/#`), and NUL is no
/// character of any topic. An empty value identifies nobody. Such values match nothing.
pub fn substitutable(value: &str) -> bool {
    !value.is_empty() && !value.contains(['/', '+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_are_not_one_level_are_refused() {
        for bad in ["", "x/PRIVILEGE", "#", "+", "a/+", "nul\0", "/"] {
            assert!(!substitutable(bad), "{bad:?}");
        }
        for good in [
            "a",
            "policy*08.3",
            "${UserID}",
            "*.example.com",
            "user with spaces",
        ] {
            assert!(substitutable(good), "{good:?}");
        }
    }
}
