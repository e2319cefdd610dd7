//! One push through its service, attempted again on 429, 5xx and failed connections with an
//! exponential backoff (or the service's Retry-After), at most `MaxAttempts` times.

use std::time::Duration;

use crate::apns::Apns;
use crate::config::Config;
use crate::fcm::Fcm;
use crate::registry::Platform;
use crate::service::{Alert, Outcome, Push};
use crate::webhook::Webhook;

/// The configured services, and how pushes through them are attempted.
pub struct Services {
    pub apns: Option<Apns>,
    pub fcm: Option<Fcm>,
    pub webhook: Option<Webhook>,
    pub alert: Alert,
    pub retry: Retry,
}

/// Attempts and backoff.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts_max: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Retry {
    pub fn from_config(c: &Config) -> Retry {
        Retry {
            attempts_max: c.max_attempts,
            initial: Duration::from_millis(c.retry_initial_delay),
            max: Duration::from_millis(c.retry_max_delay),
        }
    }

    /// The wait after attempt `attempt` (1-based): initial, doubled each time, at most max.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

impl Services {
    /// One attempt through the device's service.
    async fn attempt(&self, push: &Push) -> Outcome {
        let missing = |name| Outcome::Failed(format!("no {name} is configured"));
        match push.device.platform {
            Platform::Apns => match &self.apns {
                Some(s) => s.push(push, &self.alert).await,
                None => missing("APNs"),
            },
            Platform::Fcm => match &self.fcm {
                Some(s) => s.push(push, &self.alert).await,
                None => missing("FCM"),
            },
            Platform::Webhook => match &self.webhook {
                Some(s) => s.push(push, &self.alert).await,
                None => missing("Webhook"),
            },
        }
    }

    /// Attempts `push` until it is sent, refused for good, or the attempts run out; returns
    /// the last outcome (a `Retry` only when the attempts ran out) and the attempts made.
    pub async fn deliver(&self, push: &Push) -> (Outcome, u32) {
        let mut attempt = 1;
        loop {
            let outcome = self.attempt(push).await;
            let Outcome::Retry { reason, after } = &outcome else {
                return (outcome, attempt);
            };
            if attempt >= self.retry.attempts_max {
                return (outcome, attempt);
            }
            let wait = after.unwrap_or_else(|| self.retry.backoff(attempt));
            tracing::debug!(client_id = %push.client_id, attempt, %reason, ?wait, "push to be tried again");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the backoff doubles from its start and stops at its bound.
    #[test]
    fn backoff_doubles_to_its_bound() {
        let r = Retry {
            attempts_max: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(700),
        };
        let waits: Vec<u128> = (1..=5).map(|a| r.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700]);
        assert_eq!(r.backoff(u32::MAX), Duration::from_millis(700));
    }
}
