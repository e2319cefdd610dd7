//! What a policy decision costs: nanoseconds per publish check (and per subscribe check) for
//! the demo policy (`*` for everyone) and for a six-policy set shaped like the seed's mobile
//! app, in which only the last policy allows, so every check walks all six.
//!
//! `cargo run --release -p ironsight-core --example policy_cost`
//!
//! CPU time of the thread over a fixed number of decisions, so another process on the same
//! cores disturbs it less than a wall-clock rate. Each decision must allocate nothing; the
//! count of allocations is printed as well.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use ironsight_core::auth::Principal;
use ironsight_core::policy::{
    may_subscribe, publish_rule, AddressFilter, ClientFilters, Pattern, PatternKind, Subject,
    TopicRule,
};
use ironsight_core::queue::QueueBehavior;

/// Counts allocations, to show that deciding makes none.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is the system allocator's, only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator that made it.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DECISIONS: u32 = 5_000_000;

fn rule(topic: &str, filters: ClientFilters, publish: bool, subscribe: bool) -> TopicRule {
    TopicRule {
        name: topic.into(),
        filters,
        topic: Pattern::parse(topic, PatternKind::Topic).expect("valid"),
        publish,
        subscribe,
        queue_messages_max: 5000,
        queue_behavior: QueueBehavior::RejectNewMessages,
        message_ttl_max_s: None,
        disconnected_client_notification: false,
    }
}

fn name(text: &str) -> Option<Pattern> {
    Some(Pattern::parse(text, PatternKind::Name).expect("valid"))
}

/// Nanoseconds this thread has run on a CPU (the scheduler's own count).
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux");
    stat.split_whitespace()
        .next()
        .expect("run time")
        .parse()
        .expect("a number")
}

fn measure(what: &str, mut decide: impl FnMut() -> bool) {
    let start = cpu_ns();
    let allocated = ALLOCATIONS.load(Ordering::Relaxed);
    let mut allowed = 0u32;
    for _ in 0..DECISIONS {
        allowed += u32::from(black_box(decide()));
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocated;
    let ns = cpu_ns() - start;
    assert_eq!(allowed, DECISIONS, "{what}: every decision allows");
    println!(
        "{what:<70} {:>6.1} ns/decision, {allocations} allocations",
        ns as f64 / f64::from(DECISIONS)
    );
}

fn main() {
    let alice = Principal::new("alice", ["ops".into(), "eu".into()]);
    let s = Subject {
        client_id: "phone-1234",
        principal: Some(&alice),
        common_name: None,
        addr: "192.0.2.7".parse().expect("address"),
    };
    let demo = [rule("*", ClientFilters::default(), true, true)];
    let user = |pattern| ClientFilters {
        user_id: name(pattern),
        ..ClientFilters::default()
    };
    let six = [
        rule("APP/REQUEST/${UserID}/${ClientID}", user("*"), true, false),
        rule("APP/RESPONSE/${UserID}", user("*"), false, true),
        rule("APP/NOTIFICATION/${UserID}", user("*"), false, true),
        rule(
            "APP/NOTIFICATION/PUBLIC",
            ClientFilters {
                address: AddressFilter::parse("10.0.0.0/8").expect("valid"),
                ..ClientFilters::default()
            },
            false,
            true,
        ),
        rule(
            "APP/STREAM",
            ClientFilters {
                client_id: name("app-*"),
                ..ClientFilters::default()
            },
            false,
            true,
        ),
        rule("bench/${ClientID}*", ClientFilters::default(), true, true),
    ];
    let topic = "bench/phone-1234/telemetry";
    let request = "APP/REQUEST/alice/phone-1234";
    measure("publish, demo policy (Topic *)", || {
        publish_rule(&demo, black_box(topic), &s).is_some()
    });
    measure(
        "publish, seed-like set, first policy allows (${UserID}/${ClientID})",
        || publish_rule(&six, black_box(request), &s).is_some(),
    );
    measure("publish, seed-like set, sixth policy allows", || {
        publish_rule(&six, black_box(topic), &s).is_some()
    });
    measure("subscribe bench/phone-1234/#, seed-like set", || {
        may_subscribe(&six, black_box("bench/phone-1234/#"), &s)
    });
}
