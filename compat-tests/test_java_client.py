"""The Java client (kafka-clients 4.4.0 from Maven Central, compat-tests/java):
Admin create/list/describe, every codec with keys, repeated headers and nulls byte
for byte, 100 partitions, a record near max.message.bytes and one over it
(RecordTooLargeException), and a restart; consumer groups with the classic protocol
and with group.protocol=consumer (KIP-848)."""

import subprocess

import pytest

import groups
from conftest import unique
from kafkakit import maven_classpath


@pytest.fixture(scope="session")
def java_build():
    """The Java programs (compat-tests/java/*.java), compiled by Maven against
    kafka-clients; the classpath to run them with."""
    return maven_classpath("java")


def run(java_build, broker, mode, tag):
    r = subprocess.run(["java", "-cp", java_build, "RoundTrip", broker.bootstrap, mode, tag], capture_output=True,
                       timeout=240)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-4000:]
    assert r.stdout.decode().strip().endswith(f"OK {mode}")


def test_java_client_round_trips_and_survives_restart(java_build, broker):
    run(java_build, broker, "produce", "java")
    broker.restart()
    run(java_build, broker, "verify", "java")


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_java_consumer_group(java_build, make_broker, protocol):
    broker = make_broker(env=groups.BROKER_ENV)
    broker.start()
    topic, group = unique("jgrp"), unique("g")
    groups.run_external(broker, lambda mode: groups.run_program(
        ["java", "-cp", java_build, "Groups", broker.bootstrap, mode, topic, group, protocol], mode))


def requests(broker, api):
    """How many requests of `api` the broker has handled."""
    prefix = f'tributary_requests_total{{api="{api}"}} '
    return next((float(l[len(prefix):]) for l in broker.metrics().splitlines() if l.startswith(prefix)), 0.0)


@pytest.mark.parametrize("version", [2, 1])
def test_java_transactions(java_build, make_broker, version):
    """KafkaProducer transactions with sendOffsetsToTransaction, a read_committed
    KafkaConsumer, an aborted step, and a fenced zombie: with transaction.version 2
    finalized (the default) the client uses transactions v2, so partitions and
    offsets join the transactions without AddPartitionsToTxn or AddOffsetsToTxn;
    with 1 it uses v1 and sends them."""
    broker = make_broker(env={"TRIBUTARY_TRANSACTIONS_VERSION": str(version)})
    broker.start()
    apis = ("AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "TxnOffsetCommit")
    before = {api: requests(broker, api) for api in apis}
    r = subprocess.run(["java", "-cp", java_build, "Txn", broker.bootstrap, unique("t")], capture_output=True,
                       timeout=240)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out.strip().endswith("OK"), (out + r.stderr.decode(errors="replace"))[-4000:]
    used = {api: requests(broker, api) - before[api] for api in apis}
    print(f"transaction.version {version}: {used}")
    assert used["EndTxn"] >= 2 and used["TxnOffsetCommit"] >= 2, used
    if version == 2:
        assert used["AddPartitionsToTxn"] == 0 and used["AddOffsetsToTxn"] == 0, used
    else:
        assert used["AddPartitionsToTxn"] >= 2 and used["AddOffsetsToTxn"] >= 2, used


def test_java_admin_round_trips(java_build, broker):
    """Admin: create, incremental config change described and in effect,
    CreatePartitions, DeleteRecords with the new low watermark, DescribeCluster,
    DeleteTopics."""
    r = subprocess.run(["java", "-cp", java_build, "AdminOps", broker.bootstrap, unique("jadm")], capture_output=True,
                       timeout=240)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out.strip().endswith("OK"), (out + r.stderr.decode(errors="replace"))[-4000:]


def test_java_admin_describes_topics_page_by_page_with_describe_topic_partitions(java_build, broker):
    """The Java Admin's describeTopics uses DescribeTopicPartitions (KIP-966) and
    follows its cursor: topics of 25, 3 and 1 partitions described whole at 10, 4 and
    1 partitions per answer and at the default, a missing topic answered alone."""
    def calls():
        prefix = 'tributary_requests_total{api="DescribeTopicPartitions"} '
        return next((float(l[len(prefix):]) for l in broker.metrics().splitlines() if l.startswith(prefix)), 0.0)

    before = calls()
    r = subprocess.run(["java", "-cp", java_build, "DescribeTopics", broker.bootstrap, unique("jdt")],
                       capture_output=True, timeout=240)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out.strip().endswith("OK"), (out + r.stderr.decode(errors="replace"))[-4000:]
    # 29 partitions: 3 answers at 10, 8 at 4, 29 at 1 (each topic's end too), 1 at the
    # default, then 7 at 5 with the missing topic; at least the pages, whatever the
    # client adds.
    used = calls() - before
    print(f"DescribeTopicPartitions requests: {used:.0f}")
    assert used >= 3 + 8 + 29 + 1 + 6, f"the Admin asked DescribeTopicPartitions {used} times"


def test_java_client_quotas_throttle_and_persist(java_build, make_broker):
    """AlterClientQuotas / DescribeClientQuotas from the Java Admin client; a producer
    and a consumer over their byte rates are slowed to them and see throttle time;
    the quotas survive a restart. Short quota windows keep the first burst small."""
    broker = make_broker(env={"TRIBUTARY_QUOTAS_WINDOW_MS": "500", "TRIBUTARY_QUOTAS_WINDOW_SAMPLES": "2"})
    broker.start()
    topic = unique("jq")
    for phase in ("throttle", "persisted"):
        r = subprocess.run(["java", "-cp", java_build, "Quotas", broker.bootstrap, topic, phase], capture_output=True,
                           timeout=240)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0 and out.strip().endswith("OK"), (out + r.stderr.decode(errors="replace"))[-4000:]
        if phase == "throttle":
            throttled = {}
            for line in broker.metrics().splitlines():
                if line.startswith("tributary_quota_throttled_responses_total{"):
                    throttled[line.split('quota="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
            assert throttled.get("produce", 0) > 0 and throttled.get("fetch", 0) > 0, throttled
            broker.restart()
