//! What a CONNECT must show on its endpoint, and who it is once it has.
//!
//! An endpoint's SecurityProfile asks for a user name and password
//! (`UsePasswordAuthentication`), a client certificate (`UseClientCertificate`), or both:
//! - **password**: a [`Directory`] (the users file or LDAP) checks the user name and password
//!   and names the user's groups. A user name without a password is refused, unless
//!   `AllowNullPassword` is set *and* the transport verified a client certificate: then the
//!   certificate is the credential and the user name is taken as given, with the groups the
//!   directory holds for it (none if it does not know the user).
//! - **certificate alone**: the certificate's common name is the user id.
//! - **token**: with a JWTProfile or OAuthProfile, the password is a token and a
//!   [`TokenVerifier`] says whose it is; the directory is not asked. The user name may be
//!   absent (MQTT 5 allows a password without one), MessageSight's marker
//!   [`TOKEN_USER_NAME`], or the user id the token proves: any other name is refused, so that
//!   a client cannot present one identity in its CONNECT and hold another.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironsight_config::Config;
use ironsight_core::auth::{AuthAnswer, AuthRequest, AuthVerdict, Principal, Refusal};

use crate::enhanced::Enhanced;
use crate::tokens::TokenProfiles;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where user names and passwords are checked: the users file or an LDAP directory.
pub trait Directory: Send + Sync {
    /// Whether `password` is `user`'s, and the user's groups. An unknown user and a wrong
    /// password are both [`Refusal::BadCredentials`]; a directory that cannot answer is
    /// [`Refusal::Unavailable`].
    fn verify<'a>(&'a self, user: &'a str, password: &'a [u8]) -> BoxFuture<'a, AuthVerdict>;

    /// Who `user` is when another credential (a verified client certificate, with
    /// `AllowNullPassword`) stands for the password: the user with its groups, or with none if
    /// the directory does not know it. [`Refusal::Unavailable`] when the directory cannot
    /// answer: a client whose groups could not be read is not let in without them.
    fn identify<'a>(&'a self, user: &'a str) -> BoxFuture<'a, AuthVerdict>;
}

/// The user name MessageSight's OAuth clients send with a token as password; ironsight accepts
/// it too, so that those apps connect unchanged.
pub const TOKEN_USER_NAME: &str = "IMA_OAUTH_ACCESS_TOKEN";

/// Where a password that is a token is checked: a JWTProfile's key set or an OAuthProfile's
/// authorization server.
pub trait TokenVerifier: Send + Sync + fmt::Debug {
    /// Whose `token` is. A token that does not verify is [`Refusal::BadCredentials`]; a token
    /// service that cannot answer is [`Refusal::Unavailable`].
    fn verify<'a>(&'a self, token: &'a [u8]) -> BoxFuture<'a, AuthVerdict>;
}

/// What one endpoint's SecurityProfile asks of its clients.
#[derive(Clone, Debug, Default)]
pub struct Demands {
    /// `UsePasswordAuthentication`.
    pub password: bool,
    /// `AllowNullPassword`.
    pub allow_null_password: bool,
    /// `UseClientCertificate`.
    pub certificate: bool,
    /// `JWTProfile` or `OAuthProfile`: the password is a token, checked here. Profiles shared
    /// by several endpoints share one verifier (one key set, one cache).
    pub token: Option<Arc<dyn TokenVerifier>>,
}

/// The checks of every endpoint, by endpoint number, and the directory they use.
pub struct Checker {
    endpoints: Vec<Demands>,
    directory: Option<Arc<dyn Directory>>,
    /// SCRAM-SHA-256 over MQTT 5 AUTH, where the directory is the users file.
    enhanced: Option<Enhanced>,
    timeout: Duration,
}

impl Checker {
    pub fn new(
        endpoints: Vec<Demands>,
        directory: Option<Arc<dyn Directory>>,
        timeout: Duration,
    ) -> Checker {
        Checker {
            endpoints,
            directory,
            enhanced: None,
            timeout,
        }
    }

    /// Offers MQTT 5 enhanced authentication on the endpoints that check passwords.
    pub fn with_enhanced(mut self, enhanced: Enhanced) -> Checker {
        self.enhanced = Some(enhanced);
        self
    }

    /// The demands of every enabled endpoint of `config`, by endpoint number (the order of
    /// `Config::enabled`, as the core numbers them), with the token verifiers of `tokens`.
    pub fn from_config(
        config: &Config,
        directory: Option<Arc<dyn Directory>>,
        tokens: &TokenProfiles,
    ) -> Checker {
        let endpoints = config
            .enabled()
            .map(
                |(_, e)| match config.security_profiles.get(&e.security_profile) {
                    Some(p) if config.authenticates(e) => Demands {
                        password: p.use_password_authentication,
                        allow_null_password: p.allow_null_password,
                        certificate: p.use_client_certificate,
                        token: tokens.verifier(config, &e.security_profile),
                    },
                    _ => Demands::default(),
                },
            )
            .collect();
        let timeout = Duration::from_secs(u64::from(config.broker.authentication_timeout));
        Checker::new(endpoints, directory, timeout)
    }

    /// The bound on one check, after which the client is told the server is unavailable.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One round of `request`'s authentication.
    pub async fn check(&self, request: &AuthRequest) -> AuthAnswer {
        let Some(method) = &request.method else {
            return self.check_credentials(request).await.into();
        };
        let passwords = self
            .endpoints
            .get(usize::from(request.endpoint))
            .is_some_and(|d| d.password && d.token.is_none());
        match &self.enhanced {
            Some(enhanced) if passwords => enhanced.step(request, Instant::now()),
            _ => {
                // [MQTT-4.12.0-1] a method the endpoint does not offer.
                tracing::debug!(conn = request.conn, %method, "authentication method not offered");
                Err(Refusal::BadMethod).into()
            }
        }
    }

    async fn check_credentials(&self, request: &AuthRequest) -> AuthVerdict {
        let no_demands = Demands::default();
        let demands = self
            .endpoints
            .get(usize::from(request.endpoint))
            .unwrap_or(&no_demands);
        if let Some(verifier) = &demands.token {
            return check_token(verifier.as_ref(), request).await;
        }
        if demands.password {
            return self.check_password(demands, request).await;
        }
        if demands.certificate {
            return certificate_user(request);
        }
        // The core asks only for endpoints with demands: an endpoint missing here is a bug,
        // and refusing is the safe answer to it.
        tracing::error!(
            endpoint = request.endpoint,
            "authentication asked for an endpoint without demands"
        );
        Err(Refusal::NotAuthorized)
    }

    async fn check_password(&self, demands: &Demands, request: &AuthRequest) -> AuthVerdict {
        let Some(user) = request.user_name.as_deref().filter(|u| !u.is_empty()) else {
            tracing::debug!(conn = request.conn, "no user name where one is required");
            return Err(Refusal::BadCredentials);
        };
        let password = request.password.as_deref().unwrap_or_default();
        if password.is_empty() {
            if demands.allow_null_password && request.common_name.is_some() {
                return match &self.directory {
                    Some(directory) => directory.identify(user).await,
                    None => Ok(Arc::new(Principal::new(user, []))),
                };
            }
            tracing::debug!(
                conn = request.conn,
                user,
                "no password where one is required"
            );
            return Err(Refusal::BadCredentials);
        }
        let Some(directory) = &self.directory else {
            tracing::error!("password authentication without a directory");
            return Err(Refusal::Unavailable);
        };
        let verdict = directory.verify(user, password).await;
        if let Err(refusal) = &verdict {
            tracing::info!(
                conn = request.conn,
                user,
                ?refusal,
                "authentication refused"
            );
        }
        verdict
    }
}

/// A password that is a token: the verifier says whose it is, and the user name, if any, must
/// agree (see the module's note).
async fn check_token(verifier: &dyn TokenVerifier, request: &AuthRequest) -> AuthVerdict {
    let token = request.password.as_deref().unwrap_or_default();
    if token.is_empty() {
        tracing::debug!(conn = request.conn, "no token where one is required");
        return Err(Refusal::BadCredentials);
    }
    let principal = verifier.verify(token).await.inspect_err(|refusal| {
        tracing::info!(conn = request.conn, ?refusal, "token refused");
    })?;
    match request.user_name.as_deref().filter(|u| !u.is_empty()) {
        None | Some(TOKEN_USER_NAME) => Ok(principal),
        Some(name) if name == &*principal.user_id => Ok(principal),
        Some(name) => {
            tracing::info!(
                conn = request.conn,
                user = %principal.user_id,
                user_name = name,
                "token refused: the CONNECT names another user"
            );
            Err(Refusal::BadCredentials)
        }
    }
}

/// A client known by its certificate alone: its common name is its user id.
fn certificate_user(request: &AuthRequest) -> AuthVerdict {
    match request.common_name.as_deref().filter(|cn| !cn.is_empty()) {
        Some(cn) => Ok(Arc::new(Principal::new(cn, []))),
        None => {
            tracing::debug!(conn = request.conn, "no client certificate common name");
            Err(Refusal::NotAuthorized)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use ironsight_codec::{ByteString, Bytes};
    use serde_json::json;

    use super::*;
    use crate::jwt::tests::{claims, ec, jwks, rules, sign};
    use crate::jwt::{JwtVerifier, KeySet};

    fn request(user_name: Option<&str>, password: Option<&str>) -> AuthRequest {
        AuthRequest {
            shard: 0,
            conn: 7,
            ticket: 1,
            endpoint: 0,
            client_id: "phone-1".into(),
            user_name: user_name.map(ByteString::from),
            password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            common_name: None,
            method: None,
            data: None,
            step: 0,
        }
    }

    /// The verdict of a one-round answer.
    pub(crate) fn verdict(answer: AuthAnswer) -> AuthVerdict {
        match answer {
            AuthAnswer::Done {
                verdict,
                data: None,
            } => verdict,
            other => panic!("not a one-round verdict: {other:?}"),
        }
    }

    /// Proves an endpoint with a token profile checks the password as a token (a real JWT
    /// verifier, no directory configured), with the user name absent, MessageSight's marker,
    /// or the token's own user id; another user name, no password, or a bad token is refused
    /// as bad credentials.
    #[tokio::test]
    async fn a_token_endpoint_checks_the_password_as_a_token() {
        let key = ec("e1");
        let keys = KeySet::from_jwks(&jwks(&[&key])).unwrap();
        let mut rules = rules();
        rules.leeway_s = 0;
        let verifier = Arc::new(JwtVerifier::new("Jwt", rules, keys));
        let demands = Demands {
            token: Some(verifier),
            ..Demands::default()
        };
        let checker = Checker::new(vec![demands], None, Duration::from_secs(1));
        let mut good = claims();
        good["exp"] = json!(crate::jwt::now_s() + 600);
        good["nbf"] = json!(crate::jwt::now_s() - 10);
        let token = sign(&good, &key);
        for user in [None, Some(""), Some(TOKEN_USER_NAME), Some("alice")] {
            let principal = verdict(checker.check(&request(user, Some(&token))).await).unwrap();
            assert_eq!(&*principal.user_id, "alice", "{user:?}");
            assert!(principal.in_group("staff"));
        }
        let refused = [
            request(Some("bob"), Some(&token)),
            request(Some("alice"), None),
            request(None, Some("")),
            request(Some("alice"), Some("alice's password")),
        ];
        for r in refused {
            assert_eq!(
                verdict(checker.check(&r).await),
                Err(Refusal::BadCredentials),
                "{r:?}"
            );
        }
        let mut old = good.clone();
        old["exp"] = json!(crate::jwt::now_s() - 1);
        let expired = sign(&old, &key);
        let r = request(Some(TOKEN_USER_NAME), Some(&expired));
        assert_eq!(
            verdict(checker.check(&r).await),
            Err(Refusal::BadCredentials)
        );
    }
}
