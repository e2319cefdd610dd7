//! Publish after subscribe across shards: a message published after a SUBSCRIBE was taken
//! in reaches the subscriber, whatever shards the two clients are on and whatever order the
//! messages between shards move in.

use super::*;

/// A random schedule for the shard interleaving tests (xorshift64*, seeded: a failure repeats).
struct Schedule(u64);

impl Schedule {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Proves the publish-after-subscribe guarantee where the old design broke it: the subscriber's
/// SUBSCRIBE is taken in on one shard and, before that shard's messages to the others move at
/// all, a client of another shard publishes. The subscriber still gets the message, with no
/// SUBACK delay, on 2, 4 and 8 shards.
#[test]
fn publish_right_after_a_subscribe_on_another_shard_is_delivered() {
    for n in [2u16, 4, 8] {
        let mut b = Broker::new(n);
        let (mut sub, _) = b.connect_on(1, connect(&id_on(&b, 1, "s"), V5, true));
        let publishers: Vec<Client> = (0..n)
            .filter(|&s| s != 1)
            .map(|s| {
                b.connect_on(usize::from(s), connect(&id_on(&b, s, "p"), V5, true))
                    .0
            })
            .collect();
        let mut bytes = BytesMut::new();
        subscribe(1, &[("t/+", opts(QoS::AtLeastOnce))]).encode(V5, &mut bytes);
        b.shards[1].input(sub.conn, b.now, &bytes);
        b.collect(&mut sub);
        assert!(
            matches!(&sub.inbox[..], [Packet::SubAck(_)]),
            "the SUBACK leaves at once on {n} shards: {:?}",
            sub.inbox
        );
        sub.inbox.clear();
        // No settling: nothing the subscriber's shard queued for the others has moved.
        for (i, p) in publishers.iter().enumerate() {
            let mut bytes = BytesMut::new();
            let payload = [i as u8];
            Packet::Publish(publish("t/x", &payload, QoS::AtMostOnce, None)).encode(V5, &mut bytes);
            b.shards[p.shard].input(p.conn, b.now, &bytes);
        }
        let got = b.publishes(&mut sub);
        let mut got: Vec<u8> = got.iter().map(|p| p.payload[0]).collect();
        got.sort();
        let want: Vec<u8> = (0..publishers.len() as u8).collect();
        assert_eq!(got, want, "every publisher's message, on {n} shards");
    }
}

/// Proves the guarantee under thousands of random interleavings: subscribes, publishes and the
/// delivery of messages between shards happen in random order (each pair of shards in FIFO
/// order, as the server's channels keep it). Every message published after a subscriber's
/// SUBSCRIBE was taken in reaches it exactly once; messages published before may or may not.
#[test]
fn random_interleavings_keep_publish_after_subscribe() {
    for seed in 1..=300u64 {
        let mut rng = Schedule(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let n = [2u16, 4, 8][rng.below(3)];
        interleaving(n, &mut rng, seed);
    }
}

fn interleaving(n: u16, rng: &mut Schedule, seed: u64) {
    const TOPICS: usize = 3;
    const SUBSCRIBERS: usize = 6;
    let mut b = Broker::new(n);
    let mut clients: Vec<Client> = (0..SUBSCRIBERS + 3)
        .map(|i| {
            let shard = rng.below(usize::from(n)) as u16;
            let id = id_on(&b, shard, &format!("c{i}-"));
            b.connect_on(usize::from(shard), connect(&id, V5, true)).0
        })
        .collect();
    // In flight between shards, per (from, to) pair, oldest first.
    let mut wires: Vec<std::collections::VecDeque<ShardMsg>> =
        (0..n * n).map(|_| Default::default()).collect();
    // The topic each subscriber subscribed to, and the messages it must receive.
    let mut topic_of: Vec<Option<usize>> = vec![None; SUBSCRIBERS];
    let mut owed: Vec<Vec<u16>> = vec![Vec::new(); SUBSCRIBERS];
    let mut next_payload = 0u16;
    for _ in 0..60 {
        match rng.below(4) {
            0 => {
                let s = rng.below(SUBSCRIBERS);
                if topic_of[s].is_none() {
                    let t = rng.below(TOPICS);
                    topic_of[s] = Some(t);
                    let filter = format!("t/{t}");
                    let c = &clients[s];
                    let mut bytes = BytesMut::new();
                    subscribe(1, &[(&filter, opts(QoS::AtMostOnce))]).encode(V5, &mut bytes);
                    b.shards[c.shard].input(c.conn, b.now, &bytes);
                }
            }
            1 | 2 => {
                let p = SUBSCRIBERS + rng.below(3);
                let t = rng.below(TOPICS);
                let payload = next_payload.to_be_bytes();
                next_payload += 1;
                let c = &clients[p];
                let mut bytes = BytesMut::new();
                Packet::Publish(publish(&format!("t/{t}"), &payload, QoS::AtMostOnce, None))
                    .encode(V5, &mut bytes);
                b.shards[c.shard].input(c.conn, b.now, &bytes);
                for s in 0..SUBSCRIBERS {
                    if topic_of[s] == Some(t) {
                        owed[s].push(u16::from_be_bytes(payload));
                    }
                }
            }
            _ => {
                // Move one message between shards, from a random non-empty wire.
                for from in 0..n {
                    let mut out = Vec::new();
                    b.shards[usize::from(from)].take_outbox(&mut out);
                    for (to, msg) in out {
                        wires[usize::from(from * n + to)].push_back(msg);
                    }
                }
                let busy: Vec<usize> = (0..wires.len()).filter(|&w| !wires[w].is_empty()).collect();
                if !busy.is_empty() {
                    let w = busy[rng.below(busy.len())];
                    let msg = wires[w].pop_front().expect("busy");
                    b.shards[w % usize::from(n)].remote(b.now, msg);
                }
            }
        }
    }
    // Whatever is still on the wires arrives, in order.
    for (w, wire) in wires.iter_mut().enumerate() {
        while let Some(msg) = wire.pop_front() {
            b.shards[w % usize::from(n)].remote(b.now, msg);
        }
    }
    for (s, client) in clients.iter_mut().take(SUBSCRIBERS).enumerate() {
        let got: Vec<u16> = b
            .publishes(client)
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[0], p.payload[1]]))
            .collect();
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            got.len(),
            "seed {seed}, {n} shards: duplicates {got:?}"
        );
        for m in &owed[s] {
            assert!(
                got.contains(m),
                "seed {seed}, {n} shards: subscriber {s} missed message {m}; got {got:?}"
            );
        }
    }
}
