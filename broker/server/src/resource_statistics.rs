//! Shard 0's part in MessageSight's `$SYS/ResourceStatistics/<ObjectType>` topics
//! ([`ironsight_core::resource_statistics`]). Every two seconds, for each of those topics that
//! someone subscribes to, it composes the figures the REST monitor shows (with the same
//! functions, `ironsight_admin::monitor`) from every shard's one-second snapshot, adds Amlen's
//! `Version`, `NodeName`, `TimeStamp` and `ObjectType`, and publishes them at QoS 0. With no
//! subscriber it composes nothing. The Server figures need each shard's gauges, a walk over its
//! sessions once a second, which the shards take only while someone subscribes to them.

use std::time::{Instant, SystemTime};

use ironsight_admin::monitor::{
    by_endpoint, endpoint_figures, memory_figures, server_figures, sum_gauges, EndpointAt, Totals,
};
use ironsight_admin::shards::Shards;
use ironsight_admin::system;
use ironsight_codec::Bytes;
use ironsight_core::resource_statistics::{ENDPOINT, INTERVAL, MEMORY, SERVER};
use serde_json::{Map, Value};

use crate::control::Control;
use crate::live_config::generation::Generation;
use crate::shard_io::ShardIo;

pub struct Publisher {
    next: Instant,
    node: String,
}

impl Publisher {
    pub fn new(now: Instant) -> Publisher {
        Publisher {
            next: now + INTERVAL,
            node: system::hostname(),
        }
    }

    /// Shard 0's one-second tick: publishes what is due.
    pub fn tick(&mut self, io: &ShardIo, control: &Control, generation: &Generation) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + INTERVAL;
        let mut core = io.core();
        let [server, endpoint, memory] =
            [SERVER, ENDPOINT, MEMORY].map(|t| core.anyone_subscribed(t));
        control.want_gauges(server);
        drop(core);
        let mut messages: Vec<(&'static str, Map<String, Value>)> = Vec::new();
        if server || endpoint {
            let snapshots = control.snapshots();
            // The first tick after someone subscribed: not every shard has its gauges yet.
            if server && snapshots.iter().all(|s| s.gauges.is_some()) {
                let gauges = sum_gauges(snapshots.iter().filter_map(|s| s.gauges.as_ref()));
                let enabled = generation
                    .settings
                    .endpoints
                    .iter()
                    .filter(|e| e.enabled)
                    .count();
                messages.push((
                    SERVER,
                    self.header("Server", server_figures(&snapshots, enabled, &gauges)),
                ));
            }
            if endpoint {
                let totals = by_endpoint(&snapshots);
                let none = Totals::default();
                for (number, e) in generation.settings.endpoints.iter().enumerate() {
                    let Some(addr) = generation
                        .listeners
                        .iter()
                        .find(|l| usize::from(l.endpoint) == number)
                        .map(|l| l.addr)
                    else {
                        continue; // disabled or removed: no figures to speak of
                    };
                    let at = EndpointAt {
                        interface: &addr.ip().to_string(),
                        port: addr.port(),
                        enabled: e.enabled,
                    };
                    let figures =
                        endpoint_figures(&e.name, at, totals.get(&e.name).unwrap_or(&none));
                    messages.push((ENDPOINT, self.header("Endpoint", figures)));
                }
            }
        }
        if memory {
            messages.push((MEMORY, self.header("Memory", memory_figures())));
        }
        if messages.is_empty() {
            return;
        }
        let mut core = io.core();
        for (topic, body) in messages {
            let payload = Value::Object(body).to_string();
            core.publish_system(now, topic, Bytes::from(payload));
        }
        drop(core);
        io.flush_soon();
    }

    /// Amlen's first fields, then the object's figures.
    fn header(&self, object_type: &str, figures: Map<String, Value>) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("Version".into(), env!("CARGO_PKG_VERSION").into());
        body.insert("NodeName".into(), self.node.clone().into());
        body.insert(
            "TimeStamp".into(),
            system::iso_time(SystemTime::now()).into(),
        );
        body.insert("ObjectType".into(), object_type.into());
        body.extend(figures);
        body
    }
}
