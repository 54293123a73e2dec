"""aiokafka: every codec with keys, headers and nulls byte for byte, 100
partitions, a record near max.message.bytes, restart."""

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from conftest import unique
from scenario import CODECS, assert_same, records


async def create(broker, name, partitions=1):
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(broker, topic, recs, codec="none", partition=None, **extra):
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                         compression_type=None if codec == "none" else codec, linger_ms=5, **extra)
    await p.start()
    try:
        futures = [await p.send(topic, key=k, value=v, headers=h, partition=partition) for k, v, h in recs]
        meta = [await f for f in futures]
    finally:
        await p.stop()
    return [(m.partition, m.offset) for m in meta]


async def consume(broker, topic, partitions, count, timeout=30):
    c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100,
                         max_partition_fetch_bytes=2 * 1024 * 1024)
    await c.start()
    got = []
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for batch in (await c.getmany(timeout_ms=500)).values():
                got.extend(batch)
    finally:
        await c.stop()
    return sorted(got, key=lambda m: (m.partition, m.offset))


def as_tuples(msgs):
    return [(m.key, m.value, list(m.headers)) for m in msgs]


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_and_survives_restart(broker, codec):
    topic = unique(f"aio-{codec}")
    expected = records(topic)

    async def before():
        await create(broker, topic)
        assert await produce(broker, topic, expected, codec) == [(0, i) for i in range(len(expected))]
        assert_same(expected, as_tuples(await consume(broker, topic, [0], len(expected))), codec)

    asyncio.run(before())
    broker.restart()
    got = asyncio.run(consume(broker, topic, [0], len(expected)))
    assert_same(expected, as_tuples(got), f"{codec} after restart")


def test_hundred_partitions_and_a_record_near_the_limit(broker):
    async def run():
        topic = unique("aio-100")
        await create(broker, topic, partitions=100)
        for p in range(100):
            assert await produce(broker, topic, [(b"k", f"p{p}".encode(), [])], partition=p) == [(p, 0)]
        got = await consume(broker, topic, range(100), 100)
        assert sorted((m.partition, m.value) for m in got) == sorted((p, f"p{p}".encode()) for p in range(100))
        big_topic = unique("aio-big")
        await create(broker, big_topic)
        big = b"b" * 1_000_000
        assert await produce(broker, big_topic, [(b"k", big, [])], max_request_size=2_000_000) == [(0, 0)]
        assert [m.value for m in await consume(broker, big_topic, [0], 1)] == [big]

    asyncio.run(run())
