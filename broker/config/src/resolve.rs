//! From a checked [`Config`] to what the broker runs: the core's settings (policies compiled)
//! and the sockets to listen on.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ironsight_core::policy::{
    AddressFilter, ClientFilters, ConnectionRule, Pattern, PatternKind, SubscriptionRule, TopicRule,
};
use ironsight_core::queue::QueueBehavior;
use ironsight_core::settings::{BrokerSettings, EndpointSettings, Settings};

use crate::objects::{Config, MaxMessagesBehavior, PolicyFilters};
use crate::ConfigError;

/// One socket to listen on, for the endpoint at index `endpoint` of [`Config::settings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub endpoint: u16,
    pub name: String,
    pub addr: SocketAddr,
}

/// A `--listen [NAME=]ADDR:PORT` from the command line: listen there instead of the configured
/// interface and port of the endpoint `NAME` (or of the only enabled endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerOverride {
    pub endpoint: Option<String>,
    pub addr: SocketAddr,
}

impl std::str::FromStr for ListenerOverride {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (endpoint, addr) = match text.split_once('=') {
            Some((name, addr)) => (Some(name.to_string()), addr),
            None => (None, text),
        };
        let addr = addr
            .parse()
            .map_err(|e| format!("\"{addr}\" is not ADDR:PORT: {e}"))?;
        Ok(ListenerOverride { endpoint, addr })
    }
}

/// MessageSight's `Interface`: `All`/`*` (every address, IPv6 and IPv4: the listener is
/// dual-stack), or one IP address.
pub(crate) fn interface_addr(interface: &str) -> Result<IpAddr, String> {
    let text = interface.trim();
    if text.eq_ignore_ascii_case("all") || text == "*" {
        return Ok(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse()
        .map_err(|_| format!("must be All, * or an IP address, got \"{interface}\""))
}

fn behavior(b: MaxMessagesBehavior) -> QueueBehavior {
    match b {
        MaxMessagesBehavior::RejectNewMessages => QueueBehavior::RejectNewMessages,
        MaxMessagesBehavior::DiscardOldMessages => QueueBehavior::DiscardOldMessages,
    }
}

/// A policy's filters compiled; `client_id` is what its ClientID may hold. They were checked
/// when the configuration was read. With `fold_ids` (an LDAP directory with IgnoreCase, which
/// hands out user ids and group names in lower case) the UserID and GroupID filters are
/// lowered too, so that `GroupID: "AppUsers"` still names the directory's group AppUsers.
fn filters(f: &PolicyFilters, client_id: PatternKind, fold_ids: bool) -> ClientFilters {
    let pattern = |text: &str, kind| {
        let text = text.trim();
        (!text.is_empty()).then(|| Pattern::parse(text, kind).expect("checked when parsed"))
    };
    let id = |text: &str| {
        if fold_ids {
            pattern(&text.to_lowercase(), PatternKind::Name)
        } else {
            pattern(text, PatternKind::Name)
        }
    };
    let address = f.client_address.trim();
    ClientFilters {
        client_id: pattern(&f.client_id, client_id),
        address: if address.is_empty() {
            None
        } else {
            AddressFilter::parse(address).expect("checked when parsed")
        },
        user_id: id(&f.user_id),
        group_id: id(&f.group_id),
        common_name: pattern(&f.common_names, PatternKind::Name),
    }
}

impl Config {
    /// Enabled endpoints in name order; their position is the endpoint number.
    pub fn enabled(&self) -> impl Iterator<Item = (&String, &crate::objects::Endpoint)> {
        self.endpoints.iter().filter(|(_, e)| e.enabled)
    }

    /// The core's settings; `endpoints[i]` is the i-th enabled endpoint in name order.
    pub fn settings(&self) -> Settings {
        let endpoints = self
            .enabled()
            .map(|(name, e)| self.endpoint_settings(name, e))
            .collect();
        Settings {
            broker: self.broker_settings(),
            endpoints,
        }
    }

    /// The core's broker-wide settings, from the Broker object.
    pub fn broker_settings(&self) -> BrokerSettings {
        let b = &self.broker;
        BrokerSettings {
            inflight_max: b.max_inflight_messages,
            topic_aliases_max: b.max_topic_aliases,
            outbound_aliases_max: b.max_outbound_topic_aliases,
            server_keepalive_s: Some(b.server_keep_alive).filter(|&k| k > 0),
            keepalive_max_s: Some(b.max_keep_alive).filter(|&k| k > 0),
            subscriptions_max: b.max_subscriptions_per_session as usize,
            client_id_len_max: b.max_client_id_length as usize,
            topic_levels_max: b.max_topic_levels as usize,
            send_buffer_max: b.max_send_buffer_size as usize,
            connect_timeout_s: b.connect_timeout,
            packet_timeout_s: b.packet_timeout,
            retained_max: b.max_retained_messages as usize,
            sessions_max: b.max_sessions_per_core as usize,
            authentication_timeout_s: b.authentication_timeout,
            pending_authentications_max: b.max_pending_authentications as usize,
            notification_interval_s: b.disconn_client_notif_interval,
            ..BrokerSettings::default()
        }
    }

    /// The core's settings of the endpoint `name`: its limits and its policies compiled.
    pub fn endpoint_settings(&self, name: &str, e: &crate::objects::Endpoint) -> EndpointSettings {
        let fold_ids = self
            .ldap
            .as_ref()
            .is_some_and(|l| l.enabled && l.ignore_case);
        let connection_rules = e
            .connection_policies
            .iter()
            .map(|p| {
                let policy = &self.connection_policies[p];
                ConnectionRule {
                    name: p.clone(),
                    filters: filters(&policy.filters, PatternKind::ConnectionClientId, fold_ids),
                    allow_durable: policy.allow_durable,
                    allow_persistent: policy.allow_persistent_messages,
                    session_expiry_max_s: policy.max_session_expiry_interval.unwrap_or(u32::MAX),
                }
            })
            .collect();
        let topic_rules = e
            .topic_policies
            .iter()
            .map(|p| {
                let policy = &self.topic_policies[p];
                TopicRule {
                    name: p.clone(),
                    filters: filters(&policy.filters, PatternKind::Name, fold_ids),
                    topic: Pattern::parse(&policy.topic, PatternKind::Topic)
                        .expect("checked when parsed"),
                    publish: policy.allows("Publish"),
                    subscribe: policy.allows("Subscribe"),
                    queue_messages_max: policy.max_messages,
                    queue_behavior: behavior(policy.max_messages_behavior),
                    message_ttl_max_s: policy.max_message_time_to_live,
                    disconnected_client_notification: policy.disconnected_client_notification,
                }
            })
            .collect();
        let subscription_rules = e
            .subscription_policies
            .iter()
            .map(|p| {
                let policy = &self.subscription_policies[p];
                SubscriptionRule {
                    name: p.clone(),
                    filters: filters(&policy.filters, PatternKind::Name, fold_ids),
                    subscription: Pattern::parse(&policy.subscription, PatternKind::ShareName)
                        .expect("checked when parsed"),
                    receive: policy.allows("Receive"),
                    control: policy.allows("Control"),
                    queue_messages_max: policy.max_messages,
                    queue_behavior: behavior(policy.max_messages_behavior),
                }
            })
            .collect();
        EndpointSettings {
            name: name.to_string(),
            enabled: e.enabled,
            packet_size_max: u32::try_from(e.max_message_size).expect("checked at most 256MB"),
            connect_packet_size_max: u32::try_from(e.max_connect_message_size)
                .expect("checked at most MaxMessageSize"),
            authenticate: self.authenticates(e),
            connection_rules,
            topic_rules,
            subscription_rules,
        }
    }

    /// A ConfigurationPolicy's filters compiled, for the REST API's requests (which have no
    /// client id: the policy has no ClientID filter).
    pub fn configuration_filters(
        &self,
        policy: &crate::admin::ConfigurationPolicy,
    ) -> ClientFilters {
        filters(&policy.filters, PatternKind::Name, false)
    }

    /// Whether CONNECTs on `e` are authenticated: its SecurityProfile asks for a password or a
    /// token (a JWTProfile or OAuthProfile), or for a client certificate that every client must
    /// present (whose common name is then the user id). A profile that takes a certificate only
    /// when offered leaves clients without one anonymous.
    pub fn authenticates(&self, e: &crate::objects::Endpoint) -> bool {
        self.security_profiles
            .get(&e.security_profile)
            .is_some_and(|p| {
                p.use_password_authentication
                    || !p.jwt_profile.is_empty()
                    || !p.oauth_profile.is_empty()
                    || (p.use_client_certificate && p.require_client_certificate)
            })
    }

    /// The sockets to open: each enabled endpoint's interface and port, unless overridden.
    pub fn listeners(&self, overrides: &[ListenerOverride]) -> Result<Vec<Listener>, ConfigError> {
        let enabled: Vec<(u16, &String, &crate::objects::Endpoint)> = self
            .enabled()
            .enumerate()
            .map(|(i, (name, e))| (i as u16, name, e))
            .collect();
        let mut listeners = Vec::new();
        for o in overrides {
            let target = match &o.endpoint {
                Some(name) => enabled.iter().find(|(_, n, _)| *n == name).ok_or_else(|| {
                    ConfigError::document(format!("--listen names endpoint \"{name}\", which is not an enabled Endpoint"))
                })?,
                None if enabled.len() == 1 => &enabled[0],
                None => {
                    return Err(ConfigError::document(
                        "--listen without NAME= needs exactly one enabled Endpoint; write --listen NAME=ADDR:PORT",
                    ))
                }
            };
            listeners.push(Listener {
                endpoint: target.0,
                name: target.1.clone(),
                addr: o.addr,
            });
        }
        for (index, name, e) in &enabled {
            if overrides
                .iter()
                .any(|o| o.endpoint.as_deref().is_none_or(|n| n == name.as_str()))
            {
                continue; // this endpoint listens where the command line says
            }
            listeners.push(Listener {
                endpoint: *index,
                name: (*name).clone(),
                addr: Self::endpoint_addr(name, e)?,
            });
        }
        Ok(listeners)
    }

    /// Where the endpoint `name` listens: its Interface and Port.
    pub fn endpoint_addr(
        name: &str,
        e: &crate::objects::Endpoint,
    ) -> Result<SocketAddr, ConfigError> {
        let ip = interface_addr(&e.interface)
            .map_err(|m| ConfigError::attribute("Endpoint", name, "Interface", m))?;
        Ok(SocketAddr::new(ip, e.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_overrides_replace_the_configured_address() {
        let config = Config::builtin();
        let o: ListenerOverride = "127.0.0.1:1999".parse().unwrap();
        let listeners = config.listeners(&[o]).unwrap();
        assert_eq!(
            listeners,
            [Listener {
                endpoint: 0,
                name: "DemoEndpoint".into(),
                addr: "127.0.0.1:1999".parse().unwrap()
            }]
        );
        let named: ListenerOverride = "DemoEndpoint=127.0.0.1:2000".parse().unwrap();
        assert_eq!(config.listeners(&[named]).unwrap()[0].addr.port(), 2000);
        let wrong: ListenerOverride = "Other=127.0.0.1:2000".parse().unwrap();
        assert!(config.listeners(&[wrong]).is_err());
        assert!("127.0.0.1".parse::<ListenerOverride>().is_err());
    }

    #[test]
    fn interfaces_follow_messagesight() {
        assert_eq!(interface_addr("All").unwrap().to_string(), "::");
        assert_eq!(interface_addr("*").unwrap().to_string(), "::");
        assert_eq!(interface_addr("[::1]").unwrap().to_string(), "::1");
        assert!(interface_addr("localhost").is_err());
    }

    #[test]
    fn policies_compile_into_rules() {
        let settings = Config::builtin().settings();
        let endpoint = &settings.endpoints[0];
        assert_eq!(endpoint.connection_rules.len(), 1);
        let anyone = ironsight_core::policy::Subject {
            client_id: "anyone",
            principal: None,
            common_name: None,
            addr: "192.0.2.1".parse().unwrap(),
        };
        assert_eq!(endpoint.connection_rules[0].filters.refuses(&anyone), None);
        assert!(endpoint.subscription_rules.is_empty());
        let rule = &endpoint.topic_rules[0];
        assert!(rule.publish && rule.subscribe);
        assert_eq!(rule.queue_messages_max, 5000);
        assert_eq!(rule.queue_behavior, QueueBehavior::RejectNewMessages);
    }
}
