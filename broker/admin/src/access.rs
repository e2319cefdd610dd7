//! Who may do what: HTTP basic authentication of the administrator (`AdminUserID`,
//! `AdminUserPassword`), then the AdminEndpoint's ConfigurationPolicies, in order: the first
//! whose filters match the request and whose ActionList holds its action lets it through.
//!
//! The password is checked as a users-file password is: against its SCRAM-SHA-256 verifier,
//! PBKDF2 on tokio's blocking pool, verified credentials remembered for a few minutes (keyed,
//! never in clear), an unknown user costing what a wrong password costs
//! (`ironsight_auth::UserRegistry`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ironsight_auth::{Directory, UserRegistry};
use ironsight_config::admin::Action;
use ironsight_config::users::{MessagingUser, Users};
use ironsight_config::Config;
use ironsight_core::auth::Refusal as AuthRefusal;
use ironsight_core::policy::{ClientFilters, Subject};
use zeroize::Zeroizing;

use crate::error::{Code, Refusal};

/// The longest Authorization header read, in bytes: a user id and a password as long as MQTT
/// allows (65,535 bytes each), in base64.
const AUTHORIZATION_MAX: usize = 4 * (2 * 65_535 + 1) / 3 + 16;

/// The administrator and the policies, from one configuration.
pub struct Access {
    /// `None`: no password is set, and every request is refused.
    registry: Option<Arc<UserRegistry>>,
    /// Empty: the administrator may do everything.
    policies: Vec<Policy>,
}

struct Policy {
    name: String,
    filters: ClientFilters,
    actions: Vec<Action>,
}

impl Access {
    pub fn from_config(config: &Config) -> Access {
        let admin = &config.admin;
        let registry = admin.password.as_ref().map(|password| {
            let user = MessagingUser {
                description: String::new(),
                password: password.clone(),
                group_membership: Vec::new(),
            };
            let users = Users {
                users: BTreeMap::from([(admin.user_id.clone(), user)]),
                groups: BTreeMap::new(),
            };
            Arc::new(UserRegistry::new(&users))
        });
        let names = admin
            .endpoint
            .as_ref()
            .map_or(&[][..], |e| e.configuration_policies.as_slice());
        let policies = names
            .iter()
            .filter_map(|name| {
                let p = admin.policies.get(name)?;
                Some(Policy {
                    name: name.clone(),
                    filters: config.configuration_filters(p),
                    actions: Action::ALL.into_iter().filter(|a| p.allows(*a)).collect(),
                })
            })
            .collect();
        Access { registry, policies }
    }

    pub fn has_password(&self) -> bool {
        self.registry.is_some()
    }

    /// Lets a request through, or says why not: 401 without a password set or with wrong
    /// credentials, 403 when no policy grants `action` from `peer`. `set_password` says how
    /// to set a password, for the first case.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        peer: IpAddr,
        action: Action,
        set_password: &str,
    ) -> Result<(), Refusal> {
        let Some(registry) = &self.registry else {
            return Err(Refusal::new(
                Code::Unauthorized,
                format!(
                    "no administrator password is set, so every request is refused; {set_password}"
                ),
            ));
        };
        let (user, password) = credentials(headers)?;
        let principal =
            registry
                .verify(&user, &password)
                .await
                .map_err(|refusal| match refusal {
                    AuthRefusal::Unavailable => Refusal::new(
                        Code::Unavailable,
                        "the password could not be checked in time; try again",
                    ),
                    // Not naming the administrator: that is half of what a guesser needs.
                    _ => Refusal::new(Code::Unauthorized, "wrong user or password"),
                })?;
        if self.policies.is_empty() {
            return Ok(());
        }
        let subject = Subject {
            client_id: "",
            principal: Some(&principal),
            common_name: None,
            addr: peer.to_canonical(),
        };
        let granted = self
            .policies
            .iter()
            .any(|p| p.actions.contains(&action) && p.filters.refuses(&subject).is_none());
        if granted {
            return Ok(());
        }
        let names: Vec<&str> = self.policies.iter().map(|p| p.name.as_str()).collect();
        Err(Refusal::new(
            Code::Forbidden,
            format!(
                "no ConfigurationPolicy of the AdminEndpoint ({}) grants {} to user \"{}\" from {}",
                names.join(", "),
                action.name(),
                principal.user_id,
                subject.addr
            ),
        ))
    }
}

/// The user and password of a basic Authorization header.
fn credentials(headers: &HeaderMap) -> Result<(String, Zeroizing<Vec<u8>>), Refusal> {
    let missing = || {
        Refusal::new(
            Code::Unauthorized,
            "this request needs the administrator's user and password (HTTP basic authentication)",
        )
    };
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(missing)?;
    if value.len() > AUTHORIZATION_MAX {
        return Err(Refusal::new(
            Code::Unauthorized,
            "the Authorization header is longer than any user and password",
        ));
    }
    let encoded = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or_else(|| {
            Refusal::new(
                Code::Unauthorized,
                "only HTTP basic authentication is accepted (Authorization: Basic ...)",
            )
        })?;
    let decoded =
        Zeroizing::new(BASE64.decode(encoded.trim()).map_err(|_| {
            Refusal::new(Code::Unauthorized, "the basic credentials are not base64")
        })?);
    let colon = decoded.iter().position(|&b| b == b':').ok_or_else(|| {
        Refusal::new(
            Code::Unauthorized,
            "the basic credentials have no ':' between user and password",
        )
    })?;
    let user = std::str::from_utf8(&decoded[..colon])
        .map_err(|_| Refusal::new(Code::Unauthorized, "the user is not UTF-8"))?
        .to_string();
    Ok((user, Zeroizing::new(decoded[colon + 1..].to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config(extra: serde_json::Value) -> Config {
        let mut doc: serde_json::Value =
            serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
        let verifier = ironsight_auth::scram::hash_password(b"secret", 4096).unwrap();
        doc["AdminEndpoint"] = serde_json::json!({});
        doc["AdminUserPassword"] = verifier.to_string().into();
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        Config::parse(&doc.to_string()).unwrap()
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", BASE64.encode(format!("{user}:{password}")));
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        headers
    }

    fn local() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    /// Proves the administrator's password lets every action through when no policy is
    /// listed, and that missing, malformed and wrong credentials are refused with 401, a
    /// wrong password without naming the administrator to the guesser.
    #[tokio::test]
    async fn basic_authentication() {
        let access = Access::from_config(&config(serde_json::json!({})));
        let ok = access
            .check(&basic("admin", "secret"), local(), Action::Configure, "")
            .await;
        assert_eq!(ok, Ok(()));
        for headers in [
            HeaderMap::new(),
            basic("admin", "wrong"),
            basic("root", "secret"),
        ] {
            let e = access
                .check(&headers, local(), Action::View, "")
                .await
                .unwrap_err();
            assert_eq!(e.code, Code::Unauthorized, "{e:?}");
            assert!(!e.message.contains("\"admin\""), "{e:?}");
        }
        let e = access
            .check(&basic("root", "secret"), local(), Action::View, "")
            .await
            .unwrap_err();
        assert_eq!(e.message, "wrong user or password");
        let mut bearer = HeaderMap::new();
        bearer.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        let e = access
            .check(&bearer, local(), Action::View, "")
            .await
            .unwrap_err();
        assert!(e.message.contains("basic authentication"), "{e:?}");
    }

    /// Proves a configuration without a password refuses everything, saying how to set one.
    #[tokio::test]
    async fn no_password_refuses_everything() {
        let mut c = config(serde_json::json!({}));
        c.admin.password = None;
        let access = Access::from_config(&c);
        assert!(!access.has_password());
        let e = access
            .check(&basic("admin", "secret"), local(), Action::View, "run this")
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::Unauthorized);
        assert!(e.message.ends_with("run this"), "{}", e.message);
    }

    /// Proves policies grant their actions only, to the addresses and users they name.
    #[tokio::test]
    async fn policies_grant_their_actions() {
        let access = Access::from_config(&config(serde_json::json!({
            "AdminEndpoint": {"ConfigurationPolicies": "Readers,Local"},
            "ConfigurationPolicy": {
                "Readers": {"UserID": "admin", "ActionList": "View,Monitor"},
                "Local": {"ClientAddress": "10.1.1.1", "ActionList": "Configure,Manage"}},
        })));
        let admin = basic("admin", "secret");
        assert_eq!(
            access.check(&admin, local(), Action::View, "").await,
            Ok(())
        );
        let e = access
            .check(&admin, local(), Action::Configure, "")
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::Forbidden);
        assert_eq!(
            e.message,
            "no ConfigurationPolicy of the AdminEndpoint (Readers, Local) grants Configure to user \"admin\" from 127.0.0.1"
        );
        let there: IpAddr = "::ffff:10.1.1.1".parse().unwrap();
        assert_eq!(
            access.check(&admin, there, Action::Manage, "").await,
            Ok(())
        );
    }
}
