"""Crash safety: SIGKILL the broker in the middle of an acks=all produce stream,
restart it, and check every acknowledged record is at its acknowledged offset.
Also: a torn journal tail (a partial entry after the kill) is cut at restart."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import unique, wait_until
from test_confluent_kafka import consume, create

PARTITIONS = 4


def test_every_acknowledged_record_survives_sigkill(broker):
    topic = unique("crash")
    create(broker, topic, partitions=PARTITIONS)
    acked = {}
    failed = []

    def cb(err, msg):
        if err:
            failed.append(err)
        else:
            acked[(msg.partition(), msg.offset())] = msg.value()

    p = Producer({
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "linger.ms": 1,
        "message.timeout.ms": 5000,
        "reconnect.backoff.max.ms": 200,
    })
    sent = 0
    killed_at = None
    deadline = time.monotonic() + 20
    # Keeps producing (up to 30,000) and polling until 3,000 are acknowledged: all
    # 30,000 may be queued before the first acknowledgement arrives.
    while time.monotonic() < deadline:
        if sent < 30_000:
            p.produce(topic, value=f"v{sent}".encode(), partition=sent % PARTITIONS, on_delivery=cb)
            sent += 1
            p.poll(0)
        else:
            p.poll(0.01)
        if killed_at is None and len(acked) >= 3000:
            broker.kill()
            killed_at = len(acked)
            break
    assert killed_at is not None, f"only {len(acked)} acks before the deadline"
    # Whatever the producer still has in flight now fails or succeeds after restart;
    # either way, every ack it ever got must be honoured.
    broker.start()
    p.flush(15)
    assert len(acked) >= killed_at
    # Plain (non-idempotent) retries may have written some records twice, so read
    # every partition to its high watermark rather than counting acknowledgements.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    total = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS))
    c.close()
    assert total >= len(acked)
    got = consume(broker, topic, range(PARTITIONS), total, timeout=60)
    assert len(got) == total
    stored = {(m.partition(), m.offset()): m.value() for m in got}
    missing = [k for k in acked if stored.get(k) != acked[k]]
    assert missing == [], f"{len(missing)} acknowledged records lost or changed, e.g. {missing[:5]}"


def test_torn_journal_tail_is_cut_and_earlier_records_kept(broker):
    topic = unique("torn")
    create(broker, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce(topic, value=f"r{i}".encode())
    assert p.flush(30) == 0
    broker.kill()
    journal = sorted((broker.data_dir / "journal").glob("*.journal"))[-1]
    with open(journal, "ab") as f:
        f.write(b"\x00\x00\x01\x00garbage-partial-entry")  # a length promising more than is there
    broker.start()
    got = consume(broker, topic, [0], 100)
    assert [m.value() for m in got] == [f"r{i}".encode() for i in range(100)]
    # the broker keeps appending after the cut
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    offsets = []
    p.produce(topic, value=b"after", on_delivery=lambda e, m: offsets.append(m.offset()))
    assert p.flush(30) == 0
    wait_until(lambda: offsets == [100], what="append after the cut at offset 100")
    broker.restart()
    got = consume(broker, topic, [0], 101)
    assert got[-1].value() == b"after" and got[-1].offset() == 100
