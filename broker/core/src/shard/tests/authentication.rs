//! CONNECTs on an endpoint that authenticates: they wait for a verdict without holding the
//! shard, a refusal is the CONNACK's reason, nothing is touched before the verdict, and a
//! user never takes over another user's client id.

use super::*;
use crate::auth::{AuthAnswer, AuthVerdict, Principal, Refusal};

fn authenticating_settings(pending_max: usize) -> Settings {
    let mut settings = demo_settings();
    settings.endpoints[0].authenticate = true;
    settings.broker.pending_authentications_max = pending_max;
    settings
}

fn user(name: &str) -> AuthVerdict {
    Ok(Arc::new(Principal::new(name, ["staff".into()])))
}

fn with_login(id: &str, version: ProtocolVersion, clean: bool, name: &str) -> Connect {
    let mut c = connect(id, version, clean);
    c.username = Some(name.into());
    c.password = Some(Bytes::from_static(b"secret"));
    if version == V5 && !clean {
        c.properties.session_expiry_interval_s = Some(300);
    }
    c
}

impl Broker {
    /// Sends CONNECT on shard 0 and returns the client, which has no answer yet.
    fn connect_pending(&mut self, c: Connect) -> Client {
        let mut client = self.open_on(0, c.protocol);
        self.send(&mut client, Packet::Connect(Box::new(c)));
        assert_eq!(client.inbox, [], "nothing is answered before the verdict");
        client
    }

    /// Answers the client's authentication request with `verdict`.
    fn answer(&mut self, client: &mut Client, answer: impl Into<AuthAnswer>) {
        let at = self
            .auth_requests
            .iter()
            .position(|r| usize::from(r.shard) == client.shard && r.conn == client.conn)
            .expect("the client's CONNECT asked for a verdict");
        let request = self.auth_requests.remove(at);
        let mut resumed = Vec::new();
        self.shards[client.shard].authenticated(
            request.conn,
            request.ticket,
            self.now,
            answer.into(),
            &mut resumed,
        );
        self.settle(&mut [&mut *client]);
    }

    /// Connects `c` and accepts it as `name`; returns the client and its CONNACK.
    fn connect_as(&mut self, c: Connect, name: &str) -> (Client, ConnAck) {
        let mut client = self.connect_pending(c);
        self.answer(&mut client, user(name));
        match client.inbox.remove(0) {
            Packet::ConnAck(connack) => (client, connack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

fn connack_reason(packets: &[Packet]) -> ReasonCode {
    match packets.first() {
        Some(Packet::ConnAck(connack)) => connack.reason_code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Proves a CONNECT waits for its verdict with the credentials it carried, and that what the
/// client sent right after it (a SUBSCRIBE in the same bytes) is processed after the CONNACK.
#[test]
fn a_connect_waits_for_its_verdict_and_its_next_packets_follow() {
    let mut b = Broker::with(1, authenticating_settings(10));
    let mut client = b.open_on(0, V5);
    let mut bytes = BytesMut::new();
    Packet::Connect(Box::new(with_login("c1", V5, true, "alice"))).encode(V5, &mut bytes);
    subscribe(1, &[("t", opts(QoS::AtLeastOnce))]).encode(V5, &mut bytes);
    b.send_bytes(&mut client, &bytes);
    assert_eq!(client.inbox, []);
    let request = &b.auth_requests[0];
    assert_eq!(
        (&*request.client_id, request.user_name.as_deref()),
        ("c1", Some("alice"))
    );
    assert_eq!(request.password.as_deref(), Some(&b"secret"[..]));

    b.answer(&mut client, user("alice"));
    let packets = b.received(&mut client);
    assert_eq!(connack_reason(&packets), ReasonCode::Success);
    assert!(
        matches!(&packets[1..], [Packet::SubAck(ack)] if ack.reason_codes == [ReasonCode::GrantedQoS1]),
        "{packets:?}"
    );
}

/// Proves each refusal reaches the client as its CONNACK reason (v5 codes; the codec writes
/// v3 return codes 4, 5 and 3 for them) and closes the connection.
#[test]
fn a_refusal_is_the_connack_reason() {
    for (refusal, reason) in [
        (Refusal::BadCredentials, ReasonCode::BadUserNameOrPassword),
        (Refusal::NotAuthorized, ReasonCode::NotAuthorized),
        (Refusal::Unavailable, ReasonCode::ServerUnavailable),
    ] {
        for version in [V5, V311] {
            let mut b = Broker::with(1, authenticating_settings(10));
            let mut client = b.connect_pending(with_login("c1", version, true, "alice"));
            b.answer(&mut client, Err(refusal));
            assert_eq!(
                connack_reason(&client.inbox),
                reason,
                "{refusal:?} {version:?}"
            );
            assert!(client.closed);
        }
    }
}

/// Proves a CONNECT whose verdict never comes is told "server unavailable" once
/// `authentication_timeout_s` (and a tick) passed, and not before.
#[test]
fn no_verdict_in_time_is_server_unavailable() {
    let mut settings = authenticating_settings(10);
    settings.broker.authentication_timeout_s = 5;
    let mut b = Broker::with(1, settings);
    let mut client = b.connect_pending(with_login("c1", V5, true, "alice"));
    b.advance(5.5);
    assert_eq!(b.received(&mut client), []);
    b.advance(1.0);
    assert_eq!(
        connack_reason(&b.received(&mut client)),
        ReasonCode::ServerUnavailable
    );
    assert!(client.closed);
}

/// Proves a verdict for a connection that closed meanwhile is dropped, even when its slot
/// holds a newer connection that waits for its own verdict.
#[test]
fn a_verdict_for_a_closed_connection_is_dropped() {
    let mut b = Broker::with(1, authenticating_settings(10));
    let mut first = b.connect_pending(with_login("c1", V5, true, "alice"));
    b.drop_connection(&mut first);
    let stale = b.auth_requests.remove(0);
    let mut second = b.connect_pending(with_login("c2", V5, true, "bob"));
    assert_eq!(second.conn, stale.conn, "the slot was reused");
    let mut resumed = Vec::new();
    b.shards[0].authenticated(
        stale.conn,
        stale.ticket,
        b.now,
        user("alice").into(),
        &mut resumed,
    );
    assert_eq!(b.received(&mut second), [], "the stale verdict did nothing");
    assert_eq!(resumed, []);
    b.answer(&mut second, user("bob"));
    assert_eq!(connack_reason(&second.inbox), ReasonCode::Success);
}

/// Proves CONNECTs beyond `pending_authentications_max` are told the server is busy at once,
/// and that room comes back when a verdict is given.
#[test]
fn pending_authentications_are_capped() {
    let mut b = Broker::with(1, authenticating_settings(2));
    let mut first = b.connect_pending(with_login("c1", V5, true, "u1"));
    let _second = b.connect_pending(with_login("c2", V5, true, "u2"));
    let (_, connack) = b.connect(with_login("c3", V5, true, "u3"));
    assert_eq!(connack.reason_code, ReasonCode::ServerBusy);
    assert_eq!(b.shards[0].stats.authentications_shed, 1);
    b.answer(&mut first, user("u1"));
    let _fourth = b.connect_pending(with_login("c4", V5, true, "u4"));
    assert_eq!(b.auth_requests.len(), 2);
}

/// Proves a user cannot take over a client id another user holds (the holder keeps its
/// connection and session), and that the same user can.
#[test]
fn another_user_cannot_take_over_a_client_id() {
    for version in [V5, V311] {
        let mut b = Broker::with(1, authenticating_settings(10));
        let (mut alice, connack) =
            b.connect_as(with_login("twin", version, false, "alice"), "alice");
        assert_eq!(connack.reason_code, ReasonCode::Success);
        b.subscribe(&mut alice, &[("t", opts(QoS::AtLeastOnce))]);

        let (bob, connack) = b.connect_as(with_login("twin", version, true, "bob"), "bob");
        assert_eq!(connack.reason_code, ReasonCode::NotAuthorized);
        assert!(bob.closed);
        assert_eq!(b.received(&mut alice), [], "alice was not disconnected");

        let (_again, connack) = b.connect_as(with_login("twin", version, false, "alice"), "alice");
        assert_eq!(
            (connack.reason_code, connack.session_present),
            (ReasonCode::Success, true)
        );
    }
}

/// Proves a CONNECT that is then refused touched nothing: the session it named keeps its
/// connection, its subscription and its messages.
#[test]
fn a_refused_connect_never_touches_the_session() {
    let mut b = Broker::with(1, authenticating_settings(10));
    let (mut alice, _) = b.connect_as(with_login("twin", V5, false, "alice"), "alice");
    b.subscribe(&mut alice, &[("t", opts(QoS::AtMostOnce))]);
    let mut impostor = b.connect_pending(with_login("twin", V5, true, "alice"));
    b.answer(&mut impostor, Err(Refusal::BadCredentials));
    assert_eq!(
        connack_reason(&impostor.inbox),
        ReasonCode::BadUserNameOrPassword
    );
    let (mut publisher, _) = b.connect_as(with_login("pub", V5, true, "carol"), "carol");
    b.send(
        &mut publisher,
        Packet::Publish(publish("t", b"still here", QoS::AtMostOnce, None)),
    );
    assert_eq!(payloads(&b.publishes(&mut alice)), [b"still here"]);
}

/// Proves a CONNECT that arrives on another shard is authenticated on the shard that owns its
/// client id, after the handoff.
#[test]
fn authentication_happens_on_the_owner_shard() {
    let mut b = Broker::with(2, authenticating_settings(10));
    let id = id_on(&b, 1, "owned-");
    let mut client = b.open_on(0, V5);
    b.send(
        &mut client,
        Packet::Connect(Box::new(with_login(&id, V5, true, "alice"))),
    );
    assert_eq!(client.shard, 1, "handed over to the owner");
    assert_eq!(b.auth_requests[0].shard, 1);
    b.answer(&mut client, user("alice"));
    assert_eq!(connack_reason(&client.inbox), ReasonCode::Success);
}

fn with_method(id: &str, data: &'static [u8]) -> Connect {
    let mut c = connect(id, V5, true);
    c.properties.authentication_method = Some("SCRAM-SHA-256".into());
    c.properties.authentication_data = Some(Bytes::from_static(data));
    c
}

fn auth(method: &str, data: &'static [u8]) -> Packet {
    Packet::Auth(ironsight_codec::Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: ironsight_codec::AuthProperties {
            authentication_method: Some(method.into()),
            authentication_data: Some(Bytes::from_static(data)),
            ..Default::default()
        },
    })
}

/// Proves enhanced authentication runs in rounds: each round's data reaches the auth service
/// with its step, a "continue" becomes AUTH 0x18 with the method, and the last data rides on
/// the CONNACK, which names the method ([MQTT-4.12.0-2], [MQTT-4.12.0-4]).
#[test]
fn enhanced_authentication_takes_rounds() {
    let mut b = Broker::with(1, authenticating_settings(10));
    let mut client = b.connect_pending(with_method("c1", b"client-first"));
    let first = &b.auth_requests[0];
    assert_eq!(first.method.as_deref(), Some("SCRAM-SHA-256"));
    assert_eq!(first.data.as_deref(), Some(&b"client-first"[..]));
    assert_eq!(first.step, 0);

    b.answer(
        &mut client,
        AuthAnswer::Continue(Bytes::from_static(b"server-first")),
    );
    assert_eq!(client.inbox, [auth("SCRAM-SHA-256", b"server-first")]);
    client.inbox.clear();

    b.send(&mut client, auth("SCRAM-SHA-256", b"client-final"));
    assert_eq!(client.inbox, []);
    let second = &b.auth_requests[0];
    assert_eq!(
        (second.step, second.data.as_deref()),
        (1, Some(&b"client-final"[..]))
    );
    b.answer(
        &mut client,
        AuthAnswer::Done {
            verdict: user("alice"),
            data: Some(Bytes::from_static(b"server-final")),
        },
    );
    match client.inbox.as_slice() {
        [Packet::ConnAck(connack)] => {
            assert_eq!(connack.reason_code, ReasonCode::Success);
            let props = &connack.properties;
            assert_eq!(
                props.authentication_method.as_deref(),
                Some("SCRAM-SHA-256")
            );
            assert_eq!(
                props.authentication_data.as_deref(),
                Some(&b"server-final"[..])
            );
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Proves that while the broker waits for the client's AUTH, anything else (another packet,
/// AUTH with another method) is refused as a protocol error.
#[test]
fn only_the_methods_auth_answers_a_round() {
    for wrong in [Packet::PingReq, auth("PLAIN", b"x")] {
        let mut b = Broker::with(1, authenticating_settings(10));
        let mut client = b.connect_pending(with_method("c1", b"client-first"));
        b.answer(&mut client, AuthAnswer::Continue(Bytes::from_static(b"sf")));
        client.inbox.clear();
        b.send(&mut client, wrong);
        assert_eq!(connack_reason(&client.inbox), ReasonCode::ProtocolError);
        assert!(client.closed);
    }
}

/// Proves a method the auth service does not offer is refused with Bad authentication method.
#[test]
fn an_unknown_method_is_a_bad_method() {
    let mut b = Broker::with(1, authenticating_settings(10));
    let mut client = b.connect_pending(with_method("c1", b"x"));
    b.answer(&mut client, Err(Refusal::BadMethod));
    assert_eq!(
        connack_reason(&client.inbox),
        ReasonCode::BadAuthenticationMethod
    );
}
