//! What ironsight keeps of a verified client certificate: the subject's common name for the
//! core's policies, and the issuer and serial number that a revocation list names it by.

use aws_lc_rs::digest;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate as a revocation list names it: a digest of its issuer's name and its serial
/// number. 16 bytes of SHA-256 tell issuers apart; the name itself can run to hundreds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RevocationKey {
    pub issuer: [u8; 16],
    pub serial: Box<[u8]>,
}

impl RevocationKey {
    pub fn new(issuer_der: &[u8], serial: &[u8]) -> RevocationKey {
        let digest = digest::digest(&digest::SHA256, issuer_der);
        let mut issuer = [0; 16];
        issuer.copy_from_slice(&digest.as_ref()[..16]);
        RevocationKey {
            issuer,
            serial: serial.into(),
        }
    }
}

/// The facts of a client certificate the handshake verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFacts {
    /// The subject's first CN, as MessageSight took it; empty when there is none.
    pub common_name: Box<str>,
    pub revocation: RevocationKey,
}

impl CertificateFacts {
    /// Reads the facts of an end-entity certificate (DER). rustls verified it already, so a
    /// parse failure here is not expected; it yields `None` and the connection is refused.
    pub fn of(der: &[u8]) -> Option<CertificateFacts> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .map(|cn| match cn.as_str() {
                Ok(text) => text.to_string(),
                Err(_) => String::from_utf8_lossy(cn.as_slice()).into_owned(),
            })
            .unwrap_or_default();
        Some(CertificateFacts {
            common_name: common_name.into(),
            revocation: RevocationKey::new(cert.issuer().as_raw(), cert.raw_serial()),
        })
    }
}
