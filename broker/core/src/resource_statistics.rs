//! MessageSight's `$SYS/ResourceStatistics/<ObjectType>` topics: the broker's figures as JSON,
//! published every [`INTERVAL`] at QoS 0 for monitoring applications. The server composes them
//! (it sees every shard's counters); the core publishes them through
//! [`crate::shard::Shard::publish_system`] and holds their consumers to Amlen's rule: a
//! session that outlives its connection may not subscribe to them (figures are for now; a
//! queue of stale ones helps no one).

use std::time::Duration;

pub const SERVER: &str = "$SYS/ResourceStatistics/Server";
pub const ENDPOINT: &str = "$SYS/ResourceStatistics/Endpoint";
pub const MEMORY: &str = "$SYS/ResourceStatistics/Memory";
pub const TOPICS: [&str; 3] = [SERVER, ENDPOINT, MEMORY];

/// As MessageSight: every two seconds.
pub const INTERVAL: Duration = Duration::from_secs(2);
