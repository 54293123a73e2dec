"""Transactions in cluster mode with real parts (etcd, s3s-fs, three tributary
processes). A transactional id is coordinated by the broker that owns its
`__transaction_state` partition; its markers reach partitions led by the other
brokers through WriteTxnMarkers, and a transactional write to a partition led
elsewhere is verified with the coordinator (AddPartitionsToTxn verify_only).

- confluent-kafka: committed transactions over partitions spread across every broker
  are seen once by read_committed consumers, aborted ones never (but by
  read_uncommitted ones); offsets sent to a transaction become the group's only when
  it commits.
- The Java client: the same consume-transform-produce program as on a single node.
- SIGKILL of the coordinator with a transaction open: the broker that takes its
  `__transaction_state` partition over carries the transaction on, and its commit
  makes every record visible exactly once."""

import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from clusterkit import admin_of, leaders, running_cluster
from conftest import unique, wait_until
from rawkafka import Conn, Reader, s16
from test_java_client import java_build  # noqa: F401  (the compiled Java programs)
from test_transactions import read_all

PARTITIONS = 12


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster")




def make_topic(cluster, topic, partitions=PARTITIONS):
    admin_of(cluster.nodes[0]).create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=15)
    wait_until(lambda: len(leaders(cluster.nodes[0], topic)) == partitions, timeout=30,
               what=f"a leader for every partition of {topic}")
    return leaders(cluster.nodes[0], topic)


def txn_coordinator(node, txn_id):
    """FindCoordinator v1 for a transactional id: (error code, node id)."""
    conn = Conn(node.port, timeout=10)
    try:
        r = Reader(conn.request(10, 1, s16(txn_id) + struct.pack(">b", 1)))
        r.i32()  # throttle
        error = r.i16()
        r.string()  # message
        return error, r.i32()
    finally:
        conn.close()


def in_order_once(records):
    """Values by partition, checking each appears once."""
    values = [v for _, _, v in records]
    assert len(values) == len(set(values)), "a record was read twice"
    by_partition = {}
    for p, o, v in sorted(records):
        by_partition.setdefault(p, []).append(v)
    return by_partition


def txn_producer(bootstrap, txn_id):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5,
                  "request.timeout.ms": 5000, "socket.timeout.ms": 5000, "retry.backoff.ms": 50,
                  "topic.metadata.refresh.interval.ms": 1000})
    p.init_transactions(60)
    return p


def test_transactions_over_partitions_on_every_broker_commit_and_abort(cluster):
    source, group = unique("txsrc"), unique("txg")
    # Placement balances every partition of the cluster, not each topic: a topic of 12
    # can leave a broker without one of its partitions. Take the first that spans all.
    for _ in range(8):
        topic = unique("txspread")
        placed = make_topic(cluster, topic)
        if set(placed.values()) == {n.id for n in cluster.nodes}:
            break
    assert set(placed.values()) == {n.id for n in cluster.nodes}, f"partitions on every broker: {placed}"
    make_topic(cluster, source, partitions=3)

    txn_id = unique("tx")
    error, coordinator = txn_coordinator(cluster.nodes[0], txn_id)
    assert error == 0 and coordinator in {n.id for n in cluster.nodes}, (error, coordinator)
    for n in cluster.nodes[1:]:
        assert txn_coordinator(n, txn_id) == (0, coordinator), "every broker names the same coordinator"
    remote = [p for p, b in placed.items() if b != coordinator]
    print(f"coordinator {coordinator}; {len(remote)} of {PARTITIONS} partitions led by other brokers")

    p = txn_producer(cluster.bootstrap, txn_id)
    committed, aborted = [], []
    for t in range(12):
        p.begin_transaction()
        batch = [f"t{t}-r{i}".encode() for i in range(48)]
        for i, v in enumerate(batch):
            p.produce(topic, value=v, partition=i % PARTITIONS)
        if t % 3 == 2:
            p.flush(60)
            p.abort_transaction(60)
            aborted += batch
        else:
            p.commit_transaction(60)
            committed += batch

    seen = in_order_once(read_all(cluster.bootstrap, topic, PARTITIONS, "read_committed", timeout=60, tolerate=True))
    assert sorted(v for vs in seen.values() for v in vs) == sorted(committed)
    for part, vs in seen.items():
        expected = [v for i, v in enumerate(committed) if (i % 48) % PARTITIONS == part]
        assert vs == expected, f"partition {part}: committed records in the order written"
    everything = read_all(cluster.bootstrap, topic, PARTITIONS, "read_uncommitted", timeout=60, tolerate=True)
    assert sorted(v for _, _, v in everything) == sorted(committed + aborted)

    # Offsets in a transaction: a real group's metadata, a first step aborted, a
    # second committed; only the second's offsets are the group's.
    plain = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(30):
        plain.produce(source, value=f"s{i}".encode(), partition=i % 3)
    assert plain.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.subscribe([source])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 30 and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) == 30

    def step(upto, commit):
        p.begin_transaction()
        p.produce(topic, value=f"offsets-{upto}-{commit}".encode(), partition=0)
        p.send_offsets_to_transaction([TopicPartition(source, i, upto) for i in range(3)],
                                      consumer.consumer_group_metadata(), 60)
        (p.commit_transaction if commit else p.abort_transaction)(60)

    def group_offsets():
        from confluent_kafka import ConsumerGroupTopicPartitions
        res = admin_of(cluster.nodes[1]).list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(source, i) for i in range(3)])])
        return [tp.offset for tp in res[group].result().topic_partitions]

    step(4, commit=False)
    assert all(o < 0 for o in group_offsets()), "an aborted transaction's offsets are not the group's"
    step(7, commit=True)
    assert group_offsets() == [7, 7, 7]
    consumer.close()


def test_java_transactions_on_a_cluster(cluster, java_build):  # noqa: F811
    """The Java client's consume-transform-produce, abort and fencing program."""
    r = subprocess.run(["java", "-cp", java_build, "Txn", cluster.bootstrap, unique("t")], capture_output=True,
                       timeout=240)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out.strip().endswith("OK"), (out + r.stderr.decode(errors="replace"))[-4000:]


def test_an_open_transaction_survives_a_sigkill_of_its_coordinator(cluster):
    topic = unique("txkill")
    make_topic(cluster, topic)
    # A transactional id whose coordinator is not the controller (the controller's
    # death would also move the election; this test is about the transaction).
    md = admin_of(cluster.nodes[0]).list_topics(timeout=10)
    txn_id, coordinator = None, None
    for i in range(200):
        candidate = f"{topic}-tx{i}"
        error, node = txn_coordinator(cluster.nodes[0], candidate)
        if error == 0 and node != md.controller_id:
            txn_id, coordinator = candidate, node
            break
    assert txn_id is not None, "no transactional id coordinated off the controller"
    victim = next(n for n in cluster.nodes if n.id == coordinator)

    p = txn_producer(cluster.bootstrap, txn_id)
    p.begin_transaction()
    first = [f"before-{i}".encode() for i in range(120)]
    for i, v in enumerate(first):
        p.produce(topic, value=v, partition=i % PARTITIONS)
    assert p.flush(60) == 0

    victim.kill()
    killed = time.monotonic()
    second = [f"after-{i}".encode() for i in range(120)]
    for i, v in enumerate(second):
        p.produce(topic, value=v, partition=i % PARTITIONS)
    assert p.flush(90) == 0
    p.commit_transaction(90)
    took = time.monotonic() - killed
    print(f"transaction committed {took:.1f} s after its coordinator was killed")
    error, now = txn_coordinator(next(n for n in cluster.nodes if n is not victim), txn_id)
    assert error == 0 and now != coordinator, "another broker coordinates the transactional id"

    seen = in_order_once(read_all(cluster.bootstrap, topic, PARTITIONS, "read_committed", timeout=90, tolerate=True))
    assert sorted(v for vs in seen.values() for v in vs) == sorted(first + second), \
        "every record of the transaction, once"

    # The producer goes on with the new coordinator.
    p.begin_transaction()
    p.produce(topic, value=b"next", partition=0)
    p.commit_transaction(60)
    assert b"next" in [v for _, _, v in read_all(cluster.bootstrap, topic, PARTITIONS, "read_committed", timeout=90, tolerate=True)]
