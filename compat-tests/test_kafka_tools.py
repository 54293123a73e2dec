"""Apache Kafka's own command-line tools (kafka-tools 4.4.0, the classes behind
kafka-topics.sh, kafka-configs.sh, kafka-console-producer.sh, ...) run against
Tributary unchanged, each answer checked."""

import json
import re
import subprocess

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from conftest import unique, wait_until


@pytest.fixture
def tool(kafka_classpath, broker):
    """Runs org.apache.kafka.tools.<name> (with --bootstrap-server unless not
    `bootstrap`); returns its standard output (it must exit 0), or with `fails` both
    its outputs (it must not)."""

    def run(name, *args, stdin=None, fails=False, bootstrap=True):
        where = ["--bootstrap-server", broker.bootstrap] if bootstrap else []
        cmd = ["java", "-cp", kafka_classpath, f"org.apache.kafka.tools.{name}", *where, *args]
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        out = r.stdout + r.stderr
        if fails:
            assert r.returncode != 0, out[-3000:]
            return out
        else:
            assert r.returncode == 0, f"{name} {' '.join(args)}:\n{out[-3000:]}"
        return r.stdout

    return run


def test_kafka_topics_creates_describes_alters_and_deletes(tool):
    topic = unique("kt")
    tool("TopicCommand", "--create", "--topic", topic, "--partitions", "3", "--replication-factor", "1",
         "--config", "retention.ms=3600000")
    assert topic in tool("TopicCommand", "--list").split()
    described = tool("TopicCommand", "--describe", "--topic", topic)
    assert re.search(rf"Topic: {topic}\s+TopicId: \S+\s+PartitionCount: 3\s+ReplicationFactor: 1", described), described
    assert "retention.ms=3600000" in described, described
    parts = re.findall(rf"Topic: {topic}\s+Partition: (\d+)\s+Leader: (\d+)\s+Replicas: (\d+)\s+Isr: (\d+)", described)
    assert sorted(int(p) for p, *_ in parts) == [0, 1, 2], described
    tool("TopicCommand", "--alter", "--topic", topic, "--partitions", "5")
    assert "PartitionCount: 5" in tool("TopicCommand", "--describe", "--topic", topic)
    # Under-replicated and unavailable partitions: none on a broker that holds each
    # partition's only copy.
    assert tool("TopicCommand", "--describe", "--under-replicated-partitions").strip() == ""
    assert tool("TopicCommand", "--describe", "--unavailable-partitions").strip() == ""
    tool("TopicCommand", "--delete", "--topic", topic)
    wait_until(lambda: topic not in tool("TopicCommand", "--list").split(), timeout=30, what="the topic to go")


def test_kafka_configs_alters_and_describes_topic_and_client_configs(tool, broker):
    topic = unique("kc")
    tool("TopicCommand", "--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1")
    tool("ConfigCommand", "--entity-type", "topics", "--entity-name", topic, "--alter", "--add-config",
         "max.message.bytes=2000,cleanup.policy=compact")
    described = tool("ConfigCommand", "--entity-type", "topics", "--entity-name", topic, "--describe")
    assert "max.message.bytes=2000" in described and "cleanup.policy=compact" in described, described
    tool("ConfigCommand", "--entity-type", "topics", "--entity-name", topic, "--alter", "--delete-config",
         "max.message.bytes")
    described = tool("ConfigCommand", "--entity-type", "topics", "--entity-name", topic, "--describe")
    assert "max.message.bytes=2000" not in described and "cleanup.policy=compact" in described, described
    # Every config with its source, Tributary's own scaling keys among them.
    everything = tool("ConfigCommand", "--entity-type", "topics", "--entity-name", topic, "--describe", "--all")
    assert "tributary.scaling.policy=fixed" in everything, everything
    # Client quotas.
    client = unique("cl")
    tool("ConfigCommand", "--entity-type", "clients", "--entity-name", client, "--alter", "--add-config",
         "producer_byte_rate=1048576,consumer_byte_rate=2097152")
    quotas = tool("ConfigCommand", "--entity-type", "clients", "--entity-name", client, "--describe")
    assert "producer_byte_rate=1048576.0" in quotas and "consumer_byte_rate=2097152.0" in quotas, quotas
    # The broker's own configs are described (read-only ones included).
    node = next(iter(AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).brokers))
    broker_configs = tool("ConfigCommand", "--entity-type", "brokers", "--entity-name", str(node), "--describe",
                          "--all")
    assert "message.max.bytes=" in broker_configs, broker_configs


def test_kafka_configs_sets_dynamic_broker_configs_for_every_broker_and_for_one(tool, broker):
    topic = unique("kdyn")
    tool("TopicCommand", "--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1")
    tool("ConfigCommand", "--entity-type", "brokers", "--entity-default", "--alter", "--add-config",
         "log.retention.ms=7200000,log.segment.bytes=2097152")
    described = tool("ConfigCommand", "--entity-type", "brokers", "--entity-default", "--describe")
    assert "log.retention.ms=7200000" in described and "log.segment.bytes=2097152" in described, described
    # A topic without its own setting follows, the default broker config as its source.
    described = tool("ConfigCommand", "--entity-type", "topics", "--entity-name", topic, "--describe", "--all")
    assert re.search(r"retention\.ms=7200000 .*synonyms=\{DYNAMIC_DEFAULT_BROKER_CONFIG:log\.retention\.ms=7200000",
                     described), described
    # One broker's own setting wins over the default.
    tool("ConfigCommand", "--entity-type", "brokers", "--entity-name", "0", "--alter", "--add-config",
         "log.retention.ms=3600000")
    described = tool("ConfigCommand", "--entity-type", "brokers", "--entity-name", "0", "--describe")
    assert re.search(r"log\.retention\.ms=3600000 .*synonyms=\{DYNAMIC_BROKER_CONFIG:log\.retention\.ms=3600000, "
                     r"DYNAMIC_DEFAULT_BROKER_CONFIG:log\.retention\.ms=7200000", described), described
    described = tool("ConfigCommand", "--entity-type", "topics", "--entity-name", topic, "--describe", "--all")
    assert "retention.ms=3600000" in described, described
    refused = tool("ConfigCommand", "--entity-type", "brokers", "--entity-name", "0", "--alter", "--add-config",
                   "num.partitions=3", fails=True)
    assert "Cannot update these configs dynamically: num.partitions" in refused, refused
    tool("ConfigCommand", "--entity-type", "brokers", "--entity-name", "0", "--alter", "--delete-config",
         "log.retention.ms")
    tool("ConfigCommand", "--entity-type", "brokers", "--entity-default", "--alter", "--delete-config",
         "log.retention.ms,log.segment.bytes")
    assert "log.retention.ms" not in tool("ConfigCommand", "--entity-type", "brokers", "--entity-default",
                                          "--describe")
    described = tool("ConfigCommand", "--entity-type", "topics", "--entity-name", topic, "--describe", "--all")
    assert "retention.ms=604800000 " in described, described


def test_console_producer_consumer_and_consumer_groups(tool):
    topic, group = unique("kcon"), unique("kg")
    tool("TopicCommand", "--create", "--topic", topic, "--partitions", "2", "--replication-factor", "1")
    lines = [f"line-{i}" for i in range(50)]
    tool("ConsoleProducer", "--topic", topic, "--command-property", "acks=all", stdin="\n".join(lines) + "\n")
    got = tool("consumer.ConsoleConsumer", "--topic", topic, "--group", group, "--from-beginning", "--max-messages", "50",
               "--timeout-ms", "30000")
    assert sorted(got.split()) == sorted(lines), got
    assert group in tool("consumer.group.ConsumerGroupCommand", "--list").split()
    described = tool("consumer.group.ConsumerGroupCommand", "--describe", "--group", group)
    rows = re.findall(rf"{group}\s+{topic}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", described)
    assert len(rows) == 2 and all(cur == end and lag == "0" for _, cur, end, lag in rows), described
    assert sum(int(end) for _, _, end, _ in rows) == 50, described
    tool("consumer.group.ConsumerGroupCommand", "--reset-offsets", "--group", group, "--topic", topic,
         "--to-earliest", "--execute")
    described = tool("consumer.group.ConsumerGroupCommand", "--describe", "--group", group)
    rows = re.findall(rf"{group}\s+{topic}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", described)
    assert sum(int(lag) for *_, lag in rows) == 50 and all(cur == "0" for _, cur, _, _ in rows), described
    tool("consumer.group.ConsumerGroupCommand", "--delete", "--group", group)
    assert group not in tool("consumer.group.ConsumerGroupCommand", "--list").split()


def test_offsets_records_log_dirs_api_versions_and_features(tool, broker, tmp_path):
    topic = unique("ko")
    tool("TopicCommand", "--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1")
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        p.produce(topic, value=b"x%d" % i)
    assert p.flush(15) == 0
    assert f"{topic}:0:20" in tool("GetOffsetShell", "--topic", topic, "--time", "-1")
    spec = tmp_path / "delete.json"
    spec.write_text(json.dumps({"partitions": [{"topic": topic, "partition": 0, "offset": 5}], "version": 1}))
    out = tool("DeleteRecordsCommand", "--offset-json-file", str(spec))
    assert "low_watermark: 5" in out, out
    assert f"{topic}:0:5" in tool("GetOffsetShell", "--topic", topic, "--time", "-2")
    dirs = tool("LogDirsCommand", "--describe", "--topic-list", topic)
    assert f'"partition":"{topic}-0"' in dirs, dirs
    versions = tool("BrokerApiVersionsCommand")
    assert re.search(r"DescribeTopicPartitions\(75\): 0 \[usable: 0\]", versions), versions
    assert re.search(r"EndTxn\(26\): 0 to 5 \[usable: 5\]", versions), versions
    features = tool("FeatureCommand", "describe")
    assert re.search(r"Feature: transaction.version\s+SupportedMinVersion: 0\s+SupportedMaxVersion: 2\s+"
                     r"FinalizedVersionLevel: 2", features), features


def test_kafka_transactions_tool_lists_and_describes(tool, broker):
    topic, tx = unique("ktx"), unique("tid")
    tool("TopicCommand", "--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1")
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": tx})
    p.init_transactions(15)
    p.begin_transaction()
    p.produce(topic, value=b"open")
    p.flush(15)
    listed = tool("TransactionsCommand", "list")
    assert re.search(rf"{tx}\s+\d+\s+\d+\s+Ongoing", listed), listed
    # ListTransactions v2: by pattern (the whole id must match) and by duration.
    prefix = tx.split("-")[0]
    assert tx in tool("TransactionsCommand", "list", "--transactional-id-pattern", f"{prefix}-.*")
    assert tx not in tool("TransactionsCommand", "list", "--transactional-id-pattern", prefix)
    assert tx not in tool("TransactionsCommand", "list", "--duration-filter", "3600000")
    tool("TransactionsCommand", "list", "--transactional-id-pattern", "(", fails=True)
    described = tool("TransactionsCommand", "describe", "--transactional-id", tx)
    assert re.search(rf"\d+\s+{tx}\s+\d+\s+\d+\s+Ongoing", described) and f"{topic}-0" in described, described
    hanging = tool("TransactionsCommand", "find-hanging", "--broker-id", "1")
    assert tx not in hanging, hanging
    p.commit_transaction(15)
    listed = tool("TransactionsCommand", "list")
    assert re.search(rf"{tx}\s+\d+\s+\d+\s+CompleteCommit", listed), listed


def test_producer_and_consumer_performance_run_to_the_end(tool, broker):
    """kafka-producer-perf-test writes 20,000 records; kafka-consumer-perf-test reads
    them all back in a group (its CSV line counts the records and their bytes)."""
    topic = unique("kperf")
    tool("TopicCommand", "--create", "--topic", topic, "--partitions", "2", "--replication-factor", "1")
    out = tool("ProducerPerformance", "--topic", topic, "--num-records", "20000", "--record-size", "100",
               "--throughput", "-1", "--producer-props", f"bootstrap.servers={broker.bootstrap}", "acks=all",
               bootstrap=False)
    assert re.search(r"20000 records sent", out), out
    out = tool("ConsumerPerformance", "--topic", topic, "--num-records", "20000", "--timeout", "60000",
               "--group", unique("kperf-g"))
    header, row = [l for l in out.splitlines() if l.strip()][-2:]
    stats = dict(zip([h.strip() for h in header.split(",")], [v.strip() for v in row.split(",")]))
    assert stats["data.consumed.in.nMsg"] == "20000", out
    assert abs(float(stats["data.consumed.in.MB"]) - 20000 * 100 / 1024 / 1024) < 0.01, out


def test_kafka_configs_sets_group_configs_durably(tool, broker):
    """KIP-848 group configs through kafka-configs --entity-type groups: set (the
    group need not exist), described with their synonyms, refused when out of
    bounds or unknown, kept across a restart, deleted."""
    group = unique("gc")
    args = ("--entity-type", "groups", "--entity-name", group)
    tool("ConfigCommand", *args, "--alter", "--add-config",
         "consumer.session.timeout.ms=50000,consumer.heartbeat.interval.ms=6000")
    described = tool("ConfigCommand", *args, "--describe")
    assert ("consumer.session.timeout.ms=50000 sensitive=false synonyms={DYNAMIC_GROUP_CONFIG:consumer.session."
            "timeout.ms=50000, DEFAULT_CONFIG:group.consumer.session.timeout.ms=45000}") in described, described
    assert "consumer.heartbeat.interval.ms=6000" in described, described
    tool("ConfigCommand", *args, "--alter", "--add-config", "consumer.heartbeat.interval.ms=60000", fails=True)
    tool("ConfigCommand", *args, "--alter", "--add-config", "no.such.config=1", fails=True)
    broker.restart()
    described = tool("ConfigCommand", *args, "--describe")
    assert "consumer.session.timeout.ms=50000" in described and "consumer.heartbeat.interval.ms=6000" in described
    tool("ConfigCommand", *args, "--alter", "--delete-config", "consumer.heartbeat.interval.ms")
    described = tool("ConfigCommand", *args, "--describe")
    assert "consumer.session.timeout.ms=50000" in described and "heartbeat" not in described, described
    everything = tool("ConfigCommand", *args, "--describe", "--all")
    assert "consumer.heartbeat.interval.ms=5000" in everything, everything


def test_kafka_configs_lists_every_group_with_configs(tool):
    """Without a name, kafka-configs 4.4 lists the groups with configs through
    ListConfigResources (KIP-1142), then describes each."""
    groups = [unique("lcr"), unique("lcr")]
    for g in groups:
        tool("ConfigCommand", "--entity-type", "groups", "--entity-name", g, "--alter", "--add-config",
             "consumer.session.timeout.ms=50000")
    listed = tool("ConfigCommand", "--entity-type", "groups", "--describe")
    for g in groups:
        assert f"Dynamic configs for group {g} are:" in listed, listed
    assert listed.count("consumer.session.timeout.ms=50000") >= 2, listed
