"""Idempotent producers: connections cut mid-stream, and the broker killed
mid-stream, leave every partition holding exactly the produced sequence: no
duplicates, no gaps, in order. Producer state is rebuilt from the journal."""

import time

from confluent_kafka import Producer

from conftest import free_port, unique
from proxy import CuttingProxy
from test_confluent_kafka import consume, create

PARTITIONS = 4


def idempotent_producer(bootstrap):
    return Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": 2,
        "batch.num.messages": 200,
        "message.timeout.ms": 60000,
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 200,
    })


def check_exact(broker, topic, produced):
    """Every partition holds exactly the values produced to it, in order, offsets dense."""
    total = sum(len(v) for v in produced.values())
    got = consume(broker, topic, range(PARTITIONS), total, timeout=60)
    by_partition = {p: [] for p in range(PARTITIONS)}
    for m in got:
        by_partition[m.partition()].append((m.offset(), m.value()))
    for p in range(PARTITIONS):
        offsets = [o for o, _ in by_partition[p]]
        values = [v for _, v in by_partition[p]]
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets not dense"
        dupes = len(values) - len(set(values))
        assert dupes == 0, f"partition {p}: {dupes} duplicates"
        assert values == produced[p], f"partition {p}: {len(values)} values, expected {len(produced[p])} in order"


def test_cut_connections_leave_no_duplicates_and_no_gaps(make_broker):
    proxy_port = free_port()
    broker = make_broker(env={"TRIBUTARY_ADVERTISED_LISTENER": f"127.0.0.1:{proxy_port}"})
    broker.start()
    # the proxy holds the advertised port, so every client connection goes through it
    proxy = CuttingProxy(broker.port, listen_port=proxy_port)
    try:
        topic = unique("idem-cut")
        create(broker, topic, partitions=PARTITIONS)
        p = idempotent_producer(f"127.0.0.1:{proxy_port}")
        errors = []
        produced = {i: [] for i in range(PARTITIONS)}
        n = 0
        # 15 rounds: a burst of records reaches the broker and is written, but the
        # answers are lost; then every connection is reset and the producer retries.
        for _ in range(15):
            proxy.swallow_answers = True
            for _ in range(1000):
                part = n % PARTITIONS
                value = f"{part}-{n}".encode()
                p.produce(topic, value=value, partition=part, on_delivery=lambda e, m: e and errors.append(e))
                produced[part].append(value)
                n += 1
            p.poll(0)
            time.sleep(0.05)
            proxy.cut()
            p.poll(0.1)
        assert p.flush(60) == 0, "producer could not deliver everything"
        assert errors == []
        assert proxy.cuts == 15
        check_exact(broker, topic, produced)
    finally:
        proxy.close()
        broker.stop()


def test_broker_killed_mid_stream_keeps_the_exact_sequence(broker):
    topic = unique("idem-kill")
    create(broker, topic, partitions=PARTITIONS)
    p = idempotent_producer(broker.bootstrap)
    errors = []
    acked = [0]
    produced = {i: [] for i in range(PARTITIONS)}

    def cb(err, msg):
        if err:
            errors.append(err)
        else:
            acked[0] += 1

    n = 0

    def burst():
        nonlocal n
        for _ in range(400):
            part = n % PARTITIONS
            value = f"{part}-{n}".encode()
            p.produce(topic, value=value, partition=part, on_delivery=cb)
            produced[part].append(value)
            n += 1
        p.poll(0.01)

    deadline = time.monotonic() + 30
    while acked[0] < 3000 and time.monotonic() < deadline:
        burst()
    assert acked[0] >= 3000, f"only {acked[0]} acks in 30 s"
    burst()
    broker.kill()  # with the latest burst in flight
    broker.start()
    while n < 16_000:
        burst()
    assert p.flush(60) == 0
    assert errors == []
    check_exact(broker, topic, produced)
