"""A rolling restart of every broker of a 3-broker cluster (real etcd, s3s-fs and
tributary processes) under acks=all idempotent load, and the controller's sweep of the
object store: every acknowledged record is read back exactly once, each broker's
partitions are handed on and back with short producer stalls; afterwards the
journal objects of the leases the restarts ended are deleted whole, what stays is a
few objects per live stream, a broker SIGKILLed after the sweep still has its
partitions rebuilt with nothing missing, and a deleted topic's segments and
manifests leave the store once their grace time is over."""

import time

import pytest
from confluent_kafka import TopicCollection
from confluent_kafka.admin import NewTopic

from clusterkit import admin_of, histories, leaders, running_cluster
from cluster import S3_BUCKET  # scripts/cluster.py, on the path through clusterkit
from conftest import wait_until
from test_cluster_failover import PARTITIONS, Load, check, make_topic, read_all, served, takeover_time

GRACE = 8


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster",
                               extra_cluster={"sweep_interval_secs": 1, "sweep_grace_secs": GRACE})


def store_files(cluster, prefix):
    """{path below the bucket: size} of every object under `prefix`."""
    root = cluster.dir / "s3" / S3_BUCKET
    base = root / prefix
    if not base.exists():
        return {}
    out = {}
    for p in base.rglob("*"):
        if p.name.startswith("."):
            continue
        try:
            if p.is_file():
                out[str(p.relative_to(root))] = p.stat().st_size
        except FileNotFoundError:  # swept between the listing and the stat: gone
            pass
    return out


def streams(cluster):
    """{(broker, lease): objects} of the journal streams in the store."""
    out = {}
    for path in store_files(cluster, "wal"):
        _, broker, lease, name = path.split("/")
        if name != "floor":
            out[(int(broker), lease)] = out.get((int(broker), lease), 0) + 1
    return out


def metric(node, name):
    total = 0.0
    for line in node.metrics().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def topic_id_hex(node, topic):
    desc = admin_of(node).describe_topics(TopicCollection([topic]))[topic].result(timeout=10)
    u = desc.topic_id
    return f"{u.get_most_significant_bits() & (2**64 - 1):016x}{u.get_least_significant_bits() & (2**64 - 1):016x}"


def test_a_rolling_restart_loses_nothing_and_the_sweep_keeps_only_what_partitions_need(cluster):
    # Every broker must lead some of the topic's partitions (so that each ships a
    # journal); placement balances the whole cluster, not each topic.
    everyone = {n.id for n in cluster.nodes}
    for attempt in range(8):
        topic = f"rolling-{int(time.time() * 1000)}-{attempt}"
        if set(make_topic(cluster, topic).values()) == everyone:
            break
    load = Load(cluster.bootstrap, topic, per_producer=6000)
    load.start()
    wait_until(lambda: load.progress() >= 1500, timeout=60, what="1500 acknowledged records before the restarts")
    before = streams(cluster)
    assert {b for b, _ in before} == {n.id for n in cluster.nodes}, f"every broker ships its journal: {before}"

    # Every broker in turn: SIGTERM (it hands its partitions on), start again, wait
    # until every partition is served before the next one goes.
    for node in cluster.nodes:
        stopped = time.monotonic()
        assert node.stop() == 0, "a clean shutdown"
        took = takeover_time(cluster, node, topic, stopped)
        stalls = load.stalls(stopped, stopped + took)
        print(f"broker {node.id} stopped: its partitions served elsewhere after {took:.2f}s, "
              f"longest producer stall {max(stalls.values(), default=0):.3f}s")
        node.start()
        # Settled: the restarted broker leads its share again and all are served.
        wait_until(lambda: node.id in set(leaders(cluster.nodes[0], topic).values())
                   and served(cluster.bootstrap, topic), timeout=60, interval=0.2,
                   what=f"every partition served after broker {node.id} restarted")
    load.join()
    print(f"{len(load.acked)} acknowledged across a rolling restart of {len(cluster.nodes)} brokers")
    check(load, read_all(cluster.bootstrap, topic))

    # Every lease the restarts ended: its stream goes whole once the partitions it
    # held are sealed past it and their manifests published.
    ended = set(before)

    def swept():
        now = streams(cluster)
        return not (ended & set(now)) and sum(now.values()) <= 20 * len(cluster.nodes) and (now,)

    try:
        (after,) = wait_until(swept, timeout=60, interval=0.5, what="the ended leases' journal objects swept")
    except AssertionError:
        print(f"streams before {before}\nstreams now {streams(cluster)}")
        for key, h in sorted(histories(cluster).items()):
            print(f"{key}: {h}")
        raise
    deleted = sum(metric(n, 'tributary_swept_objects_total{kind="journal"}') for n in cluster.nodes)
    print(f"journal streams before the restarts {before}; after the sweep {after}; "
          f"journal objects deleted {deleted:.0f}")
    assert deleted >= sum(before.values())

    # What was kept is enough: a broker killed now has its partitions rebuilt from
    # the manifests and the journal objects left, every record still there once.
    victim = next(n for n in cluster.nodes if n.id in set(leaders(cluster.nodes[0], topic).values()))
    killed = time.monotonic()
    victim.kill()
    took = takeover_time(cluster, victim, topic, killed)
    print(f"broker {victim.id} SIGKILLed after the sweep: partitions served again after {took:.2f}s")
    live = ",".join(n.address for n in cluster.nodes if n is not victim)
    check(load, read_all(live, topic))
    victim.start()

    # A deleted topic's manifests and segments go once their grace time is over.
    survivor = next(n for n in cluster.nodes if n is not victim)
    tid = topic_id_hex(survivor, topic)
    manifests = store_files(cluster, f"manifests/{tid}")
    assert len(manifests) >= PARTITIONS // 2, f"manifests of {topic}: {manifests}"
    segment_bytes = sum(store_files(cluster, "packs").values()) + sum(store_files(cluster, "default").values())
    admin_of(survivor).delete_topics([topic])[topic].result(timeout=15)
    deleted_at = time.monotonic()

    def gone():
        left = store_files(cluster, f"manifests/{tid}")
        now = sum(store_files(cluster, "packs").values()) + sum(store_files(cluster, "default").values())
        return not left and now < segment_bytes / 4 and (now,)

    (left_bytes,) = wait_until(gone, timeout=GRACE + 30, interval=0.5, what=f"{topic}'s objects swept")
    print(f"{topic} deleted: its {len(manifests)} manifests and {segment_bytes - left_bytes} of "
          f"{segment_bytes} segment bytes swept {time.monotonic() - deleted_at:.1f}s later (grace {GRACE}s)")
    assert time.monotonic() - deleted_at >= GRACE - 1, "nothing went before its grace time"
