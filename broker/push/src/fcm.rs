//! Firebase Cloud Messaging, HTTP v1 API, authorised by a service account.
//!
//! The access token comes from the service account's `token_uri` (RFC 7523): a JWT signed
//! RS256 with the account's key, claims `iss` = client_email, `scope` = firebase.messaging,
//! `aud` = token_uri, `iat`, `exp` (an hour), posted as
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`. The answer's
//! `access_token` is kept until a minute before its `expires_in`.
//!
//! A push is `POST /v1/projects/<project>/messages:send` with `Authorization: Bearer <token>`
//! and `{"message":{"token":...,"notification":{...}}}`. Answers: 200 sent; 404 (UNREGISTERED)
//! and 400 INVALID_ARGUMENT about the token mean the token is dead; 401 renews the access
//! token and tries again; 429 and 5xx try again.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::apns::read_bounded;
use crate::config;
use crate::http::Http;
use crate::jwt::Signer;
use crate::service::{excerpt, Alert, Outcome, Push};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The assertion's lifetime: Google's maximum.
const ASSERTION_LIFETIME_S: u64 = 3600;
/// An access token is renewed this long before it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// The largest service account file read, and the longest access token kept.
const ACCOUNT_BYTES_MAX: u64 = 64 * 1024;
const ACCESS_TOKEN_BYTES_MAX: usize = 4096;

/// The parts of a service account's JSON key the gateway uses.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    private_key_id: Option<String>,
    private_key: String,
    client_email: String,
    token_uri: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub struct Fcm {
    http: Http,
    send_url: String,
    client_email: String,
    token_uri: String,
    key_id: Option<String>,
    signer: Signer,
    /// The access token and when to renew it; held across a renewal, so that the pushes
    /// waiting for a token share one request for it.
    access: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    pub fn new(http: Http, c: &config::Fcm) -> Result<Fcm, String> {
        let path = &c.service_account_file;
        let text = read_bounded(path, ACCOUNT_BYTES_MAX)?;
        let account: ServiceAccount = serde_json::from_slice(&text)
            .map_err(|e| format!("{}: not a service account key: {e}", path.display()))?;
        let signer = Signer::rs256(account.private_key.as_bytes())
            .map_err(|e| format!("{}: private_key: {e}", path.display()))?;
        let token_uri: http::Uri = account
            .token_uri
            .parse()
            .map_err(|e| format!("{}: token_uri: {e}", path.display()))?;
        if token_uri.scheme_str() != Some("https") {
            return Err(format!("{}: token_uri is not https", path.display()));
        }
        let project = c.project_id.as_deref().unwrap_or(&account.project_id);
        if project.is_empty()
            || !project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "the project id {project:?} is not letters, digits and -"
            ));
        }
        Ok(Fcm {
            http,
            send_url: format!(
                "{}/v1/projects/{project}/messages:send",
                c.url.trim_end_matches('/')
            ),
            client_email: account.client_email,
            token_uri: account.token_uri,
            key_id: account.private_key_id,
            signer,
            access: tokio::sync::Mutex::new(None),
        })
    }

    /// The access token, asked for when there is none or it is about to expire.
    async fn access_token(&self) -> Result<String, Outcome> {
        let mut kept = self.access.lock().await;
        if let Some((token, renew_at)) = &*kept {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = match &self.key_id {
            Some(kid) => json!({ "kid": kid }),
            None => json!({}),
        };
        let assertion = self.signer.sign(
            header,
            &json!({"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
                    "iat": now, "exp": now + ASSERTION_LIFETIME_S}),
        );
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| Outcome::Failed(format!("cannot build the token request: {e}")))?;
        let answer = self
            .http
            .send(request, false)
            .await
            .map_err(|reason| Outcome::Retry {
                reason: format!("token endpoint: {reason}"),
                after: None,
            })?;
        if !answer.status.is_success() {
            let reason = format!(
                "token endpoint {}: {}",
                answer.status.as_u16(),
                excerpt(&answer.body)
            );
            return Err(match Outcome::common(&answer) {
                Some(Outcome::Retry { after, .. }) => Outcome::Retry { reason, after },
                _ => Outcome::Failed(reason),
            });
        }
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| Outcome::Failed(format!("token endpoint's answer: {e}")))?;
        let token = parsed.access_token;
        if token.is_empty()
            || token.len() > ACCESS_TOKEN_BYTES_MAX
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Outcome::Failed(
                "token endpoint's access_token is not a bearer token".into(),
            ));
        }
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(ASSERTION_LIFETIME_S));
        *kept = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(RENEW_MARGIN),
        ));
        Ok(token)
    }

    pub async fn push(&self, push: &Push, alert: &Alert) -> Outcome {
        let token = match self.access_token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let body = alert
            .fcm_body(&push.device.token, &push.notification)
            .to_string();
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.send_url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("cannot build the request: {e}")),
        };
        let answer = match self.http.send(request, false).await {
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
        let error = serde_json::from_slice::<Value>(&answer.body).unwrap_or(Value::Null);
        let reason = format!("FCM {}: {}", answer.status.as_u16(), excerpt(&answer.body));
        match answer.status {
            StatusCode::NOT_FOUND => Outcome::InvalidToken(reason),
            StatusCode::BAD_REQUEST if about_the_token(&error) => Outcome::InvalidToken(reason),
            StatusCode::UNAUTHORIZED => {
                *self.access.lock().await = None;
                Outcome::Retry {
                    reason,
                    after: None,
                }
            }
            _ => Outcome::Failed(reason),
        }
    }
}

/// Whether a 400 INVALID_ARGUMENT names the token: a BadRequest field violation on
/// `message.token`, or Google's message about the registration token. Other invalid
/// arguments (a payload too large, a bad field of ours) must not remove a good token.
fn about_the_token(error: &Value) -> bool {
    let error = &error["error"];
    if error["status"] != "INVALID_ARGUMENT" {
        return false;
    }
    let details = error["details"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let field_is_token = details.iter().any(|d| {
        d["fieldViolations"]
            .as_array()
            .is_some_and(|v| v.iter().any(|f| f["field"] == "message.token"))
    });
    let message = error["message"].as_str().unwrap_or("");
    field_is_token || message.contains("registration token")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves which INVALID_ARGUMENT answers remove a token and which do not.
    #[test]
    fn invalid_argument_about_the_token() {
        let token = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "The registration token is not a valid FCM registration token"}});
        let field = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "x",
            "details": [{"fieldViolations": [{"field": "message.token"}]}]}});
        let other = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "Invalid JSON payload received", "details": [{"fieldViolations": [{"field": "message.data"}]}]}});
        assert!(about_the_token(&token));
        assert!(about_the_token(&field));
        assert!(!about_the_token(&other));
        assert!(!about_the_token(&Value::Null));
    }
}
