//! Locally verified JWTs (a `JWTProfile`): the CONNECT password is a JWS-signed JWT (RFC 7519,
//! compact form), checked against the public keys of a JWKS file (RFC 7517), so that a
//! connect needs no round trip to the identity provider.
//!
//! What is checked, in order: the token's shape; its `alg` against the key's (the key decides
//! the algorithm: `none` and HMAC are never accepted, so an HS256 token "signed" with a
//! public key as its secret finds no key to verify it); the signature; then `exp`
//! (required), `nbf`, `iss` and `aud`, each with the profile's clock leeway; then the user id
//! and the groups from their claims. Any failure refuses the token
//! ([`Refusal::BadCredentials`]); the reason goes to the debug log, the token never does.
//!
//! The key set is read when the verifier is built and again on [`JwtVerifier::reload`]; a new
//! set replaces the old one whole (verifications in flight keep the set they started with),
//! and a set that does not load leaves the old one in place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ironsight_config::tokens::JwtProfile;
use ironsight_config::{Config, ConfigError};
use ironsight_core::auth::{AuthVerdict, Principal, Refusal};
use serde_json::{Map, Value};

use crate::check::{BoxFuture, TokenVerifier};

/// The longest token accepted, in bytes: a JWT with a few hundred groups fits; the CONNECT
/// that carries it is bounded before this by `MaxConnectMessageSize`.
pub const TOKEN_BYTES_MAX: usize = 16 * 1024;
/// The largest JWKS file read, in bytes.
const JWKS_BYTES_MAX: u64 = 1024 * 1024;
/// The most keys one JWKS file may hold (identity providers publish two or three).
const KEYS_MAX: usize = 64;
/// The most groups a token may name.
pub const GROUPS_MAX: usize = 1024;
/// The longest user id or group name, in bytes (Amlen's `UserID` and `GroupID` limit).
pub const NAME_BYTES_MAX: usize = 1024;
/// RSA keys shorter than this are refused when the key set loads (RFC 7518 3.3).
const RSA_BITS_MIN: usize = 2048;

/// The signature algorithms a key may carry (RFC 7518 3.1, RFC 8037 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Alg {
    fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            // RFC 9864 names the algorithm after the curve; both spellings are EdDSA over Ed25519.
            "EdDSA" | "Ed25519" => Alg::EdDsa,
            _ => return None,
        })
    }

    fn rsa(self) -> Option<&'static RsaParameters> {
        Some(match self {
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::Es256 | Alg::Es384 | Alg::EdDsa => return None,
        })
    }
}

/// One public key of the set, bound to the one algorithm it verifies.
struct Key {
    kid: Option<String>,
    alg: Alg,
    key: ParsedPublicKey,
}

/// The public keys of one JWKS file.
pub struct KeySet {
    keys: Vec<Key>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (k.kid.as_deref(), k.alg)))
            .finish()
    }
}

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("\"{name}\" is not a string")),
    }
}

fn bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = member(jwk, name)?.ok_or_else(|| format!("has no \"{name}\""))?;
    b64(text).ok_or_else(|| format!("\"{name}\" is not base64url"))
}

impl KeySet {
    /// Reads a JWKS document. Encryption keys (`"use": "enc"`) are skipped; a symmetric key,
    /// an unknown key type or algorithm, or a weak RSA key refuses the whole set, so that a
    /// mistake in the file is seen when it loads rather than as refused clients.
    pub fn from_jwks(text: &str) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Some(Value::Array(jwks)) = doc.get("keys") else {
            return Err("has no \"keys\" array".into());
        };
        if jwks.len() > KEYS_MAX {
            return Err(format!("holds {} keys; at most {KEYS_MAX}", jwks.len()));
        }
        let mut keys: Vec<Key> = Vec::with_capacity(jwks.len());
        for (i, jwk) in jwks.iter().enumerate() {
            let Value::Object(jwk) = jwk else {
                return Err(format!("key #{} is not an object", i + 1));
            };
            let key = match Self::key(jwk) {
                Ok(None) => continue,
                Ok(Some(key)) => key,
                Err(e) => {
                    let kid = member(jwk, "kid").ok().flatten().unwrap_or("");
                    return Err(format!("key #{} (kid \"{kid}\") {e}", i + 1));
                }
            };
            if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
                return Err(format!("key #{}: kid appears twice", i + 1));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("holds no signature key".into());
        }
        Ok(KeySet { keys })
    }

    fn key(jwk: &Map<String, Value>) -> Result<Option<Key>, String> {
        if member(jwk, "use")? == Some("enc") {
            return Ok(None);
        }
        let kid = member(jwk, "kid")?.map(String::from);
        let named = match member(jwk, "alg")? {
            None => None,
            Some(name) => Some(
                Alg::from_name(name)
                    .ok_or_else(|| format!("has algorithm \"{name}\", which is not supported"))?,
            ),
        };
        let kty = member(jwk, "kty")?.ok_or("has no \"kty\"")?;
        let (alg, key) = match kty {
            "RSA" => Self::rsa(jwk, named.unwrap_or(Alg::Rs256))?,
            "EC" => Self::ec(jwk, named)?,
            "OKP" => Self::okp(jwk, named)?,
            "oct" => {
                return Err(
                    "is a symmetric (\"oct\") key: ironsight verifies public-key \
                            signatures only"
                        .into(),
                )
            }
            other => return Err(format!("has key type \"{other}\", which is not supported")),
        };
        Ok(Some(Key { kid, alg, key }))
    }

    fn rsa(jwk: &Map<String, Value>, alg: Alg) -> Result<(Alg, ParsedPublicKey), String> {
        let params = alg
            .rsa()
            .ok_or_else(|| format!("is an RSA key with algorithm {alg:?}"))?;
        // Big-endian integers; a leading zero byte some encoders add is not part of the value.
        let strip = |v: Vec<u8>| v.into_iter().skip_while(|b| *b == 0).collect::<Vec<u8>>();
        let n = strip(bytes(jwk, "n")?);
        let e = strip(bytes(jwk, "e")?);
        let bits = n.len() * 8;
        if bits < RSA_BITS_MIN {
            return Err(format!(
                "is an RSA key of {bits} bits; at least {RSA_BITS_MIN}"
            ));
        }
        let key = RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(params)
            .map_err(|e| format!("is not a valid RSA key: {e}"))?;
        Ok((alg, key))
    }

    fn ec(jwk: &Map<String, Value>, named: Option<Alg>) -> Result<(Alg, ParsedPublicKey), String> {
        let (alg, verify, len): (_, &'static dyn signature::VerificationAlgorithm, _) =
            match member(jwk, "crv")? {
                Some("P-256") => (Alg::Es256, &signature::ECDSA_P256_SHA256_FIXED, 32),
                Some("P-384") => (Alg::Es384, &signature::ECDSA_P384_SHA384_FIXED, 48),
                other => {
                    return Err(format!(
                        "is an EC key on curve {other:?}, not P-256 or P-384"
                    ))
                }
            };
        if named.is_some_and(|n| n != alg) {
            return Err(format!("names algorithm {named:?} for a {alg:?} curve"));
        }
        let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
        if x.len() != len || y.len() != len {
            return Err(format!("has coordinates that are not {len} bytes"));
        }
        // The uncompressed point of SEC 1, 2.3.3.
        let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
        let key = ParsedPublicKey::new(verify, point)
            .map_err(|e| format!("is not a point on its curve: {e}"))?;
        Ok((alg, key))
    }

    fn okp(jwk: &Map<String, Value>, named: Option<Alg>) -> Result<(Alg, ParsedPublicKey), String> {
        if member(jwk, "crv")? != Some("Ed25519") {
            return Err("is an OKP key not on Ed25519".into());
        }
        if named.is_some_and(|n| n != Alg::EdDsa) {
            return Err(format!("names algorithm {named:?} for an Ed25519 key"));
        }
        let x = bytes(jwk, "x")?;
        let key = ParsedPublicKey::new(&signature::ED25519, x)
            .map_err(|e| format!("is not an Ed25519 key: {e}"))?;
        Ok((Alg::EdDsa, key))
    }

    /// Reads a JWKS file, bounded in size.
    pub fn load(path: &Path) -> Result<KeySet, String> {
        let size = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        if size > JWKS_BYTES_MAX {
            return Err(format!(
                "{} is {size} bytes; a JWKS file may have at most {JWKS_BYTES_MAX}",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        KeySet::from_jwks(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why a token was refused: for the log and the tests, never for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url segments of JSON, too long, or with a critical header.
    Malformed,
    /// `alg` is `none`, HMAC, unknown, or not the algorithm of the key `kid` names.
    Algorithm,
    /// `kid` names no key of the set.
    UnknownKey,
    /// No key of the token's algorithm verifies its signature.
    Signature,
    /// No `exp`, or a claim that is not a number where one must be.
    NoExpiry,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    /// The user id claim is missing, not a string, empty or too long.
    UserId,
    /// The groups claim is not an array of strings, or holds too many or too long ones.
    Groups,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "not a well-formed signed JWT",
            TokenError::Algorithm => "algorithm refused or not the key's",
            TokenError::UnknownKey => "signed with a key the JWKS file does not hold",
            TokenError::Signature => "signature does not verify",
            TokenError::NoExpiry => "no numeric exp",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not yet valid (nbf)",
            TokenError::Issuer => "wrong issuer",
            TokenError::Audience => "wrong audience",
            TokenError::UserId => "no usable user id claim",
            TokenError::Groups => "groups claim is not a list of names",
        })
    }
}

/// What a token must say, from its JWTProfile.
#[derive(Clone, Debug)]
pub struct JwtRules {
    pub issuer: String,
    pub audience: String,
    pub user_id_claim: String,
    /// `None`: tokens name no groups.
    pub group_id_claim: Option<String>,
    pub leeway_s: u64,
}

impl From<&JwtProfile> for JwtRules {
    fn from(p: &JwtProfile) -> Self {
        JwtRules {
            issuer: p.issuer.clone(),
            audience: p.audience.clone(),
            user_id_claim: p.user_id_claim.clone(),
            group_id_claim: Some(p.group_id_claim.clone()).filter(|c| !c.is_empty()),
            leeway_s: u64::from(p.clock_leeway),
        }
    }
}

/// One JWTProfile: its rules and its current key set.
pub struct JwtVerifier {
    /// The profile's name, for logs.
    name: String,
    /// The JWKS file, re-read by [`JwtVerifier::reload`]; `None` for a set given in memory.
    path: Option<PathBuf>,
    rules: JwtRules,
    /// Swapped whole on reload; readers clone the `Arc` and let go of the lock at once.
    keys: RwLock<Arc<KeySet>>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn new(name: &str, rules: JwtRules, keys: KeySet) -> JwtVerifier {
        JwtVerifier {
            name: name.into(),
            path: None,
            rules,
            keys: RwLock::new(Arc::new(keys)),
        }
    }

    /// The verifier of the JWTProfile `name`, its key set read from `KeyFileName` (relative
    /// to the configuration file's directory). A file that cannot be read or holds no usable
    /// key is refused naming the profile and the attribute.
    pub fn from_config(config: &Config, name: &str) -> Result<JwtVerifier, ConfigError> {
        let profile = config.jwt_profiles.get(name).ok_or_else(|| {
            ConfigError::attribute("JWTProfile", name, "KeyFileName", "no such JWTProfile")
        })?;
        let path = config.file(&profile.key_file_name);
        let keys = KeySet::load(&path)
            .map_err(|m| ConfigError::attribute("JWTProfile", name, "KeyFileName", m))?;
        let mut verifier = JwtVerifier::new(name, JwtRules::from(profile), keys);
        verifier.path = Some(path);
        Ok(verifier)
    }

    /// Re-reads the JWKS file and replaces the key set whole; on an error the old set stays.
    /// Returns the number of keys now in use.
    pub fn reload(&self) -> Result<usize, ConfigError> {
        let Some(path) = &self.path else {
            return Ok(self.current().len());
        };
        let keys = KeySet::load(path)
            .map_err(|m| ConfigError::attribute("JWTProfile", &self.name, "KeyFileName", m))?;
        let count = keys.len();
        self.replace_keys(keys);
        tracing::info!(profile = %self.name, keys = count, "JWKS reloaded");
        Ok(count)
    }

    pub fn replace_keys(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Verifies `token` at `now_s` (seconds since the Unix epoch).
    pub fn check(&self, token: &[u8], now_s: u64) -> Result<Principal, TokenError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::Malformed);
        }
        let token = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header_json = json_object(header)?;
        let alg = match header_json.get("alg") {
            Some(Value::String(name)) => Alg::from_name(name).ok_or(TokenError::Algorithm)?,
            _ => return Err(TokenError::Algorithm),
        };
        // RFC 7515 4.1.11: a critical header parameter ironsight does not know (it knows none)
        // must refuse the token.
        if header_json.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        let sig = b64(sig).ok_or(TokenError::Malformed)?;
        // The signing input is the two segments as sent (RFC 7515 5.2).
        let signed = &token.as_bytes()[..header.len() + 1 + payload.len()];
        self.verify_signature(&header_json, alg, signed, &sig)?;
        let claims = json_object(payload)?;
        self.check_claims(&claims, now_s)
    }

    fn verify_signature(
        &self,
        header: &Map<String, Value>,
        alg: Alg,
        signed: &[u8],
        sig: &[u8],
    ) -> Result<(), TokenError> {
        let keys = self.current();
        let verifies = |k: &Key| k.alg == alg && k.key.verify_sig(signed, sig).is_ok();
        match header.get("kid") {
            Some(Value::String(kid)) => {
                let key = keys
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .ok_or(TokenError::UnknownKey)?;
                if key.alg != alg {
                    return Err(TokenError::Algorithm);
                }
                verifies(key).then_some(()).ok_or(TokenError::Signature)
            }
            Some(_) => Err(TokenError::Malformed),
            // Without a kid, any key of the token's algorithm may have signed it.
            None => keys
                .keys
                .iter()
                .any(verifies)
                .then_some(())
                .ok_or(TokenError::Signature),
        }
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now_s: u64,
    ) -> Result<Principal, TokenError> {
        let rules = &self.rules;
        let exp = numeric_date(claims.get("exp")).ok_or(TokenError::NoExpiry)?;
        if now_s > exp.saturating_add(rules.leeway_s) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(Some(nbf)).ok_or(TokenError::NoExpiry)?;
            if nbf > now_s.saturating_add(rules.leeway_s) {
                return Err(TokenError::NotYetValid);
            }
        }
        if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str()) {
            return Err(TokenError::Issuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == rules.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&rules.audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::Audience);
        }
        let user = claims
            .get(&rules.user_id_claim)
            .and_then(Value::as_str)
            .filter(|u| name_ok(u))
            .ok_or(TokenError::UserId)?;
        let groups = match rules.group_id_claim.as_ref().and_then(|c| claims.get(c)) {
            None => Vec::new(),
            Some(Value::Array(list)) if list.len() <= GROUPS_MAX => list
                .iter()
                .map(|g| g.as_str().filter(|g| name_ok(g)).map(Box::from))
                .collect::<Option<Vec<Box<str>>>>()
                .ok_or(TokenError::Groups)?,
            Some(_) => return Err(TokenError::Groups),
        };
        Ok(Principal::new(user, groups))
    }
}

/// A user id or group name the policies can use: not empty, bounded.
pub(crate) fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_BYTES_MAX
}

fn json_object(segment: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = b64(segment).ok_or(TokenError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed),
    }
}

/// RFC 7519's NumericDate: seconds since the epoch, possibly with a fraction (dropped).
fn numeric_date(value: Option<&Value>) -> Option<u64> {
    let n = value?.as_number()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| *f >= 0.0 && f.is_finite())
            .map(|f| f as u64)
    })
}

pub(crate) fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a [u8]) -> BoxFuture<'a, AuthVerdict> {
        Box::pin(async move {
            self.check(token, now_s()).map(Arc::new).map_err(|reason| {
                tracing::debug!(profile = %self.name, %reason, "JWT refused");
                Refusal::BadCredentials
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    use super::*;

    pub(crate) const NOW: u64 = 1_800_000_000;

    type SignFn = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;
    type Edit<'a> = &'a dyn Fn(&mut Value);

    /// A key made in the test, its JWK, and how it signs.
    pub(crate) struct Signer {
        pub alg: &'static str,
        pub jwk: Value,
        sign: SignFn,
    }

    fn rsa_key() -> &'static RsaKeyPair {
        // RSA key generation takes a while in a debug build: one key serves every test.
        static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
        KEY.get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    pub(crate) fn rsa(kid: &str) -> Signer {
        let key = rsa_key();
        let public = key.public_key();
        let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero())});
        Signer {
            alg: "RS256",
            jwk,
            sign: Box::new(|msg| {
                let key = rsa_key();
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    msg,
                    &mut sig,
                )
                .unwrap();
                sig
            }),
        }
    }

    pub(crate) fn ec(kid: &str) -> Signer {
        let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "kid": kid, "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        Signer {
            alg: "ES256",
            jwk,
            sign: Box::new(move |msg| {
                key.sign(&SystemRandom::new(), msg)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }),
        }
    }

    pub(crate) fn ed(kid: &str) -> Signer {
        let key = Ed25519KeyPair::generate().unwrap();
        let jwk = json!({"kty": "OKP", "kid": kid, "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref())});
        Signer {
            alg: "EdDSA",
            jwk,
            sign: Box::new(move |msg| key.sign(msg).as_ref().to_vec()),
        }
    }

    pub(crate) fn jwks(signers: &[&Signer]) -> String {
        json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
    }

    fn segment(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A compact JWS of `claims` with `header`, signed by `signer`.
    pub(crate) fn sign_with(header: Value, claims: &Value, signer: &Signer) -> String {
        let input = format!("{}.{}", segment(&header), segment(claims));
        let sig = (signer.sign)(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    pub(crate) fn sign(claims: &Value, signer: &Signer) -> String {
        let kid = signer.jwk["kid"].clone();
        sign_with(
            json!({"alg": signer.alg, "typ": "JWT", "kid": kid}),
            claims,
            signer,
        )
    }

    pub(crate) fn claims() -> Value {
        json!({"iss": "https://id.example.com", "aud": "mqtt", "sub": "alice",
               "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10, "groups": ["staff", "ops"]})
    }

    pub(crate) fn rules() -> JwtRules {
        JwtRules {
            issuer: "https://id.example.com".into(),
            audience: "mqtt".into(),
            user_id_claim: "sub".into(),
            group_id_claim: Some("groups".into()),
            leeway_s: 30,
        }
    }

    fn verifier(signers: &[&Signer]) -> JwtVerifier {
        JwtVerifier::new("Jwt", rules(), KeySet::from_jwks(&jwks(signers)).unwrap())
    }

    fn edit(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut c = claims();
        f(c.as_object_mut().unwrap());
        c
    }

    /// Proves a good token of each key type (RS256, ES256, EdDSA) yields its subject and
    /// groups, whether or not its header names the key.
    #[test]
    fn good_tokens_of_each_algorithm_verify() {
        let (r, e, d) = (rsa("r1"), ec("e1"), ed("d1"));
        let v = verifier(&[&r, &e, &d]);
        for signer in [&r, &e, &d] {
            let p = v.check(sign(&claims(), signer).as_bytes(), NOW).unwrap();
            assert_eq!(&*p.user_id, "alice", "{}", signer.alg);
            assert_eq!(&*p.groups, &["ops".into(), "staff".into()] as &[Box<str>]);
            let no_kid = sign_with(json!({"alg": signer.alg}), &claims(), signer);
            assert!(v.check(no_kid.as_bytes(), NOW).is_ok(), "{}", signer.alg);
        }
    }

    /// Proves `exp` and `nbf` are enforced with the leeway, and `exp` is required.
    #[test]
    fn time_claims_are_enforced_with_the_leeway() {
        let e = ec("e1");
        let v = verifier(&[&e]);
        let at = |c: &Value, now| v.check(sign(c, &e).as_bytes(), now);
        let exp = NOW + 600;
        assert!(at(&claims(), exp + 30).is_ok(), "within the leeway");
        assert_eq!(at(&claims(), exp + 31), Err(TokenError::Expired));
        let early = edit(|c| _ = c.insert("nbf".into(), json!(NOW + 100)));
        assert_eq!(at(&early, NOW), Err(TokenError::NotYetValid));
        assert!(at(&early, NOW + 70).is_ok(), "within the leeway");
        let forever = edit(|c| _ = c.remove("exp"));
        assert_eq!(at(&forever, NOW), Err(TokenError::NoExpiry));
        let text = edit(|c| _ = c.insert("exp".into(), json!("tomorrow")));
        assert_eq!(at(&text, NOW), Err(TokenError::NoExpiry));
        let fraction = edit(|c| _ = c.insert("exp".into(), json!(NOW as f64 + 0.5)));
        assert!(at(&fraction, NOW).is_ok());
    }

    /// Proves the issuer and the audience must be the profile's; `aud` may be a list.
    #[test]
    fn issuer_and_audience_must_match() {
        let e = ed("d1");
        let v = verifier(&[&e]);
        let check = |c: &Value| v.check(sign(c, &e).as_bytes(), NOW);
        let iss = edit(|c| _ = c.insert("iss".into(), json!("https://evil.example.com")));
        assert_eq!(check(&iss), Err(TokenError::Issuer));
        let no_iss = edit(|c| _ = c.remove("iss"));
        assert_eq!(check(&no_iss), Err(TokenError::Issuer));
        let aud = edit(|c| _ = c.insert("aud".into(), json!("billing")));
        assert_eq!(check(&aud), Err(TokenError::Audience));
        let auds = edit(|c| _ = c.insert("aud".into(), json!(["billing", "mqtt"])));
        assert!(check(&auds).is_ok());
        let others = edit(|c| _ = c.insert("aud".into(), json!(["billing", "mqtt2"])));
        assert_eq!(check(&others), Err(TokenError::Audience));
    }

    /// Proves a token signed by a key outside the set is refused, whether it names a key of
    /// the set, a key the set does not hold, or none.
    #[test]
    fn another_key_is_refused() {
        let (ours, theirs) = (ec("e1"), ec("e1"));
        let v = verifier(&[&ours]);
        let forged = sign(&claims(), &theirs); // same kid, different key
        assert_eq!(v.check(forged.as_bytes(), NOW), Err(TokenError::Signature));
        let unknown = sign_with(json!({"alg": "ES256", "kid": "e9"}), &claims(), &theirs);
        assert_eq!(
            v.check(unknown.as_bytes(), NOW),
            Err(TokenError::UnknownKey)
        );
        let no_kid = sign_with(json!({"alg": "ES256"}), &claims(), &theirs);
        assert_eq!(v.check(no_kid.as_bytes(), NOW), Err(TokenError::Signature));
    }

    /// Proves the algorithm comes from the key: `none`, HS256 keyed with the RSA public key
    /// (the classic confusion attack) and an RS256 header on an EC key are all refused.
    #[test]
    fn algorithm_confusion_is_refused() {
        let (r, e) = (rsa("r1"), ec("e1"));
        let v = verifier(&[&r, &e]);
        let body = segment(&claims());
        let none = format!("{}.{body}.", segment(&json!({"alg": "none", "kid": "r1"})));
        assert_eq!(v.check(none.as_bytes(), NOW), Err(TokenError::Algorithm));
        let none_bare = format!("{}.{body}.", segment(&json!({"alg": "none"})));
        assert_eq!(
            v.check(none_bare.as_bytes(), NOW),
            Err(TokenError::Algorithm)
        );
        for secret in [
            r.jwk.to_string().into_bytes(),
            rsa_key().public_key().as_ref().to_vec(),
        ] {
            let input = format!("{}.{body}", segment(&json!({"alg": "HS256", "kid": "r1"})));
            let mac = aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
                input.as_bytes(),
            );
            let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
            assert_eq!(v.check(hs.as_bytes(), NOW), Err(TokenError::Algorithm));
        }
        // An RS256 header naming the EC key: the key's algorithm wins.
        let mixed = sign_with(json!({"alg": "RS256", "kid": "e1"}), &claims(), &r);
        assert_eq!(v.check(mixed.as_bytes(), NOW), Err(TokenError::Algorithm));
        let no_alg = sign_with(json!({"kid": "r1"}), &claims(), &r);
        assert_eq!(v.check(no_alg.as_bytes(), NOW), Err(TokenError::Algorithm));
    }

    /// Proves a payload changed after signing (a promoted user, a later expiry) is refused,
    /// and so are tokens that are not three base64url segments of JSON, or carry `crit`.
    #[test]
    fn tampered_and_malformed_tokens_are_refused() {
        let r = rsa("r1");
        let v = verifier(&[&r]);
        let good = sign(&claims(), &r);
        let parts: Vec<&str> = good.split('.').collect();
        let admin = edit(|c| _ = c.insert("sub".into(), json!("admin")));
        let tampered = format!("{}.{}.{}", parts[0], segment(&admin), parts[2]);
        assert_eq!(
            v.check(tampered.as_bytes(), NOW),
            Err(TokenError::Signature)
        );
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(v.check(flipped.as_bytes(), NOW), Err(TokenError::Signature));
        let crit = sign_with(
            json!({"alg": "RS256", "kid": "r1", "crit": ["exp"]}),
            &claims(),
            &r,
        );
        let long = "a".repeat(TOKEN_BYTES_MAX + 1);
        // A correctly signed payload that is not a JSON object.
        let input = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode("[1]"));
        let array = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode((r.sign)(input.as_bytes()))
        );
        for bad in [
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}.{}", parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            array,
            "not a token".into(),
            crit,
            long,
        ] {
            assert_eq!(
                v.check(bad.as_bytes(), NOW),
                Err(TokenError::Malformed),
                "{bad:.60}"
            );
        }
        assert_eq!(
            v.check(&[0xff, b'.', b'.'], NOW),
            Err(TokenError::Malformed)
        );
    }

    /// Proves the user id must be a non-empty string and groups a list of names; a token
    /// without a groups claim has no groups, and a profile without a groups claim reads none.
    #[test]
    fn user_and_group_claims() {
        let d = ed("d1");
        let v = verifier(&[&d]);
        let check = |c: &Value| v.check(sign(c, &d).as_bytes(), NOW);
        for bad in [
            json!(null),
            json!(""),
            json!(7),
            json!("x".repeat(NAME_BYTES_MAX + 1)),
        ] {
            let c = edit(|c| _ = c.insert("sub".into(), bad));
            assert_eq!(check(&c), Err(TokenError::UserId));
        }
        assert_eq!(
            check(&edit(|c| _ = c.remove("sub"))),
            Err(TokenError::UserId)
        );
        let many: Vec<String> = (0..=GROUPS_MAX).map(|i| format!("g{i}")).collect();
        for bad in [
            json!("staff"),
            json!(["staff", 7]),
            json!([""]),
            json!(many),
        ] {
            let c = edit(|c| _ = c.insert("groups".into(), bad));
            assert_eq!(check(&c), Err(TokenError::Groups));
        }
        let none = check(&edit(|c| _ = c.remove("groups"))).unwrap();
        assert!(none.groups.is_empty());
        let mut rules = rules();
        rules.user_id_claim = "email".into();
        rules.group_id_claim = None;
        let keys = KeySet::from_jwks(&jwks(&[&d])).unwrap();
        let by_email = JwtVerifier::new("Jwt", rules, keys);
        let c = edit(|c| _ = c.insert("email".into(), json!("alice@example.com")));
        let p = by_email.check(sign(&c, &d).as_bytes(), NOW).unwrap();
        assert_eq!(&*p.user_id, "alice@example.com");
        assert!(p.groups.is_empty());
    }

    /// Proves a JWKS file's mistakes are refused when it loads, naming the key, and that
    /// encryption keys are skipped rather than used.
    #[test]
    fn jwks_mistakes_are_refused_when_loading() {
        let r = rsa("r1");
        let e = ec("e1");
        let with = |f: &dyn Fn(&mut Value)| {
            let mut k = e.jwk.clone();
            f(&mut k);
            KeySet::from_jwks(&json!({"keys": [k]}).to_string()).map(|s| s.len())
        };
        assert_eq!(with(&|_| {}), Ok(1));
        let cases: [(Edit, &str); 6] = [
            (&|k| *k = json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}),
             "key #1 (kid \"h\") is a symmetric (\"oct\") key: ironsight verifies public-key signatures only"),
            (&|k| k["alg"] = "HS256".into(),
             "key #1 (kid \"e1\") has algorithm \"HS256\", which is not supported"),
            (&|k| k["alg"] = "ES384".into(),
             "key #1 (kid \"e1\") names algorithm Some(Es384) for a Es256 curve"),
            (&|k| k["crv"] = "secp256k1".into(),
             "key #1 (kid \"e1\") is an EC key on curve Some(\"secp256k1\"), not P-256 or P-384"),
            (&|k| k["x"] = k["y"].clone(),
             "key #1 (kid \"e1\") is not a point on its curve: InvalidEncoding"),
            (&|k| _ = k.as_object_mut().unwrap().remove("kty"), "key #1 (kid \"e1\") has no \"kty\""),
        ];
        for (f, expected) in cases {
            let error = with(f).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
        let mut weak = r.jwk.clone();
        weak["n"] = URL_SAFE_NO_PAD.encode([0xc5u8; 128]).into();
        let error = KeySet::from_jwks(&json!({"keys": [weak]}).to_string()).unwrap_err();
        assert_eq!(
            error,
            "key #1 (kid \"r1\") is an RSA key of 1024 bits; at least 2048"
        );
        let mut enc = r.jwk.clone();
        enc["use"] = "enc".into();
        let only_enc = KeySet::from_jwks(&json!({"keys": [enc.clone()]}).to_string());
        assert_eq!(only_enc.unwrap_err(), "holds no signature key");
        let set = KeySet::from_jwks(&json!({"keys": [enc, e.jwk.clone()]}).to_string()).unwrap();
        assert_eq!(set.len(), 1);
        let twice = KeySet::from_jwks(&jwks(&[&e, &e])).unwrap_err();
        assert_eq!(twice, "key #2: kid appears twice");
        assert_eq!(
            KeySet::from_jwks("[]").unwrap_err(),
            "has no \"keys\" array"
        );
    }

    /// A directory of its own for a test's files, removed when dropped.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("ironsight-auth-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The built-in configuration with `objects` of type `object` added, its files in `dir`.
    pub(crate) fn config_with(dir: &Path, object: &str, objects: Value) -> Config {
        let mut doc: Value = serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
        doc[object] = objects;
        let mut config = Config::parse(&doc.to_string()).unwrap();
        config.base_dir = dir.to_path_buf();
        config
    }

    /// Proves the profile's KeyFileName is read relative to the configuration's directory, a
    /// missing file is refused naming the profile and attribute, and a reload swaps the key
    /// set whole, keeping the old one when the new file is bad.
    #[test]
    fn key_file_loads_and_reloads() {
        let dir = TempDir::new("jwks");
        let (old, new) = (ec("k1"), ed("k2"));
        let profile = json!({"Jwt": {"KeyFileName": "jwks.json", "Issuer": "https://id.example.com",
                                     "Audience": "mqtt"}});
        let config = config_with(&dir.0, "JWTProfile", profile);
        let e = JwtVerifier::from_config(&config, "Jwt")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("JWTProfile \"Jwt\", attribute KeyFileName: cannot read ")
                && e.contains("jwks.json"),
            "{e}"
        );
        let file = dir.0.join("jwks.json");
        std::fs::write(&file, jwks(&[&old])).unwrap();
        let v = JwtVerifier::from_config(&config, "Jwt").unwrap();
        let (by_old, by_new) = (sign(&claims(), &old), sign(&claims(), &new));
        assert!(v.check(by_old.as_bytes(), NOW).is_ok());
        assert_eq!(v.check(by_new.as_bytes(), NOW), Err(TokenError::UnknownKey));
        std::fs::write(&file, jwks(&[&new])).unwrap();
        assert_eq!(v.reload().unwrap(), 1);
        assert!(v.check(by_new.as_bytes(), NOW).is_ok());
        assert_eq!(v.check(by_old.as_bytes(), NOW), Err(TokenError::UnknownKey));
        std::fs::write(&file, "{\"keys\": 5}").unwrap();
        let e = v.reload().unwrap_err().to_string();
        assert!(e.ends_with("jwks.json: has no \"keys\" array"), "{e}");
        assert!(v.check(by_new.as_bytes(), NOW).is_ok(), "the old set stays");
    }
}

/// What one verification costs, per key type: a measurement, not a test (it asserts nothing
/// about speed). `cargo test --release -p ironsight-auth -- --ignored --nocapture verify_cost`
#[cfg(test)]
mod cost {
    use std::time::Instant;

    use super::tests::{claims, ec, ed, jwks, rsa, rules, sign, NOW};
    use super::*;

    #[test]
    #[ignore = "a measurement; run it with --release --ignored --nocapture"]
    fn verify_cost() {
        const ROUNDS: u32 = 20_000;
        for signer in [rsa("r1"), ec("e1"), ed("d1")] {
            let keys = KeySet::from_jwks(&jwks(&[&signer])).unwrap();
            let v = JwtVerifier::new("Jwt", rules(), keys);
            let token = sign(&claims(), &signer);
            let started = Instant::now();
            for _ in 0..ROUNDS {
                assert!(v.check(token.as_bytes(), NOW).is_ok());
            }
            let each = started.elapsed() / ROUNDS;
            println!(
                "{}: {each:?} per verification ({} bytes)",
                signer.alg,
                token.len()
            );
        }
    }
}
