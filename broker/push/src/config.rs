//! The gateway's configuration: one JSON file with MessageSight-style PascalCase attribute
//! names. Every attribute has a default except what only the operator can know (where the
//! broker is, and at least one push service). Relative file names are relative to the
//! configuration file, as the broker's are.
//!
//! ```json
//! { "MQTT": { "Host": "127.0.0.1", "Port": 1883, "UserName": "push", "Password": "..." },
//!   "APNs": { "KeyFile": "AuthKey.p8", "KeyID": "ABC123DEFG", "TeamID": "DEF123GHIJ",
//!             "Topic": "com.example.app" },
//!   "FCM": { "ServiceAccountFile": "service-account.json" },
//!   "Webhook": { "URL": "https://relay.example.com/notify" } }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::registry::Pattern;

/// The largest configuration file read, in bytes.
const CONFIG_BYTES_MAX: u64 = 1024 * 1024;
/// The default topic the broker publishes disconnected-client notifications on.
pub const NOTIFICATION_TOPIC: &str = "$SYS/DisconnectedClientNotification";
/// The default registration topic: the app of user `${UserID}` publishes its client
/// `${ClientID}`'s push token here; the broker's policies let a user publish only their own.
pub const REGISTRATION_TOPIC: &str = "APP/REGISTER/${UserID}/${ClientID}";
/// The default alert: `{count}` becomes the number of new messages. No message content.
pub const ALERT_TEXT: &str = "You have {count} new messages";
/// The longest alert or title text, in bytes (APNs allows 4 KB for the whole payload).
const TEXT_BYTES_MAX: usize = 256;

/// A configuration that cannot be used: which attribute, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is larger than {CONFIG_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{attribute}: {message}")]
    Attribute {
        attribute: &'static str,
        message: String,
    },
}

fn bad(attribute: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Attribute {
        attribute,
        message: message.into(),
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Config {
    #[serde(rename = "MQTT")]
    pub mqtt: Mqtt,
    #[serde(default = "default_notification_topic")]
    pub notification_topic: String,
    #[serde(default = "default_registration_topic")]
    pub registration_topic: String,
    /// Where the registered tokens are kept across restarts.
    #[serde(default = "default_token_file")]
    pub token_file: PathBuf,
    /// The most devices registered at once; a new one beyond it is refused (and logged).
    #[serde(default = "default_max_devices")]
    pub max_devices: usize,
    /// JSON lines of what could not be delivered.
    #[serde(default = "default_dead_letter_file")]
    pub dead_letter_file: PathBuf,
    /// When the dead-letter file passes this size it is renamed to `<name>.1` (replacing the
    /// older one) and a new one begun.
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,
    /// At most one push per device per this many seconds; notifications in between are
    /// added up and sent when the interval has passed.
    #[serde(default = "default_rate_limit_interval")]
    pub rate_limit_interval: u64,
    #[serde(default = "default_alert_text")]
    pub alert_text: String,
    #[serde(default)]
    pub alert_title: Option<String>,
    /// Set the app's badge to the number of new messages (APNs).
    #[serde(default)]
    pub badge: bool,
    /// Put the topic names and their counts into APNs and FCM pushes. Off by default: Apple
    /// and Google are third parties, and a topic name can say more than "new messages".
    #[serde(default)]
    pub include_topics: bool,
    /// Attempts per push, the first included; 429 and 5xx answers and failed connections are
    /// tried again, with an exponential backoff from RetryInitialDelay (ms) to RetryMaxDelay.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_retry_initial_delay")]
    pub retry_initial_delay: u64,
    #[serde(default = "default_retry_max_delay")]
    pub retry_max_delay: u64,
    /// One HTTP request's bound, in seconds (connect, send, and read the answer).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: u64,
    /// Pushes in flight at once; the queue behind them holds MaxQueuedNotifications.
    #[serde(default = "default_max_concurrent_pushes")]
    pub max_concurrent_pushes: usize,
    #[serde(default = "default_max_queued_notifications")]
    pub max_queued_notifications: usize,
    /// How often the counters are logged, in seconds.
    #[serde(default = "default_counters_interval")]
    pub counters_interval: u64,
    /// CA certificates (PEM) trusted for the push services besides the public roots: a
    /// private relay's, or a test's stand-ins'.
    #[serde(rename = "CAFile", default)]
    pub ca_file: Option<PathBuf>,
    #[serde(rename = "APNs", default)]
    pub apns: Option<Apns>,
    #[serde(rename = "FCM", default)]
    pub fcm: Option<Fcm>,
    #[serde(default)]
    pub webhook: Option<Webhook>,
}

/// The connection to the broker.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    #[serde(rename = "ClientID", default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// TLS to the broker, its certificate checked against CAFile (or the public roots), and
    /// its name against ServerName (default: Host).
    #[serde(rename = "TLS", default)]
    pub tls: bool,
    #[serde(rename = "CAFile", default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: u16,
    /// Reconnects wait from 1 s, doubling, up to this many seconds.
    #[serde(default = "default_reconnect_max_delay")]
    pub reconnect_max_delay: u64,
}

/// Apple's provider API, token-based authentication.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Apns {
    /// api.push.apple.com in production, api.sandbox.push.apple.com for development builds.
    #[serde(rename = "URL", default = "default_apns_url")]
    pub url: String,
    /// The .p8 signing key (PKCS#8 PEM, P-256) from the developer account.
    pub key_file: PathBuf,
    #[serde(rename = "KeyID")]
    pub key_id: String,
    #[serde(rename = "TeamID")]
    pub team_id: String,
    /// The app's bundle id (apns-topic).
    pub topic: String,
    /// apns-priority: 10 delivers at once, 5 when the phone saves power.
    #[serde(default = "default_apns_priority")]
    pub priority: u8,
}

/// Firebase Cloud Messaging HTTP v1.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Fcm {
    #[serde(rename = "URL", default = "default_fcm_url")]
    pub url: String,
    /// The service account's JSON key (project_id, client_email, private_key, token_uri).
    pub service_account_file: PathBuf,
    /// Default: the service account's project_id.
    #[serde(rename = "ProjectID", default)]
    pub project_id: Option<String>,
}

/// Anything else: the notification posted as JSON.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Webhook {
    #[serde(rename = "URL")]
    pub url: String,
}

fn default_notification_topic() -> String {
    NOTIFICATION_TOPIC.into()
}
fn default_registration_topic() -> String {
    REGISTRATION_TOPIC.into()
}
fn default_token_file() -> PathBuf {
    "tokens.json".into()
}
fn default_max_devices() -> usize {
    1_000_000
}
fn default_dead_letter_file() -> PathBuf {
    "dead-letter.jsonl".into()
}
fn default_dead_letter_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_rate_limit_interval() -> u64 {
    60
}
fn default_alert_text() -> String {
    ALERT_TEXT.into()
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_initial_delay() -> u64 {
    500
}
fn default_retry_max_delay() -> u64 {
    60_000
}
fn default_request_timeout() -> u64 {
    10
}
fn default_max_concurrent_pushes() -> usize {
    64
}
fn default_max_queued_notifications() -> usize {
    10_000
}
fn default_counters_interval() -> u64 {
    60
}
fn default_client_id() -> String {
    "ironsight-push".into()
}
fn default_keep_alive() -> u16 {
    30
}
fn default_reconnect_max_delay() -> u64 {
    60
}
fn default_apns_url() -> String {
    "https://api.push.apple.com".into()
}
fn default_apns_priority() -> u8 {
    10
}
fn default_fcm_url() -> String {
    "https://fcm.googleapis.com".into()
}

impl Config {
    /// Reads, parses and checks `path`; file names in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |error| ConfigError::Read {
            path: path.into(),
            error,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > CONFIG_BYTES_MAX {
            return Err(ConfigError::TooLarge { path: path.into() });
        }
        let text = std::fs::read(path).map_err(read)?;
        let mut config: Config =
            serde_json::from_slice(&text).map_err(|error| ConfigError::Parse {
                path: path.into(),
                error,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_files(base);
        config.check()?;
        Ok(config)
    }

    fn resolve_files(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| *p = base.join(&*p);
        join(&mut self.token_file);
        join(&mut self.dead_letter_file);
        self.ca_file.iter_mut().for_each(join);
        self.mqtt.ca_file.iter_mut().for_each(join);
        if let Some(a) = &mut self.apns {
            join(&mut a.key_file);
        }
        if let Some(f) = &mut self.fcm {
            join(&mut f.service_account_file);
        }
    }

    /// The checks serde cannot make: ranges, and that the gateway has somewhere to push.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.apns.is_none() && self.fcm.is_none() && self.webhook.is_none() {
            return Err(bad("APNs", "none of APNs, FCM and Webhook is configured"));
        }
        check_topic_name(&self.notification_topic).map_err(|m| bad("NotificationTopic", m))?;
        Pattern::parse(&self.registration_topic).map_err(|m| bad("RegistrationTopic", m))?;
        if self.mqtt.client_id.is_empty() || self.mqtt.client_id.len() > 1024 {
            return Err(bad("MQTT.ClientID", "must be 1 to 1024 bytes"));
        }
        if self.mqtt.keep_alive == 0 {
            return Err(bad("MQTT.KeepAlive", "must be at least 1 s"));
        }
        if self.mqtt.reconnect_max_delay == 0 {
            return Err(bad("MQTT.ReconnectMaxDelay", "must be at least 1 s"));
        }
        if self.max_devices == 0 {
            return Err(bad("MaxDevices", "must be at least 1"));
        }
        if !(1..=20).contains(&self.max_attempts) {
            return Err(bad("MaxAttempts", "must be 1 to 20"));
        }
        if self.retry_initial_delay == 0 || self.retry_max_delay < self.retry_initial_delay {
            return Err(bad(
                "RetryMaxDelay",
                "RetryInitialDelay must be at least 1 ms and RetryMaxDelay at least that",
            ));
        }
        if !(1..=300).contains(&self.request_timeout) {
            return Err(bad("RequestTimeout", "must be 1 to 300 s"));
        }
        if !(1..=10_000).contains(&self.max_concurrent_pushes) {
            return Err(bad("MaxConcurrentPushes", "must be 1 to 10000"));
        }
        if !(1..=1_000_000).contains(&self.max_queued_notifications) {
            return Err(bad("MaxQueuedNotifications", "must be 1 to 1000000"));
        }
        if self.counters_interval == 0 {
            return Err(bad("CountersInterval", "must be at least 1 s"));
        }
        if self.dead_letter_max_bytes < 4096 {
            return Err(bad("DeadLetterMaxBytes", "must be at least 4096"));
        }
        if self.alert_text.len() > TEXT_BYTES_MAX
            || self
                .alert_title
                .as_ref()
                .is_some_and(|t| t.len() > TEXT_BYTES_MAX)
        {
            return Err(bad(
                "AlertText",
                format!("AlertText and AlertTitle are at most {TEXT_BYTES_MAX} bytes"),
            ));
        }
        if let Some(a) = &self.apns {
            check_url(&a.url, false).map_err(|m| bad("APNs.URL", m))?;
            if !matches!(a.priority, 5 | 10) {
                return Err(bad("APNs.Priority", "must be 5 or 10"));
            }
            for (attribute, value) in [
                ("APNs.KeyID", &a.key_id),
                ("APNs.TeamID", &a.team_id),
                ("APNs.Topic", &a.topic),
            ] {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(bad(attribute, "must be printable ASCII without spaces"));
                }
            }
        }
        if let Some(f) = &self.fcm {
            check_url(&f.url, false).map_err(|m| bad("FCM.URL", m))?;
        }
        if let Some(w) = &self.webhook {
            check_url(&w.url, true).map_err(|m| bad("Webhook.URL", m))?;
        }
        Ok(())
    }

    pub fn rate_limit(&self) -> Duration {
        Duration::from_secs(self.rate_limit_interval)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout)
    }
}

/// A topic the gateway subscribes to by name: not empty, no wildcards.
fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 65_535 {
        return Err("must be 1 to 65535 bytes".into());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err("must be a topic name: no wildcards".into());
    }
    Ok(())
}

/// An absolute https URL (http too where `plain_ok`: a webhook on the same host).
fn check_url(url: &str, plain_ok: bool) -> Result<(), String> {
    let parsed: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    match parsed.scheme_str() {
        Some("https") => {}
        Some("http") if plain_ok => {}
        _ if plain_ok => return Err(format!("{url:?} is not an http or https URL")),
        _ => return Err(format!("{url:?} is not an https URL")),
    }
    if parsed.host().is_none() {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(text).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Proves a minimal file gets every default, and names its push service.
    #[test]
    fn defaults() {
        let c = parse(
            r#"{"MQTT":{"Host":"127.0.0.1","Port":1883},"Webhook":{"URL":"http://127.0.0.1:9/x"}}"#,
        )
        .unwrap();
        assert_eq!(c.notification_topic, NOTIFICATION_TOPIC);
        assert_eq!(c.registration_topic, REGISTRATION_TOPIC);
        assert_eq!(c.mqtt.client_id, "ironsight-push");
        assert_eq!(c.rate_limit(), Duration::from_secs(60));
        assert!(!c.include_topics);
        assert!(c.apns.is_none());
    }

    /// Proves the mistakes an operator makes are named by attribute.
    #[test]
    fn refusals() {
        let base = r#""MQTT":{"Host":"h","Port":1}"#;
        for (extra, attribute) in [
            ("", "none of APNs"),
            (r#","Webhook":{"URL":"ftp://x"}"#, "Webhook.URL"),
            (
                r#","FCM":{"URL":"http://x","ServiceAccountFile":"s"}"#,
                "FCM.URL",
            ),
            (
                r#","Webhook":{"URL":"http://x"},"NotificationTopic":"a/#""#,
                "NotificationTopic",
            ),
            (
                r#","Webhook":{"URL":"http://x"},"RegistrationTopic":"A/+""#,
                "RegistrationTopic",
            ),
            (
                r#","Webhook":{"URL":"http://x"},"MaxAttempts":0"#,
                "MaxAttempts",
            ),
            (
                r#","Webhook":{"URL":"http://x"},"Colour":1"#,
                "unknown field `Colour`",
            ),
        ] {
            let e = parse(&format!("{{{base}{extra}}}")).unwrap_err();
            assert!(e.contains(attribute), "{extra}: {e}");
        }
    }
}
