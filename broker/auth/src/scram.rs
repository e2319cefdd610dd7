//! SCRAM-SHA-256 (RFC 5802, RFC 7677): the password hash the users file keeps, the check of a
//! CONNECT's password against it, and the server side of a SCRAM exchange for MQTT 5 enhanced
//! authentication, as a state machine over byte strings that never touches the network.
//!
//! ```text
//! client-first  n,,n=user,r=<client nonce>                        CONNECT, Authentication Data
//! server-first  r=<client nonce><server nonce>,s=<salt>,i=<count>  AUTH 0x18 (continue)
//! client-final  c=biws,r=<both nonces>,p=<ClientProof>            AUTH 0x18 (continue)
//! server-final  v=<ServerSignature>                               CONNACK 0x00 (success)
//! ```
//!
//! The password never crosses the wire: the client proves that it knows ClientKey, the server
//! (which keeps only StoredKey = H(ClientKey)) checks the proof, and ServerSignature proves to
//! the client that the server holds the verifier. The slow hash runs on the client; the
//! server's side of an exchange costs four HMACs.
//!
//! Limits of this server, each refused with its own [`ScramError`]: no channel binding (a
//! gs2 header `p=...`; `y`, "I could bind but the server cannot", is accepted as RFC 5802
//! section 6 asks of a server without it), no authorization identity (`a=`), no mandatory
//! extension (`m=`).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::OnceLock;

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2, rand};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ironsight_config::users::{
    ScramVerifier, ITERATIONS_MIN, SALT_LEN_MAX, SALT_LEN_MIN, SCRAM_KEY_LEN,
};
use zeroize::Zeroizing;

/// The mechanism's name, as MQTT 5's Authentication Method carries it.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// PBKDF2 iterations of a new verifier: RFC 7677's minimum, and PostgreSQL's default. One
/// check of a password costs 0.56 to 0.73 ms of CPU (AMD EPYC with SHA extensions,
/// 2026-11-30, the `users_storm` example), so each core's hashing thread admits some 1,500 first
/// logins a second, while returning users are answered from the cache without hashing.
pub const ITERATIONS_DEFAULT: u32 = 4096;

/// Bytes of salt in a new verifier: 128 bits, as PostgreSQL's.
pub const SALT_LEN: usize = 16;

/// Random bytes in the server's part of the nonce: 144 bits, 24 characters of base64.
const SERVER_NONCE_LEN: usize = 18;

/// The longest SCRAM message taken from a client. A client-first message is a few dozen bytes
/// plus the user name; this leaves room for a user name of some 4,000 bytes, while a client
/// cannot make the broker parse or keep more.
pub const SCRAM_MESSAGE_LEN_MAX: usize = 4096;

const _: () = assert!(ITERATIONS_DEFAULT >= ITERATIONS_MIN);
const _: () = assert!(SALT_LEN >= SALT_LEN_MIN && SALT_LEN <= SALT_LEN_MAX);

/// Why a SCRAM exchange failed. The client is told only that authentication failed (its
/// [`ScramError::server_error`], at most); the log may say more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("SCRAM message longer than {} bytes", SCRAM_MESSAGE_LEN_MAX)]
    TooLong,
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the client asks for channel binding (gs2 header p=), which ironsight does not offer: send the gs2 header \"n,,\"")]
    ChannelBindingNotSupported,
    #[error("the client names an authorization identity (a=), which ironsight does not take: the user who authenticates is the user")]
    AuthzidNotSupported,
    #[error("the client sends a mandatory extension (m=), which ironsight does not know")]
    MandatoryExtension,
    #[error("the user name is empty, holds NUL, or escapes ',' and '=' other than as =2C and =3D")]
    InvalidUserName,
    #[error("the channel binding (c=) does not repeat the gs2 header of the first message")]
    ChannelBindingMismatch,
    #[error("the nonce (r=) is not the one the server sent")]
    NonceMismatch,
    #[error("the client's proof does not verify: wrong password or unknown user")]
    InvalidProof,
}

impl ScramError {
    /// RFC 5802's `server-error-value`, for a server-final message `e=...`.
    pub fn server_error(self) -> &'static str {
        match self {
            ScramError::TooLong | ScramError::Malformed(_) => "invalid-encoding",
            ScramError::ChannelBindingNotSupported => "channel-binding-not-supported",
            ScramError::AuthzidNotSupported => "other-error",
            ScramError::MandatoryExtension => "extensions-not-supported",
            ScramError::InvalidUserName => "invalid-username-encoding",
            ScramError::ChannelBindingMismatch => "channel-bindings-dont-match",
            // A nonce that is not ours is a replayed or confused exchange: RFC 5802 has no
            // value of its own for it.
            ScramError::NonceMismatch => "other-error",
            ScramError::InvalidProof => "invalid-proof",
        }
    }
}

type Key = [u8; SCRAM_KEY_LEN];

fn hmac_sha256(key: &[u8], data: &[u8]) -> Key {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    tag.as_ref().try_into().expect("HMAC-SHA256 gives 32 bytes")
}

fn sha256(data: &[u8]) -> Key {
    let d = digest::digest(&digest::SHA256, data);
    d.as_ref().try_into().expect("SHA-256 gives 32 bytes")
}

fn equal(a: &Key, b: &Key) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// RFC 5802's Normalize(): SASLprep (RFC 4013) of a UTF-8 password. A password that is not
/// UTF-8, or that SASLprep refuses, is used as it is, as PostgreSQL does: so its verifiers work
/// here unchanged, and every password an MQTT client can send has a verifier.
fn normalize(password: &[u8]) -> Zeroizing<Vec<u8>> {
    let prepared = std::str::from_utf8(password)
        .ok()
        .and_then(|text| stringprep::saslprep(text).ok());
    Zeroizing::new(match prepared {
        Some(text) => text.as_bytes().to_vec(),
        None => password.to_vec(),
    })
}

/// The SaltedPassword of RFC 5802: PBKDF2-HMAC-SHA256. This is the slow part.
fn salted_password(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> Zeroizing<Key> {
    let mut salted = Zeroizing::new([0; SCRAM_KEY_LEN]);
    let password = normalize(password);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        &password,
        &mut *salted,
    );
    salted
}

fn client_key(salted: &Key) -> Zeroizing<Key> {
    Zeroizing::new(hmac_sha256(salted, b"Client Key"))
}

/// A verifier for `password` with a fresh random salt; refuses an iteration count out of
/// bounds before hashing.
pub fn hash_password(password: &[u8], iterations: u32) -> Result<ScramVerifier, String> {
    let mut salt = [0; SALT_LEN];
    rand::fill(&mut salt).map_err(|_| "the system's random number generator failed")?;
    verifier_for(password, &salt, iterations)
}

fn verifier_for(password: &[u8], salt: &[u8], iterations: u32) -> Result<ScramVerifier, String> {
    let count = ScramVerifier::check_iterations(iterations)?;
    let salted = salted_password(password, salt, count);
    let stored_key = sha256(&*client_key(&salted));
    let server_key = hmac_sha256(&*salted, b"Server Key");
    ScramVerifier::new(iterations, salt, stored_key, server_key)
}

/// Whether `password` is the one `verifier` was made from: recomputes StoredKey and compares
/// it in constant time. Slow by design (the verifier's PBKDF2 iterations): call it off the
/// shards and off the async runtime's workers.
pub fn verify_password(verifier: &ScramVerifier, password: &[u8]) -> bool {
    let salted = salted_password(password, verifier.salt(), verifier.iterations());
    equal(&sha256(&*client_key(&salted)), verifier.stored_key())
}

/// The verifier an unknown user is given, so that a SCRAM exchange for a user who does not
/// exist runs like one with a wrong password and does not tell who exists (PostgreSQL's
/// "mock authentication" does the same): a salt that is the same for a given name on every
/// try, derived from it with a key drawn once per process, and keys no proof can match.
fn decoy_verifier(user: &str) -> ScramVerifier {
    static DECOY_KEY: OnceLock<hmac::Key> = OnceLock::new();
    let key = DECOY_KEY.get_or_init(|| {
        hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new())
            .expect("the system's random number generator works")
    });
    let tag = hmac::sign(key, user.as_bytes());
    let salt = &tag.as_ref()[..SALT_LEN];
    ScramVerifier::new(
        ITERATIONS_DEFAULT,
        salt,
        [0; SCRAM_KEY_LEN],
        [0; SCRAM_KEY_LEN],
    )
    .expect("the default cost is within bounds")
}

/// A SCRAM exchange between the client's first message and its final one: what the server
/// needs to check the proof. Holds no password; dropped, it is forgotten.
pub struct ScramServer {
    user: Box<str>,
    /// `client-first-message-bare "," server-first-message ","`: the AuthMessage up to the
    /// client's final message.
    auth_message: String,
    /// Client nonce and server nonce, as the client must repeat them.
    nonce: Box<str>,
    /// The gs2 header of the first message, which the final one's `c=` must repeat.
    gs2_header: &'static str,
    stored_key: Key,
    server_key: Key,
    /// Whether the user exists: a decoy's exchange always fails, whatever the proof.
    known: bool,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Reads the client-first message, looks the user up, and answers with the server-first
    /// message. An unknown user (`lookup` gives `None`) gets a decoy salt and fails only at
    /// [`ScramServer::finish`], like a wrong password.
    pub fn start(
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramVerifier>,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let mut random = [0; SERVER_NONCE_LEN];
        rand::fill(&mut random).expect("the system's random number generator works");
        ScramServer::start_with_nonce(client_first, &BASE64.encode(random), lookup)
    }

    /// [`ScramServer::start`] with the server's nonce given: the exchange itself is
    /// deterministic, which the RFC's test vector checks.
    fn start_with_nonce(
        client_first: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<ScramVerifier>,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let first = ClientFirst::parse(client_first)?;
        let (verifier, known) = match lookup(&first.user) {
            Some(verifier) => (verifier, true),
            None => (decoy_verifier(&first.user), false),
        };
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(verifier.salt()),
            verifier.iterations()
        );
        let server = ScramServer {
            auth_message: format!("{},{server_first},", first.bare),
            user: first.user.into(),
            nonce: nonce.into(),
            gs2_header: first.gs2_header,
            stored_key: *verifier.stored_key(),
            server_key: *verifier.server_key(),
            known,
        };
        Ok((server, server_first.into_bytes()))
    }

    /// The user the client claims to be (not yet proven).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks the client-final message's proof; on success, the authenticated user and the
    /// server-final message, which proves to the client that the server knows its verifier.
    pub fn finish(self, client_final: &[u8]) -> Result<(Box<str>, Vec<u8>), ScramError> {
        let text = message_text(client_final)?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed(
            "client-final: no proof (p=) at its end",
        ))?;
        let mut attributes = without_proof.split(',');
        let binding =
            attributes
                .next()
                .and_then(|a| a.strip_prefix("c="))
                .ok_or(ScramError::Malformed(
                    "client-final: no channel binding (c=) first",
                ))?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-final: no nonce (r=) second"))?;
        attributes.try_for_each(check_extension)?;
        if BASE64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if nonce != &*self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof: Key = BASE64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed(
                "client-final: the proof is not 32 bytes in base64",
            ))?;
        let auth_message = [self.auth_message.as_bytes(), without_proof.as_bytes()].concat();
        let signature = hmac_sha256(&self.stored_key, &auth_message);
        let mut client_key = Zeroizing::new(proof);
        for (k, s) in client_key.iter_mut().zip(signature) {
            *k ^= s;
        }
        let proven = equal(&sha256(&*client_key), &self.stored_key);
        if !(proven && self.known) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac_sha256(&self.server_key, &auth_message);
        let server_final = format!("v={}", BASE64.encode(server_signature));
        Ok((self.user, server_final.into_bytes()))
    }
}

/// A message as text: bounded, and UTF-8 (RFC 5802's attribute values are).
fn message_text(bytes: &[u8]) -> Result<&str, ScramError> {
    if bytes.len() > SCRAM_MESSAGE_LEN_MAX {
        return Err(ScramError::TooLong);
    }
    std::str::from_utf8(bytes).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// An optional extension, `<letter>=<value>`: its shape is checked, its meaning ignored.
fn check_extension(attribute: &str) -> Result<(), ScramError> {
    let bytes = attribute.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'=' {
        Ok(())
    } else {
        Err(ScramError::Malformed(
            "an attribute is not of the form <letter>=<value>",
        ))
    }
}

/// The client-first message, `gs2-header client-first-message-bare`.
struct ClientFirst<'a> {
    gs2_header: &'static str,
    /// `n=<user>,r=<nonce>[,extensions]`, as sent: part of the AuthMessage.
    bare: &'a str,
    user: String,
    client_nonce: &'a str,
}

impl<'a> ClientFirst<'a> {
    fn parse(bytes: &'a [u8]) -> Result<ClientFirst<'a>, ScramError> {
        let text = message_text(bytes)?;
        let malformed = ScramError::Malformed("client-first: no gs2 header (\"n,,\")");
        let (flag, rest) = text.split_once(',').ok_or(malformed)?;
        let (authzid, bare) = rest.split_once(',').ok_or(malformed)?;
        let gs2_header = match flag {
            "n" => "n,,",
            "y" => "y,,",
            f if f.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
            _ => {
                return Err(ScramError::Malformed(
                    "client-first: the gs2 header starts with n, y or p=",
                ))
            }
        };
        if authzid.starts_with("a=") {
            return Err(ScramError::AuthzidNotSupported);
        }
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "client-first: the gs2 header's second field is empty or a=",
            ));
        }
        let mut attributes = bare.split(',');
        let first = attributes.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(ScramError::MandatoryExtension);
        }
        let user = first.strip_prefix("n=").ok_or(ScramError::Malformed(
            "client-first: no user name (n=) after the gs2 header",
        ))?;
        let client_nonce =
            attributes
                .next()
                .and_then(|a| a.strip_prefix("r="))
                .ok_or(ScramError::Malformed(
                    "client-first: no nonce (r=) after the user name",
                ))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(is_nonce_char) {
            return Err(ScramError::Malformed(
                "client-first: the nonce is not printable ASCII without ','",
            ));
        }
        attributes.try_for_each(check_extension)?;
        Ok(ClientFirst {
            gs2_header,
            bare,
            user: decode_saslname(user)?,
            client_nonce,
        })
    }
}

/// RFC 5802's `printable`: ASCII 0x21 to 0x7E except ','.
fn is_nonce_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// A `saslname`: ',' and '=' are sent as `=2C` and `=3D`, and '=' appears in no other way.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut user = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        user.push_str(&rest[..at]);
        match rest.get(at + 1..at + 3) {
            Some("2C") => user.push(','),
            Some("3D") => user.push('='),
            _ => return Err(ScramError::InvalidUserName),
        }
        rest = &rest[at + 3..];
    }
    user.push_str(rest);
    if user.is_empty() || user.contains('\0') {
        return Err(ScramError::InvalidUserName);
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

    fn pencil() -> ScramVerifier {
        verifier_for(b"pencil", &BASE64.decode(SALT).unwrap(), 4096).unwrap()
    }

    fn start(client_first: &str) -> Result<(ScramServer, Vec<u8>), ScramError> {
        ScramServer::start_with_nonce(client_first.as_bytes(), SERVER_NONCE, |u| {
            (u == "user").then(pencil)
        })
    }

    /// A client's final message for `password`, computed as RFC 5802 section 3 says: the
    /// other side of the exchange, to test the server against. `binding` is the base64 of the
    /// gs2 header.
    fn client_final(password: &[u8], bare: &str, server_first: &str, binding: &str) -> String {
        let mut attributes = server_first.split(',');
        let nonce = attributes.next().unwrap().strip_prefix("r=").unwrap();
        let salt = BASE64
            .decode(attributes.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let count: u32 = attributes
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        let salted = salted_password(password, &salt, NonZeroU32::new(count).unwrap());
        let key = client_key(&salted);
        let without_proof = format!("c={binding},r={nonce}");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&sha256(&*key), auth_message.as_bytes());
        let proof: Vec<u8> = key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    /// Proves the verifier of "pencil" with the RFC's salt is the one PostgreSQL would store
    /// (its StoredKey and ServerKey, checked by the exchange below) and that a CONNECT
    /// password is checked against it.
    #[test]
    fn passwords_verify_against_their_verifier() {
        let v = pencil();
        assert!(verify_password(&v, b"pencil"));
        assert!(!verify_password(&v, b"pencil "));
        assert!(!verify_password(&v, b""));
        let made = hash_password(b"pencil", 4096).unwrap();
        assert!(verify_password(&made, b"pencil"));
        assert_ne!(made.salt(), v.salt(), "every verifier has its own salt");
        assert_eq!(
            hash_password(b"pencil", 100).unwrap_err(),
            "has 100 iterations; use 4096 to 1000000"
        );
    }

    /// Proves the server side reproduces RFC 7677's example exchange byte for byte.
    #[test]
    fn rfc7677_test_vector() {
        let (server, server_first) = start(CLIENT_FIRST).unwrap();
        assert_eq!(server.user(), "user");
        assert_eq!(String::from_utf8(server_first).unwrap(), SERVER_FIRST);
        let (user, server_final) = server.finish(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(&*user, "user");
        assert_eq!(String::from_utf8(server_final).unwrap(), SERVER_FINAL);
    }

    /// Proves a full exchange with a random nonce and salt succeeds for the right password
    /// and fails for a wrong one, and that an unknown user fails the same way.
    #[test]
    fn exchanges_with_the_right_and_a_wrong_password() {
        let verifier = hash_password("pâss wörd".as_bytes(), 4096).unwrap();
        let lookup = |u: &str| (u == "a,b=c").then(|| verifier.clone());
        let first = "n,,n=a=2Cb=3Dc,r=fyko+d2lbbFgONRv9qkxdawL";
        let bare = &first[3..];
        for (password, ok) in [("pâss wörd", true), ("pass word", false)] {
            let (server, server_first) = ScramServer::start(first.as_bytes(), lookup).unwrap();
            assert_eq!(server.user(), "a,b=c");
            let server_first = String::from_utf8(server_first).unwrap();
            assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
            let last = client_final(password.as_bytes(), bare, &server_first, "biws");
            let result = server.finish(last.as_bytes());
            assert_eq!(result.is_ok(), ok, "{password}");
            if !ok {
                assert_eq!(result.unwrap_err(), ScramError::InvalidProof);
            }
        }
        // An unknown user gets a salt that stays the same from try to try, and then fails.
        let unknown = "n,,n=nobody,r=abc";
        let (_, s1) = ScramServer::start(unknown.as_bytes(), |_| None).unwrap();
        let (server, s2) = ScramServer::start(unknown.as_bytes(), |_| None).unwrap();
        let salt = |s: &[u8]| {
            String::from_utf8(s.to_vec())
                .unwrap()
                .split(',')
                .nth(1)
                .unwrap()
                .to_string()
        };
        assert_eq!(salt(&s1), salt(&s2));
        let last = client_final(
            b"anything",
            &unknown[3..],
            std::str::from_utf8(&s2).unwrap(),
            "biws",
        );
        assert_eq!(
            server.finish(last.as_bytes()).unwrap_err(),
            ScramError::InvalidProof
        );
    }

    /// Proves SASLprep applies to passwords (RFC 4013's examples: a non-ASCII space is a
    /// space, a soft hyphen is nothing), and that a password SASLprep refuses is used as sent.
    #[test]
    fn passwords_are_saslprepped() {
        let v = verifier_for(b"I X", &BASE64.decode(SALT).unwrap(), 4096).unwrap();
        assert!(verify_password(&v, "I\u{00A0}X".as_bytes()));
        assert!(verify_password(&v, "I \u{00AD}X".as_bytes()));
        let control = verifier_for(b"a\x07b", &BASE64.decode(SALT).unwrap(), 4096).unwrap();
        assert!(verify_password(&control, b"a\x07b"));
        let binary = verifier_for(&[0xff, 0xfe], &BASE64.decode(SALT).unwrap(), 4096).unwrap();
        assert!(verify_password(&binary, &[0xff, 0xfe]));
    }

    /// Proves every malformed or unsupported client-first message gets its own error.
    #[test]
    fn malformed_client_first_messages() {
        let long = format!("n,,n=user,r={}", "x".repeat(SCRAM_MESSAGE_LEN_MAX));
        let cases: [(&[u8], ScramError); 14] = [
            (long.as_bytes(), ScramError::TooLong),
            (b"n,,n=user,r=\xff", ScramError::Malformed("not UTF-8")),
            (
                b"n,,",
                ScramError::Malformed("client-first: no user name (n=) after the gs2 header"),
            ),
            (
                b"n",
                ScramError::Malformed("client-first: no gs2 header (\"n,,\")"),
            ),
            (
                b"x,,n=user,r=abc",
                ScramError::Malformed("client-first: the gs2 header starts with n, y or p="),
            ),
            (
                b"p=tls-server-end-point,,n=user,r=abc",
                ScramError::ChannelBindingNotSupported,
            ),
            (b"n,a=admin,n=user,r=abc", ScramError::AuthzidNotSupported),
            (
                b"n,admin,n=user,r=abc",
                ScramError::Malformed("client-first: the gs2 header's second field is empty or a="),
            ),
            (b"n,,m=ext,n=user,r=abc", ScramError::MandatoryExtension),
            (
                b"n,,r=abc,n=user",
                ScramError::Malformed("client-first: no user name (n=) after the gs2 header"),
            ),
            (
                b"n,,n=user",
                ScramError::Malformed("client-first: no nonce (r=) after the user name"),
            ),
            (
                b"n,,n=user,r=",
                ScramError::Malformed("client-first: the nonce is not printable ASCII without ','"),
            ),
            (b"n,,n=us=2Xer,r=abc", ScramError::InvalidUserName),
            (
                b"n,,n=user,r=abc,extension",
                ScramError::Malformed("an attribute is not of the form <letter>=<value>"),
            ),
        ];
        for (message, expected) in cases {
            let result = ScramServer::start(message, |_| None);
            assert_eq!(
                result.unwrap_err(),
                expected,
                "{}",
                String::from_utf8_lossy(message)
            );
        }
        assert_eq!(
            start("n,,n=,r=abc").unwrap_err(),
            ScramError::InvalidUserName
        );
        assert_eq!(
            start("n,,n=a=3,r=abc").unwrap_err(),
            ScramError::InvalidUserName
        );
        // An optional extension is accepted and is part of the AuthMessage.
        assert!(start("n,,n=user,r=abc,x=1").is_ok());
    }

    /// Proves every malformed or mismatched client-final message is refused, with its error.
    #[test]
    fn malformed_client_final_messages() {
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let cases = [
            (
                format!("c=biws,r={nonce}"),
                ScramError::Malformed("client-final: no proof (p=) at its end"),
            ),
            (
                format!("r={nonce},c=biws,{proof}"),
                ScramError::Malformed("client-final: no channel binding (c=) first"),
            ),
            (
                format!("c=biws,{proof}"),
                ScramError::Malformed("client-final: no nonce (r=) second"),
            ),
            (
                format!("c=eSws,r={nonce},{proof}"),
                ScramError::ChannelBindingMismatch,
            ),
            (
                format!("c=biws,r={nonce}x,{proof}"),
                ScramError::NonceMismatch,
            ),
            (
                format!("c=biws,r={nonce},p=AAAA"),
                ScramError::Malformed("client-final: the proof is not 32 bytes in base64"),
            ),
            (
                format!("c=biws,r={nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVA="),
                ScramError::InvalidProof,
            ),
            (
                format!("c=biws,r={nonce},bad,{proof}"),
                ScramError::Malformed("an attribute is not of the form <letter>=<value>"),
            ),
        ];
        for (message, expected) in cases {
            let (server, _) = start(CLIENT_FIRST).unwrap();
            assert_eq!(
                server.finish(message.as_bytes()).unwrap_err(),
                expected,
                "{message}"
            );
        }
    }

    /// Proves a client that could bind a channel but sees no offer (gs2 flag `y`) is served,
    /// and must repeat its `y` header in `c=` (base64 "eSws").
    #[test]
    fn gs2_flag_y_is_served_without_binding() {
        let first = "y,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        for (binding, expected) in [
            ("biws", Err(ScramError::ChannelBindingMismatch)),
            ("eSws", Ok(())),
        ] {
            let (server, server_first) = start(first).unwrap();
            let server_first = String::from_utf8(server_first).unwrap();
            let last = client_final(b"pencil", &first[3..], &server_first, binding);
            assert_eq!(
                server.finish(last.as_bytes()).map(|_| ()),
                expected,
                "{binding}"
            );
        }
    }

    #[test]
    fn errors_are_small_and_map_to_rfc_values() {
        assert!(std::mem::size_of::<ScramError>() <= 24);
        assert_eq!(ScramError::InvalidProof.server_error(), "invalid-proof");
        assert_eq!(
            ScramError::ChannelBindingNotSupported.server_error(),
            "channel-binding-not-supported"
        );
        assert_eq!(
            ScramError::MandatoryExtension.server_error(),
            "extensions-not-supported"
        );
    }
}
