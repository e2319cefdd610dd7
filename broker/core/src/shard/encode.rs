//! Turning a delivery into PUBLISH bytes on a connection.
//!
//! In a fan-out, most subscribers receive the same bytes: the same topic, QoS, retain flag and
//! properties, differing at most in the packet id. So a routing pass encodes each such variant
//! once ([`Templates`]) and copies it to every subscriber, patching the packet id in place. A
//! delivery that differs per connection (subscription identifiers, a topic alias, a payload large
//! enough to be sent from the message's own buffer) is encoded on its own.

use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Instant;

use ironsight_codec::{
    parse_fixed_header, ByteString, BytesMut, MessageProperties, PacketId, Publish,
    PublishProperties, QoS,
};

use crate::conn::Connection;
use crate::message::SharedMessage;
use crate::outbuf::SHARED_PAYLOAD_MIN;
use crate::queue::{Offer, SubIds};

/// The PUBLISH a delivery becomes on this connection: v5 gets the passed-through properties,
/// the expiry left, the subscription ids, and a topic alias when the client allows them.
pub(super) fn publish_packet(
    c: &Connection,
    out: &Offer<'_>,
    pid: Option<PacketId>,
    dup: bool,
    now: Instant,
    aliases_max: u16,
) -> Publish {
    let msg = &out.msg;
    let mut publish = Publish {
        dup,
        qos: out.qos,
        retain: out.retain,
        topic: msg.topic.clone(),
        packet_id: pid,
        properties: PublishProperties::default(),
        payload: msg.payload.clone(),
    };
    if !c.is_v5() {
        return publish;
    }
    publish.properties = PublishProperties {
        message: MessageProperties {
            message_expiry_interval_s: msg.remaining_expiry_s(now),
            ..msg.properties.clone()
        },
        topic_alias: None,
        subscription_identifiers: out.sub_ids.as_slice().to_vec(),
    };
    let alias_max = c.client.topic_alias_max.min(aliases_max);
    if alias_max > 0 {
        let known = c
            .aliases
            .as_ref()
            .and_then(|a| a.outbound.get(&msg.topic).copied());
        match known {
            Some(alias) => {
                publish.topic = ByteString::new();
                publish.properties.topic_alias = Some(alias);
            }
            None => {
                let used = c.aliases.as_ref().map_or(0, |a| a.outbound.len());
                if used < usize::from(alias_max) {
                    publish.properties.topic_alias = NonZeroU16::new(used as u16 + 1);
                }
            }
        }
    }
    publish
}

/// Encodes a PUBLISH into the connection's output; a large payload is appended as the message's
/// own buffer rather than copied for every subscriber.
pub(super) fn write_publish(c: &mut Connection, publish: &Publish) {
    if publish.payload.len() >= SHARED_PAYLOAD_MIN {
        publish.encode_header(c.protocol, c.out.tail());
        c.out.push_shared(publish.payload.clone());
    } else {
        publish.encode(c.protocol, c.out.tail());
    }
}

/// Records a newly assigned outbound alias once the PUBLISH that announces it is certain to go.
pub(super) fn commit_alias(c: &mut Connection, topic: &ByteString, publish: &Publish) {
    if let Some(alias) = publish.properties.topic_alias {
        if !publish.topic.is_empty() {
            c.aliases().outbound.insert(topic.clone(), alias);
        }
    }
}

/// One encoded variant of the message being routed.
#[derive(Debug)]
struct Template {
    v5: bool,
    qos: QoS,
    retain: bool,
    bytes: BytesMut,
    /// Where the packet id sits (QoS > 0).
    pid_at: usize,
}

/// The encoded variants of one message, valid during one routing pass.
#[derive(Debug, Default)]
pub(super) struct Templates {
    /// Held so that its address cannot be reused by another message while templates exist.
    msg: Option<SharedMessage>,
    variants: Vec<Template>,
}

impl Templates {
    pub(super) fn begin(&mut self, msg: &SharedMessage) {
        self.msg = Some(msg.clone());
        self.variants.clear();
    }

    pub(super) fn end(&mut self) {
        self.msg = None;
        self.variants.clear();
    }

    /// Whether this delivery's bytes are the same for every connection of its protocol.
    pub(super) fn applies(&self, c: &Connection, out: &Offer<'_>, aliases_max: u16) -> bool {
        self.msg.as_ref().is_some_and(|m| Arc::ptr_eq(m, out.msg))
            && out.sub_ids == SubIds::None
            && out.msg.payload.len() < SHARED_PAYLOAD_MIN
            && !(c.is_v5() && c.client.topic_alias_max.min(aliases_max) > 0)
    }

    /// The encoded bytes of `out` for connections like `c` (built on first use), and where
    /// the packet id goes.
    pub(super) fn get(&mut self, c: &Connection, out: &Offer<'_>, now: Instant) -> (&[u8], usize) {
        let v5 = c.is_v5();
        let at = self
            .variants
            .iter()
            .position(|t| t.v5 == v5 && t.qos == out.qos && t.retain == out.retain);
        let at = at.unwrap_or_else(|| {
            let placeholder = (out.qos != QoS::AtMostOnce).then_some(PacketId::MIN);
            let publish = publish_packet(c, out, placeholder, false, now, 0);
            let mut bytes = BytesMut::new();
            publish.encode(c.protocol, &mut bytes);
            let header = parse_fixed_header(&bytes, u32::MAX)
                .ok()
                .flatten()
                .expect("a whole packet was encoded");
            let pid_at = header.header_len + 2 + publish.topic.len();
            self.variants.push(Template {
                v5,
                qos: out.qos,
                retain: out.retain,
                bytes,
                pid_at,
            });
            self.variants.len() - 1
        });
        let t = &self.variants[at];
        (&t.bytes, t.pid_at)
    }
}

/// Appends a template's bytes to the connection's output, with this delivery's packet id.
pub(super) fn write_template(
    c: &mut Connection,
    bytes: &[u8],
    pid_at: usize,
    pid: Option<PacketId>,
) {
    let tail = c.out.tail();
    let start = tail.len();
    tail.extend_from_slice(bytes);
    if let Some(pid) = pid {
        tail[start + pid_at..start + pid_at + 2].copy_from_slice(&pid.get().to_be_bytes());
    }
}
