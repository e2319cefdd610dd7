//! What a new configuration changes, object by object, and which of it the running broker can
//! take up. Everything can, except what only a start builds:
//!
//! - `Store`: the durable store is opened, read back and locked once, at start.
//! - Authentication: the auth service is built at start from `MessagingUser`,
//!   `MessagingGroup`, `LDAP`, `OAuthProfile`, `JWTProfile`, `Broker.AuthenticationTimeout` and
//!   what each endpoint's SecurityProfile asks for (passwords, tokens, client certificates as
//!   identity). A SecurityProfile whose authentication attributes change waits whole for the
//!   restart (its TLS attributes with them); an endpoint whose authentication would change,
//!   by naming another profile or by being added with one that authenticates, keeps its
//!   running form, or is not added, until then.
//!
//! What waits is kept as it runs in the configuration that applies (`Plan::effective`), and
//! reported with what to do; the configuration file holds the new form, which the next start
//! reads. A new configuration whose live part cannot stand without the rest (an endpoint kept
//! as it runs names a policy the new configuration deleted) applies nothing and says so.

use std::collections::BTreeMap;

use ironsight_config::objects::Endpoint;
use ironsight_config::Config;
use serde::Serialize;

/// What an endpoint's clients must show, as the auth service knows it: `None` for an endpoint
/// that does not authenticate.
pub type Demands = Option<(bool, bool, bool, bool, String, String)>;

/// The demands of endpoint `e` under `config`.
pub fn demands(config: &Config, e: &Endpoint) -> Demands {
    let p = config.security_profiles.get(&e.security_profile)?;
    config.authenticates(e).then(|| {
        (
            p.use_password_authentication,
            p.allow_null_password,
            p.use_client_certificate,
            p.require_client_certificate,
            p.oauth_profile.clone(),
            p.jwt_profile.clone(),
        )
    })
}

/// The demands of every endpoint enabled at start: the auth service's view, by name.
pub fn demands_at_start(config: &Config) -> BTreeMap<String, Demands> {
    config
        .enabled()
        .map(|(name, e)| (name.clone(), demands(config, e)))
        .collect()
}

/// A new configuration, split into what applies now and what waits for a restart.
pub struct Plan {
    /// The configuration to run: the new one, with what waits for a restart as it runs.
    pub effective: Config,
    /// One line per object that changes now.
    pub changed: Vec<String>,
    /// One line per object that waits for a restart, saying why.
    pub restart_needed: Vec<String>,
}

const RESTART: &str = "restart ironsight to apply it (the configuration file already holds it)";

/// Splits `new` into what applies to the broker running `running` and what waits.
pub fn plan(running: &Config, new: &Config, at_start: &BTreeMap<String, Demands>) -> Plan {
    let mut effective = new.clone();
    let mut restart_needed = Vec::new();
    keep_what_only_a_start_builds(running, &mut effective, &mut restart_needed);
    keep_endpoint_authentication(running, &mut effective, at_start, &mut restart_needed);
    if let Err(error) = effective.check_consistency() {
        restart_needed.push(format!(
            "the whole configuration: its part that can change while the broker runs does not \
             stand without the rest ({error}); nothing was applied: {RESTART}"
        ));
        return Plan {
            effective: running.clone(),
            changed: Vec::new(),
            restart_needed,
        };
    }
    Plan {
        changed: describe(running, &effective),
        effective,
        restart_needed,
    }
}

/// The Store, the Broker's AuthenticationTimeout, the objects the auth service is built from,
/// and SecurityProfiles whose authentication changes, as they run.
fn keep_what_only_a_start_builds(running: &Config, effective: &mut Config, out: &mut Vec<String>) {
    if effective.store != running.store {
        let attributes = attributes(&running.store, &effective.store).join(", ");
        out.push(format!(
            "Store ({attributes}): the durable store is opened once, at start: {RESTART}"
        ));
        effective.store = running.store.clone();
    }
    let timeout = running.broker.authentication_timeout;
    if effective.broker.authentication_timeout != timeout {
        out.push(format!(
            "Broker, attribute AuthenticationTimeout: the authentication service takes it at \
             start: {RESTART}"
        ));
        effective.broker.authentication_timeout = timeout;
    }
    if effective.admin.endpoint != running.admin.endpoint {
        out.push(format!(
            "AdminEndpoint: the admin endpoint binds its address and TLS at start: {RESTART}"
        ));
        effective.admin.endpoint = running.admin.endpoint.clone();
    }
    let why = "the authentication service is built from it at start";
    if effective.users != running.users {
        out.push(format!(
            "MessagingUser and MessagingGroup: {why}: {RESTART}"
        ));
        effective.users = running.users.clone();
    }
    if effective.ldap != running.ldap {
        out.push(format!("LDAP: {why}: {RESTART}"));
        effective.ldap = running.ldap.clone();
    }
    keep_named(
        "OAuthProfile",
        &running.oauth_profiles,
        &mut effective.oauth_profiles,
        why,
        out,
    );
    keep_named(
        "JWTProfile",
        &running.jwt_profiles,
        &mut effective.jwt_profiles,
        why,
        out,
    );
    for (name, old) in &running.security_profiles {
        let Some(new) = effective.security_profiles.get_mut(name) else {
            continue;
        };
        let asks = |p: &ironsight_config::objects::SecurityProfile| {
            (
                p.use_password_authentication,
                p.allow_null_password,
                p.use_client_certificate,
                p.require_client_certificate,
                p.oauth_profile.clone(),
                p.jwt_profile.clone(),
            )
        };
        if asks(new) != asks(old) {
            out.push(format!(
                "SecurityProfile \"{name}\" ({}): what it asks of clients is known to the \
                 authentication service from the start; the profile keeps its running form: \
                 {RESTART}",
                attributes(old, &*new).join(", ")
            ));
            *new = old.clone();
        }
    }
}

/// Objects of one kind kept as they run, each that differs reported.
fn keep_named<T: Clone + PartialEq>(
    kind: &str,
    running: &BTreeMap<String, T>,
    effective: &mut BTreeMap<String, T>,
    why: &str,
    out: &mut Vec<String>,
) {
    if running == effective {
        return;
    }
    let names: std::collections::BTreeSet<&String> =
        running.keys().chain(effective.keys()).collect();
    for name in names {
        if running.get(name) != effective.get(name) {
            out.push(format!("{kind} \"{name}\": {why}: {RESTART}"));
        }
    }
    *effective = running.clone();
}

/// Every enabled endpoint must ask of its clients what the auth service knows it to (nothing,
/// for one it did not know at start): one that would not keeps its running form, or is not
/// added.
fn keep_endpoint_authentication(
    running: &Config,
    effective: &mut Config,
    at_start: &BTreeMap<String, Demands>,
    out: &mut Vec<String>,
) {
    let differ: Vec<String> = effective
        .enabled()
        .filter(|(name, e)| demands(effective, e) != at_start.get(*name).cloned().flatten())
        .map(|(name, _)| name.clone())
        .collect();
    for name in differ {
        let kept = match running.endpoints.get(&name) {
            Some(old) => {
                effective.endpoints.insert(name.clone(), old.clone());
                "it keeps its running form"
            }
            None => {
                effective.endpoints.remove(&name);
                "it is not added"
            }
        };
        out.push(format!(
            "Endpoint \"{name}\": the clients it authenticates, and how, are known to the \
             authentication service from the start; {kept}: {RESTART}"
        ));
    }
}

/// One line per object of `effective` that differs from `running`.
fn describe(running: &Config, effective: &Config) -> Vec<String> {
    let mut out = Vec::new();
    named(
        "MessageHub",
        &running.message_hubs,
        &effective.message_hubs,
        &mut out,
    );
    named(
        "Endpoint",
        &running.endpoints,
        &effective.endpoints,
        &mut out,
    );
    named(
        "ConnectionPolicy",
        &running.connection_policies,
        &effective.connection_policies,
        &mut out,
    );
    named(
        "TopicPolicy",
        &running.topic_policies,
        &effective.topic_policies,
        &mut out,
    );
    named(
        "SubscriptionPolicy",
        &running.subscription_policies,
        &effective.subscription_policies,
        &mut out,
    );
    named(
        "CertificateProfile",
        &running.certificate_profiles,
        &effective.certificate_profiles,
        &mut out,
    );
    named(
        "SecurityProfile",
        &running.security_profiles,
        &effective.security_profiles,
        &mut out,
    );
    named(
        "CRLProfile",
        &running.crl_profiles,
        &effective.crl_profiles,
        &mut out,
    );
    if running.trusted_certificates != effective.trusted_certificates {
        out.push("TrustedCertificate: updated".into());
    }
    if running.broker != effective.broker {
        let attributes = attributes(&running.broker, &effective.broker).join(", ");
        out.push(format!("Broker: updated ({attributes})"));
    }
    out
}

/// Created, deleted and updated objects of one kind, an update naming its attributes.
fn named<T: PartialEq + Serialize>(
    kind: &str,
    running: &BTreeMap<String, T>,
    effective: &BTreeMap<String, T>,
    out: &mut Vec<String>,
) {
    for (name, new) in effective {
        match running.get(name) {
            None => out.push(format!("{kind} \"{name}\": created")),
            Some(old) if old != new => out.push(format!(
                "{kind} \"{name}\": updated ({})",
                attributes(old, new).join(", ")
            )),
            Some(_) => {}
        }
    }
    for name in running.keys().filter(|n| !effective.contains_key(*n)) {
        out.push(format!("{kind} \"{name}\": deleted"));
    }
}

/// The attributes in which two objects differ, by their configuration names.
fn attributes<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|n| old.get(*n) != new.get(*n))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Config {
        Config::parse(&json.to_string()).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "Endpoint": {"E": {"Port": 1883, "MessageHub": "H", "ConnectionPolicies": "C",
                               "TopicPolicies": "T"}},
            "MessageHub": {"H": {}},
            "ConnectionPolicy": {"C": {"ClientID": "*"}},
            "TopicPolicy": {"T": {"Topic": "*", "ActionList": "Publish,Subscribe"}},
            "SecurityProfile": {"Plain": {"TLSEnabled": false}},
        })
    }

    /// Proves policy and endpoint changes apply, named by object and attribute, and that
    /// nothing waits for a restart.
    #[test]
    fn policies_and_endpoints_apply_live() {
        let running = config(base());
        let mut json = base();
        json["TopicPolicy"]["T"]["Topic"] = "data/*".into();
        json["TopicPolicy"]["T"]["MaxMessages"] = 10.into();
        json["Endpoint"]["F"] = json["Endpoint"]["E"].clone();
        json["Endpoint"]["F"]["Port"] = 1884.into();
        let new = config(json);
        let plan = plan(&running, &new, &demands_at_start(&running));
        assert!(plan.restart_needed.is_empty(), "{:?}", plan.restart_needed);
        assert_eq!(
            plan.changed,
            [
                "Endpoint \"F\": created",
                "TopicPolicy \"T\": updated (MaxMessages, Topic)"
            ]
        );
        assert_eq!(plan.effective, new);
    }

    /// Proves the Store and authentication wait for a restart: they keep their running form in
    /// what applies, each is reported with why, and the rest of the change applies.
    #[test]
    fn the_store_and_authentication_wait_for_a_restart() {
        let running = config(base());
        let mut json = base();
        json["Store"] = serde_json::json!({"EnableDiskPersistence": true});
        json["Broker"] = serde_json::json!({"AuthenticationTimeout": 30, "MaxTopicLevels": 8});
        json["SecurityProfile"]["Plain"]["UsePasswordAuthentication"] = true.into();
        json["SecurityProfile"]["Users"] =
            serde_json::json!({"TLSEnabled": false, "UsePasswordAuthentication": true});
        json["Endpoint"]["New"] = json["Endpoint"]["E"].clone();
        json["Endpoint"]["New"]["Port"] = 1885.into();
        json["Endpoint"]["New"]["SecurityProfile"] = "Users".into();
        let new = config(json);
        let plan = plan(&running, &new, &demands_at_start(&running));
        let waits = plan.restart_needed.join("\n");
        for object in [
            "Store (EnableDiskPersistence)",
            "Broker, attribute AuthenticationTimeout",
            "SecurityProfile \"Plain\" (UsePasswordAuthentication)",
            "Endpoint \"New\"",
        ] {
            assert!(waits.contains(object), "{object} in {waits}");
        }
        assert!(!plan.effective.store.enable_disk_persistence);
        assert_eq!(plan.effective.broker.authentication_timeout, 10);
        assert_eq!(plan.effective.broker.max_topic_levels, 8);
        assert!(!plan.effective.endpoints.contains_key("New"));
        assert!(plan
            .changed
            .contains(&"SecurityProfile \"Users\": created".to_string()));
    }

    /// Proves a new configuration whose live part cannot stand alone applies nothing: the
    /// endpoint keeps its authenticating profile, which names a TopicPolicy the new
    /// configuration deleted.
    #[test]
    fn a_live_part_that_does_not_stand_alone_applies_nothing() {
        let mut json = base();
        json["SecurityProfile"]["Plain"]["UsePasswordAuthentication"] = true.into();
        json["Endpoint"]["E"]["SecurityProfile"] = "Plain".into();
        let running = config(json.clone());
        json["Endpoint"]["E"]["SecurityProfile"] = "".into();
        json["Endpoint"]["E"]["TopicPolicies"] = "U".into();
        json["TopicPolicy"] = serde_json::json!({"U": {"Topic": "*", "ActionList": "Publish"}});
        let plan = plan(&running, &config(json), &demands_at_start(&running));
        assert!(plan.changed.is_empty());
        assert_eq!(plan.effective, running);
        assert!(
            plan.restart_needed
                .last()
                .unwrap()
                .contains("nothing was applied"),
            "{:?}",
            plan.restart_needed
        );
    }
}
