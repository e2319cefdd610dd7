//! What every push service shares: the push to send, the text it shows, and what came of one
//! attempt (`Outcome`), which `deliver` turns into another attempt, a removed token or a
//! dead letter.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;
use crate::http::Answer;
use crate::notification::Notification;
use crate::registry::Device;

/// One push: a device and what it is told about.
#[derive(Clone, Debug)]
pub struct Push {
    pub client_id: String,
    pub device: Device,
    pub notification: Notification,
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The service says the token is no good: it is removed.
    InvalidToken(String),
    /// Worth another attempt (429, 5xx, no answer), after `after` if the service said.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Not worth another attempt.
    Failed(String),
}

impl Outcome {
    /// 2xx, 429 and 5xx mean the same to every service; `None` for the rest, which each
    /// service reads its own way.
    pub fn common(answer: &Answer) -> Option<Outcome> {
        let status = answer.status;
        if status.is_success() {
            return Some(Outcome::Sent);
        }
        if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Some(Outcome::Retry {
                reason: format!("{status}: {}", excerpt(&answer.body)),
                after: answer.retry_after,
            });
        }
        None
    }
}

/// The start of an answer body for a log or a dead letter: one line, bounded.
pub fn excerpt(body: &[u8]) -> String {
    const EXCERPT_BYTES_MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES_MAX)]);
    text.replace(['\n', '\r'], " ")
}

/// What the phone shows. By default only "you have N new messages": no topic, no content.
#[derive(Clone, Debug)]
pub struct Alert {
    text: String,
    title: Option<String>,
    badge: bool,
    include_topics: bool,
}

impl Alert {
    pub fn from_config(config: &Config) -> Alert {
        Alert {
            text: config.alert_text.clone(),
            title: config.alert_title.clone(),
            badge: config.badge,
            include_topics: config.include_topics,
        }
    }

    pub fn text(&self, n: &Notification) -> String {
        self.text.replace("{count}", &n.message_count().to_string())
    }

    /// APNs's payload: `{"aps":{"alert":...,"badge"?:N}}`, and the topics only when asked.
    pub fn apns_body(&self, n: &Notification) -> Value {
        let alert = match &self.title {
            Some(title) => json!({"title": title, "body": self.text(n)}),
            None => json!(self.text(n)),
        };
        let mut aps = json!({"alert": alert});
        if self.badge {
            aps["badge"] = n.message_count().min(u32::MAX as u64).into();
        }
        let mut body = json!({"aps": aps});
        if self.include_topics {
            body["MessagesArrived"] = json!(n.messages_arrived);
        }
        body
    }

    /// FCM's message: `{"message":{"token":...,"notification":{...}}}`; data values are strings.
    pub fn fcm_body(&self, token: &str, n: &Notification) -> Value {
        let mut notification = json!({"body": self.text(n)});
        if let Some(title) = &self.title {
            notification["title"] = title.as_str().into();
        }
        let mut message = json!({"token": token, "notification": notification});
        if self.include_topics {
            let topics = serde_json::to_string(&n.messages_arrived).unwrap_or_default();
            message["data"] = json!({ "MessagesArrived": topics });
        }
        json!({ "message": message })
    }

    /// The webhook's body: the notification as the broker published it (topics and counts,
    /// never content: a webhook is the operator's own relay), with the token and the text.
    pub fn webhook_body(&self, push: &Push) -> Value {
        let n = &push.notification;
        json!({
            "ClientId": n.client_id,
            "UserID": n.user_id,
            "MessagesArrived": n.messages_arrived,
            "Token": push.device.token,
            "Alert": self.text(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Arrived;

    fn note() -> Notification {
        Notification {
            client_id: "c".into(),
            user_id: "u".into(),
            messages_arrived: vec![Arrived {
                topic_string: "APP/NOTIFICATION/secret-project".into(),
                message_count: 3,
            }],
        }
    }

    fn alert(include_topics: bool) -> Alert {
        Alert {
            text: crate::config::ALERT_TEXT.into(),
            title: None,
            badge: true,
            include_topics,
        }
    }

    /// Proves the default pushes say only the count, and topics appear only when asked.
    #[test]
    fn no_topics_by_default() {
        let apns = alert(false).apns_body(&note()).to_string();
        assert_eq!(
            apns,
            r#"{"aps":{"alert":"You have 3 new messages","badge":3}}"#
        );
        let fcm = alert(false).fcm_body("tok", &note()).to_string();
        assert!(!fcm.contains("secret"), "{fcm}");
        assert!(fcm.contains("You have 3 new messages"));
        assert!(alert(true)
            .apns_body(&note())
            .to_string()
            .contains("secret-project"));
        assert!(alert(true)
            .fcm_body("t", &note())
            .to_string()
            .contains("secret-project"));
    }
}
