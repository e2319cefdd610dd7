//! Exact answers where the specification gives one: packets in the wrong direction, an
//! authentication method the broker does not support, a client's Maximum Packet Size that the
//! broker's packets must respect, the keep alive cap, and which closes let the socket linger.

use std::num::NonZeroU32;

use ironsight_codec::{Auth, AuthProperties, UnsubAck};

use super::*;
use crate::shard::connect::CONTROL_PACKET_MAX;

/// The one DISCONNECT a client received before the close, if that is all it received.
fn only_disconnect(packets: &[Packet]) -> Option<&Disconnect> {
    match packets {
        [Packet::Disconnect(d)] => Some(d),
        _ => None,
    }
}

/// The bytes of `packet` in `version`.
fn bytes_of(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = ironsight_codec::BytesMut::new();
    packet.encode(version, &mut out);
    out.to_vec()
}

fn unsubscribe(id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(id),
        filters: filters.iter().map(|&f| f.into()).collect(),
        user_properties: Vec::new(),
    })
}

/// Proves a client that sends a packet only a server sends (CONNACK, SUBACK, UNSUBACK,
/// PINGRESP) commits a Protocol Error: v5 gets DISCONNECT 0x82, not 0x81, whether or not the
/// body would decode (it is judged by its type), with the rule as Reason String; v3.1.1 is
/// closed without a word.
#[test]
fn server_to_client_packets_are_protocol_errors() {
    let server_only: [(&str, Packet, &[u8]); 4] = [
        (
            "CONNACK",
            super::super::connect::connack_error(ReasonCode::Success),
            &[0x20, 0],
        ),
        (
            "SUBACK",
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                reason_codes: vec![ReasonCode::Success],
                properties: ReasonProperties::default(),
            }),
            &[0x90, 1, 0xFF],
        ),
        (
            "UNSUBACK",
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(1),
                reason_codes: vec![ReasonCode::Success],
                properties: ReasonProperties::default(),
            }),
            &[0xB0, 0],
        ),
        ("PINGRESP", Packet::PingResp, &[0xD1, 3, 1, 2, 3]),
    ];
    for version in [V5, V311] {
        for (name, packet, garbage) in &server_only {
            for bytes in [bytes_of(packet, version), garbage.to_vec()] {
                let mut b = Broker::new(1);
                let (mut c, _) = b.connect(connect("c", version, true));
                b.send_bytes(&mut c, &bytes);
                let packets = b.received(&mut c);
                assert!(c.closed, "{name} {bytes:02x?} closes");
                if version == V311 {
                    assert!(packets.is_empty(), "{name}: v3 cannot be told");
                    continue;
                }
                let d = only_disconnect(&packets).expect("one DISCONNECT");
                assert_eq!(
                    d.reason_code,
                    ReasonCode::ProtocolError,
                    "{name} {bytes:02x?}"
                );
                let why = d.properties.reason_string.as_deref().unwrap_or_default();
                assert_eq!(
                    why,
                    format!("§2.1.2 {name} flows only from server to client")
                );
            }
        }
    }
}

/// Proves a second CONNECT is a Protocol Error even when its body is malformed ([MQTT-3.1.0-2]
/// says to treat it as one), and AUTH from a client that named no authentication method is one
/// too ([MQTT-4.12.0-7]); under 3.1.1 type 15 is reserved, so it is malformed, and closed.
#[test]
fn second_connect_and_auth_are_protocol_errors() {
    let auth = Packet::Auth(Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: AuthProperties::default(),
    });
    let cases: [(Vec<u8>, &str); 4] = [
        (
            bytes_of(&Packet::Connect(Box::new(connect("c", V5, true))), V5),
            "[MQTT-3.1.0-2]",
        ),
        (vec![0x10, 2, 0xFF, 0xFF], "[MQTT-3.1.0-2]"),
        (bytes_of(&auth, V5), "[MQTT-4.12.0-7]"),
        (vec![0xF0, 1, 0x42], "[MQTT-4.12.0-7]"), // AUTH, reason code 0x42 (none such)
    ];
    for (bytes, rule) in cases {
        let mut b = Broker::new(1);
        let (mut c, _) = b.connect(connect("c", V5, true));
        b.send_bytes(&mut c, &bytes);
        let packets = b.received(&mut c);
        let d = only_disconnect(&packets).expect("one DISCONNECT");
        assert_eq!(d.reason_code, ReasonCode::ProtocolError, "{bytes:02x?}");
        let why = d.properties.reason_string.as_deref().unwrap_or_default();
        assert!(why.starts_with(rule), "{why}");
        assert!(c.closed);
    }
    let mut b = Broker::new(1);
    let (mut c, _) = b.connect(connect("c", V311, true));
    b.send_bytes(&mut c, &[0xF0, 0]);
    assert!(b.received(&mut c).is_empty());
    assert!(c.closed);
}

/// Proves a CONNECT naming an Authentication Method the broker does not support is refused
/// with CONNACK 0x8C ([MQTT-4.12.0-1]) and closed, and no session is created for it.
#[test]
fn unsupported_authentication_method_is_refused() {
    let mut b = Broker::new(1);
    let mut c = connect("auth", V5, false);
    c.properties.authentication_method = Some("SCRAM-SHA-256".into());
    c.properties.session_expiry_interval_s = Some(600);
    let (client, connack) = b.connect(c);
    assert_eq!(connack.reason_code, ReasonCode::BadAuthenticationMethod);
    assert!(!connack.session_present);
    assert!(client.closed);
    assert_eq!(
        b.shards[0].session_count(),
        0,
        "no session for a refused client"
    );
}

/// The CONNACK a v5 client `id` gets from a default broker, and its size.
fn connack_size(id: &str) -> usize {
    let mut b = Broker::new(1);
    let (_, connack) = b.connect(connect(id, V5, true));
    Packet::ConnAck(connack).encoded_len(V5)
}

/// Proves [MQTT-3.1.2-24] for CONNACK: a client whose Maximum Packet Size holds exactly the
/// CONNACK is accepted; one byte less is refused with the 5-byte CONNACK 0x83 (valid, but not
/// accepted by this server, [MQTT-3.1.4-2]) before any session exists; below 5 bytes even that
/// refusal cannot be sent, and the connection is closed without a word.
#[test]
fn connack_respects_the_clients_maximum_packet_size() {
    let exact = connack_size("small");
    assert!(exact > CONTROL_PACKET_MAX as usize);
    let with_max = |max: usize| {
        let mut c = connect("small", V5, true);
        c.properties.maximum_packet_size = NonZeroU32::new(max as u32);
        c
    };
    let mut b = Broker::new(1);
    let (client, connack) = b.connect(with_max(exact));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert!(!client.closed);

    let mut b = Broker::new(1);
    let (client, connack) = b.connect(with_max(exact - 1));
    assert_eq!(connack.reason_code, ReasonCode::ImplementationSpecificError);
    assert_eq!(Packet::ConnAck(connack).encoded_len(V5), 5);
    assert!(client.closed);
    assert_eq!(b.shards[0].session_count(), 0);

    let mut b = Broker::new(1);
    let mut c = b.open_on(0, V5);
    b.send(&mut c, Packet::Connect(Box::new(with_max(4))));
    assert!(c.inbox.is_empty(), "a 5-byte CONNACK exceeds 4 bytes");
    assert!(c.closed);
}

/// Proves the bound the CONNACK check relies on: every other fixed-size control packet the
/// broker sends, in its largest form without Reason String and User Properties, fits in
/// `CONTROL_PACKET_MAX` bytes.
#[test]
fn fixed_control_packets_fit_control_packet_max() {
    let largest = [
        Packet::PubAck(ack(1, ReasonCode::QuotaExceeded)),
        Packet::PubRec(ack(1, ReasonCode::NotAuthorized)),
        Packet::PubRel(ack(1, ReasonCode::PacketIdentifierNotFound)),
        Packet::PubComp(ack(1, ReasonCode::PacketIdentifierNotFound)),
        Packet::PingResp,
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::ProtocolError,
            properties: DisconnectProperties::default(),
        }),
        super::super::connect::connack_error(ReasonCode::ImplementationSpecificError),
    ];
    for packet in largest {
        for version in [V5, V311] {
            let len = packet.encoded_len(version);
            assert!(len <= CONTROL_PACKET_MAX as usize, "{packet:?}: {len}");
        }
    }
}

/// Proves a DISCONNECT for a violation carries the rule as Reason String when it fits, loses
/// it rather than exceed the client's Maximum Packet Size ([MQTT-3.14.2-3]), and carries none
/// for a client that asked for no problem information.
#[test]
fn disconnect_reason_string_fits_or_goes() {
    let violate = |max: Option<usize>, problem_info: Option<bool>| {
        let mut b = Broker::new(1);
        let mut c = connect("v", V5, true);
        c.properties.maximum_packet_size = max.and_then(|m| NonZeroU32::new(m as u32));
        c.properties.request_problem_information = problem_info;
        let (mut client, connack) = b.connect(c);
        assert_eq!(connack.reason_code, ReasonCode::Success);
        b.send_bytes(&mut client, &[0xD0, 0]); // PINGRESP
        let packets = b.received(&mut client);
        let d = only_disconnect(&packets).expect("one DISCONNECT").clone();
        assert_eq!(d.reason_code, ReasonCode::ProtocolError);
        assert!(client.closed);
        d.properties.reason_string
    };
    assert!(violate(None, None).is_some());
    assert_eq!(violate(Some(connack_size("v")), None), None);
    assert_eq!(violate(None, Some(false)), None);
}

/// Proves a SUBACK or UNSUBACK with more reason codes than the client's Maximum Packet Size
/// holds is not sent ([MQTT-3.1.2-24]); the request cannot go unanswered, so the connection
/// ends with DISCONNECT 0x95 (Packet too large). One that fits is answered.
#[test]
fn acknowledgements_over_the_clients_maximum_packet_size_end_the_connection() {
    let max = connack_size("s").max(20);
    let small_client = |b: &mut Broker| {
        let mut c = connect("s", V5, true);
        c.properties.maximum_packet_size = NonZeroU32::new(max as u32);
        let (client, connack) = b.connect(c);
        assert_eq!(connack.reason_code, ReasonCode::Success);
        client
    };
    // SUBACK: 2 fixed header + 2 packet id + 1 property length + one code per filter.
    let fits = max - 5;
    let filters: Vec<String> = (0..=fits).map(|i| format!("f/{i}")).collect();
    let options: Vec<(&str, SubscriptionOptions)> = filters
        .iter()
        .map(|f| (f.as_str(), opts(QoS::AtMostOnce)))
        .collect();

    let mut b = Broker::new(1);
    let mut c = small_client(&mut b);
    assert_eq!(b.subscribe(&mut c, &options[..fits]).len(), fits);
    b.send(
        &mut c,
        unsubscribe(
            2,
            &filters[..fits]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ),
    );
    assert!(
        matches!(&b.received(&mut c)[..], [Packet::UnsubAck(u)] if u.reason_codes.len() == fits)
    );

    b.send(&mut c, subscribe(3, &options));
    let packets = b.received(&mut c);
    let d = only_disconnect(&packets).expect("one DISCONNECT, no SUBACK");
    assert_eq!(d.reason_code, ReasonCode::PacketTooLarge);
    assert!(c.closed);

    let mut b = Broker::new(1);
    let mut c = small_client(&mut b);
    let all: Vec<&str> = filters.iter().map(String::as_str).collect();
    b.send(&mut c, unsubscribe(2, &all));
    let packets = b.received(&mut c);
    let d = only_disconnect(&packets).expect("one DISCONNECT, no UNSUBACK");
    assert_eq!(d.reason_code, ReasonCode::PacketTooLarge);
}

fn capped(max: u16, forced: Option<u16>) -> Broker {
    let mut settings = demo_settings();
    settings.broker.keepalive_max_s = Some(max);
    settings.broker.server_keepalive_s = forced;
    Broker::with(1, settings)
}

fn asking(id: &str, version: ProtocolVersion, keepalive_s: u16) -> Connect {
    let mut c = connect(id, version, true);
    c.keep_alive_s = keepalive_s;
    c
}

/// Proves the keep alive cap (`MaxKeepAlive`) answers a v5 client that asks for more, or for
/// none (0), with Server Keep Alive = the cap, and leaves one that asks for less alone; a
/// forced `ServerKeepAlive` still wins; a v3.1.1 client beyond the cap is refused with return
/// code 2, one within it is accepted.
#[test]
fn keepalive_cap_answers_only_clients_that_ask_for_more() {
    let mut b = capped(60, None);
    for (asked, told) in [(30, None), (60, None), (61, Some(60)), (0, Some(60))] {
        let (_, connack) = b.connect(asking(&format!("k{asked}"), V5, asked));
        assert_eq!(connack.reason_code, ReasonCode::Success);
        assert_eq!(
            connack.properties.server_keep_alive_s, told,
            "asked {asked}"
        );
    }
    let (_, connack) = capped(60, Some(20)).connect(asking("f", V5, 30));
    assert_eq!(connack.properties.server_keep_alive_s, Some(20));

    for (asked, accepted) in [(60, true), (61, false), (0, false)] {
        let mut b = capped(60, None);
        let (client, connack) = b.connect(asking("v3", V311, asked));
        let reason = connack.reason_code;
        assert_eq!(reason == ReasonCode::Success, accepted, "asked {asked}");
        if !accepted {
            assert_eq!(reason, ReasonCode::ClientIdentifierNotValid);
            assert_eq!(reason.v3_connack_return_code(), 2);
            assert!(client.closed);
        }
    }
}

/// Proves the cap is enforced, not only announced: a v5 client that asked for no keep alive
/// under a 10 s cap is disconnected (0x8D) once 15 s pass without a packet ([MQTT-3.1.2-22]).
#[test]
fn keepalive_cap_is_enforced() {
    let mut b = capped(10, None);
    let (mut c, _) = b.connect(asking("idle", V5, 0));
    b.advance(14.9);
    assert!(!c.closed);
    b.advance(0.2);
    let packets = b.received(&mut c);
    let d = only_disconnect(&packets).expect("one DISCONNECT");
    assert_eq!(d.reason_code, ReasonCode::KeepAliveTimeout);
}

/// Proves which closes the server lets linger: a connection the broker ended (a violation)
/// has a peer that may still be sending; one the client ended with DISCONNECT does not.
#[test]
fn peer_may_still_send_unless_it_disconnected() {
    // Input straight into the shard: the harness would release a closing connection.
    let mut b = Broker::new(1);
    let (ended, _) = b.connect(connect("ended", V5, true));
    b.shards[0].input(ended.conn, b.now, &[0xD0, 0]); // PINGRESP
    assert!(b.shards[0].is_closing(ended.conn));
    assert!(b.shards[0].peer_may_still_send(ended.conn));

    let (left, _) = b.connect(connect("left", V5, true));
    let goodbye = bytes_of(&Packet::Disconnect(Disconnect::normal()), V5);
    b.shards[0].input(left.conn, b.now, &goodbye);
    assert!(b.shards[0].is_closing(left.conn));
    assert!(!b.shards[0].peer_may_still_send(left.conn));
}
