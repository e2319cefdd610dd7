//! A shard's durable state from the journal at start (`crate::recovery`), and the snapshot of
//! its live state that a new journal starts with (`docs/store.md`, "Recovery").
//!
//! Restoring writes nothing to the journal: the server restores every shard, then has each
//! write its snapshot into fresh files, and only then opens the listeners.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use ironsight_codec::SubscriptionOptions;
use slab::Slab;

use super::durability::Log;
use super::{Shard, Timer};
use crate::auth::Principal;
use crate::journal::Record;
use crate::message::SharedMessage;
use crate::queue::{Outgoing, ShareId};
use crate::recovery::{RecoveredMessage, RecoveredSession};
use crate::routing::{ShareGroup, ShareKey};
use crate::session::{Session, SessionIdx, Subscription, EXPIRY_NEVER};

impl Shard {
    /// Takes up a session the journal held; this shard owns its client id. A session that was
    /// connected when the broker stopped is disconnected from `now`: its expiry and its will's
    /// delay count from here. Deadlines that passed while the broker was down fire on the first
    /// tick (the will is published, the session ends), once every shard has restored its own.
    pub fn restore(&mut self, now: Instant, r: RecoveredSession) {
        assert_eq!(
            self.owner_of(&r.client_id),
            self.id,
            "restored on its owner"
        );
        assert!(
            self.find_session(&r.client_id).is_none(),
            "a client id is restored once"
        );
        let session = self.create_session(r.client_id);
        let s = &mut self.sessions[session as usize];
        s.principal = r.user_id.map(|user| Arc::new(Principal::new(user, [])));
        s.expiry_s = r.expiry_s;
        s.queue_max = r.queue_max;
        s.queue_behavior = r.queue_behavior;
        s.will = r.will.map(Box::new);
        if r.connected {
            disconnect_now(s, now);
        } else {
            s.expires_at = r.expires_at;
        }
        let generation = s.generation;
        let will_at = s.will.as_ref().and_then(|w| w.publish_at);
        for at in [s.expires_at, will_at].into_iter().flatten() {
            self.push_timer(Timer {
                at,
                session,
                generation,
            });
        }
        for (text, options, id) in r.subscriptions {
            self.restore_subscription(session, text, options, id);
        }
        let delivery = self.sessions[session as usize].delivery();
        for pid in r.inbound_qos2 {
            delivery.inbound_qos2.push(pid);
        }
        for (pid, message) in r.inflight {
            match message {
                Some(m) => {
                    let out = outgoing(&self.share_index, m);
                    self.sessions[session as usize]
                        .delivery()
                        .restore_inflight(pid, out);
                }
                None => self.sessions[session as usize]
                    .delivery()
                    .restore_awaiting_pubcomp(pid),
            }
        }
        for m in r.queued {
            let out = outgoing(&self.share_index, m);
            self.sessions[session as usize]
                .delivery()
                .queue
                .push_back(out);
        }
        self.sessions[session as usize].shrink();
        self.stats.sessions_restored += 1;
    }

    fn restore_subscription(
        &mut self,
        session: SessionIdx,
        text: Box<str>,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
    ) {
        let Ok(split) = self.split(&text) else {
            // Limits lowered since: the filter is no longer one this broker takes.
            tracing::warn!(filter = %text, "a recovered subscription is over the limits now; dropped");
            return;
        };
        let share = self.route_to(session, split.parts(&text), options, id);
        let sub = Subscription {
            text,
            options,
            id,
            share,
        };
        self.sessions[session as usize].subscriptions.insert(sub);
    }

    /// Takes up a retained message the journal held, into this shard's replica.
    pub fn restore_retained(&mut self, msg: &SharedMessage) {
        self.retained.restore(msg);
    }

    /// Message counters continue above the highest one recovered, so ids never repeat.
    pub fn resume_message_ids(&mut self, after_n: u64) {
        self.next_message_id = self.next_message_id.max(after_n);
    }

    /// Hands the journal the next `budget` entries of a snapshot of every durable thing this
    /// shard holds, as the records that would make it: what a new generation's journal starts
    /// with (at start, written as it is made), and what compaction takes in slices while
    /// clients come and go: sessions, then the retained topics this shard journals. Each
    /// session's records begin with `SessionEnded`, so they stand alone: whatever the journal
    /// said of the session before them, in older segments or in records made since the
    /// snapshot began, they replace. A session that ends, or begins, while the snapshot is
    /// under way has all its records after the snapshot's start anyway. Returns whether the
    /// snapshot is complete.
    pub fn snapshot_slice(&mut self, cursor: &mut SnapshotCursor, budget: usize) -> bool {
        let Shard {
            sessions,
            shares,
            journal,
            retained: store,
            ..
        } = self;
        let mut left = budget;
        while cursor.session < sessions.capacity() && left > 0 {
            if let Some(s) = sessions.get(cursor.session).filter(|s| s.expiry_s > 0) {
                journal.record(Record::SessionEnded {
                    client_id: &s.client_id,
                });
                snapshot_session(journal, shares, s);
                left -= 1;
            }
            cursor.session += 1;
        }
        let (id, shard_count) = (self.id, self.shard_count);
        while left > 0 {
            let Some((at, msg)) = store.next_from(cursor.retained) else {
                return true;
            };
            cursor.retained = at + 1;
            if crate::shard::owner_of(&msg.topic, shard_count) == id {
                journal.record(Record::Retained {
                    topic: &msg.topic,
                    message: msg,
                });
                left -= 1;
            }
        }
        false
    }
}

/// Where a snapshot taken in slices has got to.
#[derive(Debug, Default)]
pub struct SnapshotCursor {
    /// The next session slot to look at.
    session: usize,
    /// The next retained slot to look at.
    retained: usize,
}

/// A session whose connection the broker lost at `now` (it stopped under it).
fn disconnect_now(s: &mut Session, now: Instant) {
    s.expires_at =
        (s.expiry_s != EXPIRY_NEVER).then(|| now + Duration::from_secs(u64::from(s.expiry_s)));
    if let Some(will) = &mut s.will {
        let delay = now + Duration::from_secs(u64::from(will.delay_s));
        will.publish_at = Some(s.expires_at.map_or(delay, |e| e.min(delay)));
    }
}

/// A recovered message as its session's queue holds it, with the local id of the shared
/// subscription that chose it (none if the session left that group).
fn outgoing(share_index: &HashMap<ShareKey, ShareId>, m: RecoveredMessage) -> Outgoing {
    Outgoing {
        msg: m.msg,
        qos: m.qos,
        retain: m.retain,
        sub_ids: m.sub_ids,
        share: m.share.and_then(|key| share_index.get(&*key).copied()),
    }
}

/// The records that make one durable session as it is now.
fn snapshot_session(journal: &mut Log, shares: &Slab<ShareGroup>, s: &Session) {
    let client_id = &*s.client_id;
    journal.record(Record::Session {
        client_id,
        expiry_s: s.expiry_s,
        user_id: s.principal.as_ref().map(|p| &*p.user_id),
        connected: s.conn.is_some(),
        expires_at: s.expires_at,
        queue_max: s.queue_max,
        queue_behavior: s.queue_behavior,
    });
    journal.record(Record::Will {
        client_id,
        will: s.will.as_deref(),
    });
    for sub in s.subscriptions.iter() {
        journal.record(Record::Subscribed {
            client_id,
            filter: &sub.text,
            options: sub.options,
            id: sub.id,
        });
    }
    let Some(d) = s.delivery.as_ref() else {
        return;
    };
    let stored = |journal: &mut Log, out: &Outgoing| {
        journal.record(Record::Stored {
            client_id,
            message: &out.msg,
            qos: out.qos,
            retain: out.retain,
            sub_ids: out.sub_ids.as_slice(),
            share: out.share.map(|share| &*shares[share as usize].key),
        })
    };
    for entry in d.inflight.iter() {
        let packet_id = entry.pid;
        match &entry.out {
            Some(out) => {
                stored(journal, out);
                journal.record(Record::Sent {
                    client_id,
                    id: out.msg.id,
                    packet_id,
                });
            }
            // Answered with PUBREC: only the id waits, for PUBCOMP.
            None => journal.record(Record::PubRecReceived {
                client_id,
                packet_id,
            }),
        }
    }
    for out in &d.queue {
        stored(journal, out);
    }
    for &packet_id in &d.inbound_qos2 {
        journal.record(Record::InboundQos2 {
            client_id,
            packet_id,
        });
    }
}
