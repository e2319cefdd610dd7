//! The TLS client configuration of `--tls`: the CA that verifies the broker, the certificate the
//! clients present (if any), the versions they offer. Built in the parent first, so that a bad
//! file refuses the run before anything connects, then again in each worker (a rustls
//! configuration does not cross processes; the paths do).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use serde::{Deserialize, Serialize};

use crate::cli::TlsVersion;

/// `--tls` as checked: files by path, read again by each worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsSpec {
    /// PEM CA bundle that verifies the broker's certificate.
    pub cafile: PathBuf,
    /// The client certificate chain and its key, PEM.
    pub identity: Option<Identity>,
    /// The one version offered; `None` offers 1.3 and 1.2.
    pub version: Option<TlsVersion>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why `--tls` cannot be set up, naming the option and file at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error("--cafile {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("--cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("--key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("--host {host:?} cannot be a TLS server name: {reason}")]
    ServerName { host: String, reason: String },
    #[error("--cert and --key: {0}")]
    Identity(String),
}

/// What every TLS connection of a worker shares.
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// The --host value the broker's certificate must name (an IP address or a DNS name).
    pub server_name: ServerName<'static>,
}

/// Reads the files of `spec` and builds the client configuration for the broker at `host`.
pub fn client(spec: &TlsSpec, host: &str) -> Result<TlsClient, TlsError> {
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| TlsError::ServerName {
        host: host.to_string(),
        reason: e.to_string(),
    })?;
    let versions: &[&SupportedProtocolVersion] = match spec.version {
        None => rustls::DEFAULT_VERSIONS,
        Some(TlsVersion::V1_2) => &[&rustls::version::TLS12],
        Some(TlsVersion::V1_3) => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_root_certificates(roots(&spec.cafile)?);
    let mut config = match &spec.identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = certificates(&id.cert).map_err(|reason| TlsError::Cert {
                path: id.cert.display().to_string(),
                reason,
            })?;
            let key = PrivateKeyDer::from_pem_file(&id.key).map_err(|e| TlsError::Key {
                path: id.key.display().to_string(),
                reason: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Identity(e.to_string()))?
        }
    };
    // Every connection does a full handshake: the connection-storm figures must measure what
    // a broker pays for a fleet of devices that all connect anew (after a restart or a network
    // cut), and a resumed session skips the certificate and key exchange that cost most.
    config.resumption = Resumption::disabled();
    Ok(TlsClient {
        config: Arc::new(config),
        server_name,
    })
}

/// aws-lc-rs offering the classic key exchanges only (X25519, P-256, P-384), as the devices and
/// client libraries of today do: a broker preferring the post-quantum hybrid would otherwise do
/// more work for this tool than for the fleets it is measured for, and brokers without it
/// (OpenSSL 3.0's Mosquitto) would be compared on different key exchanges.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ];
    provider
}

fn roots(cafile: &Path) -> Result<RootCertStore, TlsError> {
    let error = |reason: String| TlsError::CaFile {
        path: cafile.display().to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(cafile).map_err(error)? {
        roots.add(cert).map_err(|e| error(e.to_string()))?;
    }
    Ok(roots)
}

/// Every certificate of a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cafile: &Path) -> TlsSpec {
        TlsSpec {
            cafile: cafile.to_path_buf(),
            identity: None,
            version: None,
        }
    }

    /// Proves a missing or empty CA file and an unusable server name are refused with the
    /// option and the file named.
    #[test]
    fn bad_inputs_named() {
        let dir = std::env::temp_dir().join(format!("isb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = client(&spec(&missing), "127.0.0.1").err().unwrap();
        assert!(
            matches!(&err, TlsError::CaFile { path, .. } if path.contains("missing.pem")),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client(&spec(&empty), "127.0.0.1").err().unwrap();
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
        let err = client(&spec(&empty), "bad name!").err().unwrap();
        assert!(matches!(err, TlsError::ServerName { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
