"""TLS listeners: SSL and SASL_SSL beside PLAINTEXT on one broker, each client
given the broker's address on its own listener; mutual TLS with the principal
taken from the certificate subject (and checked by ACLs); certificates renewed
without a restart; and the refusals: no client certificate where one is required,
a certificate from another authority, plaintext on a TLS port, garbage
handshakes. Certificates are made by the test (compat-tests/tlskit.py)."""

import json
import random
import shutil
import socket
import ssl
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic
from confluent_kafka.admin import ResourcePatternType, ResourceType

from conftest import free_port, unique, wait_until
from tlskit import Pki


@pytest.fixture
def pki(tmp_path):
    p = Pki(tmp_path / "pki")
    p.server = p.issue("broker", "/CN=localhost", server=True)
    p.alice = p.issue("alice", "/O=acme/OU=eng/CN=alice")
    p.bob = p.issue("bob", "/O=acme/CN=bob")
    return p


def tls_broker(make_broker, pki, client_auth="none", authorizer=False, rules=None):
    ssl_port, sasl_ssl_port = free_port(), free_port()
    cert, key = pki.server
    text = f"""
[security]
authorizer = {str(authorizer).lower()}
super_users = ["User:admin"]
[security.bootstrap_users]
admin = "admin-secret"
[security.tls]
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{pki.ca}"
client_auth = "{client_auth}"
reload_interval_ms = 200
{"principal_mapping_rules = " + json.dumps(rules) if rules else ""}
[[listeners]]
name = "SSL"
listen = "127.0.0.1:{ssl_port}"
protocol = "SSL"
[[listeners]]
name = "SASL_SSL"
listen = "127.0.0.1:{sasl_ssl_port}"
protocol = "SASL_SSL"
"""
    b = make_broker(unique("tls"), config_text=text)
    b.ssl_port, b.sasl_ssl_port = ssl_port, sasl_ssl_port
    b.start()
    return b


def ssl_conf(broker, pki, client=None, **extra):
    c = {"bootstrap.servers": f"127.0.0.1:{broker.ssl_port}", "security.protocol": "SSL",
         "ssl.ca.location": str(pki.ca), "log_level": 0, **extra}
    if client:
        c["ssl.certificate.location"], c["ssl.key.location"] = str(client[0]), str(client[1])
    return c


def round_trip(conf, n=50):
    admin = AdminClient(conf)
    topic = unique("tls")
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=20)
    p = Producer(dict(conf, acks="all"))
    for i in range(n):
        p.produce(topic, value=f"{i}".encode())
    assert p.flush(20) == 0
    c = Consumer(dict(conf, **{"group.id": unique("g"), "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(int(m.value()))
    c.close()
    assert got == list(range(n))


def fails(conf):
    try:
        Producer(conf).list_topics(timeout=4)
        return False
    except KafkaException:
        return True


def test_ssl_and_sasl_ssl_listeners_beside_plaintext(make_broker, pki):
    b = tls_broker(make_broker, pki)
    round_trip(ssl_conf(b, pki))
    sasl = dict(ssl_conf(b, pki), **{"bootstrap.servers": f"127.0.0.1:{b.sasl_ssl_port}",
                                     "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                     "sasl.username": "admin", "sasl.password": "admin-secret"})
    round_trip(sasl)
    assert fails(dict(sasl, **{"sasl.password": "wrong"}))
    # Each listener advertises itself: a client is never sent to another listener.
    ports = {
        "PLAINTEXT": {m.port for m in AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
                      .brokers.values()},
        "SSL": {m.port for m in AdminClient(ssl_conf(b, pki)).list_topics(timeout=10).brokers.values()},
        "SASL_SSL": {m.port for m in AdminClient(sasl).list_topics(timeout=10).brokers.values()},
    }
    assert ports == {"PLAINTEXT": {b.port}, "SSL": {b.ssl_port}, "SASL_SSL": {b.sasl_ssl_port}}, ports
    # kcat over SSL.
    r = subprocess.run(["kcat", "-b", f"127.0.0.1:{b.ssl_port}", "-X", "security.protocol=SSL", "-X",
                        f"ssl.ca.location={pki.ca}", "-L"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and f"127.0.0.1:{b.ssl_port}" in r.stdout, r.stdout + r.stderr


def test_the_java_client_over_sasl_ssl(make_broker, pki, kafka_classpath, tmp_path):
    b = tls_broker(make_broker, pki)
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="admin" password="admin-secret";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={pki.ca}\n")
    topic = unique("java-tls")
    base = ["java", "-cp", kafka_classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
            f"127.0.0.1:{b.sasl_ssl_port}", "--command-config", str(props)]
    r = subprocess.run(base + ["--create", "--topic", topic, "--partitions", "2"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(base + ["--describe", "--topic", topic], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "PartitionCount: 2" in r.stdout, r.stdout + r.stderr


def test_mutual_tls_principals_and_refusals(make_broker, pki, tmp_path):
    b = tls_broker(make_broker, pki, client_auth="required", authorizer=True)
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{b.sasl_ssl_port}", "security.protocol": "SASL_SSL",
                         "ssl.ca.location": str(pki.ca), "ssl.certificate.location": str(pki.alice[0]),
                         "ssl.key.location": str(pki.alice[1]), "sasl.mechanism": "SCRAM-SHA-512",
                         "sasl.username": "admin", "sasl.password": "admin-secret"})
    topic = unique("mtls")
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=20)
    # The certificate's subject is the principal, as Kafka writes it by default.
    alice = "User:CN=alice,OU=eng,O=acme"
    for f in admin.create_acls([AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, alice, "*",
                                           AclOperation.WRITE, AclPermissionType.ALLOW)]).values():
        f.result(timeout=20)

    def write(client):
        errors = []
        p = Producer(ssl_conf(b, pki, client, **{"message.timeout.ms": 8000}))
        p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
        p.flush(12)
        return errors[0] if errors else "no report"

    assert write(pki.alice) is None
    assert write(pki.bob) is not None, "another subject is another principal"
    # No certificate where one is required, or one from an unknown authority: refused.
    assert fails(ssl_conf(b, pki))
    stranger = Pki(tmp_path / "other", name="other")
    assert fails(ssl_conf(b, pki, stranger.issue("eve", "/CN=alice")))
    failures = [line for line in b.metrics().splitlines()
                if line.startswith("tributary_authentications_total") and 'result="failure"' in line]
    assert failures and float(failures[0].rsplit(" ", 1)[1]) >= 2, failures


def served_subject(port, ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]


def test_certificates_are_reloaded_without_a_restart(make_broker, pki):
    b = tls_broker(make_broker, pki)
    assert served_subject(b.ssl_port, pki.ca) == "localhost"
    cert, key = pki.issue("renewed", "/CN=renewed.localhost", server=True)
    # Key first, then the certificate, as a renewal tool would replace them.
    shutil.copy(key, pki.server[1])
    shutil.copy(cert, pki.server[0])
    wait_until(lambda: served_subject(b.ssl_port, pki.ca) == "renewed.localhost", timeout=20,
               what="the renewed certificate to be served")
    round_trip(ssl_conf(b, pki), n=5)


def test_plaintext_on_a_tls_port_and_garbage_handshakes_close_only_that_connection(make_broker, pki):
    b = tls_broker(make_broker, pki)
    # A PLAINTEXT client on the SSL port, a TLS client on the PLAINTEXT port.
    assert fails({"bootstrap.servers": f"127.0.0.1:{b.ssl_port}", "log_level": 0})
    assert fails(dict(ssl_conf(b, pki), **{"bootstrap.servers": b.bootstrap}))
    rng = random.Random(5246)
    for i in range(100):
        with socket.create_connection(("127.0.0.1", b.ssl_port), timeout=5) as s:
            blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
            if i % 2:
                # A TLS record header (handshake, TLS 1.2) before the garbage.
                blob = b"\x16\x03\x03" + len(blob).to_bytes(2, "big") + blob
            try:
                s.sendall(blob)
                s.settimeout(5)
                while s.recv(4096):
                    pass
            except OSError:
                pass
    assert b.proc.poll() is None
    round_trip(ssl_conf(b, pki), n=5)


def test_principal_mapping_rules_name_certificate_principals_as_kafkas_do(make_broker, pki):
    b = tls_broker(make_broker, pki, client_auth="required", authorizer=True,
                   rules=["RULE:^CN=([^,]+),OU=eng,O=acme$/$1/L"])
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{b.sasl_ssl_port}", "security.protocol": "SASL_SSL",
                         "ssl.ca.location": str(pki.ca), "ssl.certificate.location": str(pki.alice[0]),
                         "ssl.key.location": str(pki.alice[1]), "sasl.mechanism": "SCRAM-SHA-512",
                         "sasl.username": "admin", "sasl.password": "admin-secret"})
    topic = unique("rules")
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=20)
    for f in admin.create_acls([AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice",
                                           "*", AclOperation.WRITE, AclPermissionType.ALLOW)]).values():
        f.result(timeout=20)
    errors = []
    p = Producer(ssl_conf(b, pki, pki.alice, **{"message.timeout.ms": 8000}))
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(12)
    assert errors == [None], "CN=alice,OU=eng,O=acme is User:alice"
    # No rule maps bob's subject (and no DEFAULT): his connections are refused.
    assert fails(ssl_conf(b, pki, pki.bob))
