//! Signed JWTs (RFC 7519, compact form) for the two services: ES256 for APNs provider tokens,
//! RS256 for the FCM service account's OAuth assertion (RFC 7523). Signing only; the keys are
//! PKCS#8 PEM, as Apple's .p8 files and Google's service-account JSON hold them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde_json::Value;

/// A private key that signs JWTs.
pub enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.write_str(match self {
            Signer::Es256(_) => "Signer(ES256)",
            Signer::Rs256(_) => "Signer(RS256)",
        })
    }
}

/// The PKCS#8 DER inside a PEM text.
fn pkcs8(pem: &[u8]) -> Result<Vec<u8>, String> {
    match PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))? {
        PrivateKeyDer::Pkcs8(k) => Ok(k.secret_pkcs8_der().to_vec()),
        _ => Err("the key is not PKCS#8 (BEGIN PRIVATE KEY)".into()),
    }
}

impl Signer {
    /// An ES256 signer from a P-256 key in PKCS#8 PEM (Apple's .p8 file).
    pub fn es256(pem: &[u8]) -> Result<Signer, String> {
        let der = pkcs8(pem)?;
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map(Signer::Es256)
            .map_err(|e| format!("not a P-256 key: {e}"))
    }

    /// An RS256 signer from an RSA key in PKCS#8 PEM (a service account's private_key).
    pub fn rs256(pem: &[u8]) -> Result<Signer, String> {
        let der = pkcs8(pem)?;
        RsaKeyPair::from_pkcs8(&der)
            .map(Signer::Rs256)
            .map_err(|e| format!("not an RSA key: {e}"))
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Es256(_) => "ES256",
            Signer::Rs256(_) => "RS256",
        }
    }

    /// `header.claims.signature`; the header gets `alg` (and `typ`) added.
    pub fn sign(&self, mut header: Value, claims: &Value) -> String {
        header["alg"] = self.alg().into();
        header["typ"] = "JWT".into();
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let rng = SystemRandom::new();
        let signature = match self {
            // FIXED: r || s, 64 bytes, as JWS wants (RFC 7518 3.4), not DER.
            Signer::Es256(key) => key
                .sign(&rng, token.as_bytes())
                .expect("ECDSA signing fails only without randomness")
                .as_ref()
                .to_vec(),
            Signer::Rs256(key) => {
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    token.as_bytes(),
                    &mut out,
                )
                .expect("the output is the modulus's length");
                out
            }
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey};
    use serde_json::json;

    /// Proves an ES256 token verifies with the key's public half, and says alg and kid.
    #[test]
    fn es256_verifies() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(doc.as_ref())
        );
        let signer = Signer::es256(pem.as_bytes()).unwrap();
        let token = signer.sign(json!({"kid": "K1"}), &json!({"iss": "T", "iat": 1}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": "K1", "typ": "JWT"}));
        let Signer::Es256(key) = &signer else {
            unreachable!()
        };
        let public = UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            key.public_key().as_ref(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64);
        public.verify(signed.as_bytes(), &sig).unwrap();
        public.verify(b"something else", &sig).unwrap_err();
        assert!(
            Signer::rs256(pem.as_bytes()).is_err(),
            "an EC key is no RSA key"
        );
        assert!(Signer::es256(b"junk").is_err());
    }
}
