//! `/ima/v1/service`: the broker's status (Monitor), and what an operator does to it
//! (Manage): stop, restart, close connections, delete a disconnected client's session.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use ironsight_config::admin::Action;
use ironsight_config::document;
use ironsight_core::monitor::{ConnectionFilter, DeleteRefusal, Wildcard};
use serde_json::Value;

use crate::api::{Api, Peer};
use crate::error::{success, Answer, Code, Refusal};
use crate::shards::{ask_all, Query, Reply};
use crate::system;

/// GET `/ima/v1/service/status` (and `/status/Server`): Amlen's Server status object.
pub async fn status(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Answer {
    api.allow(&headers, peer, Action::Monitor).await?;
    let up = api.started.elapsed();
    let body = serde_json::json!({
        "Version": "v1",
        "Server": {
            "Name": system::hostname(),
            "Status": "Running",
            "State": 1,
            "StateDescription": "Running (production)",
            "ServerTime": system::iso_time(std::time::SystemTime::now()),
            "StartTime": system::iso_time(api.started_at),
            "UpTimeSeconds": up.as_secs(),
            "UpTimeDescription": system::uptime_text(up),
            "Version": format!("ironsight {}", env!("CARGO_PKG_VERSION")),
            "Shards": api.shards.count(),
            "ErrorCode": 0,
            "ErrorMessage": "",
        }
    });
    Ok(Json(body).into_response())
}

/// GET `/ima/v1/service/status/<Service>`: only `Server` exists in ironsight.
pub async fn status_of(
    state: State<Arc<Api>>,
    peer: Extension<Peer>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Answer {
    if service != "Server" {
        return Err(Refusal::new(
            Code::NotFound,
            format!("ironsight has no service \"{service}\"; its one service is Server"),
        ));
    }
    status(state, peer, headers).await
}

/// POST `/ima/v1/service/stop`: the clean stop SIGTERM makes.
pub async fn stop(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Answer {
    api.allow(&headers, peer, Action::Manage).await?;
    tracing::info!(peer = %peer.0, "stop requested through the REST API");
    api.shards.stop(false);
    Ok(success(
        "The broker is stopping: clients are disconnected, as on SIGTERM.",
        serde_json::json!({}),
    ))
}

/// POST `/ima/v1/service/restart`: the same stop, then the broker starts again in the same
/// process (it executes itself anew with the same arguments).
pub async fn restart(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Answer {
    api.allow(&headers, peer, Action::Manage).await?;
    tracing::info!(peer = %peer.0, "restart requested through the REST API");
    api.shards.stop(true);
    Ok(success(
        "The broker is restarting: it stops as on SIGTERM and starts again with the same arguments.",
        serde_json::json!({}),
    ))
}

/// DELETE `/ima/v1/service/MQTTClient/<ClientID>`: a disconnected client's session, with its
/// subscriptions and queued messages. A connected client's is refused: close it first.
pub async fn delete_client(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Answer {
    api.allow(&headers, peer, Action::Manage).await?;
    let replies = ask_all(&*api.shards, Query::DeleteSession(client_id.clone())).await?;
    let mut refusal = DeleteRefusal::NotFound;
    for reply in replies {
        match reply {
            Reply::Deleted(Ok(())) => {
                return Ok(success(
                    &format!("The session of MQTT client \"{client_id}\" is deleted."),
                    serde_json::json!({}),
                ))
            }
            Reply::Deleted(Err(DeleteRefusal::Connected)) => refusal = DeleteRefusal::Connected,
            _ => {}
        }
    }
    Err(match refusal {
        DeleteRefusal::Connected => Refusal::new(
            Code::Conflict,
            format!("MQTT client \"{client_id}\" is connected; close its connection first (POST /ima/v1/service/close/connection)"),
        ),
        DeleteRefusal::NotFound => Refusal::new(
            Code::NotFound,
            format!("The item or object cannot be found. Type: MQTTClient Name: {client_id}"),
        ),
    })
}

/// POST `/ima/v1/service/close/connection` with `{"ClientID": ..., "UserID": ...,
/// "ClientAddress": ...}`: each a comma list of patterns (`*` matches any characters), at
/// least one given; every connection that matches all those given is closed.
pub async fn close_connection(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    api.allow(&headers, peer, Action::Manage).await?;
    let filter = close_filter(&body)?;
    let replies = ask_all(&*api.shards, Query::Close(filter)).await?;
    let closed: usize = replies
        .iter()
        .map(|r| match r {
            Reply::Closed(n) => *n,
            _ => 0,
        })
        .sum();
    if closed == 0 {
        return Err(Refusal::new(
            Code::NotFound,
            "no connection matches; nothing was closed",
        ));
    }
    Ok(success(
        &format!("{closed} connection(s) closed."),
        serde_json::json!({"Closed": closed}),
    ))
}

fn close_filter(body: &[u8]) -> Result<ConnectionFilter, Refusal> {
    let attrs = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(attrs)) => attrs,
        Ok(_) => {
            return Err(Refusal::new(
                Code::BadRequest,
                "the body must be a JSON object: {\"ClientID\": ..., \"UserID\": ..., \"ClientAddress\": ...}",
            ))
        }
        Err(e) => {
            return Err(Refusal::new(
                Code::BadRequest,
                format!("the body is not valid JSON: {e}"),
            ))
        }
    };
    let mut filter = ConnectionFilter::default();
    let mut given = false;
    for (attribute, value) in &attrs {
        let slot = match attribute.as_str() {
            "ClientID" => &mut filter.client_id,
            "UserID" => &mut filter.user_id,
            "ClientAddress" => &mut filter.client_address,
            _ => {
                return Err(Refusal::new(
                    Code::UnknownAttribute,
                    format!(
                        "close connection: {attribute} {}; use ClientID, UserID or ClientAddress",
                        ironsight_config::objects::UNKNOWN_ATTRIBUTE
                    ),
                ))
            }
        };
        let Value::String(list) = value else {
            return Err(Refusal::new(
                Code::BadValue,
                format!(
                    "close connection: {attribute} must be a string, got {}",
                    document::kind(value)
                ),
            ));
        };
        let patterns: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        if patterns.is_empty() {
            continue;
        }
        given = true;
        *slot = Wildcard::any_of(patterns);
    }
    if !given {
        return Err(Refusal::new(
            Code::BadRequest,
            "close connection needs at least one of ClientID, UserID and ClientAddress",
        ));
    }
    Ok(filter)
}
