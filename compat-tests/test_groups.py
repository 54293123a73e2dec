"""Consumer groups with the Python clients: the shared scenario of groups.py with
confluent-kafka (classic eager, cooperative-sticky, and group.protocol=consumer),
kafka-python and aiokafka; static membership; the group admin APIs; lag on
/metrics."""

import asyncio
import re
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition, ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, NewTopic

import groups
from conftest import unique, wait_until


@pytest.fixture
def gbroker(make_broker):
    b = make_broker(env=groups.BROKER_ENV)
    b.start()
    return b


# ---- adapters -------------------------------------------------------------------


class ConfluentConsumer:
    def __init__(self, broker, group, topic, **extra):
        conf = {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        if extra.get("group.protocol") != "consumer":
            conf.update({"session.timeout.ms": groups.SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 500})
        conf.update(extra)
        self.c = Consumer(conf)
        self.c.subscribe([topic])

    def poll(self, timeout):
        m = self.c.poll(timeout)
        if m is None:
            return []
        if m.error():
            raise KafkaException(m.error())
        try:
            self.c.commit(message=m, asynchronous=False)
        except KafkaException:
            # Not committed (a rebalance), so not consumed: read it again, or let the
            # partition's next owner start there.
            try:
                self.c.seek(TopicPartition(m.topic(), m.partition(), m.offset()))
            except KafkaException:
                pass
            return []
        return [(m.partition(), m.offset(), m.value())]

    def assignment(self):
        return {tp.partition for tp in self.c.assignment()}

    def close(self):
        self.c.close()


class KafkaPythonConsumer:
    def __init__(self, broker, group, topic):
        from kafka import KafkaConsumer
        self.c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                               auto_offset_reset="earliest", enable_auto_commit=False,
                               session_timeout_ms=groups.SESSION_TIMEOUT_MS, heartbeat_interval_ms=500,
                               max_poll_records=10)

    def poll(self, timeout):
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata
        out = []
        # kafka-python 3.0.12 can lose a JoinGroup/SyncGroup round that completes
        # after poll() gave up on it (the member then never heartbeats and its
        # session expires; seen in its own debug log with the broker's answers in
        # time): a poll long enough for a join to finish avoids that client bug.
        # poll returns as soon as records arrive, so this costs nothing.
        for tp, msgs in self.c.poll(timeout_ms=int(max(timeout, 2.0) * 1000)).items():
            for m in msgs:
                try:
                    self.c.commit({tp: OffsetAndMetadata(m.offset + 1, "", -1)})
                except (CommitFailedError, KafkaError):
                    try:
                        self.c.seek(tp, m.offset)  # not consumed: read it again
                    except Exception:
                        pass
                    return out
                out.append((m.partition, m.offset, m.value))
        return out

    def assignment(self):
        return {tp.partition for tp in self.c.assignment()}

    def close(self):
        self.c.close()


class _Loop:
    """One asyncio loop in a thread, shared by the aiokafka adapters."""
    loop = None

    @classmethod
    def run(cls, coro, timeout=60):
        if cls.loop is None:
            cls.loop = asyncio.new_event_loop()
            threading.Thread(target=cls.loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, cls.loop).result(timeout)


class AioConsumer:
    def __init__(self, broker, group, topic):
        from aiokafka import AIOKafkaConsumer

        async def make():
            c = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 session_timeout_ms=groups.SESSION_TIMEOUT_MS, heartbeat_interval_ms=500)
            await c.start()
            return c

        self.c = _Loop.run(make())

    def poll(self, timeout):
        from aiokafka.errors import CommitFailedError, KafkaError

        async def step():
            out = []
            batches = await self.c.getmany(timeout_ms=int(timeout * 1000), max_records=10)
            for tp, msgs in batches.items():
                for m in msgs:
                    try:
                        await self.c.commit({tp: m.offset + 1})
                    except (CommitFailedError, KafkaError):
                        try:
                            self.c.seek(tp, m.offset)  # not consumed: read it again
                        except Exception:
                            pass
                        return out
                    out.append((m.partition, m.offset, m.value))
            return out

        return _Loop.run(step())

    def assignment(self):
        return {tp.partition for tp in self.c.assignment()}

    def close(self):
        _Loop.run(self.c.stop())


# ---- the shared scenario ------------------------------------------------------------


def test_confluent_kafka_group(gbroker):
    groups.run(gbroker, ConfluentConsumer)


def test_kafka_python_group(gbroker):
    groups.run(gbroker, KafkaPythonConsumer)


def test_aiokafka_group(gbroker):
    groups.run(gbroker, AioConsumer)


def test_confluent_kafka_consumer_protocol(gbroker):
    """group.protocol=consumer (KIP-848): server-side assignment and reconciliation."""
    groups.run(gbroker, lambda b, g, t: ConfluentConsumer(b, g, t, **{"group.protocol": "consumer"}))


def test_confluent_kafka_consumer_protocol_range_assignor(gbroker):
    groups.run(gbroker, lambda b, g, t: ConfluentConsumer(
        b, g, t, **{"group.protocol": "consumer", "group.remote.assignor": "range"}))


def test_cooperative_sticky_keeps_partitions_of_the_members_that_stay(gbroker):
    topic, group = unique("coop"), unique("g")
    groups.create_topic(gbroker, topic)
    groups.produce(gbroker, topic, 0, 60)
    seen = []
    make = lambda: groups.Runner(ConfluentConsumer(gbroker, group, topic, **{
        "partition.assignment.strategy": "cooperative-sticky"}), seen)
    consumers = [make() for _ in range(3)]
    before = groups.settled_cover(consumers, 3)[:2]
    consumers.pop().close()
    after = groups.settled_cover(consumers, 2)
    for b, a in zip(before, after):
        assert b <= a, f"a staying member lost partitions: {b} -> {a}"
    groups.consume_until(consumers, seen, 60)
    for c in consumers:
        c.close()
    groups.assert_exactly_once(seen, [f"v{i}".encode() for i in range(60)])


def rebalances(broker):
    m = re.search(r'^tributary_group_rebalances_total\{protocol="classic"\} (\d+)', broker.metrics(), re.M)
    return int(m.group(1)) if m else 0


def test_static_member_restart_gets_its_partitions_back_without_a_rebalance(gbroker):
    topic, group = unique("static"), unique("g")
    groups.create_topic(gbroker, topic)
    seen = []
    make = lambda i: groups.Runner(ConfluentConsumer(gbroker, group, topic, **{
        "group.instance.id": f"instance-{i}", "session.timeout.ms": 30000}), seen)
    consumers = [make(i) for i in range(3)]
    before = groups.settled_cover(consumers, 3)
    count = rebalances(gbroker)
    # A static member closes without leaving the group, and comes back.
    consumers[2].close()
    consumers[2] = make(2)
    wait_until(lambda: groups.assignments(consumers) == before, timeout=30,
               what="the restarted static member to get its partitions back")
    time.sleep(1)
    assert groups.assignments(consumers) == before
    assert rebalances(gbroker) == count, "the restart caused a rebalance"
    for c in consumers:
        c.close()


def test_admin_lists_describes_and_deletes_groups_and_offsets(gbroker):
    topic, group = unique("adm"), unique("g")
    groups.create_topic(gbroker, topic, partitions=2)
    groups.produce(gbroker, topic, 0, 12, partitions=2)
    seen = []
    c = groups.Runner(ConfluentConsumer(gbroker, group, topic), seen)
    groups.consume_until([c], seen, 12)
    c.pause()
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})

    listed = admin.list_consumer_groups(request_timeout=10).result()
    states = {g.group_id: str(g.state) for g in listed.valid}
    assert group in states and "STABLE" in states[group], states
    desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    assert len(desc.members) == 1
    assert {tp.partition for tp in desc.members[0].assignment.topic_partitions} == {0, 1}

    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    assert {(tp.partition, tp.offset) for tp in offsets.topic_partitions} == {(0, 6), (1, 6)}

    # Lag is on /metrics: 0 now, 4 on partition 0 after four more records.
    groups.produce(gbroker, topic, 12, 8, partitions=2)  # 4 per partition
    lag = re.compile(rf'^tributary_consumer_group_lag\{{group="{group}",partition="(\d)",topic="{topic}"\}} (\d+)', re.M)
    assert {p: int(v) for p, v in lag.findall(gbroker.metrics())} == {"0": 4, "1": 4}

    # A group with a member cannot be deleted; an empty one can.
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups([group], request_timeout=10)[group].result()
    assert "NON_EMPTY_GROUP" in str(e.value)
    c.close()

    # Empty now, and still a consumer group (not a simple one), as Kafka lists it.
    def emptied():
        listed = admin.list_consumer_groups(request_timeout=10).result()
        g = next((g for g in listed.valid if g.group_id == group), None)
        return g is not None and "EMPTY" in str(g.state) and g

    listing = wait_until(emptied, timeout=15, what="the group to be empty")
    assert not listing.is_simple_consumer_group, "an emptied consumer group is listed as a simple group"
    desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    assert not desc.is_simple_consumer_group and "EMPTY" in str(desc.state), desc
    admin.delete_consumer_groups([group], request_timeout=10)[group].result()
    listed = admin.list_consumer_groups(request_timeout=10).result()
    assert group not in {g.group_id for g in listed.valid}
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])
    assert offsets[group].result().topic_partitions[0].offset < 0, "offsets went with the group"


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_consumer_that_assigns_its_partitions_commits_as_a_simple_group(gbroker, protocol):
    """A consumer that never joins (assign(), not subscribe()) commits as Kafka allows a
    simple group to, with either group.protocol: librdkafka sends its own member id
    with member epoch -1, which Kafka accepts while the group has no members."""
    from confluent_kafka import Producer  # noqa: PLC0415
    topic, group = unique("assigned"), unique("simple")
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=15)
    p = Producer({"bootstrap.servers": gbroker.bootstrap})
    for i in range(10):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 2)
    assert p.flush(15) == 0
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group, "group.protocol": protocol,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    read = 0
    deadline = time.monotonic() + 30
    while read < 10 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            read += 1
    assert read == 10
    committed = c.commit(asynchronous=False)
    assert all(tp.error is None for tp in committed), committed
    got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    c.close()
    assert sorted(tp.offset for tp in got) == [5, 5], got


def test_an_emptied_classic_group_keeps_its_protocol_type_across_a_restart(gbroker):
    """A classic group's metadata is a record of __consumer_offsets (Kafka's
    GroupMetadata schema): after a restart a group whose members left is Empty and
    still a consumer group, listed and described as one, not a simple group."""
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    topic, group = unique("gm"), unique("gmeta")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=15)
    offsets_topic = admin.list_topics("__consumer_offsets", timeout=10).topics["__consumer_offsets"]
    probe = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": unique("probe")})

    def records_in_offsets_topic():
        return sum(probe.get_watermark_offsets(TopicPartition("__consumer_offsets", p), timeout=10)[1]
                   for p in offsets_topic.partitions)

    start = records_in_offsets_topic()
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([topic])
    wait_until(lambda: c.poll(0.2) is None and c.assignment(), timeout=60, what="an assignment")
    c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    c.close()
    before = admin.describe_consumer_groups([group])[group].result(timeout=30)
    assert (before.state.name, before.is_simple_consumer_group) == ("EMPTY", False)
    # The group's metadata when its generation began, the commit, and its metadata
    # once empty: written by the coordinator's timer within moments.
    wait_until(lambda: records_in_offsets_topic() >= start + 3, timeout=30, what="the group's records")
    probe.close()
    gbroker.restart()
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    after = admin.describe_consumer_groups([group])[group].result(timeout=30)
    assert (after.state.name, after.is_simple_consumer_group) == ("EMPTY", False), after
    listed = [g for g in admin.list_consumer_groups().result(timeout=30).valid if g.group_id == group]
    assert [(g.is_simple_consumer_group, g.state.name) for g in listed] == [(False, "EMPTY")], listed
