//! ironsight's configuration: MessageSight's object model as JSON, the same objects in a
//! configuration file and (later) in the REST administration API.
//!
//! ```json
//! { "Endpoint": { "DemoEndpoint": { "Port": 1883, "MessageHub": "DemoHub", ... } },
//!   "MessageHub": { "DemoHub": {} }, "ConnectionPolicy": {...}, "TopicPolicy": {...},
//!   "Broker": { "MaxInflightMessages": 128 } }
//! ```
//!
//! # Layout
//! - [`objects`]: the object types and their attributes, with MessageSight's names and defaults.
//! - `fields`: typed attribute reading; every error names object type, object and attribute.
//! - [`users`]: the users file (`MessagingUser`, `MessagingGroup`) and its SCRAM verifiers.
//! - [`ldap`]: the `LDAP` object (the directory for password authentication and groups).
//! - [`resolve`]: turns a checked configuration into the core's settings and the listeners.
//! - [`tokens`]: OAuthProfile and JWTProfile, how a SecurityProfile checks a token password.
//! - [`admin`]: AdminEndpoint, ConfigurationPolicy and the administrator's credentials.
//! - [`document`]: the configuration as a JSON document: its object types and their shapes,
//!   and a change (the REST API's POST and DELETE) merged into it before it is checked whole.
//!
//! Invariant: a [`Config`] that parsed is consistent (every reference resolves, every value is in
//! range), so resolving it cannot fail.

pub mod admin;
pub mod document;
mod fields;
pub mod ldap;
pub mod objects;
pub mod resolve;
pub mod tokens;
pub mod users;

use std::fmt;

pub use objects::Config;
pub use resolve::{Listener, ListenerOverride};

/// A configuration refused, with the object and attribute at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub object: String,
    pub name: Option<String>,
    pub attribute: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn document(message: impl Into<String>) -> Self {
        ConfigError {
            object: "configuration".into(),
            name: None,
            attribute: None,
            message: message.into(),
        }
    }

    pub(crate) fn object(object: &str, name: &str, message: impl Into<String>) -> Self {
        ConfigError {
            object: object.into(),
            name: Some(name.into()),
            attribute: None,
            message: message.into(),
        }
    }

    pub fn attribute(
        object: &str,
        name: &str,
        attribute: &str,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            object: object.into(),
            name: Some(name.into()),
            attribute: Some(attribute.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.object)?;
        if let Some(name) = &self.name {
            write!(f, " \"{name}\"")?;
        }
        if let Some(attribute) = &self.attribute {
            write!(f, ", attribute {attribute}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The configuration built into the binary: the demo endpoint on port 1883 for anonymous
/// clients, as MessageSight's DemoEndpoint.
pub const DEFAULT_CONFIG: &str = include_str!("default.json");

impl Config {
    pub fn builtin() -> Config {
        Config::parse(DEFAULT_CONFIG).expect("the built-in configuration is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_config_is_the_demo_endpoint() {
        let config = Config::builtin();
        let listeners = config.listeners(&[]).unwrap();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].addr.to_string(), "[::]:1883");
        assert_eq!(listeners[0].endpoint, 0);
        let settings = config.settings();
        assert_eq!(settings.endpoints[0].name, "DemoEndpoint");
        assert_eq!(settings.endpoints[0].packet_size_max, 4096 * 1024);
        assert_eq!(
            settings.endpoints[0].topic_rules[0].queue_messages_max,
            5000
        );
    }

    #[test]
    fn errors_name_object_and_attribute() {
        let error = ConfigError::attribute(
            "Endpoint",
            "E1",
            "Port",
            "must be an integer from 1 to 65535",
        );
        assert_eq!(
            error.to_string(),
            "Endpoint \"E1\", attribute Port: must be an integer from 1 to 65535"
        );
    }
}
