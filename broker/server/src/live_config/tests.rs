//! `LiveConfig` with real sockets and a stand-in for the shards, which takes every generation
//! up at once: endpoint numbers across changes, listeners bound and dropped, and a change
//! that cannot be applied leaving everything as it was.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// Stands in for `shards` shards: acknowledges each new generation as soon as it is published.
struct Shards {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Shards {
    fn start(live: &LiveConfig, shards: usize) -> Shards {
        let generations = live.generations();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let current = generations.current();
                for shard in 0..shards {
                    let applied = ShardApplied {
                        generation: current.number,
                        ..ShardApplied::default()
                    };
                    generations.applied(shard, applied);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Shards {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration with an endpoint on 127.0.0.1 for each (name, port).
fn config(endpoints: &[(&str, u16)]) -> Config {
    let mut json = serde_json::json!({
        "MessageHub": {"H": {}},
        "ConnectionPolicy": {"C": {"ClientID": "*"}},
        "TopicPolicy": {"T": {"Topic": "*", "ActionList": "Publish,Subscribe"}},
        "Endpoint": {},
    });
    for (name, port) in endpoints {
        json["Endpoint"][*name] = serde_json::json!({
            "Port": port, "Interface": "127.0.0.1", "MessageHub": "H",
            "ConnectionPolicies": "C", "TopicPolicies": "T"});
    }
    Config::parse(&json.to_string()).unwrap()
}

fn names_and_enabled(live: &LiveConfig) -> Vec<(String, bool)> {
    let generation = live.generations().current();
    let settings = &generation.settings;
    assert_eq!(generation.endpoints.len(), settings.endpoints.len());
    settings
        .endpoints
        .iter()
        .map(|e| (e.name.clone(), e.enabled))
        .collect()
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Proves endpoints keep their numbers across changes: one added gets the next number even
/// when its name sorts first, one removed keeps its number (disabled) and its port closes,
/// and one added again gets its old number back.
#[test]
fn endpoints_keep_their_numbers() {
    let (b, a) = (free_port(), free_port());
    let live = LiveConfig::start(config(&[("B", b)]), &[], 2).unwrap();
    let _shards = Shards::start(&live, 2);
    live.apply(&config(&[("B", b), ("A", a)])).unwrap();
    assert_eq!(
        names_and_enabled(&live),
        [("B".into(), true), ("A".into(), true)]
    );
    assert!(listening(a) && listening(b));
    let outcome = live.apply(&config(&[("A", a)])).unwrap();
    assert_eq!(
        names_and_enabled(&live),
        [("B".into(), false), ("A".into(), true)]
    );
    assert!(!listening(b), "the removed endpoint's sockets are gone");
    assert!(listening(a));
    assert!(
        outcome.applied.contains(&format!(
            "Endpoint \"B\": no longer listening on 127.0.0.1:{b}"
        )),
        "{:?}",
        outcome.applied
    );
    live.apply(&config(&[("B", b), ("A", a)])).unwrap();
    assert_eq!(
        names_and_enabled(&live),
        [("B".into(), true), ("A".into(), true)]
    );
    assert!(listening(b));
    assert_eq!(live.generations().current().number, 3);
}

/// Proves a change that cannot be applied changes nothing: a port another process holds
/// refuses the whole change (its policy change included), naming the endpoint; no generation
/// is published and the running configuration stays.
#[test]
fn a_port_taken_refuses_the_whole_change() {
    let a = free_port();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let before = config(&[("A", a)]);
    let live = LiveConfig::start(before.clone(), &[], 1).unwrap();
    let _shards = Shards::start(&live, 1);
    let mut after = config(&[("A", a), ("C", taken)]);
    after.topic_policies.get_mut("T").unwrap().topic = "narrow/*".into();
    let error = live.apply(&after).unwrap_err();
    assert!(error.starts_with("endpoint C on 127.0.0.1:"), "{error}");
    assert_eq!(live.running(), before);
    assert_eq!(live.generations().current().number, 0);
    assert_eq!(names_and_enabled(&live), [("A".into(), true)]);
}

/// Proves two endpoints on one port are refused by `check` and `apply` alike, naming both.
#[test]
fn two_endpoints_on_one_port_are_refused() {
    let a = free_port();
    let live = LiveConfig::start(config(&[("A", a)]), &[], 1).unwrap();
    let _shards = Shards::start(&live, 1);
    let clash = config(&[("A", a), ("B", a)]);
    let error = live.check(&clash).unwrap_err();
    assert!(error.contains("Endpoint \"B\", attribute Port") && error.contains("Endpoint \"A\""));
    assert_eq!(live.apply(&clash).unwrap_err(), error);
    live.check(&config(&[("A", a), ("B", free_port())]))
        .unwrap();
}
