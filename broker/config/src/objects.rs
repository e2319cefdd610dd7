//! The configuration objects, with MessageSight's (Eclipse Amlen's) attribute names, types and
//! defaults. Attributes MessageSight has and ironsight does not implement yet are refused by
//! name rather than accepted and ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use ironsight_core::notification;
use ironsight_core::policy::{AddressFilter, Pattern, PatternKind};

use crate::fields::{kind, Fields};
use crate::tokens::{JwtProfile, OAuthProfile};
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
    /// Who may join and create shared subscriptions; none: the TopicPolicies alone decide.
    #[serde(serialize_with = "comma_list")]
    pub subscription_policies: Vec<String>,
    /// Bytes (shown as MessageSight writes it, e.g. "4096KB").
    #[serde(serialize_with = "size_text")]
    pub max_message_size: u64,
    /// Bytes a packet may have before CONNECT completes (ironsight's addition; MessageSight has
    /// no such attribute). A peer that has not connected yet is nobody: it may make the broker
    /// hold this much, not `MaxMessageSize`.
    #[serde(serialize_with = "size_text")]
    pub max_connect_message_size: u64,
    /// The SecurityProfile whose TLS settings the endpoint uses; empty for none.
    pub security_profile: String,
    /// What the endpoint accepts on its one port (ironsight's addition): MQTT over TCP, over
    /// TLS, over WebSocket, over WebSocket in TLS. The first bytes of a connection tell them
    /// apart. Default: `mqtt,ws` without TLS; `mqtts,wss` with a TLS security profile, so that
    /// a secure endpoint refuses unencrypted clients unless told otherwise.
    #[serde(serialize_with = "transports_text")]
    pub transports: Transports,
    /// Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy sends it),
    /// whose address is the client's (ironsight's addition).
    pub proxy_protocol: bool,
}

/// The transports an endpoint accepts on its port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transports {
    /// MQTT over TCP.
    pub mqtt: bool,
    /// MQTT over TLS.
    pub mqtts: bool,
    /// MQTT over WebSocket.
    pub ws: bool,
    /// MQTT over WebSocket over TLS.
    pub wss: bool,
}

impl Transports {
    const NAMES: [&'static str; 4] = ["mqtt", "mqtts", "ws", "wss"];

    fn flags(&self) -> [bool; 4] {
        [self.mqtt, self.mqtts, self.ws, self.wss]
    }

    pub fn tls(&self) -> bool {
        self.mqtts || self.wss
    }

    pub fn plain(&self) -> bool {
        self.mqtt || self.ws
    }

    fn parse(list: &str) -> Result<Transports, String> {
        let mut t = Transports::default();
        for name in names(list) {
            match name.to_ascii_lowercase().as_str() {
                "mqtt" => t.mqtt = true,
                "mqtts" => t.mqtts = true,
                "ws" => t.ws = true,
                "wss" => t.wss = true,
                _ => {
                    return Err(format!(
                        "lists \"{name}\"; the transports are mqtt, mqtts, ws and wss"
                    ))
                }
            }
        }
        if t == Transports::default() {
            return Err("must list at least one of mqtt, mqtts, ws and wss".into());
        }
        Ok(t)
    }
}

/// The filters every policy type has: which clients it applies to. An empty one is not given
/// (every client passes it); every one given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyFilters {
    /// Exact, or a prefix ending in `*`; a ConnectionPolicy's may name `${UserID}` and
    /// `${CommonName}`.
    #[serde(rename = "ClientID", skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// `*`, or up to 20 addresses, `low-high` ranges and CIDR blocks (IPv6 in brackets).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_address: String,
    #[serde(rename = "UserID", skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// Matches when any of the user's groups does.
    #[serde(rename = "GroupID", skip_serializing_if = "String::is_empty")]
    pub group_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub common_names: String,
    /// MQTT (or `All`): ironsight speaks nothing else, so every client passes it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
}

/// How a policy type reads its filters.
pub(crate) struct FilterRules {
    /// What its ClientID may hold.
    client_id: PatternKind,
    /// The ClientID when the attribute is absent ("" for none).
    client_id_default: &'static str,
    /// A trailing `*` in Protocol (Amlen checks ConnectionPolicy attributes with its
    /// `ism_config_validate_Asterisk`, and Protocol with the others).
    protocol_glob: bool,
}

impl PolicyFilters {
    pub(crate) fn parse(f: &mut Fields, rules: FilterRules) -> Result<Self, ConfigError> {
        let filters = PolicyFilters {
            client_id: f.string("ClientID", rules.client_id_default)?,
            client_address: f.string("ClientAddress", "")?,
            user_id: f.string("UserID", "")?,
            group_id: f.string("GroupID", "")?,
            common_names: f.string("CommonNames", "")?,
            protocol: f.string("Protocol", "")?,
        };
        let pattern = |attribute: &str, text: &str, kind| match text.trim() {
            "" => Ok(()),
            text => Pattern::parse(text, kind)
                .map(drop)
                .map_err(|e| f.error(attribute, e.0)),
        };
        pattern("ClientID", &filters.client_id, rules.client_id)?;
        pattern("UserID", &filters.user_id, PatternKind::Name)?;
        pattern("GroupID", &filters.group_id, PatternKind::Name)?;
        pattern("CommonNames", &filters.common_names, PatternKind::Name)?;
        if !filters.client_address.trim().is_empty() {
            AddressFilter::parse(&filters.client_address)
                .map_err(|m| f.error("ClientAddress", m))?;
        }
        check_protocol(f, "Protocol", &filters.protocol, rules.protocol_glob)?;
        Ok(filters)
    }

    /// Amlen: "Specify at least one of the following filters".
    fn require_one(&self, object: &str, name: &str) -> Result<(), ConfigError> {
        let given = [
            &self.client_id,
            &self.client_address,
            &self.user_id,
            &self.group_id,
            &self.common_names,
            &self.protocol,
        ];
        if given.iter().all(|v| v.trim().is_empty()) {
            return Err(ConfigError::object(
                object,
                name,
                "needs at least one filter: ClientID, ClientAddress, UserID, GroupID, CommonNames or Protocol",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionPolicy {
    pub description: String,
    #[serde(flatten)]
    pub filters: PolicyFilters,
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
    /// Topic pattern: `*` matches any characters, `/` included; `${UserID}`, `${GroupID}`,
    /// `${ClientID}`, `${CommonName}` each a whole level.
    pub topic: String,
    /// ClientID defaults to `*` (ironsight's default since its first version), so a TopicPolicy
    /// always has a filter.
    #[serde(flatten)]
    pub filters: PolicyFilters,
    pub action_list: String,
    pub max_messages: u32,
    pub max_messages_behavior: MaxMessagesBehavior,
    /// Seconds, or `None` for MessageSight's "unlimited".
    #[serde(serialize_with = "ttl_text")]
    pub max_message_time_to_live: Option<u32>,
    /// Marks the subscriptions this policy authorises: messages arriving for their
    /// disconnected sessions are notified on `$SYS/DisconnectedClientNotification`.
    pub disconnected_client_notification: bool,
}

/// Who may join (Receive) and create (Control) shared subscriptions whose group names its
/// `Subscription` pattern matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscriptionPolicy {
    pub description: String,
    /// A group name pattern: `*` matches any characters; `${UserID}`, `${GroupID}`,
    /// `${CommonName}`.
    pub subscription: String,
    #[serde(flatten)]
    pub filters: PolicyFilters,
    pub action_list: String,
    pub max_messages: u32,
    pub max_messages_behavior: MaxMessagesBehavior,
}

/// A server certificate and its private key, PEM files. A path that is not absolute is taken
/// relative to the directory of the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateProfile {
    /// The certificate, followed by any intermediate certificates of its chain.
    pub certificate: String,
    /// Its private key (PKCS#8, PKCS#1 RSA or SEC1 EC), unencrypted.
    pub key: String,
}

/// The lowest TLS version a security profile accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// MessageSight's cipher choices. ironsight offers only AEAD suites with forward secrecy
/// (AES-GCM and ChaCha20-Poly1305, over ECDHE in TLS 1.2), so the choice is an order of
/// preference: `Best` puts AES-256-GCM first, `Fast` AES-128-GCM; `Medium`, which in
/// MessageSight added weaker suites, has none to add and orders as `Fast`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Ciphers {
    Best,
    Fast,
    Medium,
}

/// TLS settings of the endpoints that name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityProfile {
    #[serde(rename = "TLSEnabled")]
    pub tls_enabled: bool,
    pub minimum_protocol_method: TlsVersion,
    /// Client certificates are verified: signed by one of the profile's trusted certificates,
    /// valid now, not revoked.
    pub use_client_certificate: bool,
    /// With UseClientCertificate, whether a client must present one (ironsight's addition;
    /// `false` lets clients without a certificate in, with no common name).
    pub require_client_certificate: bool,
    /// Clients give a user name and password, which the users file (MessagingUser) or the
    /// LDAP directory checks.
    pub use_password_authentication: bool,
    /// With UsePasswordAuthentication: a client with a verified client certificate may give a
    /// user name without a password (the certificate is its credential).
    pub allow_null_password: bool,
    pub ciphers: Ciphers,
    /// The client's order of cipher preference wins over the server's.
    pub use_client_cipher: bool,
    pub certificate_profile: String,
    /// Revocation lists for client certificates; empty for none.
    #[serde(rename = "CRLProfile")]
    pub crl_profile: String,
    /// The OAuthProfile that checks passwords as access tokens; empty for none.
    #[serde(rename = "OAuthProfile")]
    pub oauth_profile: String,
    /// The JWTProfile that checks passwords as signed JWTs; empty for none.
    #[serde(rename = "JWTProfile")]
    pub jwt_profile: String,
}

/// A certificate authority whose client certificates a security profile trusts (Amlen keeps
/// these as a list of pairs, not as named objects).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrustedCertificate {
    pub security_profile_name: String,
    /// A PEM file holding one or more CA certificates.
    pub trusted_certificate: String,
}

/// Certificate revocation lists for the client certificates of a security profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CrlProfile {
    /// A file of one or more CRLs, PEM or DER.
    #[serde(rename = "CRLSource")]
    pub crl_source: String,
    /// Minutes between checks whether the file changed (it is also re-read on SIGHUP).
    pub update_interval: u32,
    /// Whether connections whose certificate a new list revokes are closed.
    pub revalidate_connection: bool,
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
    /// The longest keep alive a client may have, in seconds; 0: no cap. Amlen's server.cfg
    /// calls it `MqttMaxKeepAlive`; the Broker object drops the `Mqtt` prefix, as its other
    /// attributes do. A v5 client asking for more, or for none, is told this one (Server Keep
    /// Alive); a v3 client cannot be told, and is refused (return code 2, as the source of
    /// Mosquitto's `max_keepalive` does; 2.0.11 still let such a client in).
    pub max_keep_alive: u16,
    pub max_subscriptions_per_session: u32,
    #[serde(rename = "MaxClientIDLength")]
    pub max_client_id_length: u32,
    pub max_topic_levels: u32,
    pub max_send_buffer_size: u64,
    pub connect_timeout: u16,
    /// Seconds a packet may take to arrive whole, counted from its first byte.
    pub packet_timeout: u16,
    pub max_retained_messages: u32,
    pub max_sessions_per_core: u32,
    /// Seconds a CONNECT may wait for its authentication before the client is told the server
    /// is unavailable (ironsight's addition: MessageSight bounded only the LDAP call).
    pub authentication_timeout: u16,
    /// CONNECTs one core lets wait for authentication at once; more are told the server is
    /// busy (ironsight's addition).
    pub max_pending_authentications: u32,
    /// Seconds between the rounds that publish disconnected-client notifications on
    /// `$SYS/DisconnectedClientNotification` (a server.cfg setting in MessageSight).
    pub disconn_client_notif_interval: u16,
}

/// Where the durable store keeps its journal (`docs/store.md`): Amlen's `Store.` settings of its
/// server.cfg, as one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Store {
    /// Whether persistent sessions, their messages and retained messages survive a restart.
    /// Off by default, as in Amlen: the demo broker keeps everything in memory; the appliance
    /// turns it on for its data partition.
    pub enable_disk_persistence: bool,
    /// The data directory (relative: to the configuration file's directory).
    pub disk_persist_path: String,
    /// Each journal segment's size, in MiB: the unit in which compaction frees disk space.
    #[serde(rename = "PersistFileSizeMB")]
    pub persist_file_size_mb: u64,
}

/// The appliance's data partition.
pub const DISK_PERSIST_PATH_DEFAULT: &str = "/var/lib/ironsight/store";

impl Store {
    fn parse(value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("Store", "Store", value)?;
        let store = Store {
            enable_disk_persistence: f.boolean("EnableDiskPersistence", false)?,
            disk_persist_path: f.string("DiskPersistPath", DISK_PERSIST_PATH_DEFAULT)?,
            persist_file_size_mb: f
                .integer("PersistFileSizeMB", Some(64), 1, 16384)?
                .expect("default"),
        };
        if store.disk_persist_path.is_empty() {
            return Err(f.error("DiskPersistPath", "must name a directory"));
        }
        f.finish()?;
        Ok(store)
    }
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
    #[serde(rename = "SubscriptionPolicy")]
    pub subscription_policies: BTreeMap<String, SubscriptionPolicy>,
    #[serde(rename = "CertificateProfile")]
    pub certificate_profiles: BTreeMap<String, CertificateProfile>,
    #[serde(rename = "SecurityProfile")]
    pub security_profiles: BTreeMap<String, SecurityProfile>,
    #[serde(rename = "TrustedCertificate")]
    pub trusted_certificates: Vec<TrustedCertificate>,
    #[serde(rename = "CRLProfile")]
    pub crl_profiles: BTreeMap<String, CrlProfile>,
    #[serde(rename = "OAuthProfile")]
    pub oauth_profiles: BTreeMap<String, OAuthProfile>,
    #[serde(rename = "JWTProfile")]
    pub jwt_profiles: BTreeMap<String, JwtProfile>,
    #[serde(rename = "Broker")]
    pub broker: Broker,
    #[serde(rename = "Store")]
    pub store: Store,
    /// `MessagingUser` and `MessagingGroup`: the users file.
    #[serde(flatten)]
    pub users: crate::users::Users,
    #[serde(rename = "LDAP", skip_serializing_if = "Option::is_none")]
    pub ldap: Option<crate::ldap::Ldap>,
    /// `AdminEndpoint`, `ConfigurationPolicy`, `AdminUserID`, `AdminUserPassword`: the REST API.
    #[serde(flatten)]
    pub admin: crate::admin::Admin,
    /// Where files named by a relative path are found: the configuration file's directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// What an error says of an attribute the object does not have (MessageSight's CWLNA0138).
pub const UNKNOWN_ATTRIBUTE: &str = "is not an attribute of this object";

/// Attributes MessageSight defines that ironsight does not implement yet; naming them is refused
/// rather than silently ignored.
const NOT_YET: &[(&str, &str)] = &[
    ("Endpoint", "QueuePolicies"),
    ("SecurityProfile", "LTPAProfile"),
    ("CertificateProfile", "CertFilePassword"),
    ("CertificateProfile", "KeyFilePassword"),
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

pub(crate) fn names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A list of protocol names: MQTT or All, or with `glob`, a prefix ending in `*` that names
/// MQTT (`MQ*`). ironsight speaks MQTT only: a name it does not speak is refused rather than
/// left to match nobody.
fn check_protocol(
    fields: &Fields,
    attribute: &str,
    protocol: &str,
    glob: bool,
) -> Result<(), ConfigError> {
    let speaks = |p: &str| {
        let p = p.to_ascii_uppercase();
        match p.strip_suffix('*') {
            Some(prefix) if glob => !prefix.contains('*') && "MQTT".starts_with(prefix),
            _ => p == "MQTT" || p == "ALL",
        }
    };
    if let Some(other) = names(protocol).iter().find(|p| !speaks(p)) {
        return Err(fields.error(
            attribute,
            format!("ironsight speaks MQTT only; \"{other}\" names another protocol"),
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

/// The default `MaxConnectMessageSize`. A CONNECT holds a client id (at most
/// `MaxClientIDLength`, 1023 bytes by default), a user name and password (a token as password is
/// a few KB), a will with its topic, payload and properties, and user properties: 64 KB fits a
/// large one of each, while 10,000 peers that never finish theirs hold at most 640 MB (they
/// are cut at `ConnectTimeout`), not the 40 GB that `MaxMessageSize` (4 MB) would allow.
const MAX_CONNECT_MESSAGE_SIZE: u64 = 64 * 1024;

impl Endpoint {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        refuse_not_yet("Endpoint", name, value)?;
        let mut f = Fields::new("Endpoint", name, value)?;
        let max_message_size = f.size("MaxMessageSize", 4096 * 1024, 1024, 256 * 1024 * 1024)?;
        let max_connect_message_size = f.size(
            "MaxConnectMessageSize",
            MAX_CONNECT_MESSAGE_SIZE.min(max_message_size),
            1024,
            256 * 1024 * 1024,
        )?;
        if max_connect_message_size > max_message_size {
            return Err(f.error(
                "MaxConnectMessageSize",
                format!("must not exceed MaxMessageSize ({max_message_size} bytes)"),
            ));
        }
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
            subscription_policies: names(&f.string("SubscriptionPolicies", "")?),
            max_message_size,
            max_connect_message_size,
            security_profile: f.string("SecurityProfile", "")?,
            // Defaulted once the security profile is known (Config::check_references).
            transports: match f.string("Transports", "")? {
                list if list.trim().is_empty() => Transports::default(),
                list => Transports::parse(&list).map_err(|m| f.error("Transports", m))?,
            },
            proxy_protocol: f.boolean("ProxyProtocol", false)?,
        };
        check_protocol(&f, "Protocol", &endpoint.protocol, false)?;
        crate::resolve::interface_addr(&endpoint.interface).map_err(|m| f.error("Interface", m))?;
        f.finish()?;
        Ok(endpoint)
    }
}

impl ConnectionPolicy {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("ConnectionPolicy", name, value)?;
        let max = u64::from(u32::MAX - 1);
        // Amlen's schema spells it MaxSessionExpiryInterval, its documentation MaximumSessionExpiryInterval.
        let expiry = match f.integer("MaxSessionExpiryInterval", None, 0, max)? {
            Some(v) => Some(v),
            None => f.integer("MaximumSessionExpiryInterval", None, 0, max)?,
        };
        let filters = PolicyFilters::parse(
            &mut f,
            FilterRules {
                client_id: PatternKind::ConnectionClientId,
                client_id_default: "",
                protocol_glob: true,
            },
        )?;
        filters.require_one("ConnectionPolicy", name)?;
        let policy = ConnectionPolicy {
            description: f.string("Description", "")?,
            filters,
            allow_durable: f.boolean("AllowDurable", true)?,
            allow_persistent_messages: f.boolean("AllowPersistentMessages", true)?,
            max_session_expiry_interval: expiry.map(|v| v as u32),
        };
        f.finish()?;
        Ok(policy)
    }
}

/// The filters of a TopicPolicy or SubscriptionPolicy: no variables in them (Amlen's rule).
pub(crate) const MESSAGING_FILTERS: FilterRules = FilterRules {
    client_id: PatternKind::Name,
    client_id_default: "",
    protocol_glob: false,
};

fn max_messages(f: &mut Fields) -> Result<(u32, MaxMessagesBehavior), ConfigError> {
    let max = f
        .integer("MaxMessages", Some(5000), 1, 20_000_000)?
        .expect("has a default") as u32;
    let behavior = match f.choice(
        "MaxMessagesBehavior",
        "RejectNewMessages",
        &["RejectNewMessages", "DiscardOldMessages"],
    )? {
        "DiscardOldMessages" => MaxMessagesBehavior::DiscardOldMessages,
        _ => MaxMessagesBehavior::RejectNewMessages,
    };
    Ok((max, behavior))
}

/// An ActionList: each entry one of `actions`, at least one.
pub(crate) fn check_actions(f: &Fields, list: &str, actions: &[&str]) -> Result<(), ConfigError> {
    for action in names(list) {
        if !actions.iter().any(|a| a.eq_ignore_ascii_case(&action)) {
            return Err(f.error(
                "ActionList",
                format!("must list {}, got \"{action}\"", actions.join(" and/or ")),
            ));
        }
    }
    Ok(())
}

pub(crate) fn lists(list: &str, action: &str) -> bool {
    names(list).iter().any(|a| a.eq_ignore_ascii_case(action))
}

impl TopicPolicy {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("TopicPolicy", name, value)?;
        let (max_messages, behavior) = max_messages(&mut f)?;
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
        let filters = PolicyFilters::parse(
            &mut f,
            FilterRules {
                client_id_default: "*",
                ..MESSAGING_FILTERS
            },
        )?;
        let policy = TopicPolicy {
            description: f.string("Description", "")?,
            topic: f.required_string("Topic")?,
            filters,
            action_list: f.required_string("ActionList")?,
            max_messages,
            max_messages_behavior: behavior,
            max_message_time_to_live,
            disconnected_client_notification: f.boolean("DisconnectedClientNotification", false)?,
        };
        check_actions(&f, &policy.action_list, &["Publish", "Subscribe"])?;
        Pattern::parse(&policy.topic, PatternKind::Topic).map_err(|e| f.error("Topic", e.0))?;
        if policy.disconnected_client_notification && !policy.allows("Subscribe") {
            return Err(f.error(
                "DisconnectedClientNotification",
                "needs Subscribe in the ActionList (the notifications go to subscribers)",
            ));
        }
        f.finish()?;
        Ok(policy)
    }

    pub fn allows(&self, action: &str) -> bool {
        lists(&self.action_list, action)
    }
}

impl SubscriptionPolicy {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("SubscriptionPolicy", name, value)?;
        let (max_messages, behavior) = max_messages(&mut f)?;
        let filters = PolicyFilters::parse(&mut f, MESSAGING_FILTERS)?;
        filters.require_one("SubscriptionPolicy", name)?;
        let policy = SubscriptionPolicy {
            description: f.string("Description", "")?,
            subscription: f.required_string("Subscription")?,
            filters,
            action_list: f.required_string("ActionList")?,
            max_messages,
            max_messages_behavior: behavior,
        };
        check_actions(&f, &policy.action_list, &["Receive", "Control"])?;
        if policy.allows("Control") && !policy.allows("Receive") {
            return Err(f.error(
                "ActionList",
                "lists Control without Receive: a client that creates a shared subscription must be allowed to receive from it",
            ));
        }
        Pattern::parse(&policy.subscription, PatternKind::ShareName)
            .map_err(|e| f.error("Subscription", e.0))?;
        f.finish()?;
        Ok(policy)
    }

    pub fn allows(&self, action: &str) -> bool {
        lists(&self.action_list, action)
    }
}

impl CertificateProfile {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        refuse_not_yet("CertificateProfile", name, value)?;
        let mut f = Fields::new("CertificateProfile", name, value)?;
        let profile = CertificateProfile {
            certificate: f.required_string("Certificate")?,
            key: f.required_string("Key")?,
        };
        f.finish()?;
        Ok(profile)
    }
}

impl SecurityProfile {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        refuse_not_yet("SecurityProfile", name, value)?;
        let mut f = Fields::new("SecurityProfile", name, value)?;
        let minimum = match f.string("MinimumProtocolMethod", "TLSv1.2")?.trim() {
            "TLSv1.2" => TlsVersion::Tls12,
            "TLSv1.3" => TlsVersion::Tls13,
            "SSLv3" | "TLSv1" | "TLSv1.1" => {
                return Err(f.error(
                    "MinimumProtocolMethod",
                    "ironsight speaks TLS 1.2 and 1.3 only (older versions are broken); use TLSv1.2 or TLSv1.3",
                ))
            }
            other => {
                return Err(f.error(
                    "MinimumProtocolMethod",
                    format!("must be TLSv1.2 or TLSv1.3, got \"{other}\""),
                ))
            }
        };
        let ciphers = match f.choice("Ciphers", "Fast", &["Best", "Fast", "Medium"])? {
            "Best" => Ciphers::Best,
            "Medium" => Ciphers::Medium,
            _ => Ciphers::Fast,
        };
        let profile = SecurityProfile {
            tls_enabled: f.boolean("TLSEnabled", true)?,
            minimum_protocol_method: minimum,
            use_client_certificate: f.boolean("UseClientCertificate", false)?,
            require_client_certificate: f.boolean("RequireClientCertificate", true)?,
            use_password_authentication: f.boolean("UsePasswordAuthentication", false)?,
            allow_null_password: f.boolean("AllowNullPassword", false)?,
            ciphers,
            use_client_cipher: f.boolean("UseClientCipher", false)?,
            certificate_profile: f.string("CertificateProfile", "")?,
            crl_profile: f.string("CRLProfile", "")?,
            oauth_profile: f.string("OAuthProfile", "")?,
            jwt_profile: f.string("JWTProfile", "")?,
        };
        if profile.tls_enabled && profile.certificate_profile.trim().is_empty() {
            return Err(f.error("CertificateProfile", "must be set if TLSEnabled is true"));
        }
        if !profile.oauth_profile.is_empty() && !profile.jwt_profile.is_empty() {
            return Err(f.error(
                "JWTProfile",
                "cannot be set with OAuthProfile: a password is checked as one kind of token",
            ));
        }
        if profile.allow_null_password && !profile.use_password_authentication {
            return Err(f.error(
                "AllowNullPassword",
                "applies to password authentication: set UsePasswordAuthentication to true, or remove it",
            ));
        }
        if profile.allow_null_password && !profile.use_client_certificate {
            return Err(f.error(
                "AllowNullPassword",
                "lets a client certificate stand in for the password: set UseClientCertificate to true, or remove it",
            ));
        }
        if !profile.crl_profile.is_empty() && !profile.use_client_certificate {
            return Err(f.error(
                "CRLProfile",
                "applies to client certificates: set UseClientCertificate to true, or remove it",
            ));
        }
        f.finish()?;
        Ok(profile)
    }
}

impl TrustedCertificate {
    fn parse(index: usize, value: &Value) -> Result<Self, ConfigError> {
        let label = format!("#{}", index + 1);
        let mut f = Fields::new("TrustedCertificate", &label, value)?;
        let trusted = TrustedCertificate {
            security_profile_name: f.required_string("SecurityProfileName")?,
            trusted_certificate: f.required_string("TrustedCertificate")?,
        };
        f.finish()?;
        Ok(trusted)
    }
}

impl CrlProfile {
    fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("CRLProfile", name, value)?;
        let profile = CrlProfile {
            crl_source: f.required_string("CRLSource")?,
            update_interval: f
                .integer("UpdateInterval", Some(60), 5, 43_200)?
                .expect("has a default") as u32,
            revalidate_connection: f.boolean("RevalidateConnection", false)?,
        };
        if profile.crl_source.contains("://") {
            return Err(f.error(
                "CRLSource",
                "must be a file; ironsight does not download revocation lists",
            ));
        }
        f.finish()?;
        Ok(profile)
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
            max_keep_alive: f
                .integer("MaxKeepAlive", Some(0), 0, 65535)?
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
            packet_timeout: f
                .integer("PacketTimeout", Some(120), 1, 3600)?
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
            authentication_timeout: f
                .integer("AuthenticationTimeout", Some(10), 1, 300)?
                .expect("default") as u16,
            max_pending_authentications: f
                .integer("MaxPendingAuthentications", Some(10_000), 1, 1_000_000)?
                .expect("default") as u32,
            // Amlen takes its default for anything under its floor; a configuration that asks
            // for less is refused here instead, with the bound named.
            disconn_client_notif_interval: f
                .integer(
                    "DisconnClientNotifInterval",
                    Some(u64::from(notification::INTERVAL_DEFAULT_S)),
                    u64::from(notification::INTERVAL_MIN_S),
                    3600,
                )?
                .expect("default") as u16,
        };
        let (forced, max) = (broker.server_keep_alive, broker.max_keep_alive);
        if forced > 0 && max > 0 && forced > max {
            return Err(f.error(
                "ServerKeepAlive",
                format!("{forced} exceeds MaxKeepAlive ({max}), the longest keep alive allowed"),
            ));
        }
        f.finish()?;
        Ok(broker)
    }
}

pub(crate) fn named<T>(
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

/// Amlen's list-shaped objects (`"TrustedCertificate": [{...}, ...]`).
fn listed<T>(
    doc: &mut serde_json::Map<String, Value>,
    object: &'static str,
    parse: impl Fn(usize, &Value) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    match doc.remove(object) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().enumerate().map(|(i, v)| parse(i, v)).collect(),
        Some(other) => Err(ConfigError::document(format!(
            "{object} must be a list of {object} objects, got {}",
            kind(&other)
        ))),
    }
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
            subscription_policies: named(
                &mut doc,
                "SubscriptionPolicy",
                SubscriptionPolicy::parse,
            )?,
            certificate_profiles: named(&mut doc, "CertificateProfile", CertificateProfile::parse)?,
            security_profiles: named(&mut doc, "SecurityProfile", SecurityProfile::parse)?,
            trusted_certificates: listed(
                &mut doc,
                "TrustedCertificate",
                TrustedCertificate::parse,
            )?,
            crl_profiles: named(&mut doc, "CRLProfile", CrlProfile::parse)?,
            oauth_profiles: named(&mut doc, "OAuthProfile", OAuthProfile::parse)?,
            jwt_profiles: named(&mut doc, "JWTProfile", JwtProfile::parse)?,
            broker: Broker::parse(
                &doc.remove("Broker")
                    .unwrap_or(Value::Object(Default::default())),
            )?,
            store: Store::parse(
                &doc.remove("Store")
                    .unwrap_or(Value::Object(Default::default())),
            )?,
            users: crate::users::Users::parse(&mut doc)?,
            ldap: doc
                .remove("LDAP")
                .map(|v| crate::ldap::Ldap::parse(&v))
                .transpose()?,
            admin: crate::admin::Admin::parse(&mut doc)?,
            base_dir: PathBuf::from("."),
        };
        if let Some(unknown) = doc.keys().next() {
            return Err(ConfigError::document(format!(
                "unknown object type \"{unknown}\""
            )));
        }
        let mut config = config;
        config.check_consistency()?;
        Ok(config)
    }

    /// The checks between objects (every reference resolves, every endpoint's transports fit
    /// its security profile), for a configuration put together from objects that each parsed:
    /// the part of a new configuration that can change while the broker runs, beside what
    /// stays until a restart.
    pub fn check_consistency(&mut self) -> Result<(), ConfigError> {
        self.check_references()?;
        self.check_security()?;
        self.check_admin()
    }

    /// Reads and checks a configuration file; relative file names in it (certificates, keys)
    /// are taken from its directory.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse_for(&text, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks the text of the configuration file `path` (which need not hold it
    /// yet: the REST API checks a new version before writing it).
    pub fn parse_for(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::parse(text)?;
        config.base_dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(config)
    }

    /// A file named in the configuration: as given if absolute, else in [`Config::base_dir`].
    pub fn file(&self, name: &str) -> PathBuf {
        self.base_dir.join(name)
    }

    /// Security profiles resolve, and every endpoint's transports fit its profile (defaulted
    /// here when the endpoint does not list them).
    fn check_security(&mut self) -> Result<(), ConfigError> {
        for (name, p) in &self.security_profiles {
            let missing = |attribute: &str, kind: &str, target: &str| {
                ConfigError::attribute(
                    "SecurityProfile",
                    name,
                    attribute,
                    format!("names {kind} \"{target}\", which does not exist"),
                )
            };
            if p.tls_enabled
                && !self
                    .certificate_profiles
                    .contains_key(&p.certificate_profile)
            {
                return Err(missing(
                    "CertificateProfile",
                    "CertificateProfile",
                    &p.certificate_profile,
                ));
            }
            if !p.crl_profile.is_empty() && !self.crl_profiles.contains_key(&p.crl_profile) {
                return Err(missing("CRLProfile", "CRLProfile", &p.crl_profile));
            }
            if !p.oauth_profile.is_empty() && !self.oauth_profiles.contains_key(&p.oauth_profile) {
                return Err(missing("OAuthProfile", "OAuthProfile", &p.oauth_profile));
            }
            if !p.jwt_profile.is_empty() && !self.jwt_profiles.contains_key(&p.jwt_profile) {
                return Err(missing("JWTProfile", "JWTProfile", &p.jwt_profile));
            }
            let trusted = self
                .trusted_certificates
                .iter()
                .any(|t| &t.security_profile_name == name);
            if p.use_client_certificate && !trusted {
                return Err(ConfigError::attribute(
                    "SecurityProfile",
                    name,
                    "UseClientCertificate",
                    "needs a TrustedCertificate for this profile: the CA that signs client certificates",
                ));
            }
        }
        for (i, t) in self.trusted_certificates.iter().enumerate() {
            if !self
                .security_profiles
                .contains_key(&t.security_profile_name)
            {
                return Err(ConfigError::attribute(
                    "TrustedCertificate",
                    &format!("#{}", i + 1),
                    "SecurityProfileName",
                    format!(
                        "names SecurityProfile \"{}\", which does not exist",
                        t.security_profile_name
                    ),
                ));
            }
        }
        for (name, e) in self.endpoints.iter_mut() {
            let tls = match e.security_profile.as_str() {
                "" => false,
                profile => match self.security_profiles.get(profile) {
                    Some(p) => p.tls_enabled,
                    None => {
                        return Err(ConfigError::attribute(
                            "Endpoint",
                            name,
                            "SecurityProfile",
                            format!("names SecurityProfile \"{profile}\", which does not exist"),
                        ))
                    }
                },
            };
            if e.transports == Transports::default() {
                e.transports = Transports {
                    mqtt: !tls,
                    mqtts: tls,
                    ws: !tls,
                    wss: tls,
                };
            } else if e.transports.tls() && !tls {
                return Err(ConfigError::attribute(
                    "Endpoint",
                    name,
                    "Transports",
                    "lists mqtts or wss, which need a SecurityProfile with TLSEnabled",
                ));
            }
        }
        Ok(())
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
            for p in &e.subscription_policies {
                if !self.subscription_policies.contains_key(p) {
                    return Err(missing("SubscriptionPolicies", "SubscriptionPolicy", p));
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn comma_list<S: serde::Serializer>(list: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&list.join(","))
}

fn size_text<S: serde::Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        b if b % (1024 * 1024) == 0 => s.serialize_str(&format!("{}MB", b / (1024 * 1024))),
        b if b % 1024 == 0 => s.serialize_str(&format!("{}KB", b / 1024)),
        b => s.serialize_str(&b.to_string()),
    }
}

fn transports_text<S: serde::Serializer>(t: &Transports, s: S) -> Result<S::Ok, S::Error> {
    let listed: Vec<&str> = Transports::NAMES
        .iter()
        .zip(t.flags())
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    s.serialize_str(&listed.join(","))
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

    /// Proves `MaxKeepAlive` reaches the core's settings (0 is no cap), and that a forced
    /// `ServerKeepAlive` beyond the cap is refused, naming the object and the attribute.
    #[test]
    fn keep_alive_cap() {
        let parse = |broker: Value| {
            let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
            doc["Broker"] = broker;
            Config::parse(&doc.to_string())
        };
        let capped = parse(serde_json::json!({"MaxKeepAlive": 60})).unwrap();
        assert_eq!(capped.settings().broker.keepalive_max_s, Some(60));
        let uncapped = parse(serde_json::json!({"MaxKeepAlive": 0})).unwrap();
        assert_eq!(uncapped.settings().broker.keepalive_max_s, None);
        let both = parse(serde_json::json!({"MaxKeepAlive": 60, "ServerKeepAlive": 30})).unwrap();
        assert_eq!(both.settings().broker.server_keepalive_s, Some(30));
        let e = parse(serde_json::json!({"MaxKeepAlive": 60, "ServerKeepAlive": 120}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Broker \"Broker\", attribute ServerKeepAlive: 120 exceeds MaxKeepAlive (60), the \
             longest keep alive allowed"
        );
    }

    /// Proves the size allowed before CONNECT defaults to 64 KB (or MaxMessageSize, when that
    /// is smaller), and that a value over MaxMessageSize or out of range names the attribute.
    #[test]
    fn the_size_before_connect_is_bounded_by_the_message_size() {
        let endpoint = |attrs: Value| {
            Config::parse(&with("Endpoint", "DemoEndpoint", attrs))
                .map(|c| c.endpoints["DemoEndpoint"].max_connect_message_size)
        };
        assert_eq!(endpoint(serde_json::json!({})).unwrap(), 64 * 1024);
        let small = serde_json::json!({"MaxMessageSize": "16KB"});
        assert_eq!(endpoint(small).unwrap(), 16 * 1024);
        let set = serde_json::json!({"MaxConnectMessageSize": "1MB"});
        assert_eq!(endpoint(set).unwrap(), 1024 * 1024);
        let e = error(
            "Endpoint",
            "DemoEndpoint",
            serde_json::json!({"MaxMessageSize": "1MB", "MaxConnectMessageSize": "2MB"}),
        );
        assert_eq!(
            e,
            "Endpoint \"DemoEndpoint\", attribute MaxConnectMessageSize: must not exceed \
             MaxMessageSize (1048576 bytes)"
        );
        let e = error(
            "Endpoint",
            "DemoEndpoint",
            serde_json::json!({"MaxConnectMessageSize": 100}),
        );
        assert!(
            e.starts_with("Endpoint \"DemoEndpoint\", attribute MaxConnectMessageSize: must be"),
            "{e}"
        );
    }

    /// Proves the packet deadline defaults to 120 s, reaches the core, and is bounded.
    #[test]
    fn the_packet_timeout_is_a_bounded_number_of_seconds() {
        let config = Config::builtin();
        assert_eq!(config.broker.packet_timeout, 120);
        assert_eq!(config.settings().broker.packet_timeout_s, 120);
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        doc["Broker"] = serde_json::json!({"PacketTimeout": 0});
        let e = Config::parse(&doc.to_string()).unwrap_err().to_string();
        assert_eq!(
            e,
            "Broker \"Broker\", attribute PacketTimeout: must be an integer from 1 to 3600"
        );
    }

    /// Proves the notification interval defaults to Amlen's 60 s, reaches the core, and is
    /// refused under Amlen's floor of 15 s (and over an hour) with the bounds named.
    #[test]
    fn the_notification_interval_has_amlens_floor() {
        let config = Config::builtin();
        assert_eq!(config.broker.disconn_client_notif_interval, 60);
        assert_eq!(config.settings().broker.notification_interval_s, 60);
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        doc["Broker"] = serde_json::json!({"DisconnClientNotifInterval": 15});
        let config = Config::parse(&doc.to_string()).unwrap();
        assert_eq!(config.settings().broker.notification_interval_s, 15);
        for bad in [14, 3601] {
            doc["Broker"] = serde_json::json!({"DisconnClientNotifInterval": bad});
            let e = Config::parse(&doc.to_string()).unwrap_err().to_string();
            assert_eq!(
                e,
                "Broker \"Broker\", attribute DisconnClientNotifInterval: must be an integer \
                 from 15 to 3600"
            );
        }
    }

    /// Proves the store is off by default with the appliance's path, and that its attributes
    /// are checked by name.
    #[test]
    fn the_store_is_off_unless_asked() {
        let config = Config::builtin();
        assert!(!config.store.enable_disk_persistence);
        assert_eq!(config.store.disk_persist_path, DISK_PERSIST_PATH_DEFAULT);
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        doc["Store"] =
            serde_json::json!({"EnableDiskPersistence": true, "DiskPersistPath": "data"});
        let config = Config::parse(&doc.to_string()).unwrap();
        assert!(config.store.enable_disk_persistence);
        for (bad, message) in [
            (
                serde_json::json!({"EnableDiskPersistence": "yes"}),
                "Store \"Store\", attribute EnableDiskPersistence: must be true or false, got a string",
            ),
            (
                serde_json::json!({"DiskPersistPath": ""}),
                "Store \"Store\", attribute DiskPersistPath: must name a directory",
            ),
        ] {
            doc["Store"] = bad;
            assert_eq!(Config::parse(&doc.to_string()).unwrap_err().to_string(), message);
        }
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
            "Endpoint",
            "DemoEndpoint",
            serde_json::json!({"QueuePolicies": "Q"}),
        );
        assert_eq!(e, "Endpoint \"DemoEndpoint\", attribute QueuePolicies: is not supported by this version of ironsight");
    }

    /// The demo configuration with `edit` applied.
    fn edited(edit: impl FnOnce(&mut Value)) -> Result<Config, ConfigError> {
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        edit(&mut doc);
        Config::parse(&doc.to_string())
    }

    /// Proves every policy attribute of issue 9 is read, shown back as written, and reaches the
    /// core's settings in the endpoint's order.
    #[test]
    fn policy_filters_and_subscription_policies_reach_the_settings() {
        let config = edited(|d| {
            d["ConnectionPolicy"]["Staff"] = serde_json::json!({
                "ClientID": "app-${UserID}", "ClientAddress": "10.0.0.0/8, [2001:db8::1]-[2001:db8::ff]",
                "GroupID": "staff*", "Protocol": "MQ*"});
            d["TopicPolicy"]["Mine"] = serde_json::json!({
                "Topic": "APP/${UserID}/*", "UserID": "*", "CommonNames": "device*",
                "ActionList": "Publish,Subscribe", "DisconnectedClientNotification": true});
            d["SubscriptionPolicy"] = serde_json::json!({"Workers": {
                "Subscription": "billing-*", "UserID": "worker*", "ActionList": "Receive,Control",
                "MaxMessages": 100, "MaxMessagesBehavior": "DiscardOldMessages"}});
            let e = &mut d["Endpoint"]["DemoEndpoint"];
            e["ConnectionPolicies"] = "Staff,DemoConnectionPolicy".into();
            e["TopicPolicies"] = "Mine,DemoTopicPolicy".into();
            e["SubscriptionPolicies"] = "Workers".into();
        })
        .unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["ConnectionPolicy"]["Staff"]["GroupID"], "staff*");
        assert_eq!(
            json["TopicPolicy"]["Mine"]["DisconnectedClientNotification"],
            true
        );
        assert_eq!(
            json["SubscriptionPolicy"]["Workers"]["ActionList"],
            "Receive,Control"
        );
        assert_eq!(
            json["Endpoint"]["DemoEndpoint"]["SubscriptionPolicies"],
            "Workers"
        );
        assert!(json["ConnectionPolicy"]["Staff"].get("UserID").is_none());
        let settings = config.settings();
        let endpoint = &settings.endpoints[0];
        let names: Vec<&str> = endpoint.connection_rules.iter().map(|r| &*r.name).collect();
        assert_eq!(names, ["Staff", "DemoConnectionPolicy"]);
        let share = &endpoint.subscription_rules[0];
        assert!(share.receive && share.control);
        assert_eq!(share.queue_messages_max, 100);
        assert!(endpoint.topic_rules[0].disconnected_client_notification);
        assert!(endpoint.connection_rules[0].filters.address.is_some());
    }

    /// Proves invalid policies are refused, each naming the object and the attribute.
    #[test]
    fn invalid_policies_name_object_and_attribute() {
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let topic = |attrs: Value| -> Edit {
            Box::new(move |d: &mut Value| {
                let mut p = serde_json::json!({"Topic": "a/*", "ActionList": "Publish"});
                for (k, v) in attrs.as_object().unwrap() {
                    p[k] = v.clone();
                }
                d["TopicPolicy"]["T"] = p;
            })
        };
        let cases: Vec<(Edit, &str)> = vec![
            (topic(serde_json::json!({"ClientAddress": "10.0.0.1/8"})),
             "TopicPolicy \"T\", attribute ClientAddress: \"10.0.0.1/8\" has bits set after its prefix; write the network's first address"),
            (topic(serde_json::json!({"ClientAddress": "10.0.0.9-10.0.0.1"})),
             "TopicPolicy \"T\", attribute ClientAddress: \"10.0.0.9-10.0.0.1\" must go from low to high"),
            (topic(serde_json::json!({"Topic": "a/${UserId}"})),
             "TopicPolicy \"T\", attribute Topic: \"a/${UserId}\" names ${UserId}; the variables are ${UserID}, ${GroupID}, ${ClientID}, ${CommonName}, ${*} and ${$}"),
            (topic(serde_json::json!({"Topic": "a/+"})),
             "TopicPolicy \"T\", attribute Topic: \"a/+\" holds '+': a policy Topic is not an MQTT filter; '*' matches any characters"),
            (topic(serde_json::json!({"Topic": "a/u${UserID}"})),
             "TopicPolicy \"T\", attribute Topic: \"a/u${UserID}\": ${UserID} must be a whole topic level (as in a/${UserID}/b), so that its value stands for exactly one level"),
            (topic(serde_json::json!({"UserID": "${ClientID}"})),
             "TopicPolicy \"T\", attribute UserID: \"${ClientID}\": ${ClientID} cannot be used here"),
            (topic(serde_json::json!({"ClientID": "a*b"})),
             "TopicPolicy \"T\", attribute ClientID: \"a*b\" may hold '*' only as its last character (write ${*} for a literal asterisk)"),
            (topic(serde_json::json!({"Protocol": "MQ*"})),
             "TopicPolicy \"T\", attribute Protocol: ironsight speaks MQTT only; \"MQ*\" names another protocol"),
            (topic(serde_json::json!({"DisconnectedClientNotification": true})),
             "TopicPolicy \"T\", attribute DisconnectedClientNotification: needs Subscribe in the ActionList (the notifications go to subscribers)"),
            (Box::new(|d: &mut Value| d["ConnectionPolicy"]["C"] = serde_json::json!({"Description": "no filter"})),
             "ConnectionPolicy \"C\": needs at least one filter: ClientID, ClientAddress, UserID, GroupID, CommonNames or Protocol"),
            (Box::new(|d: &mut Value| d["ConnectionPolicy"]["C"] = serde_json::json!({"ClientID": "${GroupID}"})),
             "ConnectionPolicy \"C\", attribute ClientID: \"${GroupID}\": ${GroupID} cannot be used here"),
            (Box::new(|d: &mut Value| d["ConnectionPolicy"]["C"] = serde_json::json!({"Protocol": "JMS"})),
             "ConnectionPolicy \"C\", attribute Protocol: ironsight speaks MQTT only; \"JMS\" names another protocol"),
            (Box::new(|d: &mut Value| d["SubscriptionPolicy"] = serde_json::json!({"S": {"Subscription": "g", "ActionList": "Receive"}})),
             "SubscriptionPolicy \"S\": needs at least one filter: ClientID, ClientAddress, UserID, GroupID, CommonNames or Protocol"),
            (Box::new(|d: &mut Value| d["SubscriptionPolicy"] = serde_json::json!({"S": {"Subscription": "g", "ClientID": "*", "ActionList": "Control"}})),
             "SubscriptionPolicy \"S\", attribute ActionList: lists Control without Receive: a client that creates a shared subscription must be allowed to receive from it"),
            (Box::new(|d: &mut Value| d["SubscriptionPolicy"] = serde_json::json!({"S": {"Subscription": "g-${ClientID}", "ClientID": "*", "ActionList": "Receive"}})),
             "SubscriptionPolicy \"S\", attribute Subscription: \"g-${ClientID}\": ${ClientID} cannot be used here"),
            (Box::new(|d: &mut Value| d["SubscriptionPolicy"] = serde_json::json!({"S": {"Subscription": "g", "ClientID": "*", "ActionList": "Publish"}})),
             "SubscriptionPolicy \"S\", attribute ActionList: must list Receive and/or Control, got \"Publish\""),
            (Box::new(|d: &mut Value| d["Endpoint"]["DemoEndpoint"]["SubscriptionPolicies"] = "Nope".into()),
             "Endpoint \"DemoEndpoint\", attribute SubscriptionPolicies: names SubscriptionPolicy \"Nope\", which does not exist"),
        ];
        for (edit, expected) in cases {
            assert_eq!(edited(edit).unwrap_err().to_string(), expected);
        }
        let many = vec!["10.0.0.1"; 21].join(",");
        let e = edited(topic(serde_json::json!({"ClientAddress": many}))).unwrap_err();
        assert_eq!(e.attribute.as_deref(), Some("ClientAddress"));
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

    /// A configuration with a TLS security profile on the demo endpoint, changed by `edit`.
    fn secure(edit: impl FnOnce(&mut Value)) -> Result<Config, ConfigError> {
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        doc["CertificateProfile"] =
            serde_json::json!({"Server": {"Certificate": "s.pem", "Key": "s.key"}});
        doc["SecurityProfile"] = serde_json::json!({"Tls": {"CertificateProfile": "Server"}});
        doc["Endpoint"]["DemoEndpoint"]["SecurityProfile"] = "Tls".into();
        edit(&mut doc);
        Config::parse(&doc.to_string())
    }

    /// Proves the transports default to what the security profile allows: a TLS endpoint
    /// refuses unencrypted clients unless it lists them, a plain one takes MQTT and WebSocket.
    #[test]
    fn transports_default_by_security_profile() {
        let tls = secure(|_| {}).unwrap();
        let e = &tls.endpoints["DemoEndpoint"];
        assert_eq!(
            e.transports,
            Transports {
                mqtts: true,
                wss: true,
                ..Transports::default()
            }
        );
        let json = serde_json::to_value(&tls).unwrap();
        assert_eq!(json["Endpoint"]["DemoEndpoint"]["Transports"], "mqtts,wss");
        let plain = Config::builtin();
        assert_eq!(
            plain.endpoints["DemoEndpoint"].transports,
            Transports {
                mqtt: true,
                ws: true,
                ..Transports::default()
            }
        );
        let all =
            secure(|d| d["Endpoint"]["DemoEndpoint"]["Transports"] = "mqtt, MQTTS,ws,wss".into())
                .unwrap();
        assert_eq!(all.endpoints["DemoEndpoint"].transports.flags(), [true; 4]);
    }

    #[test]
    fn security_mistakes_name_object_and_attribute() {
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|d: &mut Value| { d["Endpoint"]["DemoEndpoint"]["SecurityProfile"] = "".into(); d["Endpoint"]["DemoEndpoint"]["Transports"] = "mqtts".into(); }),
             "Endpoint \"DemoEndpoint\", attribute Transports: lists mqtts or wss, which need a SecurityProfile with TLSEnabled"),
            (Box::new(|d: &mut Value| d["Endpoint"]["DemoEndpoint"]["Transports"] = "mqtt,quic".into()),
             "Endpoint \"DemoEndpoint\", attribute Transports: lists \"quic\"; the transports are mqtt, mqtts, ws and wss"),
            (Box::new(|d: &mut Value| d["Endpoint"]["DemoEndpoint"]["SecurityProfile"] = "Nope".into()),
             "Endpoint \"DemoEndpoint\", attribute SecurityProfile: names SecurityProfile \"Nope\", which does not exist"),
            (Box::new(|d: &mut Value| d["SecurityProfile"]["Tls"]["CertificateProfile"] = "".into()),
             "SecurityProfile \"Tls\", attribute CertificateProfile: must be set if TLSEnabled is true"),
            (Box::new(|d: &mut Value| d["SecurityProfile"]["Tls"]["CertificateProfile"] = "Other".into()),
             "SecurityProfile \"Tls\", attribute CertificateProfile: names CertificateProfile \"Other\", which does not exist"),
            (Box::new(|d: &mut Value| d["SecurityProfile"]["Tls"]["MinimumProtocolMethod"] = "TLSv1.1".into()),
             "SecurityProfile \"Tls\", attribute MinimumProtocolMethod: ironsight speaks TLS 1.2 and 1.3 only (older versions are broken); use TLSv1.2 or TLSv1.3"),
            (Box::new(|d: &mut Value| d["SecurityProfile"]["Tls"]["UseClientCertificate"] = true.into()),
             "SecurityProfile \"Tls\", attribute UseClientCertificate: needs a TrustedCertificate for this profile: the CA that signs client certificates"),
            (Box::new(|d: &mut Value| d["SecurityProfile"]["Tls"]["CRLProfile"] = "Revoked".into()),
             "SecurityProfile \"Tls\", attribute CRLProfile: applies to client certificates: set UseClientCertificate to true, or remove it"),
            (Box::new(|d: &mut Value| d["SecurityProfile"]["Tls"]["AllowNullPassword"] = true.into()),
             "SecurityProfile \"Tls\", attribute AllowNullPassword: applies to password authentication: set UsePasswordAuthentication to true, or remove it"),
            (Box::new(|d: &mut Value| d["TrustedCertificate"] = serde_json::json!([{"SecurityProfileName": "Gone", "TrustedCertificate": "ca.pem"}])),
             "TrustedCertificate \"#1\", attribute SecurityProfileName: names SecurityProfile \"Gone\", which does not exist"),
            (Box::new(|d: &mut Value| d["CRLProfile"] = serde_json::json!({"R": {"CRLSource": "http://ca.example.com/crl.pem"}})),
             "CRLProfile \"R\", attribute CRLSource: must be a file; ironsight does not download revocation lists"),
            (Box::new(|d: &mut Value| d["CertificateProfile"]["Server"]["KeyFilePassword"] = "secret".into()),
             "CertificateProfile \"Server\", attribute KeyFilePassword: is not supported by this version of ironsight"),
        ];
        for (edit, expected) in cases {
            assert_eq!(secure(edit).unwrap_err().to_string(), expected);
        }
    }

    /// Proves a SecurityProfile names its token profile as Amlen names an OAuthProfile, that
    /// a name that resolves to nothing is refused naming the attribute, and that one profile
    /// checks passwords as one kind of token only.
    #[test]
    fn token_profiles_are_referenced_by_name() {
        let jwt = serde_json::json!({"Jwt": {"KeyFileName": "jwks.json",
            "Issuer": "https://id.example.com", "Audience": "mqtt"}});
        let oauth = serde_json::json!({"OAuth": {"ResourceURL": "https://id.example.com/i",
            "UserInfoKey": "sub"}});
        let (j, o) = (jwt.clone(), oauth.clone());
        let config = secure(move |d| {
            d["JWTProfile"] = j;
            d["OAuthProfile"] = o;
            d["SecurityProfile"]["Tls"]["JWTProfile"] = "Jwt".into();
        })
        .unwrap();
        assert_eq!(config.security_profiles["Tls"].jwt_profile, "Jwt");
        assert!(
            config.authenticates(&config.endpoints["DemoEndpoint"]),
            "a token profile authenticates its endpoints"
        );
        let tls_only = secure(|_| {}).unwrap();
        assert!(!tls_only.authenticates(&tls_only.endpoints["DemoEndpoint"]));
        assert_eq!(config.jwt_profiles["Jwt"].audience, "mqtt");
        assert_eq!(
            config.oauth_profiles["OAuth"].resource_url,
            "https://id.example.com/i"
        );
        let e = secure(|d| d["SecurityProfile"]["Tls"]["OAuthProfile"] = "Gone".into());
        assert_eq!(
            e.unwrap_err().to_string(),
            "SecurityProfile \"Tls\", attribute OAuthProfile: names OAuthProfile \"Gone\", which does not exist"
        );
        let e = secure(|d| d["SecurityProfile"]["Tls"]["JWTProfile"] = "Gone".into());
        assert_eq!(
            e.unwrap_err().to_string(),
            "SecurityProfile \"Tls\", attribute JWTProfile: names JWTProfile \"Gone\", which does not exist"
        );
        let e = secure(move |d| {
            d["JWTProfile"] = jwt;
            d["OAuthProfile"] = oauth;
            d["SecurityProfile"]["Tls"]["JWTProfile"] = "Jwt".into();
            d["SecurityProfile"]["Tls"]["OAuthProfile"] = "OAuth".into();
        });
        assert_eq!(
            e.unwrap_err().to_string(),
            "SecurityProfile \"Tls\", attribute JWTProfile: cannot be set with OAuthProfile: a password is checked as one kind of token"
        );
    }

    /// Proves a client-certificate profile with its CA, CRL and list-shaped TrustedCertificate
    /// is accepted as Amlen writes it.
    #[test]
    fn client_certificate_profile_as_amlen_writes_it() {
        let config = secure(|d| {
            d["SecurityProfile"]["Tls"]["UseClientCertificate"] = true.into();
            d["SecurityProfile"]["Tls"]["CRLProfile"] = "Revoked".into();
            d["SecurityProfile"]["Tls"]["MinimumProtocolMethod"] = "TLSv1.3".into();
            d["CRLProfile"] = serde_json::json!({"Revoked": {"CRLSource": "crl.pem", "RevalidateConnection": true}});
            d["TrustedCertificate"] = serde_json::json!([{"SecurityProfileName": "Tls", "TrustedCertificate": "ca.pem"}]);
        })
        .unwrap();
        let p = &config.security_profiles["Tls"];
        assert!(p.use_client_certificate);
        assert_eq!(p.minimum_protocol_method, TlsVersion::Tls13);
        assert_eq!(p.ciphers, Ciphers::Fast);
        assert_eq!(config.crl_profiles["Revoked"].update_interval, 60);
        assert_eq!(config.trusted_certificates[0].trusted_certificate, "ca.pem");
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
