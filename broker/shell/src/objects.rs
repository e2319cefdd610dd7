//! What the shell knows about the broker's objects: the configuration object types (the same
//! as the configuration file's, `ironsight_config::objects`), the monitoring objects and their
//! filters (Amlen's `/ima/v1/monitor/<Object>`), and how an `Attr=Value` word becomes a JSON
//! value.
//!
//! These tables serve completion, help and the first check of a command; the admin endpoint
//! validates everything again and has the last word.

use serde_json::Value;

/// One configuration object type. `singleton` types have one unnamed object (`show Broker`,
/// `update Broker MaxInflightMessages=256`); the others are named.
#[derive(Debug, PartialEq, Eq)]
pub struct ObjectType {
    pub name: &'static str,
    pub singleton: bool,
}

const fn named(name: &'static str) -> ObjectType {
    ObjectType {
        name,
        singleton: false,
    }
}

const fn singleton(name: &'static str) -> ObjectType {
    ObjectType {
        name,
        singleton: true,
    }
}

/// The configuration object types, in the order `help` shows them. The first sixteen are the
/// configuration file's (a test checks them against `ironsight_config::Config`); the last two
/// are the admin endpoint's own (issue 11: `AdminEndpoint`, `ConfigurationPolicy`).
pub const OBJECT_TYPES: &[ObjectType] = &[
    named("Endpoint"),
    named("MessageHub"),
    named("ConnectionPolicy"),
    named("TopicPolicy"),
    named("SubscriptionPolicy"),
    named("SecurityProfile"),
    named("CertificateProfile"),
    named("TrustedCertificate"),
    named("CRLProfile"),
    named("OAuthProfile"),
    named("JWTProfile"),
    named("MessagingUser"),
    named("MessagingGroup"),
    singleton("LDAP"),
    singleton("Broker"),
    singleton("Store"),
    singleton("AdminEndpoint"),
    named("ConfigurationPolicy"),
];

/// `delete MQTTClient <ClientID>` drops a disconnected client's session: it is a service
/// call (`DELETE /ima/v1/service/MQTTClient/<ClientID>`), not a configuration object.
pub const MQTT_CLIENT: &str = "MQTTClient";

/// The type named `name`, compared without case (`show endpoint` works and is sent as
/// `Endpoint`, the spelling the API requires).
pub fn object_type(name: &str) -> Option<&'static ObjectType> {
    OBJECT_TYPES
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
}

/// One object of `stat`, with the filters Amlen documents for it (and the sort and count
/// parameters ironsight's API adds). Filters are completed from this list but not limited to
/// it: the admin endpoint refuses the ones it does not know.
#[derive(Debug, PartialEq, Eq)]
pub struct MonitorObject {
    pub name: &'static str,
    pub filters: &'static [&'static str],
}

pub const MONITOR_OBJECTS: &[MonitorObject] = &[
    MonitorObject {
        name: "Server",
        filters: &[],
    },
    MonitorObject {
        name: "Endpoint",
        filters: &["Name", "SubType", "StatType", "Duration"],
    },
    MonitorObject {
        name: "Connection",
        filters: &[
            "Endpoint",
            "ClientID",
            "UserID",
            "ClientAddress",
            "StatType",
            "SortOrder",
            "ResultCount",
        ],
    },
    MonitorObject {
        name: "Subscription",
        filters: &[
            "SubName",
            "TopicString",
            "ClientID",
            "SubType",
            "StatType",
            "SortOrder",
            "ResultCount",
        ],
    },
    MonitorObject {
        name: "MQTTClient",
        filters: &[
            "ClientID",
            "ConnectionState",
            "StatType",
            "SortOrder",
            "ResultCount",
        ],
    },
    MonitorObject {
        name: "Memory",
        filters: &["SubType", "Duration", "StatType"],
    },
];

pub fn monitor_object(name: &str) -> Option<&'static MonitorObject> {
    MONITOR_OBJECTS
        .iter()
        .find(|o| o.name.eq_ignore_ascii_case(name))
}

/// What `close connection` selects by (Amlen's `/ima/v1/service/close/connection` body).
pub const CLOSE_CONNECTION_FILTERS: &[&str] = &["ClientID", "UserID", "ClientAddress"];

/// Attributes that take true or false (from `ironsight_config`'s readers).
const BOOLEAN_ATTRIBUTES: &[&str] = &[
    "AllowDurable",
    "AllowNullPassword",
    "AllowPersistentMessages",
    "DisconnectedClientNotification",
    "EnableCache",
    "EnableDiskPersistence",
    "Enabled",
    "IgnoreCase",
    "NestedGroupSearch",
    "ProxyProtocol",
    "RequireClientCertificate",
    "RevalidateConnection",
    "TLSEnabled",
    "UseClientCertificate",
    "UseClientCipher",
    "UsePasswordAuthentication",
];

/// Attributes that are strings even when they look like a number or a boolean (a client id
/// `1234`, a description `true`); from `ironsight_config`'s readers.
const STRING_ATTRIBUTES: &[&str] = &[
    "ActionList",
    "Audience",
    "AuthKey",
    "BaseDN",
    "BindDN",
    "BindPassword",
    "CRLProfile",
    "CRLSource",
    "Certificate",
    "CertificateProfile",
    "ClientAddress",
    "ClientID",
    "CommonNames",
    "ConnectionPolicies",
    "Description",
    "DiskPersistPath",
    "GroupDelimiter",
    "GroupID",
    "GroupIDClaim",
    "GroupIdMap",
    "GroupInfoKey",
    "GroupMemberIdMap",
    "GroupMembership",
    "GroupSuffix",
    "Interface",
    "Issuer",
    "JWTProfile",
    "Key",
    "KeyFileName",
    "MaxMessageTimeToLive",
    "MessageHub",
    "MinimumProtocolMethod",
    "OAuthProfile",
    "Password",
    "Protocol",
    "ResourceURL",
    "SecurityProfile",
    "SecurityProfileName",
    "Subscription",
    "SubscriptionPolicies",
    "Topic",
    "TopicPolicies",
    "Transports",
    "TrustedCertificate",
    "URL",
    "UserID",
    "UserIDClaim",
    "UserIdMap",
    "UserInfoKey",
    "UserInfoURL",
    "UserName",
    "UserPassword",
    "UserSuffix",
];

/// An attribute name: a letter, then letters, digits and underscores (MessageSight's names).
pub fn is_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The JSON value an `Attr=Value` word stands for:
/// - a boolean attribute takes `true` or `false` (any case) and nothing else;
/// - a quoted value, or the value of a string attribute, is a string;
/// - otherwise an unquoted `true`/`false` is a boolean, an unquoted integer a number, and
///   anything else a string (sizes such as `4096KB` included).
pub fn typed_value(attribute: &str, value: &str, quoted: bool) -> Result<Value, String> {
    if BOOLEAN_ATTRIBUTES.contains(&attribute) {
        return parse_bool(value)
            .map(Value::Bool)
            .ok_or_else(|| format!("{attribute} takes true or false, not \"{value}\""));
    }
    if quoted || STRING_ATTRIBUTES.contains(&attribute) {
        return Ok(Value::String(value.to_string()));
    }
    if let Some(b) = parse_bool(value) {
        return Ok(Value::Bool(b));
    }
    if let Ok(n) = value.parse::<i64>() {
        return Ok(Value::from(n));
    }
    Ok(Value::String(value.to_string()))
}

fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_typed_by_attribute_then_by_look() {
        assert_eq!(typed_value("Enabled", "TRUE", false), Ok(json!(true)));
        assert_eq!(typed_value("Enabled", "false", true), Ok(json!(false)));
        assert_eq!(
            typed_value("Enabled", "yes", false),
            Err("Enabled takes true or false, not \"yes\"".to_string())
        );
        assert_eq!(typed_value("Port", "1883", false), Ok(json!(1883)));
        assert_eq!(typed_value("Port", "1883", true), Ok(json!("1883")));
        assert_eq!(
            typed_value("MaxMessageSize", "4096KB", false),
            Ok(json!("4096KB"))
        );
        assert_eq!(typed_value("ClientID", "1234", false), Ok(json!("1234")));
        assert_eq!(typed_value("Description", "true", false), Ok(json!("true")));
        assert_eq!(typed_value("SomeNewFlag", "true", false), Ok(json!(true)));
        assert_eq!(typed_value("Topic", "", false), Ok(json!("")));
        // Beyond i64 it stays text; the API says what it wants.
        assert_eq!(
            typed_value("Port", "99999999999999999999", false),
            Ok(json!("99999999999999999999"))
        );
    }

    #[test]
    fn attribute_names_are_identifiers() {
        assert!(is_attribute_name("MaxMessages"));
        assert!(is_attribute_name("A_1"));
        assert!(!is_attribute_name(""));
        assert!(!is_attribute_name("1A"));
        assert!(!is_attribute_name("a-b"));
        assert!(!is_attribute_name("a/b"));
    }

    #[test]
    fn types_are_found_without_case() {
        assert_eq!(object_type("endpoint").map(|t| t.name), Some("Endpoint"));
        assert_eq!(object_type("ldap").map(|t| t.singleton), Some(true));
        assert!(object_type("Endpiont").is_none());
        assert_eq!(
            monitor_object("connection").map(|o| o.name),
            Some("Connection")
        );
        assert!(monitor_object("Topic").is_none());
    }

    /// Drift check: every object type the configuration file holds is one the shell can show,
    /// with the same singleton-ness (an object in the file is a map of names, or one object).
    #[test]
    fn every_configuration_object_type_is_known() {
        let config = ironsight_config::Config::builtin();
        let file = serde_json::to_value(&config).expect("a configuration serializes");
        let Value::Object(types) = file else {
            panic!("the configuration is an object")
        };
        // LDAP is left out of a configuration without it; it is the shell's singleton.
        assert!(object_type("LDAP").is_some_and(|t| t.singleton));
        for (name, value) in &types {
            let known = object_type(name).unwrap_or_else(|| panic!("{name} is unknown"));
            assert_eq!(known.name, name, "spelling of {name}");
            // A named type serializes as a map of names to objects, which may be empty; the
            // file's singletons are these two.
            let is_singleton = matches!(name.as_str(), "Broker" | "Store");
            assert_eq!(known.singleton, is_singleton, "{name}");
            assert!(value.is_object() || value.is_array(), "{name}");
        }
        assert!(types.len() >= 15, "{types:?}");
    }
}
