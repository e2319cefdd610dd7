//! `/ima/v1/configuration`: the running configuration read (View), changed (Configure).
//!
//! A change is built into a whole new document, checked with the same code as the file
//! (`Config::parse`, then `Apply::check` for the files it names), written to the file
//! atomically, and only then applied; a refusal at any step before the write changes nothing.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use ironsight_config::admin::Action;
use ironsight_config::document::{self, EditError, Shape};
use ironsight_config::ldap::Secret;
use ironsight_config::Config;
use serde_json::{Map, Value};

use crate::api::{Api, Peer};
use crate::error::{success, Answer, Code, Refusal};
use crate::persist;

/// Objects the API itself applies at once: who may do what.
const LIVE_IN_THE_API: [&str; 3] = ["ConfigurationPolicy", "AdminUserID", "AdminUserPassword"];

/// GET `/ima/v1/configuration`: every object, defaults filled in, secrets left out.
pub async fn get_all(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Answer {
    api.allow(&headers, peer, Action::View).await?;
    let mut doc = shown(&api.config());
    doc.insert("Version".into(), "v1".into());
    Ok(Json(Value::Object(doc)).into_response())
}

/// GET `/ima/v1/configuration/<Type>`.
pub async fn get_type(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
) -> Answer {
    api.allow(&headers, peer, Action::View).await?;
    let doc = shown(&api.config());
    let Some(shape) = document::shape(&object_type) else {
        return Err(unknown_type(&object_type));
    };
    let value = match (doc.get(&object_type), shape) {
        (Some(value), _) => value.clone(),
        (None, Shape::Named) => Value::Object(Map::new()),
        (None, Shape::List) => Value::Array(Vec::new()),
        (None, _) => return Err(not_configured(&object_type)),
    };
    Ok(Json(serde_json::json!({"Version": "v1", object_type: value})).into_response())
}

/// GET `/ima/v1/configuration/<Type>/<Name>`.
pub async fn get_object(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path((object_type, name)): Path<(String, String)>,
) -> Answer {
    api.allow(&headers, peer, Action::View).await?;
    let doc = shown(&api.config());
    match document::shape(&object_type) {
        None => return Err(unknown_type(&object_type)),
        Some(Shape::Named) => {}
        Some(_) => {
            return Err(Refusal::new(
                Code::NotFound,
                format!(
                    "{object_type} is not a named object; GET /ima/v1/configuration/{object_type}"
                ),
            ))
        }
    }
    let object = doc
        .get(&object_type)
        .and_then(|objects| objects.get(&name))
        .ok_or_else(|| not_found(&object_type, &name))?;
    let body = serde_json::json!({"Version": "v1", object_type: {name: object}});
    Ok(Json(body).into_response())
}

/// POST `/ima/v1/configuration` with `{"<Type>": {"<Name>": {...}}}`: create or update.
pub async fn post(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    api.allow(&headers, peer, Action::Configure).await?;
    let change = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(change)) => change,
        Ok(_) => {
            return Err(Refusal::new(
                Code::BadRequest,
                "the body must be a JSON object: {\"<Type>\": {\"<Name>\": {...}}}",
            ))
        }
        Err(e) => {
            return Err(Refusal::new(
                Code::BadRequest,
                format!("the body is not valid JSON: {e}"),
            ))
        }
    };
    let change = hash_admin_password(change).await?;
    change_configuration(&api, |doc| document::merge(doc, &change)).await
}

/// DELETE `/ima/v1/configuration/<Type>/<Name>`.
pub async fn delete(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path((object_type, name)): Path<(String, String)>,
) -> Answer {
    api.allow(&headers, peer, Action::Configure).await?;
    change_configuration(&api, |doc| document::remove(doc, &object_type, &name)).await
}

/// A new AdminUserPassword arrives in clear (over HTTPS, or on loopback): the file keeps only
/// its verifier. The mask that other secrets are shown as is refused rather than taken for a
/// password.
async fn hash_admin_password(
    mut change: Map<String, Value>,
) -> Result<Map<String, Value>, Refusal> {
    let Some(given) = change.get("AdminUserPassword") else {
        return Ok(change);
    };
    let refuse =
        |message: &str| Refusal::new(Code::BadValue, format!("AdminUserPassword: {message}"));
    let password = match given {
        Value::String(p) if p.is_empty() => return Err(refuse("is empty")),
        Value::String(p) if p == Secret::MASK => {
            return Err(refuse(
                "is the mask secrets are shown as; send the new password",
            ))
        }
        Value::String(p) => zeroize::Zeroizing::new(p.clone().into_bytes()),
        other => {
            return Err(refuse(&format!(
                "must be a string, got {}",
                document::kind(other)
            )))
        }
    };
    let verifier = tokio::task::spawn_blocking(move || {
        ironsight_auth::scram::hash_password(&password, ironsight_auth::scram::ITERATIONS_DEFAULT)
    })
    .await
    .map_err(|_| Refusal::new(Code::Unavailable, "the password could not be hashed"))?
    .map_err(|e| Refusal::new(Code::Unavailable, e))?;
    change.insert("AdminUserPassword".into(), verifier.to_string().into());
    Ok(change)
}

/// Builds the new document with `edit`, checks it whole, writes it, applies it.
async fn change_configuration(
    api: &Api,
    edit: impl FnOnce(&mut Map<String, Value>) -> Result<(), EditError>,
) -> Answer {
    let _one_at_a_time = api.changing.lock().await;
    let Some(path) = api.path.clone() else {
        return Err(Refusal::new(
            Code::Conflict,
            "this broker runs the built-in configuration, which has no file to keep changes in; start it with --config FILE",
        ));
    };
    let (old, mut doc) = {
        let current = api.read();
        (current.config.clone(), current.doc.clone())
    };
    edit(&mut doc).map_err(|e| {
        let code = if e.not_found {
            Code::NotFound
        } else {
            Code::BadRequest
        };
        Refusal::new(code, e.error.to_string())
    })?;
    let text = Value::Object(doc.clone()).to_string();
    let new = Config::parse_for(&text, &path).map_err(|e| Refusal::config(&e))?;
    api.apply.check(&new).map_err(|e| Refusal::config(&e))?;
    let changed = document::changed_objects(&old, &new);
    if changed.is_empty() {
        return Ok(success(
            "The requested configuration change has completed successfully. Nothing changed.",
            serde_json::json!({"Applied": [], "RestartNeeded": []}),
        ));
    }
    let write_path = path.clone();
    let write_doc = doc.clone();
    tokio::task::spawn_blocking(move || persist::write(&write_path, &write_doc))
        .await
        .map_err(|_| Refusal::new(Code::WriteFailed, "the configuration file was not written"))?
        .map_err(|e| Refusal::new(Code::WriteFailed, e))?;
    let new = Arc::new(new);
    api.replace(new.clone(), doc);
    tracing::info!(changed = ?changed, "configuration changed through the REST API");
    let outcome = api.apply.apply(&new);
    let (mut applied, mut restart_needed): (Vec<String>, Vec<String>) = changed
        .iter()
        .filter(|c| is_api_object(c) || c.as_str() == "AdminEndpoint")
        .cloned()
        .partition(|c| is_api_object(c));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, "the new configuration is in the file but was not applied");
            return Err(Refusal::new(
                Code::WriteFailed,
                format!("the change is in the configuration file but could not be applied ({e}); restart the broker to apply it"),
            ));
        }
    };
    let broker_part = |list: Vec<String>| -> Vec<String> {
        list.into_iter()
            .filter(|c| !is_api_object(c) && c.as_str() != "AdminEndpoint")
            .collect()
    };
    applied.extend(broker_part(outcome.applied));
    restart_needed.extend(broker_part(outcome.restart_needed));
    let mut message = "The requested configuration change has completed successfully.".to_string();
    if !restart_needed.is_empty() {
        message.push_str(&format!(
            " It is in the configuration file; restart the broker for it to take effect on: {}.",
            restart_needed.join(", ")
        ));
    }
    Ok(success(
        &message,
        serde_json::json!({"Applied": applied, "RestartNeeded": restart_needed}),
    ))
}

/// Whether a changed object (`Type "Name"` or `Type`) is one the API applies itself.
fn is_api_object(changed: &str) -> bool {
    let object_type = changed.split(' ').next().unwrap_or(changed);
    LIVE_IN_THE_API.contains(&object_type)
}

/// The configuration as GET shows it: defaults filled in, password hashes left out (a
/// verifier lets a guesser test passwords offline).
pub fn shown(config: &Config) -> Map<String, Value> {
    let mut doc = document::as_document(config);
    doc.remove("AdminUserPassword");
    if let Some(Value::Object(users)) = doc.get_mut("MessagingUser") {
        for user in users.values_mut() {
            if let Value::Object(attrs) = user {
                attrs.remove("Password");
            }
        }
    }
    doc
}

fn unknown_type(object_type: &str) -> Refusal {
    Refusal::new(
        Code::NotFound,
        format!("The item or object cannot be found. Type: {object_type} (not an object type of ironsight)"),
    )
}

fn not_found(object_type: &str, name: &str) -> Refusal {
    Refusal::new(
        Code::NotFound,
        format!("The item or object cannot be found. Type: {object_type} Name: {name}"),
    )
}

fn not_configured(object_type: &str) -> Refusal {
    Refusal::new(
        Code::NotFound,
        format!("The item or object cannot be found. Type: {object_type} (not configured)"),
    )
}
