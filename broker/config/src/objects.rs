//! The configuration objects, with MessageSight's (Eclipse Amlen's) attribute names, types and
//! defaults. Attributes MessageSight has and ironsight does not implement yet are refused by
//! name rather than accepted and ignored.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::fields::{kind, Fields};
use crate::ConfigError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageHub {
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    pub description: String,
    pub enabled: bool,
    pub port: u16,
    /// `All` (every IPv4 address), `*`, or one IPv4/IPv6 address.
    pub interface: String,
    pub protocol: String,
    pub message_hub: String,
    /// Names, in the order they are tried.
    #[serde(serialize_with = "comma_list")]
    pub connection_policies: Vec<String>,
    #[serde(serialize_with = "comma_list")]
    pub topic_policies: Vec<String>,
    /// Bytes (shown as MessageSight writes it, e.g. "4096KB").
    #[serde(serialize_with = "size_text")]
    pub max_message_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionPolicy {
    pub description: String,
    /// Client ids this policy admits: exact, or a prefix ending in `*`; `*` admits all.
    #[serde(rename = "ClientID")]
    pub client_id: String,
    pub protocol: String,
    /// Whether clients may keep sessions (clean session 0, or a session expiry interval).
    pub allow_durable: bool,
    /// Whether clients may publish at QoS 1 and 2.
    pub allow_persistent_messages: bool,
    /// Seconds; `None` is no maximum.
    pub max_session_expiry_interval: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MaxMessagesBehavior {
    RejectNewMessages,
    DiscardOldMessages,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TopicPolicy {
    pub description: String,
    /// Topic pattern: `*` matches any characters, `/` included.
    pub topic: String,
    #[serde(rename = "ClientID")]
    pub client_id: String,
    pub protocol: String,
    pub action_list: String,
    pub max_messages: u32,
    pub max_messages_behavior: MaxMessagesBehavior,
    /// Seconds, or `None` for MessageSight's "unlimited".
    #[serde(serialize_with = "ttl_text")]
    pub max_message_time_to_live: Option<u32>,
}

/// ironsight's broker-wide MQTT limits (MessageSight kept these in its static server.cfg).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Broker {
    pub max_inflight_messages: u16,
    pub max_topic_aliases: u16,
    pub max_outbound_topic_aliases: u16,
    /// Seconds imposed on v5 clients; 0 keeps the client's keep alive.
    pub server_keep_alive: u16,
    pub max_subscriptions_per_session: u32,
    #[serde(rename = "MaxClientIDLength")]
    pub max_client_id_length: u32,
    pub max_topic_levels: u32,
    pub max_send_buffer_size: u64,
    pub connect_timeout: u16,
    pub max_retained_messages: u32,
    pub max_sessions_per_core: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    #[serde(rename = "MessageHub")]
    pub message_hubs: BTreeMap<String, MessageHub>,
    #[serde(rename = "Endpoint")]
    pub endpoints: BTreeMap<String, Endpoint>,
    #[serde(rename = "ConnectionPolicy")]
    pub connection_policies: BTreeMap<String, ConnectionPolicy>,
    #[serde(rename = "TopicPolicy")]
    pub topic_policies: BTreeMap<String, TopicPolicy>,
    #[serde(rename = "Broker")]
    pub broker: Broker,
}

/// Attributes MessageSight defines that ironsight does not implement yet; naming them is refused
/// rather than silently ignored.
const NOT_YET: &[(&str, &str)] = &[
    ("Endpoint", "SecurityProfile"),
    ("Endpoint", "SubscriptionPolicies"),
    ("Endpoint", "QueuePolicies"),
    ("ConnectionPolicy", "UserID"),
    ("ConnectionPolicy", "GroupID"),
    ("ConnectionPolicy", "CommonNames"),
    ("ConnectionPolicy", "ClientAddress"),
    ("TopicPolicy", "UserID"),
    ("TopicPolicy", "GroupID"),
    ("TopicPolicy", "CommonNames"),
    ("TopicPolicy", "ClientAddress"),
    ("TopicPolicy", "DisconnectedClientNotification"),
];

fn refuse_not_yet(object: &'static str, name: &str, value: &Value) -> Result<(), ConfigError> {
    let Value::Object(attrs) = value else {
        return Ok(());
    };
    for (o, attribute) in NOT_YET {
        if *o == object
            && attrs
                .get(*attribute)
                .is_some_and(|v| !v.is_null() && v != "")
        {
            return Err(ConfigError::attribute(
                object,
                name,
                attribute,
                "is not supported by this version of ironsight",
            ));
        }
    }
    Ok(())
}

fn names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn check_protocol(fields: &Fields, protocol: &str) -> Result<(), ConfigError> {
    let ok = names(protocol)
        .iter()
        .all(|p| p.eq_ignore_ascii_case("MQTT") || p.eq_ignore_ascii_case("All"));
    if !ok {
        return Err(fields.error(
            "Protocol",
            format!("ironsight speaks MQTT only; \"{protocol}\" names another protocol"),
        ));
    }
    Ok(())
}

impl MessageHub {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("MessageHub", name, value)?;
        let hub = MessageHub {
            description: f.string("Description", "")?,
        };
        f.finish()?;
        Ok(hub)
    }
}

impl Endpoint {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        refuse_not_yet("Endpoint", name, value)?;
        let mut f = Fields::new("Endpoint", name, value)?;
        let endpoint = Endpoint {
            description: f.string("Description", "")?,
            enabled: f.boolean("Enabled", true)?,
            port: f
                .integer("Port", None, 1, 65535)?
                .ok_or_else(|| f.error("Port", "is required"))? as u16,
            interface: f.string("Interface", "All")?,
            protocol: f.string("Protocol", "MQTT")?,
            message_hub: f.required_string("MessageHub")?,
            connection_policies: names(&f.required_string("ConnectionPolicies")?),
            topic_policies: names(&f.required_string("TopicPolicies")?),
            max_message_size: f.size("MaxMessageSize", 4096 * 1024, 1024, 256 * 1024 * 1024)?,
        };
        check_protocol(&f, &endpoint.protocol)?;
        crate::resolve::interface_addr(&endpoint.interface).map_err(|m| f.error("Interface", m))?;
        f.finish()?;
        Ok(endpoint)
    }
}

fn check_id_filter(f: &Fields, attribute: &str, filter: &str) -> Result<(), ConfigError> {
    let stars = filter.matches('*').count();
    if stars > 1 || (stars == 1 && !filter.ends_with('*')) {
        return Err(f.error(attribute, "may hold one '*', as its last character"));
    }
    Ok(())
}

impl ConnectionPolicy {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        refuse_not_yet("ConnectionPolicy", name, value)?;
        let mut f = Fields::new("ConnectionPolicy", name, value)?;
        let max = u64::from(u32::MAX - 1);
        // Amlen's schema spells it MaxSessionExpiryInterval, its documentation MaximumSessionExpiryInterval.
        let expiry = match f.integer("MaxSessionExpiryInterval", None, 0, max)? {
            Some(v) => Some(v),
            None => f.integer("MaximumSessionExpiryInterval", None, 0, max)?,
        };
        let policy = ConnectionPolicy {
            description: f.string("Description", "")?,
            client_id: f.required_string("ClientID")?,
            protocol: f.string("Protocol", "")?,
            allow_durable: f.boolean("AllowDurable", true)?,
            allow_persistent_messages: f.boolean("AllowPersistentMessages", true)?,
            max_session_expiry_interval: expiry.map(|v| v as u32),
        };
        check_id_filter(&f, "ClientID", &policy.client_id)?;
        check_protocol(&f, &policy.protocol)?;
        f.finish()?;
        Ok(policy)
    }
}

impl TopicPolicy {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        refuse_not_yet("TopicPolicy", name, value)?;
        let mut f = Fields::new("TopicPolicy", name, value)?;
        let behavior = match f.choice(
            "MaxMessagesBehavior",
            "RejectNewMessages",
            &["RejectNewMessages", "DiscardOldMessages"],
        )? {
            "DiscardOldMessages" => MaxMessagesBehavior::DiscardOldMessages,
            _ => MaxMessagesBehavior::RejectNewMessages,
        };
        let ttl = f.string("MaxMessageTimeToLive", "unlimited")?;
        let max_message_time_to_live = if ttl.trim().eq_ignore_ascii_case("unlimited") {
            None
        } else {
            match ttl.trim().parse::<u32>() {
                Ok(v) if (1..=2_147_483_647).contains(&v) => Some(v),
                _ => {
                    return Err(f.error(
                        "MaxMessageTimeToLive",
                        "must be \"unlimited\" or seconds from 1 to 2147483647",
                    ))
                }
            }
        };
        let policy = TopicPolicy {
            description: f.string("Description", "")?,
            topic: f.required_string("Topic")?,
            client_id: f.string("ClientID", "*")?,
            protocol: f.string("Protocol", "")?,
            action_list: f.required_string("ActionList")?,
            max_messages: f
                .integer("MaxMessages", Some(5000), 1, 20_000_000)?
                .expect("has a default") as u32,
            max_messages_behavior: behavior,
            max_message_time_to_live,
        };
        for action in names(&policy.action_list) {
            if !["Publish", "Subscribe"]
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&action))
            {
                return Err(f.error(
                    "ActionList",
                    format!("must list Publish and/or Subscribe, got \"{action}\""),
                ));
            }
        }
        check_id_filter(&f, "ClientID", &policy.client_id)?;
        check_protocol(&f, &policy.protocol)?;
        ironsight_core::policy::TopicPattern::parse(&policy.topic)
            .map_err(|e| f.error("Topic", e.0))?;
        f.finish()?;
        Ok(policy)
    }

    pub fn allows(&self, action: &str) -> bool {
        names(&self.action_list)
            .iter()
            .any(|a| a.eq_ignore_ascii_case(action))
    }
}

impl Broker {
    fn parse(value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("Broker", "Broker", value)?;
        let broker = Broker {
            max_inflight_messages: f
                .integer("MaxInflightMessages", Some(128), 1, 65535)?
                .expect("default") as u16,
            max_topic_aliases: f
                .integer("MaxTopicAliases", Some(16), 0, 65535)?
                .expect("default") as u16,
            max_outbound_topic_aliases: f
                .integer("MaxOutboundTopicAliases", Some(64), 0, 65535)?
                .expect("default") as u16,
            server_keep_alive: f
                .integer("ServerKeepAlive", Some(0), 0, 65535)?
                .expect("default") as u16,
            max_subscriptions_per_session: f
                .integer("MaxSubscriptionsPerSession", Some(1000), 1, 1_000_000)?
                .expect("default") as u32,
            max_client_id_length: f
                .integer("MaxClientIDLength", Some(1023), 23, 65535)?
                .expect("default") as u32,
            max_topic_levels: f
                .integer("MaxTopicLevels", Some(32), 1, 1024)?
                .expect("default") as u32,
            max_send_buffer_size: f.size("MaxSendBufferSize", 256 * 1024, 4096, 1 << 30)?,
            connect_timeout: f
                .integer("ConnectTimeout", Some(10), 1, 3600)?
                .expect("default") as u16,
            max_retained_messages: f
                .integer(
                    "MaxRetainedMessages",
                    Some(1_000_000),
                    0,
                    u64::from(u32::MAX),
                )?
                .expect("default") as u32,
            max_sessions_per_core: f
                .integer(
                    "MaxSessionsPerCore",
                    Some(2_000_000),
                    1,
                    u64::from(u32::MAX),
                )?
                .expect("default") as u32,
        };
        f.finish()?;
        Ok(broker)
    }
}

fn named<T>(
    doc: &mut serde_json::Map<String, Value>,
    object: &'static str,
    parse: impl Fn(&str, &Value) -> Result<T, ConfigError>,
) -> Result<BTreeMap<String, T>, ConfigError> {
    let Some(value) = doc.remove(object) else {
        return Ok(BTreeMap::new());
    };
    let Value::Object(objects) = value else {
        return Err(ConfigError::document(format!(
            "{object} must be an object of named {object} objects, got {}",
            kind(&value)
        )));
    };
    objects
        .iter()
        .map(|(name, v)| Ok((name.clone(), parse(name, v)?)))
        .collect()
}

impl Config {
    /// Parses and checks a configuration document.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::document(format!("not valid JSON: {e}")))?;
        let Value::Object(mut doc) = value else {
            return Err(ConfigError::document(
                "must be a JSON object of configuration objects",
            ));
        };
        let config = Config {
            message_hubs: named(&mut doc, "MessageHub", MessageHub::parse)?,
            endpoints: named(&mut doc, "Endpoint", Endpoint::parse)?,
            connection_policies: named(&mut doc, "ConnectionPolicy", ConnectionPolicy::parse)?,
            topic_policies: named(&mut doc, "TopicPolicy", TopicPolicy::parse)?,
            broker: Broker::parse(
                &doc.remove("Broker")
                    .unwrap_or(Value::Object(Default::default())),
            )?,
        };
        if let Some(unknown) = doc.keys().next() {
            return Err(ConfigError::document(format!(
                "unknown object type \"{unknown}\""
            )));
        }
        config.check_references()?;
        Ok(config)
    }

    fn check_references(&self) -> Result<(), ConfigError> {
        if !self.endpoints.values().any(|e| e.enabled) {
            return Err(ConfigError::document(
                "no enabled Endpoint: the broker would accept no connection",
            ));
        }
        for (name, e) in &self.endpoints {
            let missing = |attribute: &str, kind: &str, target: &str| {
                ConfigError::attribute(
                    "Endpoint",
                    name,
                    attribute,
                    format!("names {kind} \"{target}\", which does not exist"),
                )
            };
            if !self.message_hubs.contains_key(&e.message_hub) {
                return Err(missing("MessageHub", "MessageHub", &e.message_hub));
            }
            for p in &e.connection_policies {
                if !self.connection_policies.contains_key(p) {
                    return Err(missing("ConnectionPolicies", "ConnectionPolicy", p));
                }
            }
            for p in &e.topic_policies {
                if !self.topic_policies.contains_key(p) {
                    return Err(missing("TopicPolicies", "TopicPolicy", p));
                }
            }
        }
        Ok(())
    }
}

fn comma_list<S: serde::Serializer>(list: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&list.join(","))
}

fn size_text<S: serde::Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        b if b % (1024 * 1024) == 0 => s.serialize_str(&format!("{}MB", b / (1024 * 1024))),
        b if b % 1024 == 0 => s.serialize_str(&format!("{}KB", b / 1024)),
        b => s.serialize_str(&b.to_string()),
    }
}

fn ttl_text<S: serde::Serializer>(ttl: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match ttl {
        None => s.serialize_str("unlimited"),
        Some(v) => s.serialize_str(&v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(object: &str, name: &str, attrs: Value) -> String {
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        let slot = &mut doc[object][name];
        for (k, v) in attrs.as_object().unwrap() {
            slot[k] = v.clone();
        }
        doc.to_string()
    }

    fn error(object: &str, name: &str, attrs: Value) -> String {
        Config::parse(&with(object, name, attrs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_values_name_the_object_and_attribute() {
        let e = error(
            "Endpoint",
            "DemoEndpoint",
            serde_json::json!({"Port": 70000}),
        );
        assert_eq!(
            e,
            "Endpoint \"DemoEndpoint\", attribute Port: must be an integer from 1 to 65535"
        );
        let e = error(
            "Endpoint",
            "DemoEndpoint",
            serde_json::json!({"MaxMessageSize": "4 K"}),
        );
        assert!(
            e.starts_with("Endpoint \"DemoEndpoint\", attribute MaxMessageSize:"),
            "{e}"
        );
        let e = error(
            "TopicPolicy",
            "DemoTopicPolicy",
            serde_json::json!({"MaxMessagesBehavior": "DropAll"}),
        );
        assert!(
            e.starts_with(
                "TopicPolicy \"DemoTopicPolicy\", attribute MaxMessagesBehavior: must be one of"
            ),
            "{e}"
        );
        let e = error("Endpoint", "DemoEndpoint", serde_json::json!({"Prot": 1}));
        assert_eq!(
            e,
            "Endpoint \"DemoEndpoint\", attribute Prot: is not an attribute of this object"
        );
        let e = error(
            "Endpoint",
            "DemoEndpoint",
            serde_json::json!({"Interface": "localhost"}),
        );
        assert!(
            e.starts_with("Endpoint \"DemoEndpoint\", attribute Interface:"),
            "{e}"
        );
    }

    #[test]
    fn dangling_references_are_refused() {
        let e = error(
            "Endpoint",
            "DemoEndpoint",
            serde_json::json!({"TopicPolicies": "Nope"}),
        );
        assert_eq!(e, "Endpoint \"DemoEndpoint\", attribute TopicPolicies: names TopicPolicy \"Nope\", which does not exist");
    }

    #[test]
    fn unimplemented_attributes_are_refused_by_name() {
        let e = error(
            "ConnectionPolicy",
            "DemoConnectionPolicy",
            serde_json::json!({"UserID": "bob"}),
        );
        assert_eq!(e, "ConnectionPolicy \"DemoConnectionPolicy\", attribute UserID: is not supported by this version of ironsight");
    }

    #[test]
    fn both_spellings_of_the_session_expiry_cap_work() {
        for attribute in ["MaxSessionExpiryInterval", "MaximumSessionExpiryInterval"] {
            let text = with(
                "ConnectionPolicy",
                "DemoConnectionPolicy",
                serde_json::json!({attribute: 60}),
            );
            let config = Config::parse(&text).unwrap();
            assert_eq!(
                config.connection_policies["DemoConnectionPolicy"].max_session_expiry_interval,
                Some(60)
            );
        }
    }

    #[test]
    fn sizes_are_shown_as_messagesight_writes_them() {
        let config = Config::builtin();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["Endpoint"]["DemoEndpoint"]["MaxMessageSize"], "4MB");
        assert_eq!(
            json["TopicPolicy"]["DemoTopicPolicy"]["MaxMessageTimeToLive"],
            "unlimited"
        );
        assert_eq!(
            json["Endpoint"]["DemoEndpoint"]["ConnectionPolicies"],
            "DemoConnectionPolicy"
        );
    }

    #[test]
    fn non_json_and_unknown_types_are_refused() {
        assert!(Config::parse("{")
            .unwrap_err()
            .to_string()
            .starts_with("configuration: not valid JSON"));
        let e = Config::parse(r#"{"Endpont": {}}"#).unwrap_err().to_string();
        assert_eq!(e, "configuration: unknown object type \"Endpont\"");
    }
}
