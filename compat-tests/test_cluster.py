"""Cluster mode with real parts: etcd, s3s-fs and three tributary processes on free
loopback ports (scripts/cluster.py), each stopped by its own PID.

Membership and the controller: every broker lists every live broker and the same
controller; a SIGKILLed broker leaves the list once its lease expires and the
controller is elected again; a restarted broker rejoins; a broker cut off from etcd
stops taking writes and comes back with etcd."""

import re
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient

import rawkafka
from clusterkit import LEASE_TTL, admin_of, knows, leaders, running_cluster
from conftest import wait_until


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster", extra_top="[topics]\nauto_create = false\n", tail=15)




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
        # A tuple, so that broker 0 as the new controller counts as found.
        return victim.id not in brokers and now not in (-1, victim.id) and (now,)

    (new_controller,) = wait_until(replaced, timeout=30, what="a new controller without the killed broker")
    took = time.monotonic() - killed
    print(f"controller {victim.id} SIGKILLed; broker {new_controller} elected after {took:.2f}s (lease TTL {LEASE_TTL}s)")

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


def test_topic_changes_made_on_one_broker_are_seen_by_every_broker(cluster):
    from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic

    topic = f"catalog-{int(time.time() * 1000)}"
    a, b, c = cluster.nodes
    admin_of(a).create_topics([NewTopic(topic, 6, 1)])[topic].result(timeout=15)
    started = time.monotonic()
    for node in (b, c):
        wait_until(lambda: leaders(node, topic).keys() == set(range(6)), timeout=5,
                   what=f"broker {node.id} to see the new topic with leaders")
    print(f"a topic created on broker {a.id} was seen with leaders everywhere after {time.monotonic() - started:.2f}s")
    assert time.monotonic() - started < 5

    admin_of(b).create_partitions([NewPartitions(topic, 9)])[topic].result(timeout=15)
    wait_until(lambda: len(leaders(c, topic)) == 9 and len(leaders(a, topic)) == 9,
               timeout=5, what="every broker to see 9 partitions")

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "3600000"})
    admin_of(c).alter_configs([resource])[resource].result(timeout=15)

    def retention(node):
        r = ConfigResource(ConfigResource.Type.TOPIC, topic)
        return admin_of(node).describe_configs([r])[r].result(timeout=10)["retention.ms"].value

    for node in cluster.nodes:
        wait_until(lambda: retention(node) == "3600000", timeout=5, what=f"broker {node.id} to see the new config")

    admin_of(a).delete_topics([topic])[topic].result(timeout=15)
    for node in cluster.nodes:
        wait_until(lambda: not knows(node, topic), timeout=5, what=f"broker {node.id} to drop the topic")


def test_clients_produce_and_consume_across_partitions_spread_over_every_broker(cluster):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import NewTopic

    everyone = {n.id for n in cluster.nodes}

    def agreed(topic):
        seen = [leaders(n, topic) or {} for n in cluster.nodes]
        return len(seen[0]) == 12 and seen[0] == seen[1] == seen[2] and seen[0]

    # The controller places as brokers register: poll until every broker agrees on the
    # leaders. Placement balances every partition of the cluster, not each topic, so a
    # topic of 12 can leave a broker without one: take the first that spans all three.
    for attempt in range(8):
        topic = f"spread-{int(time.time() * 1000)}-{attempt}"
        admin_of(cluster.nodes[0]).create_topics([NewTopic(topic, 12, 1)])[topic].result(timeout=15)
        placed = wait_until(lambda: agreed(topic), timeout=30, what="the same leaders from every broker")
        if set(placed.values()) == everyone:
            break
    assert set(placed.values()) == everyone, f"leaders on every broker: {placed}"
    # Bounded loads: no broker above ceil(1.25 x 12 / 3) = 5 of this topic's partitions
    # (the bound holds over all partitions; per topic it is what one expects to see).
    counts = {n.id: list(placed.values()).count(n.id) for n in cluster.nodes}
    print(f"partitions per broker: {counts}")


    n = 6000
    acked = {}
    p = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True, "linger.ms": 2})

    def done(err, msg):
        assert err is None, err
        acked[msg.value()] = (msg.partition(), msg.offset())

    for i in range(n):
        p.produce(topic, key=f"k{i % 97}".encode(), value=f"v{i}".encode(), on_delivery=done)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert len(acked) == n

    for protocol in ("classic", "consumer"):
        conf = {"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{protocol}-{topic}",
                "auto.offset.reset": "earliest", "enable.auto.commit": False}
        if protocol == "consumer":
            conf["group.protocol"] = "consumer"
        c = Consumer(conf)
        c.subscribe([topic])
        seen = {}
        deadline = time.monotonic() + 60
        while len(seen) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            assert m.value() not in seen, f"{protocol}: {m.value()} twice"
            seen[m.value()] = (m.partition(), m.offset())
        c.commit(asynchronous=False)
        committed = c.committed([__import__("confluent_kafka").TopicPartition(topic, i) for i in range(12)], timeout=10)
        c.close()
        assert seen == acked, f"{protocol}: got {len(seen)} of {n}, every record at its acknowledged place"
        per_partition = {}
        for part, off in seen.values():
            per_partition.setdefault(part, []).append(off)
        assert all(offs == sorted(offs) == list(range(len(offs))) for offs in per_partition.values())
        assert sum(tp.offset for tp in committed) == n, f"{protocol}: committed offsets {committed}"


def test_client_quotas_altered_on_one_broker_apply_on_every_broker(cluster):
    """Client quotas live in etcd: set on one broker, every broker describes (and so
    enforces) them within a second; removed on another, gone everywhere."""
    a, b, c = cluster.nodes
    client = f"quota-{int(time.time() * 1000)}"
    entity = (("client-id", client),)
    conns = {n.id: rawkafka.Conn(n.port) for n in cluster.nodes}
    try:
        assert conns[a.id].alter_client_quotas(client, "producer_byte_rate", 4096.0) == (0, None)
        started = time.monotonic()
        for node in (b, c):
            wait_until(lambda: conns[node.id].describe_client_quotas().get(entity) == {"producer_byte_rate": 4096.0},
                       timeout=5, what=f"broker {node.id} to see the quota set on broker {a.id}")
        print(f"a quota set on broker {a.id} was seen everywhere after {time.monotonic() - started:.2f}s")
        assert time.monotonic() - started < 2
        # Operations on one entity from two brokers both land (each is guarded by the
        # entity's revision in etcd).
        assert conns[b.id].alter_client_quotas(client, "consumer_byte_rate", 8192.0) == (0, None)
        both = {"producer_byte_rate": 4096.0, "consumer_byte_rate": 8192.0}
        wait_until(lambda: all(x.describe_client_quotas().get(entity) == both for x in conns.values()), timeout=5,
                   what="every broker to see both quotas")
        error, message = conns[c.id].alter_client_quotas(client, "request_percentage", 50.0)
        assert error == 42 and "not enforced" in message, (error, message)  # INVALID_REQUEST
        assert conns[c.id].alter_client_quotas(client, "producer_byte_rate", None) == (0, None)
        assert conns[c.id].alter_client_quotas(client, "consumer_byte_rate", None) == (0, None)
        for node in cluster.nodes:
            wait_until(lambda: entity not in conns[node.id].describe_client_quotas(), timeout=5,
                       what=f"broker {node.id} to drop the removed quotas")
    finally:
        for conn in conns.values():
            conn.close()


def test_group_configs_set_through_one_broker_are_seen_through_every_broker(cluster, kafka_classpath):
    """Group configs live in etcd (groupconfigs/<group>): set with kafka-configs
    through one broker, described through every broker."""
    group = f"gcfg-{int(time.time() * 1000)}"

    def configs(node, *args):
        r = subprocess.run(["java", "-cp", kafka_classpath, "org.apache.kafka.tools.ConfigCommand",
                            "--bootstrap-server", node.address, "--entity-type", "groups", "--entity-name", group,
                            *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    a, b, c = cluster.nodes
    configs(a, "--alter", "--add-config", "consumer.session.timeout.ms=50000")
    for node in (b, c):
        wait_until(lambda node=node: "consumer.session.timeout.ms=50000" in configs(node, "--describe"), timeout=30,
                   what=f"broker {node.id} to describe the group config set through broker {a.id}")
    configs(c, "--alter", "--delete-config", "consumer.session.timeout.ms")
    for node in (a, b):
        wait_until(lambda node=node: "consumer.session.timeout.ms" not in configs(node, "--describe"), timeout=30,
                   what=f"broker {node.id} to drop the deleted group config")


def test_dynamic_broker_configs_and_client_metrics_set_through_one_broker_hold_on_every_broker(
        cluster, kafka_classpath):
    """Dynamic broker configs (brokerconfigs/) and client-metrics subscriptions
    (clientmetrics/) live in etcd: set with Kafka's tools through one broker, every
    broker applies and describes them; a broker's own setting applies on it only."""
    stamp = int(time.time() * 1000)
    subscription = f"cm-{stamp}"

    def run(node, tool, *args):
        r = subprocess.run(["java", "-cp", kafka_classpath, f"org.apache.kafka.tools.{tool}",
                            "--bootstrap-server", node.address, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def retention(node):
        """The broker's own effective log.retention.ms (the Admin asks that broker)."""
        described = run(node, "ConfigCommand", "--entity-type", "brokers", "--entity-name", str(node.id),
                        "--describe", "--all")
        return re.search(r"\blog\.retention\.ms=(\d+)", described).group(1)

    a, b, c = cluster.nodes
    run(a, "ConfigCommand", "--entity-type", "brokers", "--entity-default", "--alter", "--add-config",
        "log.retention.ms=7200000")
    run(b, "ConfigCommand", "--entity-type", "brokers", "--entity-name", str(c.id), "--alter", "--add-config",
        "log.retention.ms=3600000")
    run(c, "ClientMetricsCommand", "--alter", "--name", subscription, "--metrics", "org.apache.kafka.producer.",
        "--interval", "60000")
    for node in cluster.nodes:
        want = "3600000" if node is c else "7200000"
        wait_until(lambda node=node, want=want: retention(node) == want, timeout=30,
                   what=f"broker {node.id} to apply the dynamic broker configs")
        wait_until(lambda node=node: subscription in run(node, "ClientMetricsCommand", "--list").split(), timeout=30,
                   what=f"broker {node.id} to list the client-metrics subscription")
    run(a, "ConfigCommand", "--entity-type", "brokers", "--entity-name", str(c.id), "--alter", "--delete-config",
        "log.retention.ms")
    run(b, "ConfigCommand", "--entity-type", "brokers", "--entity-default", "--alter", "--delete-config",
        "log.retention.ms")
    run(a, "ClientMetricsCommand", "--delete", "--name", subscription)
    for node in cluster.nodes:
        wait_until(lambda node=node: retention(node) == "604800000", timeout=30,
                   what=f"broker {node.id} to drop the dynamic broker configs")
        wait_until(lambda node=node: subscription not in run(node, "ClientMetricsCommand", "--list").split(),
                   timeout=30, what=f"broker {node.id} to drop the subscription")


def test_offset_for_leader_epoch_answers_where_each_epoch_ended_after_a_move(cluster):
    """A partition moved by a failover leads in a new epoch; OffsetForLeaderEpoch
    answers the end of the old epoch (where the new owner started) and the log end
    for the current one, as clients validating their position after a move need."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    topic = f"epochs-{int(time.time() * 1000)}"
    admin_of(cluster.nodes[0]).create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=15)
    wait_until(lambda: 0 in leaders(cluster.nodes[0], topic), timeout=20, what="a leader")

    def produce(count, tag):
        p = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True})
        failed = []
        for i in range(count):
            p.produce(topic, value=f"{tag}{i}".encode(), on_delivery=lambda e, m: e and failed.append(e))
        assert p.flush(60) == 0 and not failed, failed

    def epochs():
        c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{topic}", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0)])
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                if seen:
                    break
                continue
            if not m.error():
                seen.append((m.offset(), m.leader_epoch()))
        c.close()
        return seen

    produce(10, "a")
    first = epochs()
    assert [o for o, _ in first] == list(range(10))
    old_epoch = first[0][1]
    old_leader = next(n for n in cluster.nodes if n.id == leaders(cluster.nodes[0], topic)[0])
    old_leader.kill()
    rest = [n for n in cluster.nodes if n is not old_leader]
    wait_until(lambda: leaders(rest[0], topic).get(0) in {n.id for n in rest}, timeout=30,
               what="the partition to move")
    produce(5, "b")
    after = epochs()
    assert [o for o, _ in after] == list(range(15))
    new_epoch = after[-1][1]
    assert new_epoch > old_epoch, (old_epoch, new_epoch)
    assert all(e == old_epoch for o, e in after[:10]) and all(e == new_epoch for o, e in after[10:]), after

    leader = next(n for n in rest if n.id == leaders(rest[0], topic)[0])
    conn = rawkafka.Conn(leader.port)
    try:
        assert conn.offset_for_leader_epoch(topic, 0, old_epoch) == (0, old_epoch, 10)
        assert conn.offset_for_leader_epoch(topic, 0, new_epoch) == (0, new_epoch, 15)
        # An epoch between the two that no owner led ends where the next one began.
        if new_epoch - old_epoch > 1:
            assert conn.offset_for_leader_epoch(topic, 0, new_epoch - 1) == (0, old_epoch, 10)
        assert conn.offset_for_leader_epoch(topic, 0, new_epoch + 1) == (0, -1, -1)
        # With the client's current epoch: a stale one is fenced.
        assert conn.offset_for_leader_epoch(topic, 0, old_epoch, current_leader_epoch=old_epoch)[0] == 74
    finally:
        conn.close()
    other = next(n for n in rest if n is not leader)
    conn = rawkafka.Conn(other.port)
    try:
        assert conn.offset_for_leader_epoch(topic, 0, old_epoch)[0] == 6  # NOT_LEADER_OR_FOLLOWER
    finally:
        conn.close()
