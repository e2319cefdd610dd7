//! Disconnected-client notification, as MessageSight had it (Eclipse Amlen's
//! `engineNotifications.c`): a phone's app cannot keep its MQTT connection while it sleeps, so
//! the broker tells a separate service (a push gateway) which disconnected clients have new
//! messages waiting, and the service wakes them.
//!
//! - A subscription is *marked* when the TopicPolicy that authorises it has
//!   `DisconnectedClientNotification`; a session keeps its marks in [`Marks`].
//! - A QoS 1/2 message queued for a disconnected session on a marked subscription counts on that
//!   mark and lists the session once in its shard's [`Pending`] list.
//! - Every `Broker.DisconnClientNotifInterval` seconds, if anyone subscribes to [`TOPIC`], a
//!   *round* starts: the sessions listed before it are taken at the round's [`Pace`], in
//!   slices of at most [`SCAN_SLICE`], and each with fresh marks gets one QoS 1 message on
//!   [`TOPIC`] ([`Marks::record`]). Sessions listed meanwhile wait for the next round. A
//!   notification nobody could take (no subscriber left, a consumer's queue full) puts its
//!   session back at the front and ends the round: the next one starts with the same client,
//!   as Amlen's does.
//!
//! So a round costs the sessions that received something, never a walk over all of them; a
//! slice holds its shard for at most [`SCAN_SLICE`] notifications, and the pace spreads a
//! round over time instead of publishing it in one burst, which on a busy machine doubled the
//! latency of the messages routed beside it (the consumer's burst competes for the CPUs too).
//! The list and the counts live in memory only: after a restart, messages that arrived before
//! it are not notified.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::session::SessionIdx;
use crate::topic;

/// Where the notifications are published.
pub const TOPIC: &str = "$SYS/DisconnectedClientNotification";

/// Listed sessions looked at in one slice of a round at most: each may cost a notification (a
/// JSON record and a routing), a few microseconds, so a slice holds its shard about a
/// millisecond. At the round's [`Pace`] a slice is usually much smaller.
pub const SCAN_SLICE: usize = 256;

/// The least pace of a round, notifications a second on one shard: a round of 10,000 then
/// takes five seconds, a few percent of a core, and a consumer (the push gateway) sees a steady
/// stream instead of a burst. A round with more to say goes faster ([`Pace::new`]).
pub const PACE_MIN_PER_S: f64 = 2_000.0;

/// The shortest interval between rounds, in seconds (Amlen's floor; it uses its default for
/// anything shorter, ironsight refuses the configuration).
pub const INTERVAL_MIN_S: u16 = 15;

/// The interval between rounds unless configured, in seconds (Amlen's).
pub const INTERVAL_DEFAULT_S: u16 = 60;

/// One marked subscription of a session, and what arrived on it.
#[derive(Debug)]
struct Mark {
    /// The subscription's filter: what the notification names as its `TopicString`.
    filter: Box<str>,
    /// Messages queued on it since the session disconnected (Amlen reports the messages
    /// buffered for the subscription; ironsight queues per session, and counts per mark).
    arrived: u32,
    /// Whether something arrived since the last notification.
    fresh: bool,
}

/// A session's marked subscriptions. Allocated with its first mark.
#[derive(Debug, Default)]
pub struct Marks {
    marks: Vec<Mark>,
    /// Whether the session is in its shard's [`Pending`] list (once at most).
    pub listed: bool,
}

impl Marks {
    /// Marks the subscription on `filter`, or takes its mark away.
    pub fn set(&mut self, filter: &str, marked: bool) {
        let at = self.marks.iter().position(|m| *m.filter == *filter);
        match (at, marked) {
            (None, true) => self.marks.push(Mark {
                filter: filter.into(),
                arrived: 0,
                fresh: false,
            }),
            (Some(at), false) => {
                self.marks.swap_remove(at);
            }
            _ => {}
        }
    }

    /// A message on `topic` was queued for the disconnected session: counted on every mark it
    /// matches (a subscription of its own in Amlen). Returns whether any did.
    pub fn arrived(&mut self, topic: &str) -> bool {
        let mut any = false;
        for m in self.marks.iter_mut() {
            if topic::filter_matches(&m.filter, topic) {
                m.arrived = m.arrived.saturating_add(1);
                m.fresh = true;
                any = true;
            }
        }
        any
    }

    /// The session connected or disconnected: counting starts again.
    pub fn reset(&mut self) {
        for m in self.marks.iter_mut() {
            m.arrived = 0;
            m.fresh = false;
        }
    }

    /// Whether something arrived since the last notification.
    pub fn fresh(&self) -> bool {
        self.marks.iter().any(|m| m.fresh)
    }

    /// Amlen's record of the marks with something new, into `out`: `UserID` only for a client
    /// that has a user, as Amlen writes it.
    /// `{"ClientId":"c","UserID":"u","MessagesArrived":[{"TopicString":"t","MessageCount":2}]}`
    pub fn record(&self, client_id: &str, user_id: Option<&str>, out: &mut String) {
        out.clear();
        out.push_str("{\"ClientId\":");
        push_json_string(out, client_id);
        if let Some(user_id) = user_id {
            out.push_str(",\"UserID\":");
            push_json_string(out, user_id);
        }
        out.push_str(",\"MessagesArrived\":[");
        for (i, m) in self.marks.iter().filter(|m| m.fresh).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"TopicString\":");
            push_json_string(out, &m.filter);
            out.push_str(",\"MessageCount\":");
            out.push_str(&m.arrived.to_string());
            out.push('}');
        }
        out.push_str("]}");
    }

    /// The record was published: nothing is fresh until more arrives.
    pub fn notified(&mut self) {
        for m in self.marks.iter_mut() {
            m.fresh = false;
        }
    }

    /// A notification was refused after all (by a consumer on another shard): what it
    /// reported is fresh again, for the next round.
    pub fn refused(&mut self) {
        for m in self.marks.iter_mut().filter(|m| m.arrived > 0) {
            m.fresh = true;
        }
    }
}

/// `text` as a JSON string (RFC 8259 section 7): quotes, backslashes and control characters
/// escaped; everything else is UTF-8 already.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How fast a round publishes: the `k`th notification of a round (from 0) is due `k / per_s`
/// seconds after it began, so the work is spread over the round instead of done at once.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    began: Instant,
    per_s: f64,
    taken: u64,
}

impl Pace {
    /// The pace of a round of `listed` sessions beginning at `now`: [`PACE_MIN_PER_S`], or
    /// faster where that would not end the round within half of `interval`, so that every
    /// round ends well before the next.
    pub fn new(now: Instant, listed: usize, interval: Duration) -> Pace {
        let half = interval.as_secs_f64() / 2.0;
        Pace {
            began: now,
            per_s: PACE_MIN_PER_S.max(listed as f64 / half.max(1.0)),
            taken: 0,
        }
    }

    /// When the next listed session is due.
    pub fn next_at(&self) -> Instant {
        self.began + Duration::from_secs_f64(self.taken as f64 / self.per_s)
    }
}

/// A session in the [`Pending`] list; its generation tells a reused slot from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub session: SessionIdx,
    pub generation: u32,
}

/// A shard's sessions to notify, in the order they received something, and its rounds.
/// Each session is listed at most once ([`Marks::listed`]), so the list is bounded by the
/// shard's sessions (`MaxSessionsPerCore`).
#[derive(Debug, Default)]
pub struct Pending {
    list: VecDeque<Listed>,
    /// Entries at the front of `list` that the round in progress has still to look at.
    round: usize,
    /// When the next round starts (set on the first tick).
    next_round_at: Option<Instant>,
    /// The pace of the round in progress.
    pace: Option<Pace>,
    /// Entries [`Pending::retry_later`] put back since the last round began.
    refused: usize,
}

impl Pending {
    pub fn list(&mut self, listed: Listed) {
        self.list.push_back(listed);
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether a round is due at `now`, every `interval`; the next one is then scheduled. A
    /// shorter interval configured meanwhile takes effect at once.
    pub fn due(&mut self, now: Instant, interval: Duration) -> bool {
        let next = *self.next_round_at.get_or_insert(now + interval);
        if next <= now {
            self.next_round_at = Some(now + interval);
            return true;
        }
        if next > now + interval {
            self.next_round_at = Some(now + interval);
        }
        false
    }

    /// Starts a round at `now` over the sessions listed so far, paced to end within half of
    /// `interval` (one still in progress goes on at its own pace).
    pub fn begin_round(&mut self, now: Instant, interval: Duration) {
        if self.round == 0 {
            self.round = self.list.len();
            self.refused = 0;
            self.pace = Some(Pace::new(now, self.round, interval));
        }
    }

    pub fn in_round(&self) -> bool {
        self.round > 0
    }

    /// When the round in progress has its next session due; `None` outside a round.
    pub fn next_at(&self) -> Option<Instant> {
        self.pace.filter(|_| self.in_round()).map(|p| p.next_at())
    }

    /// The next session of the round in progress, taken off the list, if it is due at `now`.
    pub fn take(&mut self, now: Instant) -> Option<Listed> {
        let pace = self.pace.as_mut().filter(|_| self.round > 0)?;
        if pace.next_at() > now {
            return None;
        }
        pace.taken += 1;
        self.round -= 1;
        let listed = self.list.pop_front();
        assert!(listed.is_some(), "a round covers listed sessions only");
        listed
    }

    /// `listed` could not be notified: it goes back to the front, where the next round starts,
    /// and this round ends.
    pub fn retry(&mut self, listed: Listed) {
        self.list.push_front(listed);
        self.round = 0;
    }

    /// `listed` was refused after its round moved on (the consumer on another shard answers
    /// later): it goes behind what the round in progress has still to take, which would
    /// otherwise meet it again at once, and behind those refused before it, so that the next
    /// round takes them first and in their order.
    pub fn retry_later(&mut self, listed: Listed) {
        let at = (self.round + self.refused).min(self.list.len());
        self.list.insert(at, listed);
        self.refused += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(session: SessionIdx) -> Listed {
        Listed {
            session,
            generation: 1,
        }
    }

    fn begin(p: &mut Pending) {
        p.begin_round(Instant::now(), Duration::from_secs(60));
    }

    /// Takes the next session an hour into the round, when its pace has let every one through:
    /// for the tests of the list's order.
    fn take(p: &mut Pending) -> Option<Listed> {
        let began = p.pace.map_or_else(Instant::now, |pace| pace.began);
        p.take(began + Duration::from_secs(3600))
    }

    /// Proves the record is Amlen's JSON: ClientId, UserID only when there is one, and one
    /// entry per fresh mark with what arrived on it since the disconnection; strings escaped.
    #[test]
    fn the_record_is_amlens_json() {
        let mut marks = Marks::default();
        marks.set("chat/+/inbox", true);
        marks.set("news", true);
        marks.set("other", true);
        marks.set("other", false);
        assert!(!marks.arrived("elsewhere"), "no mark matches");
        assert!(marks.arrived("chat/u1/inbox"));
        assert!(marks.arrived("chat/u2/inbox"));
        let mut out = String::new();
        marks.record("c1", Some("u\"1"), &mut out);
        assert_eq!(
            out,
            r#"{"ClientId":"c1","UserID":"u\"1","MessagesArrived":[{"TopicString":"chat/+/inbox","MessageCount":2}]}"#
        );
        marks.notified();
        assert!(!marks.fresh());
        assert!(marks.arrived("news"));
        marks.record("c\n", None, &mut out);
        assert_eq!(
            out,
            r#"{"ClientId":"c\u000a","MessagesArrived":[{"TopicString":"news","MessageCount":1}]}"#,
            "only what is fresh, no UserID without a user"
        );
        marks.notified();
        marks.refused();
        assert!(marks.fresh(), "both marks that counted are fresh again");
        marks.reset();
        assert!(!marks.fresh());
    }

    /// Proves a round takes only the sessions listed before it began, one at a time, so a
    /// slice is bounded by its caller; sessions listed meanwhile wait for the next round.
    #[test]
    fn a_round_covers_what_was_listed_before_it() {
        let mut p = Pending::default();
        assert!(take(&mut p).is_none(), "no round");
        for s in 0..5 {
            p.list(listed(s));
        }
        begin(&mut p);
        assert_eq!(take(&mut p), Some(listed(0)));
        p.list(listed(9));
        begin(&mut p); // the round in progress goes on, not restarted over 9
        let rest: Vec<_> = std::iter::from_fn(|| take(&mut p))
            .map(|l| l.session)
            .collect();
        assert_eq!(rest, [1, 2, 3, 4]);
        assert!(!p.in_round() && p.len() == 1, "9 waits for the next round");
        begin(&mut p);
        assert_eq!(take(&mut p), Some(listed(9)));
        assert!(take(&mut p).is_none() && p.is_empty());
    }

    /// Proves a failed notification resumes at the same client: it goes back to the front,
    /// the round ends, and the next round starts with it, before those listed after it.
    #[test]
    fn a_failure_resumes_at_the_same_client() {
        let mut p = Pending::default();
        for s in 0..4 {
            p.list(listed(s));
        }
        begin(&mut p);
        assert_eq!(take(&mut p), Some(listed(0)));
        let failed = take(&mut p).expect("1");
        p.retry(failed);
        assert!(!p.in_round() && take(&mut p).is_none(), "the round ended");
        begin(&mut p);
        let order: Vec<_> = std::iter::from_fn(|| take(&mut p))
            .map(|l| l.session)
            .collect();
        assert_eq!(order, [1, 2, 3]);
        // Refused later, while a round is in progress: after what that round has left, and
        // after what was refused before; sessions listed meanwhile come after them all.
        for s in 0..3 {
            p.list(listed(s));
        }
        begin(&mut p);
        assert_eq!(take(&mut p), Some(listed(0)));
        p.retry_later(listed(7));
        p.list(listed(20));
        let order: Vec<_> = std::iter::from_fn(|| take(&mut p))
            .map(|l| l.session)
            .collect();
        assert_eq!(order, [1, 2]);
        p.retry_later(listed(8));
        begin(&mut p);
        let order: Vec<_> = std::iter::from_fn(|| take(&mut p))
            .map(|l| l.session)
            .collect();
        assert_eq!(order, [7, 8, 20]);
    }

    /// Proves a round is paced: the first session at once, then [`PACE_MIN_PER_S`] a second,
    /// and a round too long for that pace ends within half the interval all the same.
    #[test]
    fn a_round_is_paced() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pending::default();
        for s in 0..100 {
            p.list(listed(s));
        }
        p.begin_round(t0, Duration::from_secs(60));
        assert_eq!(p.next_at(), Some(t0));
        assert_eq!(p.take(t0), Some(listed(0)));
        assert_eq!(
            p.take(t0),
            None,
            "the second is due half a millisecond later"
        );
        assert_eq!(p.next_at(), Some(t0 + Duration::from_micros(500)));
        let by_10ms = std::iter::from_fn(|| p.take(t0 + ms(10))).count();
        assert_eq!(
            by_10ms, 20,
            "2,000 a second: 21 due by 10 ms, counting the first"
        );
        let rest = std::iter::from_fn(|| p.take(t0 + ms(1000))).count();
        assert_eq!(rest, 79);
        assert_eq!(p.next_at(), None, "the round is over");

        let many = 100_000;
        for s in 0..many {
            p.list(listed(s));
        }
        p.begin_round(t0, Duration::from_secs(15));
        let by_half = std::iter::from_fn(|| p.take(t0 + ms(7500))).count();
        assert_eq!(
            by_half, many as usize,
            "all within half of the 15 s interval"
        );
    }

    /// Proves rounds come every interval, from the first tick, and a shorter interval
    /// configured meanwhile takes effect without waiting out the longer one.
    #[test]
    fn rounds_come_every_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pending::default();
        assert!(!p.due(t0, s(60)), "the first tick schedules");
        assert!(!p.due(t0 + s(59), s(60)));
        assert!(p.due(t0 + s(60), s(60)));
        assert!(!p.due(t0 + s(61), s(60)));
        assert!(!p.due(t0 + s(62), s(15)), "rescheduled to 15 s from now");
        assert!(p.due(t0 + s(77), s(15)));
    }
}
