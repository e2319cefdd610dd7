//! From the configuration's security objects to what a TLS handshake needs: one rustls
//! `ServerConfig` per SecurityProfile with TLSEnabled, built from its CertificateProfile, its
//! TrustedCertificates and its CRLProfile. Files are read here, at start and on every reload,
//! and a problem names the object and attribute, as any configuration error does.
//!
//! The crypto provider is aws-lc-rs: in an in-memory loop of server handshakes against a rustls
//! client (a throwaway experiment on the 2-CPU development VM, 2026-11-30, not kept), it
//! completed 6,300 TLS 1.3 and 9,000 TLS 1.2 full ECDSA P-256 handshakes a second on one core
//! against ring's 5,700 and 5,700 (RSA-2048: about equal), and its per-connection state was a
//! third smaller. `tests/bench/transports.py` measures the broker's handshakes end to end.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use ironsight_config::objects::{Ciphers, SecurityProfile, TlsVersion};
use ironsight_config::{Config, ConfigError};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, WebPkiClientVerifier};
use rustls::{CipherSuite, RootCertStore, ServerConfig, SupportedProtocolVersion};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::certificate::RevocationKey;
use super::secrets::CaptureTrafficSecrets;

/// One security profile's TLS settings, ready for handshakes.
pub struct TlsContext {
    pub profile: String,
    pub server: Arc<ServerConfig>,
    /// The certificates the profile's revocation lists name, when its CRLProfile asks for live
    /// connections to be checked again whenever the lists change (RevalidateConnection).
    pub revalidate: Option<Arc<HashSet<RevocationKey>>>,
}

/// TLS contexts by security profile name.
pub type TlsContexts = BTreeMap<String, Arc<TlsContext>>;

/// Builds a context for every TLS-enabled security profile.
pub fn build(config: &Config) -> Result<TlsContexts, ConfigError> {
    config
        .security_profiles
        .iter()
        .filter(|(_, p)| p.tls_enabled)
        .map(|(name, p)| Ok((name.clone(), Arc::new(context(config, name, p)?))))
        .collect()
}

/// Session tickets are sealed with keys the ticketer rotates; one ticketer for the process, so
/// that a client resumes on any shard and across reloads.
fn ticketer() -> Arc<dyn ProducesTickets> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    TICKETER
        .get_or_init(|| aws_lc_rs::Ticketer::new().expect("the system provides randomness"))
        .clone()
}

fn context(config: &Config, name: &str, p: &SecurityProfile) -> Result<TlsContext, ConfigError> {
    let provider = Arc::new(provider(p.ciphers));
    let versions: &[&SupportedProtocolVersion] = match p.minimum_protocol_method {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("the provider supports TLS 1.2 and 1.3");
    let profile_error = |attribute: &str, message: String| {
        ConfigError::attribute("SecurityProfile", name, attribute, message)
    };
    let (builder, revalidate) = if p.use_client_certificate {
        let roots = trusted_roots(config, name)?;
        let (crls, revoked) = match p.crl_profile.as_str() {
            "" => (Vec::new(), None),
            crl => revocation_lists(config, crl)?,
        };
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .with_crls(crls)
            // CRLs are for the certificates clients present; their CAs' own status is the
            // trust store's business (it lists only CAs the operator trusts).
            .only_check_end_entity_revocation();
        if !p.require_client_certificate {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier.build().map_err(|e| {
            profile_error(
                "UseClientCertificate",
                format!("cannot verify client certificates: {e}"),
            )
        })?;
        let revalidate =
            revoked.filter(|_| config.crl_profiles[&p.crl_profile].revalidate_connection);
        (builder.with_client_cert_verifier(verifier), revalidate)
    } else {
        (builder.with_no_client_auth(), None)
    };
    let (chain, key) = server_certificate(config, &p.certificate_profile)?;
    let mut server = builder.with_single_cert(chain, key).map_err(|e| {
        ConfigError::attribute(
            "CertificateProfile",
            &p.certificate_profile,
            "Key",
            format!("does not fit the certificate: {e}"),
        )
    })?;
    // The record layer after the handshake is ironsight's (records.rs): it takes the keys...
    server.enable_secret_extraction = true;
    // ... and, for TLS 1.3 key updates, the traffic secrets they derive from.
    server.key_log = Arc::new(CaptureTrafficSecrets);
    // MessageSight's UseClientCipher: by default the server's order wins.
    server.ignore_client_order = !p.use_client_cipher;
    server.ticketer = ticketer();
    // One ticket is enough to resume; each costs bytes on every handshake.
    server.send_tls13_tickets = 1;
    Ok(TlsContext {
        profile: name.to_string(),
        server: Arc::new(server),
        revalidate: revalidate.map(Arc::new),
    })
}

/// aws-lc-rs with the cipher suites in the order `ciphers` asks for. Every suite it offers is
/// an AEAD with forward secrecy; the choice is which comes first. TLS 1.3 suites come before
/// TLS 1.2 ones.
fn provider(ciphers: Ciphers) -> CryptoProvider {
    use CipherSuite::*;
    let order = |suite: CipherSuite| match (ciphers, suite) {
        (
            Ciphers::Best,
            TLS13_AES_256_GCM_SHA384
            | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ) => 0,
        (
            Ciphers::Best,
            TLS13_CHACHA20_POLY1305_SHA256
            | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ) => 1,
        (
            Ciphers::Fast | Ciphers::Medium,
            TLS13_AES_128_GCM_SHA256
            | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ) => 0,
        (
            Ciphers::Fast | Ciphers::Medium,
            TLS13_AES_256_GCM_SHA384
            | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ) => 1,
        _ => 2,
    };
    let mut provider = aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| (s.tls13().is_none(), order(s.suite())));
    provider
}

fn read_error(
    object: &str,
    name: &str,
    attribute: &str,
    path: &Path,
    e: impl std::fmt::Display,
) -> ConfigError {
    ConfigError::attribute(
        object,
        name,
        attribute,
        format!("cannot read {}: {e}", path.display()),
    )
}

fn server_certificate(
    config: &Config,
    profile: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let p = &config.certificate_profiles[profile];
    let object = "CertificateProfile";
    let cert_path = config.file(&p.certificate);
    let chain = certificates(&cert_path)
        .map_err(|e| read_error(object, profile, "Certificate", &cert_path, e))?;
    if chain.is_empty() {
        return Err(ConfigError::attribute(
            object,
            profile,
            "Certificate",
            format!("{} holds no PEM certificate", cert_path.display()),
        ));
    }
    warn_if_not_valid_now(profile, &chain[0]);
    let key_path = config.file(&p.key);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| read_error(object, profile, "Key", &key_path, e))?;
    Ok((chain, key))
}

fn certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_file_iter(path)?.collect()
}

/// A server certificate out of its validity period makes every handshake fail on the client's
/// side; say so at start rather than leave the operator to guess.
fn warn_if_not_valid_now(profile: &str, der: &CertificateDer<'_>) {
    if let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) {
        if !cert.validity().is_valid() {
            tracing::warn!(
                certificate_profile = profile,
                not_before = %cert.validity().not_before,
                not_after = %cert.validity().not_after,
                "the server certificate is not valid now; clients will refuse it"
            );
        }
    }
}

/// The CAs of every TrustedCertificate of the profile.
fn trusted_roots(config: &Config, profile: &str) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for (i, t) in config
        .trusted_certificates
        .iter()
        .enumerate()
        .filter(|(_, t)| t.security_profile_name == profile)
    {
        let label = format!("#{}", i + 1);
        let path = config.file(&t.trusted_certificate);
        let certs = certificates(&path).map_err(|e| {
            read_error("TrustedCertificate", &label, "TrustedCertificate", &path, e)
        })?;
        if certs.is_empty() {
            return Err(ConfigError::attribute(
                "TrustedCertificate",
                &label,
                "TrustedCertificate",
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                ConfigError::attribute(
                    "TrustedCertificate",
                    &label,
                    "TrustedCertificate",
                    format!("{} is not a usable CA certificate: {e}", path.display()),
                )
            })?;
        }
    }
    Ok(roots)
}

/// The revocation lists of a CRLProfile (a file of PEM or DER CRLs), for rustls, and the set of
/// certificates they revoke, for checking live connections again.
fn revocation_lists(
    config: &Config,
    profile: &str,
) -> Result<
    (
        Vec<CertificateRevocationListDer<'static>>,
        Option<HashSet<RevocationKey>>,
    ),
    ConfigError,
> {
    let path = config.file(&config.crl_profiles[profile].crl_source);
    let error =
        |message: String| ConfigError::attribute("CRLProfile", profile, "CRLSource", message);
    let bytes =
        std::fs::read(&path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
    let mut crls: Vec<CertificateRevocationListDer<'static>> =
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| error(format!("{}: {e}", path.display())))?;
    if crls.is_empty() {
        crls.push(CertificateRevocationListDer::from(bytes)); // DER
    }
    let mut revoked = HashSet::new();
    for crl in &crls {
        let (_, list) = CertificateRevocationList::from_der(crl).map_err(|e| {
            error(format!(
                "{} is not a certificate revocation list: {e}",
                path.display()
            ))
        })?;
        let issuer = list.issuer().as_raw();
        revoked.extend(
            list.iter_revoked_certificates()
                .map(|r| RevocationKey::new(issuer, r.raw_serial())),
        );
    }
    Ok((crls, Some(revoked)))
}
