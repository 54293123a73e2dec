"""The differential suite: the same scenarios against Apache Kafka 4.4 and against
Tributary, each reduced to what a client observes (offsets, records byte for byte,
error codes, config entries and their sources, group assignments and committed
offsets, transaction visibility), printed as one conformance table.

Every scenario must answer the same on both, or be listed in INTENTIONAL below,
with the answers both give and why they differ: that dict is the one place where
Tributary's intentional differences from Kafka are kept (the README points here).
A listed difference whose answers change fails too, so the list stays true.

Bad requests go out hand-built (rawkafka) at versions both serve, so the error code
is the broker's own and not a client library's reading of it."""

import contextlib
import gzip
import re
import struct
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

import rawkafka
from conftest import unique, wait_until
from rawkafka import Reader, s16

# The intentional differences: (rows, whether a row's two answers are the listed
# difference, why). A row that matches but whose answers are not the listed ones is
# a difference like any other. test_kafka_itself.py leaves out the same
# min.insync.replicas line and lists client telemetry (ONLY_OURS) for the same reasons.
MIN_INSYNC = [("min.insync.replicas", "1", "DEFAULT_CONFIG")]
INTENTIONAL = [
    (r"topic configs: \w+: segment\.bytes$",
     lambda kafka, ours: repr(kafka).replace("1073741824", "67108864") == repr(ours),
     "A segment is the unit Tributary seals from the journal into the object store: 64 MiB objects keep the "
     "journal short and reads of sealed data cheap (Kafka's 1 GiB is a local file). segment.bytes per topic, or "
     "log.segment.bytes for every topic (also at runtime), changes it."),
    (r"topic configs: \w+: remote\.storage\.enable$",
     lambda kafka, ours: repr(kafka).replace("'false'", "'true'") == repr(ours),
     "Every sealed segment of every topic goes to the segment store (tiered storage is how Tributary stores "
     "data, not an option), so the key says true; setting it is accepted and changes nothing."),
    (r"topic configs: \w+: min\.insync\.replicas$",
     lambda kafka, ours: (kafka, ours) == (("1", "DYNAMIC_DEFAULT_BROKER_CONFIG", False, MIN_INSYNC),
                                           ("1", "DEFAULT_CONFIG", True, MIN_INSYNC)),
     "Kafka 4.4's storage format writes min.insync.replicas=1 as a cluster-wide dynamic default (for eligible "
     "leader replicas); Tributary has the same value as its built-in default (one durable copy per partition)."),
    (r"topic configs: \w+: tributary\.scaling\.",
     lambda kafka, ours: kafka is None and ours is not None and ours[1] == "DEFAULT_CONFIG",
     "Tributary's own topic configs (auto-scaling streams, README); Kafka has no such keys."),
]


def intentional(row, kafka, ours):
    """The reason a row's difference is intentional, or None."""
    for pattern, listed, why in INTENTIONAL:
        if re.search(pattern, row) and listed(kafka, ours):
            return why
    return None


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create(bootstrap, name, partitions=1, config=None):
    a = admin(bootstrap)
    a.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(timeout=30)
    wait_until(lambda: name in a.list_topics(timeout=10).topics, timeout=30, what=f"topic {name}")
    return a


def poll_until(consumer, count, timeout=30):
    """Up to `count` messages (and the first error), polling until the deadline."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is None:
            continue
        if m.error():
            return got, m.error().name()
        got.append(m)
    return got, None


# --- bad requests, hand-built -------------------------------------------------

@contextlib.contextmanager
def raw_topic(bootstrap, port, prefix, config=None):
    """A fresh one-partition topic and a raw connection to the broker, closed after."""
    t = unique(prefix)
    create(bootstrap, t, 1, config)
    c = rawkafka.Conn(port)
    try:
        yield t, c
    finally:
        c.close()


def single_partition_error(r):
    """The error code of a response's only topic's only partition, its fields read
    up to there (topic array, name, partition array, partition index)."""
    assert r.i32() == 1
    r.string()
    assert r.i32() == 1
    r.i32()
    return r.i16()


def raw_produce_codes(bootstrap, port):
    with raw_topic(bootstrap, port, "raw", {"max.message.bytes": "1024"}) as (t, c):
        ok = rawkafka.records_batch([b"v"])
        big = rawkafka.records_batch([b"x" * 2000])
        small = unique("raw")
        create(bootstrap, small, 1, {"max.decompressed.message.bytes": "1000"})

        def gz(value):
            return rawkafka.batch(gzip.compress(rawkafka.record(0, b"k", value)), 1, codec=1)
        bomb = gz(b"x" * 5000)
        broken = bytearray(rawkafka.records_batch([b"v"]))
        broken[-1] ^= 0xFF  # a flipped bit in the records: the CRC no longer matches
        return {
            "a partition that does not exist": c.produce(t, 99, ok)[0],
            "a record over max.message.bytes": c.produce(t, 0, big)[0],
            "a batch whose CRC does not match": c.produce(t, 0, bytes(broken))[0],
            "a topic that does not exist": c.produce(unique("never"), 0, ok)[0],
            "a gzip batch over max.decompressed.message.bytes": c.produce(small, 0, bomb)[0],
            "a gzip batch under it": c.produce(small, 0, gz(b"y" * 500))[0],
            "a good batch after them": c.produce(t, 0, ok)[0],
        }


def raw_list_offsets_unknown(bootstrap, port):
    """ListOffsets v1 of an unknown topic and of a partition past the last."""
    with raw_topic(bootstrap, port, "lo") as (t, c):
        out = {}
        for what, topic, partition in (("unknown topic", unique("none"), 0), ("unknown partition", t, 7)):
            body = struct.pack(">i", -1) + struct.pack(">i", 1) + s16(topic) + struct.pack(">iiq", 1, partition, -1)
            out[what] = single_partition_error(Reader(c.request(2, 1, body)))
        return out


def raw_group_codes(bootstrap, port):
    """Heartbeat and OffsetCommit from members a live classic group does not have."""
    t = unique("grp")
    create(bootstrap, t, 1)
    group = unique("g")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
    consumer.subscribe([t])
    wait_until(lambda: consumer.poll(0.2) is None and consumer.assignment(), timeout=60, what="an assignment")
    member = consumer.memberid()
    c = rawkafka.Conn(port)
    try:
        def heartbeat(generation, member_id, group_id=group):
            return Reader(c.request(12, 0, s16(group_id) + struct.pack(">i", generation) + s16(member_id))).i16()

        def commit(generation, member_id):
            body = s16(group) + struct.pack(">i", generation) + s16(member_id) + struct.pack(">q", -1)
            body += struct.pack(">i", 1) + s16(t) + struct.pack(">iiq", 1, 0, 1) + struct.pack(">h", -1)
            return single_partition_error(Reader(c.request(8, 2, body)))

        return {
            "heartbeat, unknown member": heartbeat(1, "ghost"),
            "heartbeat, known member, wrong generation": heartbeat(999, member),
            "heartbeat, group that does not exist": heartbeat(1, "ghost", unique("nogroup")),
            "commit, unknown member": commit(1, "ghost"),
            "commit, known member, wrong generation": commit(999, member),
            "commit, no member (simple commit) while the group has members": commit(-1, ""),
        }
    finally:
        c.close()
        consumer.close()


def raw_transaction_codes(bootstrap, port):
    """InitProducerId, AddPartitionsToTxn and EndTxn outside the rules."""
    with raw_topic(bootstrap, port, "txr") as (t, c):
        def init(txn_id, timeout_ms):
            r = Reader(c.request(22, 0, s16(txn_id) + struct.pack(">i", timeout_ms)))
            r.i32()
            return r.i16(), r.i64(), r.i16()

        def end(txn_id, pid, epoch, commit=True):
            r = Reader(c.request(26, 0, s16(txn_id) + struct.pack(">qh?", pid, epoch, commit)))
            r.i32()
            return r.i16()

        def add(txn_id, pid, epoch):
            body = s16(txn_id) + struct.pack(">qh", pid, epoch) + struct.pack(">i", 1) + s16(t)
            body += struct.pack(">ii", 1, 0)
            r = Reader(c.request(24, 0, body))
            r.i32()  # throttle
            return single_partition_error(r)

        def coordinator(txn_id):
            """FindCoordinator v1 (transaction), as a client asks before InitProducerId:
            Kafka makes __transaction_state on the first one."""
            r = Reader(c.request(10, 1, s16(txn_id) + struct.pack(">b", 1)))
            r.i32()
            return r.i16() == 0

        txn = unique("tx")
        wait_until(lambda: coordinator(txn), timeout=60, what="the transaction coordinator")
        answer = wait_until(lambda: (lambda a: a if a[0] not in (14, 15, 16) else None)(init(txn, 60000)),
                            timeout=60, what="the transaction coordinator to load")
        error, pid, epoch = answer
        assert error == 0, error
        out = {"init, timeout over transaction.max.timeout.ms": init(unique("tx"), 2**31 - 1)[0]}
        out["add partitions, wrong epoch"] = add(txn, pid, epoch + 5)
        out["add partitions, wrong producer id"] = add(txn, pid + 12345, epoch)
        out["end, no transaction going on"] = end(txn, pid, epoch)
        out["end, unknown transactional id"] = end(unique("nobody"), pid, epoch)
        out["end, wrong epoch"] = end(txn, pid, epoch + 5)
        return out


# --- what clients see --------------------------------------------------------

def records_byte_for_byte(bootstrap, port):
    """Keys, values, headers, offsets and timestamps as written and read back."""
    t = unique("bytes")
    create(bootstrap, t, 1)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    sent = [(b"k0", b"v0", [("h", b"0")]), (None, b"no key", None), (b"k2", None, None), (b"k3", b"", [("a", None)]),
            (b"\x00\xff", bytes(range(256)), [("x", b"1"), ("x", b"2")])]
    for i, (k, v, h) in enumerate(sent):
        p.produce(t, key=k, value=v, headers=h, timestamp=1_700_000_000_000 + i)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("b"), "enable.auto.commit": False})
    c.assign([TopicPartition(t, 0, 0)])
    got, error = poll_until(c, len(sent))
    out = [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()) for m in got]
    c.close()
    return {"records": out, "error": error}


def transaction_visibility(bootstrap, port):
    """Committed, aborted and committed again: what each isolation level reads."""
    t = unique("vis")
    create(bootstrap, t, 1)
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("txv")})
    p.init_transactions(30)
    for values, commit in (([b"a", b"b", b"c"], True), ([b"x", b"y"], False), ([b"d"], True)):
        p.begin_transaction()
        for v in values:
            p.produce(t, value=v)
        p.flush(30)
        (p.commit_transaction if commit else p.abort_transaction)(30)
    out = {}
    for isolation, count in (("read_committed", 4), ("read_uncommitted", 6)):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("v"), "enable.auto.commit": False,
                      "isolation.level": isolation})
        c.assign([TopicPartition(t, 0, 0)])
        got, error = poll_until(c, count)
        out[isolation] = ([(m.offset(), m.value()) for m in got], error)
        out[f"{isolation} watermarks"] = c.get_watermark_offsets(TopicPartition(t, 0), timeout=10)
        c.close()
    return out


def fenced_producer(bootstrap, port):
    """A second producer with the same transactional id fences the first."""
    t = unique("fence")
    create(bootstrap, t, 1)
    txn = unique("txf")
    first = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn})
    first.init_transactions(30)
    second = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn})
    second.init_transactions(30)
    try:
        first.begin_transaction()
        first.produce(t, value=b"zombie")
        first.commit_transaction(30)
        return "committed"
    except KafkaException as e:
        return (e.args[0].name(), e.args[0].fatal())


def out_of_range_fetch(bootstrap, port):
    t = unique("oor")
    create(bootstrap, t, 1)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(3):
        p.produce(t, value=b"%d" % i)
    p.flush(30)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("o"), "enable.auto.commit": False,
                  "auto.offset.reset": "error"})
    c.assign([TopicPartition(t, 0, 100)])
    got, error = poll_until(c, 1, timeout=20)
    c.close()
    return {"records": len(got), "error": error}


def group_assignment(bootstrap, port):
    """Two members on each protocol share four partitions two and two; what they
    commit is what the group's offsets show."""
    t = unique("asg")
    a = create(bootstrap, t, 4)
    out = {}
    for protocol in ("classic", "consumer"):
        group = unique(f"asg-{protocol}")
        conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                "auto.offset.reset": "earliest"}
        if protocol == "consumer":
            conf["group.protocol"] = "consumer"
        else:
            conf["partition.assignment.strategy"] = "range"
        members = [Consumer(conf), Consumer(conf)]
        for m in members:
            m.subscribe([t])

        def settled():
            for m in members:
                m.poll(0.1)
            sizes = [len(m.assignment()) for m in members]
            return sorted(sizes) == [2, 2]
        wait_until(settled, timeout=90, what=f"two members with two partitions each ({protocol})")
        for i, m in enumerate(members):
            m.commit(offsets=[TopicPartition(t, p.partition, 10 * (i + 1) + p.partition) for p in m.assignment()],
                     asynchronous=False)
        sizes = sorted(len(m.assignment()) for m in members)
        partitions = sorted(p.partition for m in members for p in m.assignment())
        listed = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
        committed = sorted((p.partition, p.offset % 10 == p.partition) for p in listed.topic_partitions)
        for m in members:
            m.close()
        out[protocol] = (sizes, partitions, committed)
    return out


def topic_configs(bootstrap, port):
    """Every topic config's value, source, default flag and synonyms, for a topic
    with Kafka's defaults and for one with overrides."""
    out = {}
    for kind, config in (("defaults", {}), ("overrides", {"cleanup.policy": "compact", "retention.ms": "3600000",
                                                          "segment.bytes": "1048576", "max.message.bytes": "5000",
                                                          "compression.type": "zstd"})):
        t = unique("cfg")
        a = create(bootstrap, t, 1, config)
        res = ConfigResource(ConfigResource.Type.TOPIC, t)
        entries = a.describe_configs([res])[res].result(timeout=30)
        for k, e in entries.items():
            out[f"{kind}: {k}"] = (e.value, source_name(e.source), e.is_default,
                                   [(s.name, s.value, source_name(s.source)) for s in e.synonyms.values()])
    return out


def source_name(source):
    return ConfigSource(source).name


SCENARIOS = [raw_produce_codes, raw_list_offsets_unknown, raw_group_codes, raw_transaction_codes,
             records_byte_for_byte, transaction_visibility, fenced_producer, out_of_range_fetch, group_assignment,
             topic_configs]


def flatten(name, value):
    """A scenario's answer as table rows: one per key of a dict answer."""
    if isinstance(value, dict):
        return {f"{name}: {k}": v for k, v in value.items()}
    return {name: value}


def test_kafka_and_tributary_answer_the_same(apache_kafka, broker):
    rows = {}
    for scenario in SCENARIOS:
        name = scenario.__name__.replace("_", " ")
        kafka = flatten(name, scenario(apache_kafka.bootstrap, apache_kafka.port))
        ours = flatten(name, scenario(broker.bootstrap, broker.port))
        for k in kafka.keys() | ours.keys():
            rows[k] = (kafka.get(k), ours.get(k))
    verdicts = {k: "equal" if a == b else "intentional" if intentional(k, a, b) else "DIFFERENT"
                for k, (a, b) in rows.items()}
    counts = {v: sum(1 for x in verdicts.values() if x == v) for v in ("equal", "intentional", "DIFFERENT")}
    print(f"\n## Conformance with Apache Kafka 4.4: {len(rows)} answers, {counts['equal']} equal, "
          f"{counts['intentional']} intentionally different, {counts['DIFFERENT']} differing\n")
    print("| scenario | Kafka 4.4 | Tributary | |\n|---|---|---|---|")
    for k in sorted(rows):
        a, b = rows[k]
        print(f"| {k} | {a!r} | {'(the same)' if a == b else repr(b)} | {verdicts[k]} |")
    print("\nIntentional differences:")
    for pattern, _, why in INTENTIONAL:
        print(f"- {pattern}: {why}")
    differing = {k: rows[k] for k, v in verdicts.items() if v == "DIFFERENT"}
    assert not differing, differing
