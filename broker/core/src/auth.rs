//! Authentication as the core sees it: what it asks, and what it is told back.
//!
//! The core never verifies a password, a token or a directory entry itself: that takes a slow
//! hash or a network round trip, and a shard must not wait. Between CONNECT and CONNACK a
//! connection is *authenticating* (`ConnState::Authenticating`): the shard that owns its client
//! id emits an [`AuthRequest`], keeps the CONNECT and reads nothing more from the client, and
//! goes on with its other connections. The answer comes back through the server
//! (`Shard::authenticated`), or the connection's deadline passes first. Only then is a
//! session touched, so that an unauthenticated CONNECT never takes a session over.
//!
//! MQTT 5 enhanced authentication (a CONNECT naming an Authentication Method) may take several
//! rounds: the answer is then [`AuthAnswer::Continue`], the core sends the client AUTH
//! "continue authentication" with the method's data, reads the client's AUTH, and asks again
//! with the next `step`. Each round is bounded by the same timeout.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ironsight_codec::{ByteString, Bytes, ReasonCode};

use crate::conn::ConnId;

/// Who an authenticated client is: the facts the policies' `UserID` and `GroupID` filters and
/// their `${UserID}` and `${GroupID}` variables use. Shared: a cached verdict hands every
/// connection of a user the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Box<str>,
    /// Every group the user belongs to, nested groups included, each once.
    pub groups: Box<[Box<str>]>,
}

impl Principal {
    pub fn new(user_id: impl Into<Box<str>>, groups: impl IntoIterator<Item = Box<str>>) -> Self {
        let mut groups: Vec<Box<str>> = groups.into_iter().collect();
        groups.sort_unstable();
        groups.dedup();
        Principal {
            user_id: user_id.into(),
            groups: groups.into_boxed_slice(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| &**g == group)
    }
}

/// A CONNECT waiting for its verdict. `ticket` tells this request from an earlier one of a
/// connection slot that has since been reused. Its `Debug` shows neither the password nor the
/// authentication data: logs never hold credentials.
pub struct AuthRequest {
    pub shard: u16,
    pub conn: ConnId,
    pub ticket: u64,
    pub endpoint: u16,
    pub client_id: Box<str>,
    pub user_name: Option<ByteString>,
    /// The CONNECT's password (MQTT calls it binary data: a token is one too).
    pub password: Option<Bytes>,
    pub peer: IpAddr,
    /// The common name of the client certificate the transport verified.
    pub common_name: Option<Box<str>>,
    /// The CONNECT's Authentication Method (MQTT 5 enhanced authentication), if it named one.
    pub method: Option<ByteString>,
    /// This round's Authentication Data: the CONNECT's, then each AUTH's.
    pub data: Option<Bytes>,
    /// 0 for the CONNECT, then 1, 2, ... for each AUTH the client sent in reply.
    pub step: u16,
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("shard", &self.shard)
            .field("conn", &self.conn)
            .field("ticket", &self.ticket)
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("user_name", &self.user_name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("peer", &self.peer)
            .field("common_name", &self.common_name)
            .field("method", &self.method)
            .field(
                "data",
                &self.data.as_ref().map(|d| format!("<{} bytes>", d.len())),
            )
            .field("step", &self.step)
            .finish()
    }
}

/// Why a CONNECT was not authenticated. Each maps to the one reason code a client is told
/// ([`Refusal::reason`]); the log says more, the client nothing that helps guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user, wrong password, a token that does not verify, no password where one is
    /// needed: v5 0x86, v3 return code 4.
    BadCredentials,
    /// Authenticated, but not let in (no certificate where one is required, a user taking over
    /// another user's client id): v5 0x87, v3 return code 5.
    NotAuthorized,
    /// The directory or token service did not answer in time, or too many CONNECTs wait for
    /// one already: v5 0x88, v3 return code 3.
    Unavailable,
    /// An Authentication Method the endpoint does not offer: v5 0x8C ([MQTT-4.12.0-1]).
    BadMethod,
}

impl Refusal {
    pub fn reason(self) -> ReasonCode {
        match self {
            Refusal::BadCredentials => ReasonCode::BadUserNameOrPassword,
            Refusal::NotAuthorized => ReasonCode::NotAuthorized,
            Refusal::Unavailable => ReasonCode::ServerUnavailable,
            Refusal::BadMethod => ReasonCode::BadAuthenticationMethod,
        }
    }

    /// What the refusal means, for the log.
    pub fn cause(self) -> &'static str {
        match self {
            Refusal::BadCredentials => "authentication failed",
            Refusal::NotAuthorized => "authenticated, but not let in",
            Refusal::Unavailable => "authentication did not answer in time",
            Refusal::BadMethod => "an authentication method the endpoint does not offer",
        }
    }
}

/// Who the client is, or why it may not connect.
pub type AuthVerdict = Result<Arc<Principal>, Refusal>;

/// The answer to one [`AuthRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthAnswer {
    /// Decided. `data` is the method's last word for the client (SCRAM's server-final
    /// message), sent in the CONNACK as Authentication Data.
    Done {
        verdict: AuthVerdict,
        data: Option<Bytes>,
    },
    /// The method needs another round: `data` goes to the client in AUTH 0x18.
    Continue(Bytes),
}

impl From<AuthVerdict> for AuthAnswer {
    fn from(verdict: AuthVerdict) -> Self {
        AuthAnswer::Done {
            verdict,
            data: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_sorted_once() {
        let p = Principal::new("u", ["b".into(), "a".into(), "b".into()]);
        assert_eq!(&*p.groups, &["a".into(), "b".into()] as &[Box<str>]);
        assert!(p.in_group("a"));
        assert!(!p.in_group("c"));
    }

    /// Proves a request's `Debug` (what a stray `{:?}` would log) holds no credentials.
    #[test]
    fn debug_hides_the_password_and_the_authentication_data() {
        let request = AuthRequest {
            shard: 0,
            conn: 1,
            ticket: 2,
            endpoint: 0,
            client_id: "c".into(),
            user_name: Some("alice".into()),
            password: Some(Bytes::from_static(b"hunter2")),
            peer: IpAddr::from([127, 0, 0, 1]),
            common_name: None,
            method: Some("SCRAM-SHA-256".into()),
            data: Some(Bytes::from_static(b"n,,n=alice,r=secretnonce")),
            step: 0,
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("secretnonce"), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn refusals_map_to_reason_codes() {
        assert_eq!(
            Refusal::BadCredentials.reason(),
            ReasonCode::BadUserNameOrPassword
        );
        assert_eq!(Refusal::NotAuthorized.reason(), ReasonCode::NotAuthorized);
        assert_eq!(Refusal::Unavailable.reason(), ReasonCode::ServerUnavailable);
    }
}
