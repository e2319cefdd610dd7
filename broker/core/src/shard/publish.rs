//! Inbound PUBLISH and the acknowledgement packets of both directions.

use std::sync::Arc;
use std::time::Instant;

use ironsight_codec::{
    ByteString, Packet, PacketId, PubResponse, Publish, QoS, ReasonCode, ReasonProperties,
};

use super::acks::PendingAck;
use super::Shard;
use crate::conn::ConnId;
use crate::journal::Record;
use crate::message::Message;
use crate::queue::AckError;
use crate::session::SessionIdx;
use crate::topic;
use crate::violation::Violation;

fn ack(packet_id: PacketId, reason_code: ReasonCode) -> PubResponse {
    PubResponse {
        packet_id,
        reason_code,
        properties: ReasonProperties::default(),
    }
}

impl Shard {
    fn session_of(&self, conn: ConnId) -> SessionIdx {
        self.conns[conn as usize]
            .session
            .expect("a connected connection has a session")
    }

    pub(super) fn on_publish(&mut self, conn: ConnId, now: Instant, publish: Publish) {
        self.stats.messages_received += 1;
        let c = &mut self.conns[conn as usize];
        c.msgs_in += 1;
        let endpoint = c.endpoint;
        self.stats.endpoint(endpoint).messages_in += 1;
        if !publish.properties.subscription_identifiers.is_empty() {
            return self.violated(conn, now, Violation::SubscriptionIdentifierFromClient);
        }
        let topic = match self.resolve_topic_alias(conn, &publish) {
            Ok(topic) => topic,
            Err(violation) => return self.violated(conn, now, violation),
        };
        let broker = &self.settings.broker;
        if !topic::topic_within_limits(&topic, broker.topic_len_max, broker.topic_levels_max) {
            return self.fail(conn, now, ReasonCode::TopicNameInvalid);
        }
        let session = self.session_of(conn);
        if publish.qos != QoS::AtMostOnce && !self.conns[conn as usize].allow_persistent {
            // The ConnectionPolicy says AllowPersistentMessages false: QoS 1/2 is not for this client.
            return self.fail(conn, now, ReasonCode::QoSNotSupported);
        }
        let Ok(ttl_max) = self.authorize_publish(conn, &self.subject(conn), &topic) else {
            return self.not_authorized(conn, now, &publish);
        };
        if let (QoS::ExactlyOnce, Some(pid)) = (publish.qos, publish.packet_id) {
            if self.sessions[session as usize]
                .delivery()
                .inbound_qos2
                .contains(&pid)
            {
                // A resent QoS 2 PUBLISH before PUBREL: acknowledged again, never routed twice.
                return self.acknowledge_resent_qos2(conn, pid);
            }
        }
        if publish.qos != QoS::AtMostOnce && self.journal.full() {
            return self.refuse_while_full(conn, now, &publish);
        }
        if publish.qos != QoS::AtMostOnce {
            let unacknowledged = self.sessions[session as usize]
                .delivery()
                .inbound_qos2
                .len()
                + self.pending_acks(conn);
            let max = self.conns[conn as usize].granted.receive_max;
            if unacknowledged >= usize::from(max) {
                return self.violated(conn, now, Violation::ReceiveMaximumExceeded { max });
            }
        }
        let mut properties = publish.properties.message;
        if let Some(ttl) = ttl_max {
            let asked = properties.message_expiry_interval_s.unwrap_or(u32::MAX);
            properties.message_expiry_interval_s = Some(asked.min(ttl));
        }
        let origin = self.sessions[session as usize].uid(self.id);
        let mut msg = Message::new(
            now,
            topic,
            publish.payload,
            publish.qos,
            publish.retain,
            properties,
            origin,
        );
        msg.id = self.next_message_id();
        if publish.retain {
            msg.publisher = Some(self.publisher(conn, session));
        }
        // A v5 publisher can be told about other shards' subscribers, so it waits for them;
        // with a journal on disk every publisher does, for what they stored to be durable. A
        // retained message's acknowledgement waits until every shard's replica holds it, so
        // that a SUBSCRIBE sent after it finds the message on any shard.
        let waits =
            self.conns[conn as usize].is_v5() || !self.journal.synchronous() || publish.retain;
        let token = (publish.qos != QoS::AtMostOnce && waits).then(|| {
            self.next_ack_token += 1;
            self.next_ack_token
        });
        let outcome = self.route(now, Arc::new(msg), token);
        let Some(pid) = publish.packet_id else { return };
        let qos2 = publish.qos == QoS::ExactlyOnce;
        if qos2 {
            self.sessions[session as usize]
                .delivery()
                .inbound_qos2
                .push(pid);
            self.journal_packet_id(session, |client_id| Record::InboundQos2 {
                client_id,
                packet_id: pid,
            });
        }
        let pending = PendingAck {
            pid,
            qos2,
            waiting: outcome.awaiting,
            matched: outcome.matched,
            rejected: outcome.rejected,
            token,
        };
        self.acknowledge(conn, pending);
    }

    /// A PUBLISH no policy allows (why was logged by `authorize_publish`): a v5 client is
    /// told (0x87 on its PUBACK or PUBREC; nothing at QoS 0) and the message dropped. A v3
    /// client has no code to be told with: MQTT 3.1.1 lets the server either acknowledge and
    /// drop or close the connection ([MQTT-3.3.5-2]); ironsight closes, so that a device
    /// publishing where it must not sees it at once instead of losing messages silently.
    /// (Amlen's documentation does not say which it does; its policies refuse the publish.)
    fn not_authorized(&mut self, conn: ConnId, now: Instant, publish: &Publish) {
        if !self.conns[conn as usize].is_v5() {
            return self.fail(conn, now, ReasonCode::NotAuthorized);
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(pid)) => {
                self.send(conn, &Packet::PubAck(ack(pid, ReasonCode::NotAuthorized)))
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                self.send(conn, &Packet::PubRec(ack(pid, ReasonCode::NotAuthorized)))
            }
            _ => {}
        }
    }

    /// A QoS 1/2 PUBLISH while the journal cannot grow: its acknowledgement could promise
    /// nothing. A v5 publisher is told 0x97 (Quota exceeded) and may try again later; a v3
    /// acknowledgement cannot say no, so the connection is closed instead, as for a refused
    /// publish (the client resends after reconnecting). QoS 0 goes on as before.
    fn refuse_while_full(&mut self, conn: ConnId, now: Instant, publish: &Publish) {
        self.stats.messages_rejected += 1;
        if !self.conns[conn as usize].is_v5() {
            return self.fail(conn, now, ReasonCode::QuotaExceeded);
        }
        let quota = ReasonCode::QuotaExceeded;
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(pid)) => self.send(conn, &Packet::PubAck(ack(pid, quota))),
            (QoS::ExactlyOnce, Some(pid)) => self.send(conn, &Packet::PubRec(ack(pid, quota))),
            _ => {}
        }
    }

    /// The topic of an inbound PUBLISH, through the connection's alias table ([MQTT-3.3.2-12]).
    fn resolve_topic_alias(
        &mut self,
        conn: ConnId,
        publish: &Publish,
    ) -> Result<ByteString, Violation> {
        let Some(alias) = publish.properties.topic_alias else {
            return Ok(publish.topic.clone());
        };
        let max = self.conns[conn as usize].granted.topic_alias_max;
        if alias.get() > max {
            let alias = alias.get();
            return Err(Violation::TopicAliasAboveMaximum { alias, max });
        }
        let table = &mut self.conns[conn as usize].aliases().inbound;
        if table.is_empty() {
            table.resize(usize::from(max), None);
        }
        let slot = &mut table[usize::from(alias.get() - 1)];
        if publish.topic.is_empty() {
            let alias = alias.get();
            return slot.clone().ok_or(Violation::TopicAliasUnknown { alias });
        }
        // Copied so the alias table does not keep the whole PUBLISH frame alive.
        let topic = ByteString::from(publish.topic.to_string());
        *slot = Some(topic.clone());
        Ok(topic)
    }

    pub(super) fn on_puback(&mut self, conn: ConnId, now: Instant, response: PubResponse) {
        let session = self.session_of(conn);
        match self.sessions[session as usize]
            .delivery()
            .puback(response.packet_id)
        {
            Ok(out) => {
                self.journal_released(session, out.msg.id);
                self.pump(session, now);
            }
            Err(error) => tracing::debug!(conn, pid = response.packet_id, ?error, "PUBACK ignored"),
        }
    }

    pub(super) fn on_pubrec(&mut self, conn: ConnId, now: Instant, response: PubResponse) {
        let session = self.session_of(conn);
        let accepted = !response.reason_code.is_error();
        let pid = response.packet_id;
        match self.sessions[session as usize]
            .delivery()
            .pubrec(pid, accepted)
        {
            Ok(taken) => {
                match (taken, accepted) {
                    (Some(_), true) => {
                        self.journal_packet_id(session, |client_id| Record::PubRecReceived {
                            client_id,
                            packet_id: pid,
                        })
                    }
                    (Some(out), false) => self.journal_released(session, out.msg.id),
                    (None, _) => {} // PUBREC again: nothing changes
                }
                if accepted {
                    self.send(conn, &Packet::PubRel(ack(pid, ReasonCode::Success)));
                } else {
                    self.pump(session, now);
                }
            }
            Err(AckError::UnknownPacketId) => self.send(
                conn,
                &Packet::PubRel(ack(pid, ReasonCode::PacketIdentifierNotFound)),
            ),
            Err(AckError::WrongState) => self.violated(conn, now, Violation::PubRecForQoS1 { pid }),
        }
    }

    /// Inbound QoS 2, step 2: the message was routed at PUBLISH; PUBREL releases the id.
    pub(super) fn on_pubrel(&mut self, conn: ConnId, response: PubResponse) {
        let session = self.session_of(conn);
        let delivery = self.sessions[session as usize].delivery();
        let reason = match delivery.pubrel(response.packet_id) {
            Ok(()) => {
                self.journal_packet_id(session, |client_id| Record::InboundReleased {
                    client_id,
                    packet_id: response.packet_id,
                });
                ReasonCode::Success
            }
            Err(_) => ReasonCode::PacketIdentifierNotFound,
        };
        self.send(conn, &Packet::PubComp(ack(response.packet_id, reason)));
    }

    pub(super) fn on_pubcomp(&mut self, conn: ConnId, now: Instant, response: PubResponse) {
        let session = self.session_of(conn);
        match self.sessions[session as usize]
            .delivery()
            .pubcomp(response.packet_id)
        {
            Ok(()) => {
                self.journal_packet_id(session, |client_id| Record::PubCompReceived {
                    client_id,
                    packet_id: response.packet_id,
                });
                self.pump(session, now)
            }
            Err(error) => {
                tracing::debug!(conn, pid = response.packet_id, ?error, "PUBCOMP ignored")
            }
        }
    }
}
