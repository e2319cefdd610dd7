"""Persistent sessions with queued messages, made over raw MQTT 3.1.1 (asyncio): the state the
recovery benchmark of tests/bench/durable.py crashes the broker with.

- `create_sessions`: N sessions `<prefix><i>`, clean session 0 (a 3.1.1 session without
  expiry), each subscribed at QoS 1 to its own topic `<topic>/<i>`, then disconnected. A session
  counts as made once its CONNACK and SUBACK arrived (with the durable store: once the broker
  had them on disk) and the broker closed the connection after DISCONNECT (so it is
  disconnected before any message for it is published). At most `concurrency` connections are
  open at once, far below the 20,000 open files a process may hold here.
- `queue_messages`: K QoS 1 messages for each of them from a few clean publishers, each with at
  most `window` unacknowledged (below the broker's MaxInflightMessages, which disconnects a
  client that exceeds it). A message counts as queued once its PUBACK arrived.
- `drain_session`: connects one of them again and reads what was queued for it.

Every wait is bounded by `timeout_s`; a failure raises with what went wrong.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import mqtt_raw  # noqa: E402  (the packet encoders of the black-box suite)

V311 = 4
CONNACK_ACCEPTED = bytes([mqtt_raw.CONNACK << 4, 2, 0, 0])
#: SUBACK of packet id 1 granting QoS 1.
SUBACK_QOS1 = bytes([mqtt_raw.SUBACK << 4, 3, 0, 1, 1])
PUBACK_BYTES = 4  # a 3.1.1 PUBACK: type, length 2, packet id
PACKET_ID_MAX = 65535


async def create_sessions(port: int, n: int, prefix: str, topic: str, concurrency: int,
                          timeout_s: float) -> None:
    """Makes sessions 0..n-1 (see the module's note)."""
    indices = iter(range(n))

    async def worker():
        for i in indices:
            await asyncio.wait_for(_create_session(port, f"{prefix}{i}", f"{topic}/{i}"),
                                   timeout_s)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))


async def _create_session(port: int, client_id: str, topic: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # SUBSCRIBE may follow CONNECT before the CONNACK [MQTT-3.1.4-5 allows it]; the broker
        # answers both in order, so one round trip (one sync with the store) makes the session.
        writer.write(mqtt_raw.connect(client_id, version=V311, clean=False)
                     + mqtt_raw.subscribe(1, [(topic, 1)], version=V311))
        answer = await reader.readexactly(len(CONNACK_ACCEPTED) + len(SUBACK_QOS1))
        if answer != CONNACK_ACCEPTED + SUBACK_QOS1:
            raise RuntimeError(f"{client_id}: expected CONNACK 0 and SUBACK QoS 1, got "
                               f"{answer.hex()}")
        writer.write(mqtt_raw.disconnect(version=V311))
        rest = await reader.read()  # until the broker closes: the session is disconnected
        if rest:
            raise RuntimeError(f"{client_id}: unexpected bytes after DISCONNECT: {rest[:16].hex()}")
    finally:
        writer.close()


async def queue_messages(port: int, n: int, per_session: int, topic: str, payload: bytes,
                         publishers: int, window: int, timeout_s: float) -> None:
    """Publishes `per_session` rounds of one QoS 1 message to each `<topic>/<i>`, i < n, spread
    over `publishers` connections; returns once every PUBACK arrived."""
    assert 0 < window < PACKET_ID_MAX
    await asyncio.gather(*(
        _publisher(port, f"queue-pub-{p}", [f"{topic}/{i}" for i in range(p, n, publishers)],
                   per_session, payload, window, timeout_s)
        for p in range(min(publishers, n))))


async def _publisher(port: int, client_id: str, topics: list[str], rounds: int, payload: bytes,
                     window: int, timeout_s: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(mqtt_raw.connect(client_id, version=V311, clean=True))
        if await asyncio.wait_for(reader.readexactly(4), timeout_s) != CONNACK_ACCEPTED:
            raise RuntimeError(f"{client_id}: CONNACK refused")
        total = len(topics) * rounds
        sent = acked = 0
        pending = bytearray()

        def send(count: int) -> None:
            nonlocal sent
            batch = []
            for k in range(sent, min(sent + count, total)):
                packet_id = k % PACKET_ID_MAX + 1
                batch.append(mqtt_raw.publish(topics[k % len(topics)], payload, qos=1,
                                              packet_id=packet_id, version=V311))
            sent += len(batch)
            writer.write(b"".join(batch))

        send(window)
        while acked < total:
            data = await asyncio.wait_for(reader.read(65536), timeout_s)
            if not data:
                raise RuntimeError(f"{client_id}: the broker closed the connection after "
                                   f"{acked} of {total} PUBACKs")
            pending += data
            whole = len(pending) - len(pending) % PUBACK_BYTES
            if any(b != mqtt_raw.PUBACK << 4 for b in pending[0:whole:PUBACK_BYTES]):
                raise RuntimeError(f"{client_id}: expected only PUBACKs, got {pending[:16].hex()}")
            del pending[:whole]
            acked += whole // PUBACK_BYTES
            send(whole // PUBACK_BYTES)
        writer.write(mqtt_raw.disconnect(version=V311))
        await writer.drain()
    finally:
        writer.close()


def drain_session(port: int, client_id: str, timeout_s: float, quiet_s: float = 1.0) -> list[str]:
    """Resumes `client_id`'s session and acknowledges every message the broker sends until none
    came for `quiet_s` (the first may take up to `timeout_s`); returns their topics."""
    client = mqtt_raw.RawClient("127.0.0.1", port, version=V311)
    try:
        connack = client.connect(client_id, clean=False)
        if connack.reason != 0 or not connack.session_present:
            raise RuntimeError(f"{client_id}: no session present after the restart ({connack})")
        topics = []
        while True:
            try:
                p = client.recv(quiet_s if topics else timeout_s)
            except TimeoutError:
                break
            if p.type != mqtt_raw.PUBLISH or p.qos != 1:
                raise RuntimeError(f"{client_id}: expected QoS 1 PUBLISH, got {p!r}")
            topics.append(p.topic)
            client.ack(mqtt_raw.PUBACK, p.packet_id)
        client.disconnect()
        return topics
    finally:
        client.close()
