//! `/ima/v1/monitor/<Object>` (Monitor): Amlen's monitoring objects with their field names,
//! filters (`Endpoint`, `ClientID`, ... with `*`), orders (`StatType`) and `ResultCount`.
//!
//! Counters come from the shards' snapshots (up to a second old); listings and figures that
//! need a walk over a shard's tables are asked of the shards. What ironsight does not measure
//! (Amlen's per-subscription PublishedMsgs, history) is refused by name rather than shown as 0.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as QueryString, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use ironsight_codec::ProtocolVersion;
use ironsight_config::admin::Action;
use ironsight_core::monitor::{
    ClientView, ConnectionFilter, ConnectionOrder, ConnectionView, Gauges, SubscriptionFilter,
    SubscriptionOrder, SubscriptionView, Wildcard, RESULTS_MAX,
};
use serde_json::{json, Value};

use crate::api::{Api, Peer};
use crate::error::{Answer, Code, Refusal};
use crate::shards::{ask_all, Query, Reply, ShardSnapshot};
use crate::system;

/// Amlen's default ResultCount.
const RESULT_COUNT_DEFAULT: usize = 25;

/// The query string of a monitoring request, its parameters taken one by one; any left over
/// is refused by name.
struct Params {
    object: &'static str,
    map: BTreeMap<String, String>,
}

impl Params {
    fn new(
        object: &'static str,
        query: Result<QueryString<BTreeMap<String, String>>, QueryRejection>,
    ) -> Result<Params, Refusal> {
        let QueryString(map) = query.map_err(|e| {
            Refusal::new(
                Code::BadRequest,
                format!("the query string is not valid: {e}"),
            )
        })?;
        Ok(Params { object, map })
    }

    fn wildcard(&mut self, name: &str) -> Wildcard {
        self.map
            .remove(name)
            .map_or_else(Wildcard::any, Wildcard::new)
    }

    fn result_count(&mut self) -> Result<usize, Refusal> {
        let Some(text) = self.map.remove("ResultCount") else {
            return Ok(RESULT_COUNT_DEFAULT);
        };
        match text.trim().parse::<usize>() {
            Ok(n) if (1..=RESULTS_MAX).contains(&n) => Ok(n),
            _ => Err(Refusal::new(
                Code::BadValue,
                format!(
                    "{}: ResultCount must be an integer from 1 to {RESULTS_MAX}, got \"{text}\"",
                    self.object
                ),
            )),
        }
    }

    /// One of `choices` (its index), the first when not given.
    fn choice(&mut self, name: &str, choices: &[&str]) -> Result<usize, Refusal> {
        let Some(text) = self.map.remove(name) else {
            return Ok(0);
        };
        choices.iter().position(|c| *c == text).ok_or_else(|| {
            Refusal::new(
                Code::BadValue,
                format!(
                    "{}: {name} must be one of {}, got \"{text}\"",
                    self.object,
                    choices.join(", ")
                ),
            )
        })
    }

    /// Refuses a parameter ironsight knows but does not measure.
    fn refuse_unmeasured(&self, name: &str, values: &[&str], why: &str) -> Result<(), Refusal> {
        match self.map.get(name) {
            Some(v) if values.contains(&v.as_str()) => Err(Refusal::new(
                Code::BadValue,
                format!("{}: {name} {v} is not available: {why}", self.object),
            )),
            _ => Ok(()),
        }
    }

    fn finish(self) -> Result<(), Refusal> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(Refusal::new(
                Code::UnknownAttribute,
                format!(
                    "{}: {unknown} is not a parameter of this object",
                    self.object
                ),
            )),
        }
    }
}

/// GET `/ima/v1/monitor/<Object>`.
pub async fn monitor(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(object): Path<String>,
    query: Result<QueryString<BTreeMap<String, String>>, QueryRejection>,
) -> Answer {
    api.allow(&headers, peer, Action::Monitor).await?;
    let body = match object.as_str() {
        "Server" => server(&api, Params::new("Server", query)?).await?,
        "Endpoint" => endpoint(&api, Params::new("Endpoint", query)?)?,
        "Connection" => connection(&api, Params::new("Connection", query)?).await?,
        "Subscription" => subscription(&api, Params::new("Subscription", query)?).await?,
        "MQTTClient" => mqtt_client(&api, Params::new("MQTTClient", query)?).await?,
        "Memory" => memory(Params::new("Memory", query)?)?,
        other => {
            return Err(Refusal::new(
                Code::NotFound,
                format!("ironsight has no monitoring object \"{other}\"; it has Server, Endpoint, Connection, Subscription, MQTTClient and Memory"),
            ))
        }
    };
    Ok(Json(body).into_response())
}

/// Totals over the shards' snapshots.
#[derive(Default)]
pub struct Totals {
    pub accepted: u64,
    pub active: i64,
    pub bad: u64,
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Totals {
    fn add(&mut self, e: &crate::shards::EndpointSnapshot) {
        self.accepted += e.stats.accepted;
        self.active += e.stats.active;
        self.bad += e.stats.bad;
        self.msgs_in += e.stats.messages_in;
        self.msgs_out += e.stats.messages_out;
        self.bytes_in += e.bytes_read;
        self.bytes_out += e.bytes_written;
    }
}

/// Each endpoint's totals over the shards, by name.
pub fn by_endpoint(snapshots: &[ShardSnapshot]) -> BTreeMap<String, Totals> {
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for snapshot in snapshots {
        for e in &snapshot.endpoints {
            totals.entry(e.name.clone()).or_default().add(e);
        }
    }
    totals
}

/// Every shard's gauges, summed; the retained messages once (every shard holds them all).
pub async fn gauges(api: &Api) -> Result<Gauges, Refusal> {
    let mut sum = Gauges::default();
    for reply in ask_all(&*api.shards, Query::Gauges).await? {
        if let Reply::Gauges(g) = reply {
            sum.connections += g.connections;
            sum.sessions += g.sessions;
            sum.subscriptions += g.subscriptions;
            sum.buffered_msgs += g.buffered_msgs;
            sum.retained_msgs = sum.retained_msgs.max(g.retained_msgs);
        }
    }
    Ok(sum)
}

async fn server(api: &Api, params: Params) -> Result<Value, Refusal> {
    params.finish()?;
    let snapshots = api.shards.snapshots();
    let mut all = Totals::default();
    for e in snapshots.iter().flat_map(|s| &s.endpoints) {
        all.add(e);
    }
    let stat = |f: fn(&ironsight_core::stats::Stats) -> u64| -> u64 {
        snapshots.iter().map(|s| f(&s.stats)).sum()
    };
    let gauges = gauges(api).await?;
    Ok(json!({"Version": "v1", "Server": {
        "ActiveConnections": all.active.max(0),
        "TotalConnections": all.accepted,
        "MsgRead": all.msgs_in,
        "MsgWrite": all.msgs_out,
        "BytesRead": all.bytes_in,
        "BytesWrite": all.bytes_out,
        "BadConnCount": all.bad,
        "TotalEndpoints": api.config().enabled().count(),
        "BufferedMessages": gauges.buffered_msgs,
        "RetainedMessages": gauges.retained_msgs,
        "ExpiredMessages": stat(|s| s.messages_expired),
        "ClientSessions": gauges.sessions,
        "ExpiredClientSessions": stat(|s| s.sessions_expired),
        "Subscriptions": gauges.subscriptions,
        // ironsight's: MessageSight counted its notifications nowhere an operator could see.
        "DisconnectedClientNotifications": stat(|s| s.notifications_published),
    }}))
}

const ENDPOINT_ORDERS: [&str; 7] = [
    "ActiveConnections",
    "Connections",
    "BadConnections",
    "ReadMsgs",
    "WriteMsgs",
    "ReadBytes",
    "WriteBytes",
];

fn endpoint(api: &Api, mut params: Params) -> Result<Value, Refusal> {
    let name = params.wildcard("Name");
    if params.map.get("SubType").is_some_and(|s| s != "Current") {
        return Err(Refusal::new(
            Code::BadValue,
            "Endpoint: SubType must be Current: ironsight keeps no history of its statistics (scrape /metrics for it)",
        ));
    }
    params.map.remove("SubType");
    let order = params.choice("StatType", &ENDPOINT_ORDERS)?;
    let limit = params.result_count()?;
    params.finish()?;
    let totals = by_endpoint(&api.shards.snapshots());
    let config = api.config();
    let none = Totals::default();
    let mut rows: Vec<(u64, Value)> = config
        .endpoints
        .iter()
        .filter(|(n, _)| name.matches(n))
        .map(|(n, e)| {
            let t = totals.get(n).unwrap_or(&none);
            let active = t.active.max(0) as u64;
            let key = [
                active,
                t.accepted,
                t.bad,
                t.msgs_in,
                t.msgs_out,
                t.bytes_in,
                t.bytes_out,
            ][order];
            let row = json!({
                "Name": n,
                "IPAddr": e.interface,
                "Port": e.port,
                "Enabled": e.enabled,
                "Total": t.accepted,
                "Active": active,
                "BadConnections": t.bad,
                "Messages": t.msgs_in + t.msgs_out,
                "Bytes": t.bytes_in + t.bytes_out,
                "ReadMsgs": t.msgs_in,
                "WriteMsgs": t.msgs_out,
                "ReadBytes": t.bytes_in,
                "WriteBytes": t.bytes_out,
            });
            (key, row)
        })
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.0));
    rows.truncate(limit);
    let rows: Vec<Value> = rows.into_iter().map(|(_, row)| row).collect();
    Ok(json!({"Version": "v1", "Endpoint": rows}))
}

const CONNECTION_ORDERS: [(&str, ConnectionOrder); 6] = [
    ("NewestConnection", ConnectionOrder::NewestConnection),
    ("OldestConnection", ConnectionOrder::OldestConnection),
    (
        "HighestThroughputMsgs",
        ConnectionOrder::HighestThroughputMsgs,
    ),
    (
        "LowestThroughputMsgs",
        ConnectionOrder::LowestThroughputMsgs,
    ),
    ("HighestThroughputKB", ConnectionOrder::HighestThroughputKB),
    ("LowestThroughputKB", ConnectionOrder::LowestThroughputKB),
];

async fn connection(api: &Api, mut params: Params) -> Result<Value, Refusal> {
    let filter = ConnectionFilter {
        endpoint: params.wildcard("Endpoint"),
        client_id: params.wildcard("ClientID"),
        user_id: params.wildcard("UserID"),
        client_address: params.wildcard("ClientAddress"),
    };
    let names = CONNECTION_ORDERS.map(|(n, _)| n);
    let order = CONNECTION_ORDERS[params.choice("StatType", &names)?].1;
    let limit = params.result_count()?;
    params.finish()?;
    let query = Query::Connections {
        filter,
        order,
        limit,
    };
    let mut all: Vec<ConnectionView> = ask_all(&*api.shards, query)
        .await?
        .into_iter()
        .flat_map(|r| match r {
            Reply::Connections(list) => list,
            _ => Vec::new(),
        })
        .collect();
    ConnectionView::sort(&mut all, order, limit);
    let now = Clock::now();
    let rows: Vec<Value> = all
        .iter()
        .map(|c| {
            json!({
                "Name": c.client_id,
                "Protocol": protocol_name(c.protocol),
                "ClientAddr": c.client_address.to_string(),
                "UserId": c.user_id.clone().unwrap_or_default(),
                "Endpoint": c.endpoint,
                "Port": c.port,
                "ConnectTime": system::iso_time(now.wall - c.duration),
                "Duration": c.duration.as_secs(),
                "ReadBytes": c.read_bytes,
                "ReadMsg": c.read_msgs,
                "WriteBytes": c.write_bytes,
                "WriteMsg": c.write_msgs,
            })
        })
        .collect();
    Ok(json!({"Version": "v1", "Connection": rows}))
}

const SUBSCRIPTION_ORDERS: [(&str, SubscriptionOrder); 4] = [
    (
        "BufferedMsgsHighest",
        SubscriptionOrder::BufferedMsgsHighest,
    ),
    ("BufferedMsgsLowest", SubscriptionOrder::BufferedMsgsLowest),
    (
        "BufferedPercentHighest",
        SubscriptionOrder::BufferedPercentHighest,
    ),
    (
        "BufferedPercentLowest",
        SubscriptionOrder::BufferedPercentLowest,
    ),
];

/// Amlen's subscription orders by counters ironsight does not keep per subscription.
const UNMEASURED_SUBSCRIPTION_ORDERS: [&str; 10] = [
    "PublishedMsgsHighest",
    "PublishedMsgsLowest",
    "RejectedMsgsHighest",
    "RejectedMsgsLowest",
    "BufferedHWMPercentHighest",
    "BufferedHWMPercentLowest",
    "ExpiredMsgsHighest",
    "ExpiredMsgsLowest",
    "DiscardedMsgsHighest",
    "DiscardedMsgsLowest",
];

async fn subscription(api: &Api, mut params: Params) -> Result<Value, Refusal> {
    let durable = match params.choice("SubType", &["All", "Durable", "Nondurable"])? {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    };
    let filter = SubscriptionFilter {
        sub_name: params.wildcard("SubName"),
        topic_string: params.wildcard("TopicString"),
        client_id: params.wildcard("ClientID"),
        durable,
    };
    params.refuse_unmeasured(
        "StatType",
        &UNMEASURED_SUBSCRIPTION_ORDERS,
        "ironsight counts messages per session queue, not per subscription (see /metrics for the broker's totals)",
    )?;
    let names = SUBSCRIPTION_ORDERS.map(|(n, _)| n);
    let order = SUBSCRIPTION_ORDERS[params.choice("StatType", &names)?].1;
    let limit = params.result_count()?;
    params.finish()?;
    let query = Query::Subscriptions {
        filter,
        order,
        limit,
    };
    let mut all: Vec<SubscriptionView> = ask_all(&*api.shards, query)
        .await?
        .into_iter()
        .flat_map(|r| match r {
            Reply::Subscriptions(list) => list,
            _ => Vec::new(),
        })
        .collect();
    SubscriptionView::sort(&mut all, order, limit);
    let rows: Vec<Value> = all
        .iter()
        .map(|s| {
            json!({
                "SubName": s.sub_name,
                "TopicString": s.topic_string,
                "ClientID": s.client_id,
                "IsDurable": s.is_durable,
                "IsShared": s.is_shared,
                "BufferedMsgs": s.buffered_msgs,
                "BufferedPercent": (s.buffered_percent() * 10.0).round() / 10.0,
                "MaxMessages": s.max_messages,
            })
        })
        .collect();
    Ok(json!({"Version": "v1", "Subscription": rows}))
}

async fn mqtt_client(api: &Api, mut params: Params) -> Result<Value, Refusal> {
    let client_id = params.wildcard("ClientID");
    params.choice("StatType", &["LastConnectedTimeOldest"])?;
    let connected = match params.choice("ConnectionState", &["All", "Connected", "Disconnected"])? {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    };
    let limit = params.result_count()?;
    params.finish()?;
    let query = Query::Clients {
        client_id,
        connected,
        limit,
    };
    let mut all: Vec<ClientView> = ask_all(&*api.shards, query)
        .await?
        .into_iter()
        .flat_map(|r| match r {
            Reply::Clients(list) => list,
            _ => Vec::new(),
        })
        .collect();
    ClientView::sort(&mut all, limit);
    let now = Clock::now();
    let rows: Vec<Value> = all
        .iter()
        .map(|c| {
            json!({
                "ClientID": c.client_id,
                "IsConnected": c.is_connected,
                "LastConnectedTime": c.last_connected.map(|at| system::iso_time(now.wall_of(at))),
                "ExpiryTime": c.expires_at.map(|at| system::iso_time(now.wall_of(at))),
                "BufferedMsgs": c.buffered_msgs,
            })
        })
        .collect();
    Ok(json!({"Version": "v1", "MQTTClient": rows}))
}

fn memory(params: Params) -> Result<Value, Refusal> {
    params.finish()?;
    let m = system::memory();
    let free_percent = (100 * m.free).checked_div(m.total).unwrap_or(0);
    Ok(json!({"Version": "v1", "Memory": {
        "MemoryTotalBytes": m.total,
        "MemoryFreeBytes": m.free,
        "MemoryFreePercent": free_percent,
        "ServerVirtualMemoryBytes": m.process_virtual,
        "ServerResidentSetBytes": m.process_resident,
    }}))
}

fn protocol_name(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V3_1 => "MQTT 3.1",
        ProtocolVersion::V3_1_1 => "MQTT 3.1.1",
        ProtocolVersion::V5 => "MQTT 5.0",
    }
}

/// The wall clock and the monotonic one read together, to turn the shards' `Instant`s into
/// times of day.
struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    fn wall_of(&self, at: Instant) -> SystemTime {
        if at <= self.mono {
            self.wall - self.mono.duration_since(at)
        } else {
            self.wall + at.duration_since(self.mono)
        }
    }
}
