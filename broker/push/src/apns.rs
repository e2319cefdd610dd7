//! Apple Push Notification service, provider API over HTTP/2 with token-based authentication.
//!
//! Each request is `POST /3/device/<token>` with `authorization: bearer <JWT>`, `apns-topic`
//! (the bundle id), `apns-push-type: alert` and `apns-priority`. The JWT is ES256, header
//! `{"alg":"ES256","kid":KeyID}`, claims `{"iss":TeamID,"iat":now}`; Apple refuses a token
//! older than an hour and one renewed more often than every 20 minutes, so one is kept for
//! `JWT_REUSE` and renewed early only when Apple says it expired.
//!
//! Answers: 200 sent; 410 (Unregistered) and 400 BadDeviceToken / DeviceTokenNotForTopic mean
//! the token is dead; 403 ExpiredProviderToken / InvalidProviderToken renews the JWT and tries
//! again; 429 and 5xx try again.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::config;
use crate::http::Http;
use crate::jwt::Signer;
use crate::service::{excerpt, Alert, Outcome, Push};

/// How long a provider token is used: under Apple's hour, over its 20-minute floor.
pub const JWT_REUSE: Duration = Duration::from_secs(50 * 60);
/// The largest .p8 key file read, in bytes.
const KEY_BYTES_MAX: u64 = 16 * 1024;

pub struct Apns {
    http: Http,
    base: String,
    topic: String,
    priority: u8,
    key_id: String,
    team_id: String,
    signer: Signer,
    /// The provider token and when it was made.
    jwt: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    pub fn new(http: Http, c: &config::Apns) -> Result<Apns, String> {
        let pem = read_bounded(&c.key_file, KEY_BYTES_MAX)?;
        let signer = Signer::es256(&pem).map_err(|e| format!("{}: {e}", c.key_file.display()))?;
        Ok(Apns {
            http,
            base: c.url.trim_end_matches('/').into(),
            topic: c.topic.clone(),
            priority: c.priority,
            key_id: c.key_id.clone(),
            team_id: c.team_id.clone(),
            signer,
            jwt: Mutex::new(None),
        })
    }

    /// The provider token: the kept one while younger than JWT_REUSE, else a new one.
    fn jwt(&self, now: Instant) -> String {
        let mut kept = self.jwt.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, made)) = &*kept {
            if now.duration_since(*made) < JWT_REUSE {
                return token.clone();
            }
        }
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = self.signer.sign(
            json!({"kid": self.key_id}),
            &json!({"iss": self.team_id, "iat": iat}),
        );
        *kept = Some((token.clone(), now));
        token
    }

    fn forget_jwt(&self) {
        *self.jwt.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub async fn push(&self, push: &Push, alert: &Alert) -> Outcome {
        let body = alert.apns_body(&push.notification).to_string();
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/3/device/{}", self.base, push.device.token))
            .header(
                "authorization",
                format!("bearer {}", self.jwt(Instant::now())),
            )
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", self.priority.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("cannot build the request: {e}")),
        };
        let answer = match self.http.send(request, true).await {
            Ok(a) => a,
            Err(reason) => {
                return Outcome::Retry {
                    reason,
                    after: None,
                }
            }
        };
        if let Some(outcome) = Outcome::common(&answer) {
            return outcome;
        }
        let reason = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| excerpt(&answer.body));
        match (answer.status, reason.as_str()) {
            (StatusCode::GONE, _)
            | (StatusCode::BAD_REQUEST, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
                Outcome::InvalidToken(format!("APNs {}: {reason}", answer.status.as_u16()))
            }
            (StatusCode::FORBIDDEN, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.forget_jwt();
                Outcome::Retry {
                    reason: format!("APNs 403: {reason}"),
                    after: None,
                }
            }
            (status, _) => Outcome::Failed(format!("APNs {}: {reason}", status.as_u16())),
        }
    }
}

/// A file read whole, refused when larger than `max` bytes.
pub fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    let show = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let len = std::fs::metadata(path).map_err(|e| show(&e))?.len();
    if len > max {
        return Err(show(&format!("larger than {max} bytes")));
    }
    std::fs::read(path).map_err(|e| show(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::Engine;

    /// Proves the provider token is reused until JWT_REUSE and made anew after it, and when
    /// Apple said it expired. Time is passed in.
    #[test]
    fn provider_token_reused_for_fifty_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let key =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(key.as_ref())
        );
        std::fs::write(dir.path().join("AuthKey.p8"), pem).unwrap();
        let config = config::Apns {
            url: "https://127.0.0.1:1".into(),
            key_file: dir.path().join("AuthKey.p8"),
            key_id: "K".into(),
            team_id: "T".into(),
            topic: "app".into(),
            priority: 10,
        };
        let http = Http::new(rustls::RootCertStore::empty(), Duration::from_secs(1));
        let apns = Apns::new(http, &config).unwrap();
        let t0 = Instant::now();
        let first = apns.jwt(t0);
        assert_eq!(apns.jwt(t0 + JWT_REUSE - Duration::from_secs(1)), first);
        let renewed = apns.jwt(t0 + JWT_REUSE);
        assert_ne!(
            renewed, first,
            "ECDSA signatures differ even for the same claims"
        );
        assert_eq!(apns.jwt(t0 + JWT_REUSE), renewed);
        apns.forget_jwt();
        assert_ne!(apns.jwt(t0 + JWT_REUSE), renewed);
    }
}
