"""Apache Kafka 4.4 itself beside Tributary, asked the same questions:

- ApiVersions (through kafka-broker-api-versions): the API keys Kafka serves and
  Tributary does not, and those Tributary serves at a lower version, are exactly
  the ones the README lists with their reasons; Tributary serves nothing Kafka
  does not but client telemetry (Kafka serves it only with a metrics plugin).
- kafka-configs for group configs and dynamic broker configs: the same lines
  (KRaft's storage format makes min.insync.replicas=1 a dynamic default of every
  Kafka cluster; Tributary's is fixed at 1, so that line is left out).
- The same client-visible behaviour, probed with confluent-kafka against both: edge
  cases where Tributary once differed and the everyday answers tools depend on.
- The Java programs of the Java client tests pass against Kafka too, so what they
  assert of Tributary is what Kafka does."""

import re
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec

from conftest import unique, wait_until
from test_java_client import java_build  # noqa: F401  (the compiled Java programs)

# Served by Kafka 4.4, not by Tributary (README, "The other Kafka API keys").
NOT_SERVED = {34, 38, 39, 40, 41, 45, 46, 55, 57, 64, 76, 77, 78, 79, 80, 81, 83, 84, 85, 86, 87, 88, 89, 90, 91,
              92, 93, 94}
# Served by Tributary, not by Kafka 4.4 as the test starts it: client telemetry
# (GetTelemetrySubscriptions, PushTelemetry), which Kafka serves only with a metrics
# plugin installed.
ONLY_OURS = {71, 72}
# Served by both, by Tributary up to a lower version: key -> (Tributary's, Kafka's).
# None: every API both serve, Tributary serves up to Kafka 4.4's newest version.
LOWER = {}


def api_versions(classpath, bootstrap):
    """key -> (name, highest version served or None)."""
    r = subprocess.run(["java", "-cp", classpath, "org.apache.kafka.tools.BrokerApiVersionsCommand",
                        "--bootstrap-server", bootstrap], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = {}
    for m in re.finditer(r"(\w+)\((\d+)\): (UNSUPPORTED|(\d+)(?: to (\d+))?)", r.stdout):
        out[int(m.group(2))] = (m.group(1), None if m.group(3) == "UNSUPPORTED" else int(m.group(5) or m.group(4)))
    assert out, r.stdout
    return out


def test_api_versions_differ_from_kafkas_only_as_documented(kafka_classpath, apache_kafka, broker):
    kafka = api_versions(kafka_classpath, apache_kafka.bootstrap)
    ours = api_versions(kafka_classpath, broker.bootstrap)
    not_served = {k for k, (_, v) in kafka.items() if v is not None and ours.get(k, (None, None))[1] is None}
    only_ours = {k for k, (_, v) in ours.items() if v is not None and kafka.get(k, (None, None))[1] is None}
    lower = {k: (ours[k][1], v) for k, (_, v) in kafka.items()
             if v is not None and ours.get(k, (None, None))[1] is not None and ours[k][1] < v}
    higher = {k: (ours[k][1], v) for k, (_, v) in kafka.items()
              if v is not None and ours.get(k, (None, None))[1] is not None and ours[k][1] > v}
    names = {k: n for k, (n, _) in kafka.items()}
    print("not served:", sorted(names[k] for k in not_served))
    print("lower:", {names[k]: v for k, v in lower.items()})
    assert not_served == NOT_SERVED, f"new: {sorted(not_served - NOT_SERVED)}, now served: {sorted(NOT_SERVED - not_served)}"
    assert lower == LOWER, lower
    assert only_ours == ONLY_OURS and not higher, (only_ours, higher)


def probe(bootstrap):
    """What a client sees of a few behaviours, as comparable values."""
    out = {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    compacted, plain = unique("cmp"), unique("pl")
    for f in admin.create_topics([NewTopic(compacted, 1, 1, config={"cleanup.policy": "compact"}),
                                  NewTopic(plain, 2, 1)]).values():
        f.result(timeout=30)

    # A keyless record on a compacted topic (KIP-467: INVALID_RECORD).
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0, "message.timeout.ms": 15000})
    p.produce(compacted, value=b"no key", on_delivery=lambda err, msg: errors.append(err and err.name()))
    p.produce(compacted, key=b"k", value=b"keyed", on_delivery=lambda err, msg: errors.append(err and err.name()))
    p.flush(30)
    out["keyless, then keyed, on a compacted topic"] = errors

    # Watermarks of an empty partition, and offsets by a timestamp in the future.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("w"), "enable.auto.commit": False})
    out["watermarks of an empty partition"] = c.get_watermark_offsets(TopicPartition(plain, 0), timeout=10)
    future = int(time.time() * 1000) + 3_600_000
    out["offset for a future timestamp"] = c.offsets_for_times([TopicPartition(plain, 0, future)], timeout=10)[0].offset
    c.close()

    # A consumer that assign()s and commits, on each group protocol (simple-group
    # commits), and what its group then looks like.
    for protocol in ("classic", "consumer"):
        group = unique(f"as-{protocol}")
        conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        if protocol == "consumer":
            conf["group.protocol"] = "consumer"
        c = Consumer(conf)
        c.assign([TopicPartition(plain, 0, 0)])
        try:
            c.commit(offsets=[TopicPartition(plain, 0, 7)], asynchronous=False)
            committed = c.committed([TopicPartition(plain, 0)], timeout=10)[0].offset
        except KafkaException as e:
            committed = e.args[0].name()
        c.close()
        out[f"assign() and commit on the {protocol} protocol"] = committed

    # A classic group whose only member left: Empty, listed as a consumer group.
    group = unique("emptied")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([plain])
    wait_until(lambda: c.poll(0.2) is None and c.assignment(), timeout=60, what="an assignment")
    c.commit(offsets=[TopicPartition(plain, 0, 0)], asynchronous=False)
    c.close()
    desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
    out["an emptied classic group"] = (desc.state.name, desc.is_simple_consumer_group)
    listed = admin.list_consumer_groups().result(timeout=30)
    mine = [g for g in listed.valid if g.group_id == group]
    out["listed"] = [(g.is_simple_consumer_group, g.state.name) for g in mine]

    # Deleting records past the high watermark.
    try:
        admin.delete_records([TopicPartition(plain, 1, 5)])[TopicPartition(plain, 1, 5)].result(timeout=30)
        out["delete records past the end"] = "ok"
    except KafkaException as e:
        out["delete records past the end"] = e.args[0].name()

    # A topic config that is not valid, and an unknown one.
    for name, config in (("bad value", {"retention.ms": "soon"}), ("unknown key", {"no.such.config": "1"})):
        t = unique("bad")
        try:
            admin.create_topics([NewTopic(t, 1, 1, config=config)])[t].result(timeout=30)
            out[f"create with a {name}"] = "created"
        except KafkaException as e:
            out[f"create with a {name}"] = e.args[0].name()

    # Defaults a tool reads back.
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, plain)])
    configs = next(iter(res.values())).result(timeout=30)
    out["topic defaults"] = {k: (configs[k].value, configs[k].is_default) for k in
                             ("cleanup.policy", "max.message.bytes", "compression.type", "retention.ms")}
    # (Kafka 4.4 with eligible leader replicas writes min.insync.replicas as a
    # cluster-level dynamic config at format time: the same value, another source.)
    out["min.insync.replicas"] = configs["min.insync.replicas"].value
    # Latest offsets through the admin API.
    listed = admin.list_offsets({TopicPartition(plain, 0): OffsetSpec.latest()})
    out["admin latest offset of an empty partition"] = listed[TopicPartition(plain, 0)].result(timeout=30).offset
    return out


def test_the_same_questions_get_the_same_answers(apache_kafka, broker):
    kafka, ours = probe(apache_kafka.bootstrap), probe(broker.bootstrap)
    for question in kafka:
        print(f"{question}: Kafka {kafka[question]!r}, Tributary {ours[question]!r}")
    different = {q: (kafka[q], ours[q]) for q in kafka if kafka[q] != ours[q]}
    assert not different, different


@pytest.mark.parametrize("program", ["Txn", "DescribeTopics", "AdminOps"])
def test_the_java_programs_pass_against_kafka_too(java_build, apache_kafka, program):  # noqa: F811
    r = subprocess.run(["java", "-cp", java_build, program, apache_kafka.bootstrap, unique("k")], capture_output=True,
                       timeout=240)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out.strip().endswith("OK"), (out + r.stderr.decode(errors="replace"))[-4000:]


def test_group_configs_are_set_and_described_as_kafka_does(kafka_classpath, apache_kafka, broker):
    """kafka-configs --entity-type groups against both: the same consumer.* lines."""
    def configs(bootstrap, group):
        def run(*args):
            r = subprocess.run(["java", "-cp", kafka_classpath, "org.apache.kafka.tools.ConfigCommand",
                                "--bootstrap-server", bootstrap, "--entity-type", "groups", "--entity-name", group,
                                *args], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout
        run("--alter", "--add-config", "consumer.session.timeout.ms=50000")
        lines = [l.strip() for l in run("--describe", "--all").splitlines()]
        return sorted(l for l in lines if l.startswith(("consumer.session", "consumer.heartbeat")))

    group = unique("gcfg")
    kafka, ours = configs(apache_kafka.bootstrap, group), configs(broker.bootstrap, group)
    print("\n".join(kafka))
    assert ours == kafka, (ours, kafka)


def test_dynamic_broker_configs_are_set_and_described_as_kafka_does(kafka_classpath, apache_kafka, broker):
    """kafka-configs --entity-type brokers against both: the same lines for the
    cluster-wide default and for one broker, the same refusal of a static setting.
    Everything set is removed again (the Kafka broker is shared by the module)."""
    def configs(bootstrap, *args, fails=False):
        r = subprocess.run(["java", "-cp", kafka_classpath, "org.apache.kafka.tools.ConfigCommand",
                            "--bootstrap-server", bootstrap, "--entity-type", "brokers", *args],
                           capture_output=True, text=True, timeout=120)
        assert (r.returncode != 0) == fails, r.stdout + r.stderr
        return r.stdout + (r.stderr if fails else "")

    def same(text, node):
        """The node id out, and min.insync.replicas=1 out: KRaft's storage format sets
        it as a dynamic default of every Kafka cluster; Tributary's is fixed at 1."""
        return "\n".join(l for l in text.replace(f"broker {node} ", "broker N ").splitlines()
                         if not l.strip().startswith("min.insync.replicas="))

    def session(bootstrap, node):
        out = {}
        configs(bootstrap, "--entity-default", "--alter", "--add-config", "log.retention.ms=7200000")
        out["default"] = configs(bootstrap, "--entity-default", "--describe")
        configs(bootstrap, "--entity-name", node, "--alter", "--add-config", "log.retention.ms=3600000")
        out["broker"] = configs(bootstrap, "--entity-name", node, "--describe")
        lines = configs(bootstrap, "--entity-name", node, "--describe", "--all").splitlines()
        out["broker --all"] = sorted(l.strip() for l in lines if l.strip().startswith("log.retention.ms="))
        refused = configs(bootstrap, "--entity-name", node, "--alter", "--add-config", "node.id=7", fails=True)
        out["static"] = "Cannot update these configs dynamically" in refused and "node.id" in refused
        configs(bootstrap, "--entity-name", node, "--alter", "--delete-config", "log.retention.ms")
        configs(bootstrap, "--entity-default", "--alter", "--delete-config", "log.retention.ms")
        out["removed"] = configs(bootstrap, "--entity-default", "--describe")
        return {k: same(v, node) if isinstance(v, str) else v for k, v in out.items()}

    kafka, ours = session(apache_kafka.bootstrap, "1"), session(broker.bootstrap, "0")
    for k in kafka:
        print(f"{k}:\n  Kafka {kafka[k]!r}\n  Tributary {ours[k]!r}")
    assert ours == kafka
