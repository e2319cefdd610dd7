//! The HTTP client every push service shares: hyper's pooled client over rustls (aws-lc-rs),
//! one pool speaking only HTTP/2 (APNs accepts nothing else) and one offering HTTP/2 and
//! HTTP/1.1 by ALPN (FCM, the OAuth token endpoint, webhooks). Connections stay open between
//! pushes, as Apple asks. Every request is bounded in time (RequestTimeout) and its answer's
//! body in size.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The largest answer body read, in bytes (error answers are a few hundred).
const BODY_BYTES_MAX: usize = 64 * 1024;
/// Idle pooled connections per host, and how long they wait for the next push.
const POOL_IDLE_MAX: usize = 16;
const POOL_IDLE: Duration = Duration::from_secs(300);
/// The longest Retry-After honoured; a service asking for more is asked again after this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);

type Pool = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What a service answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// Retry-After in seconds (the HTTP-date form is not used by these services).
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Http {
    h2_only: Pool,
    any: Pool,
    timeout: Duration,
}

/// The public roots and, when given, the CA certificates in `ca_file`.
pub fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let read = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| read(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read(&e))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| read(&e))?;
        }
    }
    Ok(roots)
}

/// rustls's client configuration over aws-lc-rs, TLS 1.2 and 1.3.
pub fn tls_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl Http {
    pub fn new(roots: rustls::RootCertStore, timeout: Duration) -> Http {
        let h2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(roots.clone()))
            .https_only()
            .enable_http2()
            .build();
        let any = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(roots))
            .https_or_http()
            .enable_all_versions()
            .build();
        let pool = |http2_only: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(POOL_IDLE)
                .pool_max_idle_per_host(POOL_IDLE_MAX)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .http2_only(http2_only);
            b
        };
        Http {
            h2_only: pool(true).build(h2),
            any: pool(false).build(any),
            timeout,
        }
    }

    /// Sends `request` and reads the answer, within RequestTimeout. An `Err` is a failure to
    /// get an answer at all (connect, TLS, reset, timeout): worth another attempt.
    pub async fn send(&self, request: Request<Full<Bytes>>, http2: bool) -> Result<Answer, String> {
        let pool = if http2 { &self.h2_only } else { &self.any };
        let exchange = async {
            let response = pool.request(request).await.map_err(|e| {
                // hyper-util's error says little alone; its source says what failed.
                match std::error::Error::source(&e) {
                    Some(source) => format!("{e}: {source}"),
                    None => e.to_string(),
                }
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(RETRY_AFTER_MAX));
            let body = Limited::new(response.into_body(), BODY_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}
