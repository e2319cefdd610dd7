//! The token verifiers of a configuration, built once: what the server hands each endpoint's
//! [`Demands::token`](crate::check::Demands::token), and what a reload re-reads.
//!
//! One verifier per token profile, shared by every SecurityProfile (and so every endpoint)
//! that names it: one JWKS key set, one OAuth connection pool and cache.

use std::collections::BTreeMap;
use std::sync::Arc;

use ironsight_config::{Config, ConfigError};

use crate::check::TokenVerifier;
use crate::jwt::JwtVerifier;
use crate::oauth::OAuthVerifier;

/// The JWTProfiles and OAuthProfiles that some SecurityProfile names, ready to verify. A clone
/// shares the verifiers: keep one to [`reload`](TokenProfiles::reload) on SIGHUP.
#[derive(Clone, Debug, Default)]
pub struct TokenProfiles {
    jwt: BTreeMap<String, Arc<JwtVerifier>>,
    oauth: BTreeMap<String, Arc<OAuthVerifier>>,
}

impl TokenProfiles {
    /// Builds the verifier of every token profile a SecurityProfile names (reading JWKS and
    /// CA files); a profile no SecurityProfile names is checked when parsed but not built.
    pub fn load(config: &Config) -> Result<TokenProfiles, ConfigError> {
        let mut profiles = TokenProfiles::default();
        for security in config.security_profiles.values() {
            let (jwt, oauth) = (&security.jwt_profile, &security.oauth_profile);
            if !jwt.is_empty() && !profiles.jwt.contains_key(jwt) {
                let verifier = JwtVerifier::from_config(config, jwt)?;
                profiles.jwt.insert(jwt.clone(), Arc::new(verifier));
            }
            if !oauth.is_empty() && !profiles.oauth.contains_key(oauth) {
                let verifier = OAuthVerifier::from_config(config, oauth)?;
                profiles.oauth.insert(oauth.clone(), Arc::new(verifier));
            }
        }
        Ok(profiles)
    }

    /// The verifier of the SecurityProfile `security_profile`, if it checks tokens.
    pub fn verifier(
        &self,
        config: &Config,
        security_profile: &str,
    ) -> Option<Arc<dyn TokenVerifier>> {
        let security = config.security_profiles.get(security_profile)?;
        if let Some(v) = self.jwt.get(&security.jwt_profile) {
            return Some(v.clone());
        }
        let v = self.oauth.get(&security.oauth_profile)?;
        Some(v.clone())
    }

    /// Re-reads every JWTProfile's key file (on SIGHUP). A file that does not load keeps its
    /// old key set and is reported; the others are replaced.
    pub fn reload(&self) -> Vec<ConfigError> {
        self.jwt.values().filter_map(|v| v.reload().err()).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::jwt::tests::{claims, ec, jwks, sign, TempDir, NOW};

    /// Proves one verifier serves every SecurityProfile that names a token profile, an
    /// endpoint without one gets none, a missing JWKS file fails the load naming profile
    /// and attribute, and reload re-reads the key file.
    #[test]
    fn verifiers_are_built_once_per_token_profile() {
        let dir = TempDir::new("profiles");
        let mut doc: Value = serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
        doc["CertificateProfile"] = json!({"S": {"Certificate": "s.pem", "Key": "s.key"}});
        doc["JWTProfile"] = json!({"Jwt": {"KeyFileName": "jwks.json",
            "Issuer": "https://id.example.com", "Audience": "mqtt"}});
        doc["OAuthProfile"] = json!({"OAuth": {"ResourceURL": "http://127.0.0.1:1/i",
            "UserInfoKey": "sub"}});
        doc["SecurityProfile"] = json!({
            "A": {"CertificateProfile": "S", "JWTProfile": "Jwt"},
            "B": {"CertificateProfile": "S", "JWTProfile": "Jwt"},
            "C": {"CertificateProfile": "S", "OAuthProfile": "OAuth"},
            "Plain": {"CertificateProfile": "S"}});
        doc["Endpoint"]["DemoEndpoint"]["SecurityProfile"] = "A".into();
        let mut config = Config::parse(&doc.to_string()).unwrap();
        config.base_dir = dir.0.clone();
        let e = TokenProfiles::load(&config).unwrap_err().to_string();
        assert!(
            e.starts_with("JWTProfile \"Jwt\", attribute KeyFileName: cannot read "),
            "{e}"
        );
        let (old, new) = (ec("k1"), ec("k2"));
        std::fs::write(dir.0.join("jwks.json"), jwks(&[&old])).unwrap();
        let profiles = TokenProfiles::load(&config).unwrap();
        assert_eq!((profiles.jwt.len(), profiles.oauth.len()), (1, 1));
        let a = profiles.verifier(&config, "A").unwrap();
        let b = profiles.verifier(&config, "B").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(profiles.verifier(&config, "C").is_some());
        assert!(profiles.verifier(&config, "Plain").is_none());
        assert!(profiles.verifier(&config, "").is_none());
        assert!(
            config.enabled().any(|(_, e)| config.authenticates(e)),
            "the endpoint of profile A checks tokens"
        );
        let jwt = &profiles.jwt["Jwt"];
        assert!(jwt.check(sign(&claims(), &old).as_bytes(), NOW).is_ok());
        std::fs::write(dir.0.join("jwks.json"), jwks(&[&new])).unwrap();
        assert!(profiles.reload().is_empty());
        assert!(jwt.check(sign(&claims(), &new).as_bytes(), NOW).is_ok());
        std::fs::remove_file(dir.0.join("jwks.json")).unwrap();
        assert_eq!(profiles.reload().len(), 1);
        assert!(jwt.check(sign(&claims(), &new).as_bytes(), NOW).is_ok());
    }
}
