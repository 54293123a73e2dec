"""Authorization: ACLs managed with Kafka's own kafka-acls and the Admin API, and
checked on every request with Kafka's semantics and error codes. Principals
authenticate with SASL/SCRAM; `admin` is a super user. The matrix covers topics
(produce, consume, describe, create, delete, configs), groups, transactional ids
and the cluster, LITERAL and PREFIXED patterns, DENY over ALLOW, and ACLs
surviving a restart."""

import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ConfigResource, NewTopic, ResourcePatternType, ResourceType)

from conftest import unique, wait_until
from test_java_client import java_build  # noqa: F401  (the compiled Java programs)

CONFIG = """
[security]
protocol = "SASL_PLAINTEXT"
authorizer = true
super_users = ["User:admin"]
[security.bootstrap_users]
admin = "admin-secret"
alice = "alice-secret"
bob = "bob-secret"
"""


@pytest.fixture
def secured(make_broker):
    b = make_broker("acl", config_text=CONFIG)
    b.start()
    return b


def conf(broker, user, **extra):
    return {
        "bootstrap.servers": broker.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": f"{user}-secret",
        **extra,
    }


def kafka_acls(broker, kafka_classpath, tmp_path, *args, user="admin", fails=False):
    props = tmp_path / f"{user}.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        f'username="{user}" password="{user}-secret";\n')
    cmd = ["java", "-cp", kafka_classpath, "org.apache.kafka.tools.AclCommand", "--bootstrap-server",
           broker.bootstrap, "--command-config", str(props), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if fails:
        assert r.returncode != 0 or "Error" in r.stdout + r.stderr, r.stdout + r.stderr
        return r.stdout + r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def produce_error(broker, user, topic, **extra):
    """The error of producing one record as `user` (None when acknowledged)."""
    p = Producer(conf(broker, user, **extra, **{"message.timeout.ms": 10000, "log_level": 0}))
    errors = []
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert errors, "no delivery report"
    return errors[0]


def create(broker, topic, partitions=1):
    admin = AdminClient(conf(broker, "admin"))
    admin.create_topics([NewTopic(topic, partitions)])[topic].result(timeout=20)


def add(broker, *bindings):
    admin = AdminClient(conf(broker, "admin"))
    for f in admin.create_acls(list(bindings)).values():
        f.result(timeout=20)


def allow(rtype, name, principal, op, pattern=ResourcePatternType.LITERAL, permission=AclPermissionType.ALLOW):
    return AclBinding(rtype, name, pattern, principal, "*", op, permission)


def test_topic_acls_with_kafka_acls_prefixed_and_deny_over_allow(secured, kafka_classpath, tmp_path):
    prefix = unique("orders") + "-"
    open_topic, secret, other = prefix + "eu", prefix + "secret", unique("other")
    for t in (open_topic, secret, other):
        create(secured, t)
    # No ACL: alice may not write anywhere; the super user may.
    assert produce_error(secured, "alice", open_topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(secured, "admin", open_topic) is None
    kafka_acls(secured, kafka_classpath, tmp_path, "--add", "--allow-principal", "User:alice", "--operation",
               "Write", "--topic", prefix, "--resource-pattern-type", "prefixed")
    kafka_acls(secured, kafka_classpath, tmp_path, "--add", "--deny-principal", "User:alice", "--operation",
               "Write", "--topic", secret)
    listed = kafka_acls(secured, kafka_classpath, tmp_path, "--list", "--topic", prefix, "--resource-pattern-type",
                        "prefixed")
    assert "User:alice" in listed and "WRITE" in listed and "ALLOW" in listed, listed
    assert produce_error(secured, "alice", open_topic) is None
    assert produce_error(secured, "alice", secret).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, "DENY wins"
    assert produce_error(secured, "alice", other).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(secured, "bob", open_topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # WRITE implies DESCRIBE: alice's metadata shows the prefixed topics, nothing else.
    seen = set(AdminClient(conf(secured, "alice")).list_topics(timeout=10).topics)
    assert open_topic in seen and secret in seen and other not in seen, seen
    assert other in AdminClient(conf(secured, "admin")).list_topics(timeout=10).topics
    # Removing the ALLOW takes the right away again.
    kafka_acls(secured, kafka_classpath, tmp_path, "--remove", "--force", "--allow-principal", "User:alice",
               "--operation", "Write", "--topic", prefix, "--resource-pattern-type", "prefixed")
    assert produce_error(secured, "alice", open_topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def consume_error(broker, user, topic, group):
    c = Consumer(conf(broker, user, **{"group.id": group, "auto.offset.reset": "earliest", "log_level": 0}))
    c.subscribe([topic])
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                return m.error()
            return None
        raise AssertionError("neither a record nor an error")
    finally:
        c.close()


def test_consuming_needs_read_on_the_topic_and_the_group(secured):
    topic, group = unique("consumed"), unique("g")
    create(secured, topic)
    assert produce_error(secured, "admin", topic) is None
    err = consume_error(secured, "alice", topic, group)
    assert err is not None and err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                              KafkaError.GROUP_AUTHORIZATION_FAILED), err
    add(secured, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ))
    err = consume_error(secured, "alice", topic, group)
    assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    add(secured, allow(ResourceType.GROUP, group, "User:alice", AclOperation.READ))
    assert consume_error(secured, "alice", topic, group) is None
    # Committed offsets are visible to whoever may describe the group.
    c = Consumer(conf(secured, "alice", **{"group.id": group, "enable.auto.commit": False}))
    from confluent_kafka import TopicPartition
    committed = c.committed([TopicPartition(topic, 0)], timeout=10)
    c.close()
    assert committed[0].error is None


def test_transactions_need_write_on_the_transactional_id(secured):
    topic, txn = unique("txn"), unique("tid")
    create(secured, topic)
    add(secured, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.WRITE))
    p = Producer(conf(secured, "alice", **{"transactional.id": txn, "log_level": 0}))
    with pytest.raises(KafkaException) as e:
        p.init_transactions(15)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    add(secured, allow(ResourceType.TRANSACTIONAL_ID, txn, "User:alice", AclOperation.WRITE))
    p = Producer(conf(secured, "alice", **{"transactional.id": txn}))
    p.init_transactions(15)
    p.begin_transaction()
    p.produce(topic, value=b"in a transaction")
    p.commit_transaction(15)


def test_idempotent_producers_need_write_somewhere_or_idempotent_write(secured):
    topic = unique("idem")
    create(secured, topic)
    assert produce_error(secured, "bob", topic, **{"enable.idempotence": True}).code() in (
        KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    add(secured, allow(ResourceType.TOPIC, topic, "User:bob", AclOperation.WRITE))
    assert produce_error(secured, "bob", topic, **{"enable.idempotence": True}) is None


def test_admin_operations_and_their_codes(secured, kafka_classpath, tmp_path):
    alice = AdminClient(conf(secured, "alice"))
    topic = unique("adm")
    # Creating a topic needs CREATE on the cluster or on the topic.
    with pytest.raises(KafkaException) as e:
        alice.create_topics([NewTopic(topic, 1)])[topic].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    add(secured, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.CREATE))
    alice.create_topics([NewTopic(topic, 1)])[topic].result(timeout=20)
    # Broker configs need DESCRIBE_CONFIGS on the cluster.
    with pytest.raises(KafkaException) as e:
        list(alice.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")]).values())[0].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # Deleting needs DELETE; without DESCRIBE the topic might as well not exist.
    with pytest.raises(KafkaException) as e:
        alice.delete_topics([topic])[topic].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    add(secured, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.DELETE))
    alice.delete_topics([topic])[topic].result(timeout=20)
    # ACLs themselves: only with ALTER / DESCRIBE on the cluster (the Java Admin
    # reports ClusterAuthorizationException; librdkafka 2.16 drops DescribeAcls'
    # top-level error, so kafka-acls asks).
    out = kafka_acls(secured, kafka_classpath, tmp_path, "--list", user="alice", fails=True)
    assert "ClusterAuthorizationException" in out, out
    out = kafka_acls(secured, kafka_classpath, tmp_path, "--add", "--allow-principal", "User:alice", "--operation",
                     "Read", "--topic", topic, user="alice", fails=True)
    assert "ClusterAuthorizationException" in out, out


def test_acls_are_described_deleted_and_durable(secured):
    admin = AdminClient(conf(secured, "admin"))
    name = unique("dur")
    bindings = [
        allow(ResourceType.TOPIC, name, "User:alice", AclOperation.READ),
        allow(ResourceType.GROUP, name, "User:alice", AclOperation.ALL, pattern=ResourcePatternType.PREFIXED),
        allow(ResourceType.TOPIC, name, "User:bob", AclOperation.WRITE, permission=AclPermissionType.DENY),
    ]
    add(secured, *bindings)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    assert set(bindings) <= set(admin.describe_acls(everything).result(timeout=20))
    secured.restart()
    admin = AdminClient(conf(secured, "admin"))
    assert set(bindings) <= set(admin.describe_acls(everything).result(timeout=20))
    # MATCH: the ACLs that apply to a resource of that name, whatever their pattern.
    match = AclBindingFilter(ResourceType.GROUP, name + "-x", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert admin.describe_acls(match).result(timeout=20) == [bindings[1]]
    only_bob = AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, "User:bob", None,
                                AclOperation.ANY, AclPermissionType.ANY)
    deleted = list(admin.delete_acls([only_bob]).values())[0].result(timeout=20)
    assert deleted == [bindings[2]]
    left = admin.describe_acls(everything).result(timeout=20)
    assert bindings[2] not in left and bindings[0] in left


def test_without_an_authorizer_acl_requests_are_security_disabled(broker, kafka_classpath):
    for args in (["--list"], ["--add", "--allow-principal", "User:x", "--operation", "Read", "--topic", "t"]):
        cmd = ["java", "-cp", kafka_classpath, "org.apache.kafka.tools.AclCommand", "--bootstrap-server",
               broker.bootstrap, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert "SecurityDisabledException" in r.stdout + r.stderr, r.stdout + r.stderr


def test_the_java_client_reports_each_refusal_with_kafkas_exception(secured, java_build):
    topic, group, txn = unique("jd"), unique("g"), unique("tx")
    create(secured, topic)
    add(secured, allow(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ))
    r = subprocess.run(["java", "-cp", java_build, "Denied", secured.bootstrap, "alice", "alice-secret", topic, group,
                        txn], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK denied"), (r.stdout + r.stderr)[-4000:]
