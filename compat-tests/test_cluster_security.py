"""Security in cluster mode: SASL users and ACLs live in etcd (users/, acls/), so a
user created or an ACL changed through one broker holds on every broker. Each
broker has a SASL_PLAINTEXT listener for clients beside its PLAINTEXT `default`
listener, on which brokers call each other (as User:ANONYMOUS, a super user)."""

import subprocess
import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic
from confluent_kafka.admin import ResourcePatternType, ResourceType

from clusterkit import SEALING, running_cluster
from conftest import free_port, unique, wait_until


def secure_top(node):
    if not hasattr(node, "sasl_port"):
        node.sasl_port = free_port()
    return SEALING + f"""
[security]
authorizer = true
super_users = ["User:ANONYMOUS", "User:admin"]
allow_everyone_if_no_acl_found = false
[security.scopes]
enabled = true
operators = ["User:ANONYMOUS"]
[security.bootstrap_users]
admin = "admin-secret"
"dave@acme" = "dave-secret"
"erin@beta" = "erin-secret"
[[listeners]]
name = "SASL"
listen = "127.0.0.1:{node.sasl_port}"
protocol = "SASL_PLAINTEXT"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from running_cluster(tmp_path_factory.mktemp("secure-cluster"), brokers=2, extra_top=secure_top)


def sasl(node, user, password, **extra):
    return {"bootstrap.servers": f"127.0.0.1:{node.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": password, "log_level": 0,
            **extra}


def can_login(node, user, password):
    try:
        Producer(sasl(node, user, password)).list_topics(timeout=4)
        return True
    except Exception:
        return False


def write(node, user, password, topic):
    errors = []
    p = Producer(sasl(node, user, password, **{"message.timeout.ms": 10000}))
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert errors, "no delivery report"
    return errors[0]


def test_users_and_acls_changed_through_one_broker_hold_on_every_broker(cluster, kafka_classpath, tmp_path):
    a, b = cluster.nodes
    # Each broker created the bootstrap user once; both accept it.
    assert can_login(a, "admin", "admin-secret") and can_login(b, "admin", "admin-secret")
    # Metadata through the SASL listener gives every broker's SASL address.
    md = AdminClient(sasl(a, "admin", "admin-secret")).list_topics(timeout=10)
    assert {m.port for m in md.brokers.values()} == {a.sasl_port, b.sasl_port}
    props = tmp_path / "admin.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="admin" password="admin-secret";\n')
    user = unique("carol")
    r = subprocess.run(["java", "-cp", kafka_classpath, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server",
                        f"127.0.0.1:{a.sasl_port}", "--command-config", str(props), "--alter", "--entity-type",
                        "users", "--entity-name", user, "--add-config", "SCRAM-SHA-256=[password=carol-secret]"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: can_login(b, user, "carol-secret"), timeout=30, what="the user on the other broker")
    assert not can_login(b, user, "wrong")
    # An ACL created through one broker lets the user write through the other.
    topic = unique("sec")
    admin_a = AdminClient(sasl(a, "admin", "admin-secret"))
    admin_a.create_topics([NewTopic(topic, 2)])[topic].result(timeout=30)
    assert write(b, user, "carol-secret", topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    for f in admin_a.create_acls([AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                             f"User:{user}", "*", AclOperation.WRITE,
                                             AclPermissionType.ALLOW)]).values():
        f.result(timeout=20)
    wait_until(lambda: write(b, user, "carol-secret", topic) is None, timeout=30,
               what="the ACL to hold through the other broker")
    # A DENY made through the other broker wins everywhere.
    admin_b = AdminClient(sasl(b, "admin", "admin-secret"))
    for f in admin_b.create_acls([AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                             f"User:{user}", "*", AclOperation.WRITE,
                                             AclPermissionType.DENY)]).values():
        f.result(timeout=20)
    wait_until(lambda: write(a, user, "carol-secret", topic) is not None, timeout=30,
               what="the DENY to hold through the first broker")


def test_scopes_hold_across_brokers_and_deleting_a_default_topic_spares_a_scope(cluster):
    """dave@acme and erin@beta each create `orders` through different brokers and
    read only their own records through the other; an operator deleting the
    default scope's topic `acme` leaves acme's `orders` (whose etcd history keys
    start alike) serving."""
    from confluent_kafka import Consumer

    a, b = cluster.nodes
    admin = AdminClient(sasl(a, "admin", "admin-secret"))
    # ACLs for the scoped users (the authorizer is on): all of their own scope.
    acls = [AclBinding(ResourceType.TOPIC, f"{scope}/", ResourcePatternType.PREFIXED, f"User:{user}", "*",
                       AclOperation.ALL, AclPermissionType.ALLOW)
            for user, scope in (("dave@acme", "acme"), ("erin@beta", "beta"))]
    acls += [AclBinding(ResourceType.GROUP, f"{scope}/", ResourcePatternType.PREFIXED, f"User:{user}", "*",
                        AclOperation.ALL, AclPermissionType.ALLOW)
             for user, scope in (("dave@acme", "acme"), ("erin@beta", "beta"))]
    for f in admin.create_acls(acls).values():
        f.result(timeout=20)
    admin.create_topics([NewTopic("acme", 1)])["acme"].result(timeout=30)
    for node, user, password in ((a, "dave@acme", "dave-secret"), (b, "erin@beta", "erin-secret")):
        mine = AdminClient(sasl(node, user, password))
        mine.create_topics([NewTopic("orders", 2)])["orders"].result(timeout=30)
    for node, user, password, tag in ((b, "dave@acme", "dave-secret", "acme"), (a, "erin@beta", "erin-secret", "beta")):
        p = Producer(sasl(node, user, password, acks="all"))
        for i in range(20):
            p.produce("orders", value=f"{tag}-{i}".encode())
        assert p.flush(30) == 0
    admin.delete_topics(["acme"])["acme"].result(timeout=30)
    wait_until(lambda: "acme" not in admin.list_topics(timeout=10).topics, timeout=30, what="acme deleted")

    def read(node, user, password):
        c = Consumer(sasl(node, user, password, **{"group.id": "g", "auto.offset.reset": "earliest"}))
        c.subscribe(["orders"])
        got = []
        deadline = time.monotonic() + 40
        while len(got) < 20 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value().decode())
        c.close()
        return sorted(got)

    assert read(a, "dave@acme", "dave-secret") == sorted(f"acme-{i}" for i in range(20))
    assert read(b, "erin@beta", "erin-secret") == sorted(f"beta-{i}" for i in range(20))
    seen = set(admin.list_topics(timeout=10).topics)
    assert {"acme/orders", "beta/orders"} <= seen and "acme" not in seen, seen
