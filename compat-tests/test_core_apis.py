"""The rest of the core API surface through confluent-kafka's clients: configs,
topic creation rules, deletion, ListOffsets, log-append time, acks=0, long-poll
wake-up, metrics, durability modes and configuration errors."""

import subprocess
import threading
import time

from confluent_kafka import (TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError, KafkaException, OFFSET_END, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from conftest import BINARY, unique, wait_until
from test_confluent_kafka import consume, create, produce


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_error(broker, topic, **kwargs):
    client = admin(broker)
    futures = client.create_topics([topic], **kwargs)
    try:
        futures[topic.topic].result(timeout=30)
        return None
    except KafkaException as e:
        return e.args[0].code()


def test_describe_configs_for_a_topic_and_the_broker(broker):
    topic = unique("cfg")
    create(broker, topic, config={"retention.ms": "1234", "cleanup.policy": "compact"})
    client = admin(broker)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = client.describe_configs([res])[res].result(timeout=30)
    assert entries["retention.ms"].value == "1234"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert entries["cleanup.policy"].value == "compact"
    assert entries["max.message.bytes"].value == "1048588"
    assert entries["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    broker_res = ConfigResource(ConfigResource.Type.BROKER, "0")
    entries = client.describe_configs([broker_res])[broker_res].result(timeout=30)
    assert entries["num.partitions"].value == "1"
    assert entries["advertised.listeners"].value == f"PLAINTEXT://{broker.bootstrap}"
    missing = ConfigResource(ConfigResource.Type.TOPIC, unique("nope"))
    try:
        client.describe_configs([missing])[missing].result(timeout=30)
        raise AssertionError("describing a missing topic succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_topic_config_sources_and_synonyms_follow_the_override_the_broker_and_the_default(make_broker):
    b = make_broker(env={"TRIBUTARY_TOPICS_SEGMENT_BYTES": "1048576"})
    b.start()
    topic = unique("syn")
    create(b, topic, config={"retention.ms": "1234"})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    client = admin(b)  # outlives its futures
    entries = client.describe_configs([res])[res].result(timeout=30)

    def synonyms(key):
        return [(name, e.value, e.source) for name, e in entries[key].synonyms.items()]

    # As Kafka's: log.retention.ms has no default value, so no default synonym.
    assert synonyms("retention.ms") == [("retention.ms", "1234", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)]
    # Set in the broker's configuration: the topic inherits it.
    assert entries["segment.bytes"].value == "1048576"
    assert entries["segment.bytes"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    # (The client keeps synonyms by name: the broker setting and the built-in default
    # share theirs, and the later one, the default, is what it shows.)
    assert synonyms("segment.bytes") == [("log.segment.bytes", "67108864", ConfigSource.DEFAULT_CONFIG.value)]
    assert synonyms("cleanup.policy") == [("log.cleanup.policy", "delete", ConfigSource.DEFAULT_CONFIG.value)]
    b.stop()


def test_create_topic_rules(broker):
    client = admin(broker)
    name = unique("rules")
    assert create_error(broker, NewTopic(name, 3, 1), validate_only=True) is None
    assert name not in client.list_topics(timeout=10).topics
    assert create_error(broker, NewTopic(name, 3, 1, config={"retention.ms": "soon"})) == KafkaError.INVALID_CONFIG
    assert create_error(broker, NewTopic(name, 3, 1, config={"no.such.config": "1"})) == KafkaError.INVALID_CONFIG
    assert create_error(broker, NewTopic(name, 3, 3)) == KafkaError.INVALID_REPLICATION_FACTOR
    assert create_error(broker, NewTopic(name, 0, 1)) == KafkaError.INVALID_PARTITIONS
    assert create_error(broker, NewTopic("bad name!", 1, 1)) == KafkaError.TOPIC_EXCEPTION
    assert create_error(broker, NewTopic(name, 3, 1)) is None
    assert create_error(broker, NewTopic(name, 3, 1)) == KafkaError.TOPIC_ALREADY_EXISTS
    assert len(client.list_topics(timeout=10).topics[name].partitions) == 3


def test_delete_topic_and_reuse_its_name(broker):
    name = unique("del")
    create(broker, name)
    produce(broker, name, [(b"k", b"old", [])] * 3)
    client = admin(broker)
    client.delete_topics([name])[name].result(timeout=30)
    assert name not in client.list_topics(timeout=10).topics
    try:
        client.delete_topics([name])[name].result(timeout=30)
        raise AssertionError("deleting a missing topic succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    create(broker, name)
    delivered, _ = produce(broker, name, [(b"k", b"new", [])])
    assert delivered == [(0, 0)]
    broker.restart()
    assert [m.value() for m in consume(broker, name, [0], 1)] == [b"new"]


def test_list_offsets_earliest_latest_by_time_and_max_time(broker):
    name = unique("lo")
    create(broker, name)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for ts in (1_000, 5_000, 3_000):
        p.produce(name, value=str(ts).encode(), timestamp=ts)
        p.flush(10)
    tp = TopicPartition(name, 0)
    client = admin(broker)

    def offset(spec):
        return client.list_offsets({tp: spec})[tp].result(timeout=30)

    assert offset(OffsetSpec.earliest()).offset == 0
    assert offset(OffsetSpec.latest()).offset == 3
    assert (offset(OffsetSpec.for_timestamp(2_000)).offset, offset(OffsetSpec.for_timestamp(2_000)).timestamp) == (1, 5_000)
    assert offset(OffsetSpec.for_timestamp(1_000)).offset == 0
    assert offset(OffsetSpec.for_timestamp(9_000)).offset == -1
    mx = offset(OffsetSpec.max_timestamp())
    assert (mx.offset, mx.timestamp) == (1, 5_000)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    assert [t.offset for t in c.offsets_for_times([TopicPartition(name, 0, 2_500)], timeout=10)] == [1]
    c.close()


def test_log_append_time_topics_stamp_batches_with_broker_time(broker):
    name = unique("lat")
    create(broker, name, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    stamps = []
    p.produce(name, value=b"x", timestamp=42, on_delivery=lambda e, m: stamps.append(m.timestamp()))
    p.flush(10)
    after = int(time.time() * 1000)
    (kind, ts), = stamps
    assert kind == TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= ts <= after + 1000
    (m,) = consume(broker, name, [0], 1)
    assert m.timestamp() == (TIMESTAMP_LOG_APPEND_TIME, ts)


def test_acks_zero_gets_no_answer_but_the_records_land(broker):
    name = unique("acks0")
    create(broker, name)
    delivered, errors = produce(broker, name, [(None, f"r{i}".encode(), []) for i in range(20)],
                                extra={"acks": "0"})
    assert errors == [] and len(delivered) == 20
    assert [m.value() for m in consume(broker, name, [0], 20)] == [f"r{i}".encode() for i in range(20)]


def test_a_waiting_fetch_wakes_when_data_arrives(broker):
    name = unique("poll")
    create(broker, name)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "fetch.wait.max.ms": 20000,
                  "fetch.min.bytes": 1})
    c.assign([TopicPartition(name, 0, OFFSET_END)])
    assert c.poll(1.0) is None  # the fetch is now parked on the broker
    sent = []

    def later():
        time.sleep(0.5)
        sent.append(time.monotonic())
        produce(broker, name, [(None, b"wake", [])])

    threading.Thread(target=later).start()
    got = None
    deadline = time.monotonic() + 15
    while got is None and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got = (m.value(), time.monotonic())
    # librdkafka's close waits out the next parked fetch (20 s); do not block on it.
    threading.Thread(target=c.close, daemon=True).start()
    assert got is not None and got[0] == b"wake"
    # far sooner than the 20 s the fetch was allowed to wait
    assert got[1] - sent[0] < 10


def metric_samples(broker):
    samples = {}
    for family in text_string_to_metric_families(broker.metrics()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def delta(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_move_by_exactly_what_was_produced_fetched_and_refused(broker):
    name = unique("metrics")
    create(broker, name)
    before = metric_samples(broker)
    produce(broker, name, [(None, b"m" * 100, [])] * 25)
    consume(broker, name, [0], 25)
    # One refused request: the topic exists already.
    assert create_error(broker, NewTopic(name, 1, 1)) == KafkaError.TOPIC_ALREADY_EXISTS
    after = metric_samples(broker)
    assert delta(before, after, "tributary_produce_records_total", topic=name) == 25
    assert delta(before, after, "tributary_fetch_records_total", topic=name) == 25
    # One consumer read the partition once: the same batches went out as came in.
    bytes_in = delta(before, after, "tributary_produce_bytes_total", topic=name)
    assert bytes_in > 25 * 100
    assert delta(before, after, "tributary_fetch_bytes_total", topic=name) == bytes_in
    assert delta(before, after, "tributary_request_errors_total", api="CreateTopics",
                 error="TOPIC_ALREADY_EXISTS") == 1
    assert delta(before, after, "tributary_requests_total", api="CreateTopics") == 1
    assert delta(before, after, "tributary_requests_total", api="Produce") >= 1
    assert delta(before, after, "tributary_request_duration_seconds_count", api="Produce") == \
        delta(before, after, "tributary_requests_total", api="Produce")
    assert delta(before, after, "tributary_journal_appends_total") >= 1
    assert delta(before, after, "tributary_journal_fsync_duration_seconds_count") >= 1
    assert after[("tributary_connections", ())] >= 1
    # Nothing else failed on the way.
    errors = {k: v - before.get(k, 0.0) for k, v in after.items()
              if k[0] == "tributary_request_errors_total" and v != before.get(k, 0.0)}
    assert errors == {("tributary_request_errors_total", (("api", "CreateTopics"),
                                                           ("error", "TOPIC_ALREADY_EXISTS"))): 1}


def test_interval_durability_acknowledges_and_recovers(make_broker):
    b = make_broker(env={"TRIBUTARY_JOURNAL_DURABILITY": "interval", "TRIBUTARY_JOURNAL_FSYNC_INTERVAL_MS": "20"})
    b.start()
    try:
        name = unique("interval")
        create(b, name)
        delivered, errors = produce(b, name, [(None, f"i{i}".encode(), []) for i in range(50)])
        assert errors == [] and [o for _, o in delivered] == list(range(50))
        b.restart()
        assert [m.value() for m in consume(b, name, [0], 50)] == [f"i{i}".encode() for i in range(50)]
    finally:
        b.stop()


def test_bad_configuration_is_refused_at_start_naming_the_key(tmp_path):
    env = {"TRIBUTARY_TOPICS_NUM_PARTITIONS": "0", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([BINARY, "--data-dir", str(tmp_path / "d"), "--listen", "nonsense"], env=env,
                       capture_output=True, timeout=30)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "topics.num_partitions" in err and "listen" in err, err
    config = tmp_path / "t.toml"
    config.write_text("[journal]\ndurability = \"sometimes\"\n")
    r = subprocess.run([BINARY, "--config", str(config)], env=env, capture_output=True, timeout=30)
    assert r.returncode == 2 and "durability" in r.stderr.decode(), r.stderr.decode()
