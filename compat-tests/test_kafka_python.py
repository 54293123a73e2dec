"""kafka-python: admin create, every codec with keys, headers and nulls byte for
byte, 100 partitions, a record near max.message.bytes, restart."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from conftest import unique
from scenario import CODECS, assert_same, records


def create(broker, name, partitions=1):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(name, partitions, 1)])
    admin.close()


def produce(broker, topic, recs, codec="none", partition=None, **extra):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                      compression_type=None if codec == "none" else codec, linger_ms=5, **extra)
    futures = [p.send(topic, key=k, value=v, headers=h, partition=partition) for k, v, h in recs]
    p.flush(30)
    meta = [f.get(timeout=30) for f in futures]
    p.close()
    return [(m.partition, m.offset) for m in meta]


def consume(broker, topic, partitions, count, timeout=30):
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                      fetch_max_wait_ms=100, max_partition_fetch_bytes=2 * 1024 * 1024)
    tps = [TopicPartition(topic, p) for p in partitions]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for batch in c.poll(timeout_ms=500).values():
            got.extend(batch)
    c.close()
    return sorted(got, key=lambda m: (m.partition, m.offset))


def as_tuples(msgs):
    return [(m.key, m.value, m.headers) for m in msgs]


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_and_survives_restart(broker, codec):
    topic = unique(f"kp-{codec}")
    create(broker, topic)
    expected = records(topic)
    assert produce(broker, topic, expected, codec) == [(0, i) for i in range(len(expected))]
    assert_same(expected, as_tuples(consume(broker, topic, [0], len(expected))), codec)
    broker.restart()
    assert_same(expected, as_tuples(consume(broker, topic, [0], len(expected))), f"{codec} after restart")


def test_hundred_partitions_and_a_record_near_the_limit(broker):
    topic = unique("kp-100")
    create(broker, topic, partitions=100)
    for p in range(100):
        assert produce(broker, topic, [(b"k", f"p{p}".encode(), [])], partition=p) == [(p, 0)]
    got = consume(broker, topic, range(100), 100)
    assert sorted((m.partition, m.value) for m in got) == sorted((p, f"p{p}".encode()) for p in range(100))
    big_topic = unique("kp-big")
    create(broker, big_topic)
    big = b"b" * 1_000_000
    assert produce(broker, big_topic, [(b"k", big, [])], max_request_size=2_000_000) == [(0, 0)]
    assert [m.value for m in consume(broker, big_topic, [0], 1)] == [big]
