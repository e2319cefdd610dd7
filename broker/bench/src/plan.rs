//! What each client of a scenario is: its client id, port, topics, and which accounting sink its
//! messages land in. Workers derive this from the [`Spec`] for their own clients only, so the
//! parent never materializes a list of every client.

use std::net::{IpAddr, Ipv4Addr};

use crate::spec::{Role, Scenario, Spec};
use crate::topic;

/// One client of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPlan {
    pub role: Role,
    pub index: u32,
    pub client_id: String,
    pub port: u16,
    /// Source address to bind (with IP_BIND_ADDRESS_NO_PORT), if --source-addrs was given.
    pub source: Option<IpAddr>,
    /// Topic of accounted messages (publishers, requesters) or of retained messages.
    pub publish_topic: Option<String>,
    /// Filter to subscribe to.
    pub subscription: Option<String>,
    /// Subscribe when the run starts (the retained storm) instead of right after CONNACK.
    pub subscribe_at_go: bool,
    /// Publisher id written into payload headers.
    pub publisher_id: Option<u32>,
    /// Accounting sink of received messages.
    pub sink: Option<u32>,
}

/// Which publishers a sink should hear from, and how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sources {
    /// Every publisher `0..publishers`, every window message.
    All { publishers: u32 },
    /// One publisher, every window message.
    One(u32),
    /// The retained publisher: `matching` messages in total (the topics the filter covers).
    Retained { publisher: u32, matching: u64 },
}

/// Short role letter in client ids.
fn tag(role: Role) -> char {
    match role {
        Role::Idle => 'c',
        Role::Publisher => 'p',
        Role::Subscriber => 's',
        Role::RetainedPublisher => 'k',
        Role::Requester => 'q',
        Role::Responder => 'r',
    }
}

/// Short scenario tag in persistent client ids, so scenarios do not share sessions.
fn scenario_tag(scenario: &Scenario) -> &'static str {
    match scenario {
        Scenario::Conn { .. } => "cn",
        Scenario::Fanout { .. } => "fo",
        Scenario::Fanin { .. } => "fi",
        Scenario::P2p { .. } => "pp",
        Scenario::Retained { .. } => "rt",
        Scenario::RequestResponse { .. } => "rr",
    }
}

/// Client id: with clean sessions it holds the run id, so concurrent runs never take each
/// other's sessions over; persistent ones are stable across runs, so a session (and its
/// backlog) is found again.
pub fn client_id(spec: &Spec, role: Role, index: u32) -> String {
    let prefix = &spec.client.client_prefix;
    let t = tag(role);
    if spec.client.persistent {
        format!("{prefix}-{}-{t}{index}", scenario_tag(&spec.scenario))
    } else {
        format!("{prefix}{:08x}-{t}{index}", spec.run_id)
    }
}

/// The request topic of user `index`.
pub fn request_topic(index: u32) -> String {
    format!("req/u{index}")
}

/// The Response Topic of one request.
pub fn response_topic(client_id: &str, seq: u64) -> String {
    format!("resp/{client_id}/{seq}")
}

/// The retained scenario's topic `i`.
pub fn retained_topic(prefix: &str, i: u32) -> String {
    format!("{prefix}/{i}")
}

pub fn plan(spec: &Spec, role: Role, index: u32) -> ClientPlan {
    let client_id = client_id(spec, role, index);
    let ordinal = spec.ordinal(role, index);
    let ports = &spec.client.ports;
    let port = ports[(ordinal % ports.len() as u64) as usize];
    let source = match spec.client.source_addrs {
        0 => None,
        n => {
            let host = 1 + (ordinal % n as u64) as u8;
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
        }
    };
    let mut p = ClientPlan {
        role,
        index,
        client_id,
        port,
        source,
        publish_topic: None,
        subscription: None,
        subscribe_at_go: false,
        publisher_id: None,
        sink: None,
    };
    match (&spec.scenario, role) {
        (_, Role::Idle) => {}
        (Scenario::Fanout { topic, .. }, Role::Publisher) => {
            p.publish_topic = Some(topic.clone());
            p.publisher_id = Some(index);
        }
        (Scenario::Fanout { topic, .. }, Role::Subscriber) => {
            p.subscription = Some(topic.clone());
            p.sink = Some(index);
        }
        (Scenario::Fanin { prefix, .. }, Role::Publisher)
        | (Scenario::P2p { prefix, .. }, Role::Publisher) => {
            p.publish_topic = Some(format!("{prefix}/{index}"));
            p.publisher_id = Some(index);
        }
        (Scenario::Fanin { prefix, shared, .. }, Role::Subscriber) => {
            p.subscription = Some(match shared {
                Some(group) => format!("$share/{group}/{prefix}/+"),
                None => format!("{prefix}/+"),
            });
            // The whole group is one sink: exactly once across the group.
            p.sink = Some(if shared.is_some() { 0 } else { index });
        }
        (Scenario::P2p { prefix, .. }, Role::Subscriber) => {
            p.subscription = Some(format!("{prefix}/{index}"));
            p.sink = Some(index);
        }
        (Scenario::Retained { prefix, .. }, Role::RetainedPublisher) => {
            p.publish_topic = Some(prefix.clone());
            p.publisher_id = Some(0);
        }
        (Scenario::Retained { filter, .. }, Role::Subscriber) => {
            p.subscription = Some(filter.clone());
            p.subscribe_at_go = true;
            p.sink = Some(index);
        }
        (Scenario::RequestResponse { .. }, Role::Requester) => {
            p.publish_topic = Some(request_topic(index));
            p.subscription = Some(format!("resp/{}/+", p.client_id));
            p.publisher_id = Some(index);
            p.sink = Some(index);
        }
        (Scenario::RequestResponse { .. }, Role::Responder) => {
            p.subscription = Some(request_topic(index));
        }
        (scenario, role) => unreachable!("{role:?} in {}", scenario.name()),
    }
    p
}

/// Which publishers sink `sink` expects messages from.
pub fn sources(spec: &Spec, sink: u32) -> Sources {
    match &spec.scenario {
        Scenario::Fanout { publishers, .. } | Scenario::Fanin { publishers, .. } => Sources::All {
            publishers: *publishers,
        },
        Scenario::P2p { .. } | Scenario::RequestResponse { .. } => Sources::One(sink),
        Scenario::Retained {
            messages,
            prefix,
            filter,
            ..
        } => Sources::Retained {
            publisher: 0,
            matching: (0..*messages)
                .filter(|&i| topic::matches(filter, &retained_topic(prefix, i)))
                .count() as u64,
        },
        Scenario::Conn { .. } => unreachable!("conn has no sinks"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::build_args;

    fn spec(args: &[&str]) -> Spec {
        build_args(args).unwrap()
    }

    /// Proves clean ids carry the run id, persistent ones are stable, and ports and source
    /// addresses go round-robin over the run's clients.
    #[test]
    fn ids_ports_sources() {
        let s = spec(&[
            "p2p",
            "--pairs",
            "2",
            "--run-id",
            "0xab",
            "--port",
            "1,2,3",
            "--source-addrs",
            "2",
        ]);
        let sub1 = plan(&s, Role::Subscriber, 1);
        assert_eq!(sub1.client_id, "isb000000ab-s1");
        assert_eq!(sub1.port, 2);
        assert_eq!(sub1.source, Some("127.0.0.2".parse().unwrap()));
        let pub0 = plan(&s, Role::Publisher, 0); // ordinal 2
        assert_eq!(
            (pub0.port, pub0.source),
            (3, Some("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(pub0.publish_topic.as_deref(), Some("bench/p2p/0"));
        let p = spec(&["fanout", "--persistent"]);
        assert_eq!(plan(&p, Role::Subscriber, 3).client_id, "isb-fo-s3");
    }

    /// Proves a shared group is one sink and subscribes through $share.
    #[test]
    fn shared_group_is_one_sink() {
        let s = spec(&["fanin", "--subscribers", "3", "--shared", "g"]);
        for i in 0..3 {
            let p = plan(&s, Role::Subscriber, i);
            assert_eq!(p.sink, Some(0));
            assert_eq!(p.subscription.as_deref(), Some("$share/g/bench/fanin/+"));
        }
        assert_eq!(sources(&s, 0), Sources::All { publishers: 10 });
    }

    /// Proves request-response topics and the retained filter's expected count.
    #[test]
    fn request_response_and_retained() {
        let s = spec(&["request-response", "--users", "2", "--run-id", "1"]);
        let q = plan(&s, Role::Requester, 1);
        assert_eq!(q.publish_topic.as_deref(), Some("req/u1"));
        assert_eq!(q.subscription.as_deref(), Some("resp/isb00000001-q1/+"));
        assert_eq!(response_topic(&q.client_id, 9), "resp/isb00000001-q1/9");
        assert_eq!(
            plan(&s, Role::Responder, 1).subscription.as_deref(),
            Some("req/u1")
        );
        assert_eq!(sources(&s, 1), Sources::One(1));

        let r = spec(&["retained", "-k", "20", "--filter", "bench/retained/1"]);
        assert_eq!(
            sources(&r, 0),
            Sources::Retained {
                publisher: 0,
                matching: 1
            }
        );
        let all = spec(&["retained", "-k", "20"]);
        assert_eq!(
            sources(&all, 0),
            Sources::Retained {
                publisher: 0,
                matching: 20
            }
        );
        assert!(plan(&all, Role::Subscriber, 0).subscribe_at_go);
    }
}
