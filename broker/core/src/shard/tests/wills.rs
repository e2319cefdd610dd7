//! Wills: published on an abrupt close only, at their delay or the session's end, whichever
//! comes first, and not on shutdown.

use super::*;

#[test]
fn will_is_sent_on_abrupt_close_only() {
    let mut b = Broker::new(2);
    let mut w = watcher(&mut b);
    let (mut abrupt, _) = b.connect(will_connect("a", None, 0));
    let (mut clean, _) = b.connect(will_connect("c", None, 0));
    b.disconnect(&mut clean, ReasonCode::Success, None);
    assert!(b.publishes(&mut w).is_empty(), "no will on DISCONNECT 0x00");
    b.drop_connection(&mut abrupt);
    assert_eq!(payloads(&b.publishes(&mut w)), [b"bye"]);
    let (mut asked, _) = b.connect(will_connect("d", None, 0));
    b.disconnect(&mut asked, ReasonCode::DisconnectWithWillMessage, None);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "0x04 asks for the will"
    );
    let (mut failing, _) = b.connect(will_connect("e", None, 0));
    b.disconnect(&mut failing, ReasonCode::UnspecifiedError, None);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "only 0x00 deletes the will [MQTT-3.1.2-10]"
    );
}

#[test]
fn will_delay_is_cancelled_by_a_reconnect() {
    let mut b = Broker::new(1);
    let mut w = watcher(&mut b);
    let (mut c, _) = b.connect(will_connect("c", Some(5), 60));
    b.drop_connection(&mut c);
    b.advance(3.0);
    assert!(b.publishes(&mut w).is_empty());
    let (_, connack) = b.connect(will_connect("c", Some(5), 60));
    assert!(connack.session_present);
    b.advance(10.0);
    assert!(b.publishes(&mut w).is_empty(), "[MQTT-3.1.3-9]");
}

#[test]
fn will_is_published_at_delay_or_session_end_whichever_first() {
    let mut b = Broker::new(1);
    let mut w = watcher(&mut b);
    let (mut delayed, _) = b.connect(will_connect("d", Some(3), 60));
    let (mut expiring, _) = b.connect(will_connect("e", Some(30), 2));
    b.drop_connection(&mut delayed);
    b.drop_connection(&mut expiring);
    b.advance(2.5);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "the session of e ended at 2 s"
    );
    b.advance(1.0);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "d's delay of 3 s ran out"
    );
}

#[test]
fn keepalive_timeout_disconnects_and_sends_the_will() {
    let mut b = Broker::new(1);
    let mut w = watcher(&mut b);
    let mut c = will_connect("k", None, 0);
    c.keep_alive_s = 2;
    let (mut k, _) = b.connect(c);
    b.advance(2.9);
    assert!(!k.closed, "1.5 x keep alive has not passed");
    b.send(&mut k, Packet::PingReq);
    assert!(matches!(&b.received(&mut k)[..], [Packet::PingResp]));
    b.advance(3.1);
    let packets = b.received(&mut k);
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout)
    );
    assert!(k.closed);
    assert_eq!(payloads(&b.publishes(&mut w)), [b"bye"]);
}

#[test]
fn shutdown_tells_v5_clients_and_keeps_wills() {
    let mut b = Broker::new(1);
    let mut w = watcher(&mut b);
    let (mut c, _) = b.connect(will_connect("c", None, 0));
    for shard in &mut b.shards {
        shard.shutdown(b.now);
    }
    let packets = b.received(&mut c);
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ServerShuttingDown)
    );
    assert!(c.closed);
    let packets = b.received(&mut w);
    assert!(
        packets.iter().all(|p| !matches!(p, Packet::Publish(_))),
        "no will on shutdown: {packets:?}"
    );
}
