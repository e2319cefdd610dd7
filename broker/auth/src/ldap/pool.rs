//! Connections to the directory: at most `MaxConnections` open, reused across verifications.
//!
//! A connection is bound either as the broker (BindDN, for searches: the *service* role) or
//! as whoever last bound on it (the *user* role: a user bind replaces the identity, so a
//! connection used for user binds is never searched on until it is bound as the broker
//! again). Idle connections wait in two stacks, one per role, so that in a steady state no
//! operation needs an extra bind.
//!
//! The bound: a semaphore of `MaxConnections` permits is held by each operation in flight,
//! and a connection is opened only by a permit holder that found both idle stacks empty. So
//! every open connection is idle or held by a permit holder, and a new one is opened only
//! while none is idle: there are never more than `MaxConnections` (the permit holders, plus
//! idle connections that only permit holders take, and only when there are some).
//!
//! A connection that an operation fails on, or that is dropped with a cancelled verification
//! (its Timeout), is not returned: its state is unknown, and dropping the last handle closes
//! it. An idle connection the directory closed, or idle for longer than [`IDLE_MAX`], is
//! dropped when taken.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ironsight_config::ldap::Ldap as LdapObject;
use ironsight_core::auth::Refusal;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult};
use rustls::ClientConfig;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a connection may sit idle and still be reused. Firewalls and directories drop
/// idle connections, often without a word (Active Directory after MaxConnIdleTime, 900 s by
/// default; stateful firewalls after their own idle timeout), and a request sent on such a
/// connection would wait out the whole Timeout. Reopening after a quiet minute costs one
/// connection and bind.
const IDLE_MAX: Duration = Duration::from_secs(60);

/// What a connection is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Searches, bound as BindDN (or anonymous when there is no BindDN).
    Service,
    /// User binds.
    User,
}

pub(super) struct Pool {
    urls: Vec<String>,
    tls: Option<Arc<ClientConfig>>,
    connect_timeout: Duration,
    bind_dn: String,
    bind_password: String,
    permits: Semaphore,
    idle: Mutex<Idle>,
}

/// Idle connections, by the role their identity fits, each with the time it went idle; the
/// most recently used on top.
#[derive(Default)]
struct Idle {
    service: Vec<(Ldap, Instant)>,
    user: Vec<(Ldap, Instant)>,
}

impl Idle {
    /// An open idle connection that is fresh enough, of `role` if there is one, and whether it
    /// is bound as the broker. Connections found closed or stale are dropped.
    fn take(&mut self, role: Role, now: Instant) -> Option<(Ldap, bool)> {
        let (first, second) = match role {
            Role::Service => ((&mut self.service, true), (&mut self.user, false)),
            Role::User => ((&mut self.user, false), (&mut self.service, true)),
        };
        for (stack, service) in [first, second] {
            while let Some((mut ldap, since)) = stack.pop() {
                if now.duration_since(since) <= IDLE_MAX && !ldap.is_closed() {
                    return Some((ldap, service));
                }
            }
        }
        None
    }
}

impl Pool {
    pub(super) fn new(
        ldap: &LdapObject,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
    ) -> Pool {
        Pool {
            urls: ldap.urls().map(String::from).collect(),
            tls,
            connect_timeout: timeout,
            bind_dn: ldap.bind_dn.clone(),
            bind_password: ldap.bind_password.expose().to_string(),
            permits: Semaphore::new(ldap.max_connections as usize),
            idle: Mutex::new(Idle::default()),
        }
    }

    /// A connection for `role`, waiting for one while `MaxConnections` are in use.
    pub(super) async fn lease(&self, role: Role) -> Result<Lease<'_>, Refusal> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(role, Instant::now());
        let (ldap, service) = match idle {
            Some(idle) => idle,
            // A new connection is anonymous, which is the service's identity without a BindDN.
            None => (self.connect().await?, self.bind_dn.is_empty()),
        };
        let mut lease = Lease {
            pool: self,
            ldap,
            service,
            _permit: permit,
        };
        if role == Role::Service && !lease.service {
            lease.bind_service().await?;
        }
        Ok(lease)
    }

    /// Opens a connection to the first URL that answers.
    async fn connect(&self) -> Result<Ldap, Refusal> {
        for url in &self.urls {
            let mut settings = LdapConnSettings::new().set_conn_timeout(self.connect_timeout);
            if let Some(tls) = &self.tls {
                settings = settings.set_config(tls.clone());
            }
            match LdapConnAsync::with_settings(settings, url).await {
                Ok((connection, ldap)) => {
                    // The connection's reader and writer: it ends when the last handle is
                    // dropped or the directory closes the connection.
                    tokio::spawn(async move {
                        if let Err(error) = connection.drive().await {
                            tracing::debug!(%error, "directory connection closed");
                        }
                    });
                    return Ok(ldap);
                }
                Err(error) => tracing::warn!(url = %url, %error, "cannot connect to the directory"),
            }
        }
        Err(Refusal::Unavailable)
    }
}

/// A connection taken from the pool, with the permit that counts it. [`Lease::release`]
/// returns it; dropping the lease closes it.
pub(super) struct Lease<'a> {
    pool: &'a Pool,
    ldap: Ldap,
    /// Bound as BindDN (or anonymous without one): searches may run on it.
    service: bool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The connection, for a search.
    pub(super) fn ldap(&mut self) -> &mut Ldap {
        debug_assert!(
            self.service,
            "searches run on connections bound as the broker"
        );
        &mut self.ldap
    }

    /// A simple bind as `dn`: from now on the connection is that user's (or anonymous).
    pub(super) async fn bind(&mut self, dn: &str, password: &str) -> Result<LdapResult, LdapError> {
        self.service = false;
        self.ldap.simple_bind(dn, password).await
    }

    async fn bind_service(&mut self) -> Result<(), Refusal> {
        let pool = self.pool;
        let bound = self
            .ldap
            .simple_bind(&pool.bind_dn, &pool.bind_password)
            .await
            .map_err(|e| super::failed("bind as BindDN", &e))?;
        if bound.rc != 0 {
            tracing::error!(result = %bound, bind_dn = %pool.bind_dn, "the directory refused BindDN and BindPassword");
            return Err(Refusal::Unavailable);
        }
        self.service = true;
        Ok(())
    }

    /// Returns the connection to the idle stack of the role it now fits. The permit is
    /// released after (when `self` ends), so that a connection is never open uncounted.
    pub(super) fn release(self) {
        let mut idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stack = if self.service {
            &mut idle.service
        } else {
            &mut idle.user
        };
        stack.push((self.ldap, Instant::now()));
    }
}
