//! TLS for `ldaps://` URLs, as the LDAP object's `CheckServerCert` asks: the CA in
//! `Certificate` (TrustStore), the operating system's CAs (PublicTrust), or no check at all
//! (DisableVerify: encrypted, but to whoever answers; logged as a warning at start). The
//! crypto provider is aws-lc-rs, as for the broker's own TLS.

use std::path::Path;
use std::sync::Arc;

use ironsight_config::ldap::{CheckServerCert, Ldap as LdapObject};
use ironsight_config::ConfigError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The client configuration for the object's `ldaps://` URLs; `None` when it has none.
pub(super) fn client_config(
    ldap: &LdapObject,
    base_dir: &Path,
) -> Result<Option<Arc<ClientConfig>>, String> {
    if !ldap.uses_tls() {
        return Ok(None);
    }
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("LDAP TLS: {e}"))?;
    let config = match ldap.check_server_cert {
        CheckServerCert::TrustStore => {
            builder.with_root_certificates(trust_store(&base_dir.join(&ldap.certificate))?)
        }
        CheckServerCert::PublicTrust => builder.with_root_certificates(public_roots()?),
        CheckServerCert::DisableVerify => {
            tracing::warn!(
                "LDAP CheckServerCert is DisableVerify: the directory's certificate is not \
                 checked, so passwords go to whoever answers at its address"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        }
    };
    Ok(Some(Arc::new(config.with_no_client_auth())))
}

fn certificate_error(message: String) -> String {
    ConfigError::attribute("LDAP", "ldapconfig", "Certificate", message).to_string()
}

/// The CA certificates of a PEM file.
fn trust_store(path: &Path) -> Result<RootCertStore, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| certificate_error(format!("cannot read {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|e| {
            certificate_error(format!(
                "{} holds a certificate rustls refuses: {e}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(certificate_error(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// The operating system's CAs.
fn public_roots() -> Result<RootCertStore, String> {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "a system CA certificate could not be read");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(ConfigError::attribute(
            "LDAP",
            "ldapconfig",
            "CheckServerCert",
            "is PublicTrust, but the system has no CA certificates",
        )
        .to_string());
    }
    Ok(roots)
}

/// DisableVerify: any certificate is taken, but the handshake's signatures are still checked
/// (with the provider's algorithms), so the session is at least with the holder of the
/// certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(url: &str, certificate: &str) -> LdapObject {
        let mut doc: serde_json::Value =
            serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
        doc["LDAP"] = serde_json::json!({
            "URL": url, "Certificate": certificate, "BaseDN": "dc=example,dc=com",
            "UserIdMap": "uid", "GroupSuffix": "ou=groups,dc=example,dc=com",
            "GroupIdMap": "cn", "GroupMemberIdMap": "member",
        });
        let config = ironsight_config::Config::parse(&doc.to_string()).unwrap();
        config.ldap.unwrap()
    }

    /// Proves a CA file that is missing or holds no certificate is refused at start, naming
    /// the object and attribute; and that plain ldap:// needs no TLS at all.
    #[test]
    fn a_bad_ca_file_is_refused_with_the_attribute() {
        let dir = std::env::temp_dir().join(format!("ironsight-ldap-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
        let e = client_config(&object("ldaps://ldap", "missing.pem"), &dir).unwrap_err();
        assert!(
            e.starts_with("LDAP \"ldapconfig\", attribute Certificate: cannot read"),
            "{e}"
        );
        let e = client_config(&object("ldaps://ldap", "empty.pem"), &dir).unwrap_err();
        assert!(e.ends_with("holds no PEM certificate"), "{e}");
        assert!(client_config(&object("ldap://ldap", ""), &dir)
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
