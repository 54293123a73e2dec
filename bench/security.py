#!/usr/bin/env python3
"""What security costs, measured on one machine in one run:

    python3 bench/security.py [--seconds 6] [--users 10000] [--acls 10000] [--no-build]

1. The data path: the same produce runs (rdkafka loadgen, acks=all, fsync) against
   a PLAINTEXT broker, a SASL/SCRAM broker without an authorizer, and a SASL/SCRAM
   broker whose authorizer holds `--acls` ACLs besides the ones the load needs
   (prefixed and literal, on topics and groups): peak MB/s and p50/p99 at a fixed
   rate (half the PLAINTEXT peak), side by side.
2. Memory: the broker's RSS before and after creating `--users` SCRAM users
   (AlterUserScramCredentials, both mechanisms) and the ACLs: bytes per user and
   per ACL.
3. Authentication rate: full SASL handshakes per second on fresh connections, from
   two client processes (SCRAM-SHA-256 with the client's salted password cached, so
   the broker's share dominates; PLAIN, where the broker runs PBKDF2 each time).
4. Scopes: `--scopes` scopes on one broker, each with its own user (`u<i>@s<i>`) and
   topic: RSS per scope, and isolation checked for a sample of them (each lists its
   one topic, nothing else).

Not part of the test suite. Brokers run on free loopback ports with fresh data
directories under target/ and are stopped by their PIDs."""

import argparse
import base64
import hashlib
import hmac
import multiprocessing
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "compat-tests"))
import run as bench  # noqa: E402  (loadgen and build helpers)
from rawkafka import Conn, Reader, s16  # noqa: E402

USER, PASSWORD = "bench", "bench-secret"


def start(base, name, config):
    d = base / name
    d.mkdir()
    (d / "tributary.toml").write_text(config)
    port, http = bench.free_port(), bench.free_port()
    log = open(d / "broker.log", "ab")
    proc = subprocess.Popen([str(bench.BROKER), "--config", str(d / "tributary.toml"), "--data-dir", str(d / "data"),
                             "--listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http}"],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, RUST_LOG="warn"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/health/ready", timeout=1) as r:
                if r.status == 200:
                    proc.data_dir = d
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"broker {name} not ready")


def stop(proc):
    """Stops the broker and frees its disk (three brokers' journals at once fill
    a small disk)."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    shutil.rmtree(proc.data_dir, ignore_errors=True)


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def plain_login(conn, user, password):
    assert Reader(conn.request(17, 1, s16("PLAIN"))).i16() == 0
    token = b"\0" + user.encode() + b"\0" + password.encode()
    r = Reader(conn.request(36, 1, struct.pack(">i", len(token)) + token))
    return r.i16()


def uvarint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def flexible(conn, key, version, body):
    conn.corr += 1
    frame = struct.pack(">hhi", key, version, conn.corr) + s16("bench") + b"\0" + body
    conn.sock.sendall(struct.pack(">i", len(frame)) + frame)
    (n,) = struct.unpack(">i", conn._exact(4))
    return conn._exact(n)


def create_users(conn, names, password):
    """AlterUserScramCredentials v0 upsertions, SCRAM-SHA-256 and -512 each."""
    for i in range(0, len(names), 250):
        ups = []
        for name in names[i:i + 250]:
            for mech, algo in ((1, "sha256"), (2, "sha512")):
                salt = os.urandom(16)
                salted = hashlib.pbkdf2_hmac(algo, password.encode(), salt, 4096)
                n = name.encode()
                ups.append(uvarint(len(n) + 1) + n + struct.pack(">bi", mech, 4096) + uvarint(len(salt) + 1) + salt
                           + uvarint(len(salted) + 1) + salted + b"\0")
        body = uvarint(1) + uvarint(len(ups) + 1) + b"".join(ups) + b"\0"
        flexible(conn, 51, 0, body)


def create_acls(conn, bindings):
    """CreateAcls v1: (resource type, name, pattern, principal, operation, permission)."""
    for i in range(0, len(bindings), 1000):
        chunk = bindings[i:i + 1000]
        body = struct.pack(">i", len(chunk))
        for rtype, name, pattern, principal, op, perm in chunk:
            body += struct.pack(">b", rtype) + s16(name) + struct.pack(">b", pattern) + s16(principal) + s16("*") \
                + struct.pack(">bb", op, perm)
        r = Reader(conn.request(30, 1, body))
        r.i32()
        for _ in range(r.i32()):
            code = r.i16()
            r.string()
            assert code == 0, code


def scram_handshakes(args):
    port, seconds, mechanism = args
    done = 0
    salted = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = Conn(port)
        if mechanism == "PLAIN":
            assert plain_login(conn, USER, PASSWORD) == 0
        else:
            assert Reader(conn.request(17, 1, s16("SCRAM-SHA-256"))).i16() == 0
            nonce = base64.b64encode(os.urandom(18)).decode()
            bare = f"n={USER},r={nonce}"
            first = f"n,,{bare}".encode()
            r = Reader(conn.request(36, 1, struct.pack(">i", len(first)) + first))
            assert r.i16() == 0
            r.string()
            n = struct.unpack_from(">i", r.b, r.at)[0]
            server_first = r.b[r.at + 4:r.at + 4 + n].decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            if salted is None:
                salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            stored = hashlib.sha256(client_key).digest()
            without = f"c=biws,r={attrs['r']}"
            auth = f"{bare},{server_first},{without}".encode()
            sig = hmac.new(stored, auth, "sha256").digest()
            proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
            final = f"{without},p={proof}".encode()
            assert Reader(conn.request(36, 1, struct.pack(">i", len(final)) + final)).i16() == 0
        conn.close()
        done += 1
    return done


def create_topics(conn, names):
    """CreateTopics v4 (one partition each), 1,000 names per request."""
    for i in range(0, len(names), 1000):
        chunk = names[i:i + 1000]
        body = struct.pack(">i", len(chunk))
        for n in chunk:
            body += s16(n) + struct.pack(">ihii", 1, 1, 0, 0)
        body += struct.pack(">ib", 60000, 0)
        conn.request(19, 4, body)


def listed_topics(port, user, password):
    conn = Conn(port)
    assert plain_login(conn, user, password) == 0
    r = Reader(conn.request(3, 1, struct.pack(">i", -1)))
    for _ in range(r.i32()):  # brokers
        r.i32(), r.string(), r.i32(), r.string()
    r.i32()  # controller
    names = []
    for _ in range(r.i32()):
        r.i16()
        names.append(r.string())
        r.at += 1  # is_internal
        for _ in range(r.i32()):
            r.i16(), r.i32(), r.i32()
            r.at += 4 * r.i32()
            r.at += 4 * r.i32()
    conn.close()
    return [n for n in names if not n.startswith("__")]


def scopes_phase(base, n):
    """RSS per scope (a user and a one-partition topic each) and isolation."""
    config = '[security]\nprotocol = "SASL_PLAINTEXT"\nsuper_users = ["User:admin"]\n[security.scopes]\n' \
             'enabled = true\n[security.bootstrap_users]\nadmin = "admin-secret"\n'
    proc, port = start(base, "scopes", config)
    try:
        conn = Conn(port)
        assert plain_login(conn, "admin", "admin-secret") == 0
        before = rss_kib(proc.pid)
        create_users(conn, [f"u{i}@s{i}" for i in range(n)], "pw")
        create_topics(conn, [f"s{i}/events" for i in range(n)])
        conn.close()
        time.sleep(2)
        per_scope = (rss_kib(proc.pid) - before) * 1024 / max(n, 1)
        sample = sorted(set(range(0, n, max(n // 20, 1))))
        isolated = all(listed_topics(port, f"u{i}@s{i}", "pw") == ["events"] for i in sample)
        return per_scope, isolated, len(sample)
    finally:
        stop(proc)


def produce(port, conf, topic, size, partitions, seconds, rate=None):
    env = dict(os.environ, LOADGEN_CLIENT_CONFIG=conf)
    args = [str(bench.LOADGEN), "produce", "--bootstrap", f"127.0.0.1:{port}", "--topic", topic, "--partitions",
            str(partitions), "--size", str(size), "--seconds", str(seconds)]
    if rate:
        args += ["--rate", str(round(rate))]
    r = subprocess.run(args, capture_output=True, timeout=600, env=env)
    if r.returncode != 0:
        sys.exit(f"loadgen failed: {r.stderr.decode(errors='replace')}")
    import json
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--acls", type=int, default=10_000)
    ap.add_argument("--scopes", type=int, default=10_000)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        bench.build()
    base = pathlib.Path(tempfile.mkdtemp(dir=ROOT / "target"))
    sasl = f'[security]\nprotocol = "SASL_PLAINTEXT"\n[security.bootstrap_users]\nadmin = "admin-secret"\n{USER} = "{PASSWORD}"\n'
    authz = sasl.replace("[security]\n", '[security]\nauthorizer = true\nsuper_users = ["User:admin"]\n')
    # The loadgen's librdkafka is built without OpenSSL: PLAIN (authentication happens
    # once per connection; the data path is the same whatever the mechanism).
    client_sasl = f"security.protocol=SASL_PLAINTEXT;sasl.mechanism=PLAIN;sasl.username={USER};" \
                  f"sasl.password={PASSWORD}"
    setups = [("PLAINTEXT", "", ""), ("SASL (PLAIN)", sasl, client_sasl),
              (f"SASL (PLAIN) + authorizer ({args.acls:,} ACLs)", authz, client_sasl)]
    rows, memory, rates = [], {}, {}
    half = {}
    for name, config, client in setups:
        proc, port = start(base, name.split()[0].replace("/", "-") + str(len(rows)), config)
        try:
            if "authorizer" in name:
                conn = Conn(port)
                assert plain_login(conn, "admin", "admin-secret") == 0
                before = rss_kib(proc.pid)
                create_users(conn, [f"user-{i}" for i in range(args.users)], "pw")
                after_users = rss_kib(proc.pid)
                # The load's own rights, then many ACLs of other principals.
                create_acls(conn, [(2, "bench-", 4, f"User:{USER}", 2, 3), (3, "loadgen", 3, f"User:{USER}", 3, 3)])
                many = []
                for i in range(args.acls):
                    if i % 4 == 0:
                        many.append((2, f"team-{i}-", 4, f"User:user-{i % max(args.users, 1)}", 3, 3))
                    elif i % 4 == 1:
                        many.append((3, f"group-{i}", 3, f"User:user-{i % max(args.users, 1)}", 3, 3))
                    else:
                        many.append((2, f"topic-{i}", 3, f"User:user-{i % max(args.users, 1)}", 4, 3))
                create_acls(conn, many)
                after_acls = rss_kib(proc.pid)
                memory = {"users": (after_users - before) * 1024 / max(args.users, 1),
                          "acls": (after_acls - after_users) * 1024 / max(args.acls, 1)}
                conn.close()
            for size, partitions in ((100, 1), (1024, 8)):
                topic = f"bench-{size}-{partitions}"
                time.sleep(args.settle)
                peak = produce(port, client, topic, size, partitions, args.seconds)
                key = (size, partitions)
                if key not in half:
                    half[key] = peak["records_per_sec"] / 2
                time.sleep(args.settle)
                fixed = produce(port, client, topic, size, partitions, args.seconds, rate=half[key])
                rows.append((name, size, partitions, peak, fixed))
                print(f"  {name} {topic}: {peak['mb_per_sec']:.1f} MB/s", file=sys.stderr)
            if "authorizer" not in name and "SASL" in name:
                for mechanism in ("SCRAM-SHA-256", "PLAIN"):
                    with multiprocessing.Pool(2) as pool:
                        t = 5.0
                        rates[mechanism] = sum(pool.map(scram_handshakes, [(port, t, mechanism)] * 2)) / t
        finally:
            stop(proc)
    scope_rss, isolated, sampled = scopes_phase(base, args.scopes) if args.scopes else (0, True, 0)
    print(f"\n## Security costs ({args.seconds:.0f} s runs, acks=all, fsync, 2-core machine)\n")
    print("| broker | record | partitions | peak MB/s | peak records/s | at a fixed rate: records/s, p50 / p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, size, partitions, peak, fixed in rows:
        print(f"| {name} | {size} B | {partitions} | {peak['mb_per_sec']:.1f} | {peak['records_per_sec']:,.0f} | "
              f"{fixed['records_per_sec']:,.0f}, {fixed['p50_ms']:.2f} / {fixed['p99_ms']:.2f} |")
    print(f"\nMemory: {memory.get('users', 0):,.0f} bytes of RSS per SCRAM user (both mechanisms), "
          f"{memory.get('acls', 0):,.0f} bytes per ACL ({args.users:,} users, {args.acls:,} ACLs).")
    print("Full SASL handshakes per second on fresh connections, two client processes: " +
          ", ".join(f"{m} {r:,.0f}/s" for m, r in rates.items()))
    if args.scopes:
        print(f"Scopes: {args.scopes:,} scopes with a user and a one-partition topic each: {scope_rss:,.0f} bytes of "
              f"RSS per scope; isolation {'held' if isolated else 'FAILED'} for {sampled} sampled scopes (each "
              "lists exactly its own topic).")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
