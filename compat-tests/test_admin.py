"""Admin APIs with confluent-kafka's AdminClient: incremental config changes that
are validated, take effect at once (a lower max.message.bytes refuses a larger
record) and survive a restart; CreatePartitions with the new partitions usable at
once; DeleteRecords with consumers observing the new log start; DescribeCluster."""

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic)

from conftest import unique


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, topic, partitions=1):
    a = admin(broker)  # the client must outlive its futures
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def describe_topic_configs(broker, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    a = admin(broker)
    return a.describe_configs([res])[res].result(30)


def produce(broker, topic, values, partition=0):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    errors = []
    for v in values:
        p.produce(topic, value=v, partition=partition, on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0
    return errors


def test_incremental_alter_configs_validates_applies_live_and_persists(broker):
    topic = unique("cfg")
    create(broker, topic)
    a = admin(broker)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
    ])
    a.incremental_alter_configs([res])[res].result(30)
    configs = describe_topic_configs(broker, topic)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default

    # Live: a record over the new limit is refused, one under it accepted.
    errors = produce(broker, topic, [b"x" * 3000])
    assert errors and "MSG_SIZE_TOO_LARGE" in str(errors[0]), errors
    assert produce(broker, topic, [b"x" * 100]) == []

    # Validation names the problem; nothing changes.
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        a.incremental_alter_configs([bad])[bad].result(30)
    assert "INVALID_CONFIG" in str(e.value) or "retention.ms" in str(e.value)
    unknown = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException):
        a.incremental_alter_configs([unknown])[unknown].result(30)

    # DELETE returns a key to its default; the rest survives a restart.
    reset = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([reset])[reset].result(30)
    broker.restart()
    configs = describe_topic_configs(broker, topic)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["retention.ms"].is_default
    errors = produce(broker, topic, [b"x" * 3000])
    assert errors, "the lower limit still applies after the restart"


def alter_broker(broker, name, **configs):
    """IncrementalAlterConfigs on a broker resource: SET, or DELETE for None."""
    res = ConfigResource(ConfigResource.Type.BROKER, name, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v,
                    incremental_operation=AlterConfigOpType.DELETE if v is None else AlterConfigOpType.SET)
        for k, v in configs.items()])
    a = admin(broker)
    return a.incremental_alter_configs([res])[res].result(30)


def test_dynamic_broker_configs_change_the_topic_defaults_live_and_durably(broker):
    plain, own = unique("dyn"), unique("dyno")
    create(broker, plain)
    create(broker, own)
    overrides = ConfigResource(ConfigResource.Type.TOPIC, own, incremental_configs=[
        ConfigEntry("max.message.bytes", "100000", incremental_operation=AlterConfigOpType.SET)])
    a = admin(broker)
    a.incremental_alter_configs([overrides])[overrides].result(30)
    assert not produce(broker, plain, [b"x" * 3000])
    # This broker's dynamic config: topics without an override follow at once.
    alter_broker(broker, "0", message_max_bytes="2000", log_retention_ms="3600000")
    configs = describe_topic_configs(broker, plain)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["max.message.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert configs["retention.ms"].value == "3600000"
    errors = produce(broker, plain, [b"x" * 3000])
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE], errors
    assert not produce(broker, own, [b"x" * 3000]), "a topic's own override still wins"
    b = ConfigResource(ConfigResource.Type.BROKER, "0")
    entries = a.describe_configs([b])[b].result(30)
    assert entries["message.max.bytes"].value == "2000" and not entries["message.max.bytes"].is_read_only
    assert entries["message.max.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert entries["num.partitions"].is_read_only
    # Settings that cannot change at runtime, and bad values, are refused as Kafka refuses them.
    for configs, code in [({"num_partitions": "3"}, KafkaError.INVALID_REQUEST),
                          ({"log_retention_ms": "soon"}, KafkaError.INVALID_CONFIG),
                          ({"no_such_setting": "1"}, KafkaError.INVALID_CONFIG)]:
        with pytest.raises(KafkaException) as refused:
            alter_broker(broker, "0", **configs)
        assert refused.value.args[0].code() == code, (configs, refused.value)
    with pytest.raises(KafkaException):
        alter_broker(broker, "not-a-broker", log_retention_ms="1")
    # Durable: the same after a restart.
    broker.restart()
    assert describe_topic_configs(broker, plain)["max.message.bytes"].value == "2000"
    assert [e.code() for e in produce(broker, plain, [b"x" * 3000])] == [KafkaError.MSG_SIZE_TOO_LARGE]
    # Removed: back to tributary.toml.
    alter_broker(broker, "0", message_max_bytes=None, log_retention_ms=None)
    configs = describe_topic_configs(broker, plain)
    assert configs["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value, configs["max.message.bytes"]
    assert not produce(broker, plain, [b"x" * 3000])
    # The broker's own entry shows its value in milliseconds, though the default's
    # synonym is Kafka's log.retention.hours.
    entries = a.describe_configs([b])[b].result(30)
    retention = entries["log.retention.ms"]
    assert (retention.value, retention.source) == ("604800000", ConfigSource.STATIC_BROKER_CONFIG.value), retention
    assert [(s.name, s.value) for s in retention.synonyms.values()] == [("log.retention.hours", "168")]


def set_configs(broker, topic, **configs):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    a = admin(broker)
    a.incremental_alter_configs([res])[res].result(30)


def delivery_errors(broker, topic, extra, **produce_kwargs):
    """Produces one record without retries; the delivery error's code, or None."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0, **extra})
    got = []
    p.produce(topic, value=b"v", partition=0, on_delivery=lambda err, msg: got.append(err), **produce_kwargs)
    assert p.flush(30) == 0
    return got[0].code() if got[0] else None


def test_configs_tributary_cannot_act_on_are_moot_and_say_why(broker):
    topic = unique("moot")
    create(broker, topic)
    configs = describe_topic_configs(broker, topic)
    assert configs["compression.type"].value == "producer" and not configs["compression.type"].is_read_only
    assert not configs["flush.ms"].is_read_only and not configs["retention.ms"].is_read_only
    # A codec Kafka does not know is refused, naming the key.
    with pytest.raises(KafkaException) as e:
        set_configs(broker, topic, compression_type="brotli")
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG and "compression.type" in str(e.value)
    # Moot keys are stored and described as set.
    set_configs(broker, topic, flush_ms="1000", unclean_leader_election_enable="true")
    assert describe_topic_configs(broker, topic)["flush.ms"].value == "1000"


def test_min_insync_replicas_above_one_refuses_acks_all_as_kafka_does(broker):
    topic = unique("isr")
    create(broker, topic)
    set_configs(broker, topic, min_insync_replicas="2")
    assert delivery_errors(broker, topic, {"acks": "all", "enable.idempotence": False}) == \
        KafkaError.NOT_ENOUGH_REPLICAS
    assert delivery_errors(broker, topic, {"acks": "1", "enable.idempotence": False}) is None
    set_configs(broker, topic, min_insync_replicas="1")
    assert delivery_errors(broker, topic, {"acks": "all"}) is None


def test_timestamps_outside_the_topic_bounds_are_refused(broker):
    import time
    topic = unique("ts")
    create(broker, topic)
    now = int(time.time() * 1000)
    # Kafka 4's default message.timestamp.after.max.ms is one hour.
    assert delivery_errors(broker, topic, {}, timestamp=now + 2 * 3600_000) == KafkaError.INVALID_TIMESTAMP
    assert delivery_errors(broker, topic, {}, timestamp=now - 30 * 24 * 3600_000) is None
    set_configs(broker, topic, message_timestamp_before_max_ms="3600000")
    assert delivery_errors(broker, topic, {}, timestamp=now - 2 * 3600_000) == KafkaError.INVALID_TIMESTAMP
    assert delivery_errors(broker, topic, {}, timestamp=now - 60_000) is None
    # LogAppendTime topics take any producer timestamp: the broker's replaces it.
    set_configs(broker, topic, message_timestamp_type="LogAppendTime")
    assert delivery_errors(broker, topic, {}, timestamp=now - 2 * 3600_000) is None


def test_create_partitions_are_usable_at_once_and_persist(broker):
    topic = unique("grow")
    create(broker, topic, partitions=1)
    a = admin(broker)
    a.create_partitions([NewPartitions(topic, 3)])[topic].result(30)
    md = a.list_topics(topic, timeout=10).topics[topic]
    assert sorted(md.partitions) == [0, 1, 2]
    assert produce(broker, topic, [b"in-2"], partition=2) == []
    with pytest.raises(KafkaException):
        a.create_partitions([NewPartitions(topic, 2)])[topic].result(30)  # shrinking is refused
    broker.restart()
    a = admin(broker)
    md = a.list_topics(topic, timeout=10).topics[topic]
    assert sorted(md.partitions) == [0, 1, 2]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    assert c.get_watermark_offsets(TopicPartition(topic, 2), timeout=10) == (0, 1)
    c.close()


def test_delete_records_moves_the_log_start_that_consumers_see(broker):
    topic = unique("trim")
    create(broker, topic)
    assert produce(broker, topic, [f"v{i}".encode() for i in range(10)]) == []
    a = admin(broker)
    result = a.delete_records([TopicPartition(topic, 0, 4)])
    deleted = result[TopicPartition(topic, 0, 4)].result(30)
    assert deleted.low_watermark == 4

    def check():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "auto.offset.reset": "earliest"})
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (4, 10)
        c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
        first = None
        for _ in range(50):
            m = c.poll(0.2)
            if m is not None and not m.error():
                first = m
                break
        c.close()
        assert first is not None and first.offset() == 4 and first.value() == b"v4"

    check()
    broker.restart()
    check()


def test_describe_cluster(broker):
    a = admin(broker)
    desc = a.describe_cluster(request_timeout=10).result()
    assert desc.cluster_id
    assert len(desc.nodes) == 1 and desc.nodes[0].port == broker.port
    assert desc.controller.id == desc.nodes[0].id


def test_authorized_operations_are_every_operation_there_being_no_authorizer(broker):
    """include_authorized_operations in DescribeTopics (Metadata), DescribeCluster and
    DescribeConsumerGroups: with no authorizer Kafka lists every operation the
    resource supports, and so does Tributary; not asked, none are listed."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation, NewTopic
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = unique("ops")
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=15)
    desc = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(timeout=15)
    assert set(desc.authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE, AclOperation.DELETE,
        AclOperation.ALTER, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}, desc.authorized_operations
    plain = a.describe_topics(TopicCollection([topic]))[topic].result(timeout=15)
    assert not plain.authorized_operations
    cluster = a.describe_cluster(include_authorized_operations=True).result(timeout=15)
    assert set(cluster.authorized_operations) == {
        AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE}, cluster.authorized_operations
    assert not a.describe_cluster().result(timeout=15).authorized_operations


def journal_bytes(broker):
    for line in broker.metrics().splitlines():
        if line.startswith("tributary_journal_bytes_total "):
            return float(line.split()[1])
    raise AssertionError("no tributary_journal_bytes_total")


@pytest.mark.parametrize("codec", ["zstd", "gzip", "lz4", "snappy"])
def test_a_topic_compression_type_recompresses_what_producers_send(broker, codec):
    """compression.type = a codec: batches sent uncompressed (or with another codec)
    are stored recompressed, as Kafka's log validator does; consumers read the same
    records, keys, headers and timestamps; compression.type = producer stores batches
    as sent."""
    a = admin(broker)
    packed, asis = unique(codec), unique("asis")
    for f in a.create_topics([NewTopic(packed, 1, 1, config={"compression.type": codec}),
                              NewTopic(asis, 1, 1)]).values():
        f.result(30)
    values = [(f"k{i}".encode(), (f"record {i} " * 100).encode()) for i in range(2000)]

    def send(topic, compression):
        before = journal_bytes(broker)
        p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": compression, "linger.ms": 20})
        for k, v in values:
            p.produce(topic, key=k, value=v, headers=[("h", k)], timestamp=1_700_000_000_000)
        assert p.flush(30) == 0
        return journal_bytes(broker) - before

    raw = sum(len(v) for _, v in values)
    stored = send(packed, "none")
    kept = send(asis, "none")
    print(f"{codec}: {raw} value bytes sent uncompressed, {stored:.0f} journal bytes stored "
          f"(as sent: {kept:.0f})")
    assert kept >= raw and stored < raw / 4, (stored, kept, raw)
    # Sent with another codec, recompressed all the same; read back exactly.
    send(packed, "gzip" if codec != "gzip" else "lz4")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(packed, 0, 0)])
    got = []
    while len(got) < 2 * len(values):
        m = c.poll(10)
        assert m is not None, f"read {len(got)} of {2 * len(values)}"
        assert not m.error(), m.error()
        got.append((m.key(), m.value(), m.headers(), m.timestamp()[1], m.offset()))
    c.close()
    for i, (k, v, h, ts, off) in enumerate(got):
        assert (k, v) == values[i % len(values)] and h == [("h", k)] and ts == 1_700_000_000_000 and off == i
