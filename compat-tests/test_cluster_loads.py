"""Placement by measured load, and auto-scaling, on a 3-broker cluster (real etcd, s3s-fs and tributary
processes): partitions a producer makes hot on one broker put it over its bound as
soon as their rates are measured, and the controller spreads them; every broker's
load then stays within its bound, and every acknowledged record is read back. A
stream produced at 3x its scaling target through every broker grows as on a single
broker: the controller sums the rates the brokers publish."""

import time

import pytest
from confluent_kafka import Producer

from clusterkit import SEALING, admin_of, leaders, running_cluster
from conftest import wait_until
from test_cluster_failover import PARTITIONS, make_topic, read_all

UNIT = 16384
HOT = 3


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster", extra_top=SEALING + "scaling_sample_ms = 200\n",
                               extra_cluster={"load_interval_secs": 1, "load_unit_bytes": UNIT})


def broker_loads(cluster):
    """{broker: (load, bound)} as the controller last placed them (empty elsewhere)."""
    for node in cluster.nodes:
        loads, bounds = {}, {}
        for line in node.metrics().splitlines():
            for name, into in (("tributary_cluster_broker_load{", loads), ("tributary_cluster_broker_load_bound{", bounds)):
                if line.startswith(name):
                    broker = int(line.split('broker="')[1].split('"')[0])
                    into[broker] = int(float(line.rsplit(" ", 1)[1]))
        if loads:
            return {b: (loads[b], bounds[b]) for b in loads}
    return {}


def test_partitions_made_hot_on_one_broker_are_spread_and_no_broker_exceeds_its_bound(cluster):
    topic = f"hot-{int(time.time() * 1000)}"
    make_topic(cluster, topic)
    placed = leaders(cluster.nodes[0], topic)
    busiest = max({b for b in placed.values()}, key=lambda b: list(placed.values()).count(b))
    hot = sorted(p for p, b in placed.items() if b == busiest)[:HOT]
    idle = wait_until(lambda: broker_loads(cluster), timeout=15, what="the controller's load figures")
    print(f"{topic}: leaders {placed}; hot partitions {hot} on broker {busiest}; loads (load, bound) {idle}")
    assert all(load <= bound for load, bound in idle.values()), idle

    # About 12 units a second on each hot partition (1 KiB records), until they no
    # longer share one broker, for at most 60 s.
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "topic.metadata.refresh.interval.ms": 1000})
    acked = {}

    def done(err, msg):
        assert err is None, err
        acked[msg.value()] = (msg.partition(), msg.offset())

    payload = b"x" * 1000
    started = time.monotonic()
    spread_at = None
    n = 0
    while time.monotonic() - started < 60:
        tick = time.monotonic()
        for partition in hot:
            for _ in range(20):
                p.produce(topic, value=f"{n}-".encode() + payload, partition=partition, on_delivery=done)
                n += 1
        p.poll(0)
        now = leaders(cluster.nodes[0], topic)
        if spread_at is None and len(now) == PARTITIONS and len({now[q] for q in hot}) > 1:
            spread_at = time.monotonic() - started
        if spread_at is not None and time.monotonic() - started > spread_at + 3:
            break
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    assert p.flush(60) == 0
    assert spread_at is not None, f"the hot partitions stayed together on broker {busiest}"
    after = leaders(cluster.nodes[0], topic)
    moved = sum(1 for q in placed if placed[q] != after.get(q))
    loads = broker_loads(cluster)
    print(f"hot partitions spread {spread_at:.1f}s after the load began: now on {[after[q] for q in hot]}; "
          f"{moved} of {PARTITIONS} partitions of the topic moved; loads (load, bound) {loads}")
    assert all(load <= bound for load, bound in loads.values()), loads
    assert sum(load for load, _ in loads.values()) > sum(load for load, _ in idle.values()), "hot partitions weigh more"

    seen = read_all(cluster.bootstrap, topic)
    missing = [v for v in acked if v not in seen]
    assert not missing, f"{len(missing)} acknowledged records missing"
    # An implicitly acknowledged record (no offset told) must be in its partition.
    moved_records = [v for v, (part, off) in acked.items()
                     if seen[v] != (part, off) and not ((off is None or off < 0) and seen[v][0] == part)]
    assert not moved_records, f"{len(moved_records)} records not where they were acknowledged"
    print(f"{len(acked)} acknowledged, all read back at their offsets")


def test_a_stream_over_its_scaling_target_grows_on_a_cluster(cluster):
    from confluent_kafka.admin import NewTopic
    topic = f"scaled-{int(time.time() * 1000)}"
    target = 20_000
    config = {"tributary.scaling.policy": "bytes", "tributary.scaling.target": str(target),
              "tributary.scaling.factor": "2", "tributary.scaling.max.partitions": "4",
              "tributary.scaling.window.ms": "2000", "tributary.scaling.cooldown.ms": "2000"}
    admin_of(cluster.nodes[0]).create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(timeout=15)
    wait_until(lambda: len(leaders(cluster.nodes[0], topic)) == 1, timeout=30, what="the topic placed")
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "topic.metadata.refresh.interval.ms": 500})
    acked = {}

    def done(err, msg):
        assert err is None, err
        acked[msg.value()] = (msg.partition(), msg.offset())

    counts = [(0.0, 1)]
    started, n = time.monotonic(), 0
    # 3x the target, spread by the client over the partitions it knows, for at most 30 s.
    while time.monotonic() - started < 30:
        tick = time.monotonic()
        for _ in range(3 * target // 1000 // 10):
            p.produce(topic, value=f"{n:08d}".encode() + b"x" * 992, on_delivery=done)
            n += 1
        p.poll(0)
        now = len(leaders(cluster.nodes[1], topic))
        if now and now != counts[-1][1]:
            counts.append((round(tick - started, 1), now))
        if counts[-1][1] == 3 and tick - started > counts[-1][0] + 5:
            break
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    assert p.flush(60) == 0
    print(f"{topic}: partition counts over time (s, count) {counts}")
    steps = [c for _, c in counts]
    assert steps[-1] == 3, f"at 3x its target the stream settles at 3 partitions: {counts}"
    assert all(b <= 2 * a for a, b in zip(steps, steps[1:])), f"at most x2 per step: {counts}"
    for node in cluster.nodes:
        wait_until(lambda node=node: len(leaders(node, topic)) == 3, timeout=10,
                   what=f"broker {node.id} to see 3 partitions")
    seen = read_all(cluster.bootstrap, topic, partitions=3)
    missing = [v for v in acked if v not in seen]
    assert not missing, f"{len(missing)} acknowledged records missing"
    print(f"{len(acked)} acknowledged, all read back from the 3 partitions")
