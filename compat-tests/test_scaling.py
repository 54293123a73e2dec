"""Auto-scaling streams on a single broker, driven by confluent-kafka: a stream
produced at 3x its target grows within window + cooldown by no more than its factor
per step and settles once each partition is back under the target; one at 6x stops
at its maximum; one at its target and one with the `fixed` policy never grow.
Consumer groups of both protocols, of confluent-kafka and of the Java client,
committing by hand, read the growing stream: every acknowledged record exactly once,
every new partition assigned. Bad scaling configs
are refused with INVALID_CONFIG naming the key, and the keys are described with
documentation."""

import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from conftest import unique, wait_until
from test_java_client import java_build  # noqa: F401  (the compiled Java programs)

TARGET = 20_000  # bytes/s per partition
WINDOW_MS = COOLDOWN_MS = 1500
RECORD = 1000


@pytest.fixture
def broker(make_broker):
    b = make_broker(env={"TRIBUTARY_TOPICS_SCALING_SAMPLE_MS": "100",
                         "TRIBUTARY_GROUPS_INITIAL_REBALANCE_DELAY_MS": "0"})
    b.start()
    return b


def scaled(policy="bytes", max_partitions=4):
    return {"tributary.scaling.policy": policy, "tributary.scaling.target": str(TARGET),
            "tributary.scaling.factor": "2", "tributary.scaling.max.partitions": str(max_partitions),
            "tributary.scaling.window.ms": str(WINDOW_MS), "tributary.scaling.cooldown.ms": str(COOLDOWN_MS)}


def partitions(admin, topic):
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


class Consuming(threading.Thread):
    """One consumer of a group reading the stream and committing every record."""

    def __init__(self, bootstrap, topic, protocol):
        super().__init__(daemon=True)
        conf = {"bootstrap.servers": bootstrap, "group.id": unique(f"g-{protocol}"),
                "auto.offset.reset": "earliest", "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 500}
        if protocol == "consumer":
            conf["group.protocol"] = "consumer"
        else:
            conf["session.timeout.ms"] = 6000
        self.consumer = Consumer(conf)
        self.topic, self.protocol = topic, protocol
        self.seen, self.twice, self.assigned = {}, [], set()
        self.stop = threading.Event()

    def run(self):
        self.consumer.subscribe([self.topic])
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            m = self.consumer.poll(0.2)
            self.assigned |= {tp.partition for tp in self.consumer.assignment()}
            if m is None or m.error():
                continue
            if m.value() in self.seen:
                self.twice.append(m.value())
            self.seen[m.value()] = (m.partition(), m.offset())
            self.consumer.commit(message=m, asynchronous=False)
        self.consumer.close()


class Following(threading.Thread):
    """A reader in a process of its own printing "CONSUMED <partition> <offset>
    <value>" per record and, where it has a group assignment, "ASSIGNED <a,b,...>";
    read line by line."""

    def __init__(self, cmd, label):
        super().__init__(daemon=True)
        self.protocol = label
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.seen, self.twice, self.assigned, self.lines = {}, [], set(), []

    def run(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("CONSUMED "):
                _, part, off, value = line.split(" ", 3)
                v = value.rstrip("\n").encode()
                if v in self.seen:
                    self.twice.append(v)
                self.seen[v] = (int(part), int(off))
            elif line.startswith("ASSIGNED "):
                self.assigned |= {int(q) for q in line.split(" ", 1)[1].split(",") if q.strip()}

    def finish(self):
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        self.proc.wait(90)
        self.join(10)
        assert self.lines and self.lines[-1] == "OK", "\n".join(self.lines[-20:])


class JavaFollowing(Following):
    """The Java client's KafkaConsumer (compat-tests/java/Follow.java) in a group of
    its own."""

    def __init__(self, java_build, bootstrap, topic, protocol):  # noqa: F811
        super().__init__(["java", "-cp", java_build, "Follow", bootstrap, topic, unique("gj"), protocol],
                         f"java-{protocol}")


def test_streams_grow_with_sustained_load_by_their_policy_and_no_further(broker, java_build):  # noqa: F811
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    grows, capped, steady, fixed = (unique(n) for n in ("grows", "capped", "steady", "fixed"))
    topics = [NewTopic(grows, 1, 1, config=scaled()), NewTopic(capped, 1, 1, config=scaled(max_partitions=2)),
              NewTopic(steady, 1, 1, config=scaled()), NewTopic(fixed, 1, 1, config=scaled(policy="fixed"))]
    for f in admin.create_topics(topics).values():
        f.result(timeout=15)
    readers = [Consuming(broker.bootstrap, grows, p) for p in ("classic", "consumer")]
    readers += [JavaFollowing(java_build, broker.bootstrap, grows, p) for p in ("classic", "consumer")]
    for r in readers:
        r.start()

    # Bytes per second, in total, to each stream (keyless: spread over its partitions).
    rates = {grows: 3 * TARGET, capped: 6 * TARGET, steady: TARGET, fixed: 6 * TARGET}
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "topic.metadata.refresh.interval.ms": 500})
    acked = {t: {} for t in rates}

    def done(err, msg):
        assert err is None, err
        acked[msg.topic()][msg.value()] = (msg.partition(), msg.offset())

    counts = {t: [(0.0, 1)] for t in rates}
    started = time.monotonic()
    n = 0
    # Long enough for two steps of `grows` and a few windows more in which it must
    # stay; bounded in time and count.
    while time.monotonic() - started < 12 and n < 200_000:
        tick = time.monotonic()
        for topic, rate in rates.items():
            for _ in range(rate // RECORD // 10):
                p.produce(topic, value=f"{n:08d}".encode() + b"x" * (RECORD - 8), on_delivery=done)
                n += 1
        p.poll(0)
        if int((tick - started) * 10) % 5 == 0:
            for topic in rates:
                now = partitions(admin, topic)
                if now != counts[topic][-1][1]:
                    counts[topic].append((round(tick - started, 1), now))
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    assert p.flush(60) == 0
    for topic in rates:
        now = partitions(admin, topic)
        if now != counts[topic][-1][1]:
            counts[topic].append((round(time.monotonic() - started, 1), now))
    print(f"partition counts over time (s, count): {counts}")

    steps = [c for _, c in counts[grows]]
    assert steps[-1] == 3, f"{grows} at 3x its target settles at 3 partitions: {counts[grows]}"
    assert all(b <= 2 * a for a, b in zip(steps, steps[1:])), f"at most x2 per step: {counts[grows]}"
    first = counts[grows][1][0]
    assert first <= (WINDOW_MS + COOLDOWN_MS) / 1000 + 3, f"first step {first}s after the load began"
    assert [c for _, c in counts[capped]][-1] == 2, f"{capped} stops at its maximum: {counts[capped]}"
    assert counts[steady] == [(0.0, 1)], f"at the target nothing happens: {counts[steady]}"
    assert counts[fixed] == [(0.0, 1)], f"fixed never grows: {counts[fixed]}"

    metrics = broker.metrics()
    assert f'tributary_stream_scaling_events_total{{topic="{grows}"}} 2' in metrics
    assert f'tributary_stream_partitions{{topic="{grows}"}} 3' in metrics
    assert f'tributary_stream_last_scaling_timestamp_seconds{{topic="{grows}"}}' in metrics
    assert f'tributary_stream_last_scaling_timestamp_seconds{{topic="{steady}"}}' not in metrics

    # Both groups read every acknowledged record once and were given every partition.
    # Values as produced (the Java program prints them as text: only the prefix).
    want = {v[:8] for v in acked[grows]}
    for r in readers:
        wait_until(lambda r=r: want <= {v[:8] for v in r.seen} and r.assigned >= {0, 1, 2}, timeout=60,
                   what=f"the {r.protocol} group to read {len(want)} records from all 3 partitions")
        if isinstance(r, JavaFollowing):
            r.finish()
        else:
            r.stop.set()
            r.join(30)
        assert not r.twice, f"{r.protocol}: {len(r.twice)} records read twice"
        at = {v[:8]: place for v, place in r.seen.items()}
        assert all(at[v[:8]] == place for v, place in acked[grows].items()), f"{r.protocol}: records not at their offsets"
        print(f"{r.protocol} group: {len(want)} records once each, partitions {sorted(r.assigned)}")


def test_a_flink_kafka_source_with_partition_discovery_reads_new_partitions_from_the_start(broker, flink_classpath):
    """A Flink job (compat-tests/flink/ReadGrowing.java: KafkaSource of the Flink Kafka
    connector, partition discovery every 2 s) reads a stream while it grows 1 -> 2 -> 3:
    it discovers each new partition and reads it from its first offset, so every
    acknowledged record arrives, once, at its partition and offset, including the
    records produced to a new partition before the job discovered it."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = unique("flink")
    admin.create_topics([NewTopic(topic, 1, 1, config=scaled())])[topic].result(timeout=15)
    job = Following(["java", "-cp", flink_classpath, "ReadGrowing", broker.bootstrap, topic, unique("gf"), "2000"],
                    "flink")
    job.start()
    wait_until(lambda: "RUNNING" in job.lines, timeout=120, what="the Flink job to run")

    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "topic.metadata.refresh.interval.ms": 500})
    acked = {}

    def done(err, msg):
        assert err is None, err
        acked[msg.value()] = (msg.partition(), msg.offset())

    counts = [(0.0, 1)]
    started, n, grown = time.monotonic(), 0, None
    # 3x the target until the stream has grown to 3 partitions and 3 s more, so every
    # partition holds records; bounded in time and count.
    while time.monotonic() - started < 30 and n < 200_000 and (grown is None or time.monotonic() - grown < 3):
        tick = time.monotonic()
        for _ in range(3 * TARGET // RECORD // 10):
            p.produce(topic, value=f"{n:08d}".encode() + b"x" * (RECORD - 8), on_delivery=done)
            n += 1
        p.poll(0)
        if int((tick - started) * 10) % 5 == 0:
            now = partitions(admin, topic)
            if now != counts[-1][1]:
                counts.append((round(tick - started, 1), now))
                if now == 3:
                    grown = time.monotonic()
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    assert p.flush(60) == 0
    assert counts[-1][1] == 3, f"the stream grew to 3 partitions: {counts}"

    want = {v[:8] for v in acked}
    wait_until(lambda: want <= {v[:8] for v in job.seen}, timeout=60,
               what=f"the Flink job to read all {len(want)} acknowledged records")
    job.finish()
    assert not job.twice, f"{len(job.twice)} records read twice"
    at = {v[:8]: place for v, place in job.seen.items()}
    assert all(at[v[:8]] == place for v, place in acked.items()), "records not at their offsets"
    firsts = {part: min(off for q, off in job.seen.values() if q == part) for part in (0, 1, 2)}
    assert firsts == {0: 0, 1: 0, 2: 0}, f"each partition read from its first offset: {firsts}"
    per = {part: sum(1 for q, _ in job.seen.values() if q == part) for part in (0, 1, 2)}
    print(f"partition counts over time (s, count): {counts}; Flink read {len(want)} records, per partition {per}")
    print("\n".join(line for line in job.lines if "Discovered new partitions" in line))


def test_bad_scaling_configs_are_refused_naming_the_key_and_the_keys_are_documented(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for key, value in [("tributary.scaling.policy", "sometimes"), ("tributary.scaling.factor", "1"),
                       ("tributary.scaling.target", "0"), ("tributary.scaling.max.partitions", "-3"),
                       ("tributary.scaling.window.ms", "soon")]:
        topic = unique("bad")
        with pytest.raises(KafkaException) as e:
            admin.create_topics([NewTopic(topic, 1, 1, config={key: value})])[topic].result(timeout=15)
        err = e.value.args[0]
        assert err.name() == "INVALID_CONFIG" and key in err.str(), (key, err)
    topic = unique("doc")
    admin.create_topics([NewTopic(topic, 1, 1, config=scaled())])[topic].result(timeout=15)
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    configs = next(iter(res.values())).result(timeout=15)
    assert configs["tributary.scaling.policy"].value == "bytes"
    assert configs["tributary.scaling.target"].value == str(TARGET)
    assert configs["tributary.scaling.cooldown.ms"].value == str(COOLDOWN_MS)
    # Tributary's defaults show where the topic sets nothing.
    other = unique("plain")
    admin.create_topics([NewTopic(other, 1, 1)])[other].result(timeout=15)
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, other)])
    plain = next(iter(res.values())).result(timeout=15)
    assert plain["tributary.scaling.policy"].value == "fixed"
    assert plain["tributary.scaling.policy"].is_default


@pytest.mark.parametrize("point,after", [("scaling-step", 1), ("partitions-added", 2)])
def test_a_crash_during_a_scaling_step_leaves_the_old_or_the_new_count_and_loses_nothing(make_broker, point, after):
    """The broker dies as a step is decided (nothing written) or right after the new
    count is durable (not yet served): after a restart the stream has the old or the
    new count, Metadata and the data agree, every acknowledged record is there, and
    every partition takes new records."""
    broker = make_broker(env={"TRIBUTARY_TOPICS_SCALING_SAMPLE_MS": "100", "TRB_FAILPOINT": point})
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = unique("crash")
    admin.create_topics([NewTopic(topic, 1, 1, config=scaled())])[topic].result(timeout=15)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 10000})
    acked = {}

    def done(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())

    started, n = time.monotonic(), 0
    # 3x the target until the failpoint stops the broker (bounded: 30 s).
    while broker.proc.poll() is None and time.monotonic() - started < 30:
        tick = time.monotonic()
        for _ in range(3 * TARGET // RECORD // 10):
            p.produce(topic, value=f"{n:08d}".encode() + b"x" * (RECORD - 8), on_delivery=done)
            n += 1
        p.poll(0)
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    assert broker.proc.poll() is not None, f"the broker never reached the failpoint {point}"
    p.flush(15)
    del broker.env["TRB_FAILPOINT"]
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert partitions(admin, topic) == after, f"after a crash at {point} the stream has {after} partition(s)"
    # The data agrees: every acknowledged record in partition 0 at its offset, the
    # others empty, and every partition writable and readable.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("v"), "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    for part in range(after):
        low, high = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
        assert (low, high) == (0, 0) or part == 0, (part, low, high)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for part in range(after):
        p.produce(topic, value=f"after-{part}".encode(), partition=part)
    assert p.flush(15) == 0
    c.assign([TopicPartition(topic, part, 0) for part in range(after)])
    seen = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (set(acked) <= set(seen) and
                                                all(f"after-{q}".encode() in seen for q in range(after))):
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen[m.value()] = (m.partition(), m.offset())
    c.close()
    assert all(seen.get(v) == at for v, at in acked.items()), f"{len(acked)} acknowledged, some missing or moved"
    assert all(seen.get(f"after-{q}".encode(), (None,))[0] == q for q in range(after))
    print(f"crash at {point}: {len(acked)} acknowledged records all there, {after} partition(s) after the restart")


def test_per_partition_produce_rates_over_several_windows_are_in_metrics(make_broker):
    """tributary_partition_produce_rate: bytes/s and records/s of each partition
    something was produced to, over each configured window; a partition (or topic)
    nothing was produced to has no series."""
    broker = make_broker(config_text="[topics]\nrate_windows_ms = [1000, 60000]\nrate_sample_ms = 200\n")
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic, idle = unique("rated"), unique("idle")
    for f in admin.create_topics([NewTopic(topic, 2, 1), NewTopic(idle, 1, 1)]).values():
        f.result(timeout=15)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    started = time.monotonic()
    # About 100 records (100 KB) a second into partition 0 for 4 s.
    while time.monotonic() - started < 4:
        tick = time.monotonic()
        for _ in range(10):
            p.produce(topic, value=b"x" * 1000, partition=0)
        p.poll(0)
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    assert p.flush(15) == 0

    def rate(partition, unit, window, text):
        prefix = (f'tributary_partition_produce_rate{{partition="{partition}",topic="{topic}",'
                  f'unit="{unit}",window="{window}"}} ')
        return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), None)

    text = broker.metrics()
    short_bytes, short_records = rate(0, "bytes", "1s", text), rate(0, "records", "1s", text)
    long_bytes = rate(0, "bytes", "60s", text)
    print(f"partition 0: {short_bytes} B/s and {short_records} records/s over 1 s, {long_bytes} B/s over 60 s")
    assert short_bytes is not None and 50_000 < short_bytes < 200_000, short_bytes
    assert short_records is not None and 50 < short_records < 200, short_records
    # The 60 s average is still climbing after 4 s.
    assert long_bytes is not None and 0 < long_bytes < short_bytes / 4, (long_bytes, short_bytes)
    assert rate(1, "bytes", "1s", text) is None, "a partition nothing was produced to has no series"
    assert not any(l.startswith("tributary_partition_produce_rate") and f'topic="{idle}"' in l for l in text.splitlines())
