//! Who administers the broker, and where: Amlen's `AdminEndpoint` (the REST API's socket),
//! its `ConfigurationPolicy` objects (who may do what), and the `AdminUserID` and
//! `AdminUserPassword` singletons (the administrator's credentials).
//!
//! ```json
//! { "AdminEndpoint": { "Port": 9089, "Interface": "127.0.0.1", "ConfigurationPolicies": "Ops" },
//!   "ConfigurationPolicy": { "Ops": { "ClientAddress": "127.0.0.1", "ActionList": "View,Monitor" } },
//!   "AdminUserID": "admin",
//!   "AdminUserPassword": "SCRAM-SHA-256$4096:...$...:..." }
//! ```
//!
//! Secure by default, unlike MessageSight's first boot: the endpoint listens on 127.0.0.1
//! unless told otherwise, and the password is kept only as a SCRAM-SHA-256 verifier (the
//! users file's hash, `users::ScramVerifier`); a clear-text password is refused. Without a
//! password every request is refused.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::fields::{kind, Fields};
use crate::objects::{
    check_actions, comma_list, lists, named, names, PolicyFilters, MESSAGING_FILTERS,
};
use crate::users::{ScramVerifier, ID_LEN_MAX};
use crate::{resolve, Config, ConfigError};

/// Amlen's admin port.
pub const PORT_DEFAULT: u16 = 9089;
/// Loopback only until an operator decides otherwise (MessageSight listened on every address).
pub const INTERFACE_DEFAULT: &str = "127.0.0.1";
/// Amlen's administrator's user id.
pub const USER_ID_DEFAULT: &str = "admin";

/// What a request to the REST API does, as a ConfigurationPolicy's ActionList names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Change the configuration (POST and DELETE `/ima/v1/configuration`).
    Configure,
    /// Read the configuration.
    View,
    /// Read statistics (`/ima/v1/monitor`, `/metrics`).
    Monitor,
    /// Run the service: stop, restart, close connections, delete sessions.
    Manage,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Configure,
        Action::View,
        Action::Monitor,
        Action::Manage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Configure => "Configure",
            Action::View => "View",
            Action::Monitor => "Monitor",
            Action::Manage => "Manage",
        }
    }
}

/// The REST API's socket (a singleton).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdminEndpoint {
    pub description: String,
    pub enabled: bool,
    pub port: u16,
    /// One IP address, or `All`/`*` for every address.
    pub interface: String,
    /// A SecurityProfile with TLSEnabled: the API speaks HTTPS with its certificate. Empty: plain
    /// HTTP, which sends the password in every request: keep such an endpoint on loopback.
    pub security_profile: String,
    /// Tried in order; the first whose filters match the request and whose ActionList holds its
    /// action lets it through. None listed: the administrator may do everything.
    #[serde(serialize_with = "comma_list")]
    pub configuration_policies: Vec<String>,
}

impl AdminEndpoint {
    /// Where it listens (its Interface was checked when parsed).
    pub fn addr(&self) -> std::net::SocketAddr {
        let ip = resolve::interface_addr(&self.interface).expect("checked when parsed");
        std::net::SocketAddr::new(ip, self.port)
    }

    fn parse(value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("AdminEndpoint", "AdminEndpoint", value)?;
        let endpoint = AdminEndpoint {
            description: f.string("Description", "")?,
            enabled: f.boolean("Enabled", true)?,
            port: f
                .integer("Port", Some(u64::from(PORT_DEFAULT)), 1, 65535)?
                .expect("has a default") as u16,
            interface: f.string("Interface", INTERFACE_DEFAULT)?,
            security_profile: f.string("SecurityProfile", "")?,
            configuration_policies: names(&f.string("ConfigurationPolicies", "")?),
        };
        resolve::interface_addr(&endpoint.interface).map_err(|m| f.error("Interface", m))?;
        f.finish()?;
        Ok(endpoint)
    }
}

/// Which administrators may do what (Amlen's ConfigurationPolicy): filters on the request's
/// user and address, and the actions allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigurationPolicy {
    pub description: String,
    /// ClientAddress, UserID and GroupID only.
    #[serde(flatten)]
    pub filters: PolicyFilters,
    pub action_list: String,
}

impl ConfigurationPolicy {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("ConfigurationPolicy", name, value)?;
        let filters = PolicyFilters::parse(&mut f, MESSAGING_FILTERS)?;
        for (attribute, given) in [
            ("ClientID", &filters.client_id),
            ("Protocol", &filters.protocol),
        ] {
            if !given.trim().is_empty() {
                return Err(f.error(attribute, crate::objects::UNKNOWN_ATTRIBUTE));
            }
        }
        if !filters.common_names.trim().is_empty() {
            return Err(f.error(
                "CommonNames",
                "is not supported by this version of ironsight: the admin endpoint does not ask for client certificates",
            ));
        }
        let given = [&filters.client_address, &filters.user_id, &filters.group_id];
        if given.iter().all(|v| v.trim().is_empty()) {
            return Err(ConfigError::object(
                "ConfigurationPolicy",
                name,
                "needs at least one filter: ClientAddress, UserID or GroupID",
            ));
        }
        let policy = ConfigurationPolicy {
            description: f.string("Description", "")?,
            filters,
            action_list: f.required_string("ActionList")?,
        };
        let actions = Action::ALL.map(Action::name);
        check_actions(&f, &policy.action_list, &actions)?;
        f.finish()?;
        Ok(policy)
    }

    pub fn allows(&self, action: Action) -> bool {
        lists(&self.action_list, action.name())
    }
}

/// The administration objects of a configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Admin {
    /// `None`: the configuration has no AdminEndpoint, and the broker no REST API.
    #[serde(rename = "AdminEndpoint", skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<AdminEndpoint>,
    #[serde(rename = "ConfigurationPolicy")]
    pub policies: BTreeMap<String, ConfigurationPolicy>,
    #[serde(rename = "AdminUserID")]
    pub user_id: String,
    /// `None` until one is set (`ironsight --set-admin-password`): every request is refused.
    #[serde(rename = "AdminUserPassword", skip_serializing_if = "Option::is_none")]
    pub password: Option<ScramVerifier>,
}

impl Admin {
    /// Takes the administration objects out of a configuration document.
    pub(crate) fn parse(doc: &mut Map<String, Value>) -> Result<Admin, ConfigError> {
        let endpoint = doc
            .remove("AdminEndpoint")
            .map(|v| AdminEndpoint::parse(&v))
            .transpose()?;
        let policies = named(doc, "ConfigurationPolicy", ConfigurationPolicy::parse)?;
        let user_id = match doc.remove("AdminUserID") {
            None | Some(Value::Null) => USER_ID_DEFAULT.to_string(),
            Some(Value::String(id)) if !id.trim().is_empty() && id.len() <= ID_LEN_MAX => id,
            Some(Value::String(_)) => {
                return Err(singleton_error(
                    "AdminUserID",
                    format!("must be a user id of 1 to {ID_LEN_MAX} bytes"),
                ))
            }
            Some(other) => {
                return Err(singleton_error(
                    "AdminUserID",
                    format!("must be a string, got {}", kind(&other)),
                ))
            }
        };
        let password = match doc.remove("AdminUserPassword") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.parse::<ScramVerifier>().map_err(|m| {
                singleton_error(
                    "AdminUserPassword",
                    format!("{m}; make one with `ironsight --config FILE --set-admin-password`"),
                )
            })?),
            Some(other) => {
                return Err(singleton_error(
                    "AdminUserPassword",
                    format!("must be a string, got {}", kind(&other)),
                ))
            }
        };
        Ok(Admin {
            endpoint,
            policies,
            user_id,
            password,
        })
    }
}

/// An error in a singleton that is a value, not an object: it has no name or attributes.
fn singleton_error(object: &str, message: String) -> ConfigError {
    ConfigError {
        object: object.into(),
        name: None,
        attribute: None,
        message,
    }
}

impl Config {
    /// The AdminEndpoint's references resolve: its SecurityProfile exists and has TLS, its
    /// ConfigurationPolicies exist, and its port is no enabled Endpoint's.
    pub(crate) fn check_admin(&self) -> Result<(), ConfigError> {
        let Some(e) = &self.admin.endpoint else {
            return Ok(());
        };
        let error = |attribute: &str, message: String| {
            ConfigError::attribute("AdminEndpoint", "AdminEndpoint", attribute, message)
        };
        if !e.security_profile.is_empty() {
            match self.security_profiles.get(&e.security_profile) {
                None => {
                    return Err(error(
                        "SecurityProfile",
                        format!(
                            "names SecurityProfile \"{}\", which does not exist",
                            e.security_profile
                        ),
                    ))
                }
                Some(p) if !p.tls_enabled => {
                    return Err(error(
                        "SecurityProfile",
                        format!(
                            "names SecurityProfile \"{}\", whose TLSEnabled is false; the admin endpoint takes one with TLS",
                            e.security_profile
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(p) = e
            .configuration_policies
            .iter()
            .find(|p| !self.admin.policies.contains_key(*p))
        {
            return Err(error(
                "ConfigurationPolicies",
                format!("names ConfigurationPolicy \"{p}\", which does not exist"),
            ));
        }
        if e.enabled {
            if let Some((name, _)) = self.enabled().find(|(_, ep)| ep.port == e.port) {
                return Err(error(
                    "Port",
                    format!("{} is the port of Endpoint \"{name}\"", e.port),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A demo configuration with `admin` objects added.
    fn with(admin: Value) -> Result<Config, ConfigError> {
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        for (k, v) in admin.as_object().unwrap() {
            doc[k] = v.clone();
        }
        Config::parse(&doc.to_string())
    }

    const VERIFIER: &str = "SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAA==$\
        AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    /// Proves an empty AdminEndpoint takes Amlen's port on loopback, that the administrator is
    /// `admin` without a password until one is set, and that a configuration without the
    /// object has no REST API.
    #[test]
    fn defaults_are_secure() {
        let config = with(serde_json::json!({"AdminEndpoint": {}})).unwrap();
        let e = config.admin.endpoint.as_ref().unwrap();
        assert_eq!((e.port, e.interface.as_str()), (9089, "127.0.0.1"));
        assert!(e.enabled && e.security_profile.is_empty());
        assert!(e.configuration_policies.is_empty());
        assert_eq!(config.admin.user_id, "admin");
        assert!(config.admin.password.is_none());
        assert!(Config::builtin().admin.endpoint.is_none());
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["AdminEndpoint"]["Port"], 9089);
        assert_eq!(json["AdminUserID"], "admin");
        assert!(json.get("AdminUserPassword").is_none());
    }

    /// Proves a ConfigurationPolicy reads its filters and actions as Amlen writes them, and
    /// that the endpoint tries the policies it names.
    #[test]
    fn policies_grant_actions() {
        let config = with(serde_json::json!({
            "AdminEndpoint": {"ConfigurationPolicies": "Ops,Prometheus"},
            "ConfigurationPolicy": {
                "Ops": {"UserID": "admin", "ActionList": "Configure,View,Monitor,Manage"},
                "Prometheus": {"ClientAddress": "10.0.0.1", "ActionList": "monitor"}},
            "AdminUserID": "root",
            "AdminUserPassword": VERIFIER,
        }))
        .unwrap();
        let prometheus = &config.admin.policies["Prometheus"];
        assert!(prometheus.allows(Action::Monitor));
        assert!(!prometheus.allows(Action::View) && !prometheus.allows(Action::Configure));
        assert!(Action::ALL
            .iter()
            .all(|a| config.admin.policies["Ops"].allows(*a)));
        assert_eq!(config.admin.user_id, "root");
        assert_eq!(
            config.admin.password.as_ref().unwrap().to_string(),
            VERIFIER
        );
    }

    /// Proves every mistake in the administration objects is refused naming the object and
    /// the attribute.
    #[test]
    fn mistakes_name_object_and_attribute() {
        let cases = [
            (serde_json::json!({"AdminEndpoint": {"Port": 0}}),
             "AdminEndpoint \"AdminEndpoint\", attribute Port: must be an integer from 1 to 65535"),
            (serde_json::json!({"AdminEndpoint": {"Interface": "localhost"}}),
             "AdminEndpoint \"AdminEndpoint\", attribute Interface: must be All, * or an IP address, got \"localhost\""),
            (serde_json::json!({"AdminEndpoint": {"Prt": 1}}),
             "AdminEndpoint \"AdminEndpoint\", attribute Prt: is not an attribute of this object"),
            (serde_json::json!({"AdminEndpoint": {"Port": 1883}}),
             "AdminEndpoint \"AdminEndpoint\", attribute Port: 1883 is the port of Endpoint \"DemoEndpoint\""),
            (serde_json::json!({"AdminEndpoint": {"SecurityProfile": "Nope"}}),
             "AdminEndpoint \"AdminEndpoint\", attribute SecurityProfile: names SecurityProfile \"Nope\", which does not exist"),
            (serde_json::json!({"AdminEndpoint": {"ConfigurationPolicies": "Nope"}}),
             "AdminEndpoint \"AdminEndpoint\", attribute ConfigurationPolicies: names ConfigurationPolicy \"Nope\", which does not exist"),
            (serde_json::json!({"ConfigurationPolicy": {"P": {"ActionList": "View"}}}),
             "ConfigurationPolicy \"P\": needs at least one filter: ClientAddress, UserID or GroupID"),
            (serde_json::json!({"ConfigurationPolicy": {"P": {"UserID": "a", "ActionList": "View,Publish"}}}),
             "ConfigurationPolicy \"P\", attribute ActionList: must list Configure and/or View and/or Monitor and/or Manage, got \"Publish\""),
            (serde_json::json!({"ConfigurationPolicy": {"P": {"UserID": "a"}}}),
             "ConfigurationPolicy \"P\", attribute ActionList: is required"),
            (serde_json::json!({"ConfigurationPolicy": {"P": {"ClientID": "a", "ActionList": "View"}}}),
             "ConfigurationPolicy \"P\", attribute ClientID: is not an attribute of this object"),
            (serde_json::json!({"ConfigurationPolicy": {"P": {"ClientAddress": "10.0.0.1/8", "ActionList": "View"}}}),
             "ConfigurationPolicy \"P\", attribute ClientAddress: \"10.0.0.1/8\" has bits set after its prefix; write the network's first address"),
            (serde_json::json!({"AdminUserID": 7}),
             "AdminUserID: must be a string, got a number"),
            (serde_json::json!({"AdminUserPassword": "secret"}),
             "AdminUserPassword: is not a SCRAM-SHA-256 verifier; a clear-text password or another kind of hash is refused; make one with `ironsight --config FILE --set-admin-password`"),
        ];
        for (objects, expected) in cases {
            assert_eq!(with(objects).unwrap_err().to_string(), expected);
        }
        let plain = serde_json::json!({
            "CertificateProfile": {"C": {"Certificate": "c.pem", "Key": "c.key"}},
            "SecurityProfile": {"Plain": {"TLSEnabled": false}},
            "AdminEndpoint": {"SecurityProfile": "Plain"}});
        assert_eq!(
            with(plain).unwrap_err().to_string(),
            "AdminEndpoint \"AdminEndpoint\", attribute SecurityProfile: names SecurityProfile \"Plain\", whose TLSEnabled is false; the admin endpoint takes one with TLS"
        );
    }
}
