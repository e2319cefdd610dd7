"""Publish after subscribe, across shards: if the broker took in B's SUBSCRIBE before A's
PUBLISH, B receives the message, whichever shards B and A are on and whether or not B has its
SUBACK yet (docs/design.md, "SUBSCRIBE, and what the other shards know").

The clients here never wait for a SUBACK, as the interoperability suites' clients do not. To
know that the broker took in B's SUBSCRIBE first, B sends it and then, on the same connection, a
PUBLISH to a sync topic: the broker reads one connection's packets in order, so by the time the
relay client A receives that sync message, B's SUBSCRIBE was taken in. A then publishes to B's
new topic at once.
"""

import pytest

from helpers import V5, V311, Client

SUBSCRIBERS = 16
ROUNDS = 60

# 8 shards are covered in the core tests (shard/tests/publish_after_subscribe.rs): a fresh broker
# running 8 shards on 2 CPUs once left its first client without a CONNACK for 5 s in CI. Tests
# then started clients as soon as the port was bound, before every shard ran; they now wait for
# the broker's "ready" line. 8 shards passed 5 of 5 runs here since, but the stall was not
# reproduced, so the black-box test keeps to 2 and 4.
@pytest.mark.parametrize("shards", [2, 4])
@pytest.mark.parametrize("proto", [V311, V5], ids=["v311", "v5"])
def test_a_message_published_after_a_subscribe_was_read_arrives(start_broker, shards, proto):
    """16 subscribers (client ids spread over the shards) run 60 rounds: each sends
    SUBSCRIBE to a fresh topic t/<j>/<round> and PUBLISH sync/<j>/<round> without waiting for
    any acknowledgement; the relay, on receiving a sync message, publishes to that topic. Once
    every subscriber has its message, each unsubscribes (again without waiting) and the next
    round starts. Every subscriber must receive all 60 of its messages (960 per broker, with
    2 and 4 shards on this machine's CPUs), each once."""
    b = start_broker(args=["--shards", str(shards)])
    relay = Client(b, proto, "relay")
    subscribers = [Client(b, proto, f"sub-{j}") for j in range(SUBSCRIBERS)]
    try:
        relay.connect()
        relay.subscribe("sync/#", 1)

        def relay_back(client, userdata, message):
            # sync/<j>/<round> -> t/<j>/<round>, from the network thread, without waiting.
            client.publish("t/" + message.topic[len("sync/"):], message.payload, 1)

        relay.mqtt.on_message = relay_back
        for s in subscribers:
            s.connect()
        for r in range(ROUNDS):
            for j, s in enumerate(subscribers):
                rc, _ = s.mqtt.subscribe(f"t/{j}/{r}", 1)
                assert rc == 0
                s.publish(f"sync/{j}/{r}", str(r), 1, wait=False)
            for s in subscribers:
                s.wait_messages(r + 1, timeout=30)
            # Each round's topic goes once its message arrived, so that interest also leaves
            # the other shards' tries while the next round's arrives.
            for j, s in enumerate(subscribers):
                s.mqtt.unsubscribe(f"t/{j}/{r}")
        for j, s in enumerate(subscribers):
            got = sorted(int(p) for p in s.payloads())
            assert got == list(range(ROUNDS)), f"sub-{j} on {shards} shards: {got}"
            assert all(m.topic == f"t/{j}/{m.payload.decode()}" for m in s.received())
    finally:
        for c in [relay, *subscribers]:
            c.close()
