//! Disconnected-client notification on the shard (what and why: [`crate::notification`]):
//! marks kept as subscriptions are granted, arrivals counted as messages are queued for
//! disconnected sessions, rounds begun on the tick and taken a slice at a time by
//! [`Shard::work`], and the outcome of a notification a consumer on another shard refused.

use std::time::{Duration, Instant};

use ironsight_codec::{ByteString, Bytes, QoS};

use super::Shard;
use crate::notification::{Listed, Marks, SCAN_SLICE, TOPIC};
use crate::session::SessionIdx;

/// A notification delivered on other shards, waiting for their outcomes.
#[derive(Debug)]
pub(super) struct Awaited {
    listed: Listed,
    waiting: u16,
    rejected: bool,
}

impl Shard {
    /// Records whether the session's subscription `text` is marked, as its policy decided
    /// when it was granted (or judged again).
    pub(super) fn set_mark(&mut self, session: SessionIdx, text: &str, marked: bool) {
        self.sessions[session as usize]
            .subscriptions
            .mark(text, marked);
    }

    /// A QoS 1/2 message on `topic` was queued for the disconnected `session`: counted on its
    /// marks, and the session listed for the next round if it is not yet.
    pub(super) fn count_arrival(&mut self, session: SessionIdx, topic: &str) {
        let s = &mut self.sessions[session as usize];
        let Some(marks) = s.subscriptions.marks_mut() else {
            return;
        };
        if marks.arrived(topic) && !marks.listed {
            marks.listed = true;
            self.notices.list(Listed {
                session,
                generation: s.generation,
            });
        }
    }

    /// The session connected or disconnected: what it is told of starts again from nothing.
    pub(super) fn reset_arrivals(&mut self, session: SessionIdx) {
        if let Some(marks) = self.sessions[session as usize].subscriptions.marks_mut() {
            marks.reset();
        }
    }

    /// On the tick: begins a round every `DisconnClientNotifInterval`, when sessions wait and
    /// anyone subscribes to the notifications (nobody subscribing, nothing is published and
    /// what waits stays for a later round).
    pub(super) fn notification_tick(&mut self, now: Instant) {
        let interval = Duration::from_secs(u64::from(self.settings.broker.notification_interval_s));
        if self.notices.due(now, interval)
            && !self.notices.is_empty()
            && self.anyone_subscribed(TOPIC)
        {
            self.notices.begin_round(now, interval);
        }
    }

    /// One slice of the round in progress: the listed sessions its pace has made due by `now`,
    /// at most [`SCAN_SLICE`], each notified if it is still disconnected with something fresh.
    /// A notification nobody took puts its session back first in line and ends the round.
    pub(super) fn notify_slice(&mut self, now: Instant) {
        for _ in 0..SCAN_SLICE {
            let Some(listed) = self.notices.take(now) else {
                return;
            };
            let Some(record) = self.record_of(listed) else {
                continue;
            };
            let msg = self.system_message(
                now,
                ByteString::from_static(TOPIC),
                record,
                QoS::AtLeastOnce,
            );
            self.next_ack_token += 1;
            let token = self.next_ack_token;
            let outcome = self.route(now, msg, Some(token));
            let marks = self.marks_of(listed).expect("recorded just now");
            if !outcome.matched || outcome.rejected {
                tracing::debug!(
                    matched = outcome.matched,
                    "disconnected-client notification not taken; the next round resumes here"
                );
                marks.listed = true;
                self.notices.retry(listed);
                return;
            }
            marks.notified();
            // Counted once every consumer took it: one on another shard may yet refuse it,
            // and then the session is notified again in a later round.
            if outcome.awaiting == 0 {
                self.stats.notifications_published += 1;
            } else {
                let awaited = Awaited {
                    listed,
                    waiting: outcome.awaiting,
                    rejected: false,
                };
                self.notified_elsewhere.insert(token, awaited);
            }
        }
    }

    /// The marks of a listed session, if it is still the session listed.
    fn marks_of(&mut self, listed: Listed) -> Option<&mut Marks> {
        let s = self.sessions.get_mut(listed.session as usize)?;
        if s.generation != listed.generation {
            return None; // ended, its slot reused
        }
        s.subscriptions.marks_mut()
    }

    /// The record of a session taken off the list: `None` when it has nothing to say (it
    /// reconnected, ended, or its marks went).
    fn record_of(&mut self, listed: Listed) -> Option<Bytes> {
        let Shard {
            sessions,
            notify_text,
            ..
        } = self;
        let s = sessions.get_mut(listed.session as usize)?;
        if s.generation != listed.generation {
            return None;
        }
        let marks = s.subscriptions.marks_mut()?;
        marks.listed = false;
        if s.conn.is_some() || !marks.fresh() {
            return None;
        }
        let user_id = s.principal.as_deref().map(|p| &*p.user_id);
        marks.record(&s.client_id, user_id, notify_text);
        Some(Bytes::copy_from_slice(notify_text.as_bytes()))
    }

    /// Another shard's outcome for a notification token; false when the token is not one.
    pub(super) fn notification_outcome(&mut self, token: u64, rejected: bool) -> bool {
        let Some(awaited) = self.notified_elsewhere.get_mut(&token) else {
            return false;
        };
        awaited.rejected |= rejected;
        awaited.waiting -= 1;
        if awaited.waiting > 0 {
            return true;
        }
        let Some(awaited) = self.notified_elsewhere.remove(&token) else {
            return true;
        };
        if !awaited.rejected {
            self.stats.notifications_published += 1;
            return true;
        }
        let listed = awaited.listed;
        let Some(s) = self.sessions.get_mut(listed.session as usize) else {
            return true;
        };
        if s.generation != listed.generation || s.conn.is_some() {
            return true;
        }
        let Some(marks) = s.subscriptions.marks_mut() else {
            return true;
        };
        marks.refused();
        if !marks.listed {
            marks.listed = true;
            self.notices.retry_later(listed);
        }
        true
    }
}
