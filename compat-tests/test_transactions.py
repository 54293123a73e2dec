"""Transactions with confluent-kafka (librdkafka): committed records visible to
read_committed consumers and aborted ones not (but to read_uncommitted ones); an open
transaction holds back read_committed consumers at its first offset; a zombie is
fenced by a new instance of its transactional.id; offsets sent to a transaction
become the group's only when it commits; a transaction left open by a crashed
broker is aborted after its timeout, and transaction state survives restarts."""

import re
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import groups
from conftest import unique, wait_until


@pytest.fixture
def tbroker(make_broker):
    b = make_broker(env=groups.BROKER_ENV)
    b.start()
    return b


def txn_producer(broker, txn_id, **extra):
    conf = {"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def read_all(target, topic, partitions, isolation, timeout=20, tolerate=False):
    """Every record up to the end a consumer can see, as (partition, offset, value),
    from a broker or a bootstrap list. With `tolerate`, errors other than the end of
    a partition are waited out (a cluster moving partitions) rather than failing
    the read."""
    c = Consumer({
        "bootstrap.servers": getattr(target, "bootstrap", target),
        "group.id": unique("reader"),
        "isolation.level": isolation,
        "enable.partition.eof": True,
        "enable.auto.commit": False,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, eof = [], set()
    deadline = time.monotonic() + timeout
    while len(eof) < partitions and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
            else:
                assert tolerate, m.error()
            continue
        eof.discard(m.partition())
        got.append((m.partition(), m.offset(), m.value()))
    c.close()
    assert len(eof) == partitions, f"did not reach the end of {topic} ({isolation}): {sorted(eof)}"
    return got


def values(records):
    return sorted(v for _, _, v in records)


def test_committed_visible_aborted_hidden(tbroker):
    topic = unique("txn")
    groups.create_topic(tbroker, topic, partitions=2)
    p = txn_producer(tbroker, unique("tx"))
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=f"c{i}".encode(), partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=f"a{i}".encode(), partition=i % 2)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, value=b"last", partition=0)
    p.commit_transaction(30)

    committed = [f"c{i}".encode() for i in range(6)] + [b"last"]
    aborted = [f"a{i}".encode() for i in range(6)]
    assert values(read_all(tbroker, topic, 2, "read_committed")) == sorted(committed)
    assert values(read_all(tbroker, topic, 2, "read_uncommitted")) == sorted(committed + aborted)

    # The same after a restart: markers, aborted index and state come back.
    tbroker.restart()
    assert values(read_all(tbroker, topic, 2, "read_committed")) == sorted(committed)
    p2 = txn_producer(tbroker, "unused-" + topic)
    p2.begin_transaction()
    p2.produce(topic, value=b"after-restart", partition=1)
    p2.commit_transaction(30)
    assert b"after-restart" in values(read_all(tbroker, topic, 2, "read_committed"))


def test_an_open_transaction_holds_read_committed_consumers_back(tbroker):
    topic = unique("lso")
    groups.create_topic(tbroker, topic, partitions=1)
    p = txn_producer(tbroker, unique("tx"))
    p.begin_transaction()
    p.produce(topic, value=b"in-txn", partition=0)
    p.flush(30)
    plain = Producer({"bootstrap.servers": tbroker.bootstrap})
    plain.produce(topic, value=b"plain-after", partition=0)
    plain.flush(30)
    assert values(read_all(tbroker, topic, 1, "read_committed")) == []
    assert values(read_all(tbroker, topic, 1, "read_uncommitted")) == [b"in-txn", b"plain-after"]
    p.commit_transaction(30)
    assert values(read_all(tbroker, topic, 1, "read_committed")) == [b"in-txn", b"plain-after"]


def test_a_zombie_is_fenced_by_a_new_instance(tbroker):
    topic, txn_id = unique("zombie"), unique("tx")
    groups.create_topic(tbroker, topic, partitions=1)
    zombie = txn_producer(tbroker, txn_id)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie", partition=0)
    zombie.flush(30)
    # A new instance takes over the transactional.id: the zombie's open
    # transaction is aborted and the zombie fenced.
    fresh = txn_producer(tbroker, txn_id)
    with pytest.raises(KafkaException) as e:
        zombie.produce(topic, value=b"zombie-2", partition=0)
        zombie.commit_transaction(30)
    err = e.value.args[0]
    assert err.fatal() or "fenced" in str(err).lower(), err
    fresh.begin_transaction()
    fresh.produce(topic, value=b"fresh", partition=0)
    fresh.commit_transaction(30)
    assert values(read_all(tbroker, topic, 1, "read_committed")) == [b"fresh"]


def committed_offset(broker, group, topic, partition):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    from confluent_kafka import ConsumerGroupTopicPartitions
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, partition)])])
    return res[group].result().topic_partitions[0].offset


def test_offsets_sent_to_a_transaction_count_only_when_it_commits(tbroker):
    source, sink, group = unique("src"), unique("sink"), unique("g")
    groups.create_topic(tbroker, source, partitions=1)
    groups.create_topic(tbroker, sink, partitions=1)
    groups.produce(tbroker, source, 0, 10, partitions=1)
    consumer = Consumer({"bootstrap.servers": tbroker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.subscribe([source])
    batch = []
    deadline = time.monotonic() + 30
    while len(batch) < 10 and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is not None and not m.error():
            batch.append(m)
    assert len(batch) == 10
    p = txn_producer(tbroker, unique("tx"))

    def transform(offsets_to, commit):
        p.begin_transaction()
        for m in batch[:offsets_to]:
            p.produce(sink, value=m.value().upper(), partition=0)
        p.send_offsets_to_transaction([TopicPartition(source, 0, offsets_to)], consumer.consumer_group_metadata(), 30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    transform(4, commit=False)
    assert committed_offset(tbroker, group, source, 0) < 0, "an aborted transaction's offsets are not the group's"
    transform(6, commit=True)
    assert committed_offset(tbroker, group, source, 0) == 6
    assert values(read_all(tbroker, sink, 1, "read_committed")) == sorted(m.value().upper() for m in batch[:6])
    consumer.close()
    tbroker.restart()
    assert committed_offset(tbroker, group, source, 0) == 6


def test_a_transaction_left_open_across_a_crash_is_aborted_after_its_timeout(tbroker):
    topic, txn_id = unique("timeout"), unique("tx")
    groups.create_topic(tbroker, topic, partitions=1)
    p = txn_producer(tbroker, txn_id, **{"transaction.timeout.ms": 3000})
    p.begin_transaction()
    p.produce(topic, value=b"never-committed", partition=0)
    p.flush(30)
    tbroker.kill()
    del p
    tbroker.start()
    plain = Producer({"bootstrap.servers": tbroker.bootstrap})
    plain.produce(topic, value=b"plain", partition=0)
    plain.flush(30)
    # Held back by the open transaction until the coordinator aborts it.
    wait_until(lambda: values(read_all(tbroker, topic, 1, "read_committed", timeout=5)) == [b"plain"], timeout=30,
               interval=0.5, what="the timed-out transaction to be aborted")
    assert values(read_all(tbroker, topic, 1, "read_uncommitted")) == [b"never-committed", b"plain"]
    # The transactional.id works again, with a newer epoch.
    again = txn_producer(tbroker, txn_id)
    again.begin_transaction()
    again.produce(topic, value=b"again", partition=0)
    again.commit_transaction(30)
    assert values(read_all(tbroker, topic, 1, "read_committed")) == [b"again", b"plain"]


def test_consume_transform_produce_killed_at_random_points_is_exactly_once(tbroker):
    """The worker is SIGKILLed at random moments and restarted, many times (once
    with the broker SIGKILLed too); the output read with read_committed holds every
    input's result exactly once, in order per partition."""
    import random
    import subprocess
    import sys
    import pathlib

    source, sink, group, txn_id = unique("in"), unique("out"), unique("g"), unique("ctp")
    groups.create_topic(tbroker, source, partitions=2)
    groups.create_topic(tbroker, sink, partitions=2)
    total = 300
    groups.produce(tbroker, source, 0, total, partitions=2)
    worker = [sys.executable, str(pathlib.Path(__file__).parent / "ctp_worker.py"), tbroker.bootstrap, source, sink,
              group, txn_id, str(total)]
    rng = random.Random(20261125)
    for round_ in range(8):
        proc = subprocess.Popen(worker, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(rng.uniform(1.0, 3.0))
        finally:
            proc.kill()
            proc.wait()
        if round_ == 4:
            tbroker.kill()
            tbroker.start()
    proc = subprocess.run(worker, capture_output=True, timeout=150)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode(errors="replace")[-3000:]

    out = read_all(tbroker, sink, 2, "read_committed")
    for partition in range(2):
        got = [v for p, _, v in sorted(out) if p == partition]
        want = [f"V{i}".encode() for i in range(total) if i % 2 == partition]
        assert got == want, f"partition {partition}: {len(got)} records, first difference at " \
                            f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}"


def check_commit_then_abort(broker, topic, source, group):
    """What every client's two transactions must leave behind."""
    assert values(read_all(broker, topic, 1, "read_committed")) == [f"c{i}".encode() for i in range(5)]
    assert len(read_all(broker, topic, 1, "read_uncommitted")) == 10
    assert committed_offset(broker, group, source, 0) == 5


def setup_topics(broker):
    topic, source, group = unique("tx-out"), unique("tx-src"), unique("g")
    groups.create_topic(broker, topic, partitions=1)
    groups.create_topic(broker, source, partitions=1)
    groups.produce(broker, source, 0, 10, partitions=1)
    return topic, source, group


def test_kafka_python_transactions(tbroker):
    from kafka import KafkaProducer
    from kafka.structs import OffsetAndMetadata, TopicPartition as KTP

    topic, source, group = setup_topics(tbroker)
    p = KafkaProducer(bootstrap_servers=tbroker.bootstrap, transactional_id=unique("kp-tx"))
    p.init_transactions()
    for prefix, offset, commit in [("c", 5, True), ("a", 9, False)]:
        p.begin_transaction()
        for i in range(5):
            p.send(topic, value=f"{prefix}{i}".encode(), partition=0)
        p.send_offsets_to_transaction({KTP(source, 0): OffsetAndMetadata(offset, "", -1)}, group)
        p.flush()  # an abort drops records not yet sent; these must reach the broker
        if commit:
            p.commit_transaction()
        else:
            p.abort_transaction()
    p.close()
    check_commit_then_abort(tbroker, topic, source, group)


def test_aiokafka_transactions(tbroker):
    import asyncio
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP

    topic, source, group = setup_topics(tbroker)

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=tbroker.bootstrap, transactional_id=unique("aio-tx"))
        await p.start()
        try:
            async with p.transaction():
                for i in range(5):
                    await p.send(topic, value=f"c{i}".encode(), partition=0)
                await p.send_offsets_to_transaction({ATP(source, 0): 5}, group)
            await p.begin_transaction()
            for i in range(5):
                await (await p.send(topic, value=f"a{i}".encode(), partition=0))
            await p.send_offsets_to_transaction({ATP(source, 0): 9}, group)
            await p.abort_transaction()
        finally:
            await p.stop()

    asyncio.run(run())
    check_commit_then_abort(tbroker, topic, source, group)


def test_transaction_max_timeout_is_a_setting(make_broker):
    """transaction.max.timeout.ms ([transactions] max_timeout_ms): a producer asking
    for a longer transaction.timeout.ms (the Flink connector's default is 1 h) gets
    INVALID_TRANSACTION_TIMEOUT at the default of 15 min, and is served once the
    broker allows it."""
    def init(broker):
        p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique("long"),
                      "transaction.timeout.ms": 3_600_000})
        try:
            p.init_transactions(15)
            p.begin_transaction()
            p.produce(unique("t"), value=b"v")
            p.commit_transaction(15)
            return None
        except KafkaException as e:
            return e.args[0]

    default = make_broker("default", env={})
    default.start()
    err = init(default)
    assert err is not None and err.name() == "INVALID_TRANSACTION_TIMEOUT", err
    default.stop()
    raised = make_broker("raised", env={"TRIBUTARY_TRANSACTIONS_MAX_TIMEOUT_MS": "3600000"})
    raised.start()
    assert init(raised) is None


def test_idle_transactional_and_producer_ids_expire_as_on_kafka(make_broker, kafka_classpath):
    """transactional.id.expiration.ms and producer.id.expiration.ms (here 8 s, checked
    every 200 ms): kafka-transactions stops listing an idle transactional id and
    describe-producers stops showing an idle producer, durably across a restart,
    while a producer that writes every 100 ms stays; an expired id starts afresh."""
    import threading

    b = make_broker(env={**groups.BROKER_ENV,
                         "TRIBUTARY_TRANSACTIONS_ID_EXPIRATION_MS": "8000",
                         "TRIBUTARY_TRANSACTIONS_REMOVE_EXPIRED_INTERVAL_MS": "200",
                         "TRIBUTARY_TRANSACTIONS_PRODUCER_ID_EXPIRATION_MS": "8000",
                         "TRIBUTARY_TRANSACTIONS_PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS": "200"})
    b.start()

    def tool(*args):
        r = subprocess.run(["java", "-cp", kafka_classpath, "org.apache.kafka.tools.TransactionsCommand",
                            "--bootstrap-server", b.bootstrap, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def producer_ids():
        out = tool("describe-producers", "--topic", topic, "--partition", "0")
        return {int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+-?\d+\s", out, re.M)}

    topic, tx = unique("exp"), unique("txexp")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = txn_producer(b, tx)
    p.begin_transaction()
    p.produce(topic, value=b"committed")
    p.commit_transaction(30)
    assert tx in tool("list")
    idle = producer_ids()
    assert len(idle) == 1, idle
    # A producer that keeps writing (every 100 ms, whatever the tools take) stays
    # known while the idle ones go.
    live = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 0})
    stop, errors = threading.Event(), []

    def keep_writing():
        while not stop.is_set():
            live.produce(topic, value=b"live", on_delivery=lambda err, msg: err and errors.append(err))
            live.poll(0.1)
        live.flush(30)
    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        wait_until(lambda: tx not in tool("list") and not idle & producer_ids(), timeout=90,
                   what="the idle transactional id and producer to expire")
        assert len(producer_ids()) == 1, "the live producer stays"
    finally:
        stop.set()
        writer.join(60)
    assert not errors, errors
    b.restart()
    assert tx not in tool("list"), "the expired transactional id came back after a restart"
    # The expired id starts afresh and works.
    p = txn_producer(b, tx)
    p.begin_transaction()
    p.produce(topic, value=b"again")
    p.commit_transaction(30)
    assert [v for _, _, v in read_all(b, topic, 1, "read_committed")].count(b"again") == 1
