"""Cluster mode with real parts: etcd, s3s-fs and three tributary processes on free
loopback ports (scripts/cluster.py), each stopped by its own PID.

Membership and the controller: every broker lists every live broker and the same
controller; a SIGKILLed broker leaves the list once its lease expires and the
controller is elected again; a restarted broker rejoins; a broker cut off from etcd
stops taking writes and comes back with etcd."""

import sys
import time

import pytest
from confluent_kafka.admin import AdminClient

from conftest import ROOT, wait_until

sys.path.insert(0, str(ROOT / "scripts"))
from cluster import LocalCluster  # noqa: E402

LEASE_TTL = 2


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(tmp_path / "cluster", lease_ttl=LEASE_TTL)
    try:
        c.up(3)
        yield c
    finally:
        logs = {n.id: n.log_tail(15) for n in c.nodes}
        c.down()
        for node_id, tail in logs.items():
            print(f"--- broker {node_id}\n{tail}")


def metadata(node):
    admin = AdminClient({"bootstrap.servers": node.address})
    md = admin.list_topics(timeout=10)
    return {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}, md.controller_id, md.cluster_id


def test_every_broker_lists_every_live_broker_and_one_controller(cluster):
    expected = {n.id: n.address for n in cluster.nodes}
    answers = [metadata(n) for n in cluster.nodes]
    for brokers, controller, cluster_id in answers:
        assert brokers == expected
        assert controller in expected
    assert len({a[1] for a in answers}) == 1, f"brokers disagree on the controller: {answers}"
    assert len({a[2] for a in answers}) == 1, "brokers disagree on the cluster id"

    # DescribeCluster (the Java Admin's describeCluster, here through librdkafka).
    admin = AdminClient({"bootstrap.servers": cluster.nodes[1].address})
    described = admin.describe_cluster(request_timeout=10).result()
    assert {n.id: f"{n.host}:{n.port}" for n in described.nodes} == expected
    assert described.controller.id == answers[0][1]
    assert described.cluster_id == answers[0][2]


def test_a_killed_controller_is_replaced_and_a_restarted_broker_rejoins(cluster):
    _, controller, _ = metadata(cluster.nodes[0])
    victim = cluster.nodes[controller]
    survivor = next(n for n in cluster.nodes if n is not victim)
    victim.kill()
    killed = time.monotonic()

    def replaced():
        brokers, now, _ = metadata(survivor)
        return victim.id not in brokers and now not in (-1, victim.id) and now

    new_controller = wait_until(replaced, timeout=6 * LEASE_TTL, what="a new controller without the killed broker")
    took = time.monotonic() - killed
    print(f"controller {victim.id} SIGKILLed; broker {new_controller} elected after {took:.2f}s (lease TTL {LEASE_TTL}s)")
    assert took < 3 * LEASE_TTL + 2

    victim.start()  # waits for ready: registered again under a new lease
    expected = {n.id: n.address for n in cluster.nodes}
    wait_until(lambda: all(metadata(n)[0] == expected for n in cluster.nodes), timeout=10,
               what="every broker to list the restarted one")
    assert metadata(victim)[1] == new_controller, "the controller stays where it is"


def test_a_second_process_with_a_taken_node_id_waits_rather_than_joins(cluster, tmp_path):
    from cluster import Node

    twin = Node(cluster, 1)
    twin.dir = tmp_path / "twin"
    twin.start(wait=False)
    try:
        wait_until(lambda: "registered by another broker process" in twin.log_tail(50), timeout=20,
                   what="the twin to report the taken id")
        assert not twin.ready()
        assert metadata(cluster.nodes[0])[0][1] == cluster.nodes[1].address
    finally:
        twin.kill()
