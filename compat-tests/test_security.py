"""Authentication: SASL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) with real clients,
users managed with Kafka's own kafka-configs, KIP-368 re-authentication, and the
refusals: wrong passwords, unknown users, requests before authentication,
malformed SASL messages. Every refusal is a clear error or a logged close, never
a crash, and failures are counted in /metrics."""

import pathlib
import random
import re
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import unique, wait_until
from rawkafka import Conn, Reader, s16

ADMIN = ("admin", "admin-secret")

SASL_CONFIG = """
[security]
protocol = "SASL_PLAINTEXT"
connections_max_reauth_ms = {reauth}
[security.bootstrap_users]
admin = "admin-secret"
"""


@pytest.fixture
def sasl_broker(make_broker):
    b = make_broker("sasl", config_text=SASL_CONFIG.format(reauth=0))
    b.start()
    return b


def client(broker, user, password, mechanism="SCRAM-SHA-512", **extra):
    return {
        "bootstrap.servers": broker.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        **extra,
    }


def auth_error(conf):
    """The error a client gets when it cannot authenticate (None if it can)."""
    errors = []
    p = Producer(dict(conf, error_cb=lambda e: errors.append(e), log_level=0))
    p.poll(0.2)  # serves an OAUTHBEARER token callback, if any
    try:
        p.list_topics(timeout=5)
        return None
    except KafkaException:
        wait_until(lambda: p.poll(0.1) is not None and errors, timeout=10, what="the authentication error")
        return errors


def authentications(broker, result):
    total = 0.0
    for line in broker.metrics().splitlines():
        if line.startswith("tributary_authentications_total{") and f'result="{result}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_each_mechanism_produces_and_consumes(sasl_broker, mechanism):
    conf = client(sasl_broker, *ADMIN, mechanism=mechanism)
    topic = unique("sasl")
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=20)
    p = Producer(dict(conf, acks="all"))
    for i in range(100):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
    assert p.flush(20) == 0
    c = Consumer(dict(conf, **{"group.id": unique("g"), "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 100 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [f"v{i}".encode() for i in range(100)]


def test_wrong_passwords_and_unknown_users_fail_alike(sasl_broker):
    before = authentications(sasl_broker, "failure")
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]:
        wrong = auth_error(client(sasl_broker, "admin", "not-the-password", mechanism=mechanism))
        unknown = auth_error(client(sasl_broker, "nobody", "not-the-password", mechanism=mechanism))
        assert wrong and unknown, mechanism
        texts = {re.sub(r"\(after \d+ms[^)]*\)", "", str(e[0])) for e in (wrong, unknown)}
        # The same words whether or not the user exists.
        assert len({t.replace("nobody", "admin") for t in texts}) == 1, texts
        assert "Authentication failed" in texts.pop(), mechanism
    wait_until(lambda: authentications(sasl_broker, "failure") >= before + 6, timeout=10,
               what="failed authentications counted")
    assert sasl_broker.proc.poll() is None


def test_a_mechanism_the_listener_does_not_offer_is_refused(make_broker):
    b = make_broker("only512", config_text=SASL_CONFIG.format(reauth=0).replace(
        'protocol = "SASL_PLAINTEXT"', 'protocol = "SASL_PLAINTEXT"\nsasl_mechanisms = ["SCRAM-SHA-512"]'))
    b.start()
    assert auth_error(client(b, *ADMIN, mechanism="PLAIN"))
    assert auth_error(client(b, *ADMIN, mechanism="SCRAM-SHA-512")) is None
    conn = Conn(b.port)
    r = Reader(conn.request(17, 1, s16("PLAIN")))
    assert r.i16() == 33  # UNSUPPORTED_SASL_MECHANISM
    assert [r.string() for _ in range(r.i32())] == ["SCRAM-SHA-512"]
    with pytest.raises((ConnectionError, OSError)):
        conn.request(18, 0, struct.pack(">i", 1) + b"x")


def sasl_plain(conn, user, password, version=1):
    """SaslHandshake v1 + SaslAuthenticate with PLAIN; returns (error, message, lifetime_ms)."""
    r = Reader(conn.request(17, 1, s16("PLAIN")))
    assert r.i16() == 0
    token = b"\0" + user.encode() + b"\0" + password.encode()
    r = Reader(conn.request(36, version, struct.pack(">i", len(token)) + token))
    error, message = r.i16(), r.string()
    r.at += 4 + struct.unpack_from(">i", r.b, r.at)[0]
    lifetime = r.i64() if version >= 1 else None
    return error, message, lifetime


def test_requests_before_authentication_close_the_connection(sasl_broker):
    conn = Conn(sasl_broker.port)
    # ApiVersions is answered before authentication.
    assert Reader(conn.request(18, 0, b"")).i16() == 0
    with pytest.raises((ConnectionError, OSError)):
        conn.request(3, 1, struct.pack(">i", 0))  # Metadata
    # SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE, then closed.
    conn = Conn(sasl_broker.port)
    r = Reader(conn.request(36, 0, struct.pack(">i", 3) + b"abc"))
    assert r.i16() == 34
    with pytest.raises((ConnectionError, OSError)):
        conn.request(18, 0, b"")
    # Authenticated, the same connection serves Metadata.
    conn = Conn(sasl_broker.port)
    assert sasl_plain(conn, *ADMIN) == (0, None, 0)
    assert Reader(conn.request(3, 1, struct.pack(">i", 0))).i32() >= 1  # one broker at least


def test_malformed_sasl_messages_never_crash_the_broker(sasl_broker):
    rng = random.Random(368)
    closed = 0
    for i in range(200):
        conn = Conn(sasl_broker.port, timeout=10)
        mechanism = rng.choice(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
        try:
            assert Reader(conn.request(17, 1, s16(mechanism))).i16() == 0
            token = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
            if rng.random() < 0.5 and mechanism != "PLAIN":
                # A well-formed first message, then garbage in the final one.
                first = b"n,,n=admin,r=" + bytes(rng.choice(b"abcdefgh") for _ in range(16))
                r = Reader(conn.request(36, 1, struct.pack(">i", len(first)) + first))
                assert r.i16() == 0, i
            r = Reader(conn.request(36, 1, struct.pack(">i", len(token)) + token))
            assert r.i16() == 58, i  # SASL_AUTHENTICATION_FAILED
            conn.request(18, 0, b"")
        except (ConnectionError, OSError):
            closed += 1
        finally:
            conn.close()
    assert closed == 200, "every failed authentication closes its connection"
    assert sasl_broker.proc.poll() is None
    assert auth_error(client(sasl_broker, *ADMIN)) is None


def test_kafka_configs_manages_scram_users(sasl_broker, kafka_classpath, tmp_path):
    props = tmp_path / "admin.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="admin" password="admin-secret";\n')

    def configs(*args):
        cmd = ["java", "-cp", kafka_classpath, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server",
               sasl_broker.bootstrap, "--command-config", str(props), "--entity-type", "users", *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    user = unique("alice")
    assert auth_error(client(sasl_broker, user, "alice-secret")), "no such user yet"
    configs("--entity-name", user, "--alter", "--add-config",
            "SCRAM-SHA-256=[iterations=8192,password=alice-secret],SCRAM-SHA-512=[password=alice-secret]")
    described = configs("--entity-name", user, "--describe")
    assert "SCRAM-SHA-256=iterations=8192" in described and "SCRAM-SHA-512=iterations=4096" in described, described
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]:
        assert auth_error(client(sasl_broker, user, "alice-secret", mechanism=mechanism)) is None, mechanism
    assert auth_error(client(sasl_broker, user, "admin-secret"))
    # Every user with --describe and no name; the admin is among them.
    everyone = configs("--describe")
    assert f"user-principal '{user}'" in everyone and "user-principal 'admin'" in everyone, everyone
    # A new password replaces the old one; deleting SCRAM-SHA-512 leaves SHA-256.
    configs("--entity-name", user, "--alter", "--add-config", "SCRAM-SHA-512=[password=new-secret]")
    assert auth_error(client(sasl_broker, user, "alice-secret"))
    assert auth_error(client(sasl_broker, user, "new-secret")) is None
    configs("--entity-name", user, "--alter", "--delete-config", "SCRAM-SHA-512")
    assert auth_error(client(sasl_broker, user, "new-secret"))
    assert auth_error(client(sasl_broker, user, "alice-secret", mechanism="SCRAM-SHA-256")) is None
    # Users are durable: after a restart the credentials still hold.
    sasl_broker.restart()
    assert auth_error(client(sasl_broker, user, "alice-secret", mechanism="SCRAM-SHA-256")) is None
    configs("--entity-name", user, "--alter", "--delete-config", "SCRAM-SHA-256")
    assert auth_error(client(sasl_broker, user, "alice-secret", mechanism="SCRAM-SHA-256"))
    assert "SCRAM" not in configs("--entity-name", user, "--describe")


def test_scram_credential_errors_match_kafka(sasl_broker):
    conn = Conn(sasl_broker.port)
    assert sasl_plain(conn, *ADMIN)[0] == 0

    # AlterUserScramCredentials v0 is a flexible version; build it compactly.
    def uvarint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    def cstr(s):
        b = s.encode()
        return uvarint(len(b) + 1) + b

    def cbytes(b):
        return uvarint(len(b) + 1) + b

    def request(deletions, upsertions):
        body = uvarint(len(deletions) + 1)
        for name, mech in deletions:
            body += cstr(name) + struct.pack(">b", mech) + b"\0"
        body += uvarint(len(upsertions) + 1)
        for name, mech, iterations in upsertions:
            body += cstr(name) + struct.pack(">bi", mech, iterations) + cbytes(b"salt") + cbytes(bytes(32)) + b"\0"
        body += b"\0"
        # Header v2: client id (non-compact string) and tagged fields.
        conn.corr += 1
        header = struct.pack(">hhi", 51, 0, conn.corr) + s16("rawkafka") + b"\0"
        frame = header + body
        conn.sock.sendall(struct.pack(">i", len(frame)) + frame)
        (n,) = struct.unpack(">i", conn._exact(4))
        resp = conn._exact(n)[4 + 1:]  # correlation id, response header tags
        r = Reader(resp)
        r.i32()  # throttle
        results = {}
        count = resp[r.at] - 1
        r.at += 1
        for _ in range(count):
            n = resp[r.at] - 1
            r.at += 1
            user = resp[r.at:r.at + n].decode()
            r.at += n
            code = r.i16()
            n = resp[r.at]
            r.at += 1 + max(n - 1, 0)
            r.at += 1  # tags
            results[user] = code
        return results

    assert request([("ghost", 1)], []) == {"ghost": 91}  # RESOURCE_NOT_FOUND
    assert request([], [("few", 1, 1000)]) == {"few": 93}  # UNACCEPTABLE_CREDENTIAL
    assert request([], [("many", 2, 20000)]) == {"many": 93}
    assert request([], [("mech", 9, 4096)]) == {"mech": 33}  # UNSUPPORTED_SASL_MECHANISM
    assert request([], [("", 1, 4096)]) == {"": 93}
    assert request([("twice", 1)], [("twice", 1, 4096)]) == {"twice": 92}  # DUPLICATE_RESOURCE
    assert request([], [("ok", 1, 4096), ("ok", 2, 4096)]) == {"ok": 0}


def test_sessions_expire_unless_clients_reauthenticate(make_broker):
    b = make_broker("reauth", config_text=SASL_CONFIG.format(reauth=1500))
    b.start()
    # A raw client that never re-authenticates is told the lifetime, then closed
    # at its first request after it.
    conn = Conn(b.port)
    error, _, lifetime = sasl_plain(conn, *ADMIN)
    assert (error, lifetime) == (0, 1500)
    assert Reader(conn.request(18, 0, b"")).i16() == 0
    time.sleep(1.6)  # past the session's end, which is what is being tested
    with pytest.raises((ConnectionError, OSError)):
        conn.request(3, 1, struct.pack(">i", 0))
    # librdkafka re-authenticates (KIP-368) on its own: a consumer reading for
    # several lifetimes gets every record over its connections.
    conf = client(b, *ADMIN)
    topic = unique("reauth")
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=20)
    p = Producer(dict(conf, acks="all"))
    c = Consumer(dict(conf, **{"group.id": unique("g"), "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got, sent = [], 0
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        p.produce(topic, value=str(sent).encode())
        sent += 1
        p.poll(0)
        m = c.poll(0.05)
        if m is not None and not m.error():
            got.append(int(m.value()))
    assert p.flush(20) == 0
    end = time.monotonic() + 30
    while len(got) < sent and time.monotonic() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(int(m.value()))
    c.close()
    assert got == list(range(sent)), (len(got), sent)
    assert sent > 20
    assert b.proc.poll() is None


@pytest.fixture
def oauth_broker(make_broker, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "issuer.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    b = make_broker("oauth", config_text=f"""
[security]
protocol = "SASL_PLAINTEXT"
sasl_mechanisms = ["OAUTHBEARER", "SCRAM-SHA-512"]
authorizer = true
super_users = ["User:svc-admin"]
[security.oauthbearer]
public_key_files = ["{public}"]
audience = "tributary"
issuer = "https://issuer.test"
""")
    b.start()
    b.signing_key = key
    return b


def jwt_for(key, sub, lifetime=300, aud="tributary", iss="https://issuer.test"):
    import jwt
    now = int(time.time())
    claims = {"sub": sub, "aud": aud, "iss": iss, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, key, algorithm="RS256"), now + lifetime


def oauth_client(broker, token_source, **extra):
    """The client is told a future expiry whatever the token says, so that the
    broker, not librdkafka, judges an expired token."""
    def callback(_config):
        token, _ = token_source()
        return token, time.time() + 60
    return {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "oauth_cb": callback, "log_level": 0, **extra}


def test_oauthbearer_tokens_are_checked_and_name_the_principal(oauth_broker):
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = oauth_broker.signing_key
    # A valid token for the super user: it creates a topic and produces.
    admin_conf = oauth_client(oauth_broker, lambda: jwt_for(key, "svc-admin"))
    admin = AdminClient(admin_conf)
    topic = unique("oauth")
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=20)
    p = Producer(dict(admin_conf, acks="all"))
    p.produce(topic, value=b"hello")
    assert p.flush(20) == 0
    # Another subject is another principal: no ACL, no topic.
    other = AdminClient(oauth_client(oauth_broker, lambda: jwt_for(key, "svc-other")))
    refused = unique("no")
    with pytest.raises(KafkaException) as e:
        other.create_topics([NewTopic(refused, 1)])[refused].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Forged, expired, for another audience or issuer: refused at authentication.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for source in (lambda: jwt_for(stranger, "svc-admin"),
                   lambda: jwt_for(key, "svc-admin", lifetime=-120),
                   lambda: jwt_for(key, "svc-admin", aud="elsewhere"),
                   lambda: jwt_for(key, "svc-admin", iss="https://evil.test")):
        assert auth_error(oauth_client(oauth_broker, source)), source
    assert oauth_broker.proc.poll() is None


def test_an_oauthbearer_session_lasts_no_longer_than_its_token(oauth_broker):
    token, _ = jwt_for(oauth_broker.signing_key, "svc-admin", lifetime=100)
    conn = Conn(oauth_broker.port)
    assert Reader(conn.request(17, 1, s16("OAUTHBEARER"))).i16() == 0
    message = f"n,,\x01auth=Bearer {token}\x01\x01".encode()
    r = Reader(conn.request(36, 1, struct.pack(">i", len(message)) + message))
    assert r.i16() == 0, r.string()
    r.string()
    r.at += 4 + struct.unpack_from(">i", r.b, r.at)[0]
    lifetime = r.i64()
    assert 90_000 <= lifetime <= 100_000, lifetime


@pytest.mark.parametrize("mechanism", ["scram-sha-512", "scram-sha-256", "plain"])
def test_kafkajs_authenticates(sasl_broker, mechanism):
    script = pathlib.Path(__file__).resolve().parent / "kafkajs" / "sasl.js"

    def run(password):
        r = subprocess.run(["node", str(script), sasl_broker.bootstrap, mechanism, "admin", password,
                            unique("kjs")], capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout.strip()

    assert run("admin-secret") == "OK"
    assert run("wrong").startswith("REFUSED"), "a wrong password is refused"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_and_aiokafka_authenticate(sasl_broker, mechanism):
    import asyncio

    import aiokafka
    import kafka

    topic = unique("py")
    sasl = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism, sasl_plain_username="admin",
                sasl_plain_password="admin-secret")
    p = kafka.KafkaProducer(bootstrap_servers=sasl_broker.bootstrap, acks="all", **sasl)
    for i in range(10):
        p.send(topic, f"k{i}".encode())
    p.flush(30)
    p.close()

    async def consume():
        c = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=sasl_broker.bootstrap, auto_offset_reset="earliest",
                                      **sasl)
        await c.start()
        try:
            got = []
            deadline = time.monotonic() + 30
            while len(got) < 10 and time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500)
                got += [m.value for msgs in batch.values() for m in msgs]
            return got
        finally:
            await c.stop()

    assert asyncio.run(consume()) == [f"k{i}".encode() for i in range(10)]
    with pytest.raises(Exception):
        bad = dict(sasl, sasl_plain_password="wrong")
        kafka.KafkaProducer(bootstrap_servers=sasl_broker.bootstrap, request_timeout_ms=5000,
                            max_block_ms=5000, **bad).send(topic, b"x").get(10)
