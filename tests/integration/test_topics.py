"""Topic matching corner cases: `$`-topics and wildcards, and single/multi-level wildcards."""

from helpers import holds_for


def test_wildcards_do_not_match_dollar_topics(broker, client, proto):
    """Topics starting with `$` are not matched by filters starting with a wildcard
    [MQTT-4.7.2-1]: `#` and `+/x` do not receive `$test/x`, while `$test/#` does. The publisher
    then sends `plain/x`, which `#` and `+/x` do receive; once they have it, the `$test/x`
    message (published first, same publisher and QoS) would have arrived too."""
    hash_ = client(proto, "hash")
    hash_.subscribe("#", 1)
    plus = client(proto, "plus")
    plus.subscribe("+/x", 1)
    dollar = client(proto, "dollar")
    dollar.subscribe("$test/#", 1)
    pub = client(proto, "pub")
    pub.publish("$test/x", b"system", 1)
    pub.publish("plain/x", b"user", 1)
    assert [m.topic for m in dollar.wait_messages(1)] == ["$test/x"]
    for c in (hash_, plus):
        c.wait_messages(1)
        assert holds_for(lambda: [m.topic for m in c.received()] == ["plain/x"], 0.2)


def test_single_and_multi_level_wildcards(broker, client, proto):
    """`+` matches exactly one level and `#` matches the parent and any number of levels
    (spec 4.7.1): `sport/+` gets sport/tennis but not sport/tennis/player1 nor sport;
    `sport/#` gets all three; `sport/+/player1` gets only sport/tennis/player1."""
    subs = {f: client(proto, f"s{i}") for i, f in enumerate(["sport/+", "sport/#",
                                                             "sport/+/player1"])}
    for f, c in subs.items():
        c.subscribe(f, 1)
    pub = client(proto, "pub")
    for topic in ("sport", "sport/tennis", "sport/tennis/player1"):
        pub.publish(topic, topic.encode(), 1)
    expected = {"sport/+": ["sport/tennis"],
                "sport/#": ["sport", "sport/tennis", "sport/tennis/player1"],
                "sport/+/player1": ["sport/tennis/player1"]}
    subs["sport/#"].wait_messages(3)
    for f, c in subs.items():
        c.wait_messages(len(expected[f]))
        assert holds_for(lambda: sorted(m.topic for m in c.received()) == expected[f], 0.1), f
