//! What the admin API costs a shard: the walks it asks for, timed on a shard holding many
//! sessions. `/metrics` and `/ima/v1/monitor/Server` ask every shard for its gauges
//! (`Shard::gauges`: a walk over its sessions); the listings walk too (`Shard::subscriptions`,
//! `Shard::clients`). Nothing else the API reads costs a shard anything: counters are copied
//! once a second on its tick, whether anyone reads them or not.
//!
//! `cargo run --release -p ironsight-core --example monitor_cost [SESSIONS]`
//!
//! Each walk is run ten times; the fastest is shown (the machine is shared: the others are
//! noise from other processes).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ironsight_codec::{QoS, SubscriptionOptions};
use ironsight_core::interest::InterestBoard;
use ironsight_core::monitor::{SubscriptionFilter, SubscriptionOrder, Wildcard};
use ironsight_core::queue::QueueBehavior;
use ironsight_core::recovery::RecoveredSession;
use ironsight_core::settings::{EndpointSettings, Settings};
use ironsight_core::Shard;

const RUNS: usize = 10;

fn fastest(mut walk: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            walk();
            start.elapsed()
        })
        .min()
        .expect("RUNS > 0")
}

fn main() {
    let sessions: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |n| n.parse().expect("SESSIONS is a number"));
    let settings = Settings {
        endpoints: vec![EndpointSettings::default()],
        ..Settings::default()
    };
    let mut shard = Shard::new(0, InterestBoard::new(1), std::sync::Arc::new(settings));
    let now = Instant::now();
    for i in 0..sessions {
        shard.restore(
            now,
            RecoveredSession {
                client_id: format!("client-{i}").into(),
                user_id: None,
                expiry_s: 3600,
                connected: false,
                expires_at: Some(now + Duration::from_secs(3600)),
                queue_max: 5000,
                queue_behavior: QueueBehavior::RejectNewMessages,
                will: None,
                subscriptions: vec![(
                    format!("devices/{i}/#").into(),
                    SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                    None,
                )],
                queued: Vec::new(),
                inflight: Vec::new(),
                inbound_qos2: Vec::new(),
            },
        );
    }
    println!("{sessions} disconnected sessions, one subscription each, on one shard");
    let per = |d: Duration| d.as_secs_f64() * 1e9 / sessions as f64;
    let gauges = fastest(|| {
        black_box(shard.gauges());
    });
    println!(
        "gauges (a /metrics scrape):        {:>8.2} ms  {:>5.1} ns/session",
        gauges.as_secs_f64() * 1e3,
        per(gauges)
    );
    let subs = fastest(|| {
        black_box(shard.subscriptions(
            &SubscriptionFilter::default(),
            SubscriptionOrder::BufferedMsgsHighest,
            25,
        ));
    });
    println!(
        "subscriptions, best 25:            {:>8.2} ms  {:>5.1} ns/session",
        subs.as_secs_f64() * 1e3,
        per(subs)
    );
    let clients = fastest(|| {
        black_box(shard.clients(&Wildcard::any(), None, 25));
    });
    println!(
        "MQTT clients, best 25:             {:>8.2} ms  {:>5.1} ns/session",
        clients.as_secs_f64() * 1e3,
        per(clients)
    );
}
