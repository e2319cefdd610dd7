//! The webhook: the notification posted as JSON to the operator's own URL (a private relay, a
//! service of the app's back end). Answers: 2xx sent; 410 Gone means the token is dead; 429
//! and 5xx try again; anything else is a failure.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;

use crate::config;
use crate::http::Http;
use crate::service::{excerpt, Alert, Outcome, Push};

pub struct Webhook {
    http: Http,
    url: String,
}

impl Webhook {
    pub fn new(http: Http, c: &config::Webhook) -> Webhook {
        Webhook {
            http,
            url: c.url.clone(),
        }
    }

    pub async fn push(&self, push: &Push, alert: &Alert) -> Outcome {
        let body = alert.webhook_body(push).to_string();
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
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
        let reason = format!(
            "webhook {}: {}",
            answer.status.as_u16(),
            excerpt(&answer.body)
        );
        if answer.status == StatusCode::GONE {
            Outcome::InvalidToken(reason)
        } else {
            Outcome::Failed(reason)
        }
    }
}
