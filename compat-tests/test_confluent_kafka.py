"""confluent-kafka (librdkafka): admin create, produce every codec with keys,
headers and nulls, read back byte for byte, 100 partitions, records near
max.message.bytes, and everything again after a restart."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import unique
from scenario import CODECS, assert_same, records


def create(broker, name, partitions=1, config=None):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], operation_timeout=10)
    futures[name].result(timeout=30)


def produce(broker, topic, recs, codec="none", partition=None, extra=None):
    conf = {"bootstrap.servers": broker.bootstrap, "acks": "all", "compression.type": codec, "linger.ms": 5}
    conf.update(extra or {})
    p = Producer(conf)
    delivered, errors = [], []

    def cb(err, msg):
        (errors if err else delivered).append(err or (msg.partition(), msg.offset()))

    for key, value, headers in recs:
        kwargs = {"key": key, "value": value, "headers": headers or None, "on_delivery": cb}
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
    assert p.flush(30) == 0, "messages still in flight after 30s"
    return delivered, errors


def consume(broker, topic, partitions, expected_count, timeout=30):
    c = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": unique("g"),
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    })
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected_count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None or m.error().code() == KafkaError._PARTITION_EOF, m.error()
        if m.error() is None:
            got.append(m)
    c.close()
    return got


def as_tuples(msgs):
    return [(m.key(), m.value(), m.headers()) for m in msgs]


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_byte_for_byte_and_survives_restart(broker, codec):
    topic = unique(f"cfk-{codec}")
    create(broker, topic)
    expected = records(topic)
    delivered, errors = produce(broker, topic, expected, codec)
    assert errors == []
    assert [o for _, o in delivered] == list(range(len(expected)))
    got = consume(broker, topic, [0], len(expected))
    assert [m.offset() for m in got] == list(range(len(expected)))
    assert_same(expected, as_tuples(got), codec)
    broker.restart()
    assert_same(expected, as_tuples(consume(broker, topic, [0], len(expected))), f"{codec} after restart")


def test_hundred_partitions_each_keep_their_own_offsets(broker):
    topic = unique("cfk-100")
    create(broker, topic, partitions=100)
    for p in range(100):
        delivered, errors = produce(broker, topic, [(f"k{p}".encode(), f"p{p}-{i}".encode(), []) for i in range(3)],
                                    partition=p)
        assert errors == [] and delivered == [(p, 0), (p, 1), (p, 2)]
    got = consume(broker, topic, range(100), 300)
    by_partition = {}
    for m in got:
        by_partition.setdefault(m.partition(), []).append((m.offset(), m.value()))
    assert len(by_partition) == 100
    for p, msgs in by_partition.items():
        assert msgs == [(i, f"p{p}-{i}".encode()) for i in range(3)]


def test_records_near_max_message_bytes(broker):
    topic = unique("cfk-big")
    create(broker, topic)
    big = b"x" * 1_000_000
    delivered, errors = produce(broker, topic, [(b"k", big, [])], extra={"message.max.bytes": 3_000_000})
    assert errors == [] and delivered == [(0, 0)]
    too_big = b"y" * 1_100_000
    delivered, errors = produce(broker, topic, [(b"k", too_big, [])],
                                extra={"message.max.bytes": 3_000_000, "retries": 0})
    assert delivered == []
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    got = consume(broker, topic, [0], 1)
    assert [m.value() for m in got] == [big]


def test_topic_level_max_message_bytes_is_enforced(broker):
    topic = unique("cfk-small")
    create(broker, topic, config={"max.message.bytes": "2000"})
    delivered, errors = produce(broker, topic, [(b"k", b"z" * 5000, [])], extra={"retries": 0})
    assert delivered == [] and [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    delivered, errors = produce(broker, topic, [(b"k", b"z" * 100, [])])
    assert errors == [] and delivered == [(0, 0)]
