//! Answers that refuse a request, in Amlen's shape: `{"Version":"v1","Code":"CWLNA...",
//! "Message":"..."}`, the HTTP status that goes with the code, and nothing changed.
//!
//! The codes are Amlen's where Amlen has one for the same meaning (CWLNA0112, 0136, 0138,
//! 6011); the others are ironsight's own, numbered CWLNA8xxx so that they cannot be mistaken
//! for Amlen's.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ironsight_config::ConfigError;

/// Amlen's success code, with every change that completed.
pub const SUCCESS: &str = "CWLNA6011";

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// An attribute's value (or type) is not valid (Amlen's CWLNA0112).
    BadValue,
    /// An object type, object, session or route that does not exist (Amlen's CWLNA0136).
    NotFound,
    /// An attribute the object does not have (Amlen's CWLNA0138).
    UnknownAttribute,
    /// An object or the document is not valid as a whole (a missing reference, no endpoint).
    BadObject,
    /// The request's body is not the JSON the route takes.
    BadRequest,
    /// No credentials, wrong ones, or no administrator password set yet.
    Unauthorized,
    /// The credentials are right but no ConfigurationPolicy grants the action.
    Forbidden,
    /// The request conflicts with the broker's state: a connected client's session, a
    /// broker without a configuration file to write.
    Conflict,
    /// The shards did not answer in time (the broker is stopping, or overloaded).
    Unavailable,
    /// The configuration file could not be written.
    WriteFailed,
    /// The route exists but not with this method.
    MethodNotAllowed,
}

impl Code {
    pub fn text(self) -> &'static str {
        match self {
            Code::BadValue => "CWLNA0112",
            Code::NotFound => "CWLNA0136",
            Code::UnknownAttribute => "CWLNA0138",
            Code::BadObject => "CWLNA8001",
            Code::BadRequest => "CWLNA8002",
            Code::Unauthorized => "CWLNA8003",
            Code::Forbidden => "CWLNA8004",
            Code::Conflict => "CWLNA8005",
            Code::Unavailable => "CWLNA8006",
            Code::WriteFailed => "CWLNA8007",
            Code::MethodNotAllowed => "CWLNA8008",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::BadValue | Code::UnknownAttribute | Code::BadObject | Code::BadRequest => {
                StatusCode::BAD_REQUEST
            }
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::Conflict => StatusCode::CONFLICT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::WriteFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// A refused request: its code and a message that says what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// A configuration refused by the same checks as a file: the message names the object and
    /// the attribute (ConfigError's text).
    pub fn config(error: &ConfigError) -> Refusal {
        let code = match &error.attribute {
            Some(_) if error.message == ironsight_config::objects::UNKNOWN_ATTRIBUTE => {
                Code::UnknownAttribute
            }
            Some(_) => Code::BadValue,
            None => Code::BadObject,
        };
        Refusal::new(code, error.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "Version": "v1",
            "Code": self.code.text(),
            "Message": self.message,
        });
        let mut response = (self.code.status(), Json(body)).into_response();
        if self.code == Code::Unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"ironsight\""),
            );
        }
        response
    }
}

/// What a handler returns: its answer, or a refusal.
pub type Answer = Result<Response, Refusal>;

/// A success in Amlen's shape, with more fields when `extra` has them.
pub fn success(message: &str, extra: serde_json::Value) -> Response {
    let mut body = serde_json::json!({
        "Version": "v1",
        "Code": SUCCESS,
        "Message": message,
    });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    Json(body).into_response()
}
