//! What a CONNECT must show on its endpoint, and who it is once it has.
//!
//! An endpoint's SecurityProfile asks for a user name and password
//! (`UsePasswordAuthentication`), a client certificate (`UseClientCertificate`), or both:
//! - **password**: a [`Directory`] (the users file or LDAP) checks the user name and password
//!   and names the user's groups. A user name without a password is refused, unless
//!   `AllowNullPassword` is set *and* the transport verified a client certificate: then the
//!   certificate is the credential and the user name is taken as given, with no groups.
//! - **certificate alone**: the certificate's common name is the user id.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ironsight_core::auth::{AuthRequest, AuthVerdict, Principal, Refusal};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where user names and passwords are checked: the users file or an LDAP directory.
pub trait Directory: Send + Sync {
    /// Whether `password` is `user`'s, and the user's groups. An unknown user and a wrong
    /// password are both [`Refusal::BadCredentials`]; a directory that cannot answer is
    /// [`Refusal::Unavailable`].
    fn verify<'a>(&'a self, user: &'a str, password: &'a [u8]) -> BoxFuture<'a, AuthVerdict>;
}

/// What one endpoint's SecurityProfile asks of its clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demands {
    /// `UsePasswordAuthentication`.
    pub password: bool,
    /// `AllowNullPassword`.
    pub allow_null_password: bool,
    /// `UseClientCertificate`.
    pub certificate: bool,
}

impl Demands {
    /// Whether a CONNECT on such an endpoint is checked at all (else it is anonymous).
    pub fn any(&self) -> bool {
        self.password || self.certificate
    }
}

/// The checks of every endpoint, by endpoint number, and the directory they use.
pub struct Checker {
    endpoints: Vec<Demands>,
    directory: Option<Arc<dyn Directory>>,
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
            timeout,
        }
    }

    /// The bound on one check, after which the client is told the server is unavailable.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn check(&self, request: &AuthRequest) -> AuthVerdict {
        let demands = self
            .endpoints
            .get(usize::from(request.endpoint))
            .copied()
            .unwrap_or_default();
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

    async fn check_password(&self, demands: Demands, request: &AuthRequest) -> AuthVerdict {
        let Some(user) = request.user_name.as_deref().filter(|u| !u.is_empty()) else {
            tracing::debug!(conn = request.conn, "no user name where one is required");
            return Err(Refusal::BadCredentials);
        };
        let password = request.password.as_deref().unwrap_or_default();
        if password.is_empty() {
            if demands.allow_null_password && request.common_name.is_some() {
                return Ok(Arc::new(Principal::new(user, [])));
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
