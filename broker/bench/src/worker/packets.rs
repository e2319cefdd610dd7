//! What a worker does with each packet the broker sends.

use ironsight_codec::{
    ByteString, Bytes, ConnAck, Packet, PubResponse, Publish, QoS, ReasonCode, SubAck,
};

use super::conn::ConnState;
use super::engine::{Engine, Phase};
use super::sender::{correlation_of, Kind, Response};
use super::window::InflightWindow;
use crate::accounting::Outcome;
use crate::header::{Header, Parsed};
use crate::spec::Role;

impl Engine {
    pub(super) fn on_packet(&mut self, i: usize, packet: Packet, now: u64) {
        match packet {
            Packet::ConnAck(ack) => self.on_connack(i, ack, now),
            Packet::SubAck(ack) => self.on_suback(i, ack, now),
            Packet::Publish(p) => self.on_publish(i, p, now),
            Packet::PubAck(r) => self.on_ack(i, "PUBACK", r, now),
            Packet::PubRec(r) => self.on_ack(i, "PUBREC", r, now),
            Packet::PubComp(r) => self.on_ack(i, "PUBCOMP", r, now),
            Packet::PubRel(r) => {
                let comp = Packet::PubComp(PubResponse::success(r.packet_id));
                self.conns[i].queue(&comp, self.version);
            }
            Packet::PingResp => {
                let conn = &mut self.conns[i];
                conn.pings_out = conn.pings_out.saturating_sub(1);
                if conn.alive_check {
                    conn.alive_check = false;
                    self.alive_pending -= 1;
                    self.counts.alive += 1;
                }
            }
            Packet::Disconnect(d) => {
                let reason = format!("DISCONNECT from the broker: {:?}", d.reason_code);
                self.close(i, Some(reason));
            }
            Packet::UnsubAck(_) => {}
            other => {
                let reason = format!("unexpected {} from the broker", other.name());
                self.close(i, Some(reason));
            }
        }
    }

    fn on_connack(&mut self, i: usize, ack: ConnAck, now: u64) {
        if self.conns[i].state != ConnState::AwaitConnAck {
            self.close(i, Some("CONNACK out of place".into()));
            return;
        }
        if ack.reason_code.is_error() {
            self.close(i, Some(format!("CONNACK refused: {:?}", ack.reason_code)));
            return;
        }
        self.connecting -= 1;
        self.open += 1;
        self.counts.opened += 1;
        self.counts.last_connack_ns = self.counts.last_connack_ns.max(now);
        self.connack
            .record_ns(now.saturating_sub(self.conns[i].started_ns));
        self.conns[i].state = ConnState::Ready;
        self.conns[i].last_tx_ns = now;
        if let Some(slot) = self.conns[i].sender {
            let s = &mut self.senders[slot];
            if let (Kind::Plain { template }, Some(max)) =
                (&s.kind, ack.properties.maximum_packet_size)
            {
                if template.len() > max.get() as usize {
                    self.errors.push(format!(
                        "the broker's Maximum Packet Size {max} is below one PUBLISH ({} bytes)",
                        template.len()
                    ));
                }
            }
            if s.qos != QoS::AtMostOnce {
                // Never exceed the broker's Receive Maximum ([MQTT-3.3.4-9]).
                let broker_max = ack.properties.receive_maximum.map_or(u16::MAX, |m| m.get());
                s.window = Some(InflightWindow::new(self.spec.load.inflight.min(broker_max)));
            }
            self.wake(slot);
        }
        let c = &self.conns[i];
        let subscribes = matches!(c.role, Role::Subscriber | Role::Requester | Role::Responder);
        if subscribes && !c.storm {
            self.subscribe(i, now);
        }
    }

    fn on_suback(&mut self, i: usize, ack: SubAck, now: u64) {
        let conn = &mut self.conns[i];
        if conn.state != ConnState::AwaitSubAck {
            self.errors.push("SUBACK out of place");
            return;
        }
        conn.state = ConnState::Ready;
        let storm = conn.storm;
        let sink = conn.sink;
        if !storm && self.phase == Phase::Setup {
            self.subscribing -= 1;
        }
        if let Some(code) = ack.reason_codes.iter().find(|c| c.is_error()) {
            self.errors.push(format!("SUBACK refused: {code:?}"));
            if storm {
                self.conns[i].storm_done = true;
                self.storm_pending -= 1;
            }
            return;
        }
        if let Some(sink) = sink {
            self.acct.activate(sink);
            if storm && self.acct.sink_received(sink) >= self.retained_matching {
                self.storm_complete(i, now);
            }
        }
    }

    fn on_publish(&mut self, i: usize, p: Publish, now: u64) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                self.conns[i].queue(&Packet::PubAck(PubResponse::success(id)), self.version)
            }
            (QoS::ExactlyOnce, Some(id)) => {
                self.conns[i].queue(&Packet::PubRec(PubResponse::success(id)), self.version)
            }
            _ => {}
        }
        self.received += 1;
        let conn = &self.conns[i];
        match (conn.role, conn.sink) {
            (Role::Responder, _) => self.on_request(i, p),
            (role, Some(sink)) => {
                if role == Role::Requester && !correlation_matches(&p, self.spec.run_id) {
                    self.errors.push("response with wrong Correlation Data");
                }
                let outcome = self.acct.on_payload(sink, &p.payload, now);
                let storm = conn.storm && conn.state == ConnState::Ready;
                if outcome == Outcome::New
                    && storm
                    && self.acct.sink_received(sink) >= self.retained_matching
                {
                    self.storm_complete(i, now);
                }
            }
            (role, None) => self.errors.push(format!("PUBLISH to a {role:?}")),
        }
    }

    /// A responder got a request: owe a response on its Response Topic.
    fn on_request(&mut self, i: usize, p: Publish) {
        match Header::parse(&p.payload, self.spec.run_id) {
            Parsed::Ours(_) => {}
            Parsed::OtherRun => {
                self.acct.stale += 1;
                return;
            }
            Parsed::Foreign => {
                self.acct.foreign += 1;
                return;
            }
        }
        let m = &p.properties.message;
        let (Some(topic), Some(correlation)) = (&m.response_topic, &m.correlation_data) else {
            self.errors
                .push("request without Response Topic or Correlation Data");
            return;
        };
        // Copies: the request's bytes are slices of the shared read buffer, which must not be
        // pinned by a queue.
        let response = Response {
            topic: ByteString::from(topic.to_string()),
            correlation: Bytes::copy_from_slice(correlation),
            payload: Bytes::copy_from_slice(&p.payload),
        };
        let slot = self.conns[i].sender.expect("responders send");
        if self.senders[slot].push_response(response) {
            self.wake(slot);
        } else {
            self.errors.push("responder backlog full: response dropped");
        }
    }

    fn on_ack(&mut self, i: usize, name: &'static str, r: PubResponse, now: u64) {
        let Some(slot) = self.conns[i].sender else {
            self.close(i, Some(format!("{name} to a client that does not publish")));
            return;
        };
        let accepted = !r.reason_code.is_error();
        if !accepted {
            self.errors
                .push(format!("{name} refused: {:?}", r.reason_code));
        } else if r.reason_code == ReasonCode::NoMatchingSubscribers
            && !matches!(self.senders[slot].kind, Kind::Retained { .. })
        {
            self.errors.push(format!("{name}: no matching subscribers"));
        }
        let Some(window) = self.senders[slot].window.as_mut() else {
            self.close(i, Some(format!("{name} at QoS 0")));
            return;
        };
        // Ok(Some(sent)): a timed exchange ended.
        let result = match name {
            "PUBACK" => window.on_puback(r.packet_id),
            "PUBREC" => window.on_pubrec(r.packet_id, accepted).map(|send_rel| {
                if send_rel {
                    let rel = Packet::PubRel(PubResponse::success(r.packet_id));
                    self.conns[i].queue(&rel, self.version);
                }
                None
            }),
            _ => window.on_pubcomp(r.packet_id),
        };
        match result {
            Ok(sent) => {
                if let (Some(sent), true) = (sent, accepted) {
                    self.ack.record_ns(now.saturating_sub(sent));
                }
                self.wake(slot)
            }
            Err(e) => self.close(i, Some(e.to_string())),
        }
    }
}

/// Whether a response's Correlation Data is the one its echoed request carried.
fn correlation_matches(p: &Publish, run_id: u32) -> bool {
    let Parsed::Ours(header) = Header::parse(&p.payload, run_id) else {
        // Stale or foreign: accounting counts it; no correlation to check.
        return true;
    };
    p.properties
        .message
        .correlation_data
        .as_deref()
        .is_some_and(|c| c == correlation_of(&header))
}
