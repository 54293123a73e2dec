"""Client telemetry (KIP-714): subscriptions made with Kafka's own
kafka-client-metrics tool (ClientMetricsCommand, kafka-tools 4.4), and the metrics
the Java client 4.4 and librdkafka push exported on the broker's /metrics with
the broker's client labels. Kafka itself exports pushed metrics only through a
plugin, so there is nothing of Kafka's to compare the export with."""

import subprocess
import time

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from conftest import unique, wait_until
from test_kafka_tools import tool  # noqa: F401  (the fixture)


def pushed(broker, client_id):
    """{(metric name, frozenset of labels): value} of the series pushed by `client_id`."""
    out = {}
    for family in text_string_to_metric_families(broker.metrics()):
        for s in family.samples:
            if s.labels.get("client_id") == client_id:
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_client_metrics_subscriptions_are_managed_with_kafkas_tool_and_durable(tool, broker):
    name = unique("cm")
    tool("ClientMetricsCommand", "--alter", "--name", name, "--metrics",
         "org.apache.kafka.producer.,org.apache.kafka.consumer.fetch", "--interval", "2000",
         "--match", "client_id=app-.*,client_software_name=apache-kafka-java")
    described = tool("ClientMetricsCommand", "--describe", "--name", name)
    assert f"Client metrics configs for {name} are:" in described, described
    assert "metrics=org.apache.kafka.producer.,org.apache.kafka.consumer.fetch" in described, described
    assert "interval.ms=2000" in described, described
    assert "match=client_id=app-.*,client_software_name=apache-kafka-java" in described, described
    assert name in tool("ClientMetricsCommand", "--list").split()
    # Kafka's checks: the interval's bounds, the properties a pattern may name.
    bad = tool("ClientMetricsCommand", "--alter", "--name", name, "--interval", "50", fails=True)
    assert "interval.ms" in bad, bad
    bad = tool("ClientMetricsCommand", "--alter", "--name", name, "--match", "hostname=x", fails=True)
    assert "hostname" in bad, bad
    assert "interval.ms=2000" in tool("ClientMetricsCommand", "--describe", "--name", name)
    # Durable: the same after a restart.
    broker.restart()
    assert "interval.ms=2000" in tool("ClientMetricsCommand", "--describe", "--name", name)
    tool("ClientMetricsCommand", "--delete", "--name", name)
    assert name not in tool("ClientMetricsCommand", "--list").split()


def test_java_client_and_librdkafka_push_what_they_are_subscribed_to(tool, broker, kafka_classpath):
    topic = unique("tele")
    tool("TopicCommand", "--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1")
    tool("ClientMetricsCommand", "--alter", "--name", unique("producers"), "--metrics",
         "org.apache.kafka.producer.", "--interval", "1000", "--match", "client_id=telemetry-.*")

    # The Java client 4.4 (enable.metrics.push is on by default), producing at a
    # bounded rate for at most two minutes while the test watches /metrics.
    java = subprocess.Popen(
        ["java", "-cp", kafka_classpath, "org.apache.kafka.tools.ProducerPerformance",
         "--topic", topic, "--num-records", "24000", "--record-size", "100", "--throughput", "200",
         "--producer-props", f"bootstrap.servers={broker.bootstrap}", "client.id=telemetry-java"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def java_pushed():
            return [k for k in pushed(broker, "telemetry-java") if k[0].startswith("org_apache_kafka_producer_")]

        wait_until(lambda: java_pushed(), timeout=90, what="the Java client's pushed metrics on /metrics")
        series = pushed(broker, "telemetry-java")
        labels = dict(next(iter(series))[1])
        assert labels["client_software_name"] == "apache-kafka-java", labels
        assert labels["client_software_version"].startswith("4.4"), labels
        assert len(labels["client_instance_id"]) == 36, labels
        # Only what the subscription asked for.
        assert all(name.startswith("org_apache_kafka_producer_") for name, _ in series), sorted(series)
        # Counters keep counting from push to push (cumulative, as asked).
        sent = [k for k in series if k[0] == "org_apache_kafka_producer_record_send_total"
                or k[0].startswith("org_apache_kafka_producer_topic_record_send_total")]
        assert sent, sorted(n for n, _ in series)
        first = series[sent[0]]
        wait_until(lambda: pushed(broker, "telemetry-java").get(sent[0], 0) > first, timeout=60,
                   what="a later push with a higher count")
    finally:
        java.kill()
        java.wait()

    # librdkafka (confluent-kafka 2.16): the same subscription matches it; a client
    # beside it that no subscription matches is asked for nothing and pushes nothing.
    p = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "telemetry-rd"})
    other = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "other-rd"})
    deadline = time.monotonic() + 90
    while not pushed(broker, "telemetry-rd") and time.monotonic() < deadline:
        for producer in (p, other):
            producer.produce(topic, b"x")
            producer.poll(0.2)
    for producer in (p, other):
        assert producer.flush(10) == 0
    series = pushed(broker, "telemetry-rd")
    assert series, "librdkafka pushed nothing within 90 s"
    assert all(name.startswith("org_apache_kafka_producer_") for name, _ in series), sorted(series)
    assert not pushed(broker, "other-rd")
    ok = [s.value for f in text_string_to_metric_families(broker.metrics())
          for s in f.samples if s.name == "tributary_client_telemetry_pushes_total" and s.labels == {"result": "ok"}]
    assert ok and ok[0] >= 3, ok
