//! The broker's disconnected-client notification, as MessageSight publishes it on
//! `$SYS/DisconnectedClientNotification`:
//!
//! ```json
//! {"ClientId":"phone-1","UserID":"alice",
//!  "MessagesArrived":[{"TopicString":"APP/NOTIFICATION/alice","MessageCount":3}]}
//! ```
//!
//! It names topics and counts, never message content. Parsed strictly and bounded: the
//! notification topic is granted by policy only, but a gateway does not trust what it does
//! not need to.

use serde::{Deserialize, Serialize};

use crate::registry::ID_BYTES_MAX;

/// The largest notification, in bytes.
pub const NOTIFICATION_BYTES_MAX: usize = 256 * 1024;
/// The most topics one notification lists.
pub const TOPICS_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(rename = "ClientId")]
    pub client_id: String,
    #[serde(rename = "UserID", default)]
    pub user_id: String,
    #[serde(rename = "MessagesArrived")]
    pub messages_arrived: Vec<Arrived>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrived {
    #[serde(rename = "TopicString")]
    pub topic_string: String,
    #[serde(rename = "MessageCount")]
    pub message_count: u64,
}

impl Notification {
    pub fn parse(payload: &[u8]) -> Result<Notification, String> {
        if payload.len() > NOTIFICATION_BYTES_MAX {
            return Err(format!(
                "{} bytes, more than {NOTIFICATION_BYTES_MAX}",
                payload.len()
            ));
        }
        let n: Notification = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        if n.client_id.is_empty() || n.client_id.len() > ID_BYTES_MAX {
            return Err(format!(
                "ClientId is empty or longer than {ID_BYTES_MAX} bytes"
            ));
        }
        if n.user_id.len() > ID_BYTES_MAX {
            return Err(format!("UserID is longer than {ID_BYTES_MAX} bytes"));
        }
        if n.messages_arrived.len() > TOPICS_MAX {
            return Err(format!("more than {TOPICS_MAX} topics"));
        }
        Ok(n)
    }

    /// The messages waiting, over all topics (saturating: counts come from outside).
    pub fn message_count(&self) -> u64 {
        self.messages_arrived
            .iter()
            .fold(0u64, |sum, a| sum.saturating_add(a.message_count))
    }

    /// Adds a later notification for the same client (a push held back by the rate limit
    /// carries everything that arrived meanwhile). The topic list stays within TOPICS_MAX.
    pub fn merge(&mut self, later: Notification) {
        for a in later.messages_arrived {
            let known = self
                .messages_arrived
                .iter()
                .position(|m| m.topic_string == a.topic_string);
            match known {
                Some(i) => {
                    let m = &mut self.messages_arrived[i];
                    m.message_count = m.message_count.saturating_add(a.message_count);
                }
                None if self.messages_arrived.len() < TOPICS_MAX => self.messages_arrived.push(a),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the broker's record parses, counts add up, and merging adds per topic.
    #[test]
    fn parse_count_merge() {
        let mut n = Notification::parse(
            br#"{"ClientId":"c","UserID":"u","MessagesArrived":[{"TopicString":"a","MessageCount":2},{"TopicString":"b","MessageCount":1}]}"#,
        )
        .unwrap();
        assert_eq!(n.message_count(), 3);
        n.merge(Notification::parse(br#"{"ClientId":"c","MessagesArrived":[{"TopicString":"b","MessageCount":4},{"TopicString":"c","MessageCount":1}]}"#).unwrap());
        assert_eq!(n.message_count(), 8);
        assert_eq!(n.messages_arrived.len(), 3);
    }

    /// Proves bad records are refused with a reason.
    #[test]
    fn refusals() {
        for bad in [
            &br#"{"ClientId":"","MessagesArrived":[]}"#[..],
            br#"{"UserID":"u","MessagesArrived":[]}"#,
            br#"{"ClientId":"c","MessagesArrived":[{"TopicString":"a","MessageCount":-1}]}"#,
            br#"[]"#,
        ] {
            assert!(Notification::parse(bad).is_err());
        }
        let many: Vec<_> = (0..=TOPICS_MAX)
            .map(|i| format!(r#"{{"TopicString":"t{i}","MessageCount":1}}"#))
            .collect();
        let text = format!(
            r#"{{"ClientId":"c","MessagesArrived":[{}]}}"#,
            many.join(",")
        );
        assert!(Notification::parse(text.as_bytes())
            .unwrap_err()
            .contains("topics"));
    }
}
