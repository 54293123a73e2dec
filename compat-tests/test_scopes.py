"""Scopes (tenants): with `[security.scopes]` on, `alice@acme` is in scope acme and
`bob@beta` in beta. Each sees only its scope's topics, groups and transactional
ids, under their plain names: both create `orders`, read their own records in
their own group `g`, use the same transactional id without fencing each other,
and list only their own. A principal without a scope stays in the default scope
(the names as before); an operator sees every scope's names as stored
(`acme/orders`). A scope over its partition limit gets POLICY_VIOLATION."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from conftest import unique, wait_until

CONFIG = """
[security]
protocol = "SASL_PLAINTEXT"
super_users = ["User:admin"]
[security.scopes]
enabled = true
max_partitions = 6
[security.bootstrap_users]
admin = "admin-secret"
"alice@acme" = "alice-secret"
"bob@beta" = "bob-secret"
carol = "carol-secret"
"""


@pytest.fixture
def scoped(make_broker):
    b = make_broker("scopes", config_text=CONFIG)
    b.start()
    return b


def conf(broker, user, **extra):
    password = user.split("@")[0] + "-secret"
    return {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": password, **extra}


def produce(broker, user, topic, values, **extra):
    p = Producer(conf(broker, user, acks="all", **extra))
    for v in values:
        p.produce(topic, value=v.encode())
    assert p.flush(20) == 0


def consume(broker, user, topic, group, n):
    c = Consumer(conf(broker, user, **{"group.id": group, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.commit(asynchronous=False)
    c.close()
    return got


def topics(broker, user):
    return {t for t in AdminClient(conf(broker, user)).list_topics(timeout=10).topics if not t.startswith("__")}


def test_two_scopes_each_have_their_own_orders_groups_and_transactional_ids(scoped):
    alice, bob, carol = "alice@acme", "bob@beta", "carol"
    for user, parts in ((alice, 3), (bob, 2), (carol, 1)):
        admin = AdminClient(conf(scoped, user))  # kept until its answer is in
        admin.create_topics([NewTopic("orders", parts)])["orders"].result(timeout=20)
    produce(scoped, alice, "orders", [f"acme-{i}" for i in range(30)])
    produce(scoped, bob, "orders", [f"beta-{i}" for i in range(20)])
    produce(scoped, carol, "orders", [f"default-{i}" for i in range(10)])
    # Each reads only its own stream, in its own group `g`.
    assert sorted(consume(scoped, alice, "orders", "g", 30)) == sorted(f"acme-{i}" for i in range(30))
    assert sorted(consume(scoped, bob, "orders", "g", 20)) == sorted(f"beta-{i}" for i in range(20))
    assert sorted(consume(scoped, carol, "orders", "g", 10)) == sorted(f"default-{i}" for i in range(10))
    # The same names, different streams: partition counts tell them apart.
    md = {u: AdminClient(conf(scoped, u)).list_topics("orders", timeout=10).topics["orders"] for u in (alice, bob)}
    assert (len(md[alice].partitions), len(md[bob].partitions)) == (3, 2)
    # Listings show only the scope's own names.
    assert topics(scoped, alice) == {"orders"} and topics(scoped, bob) == {"orders"}
    assert topics(scoped, carol) == {"orders"}
    assert {"acme/orders", "beta/orders", "orders"} <= topics(scoped, "admin")
    admins = {u: AdminClient(conf(scoped, u)) for u in (alice, bob, "admin")}
    groups = {u: {g.group_id for g in a.list_consumer_groups().result(timeout=20).valid} for u, a in admins.items()}
    assert groups[alice] == {"g"} and groups[bob] == {"g"}, groups
    assert {"acme/g", "beta/g", "g"} <= groups["admin"], groups["admin"]
    # Each scope in /metrics.
    metrics = scoped.metrics()
    assert 'tributary_scope_partitions{scope="acme"} 3' in metrics, metrics
    assert 'tributary_scope_partitions{scope="beta"} 2' in metrics
    assert 'tributary_scope_topics{scope="acme"} 1' in metrics
    # Committed offsets are per scope.
    for user, total in ((alice, 30), (bob, 20)):
        c = Consumer(conf(scoped, user, **{"group.id": "g"}))
        n = len(AdminClient(conf(scoped, user)).list_topics("orders", timeout=10).topics["orders"].partitions)
        committed = c.committed([TopicPartition("orders", p) for p in range(n)], timeout=10)
        c.close()
        assert sum(tp.offset for tp in committed if tp.offset >= 0) == total, (user, committed)


def test_the_same_transactional_id_in_two_scopes_does_not_fence(scoped):
    for user in ("alice@acme", "bob@beta"):
        admin = AdminClient(conf(scoped, user))
        admin.create_topics([NewTopic("ledger", 1)])["ledger"].result(timeout=20)
    a = Producer(conf(scoped, "alice@acme", **{"transactional.id": "tx"}))
    a.init_transactions(15)
    b = Producer(conf(scoped, "bob@beta", **{"transactional.id": "tx"}))
    b.init_transactions(15)
    for p, v in ((a, b"alice"), (b, b"bob")):
        p.begin_transaction()
        p.produce("ledger", value=v)
        p.commit_transaction(15)
    got = consume(scoped, "alice@acme", "ledger", unique("g"), 1)
    assert got == ["alice"]


def test_a_scope_cannot_name_another_and_stays_within_its_partition_limit(scoped):
    beta = AdminClient(conf(scoped, "bob@beta"))
    beta.create_topics([NewTopic("secret", 1)])["secret"].result(timeout=20)
    produce(scoped, "bob@beta", "secret", ["classified"])
    alice = AdminClient(conf(scoped, "alice@acme"))
    # beta/secret is not a name alice can give: it is invalid, and nothing is made.
    with pytest.raises(KafkaException) as e:
        alice.create_topics([NewTopic("beta/secret", 1)])["beta/secret"].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    assert "secret" not in topics(scoped, "alice@acme")
    err = []
    p = Producer(conf(scoped, "alice@acme", **{"message.timeout.ms": 5000, "log_level": 0}))
    p.produce("beta/secret", value=b"x", on_delivery=lambda e, m: err.append(e))
    p.flush(10)
    assert err and err[0] is not None
    # The partition limit: 6 per scope.
    alice.create_topics([NewTopic("five", 5)])["five"].result(timeout=20)
    with pytest.raises(KafkaException) as e:
        alice.create_topics([NewTopic("two", 2)])["two"].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.POLICY_VIOLATION
    with pytest.raises(KafkaException) as e:
        alice.create_partitions([NewPartitions("five", 7)])["five"].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.POLICY_VIOLATION
    alice.create_topics([NewTopic("one", 1)])["one"].result(timeout=20)
    # Another scope is not held back by acme's use.
    beta.create_topics([NewTopic("five", 5)])["five"].result(timeout=20)


LIMITED = CONFIG.replace("max_partitions = 6", "max_partitions = 6\nmax_connections = 2\nmax_stored_bytes = 20000\n"
                                                "usage_interval_ms = 200")


def test_scope_limits_on_connections_stored_bytes_and_byte_rates(make_broker):
    from rawkafka import Conn, Reader, s16
    import struct

    b = make_broker("limited", config_text=LIMITED)
    b.start()

    def login(user, password):
        conn = Conn(b.port)
        assert Reader(conn.request(17, 1, s16("PLAIN"))).i16() == 0
        token = b"\0" + user.encode() + b"\0" + password.encode()
        return conn, Reader(conn.request(36, 1, struct.pack(">i", len(token)) + token)).i16()

    # Two connections of acme are its limit; the third fails its authentication,
    # another scope's does not; closing one makes room.
    first, second = login("alice@acme", "alice-secret"), login("alice@acme", "alice-secret")
    assert (first[1], second[1]) == (0, 0)
    third = login("alice@acme", "alice-secret")
    assert third[1] == 58  # SASL_AUTHENTICATION_FAILED
    assert login("bob@beta", "bob-secret")[1] == 0
    first[0].close()
    assert wait_login(login, "alice@acme", "alice-secret")
    second[0].close()

    # Stored bytes: past 20,000 bytes acme's produce is refused; beta goes on.
    for user in ("alice@acme", "bob@beta"):
        admin = AdminClient(conf(b, user))
        admin.create_topics([NewTopic("big", 1)])["big"].result(timeout=20)
    produce(b, "alice@acme", "big", ["x" * 1000 for _ in range(30)])

    def refused():
        errors = []
        p = Producer(conf(b, "alice@acme", **{"message.timeout.ms": 5000, "retries": 0}))
        p.produce("big", value=b"more", on_delivery=lambda e, m: errors.append(e))
        p.flush(10)
        return errors and errors[0] is not None and errors[0].code() == KafkaError.POLICY_VIOLATION

    wait_until(refused, timeout=20, what="acme's produce refused over its storage limit")
    produce(b, "bob@beta", "big", ["y" * 100 for _ in range(10)])

    # Byte rates: a scope's principals share the quota of user `scope:<name>`.
    # (AlterClientQuotas v0, as kafka-configs sends it, from the operator.)
    conn, code = login("admin", "admin-secret")
    assert code == 0
    entity = "scope:beta"
    body = struct.pack(">i", 1) + struct.pack(">i", 1) + s16("user") + s16(entity) \
        + struct.pack(">i", 1) + s16("producer_byte_rate") + struct.pack(">d?", 2000.0, False) + struct.pack(">?", False)
    r = Reader(conn.request(49, 0, body))
    r.i32()
    assert r.i32() == 1 and r.i16() == 0
    before = throttled(b)
    produce(b, "bob@beta", "big", ["z" * 1000 for _ in range(20)])
    wait_until(lambda: throttled(b) > before, timeout=20, what="beta's producer throttled by its scope's quota")
    assert any(line.startswith("tributary_scope_throttled_responses_total{") and 'scope="beta"' in line
               and 'quota="produce"' in line for line in b.metrics().splitlines())


def wait_login(login, user, password):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conn, code = login(user, password)
        if code == 0:
            conn.close()
            return True
        time.sleep(0.1)
    return False


def throttled(broker):
    total = 0.0
    for line in broker.metrics().splitlines():
        if line.startswith("tributary_quota_throttled_responses_total{") and 'quota="produce"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
