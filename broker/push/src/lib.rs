//! `ironsight-push`, the push gateway: it turns the broker's disconnected-client
//! notifications into Apple (APNs), Google (FCM) and webhook pushes, so that a phone whose
//! app the operating system put to sleep wakes up, reconnects and collects its messages.
//! It is an ordinary MQTT client of the broker, beside it, never on the message path.
//!
//! # Layout
//!
//! - `config`: the JSON configuration file (PascalCase attributes) and its checks.
//! - `mqtt`: the MQTT 3.1.1 client over the workspace's codec: connect, subscribe, receive,
//!   acknowledge, ping, reconnect with backoff.
//! - `registry`: device registrations (the registration topic's pattern, the payload's
//!   checks) and the token file, written atomically.
//! - `notification`: the broker's `$SYS/DisconnectedClientNotification` record.
//! - `gateway`: the state, and what happens to each message: registry, rate limit, queue,
//!   pushes, counters, dead letters.
//! - `ratelimit`: one push per device per interval; what comes sooner is held and added up.
//! - `deliver`: one push through its service, attempted again with backoff, bounded.
//! - `service`: the push, its text (no message content by default), an attempt's `Outcome`.
//! - `apns`, `fcm`, `webhook`: the three services; `jwt`: their ES256 and RS256 tokens;
//!   `http`: the HTTP/2 client they share.
//! - `deadletter`, `counters`: what could not be delivered, and what happened.
//!
//! # Invariants
//!
//! - The MQTT task never waits for a push: a notification is queued (bounded) or dead-lettered.
//! - Nothing of a message's content reaches Apple or Google: the broker's notification has
//!   topics and counts only, and topics go into a push only with `IncludeTopics`. Tokens and
//!   keys are never logged.

pub mod apns;
pub mod config;
pub mod counters;
pub mod deadletter;
pub mod deliver;
pub mod fcm;
pub mod gateway;
pub mod http;
pub mod jwt;
pub mod mqtt;
pub mod notification;
pub mod ratelimit;
pub mod registry;
pub mod service;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::deliver::{Retry, Services};
use crate::gateway::{Gateway, TICK};
use crate::ratelimit::RateLimiter;
use crate::registry::{Pattern, Registry};
use crate::service::Alert;

/// How long pushes in flight may finish after the gateway is asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the gateway until `stop` turns true. An `Err` is a configuration that cannot work
/// (a key that does not load, a token file that does not read), said before anything runs.
pub async fn run(config: Config, stop: watch::Receiver<bool>) -> Result<(), String> {
    let http = http::Http::new(
        http::roots(config.ca_file.as_deref())?,
        config.request_timeout(),
    );
    let services = Services {
        apns: config
            .apns
            .as_ref()
            .map(|c| apns::Apns::new(http.clone(), c))
            .transpose()?,
        fcm: config
            .fcm
            .as_ref()
            .map(|c| fcm::Fcm::new(http.clone(), c))
            .transpose()?,
        webhook: config
            .webhook
            .as_ref()
            .map(|c| webhook::Webhook::new(http.clone(), c)),
        alert: Alert::from_config(&config),
        retry: Retry::from_config(&config),
    };
    let mqtt_tls = if config.mqtt.tls {
        let roots = http::roots(config.mqtt.ca_file.as_deref())?;
        Some(Arc::new(http::tls_config(roots)))
    } else {
        None
    };
    let registry = Registry::open(&config.token_file, config.max_devices)?;
    let pattern = Pattern::parse(&config.registration_topic)?;
    let (gateway, queue) = Gateway::new(
        config.notification_topic.clone(),
        pattern,
        registry,
        RateLimiter::new(config.rate_limit()),
        DeadLetter::new(
            config.dead_letter_file.clone(),
            config.dead_letter_max_bytes,
        ),
        services,
        config.max_queued_notifications,
    );
    tracing::info!(devices = gateway.devices(), "ironsight-push starting");
    let permits = Arc::new(Semaphore::new(config.max_concurrent_pushes));
    let pusher = gateway.pushes(queue, permits.clone());
    let ticker = tokio::spawn(tick(
        gateway.clone(),
        Duration::from_secs(config.counters_interval),
    ));

    let filters = gateway.filters();
    let on_message = gateway.clone();
    mqtt::run(
        &config.mqtt,
        mqtt_tls,
        &filters,
        &mut |topic, payload| on_message.on_message(topic, payload),
        stop,
    )
    .await;

    ticker.abort();
    pusher.abort();
    let all =
        u32::try_from(config.max_concurrent_pushes).expect("MaxConcurrentPushes is at most 10000");
    if tokio::time::timeout(STOP_GRACE, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("pushes still in flight after {STOP_GRACE:?} are abandoned");
    }
    gateway.tick(Instant::now());
    gateway.log_counters("at exit");
    Ok(())
}

async fn tick(gateway: Arc<Gateway>, counters_every: Duration) {
    let mut interval = tokio::time::interval(TICK);
    let mut last_log = Instant::now();
    loop {
        interval.tick().await;
        let now = Instant::now();
        gateway.tick(now);
        if now.duration_since(last_log) >= counters_every {
            gateway.log_counters("periodic");
            last_log = now;
        }
    }
}
