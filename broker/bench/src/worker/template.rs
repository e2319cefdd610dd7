//! Encoding benchmark PUBLISHes fast: the codec encodes one PUBLISH per publisher once, and each
//! message is that template copied, with its packet id and payload header patched in place.
//! Payload padding and the topic are never re-encoded.

use bytes::{BufMut, BytesMut};
use ironsight_codec::{
    parse_fixed_header, ByteString, Bytes, Packet, PacketId, ProtocolVersion, Publish, QoS,
};

use crate::header::{Header, HEADER_LEN};

/// One encoded PUBLISH and where its variable parts are.
#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    /// Offset of the packet id (QoS > 0).
    packet_id_at: Option<usize>,
    /// Offset of the payload header.
    header_at: usize,
}

impl Template {
    pub fn new(
        topic: &str,
        qos: QoS,
        retain: bool,
        payload_len: usize,
        version: ProtocolVersion,
    ) -> Template {
        assert!(payload_len >= HEADER_LEN);
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: ByteString::from(topic),
            packet_id: (qos != QoS::AtMostOnce).then_some(PacketId::MIN),
            properties: Default::default(),
            payload: Bytes::from(vec![0u8; payload_len]),
        };
        let mut out = BytesMut::new();
        Packet::Publish(publish).encode(version, &mut out);
        let fixed = parse_fixed_header(&out, u32::MAX)
            .expect("the codec writes a valid fixed header")
            .expect("the whole packet is there");
        // Variable header: topic (2-byte length + bytes), then the packet id.
        let packet_id_at = (qos != QoS::AtMostOnce).then(|| fixed.header_len + 2 + topic.len());
        Template {
            header_at: out.len() - payload_len,
            bytes: out.to_vec(),
            packet_id_at,
        }
    }

    /// Bytes of one message.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one message to `out`.
    pub fn write(&self, out: &mut BytesMut, packet_id: Option<PacketId>, header: &Header) {
        let start = out.len();
        out.put_slice(&self.bytes);
        let msg = &mut out[start..];
        match (self.packet_id_at, packet_id) {
            (Some(at), Some(id)) => msg[at..at + 2].copy_from_slice(&id.get().to_be_bytes()),
            (None, None) => {}
            _ => panic!("packet id must be given exactly when QoS > 0"),
        }
        header.write(&mut msg[self.header_at..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Parsed;

    /// Proves a patched template decodes (through the codec) to the PUBLISH it stands for, in
    /// both protocol families and at every QoS.
    #[test]
    fn patched_template_decodes() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let t = Template::new("bench/fanout", qos, false, 200, version);
                let header = Header {
                    run_id: 5,
                    publisher: 6,
                    seq: 7,
                    sent_ns: 8,
                };
                let id = (qos != QoS::AtMostOnce).then(|| PacketId::new(0x1234).unwrap());
                let mut out = BytesMut::from(&b"xx"[..]); // earlier bytes stay untouched
                t.write(&mut out, id, &header);
                assert_eq!(out.len(), 2 + t.len());
                let packet = Packet::decode(out.freeze().slice(2..), version).unwrap();
                let Packet::Publish(p) = packet else {
                    panic!("{packet:?}")
                };
                assert_eq!(p.topic, "bench/fanout");
                assert_eq!((p.qos, p.packet_id, p.retain), (qos, id, false));
                assert_eq!(p.payload.len(), 200);
                assert_eq!(Header::parse(&p.payload, 5), Parsed::Ours(header));
            }
        }
    }
}
