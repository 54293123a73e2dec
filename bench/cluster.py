#!/usr/bin/env python3
"""Cluster benchmark: a 3-broker cluster (etcd, s3s-fs, release brokers on free
loopback ports) against a single node in the same run, side by side.

    .venv/bin/python bench/cluster.py [--seconds 10] [--brokers 3] [--move-mib 1024]

Measures, for each: produce throughput at full speed and p50/p99 produce latency
at half that rate (1 KiB records, 12 partitions, acks=all, idempotent), consume
throughput from the start; for the cluster also the journal-object PUT latency of
the S3 server in the same runs (from the brokers' own histogram), the failover time
after a SIGKILL (until every partition answers again on a live broker), and the
move time of a partition holding `--move-mib` MiB (its owner stopped with
SIGTERM: the time until the new owner serves it). Builds the broker and
bench/loadgen in release mode. Not part of the test suite."""

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))
import run  # noqa: E402  (bench/run.py: loadgen, the single broker)
from cluster import LocalCluster, wait_until  # noqa: E402

PARTITIONS = 12
SIZE = 1024


def served(bootstrap, topic, partitions):
    """Every partition answers ListOffsets (its owner has taken it over)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe", "socket.timeout.ms": 3000})
    try:
        for p in range(partitions):
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=2)
        return True
    except Exception:  # noqa: BLE001 - not yet served
        return False
    finally:
        c.close()


_admins = {}


def admin(bootstrap):
    """One Admin client per bootstrap list, kept: a client destroyed while a request
    of it is pending fails that request."""
    if bootstrap not in _admins:
        _admins[bootstrap] = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
    return _admins[bootstrap]


def leaders(bootstrap, topic):
    try:
        md = admin(bootstrap).list_topics(topic, timeout=10)
    except Exception:  # noqa: BLE001 - a broker going away answers nothing
        return {}
    t = md.topics.get(topic)
    return {} if t is None or t.error else {p.id: p.leader for p in t.partitions.values()}


def create(bootstrap, topic, partitions):
    admin(bootstrap).create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    wait_until(lambda: served(bootstrap, topic, partitions), 60, f"{topic} served")


def workload(bootstrap, tag, seconds, settle):
    """Peak produce, half-rate latency, consume from the start, on a new topic."""
    topic = f"bench-{tag}"
    create(bootstrap, topic, PARTITIONS)
    time.sleep(settle)
    peak = run.run_json(["produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", PARTITIONS,
                         "--size", SIZE, "--seconds", seconds])
    time.sleep(settle)
    half = run.run_json(["produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", PARTITIONS,
                         "--size", SIZE, "--seconds", seconds, "--rate", round(peak["records_per_sec"] / 2)])
    time.sleep(settle)
    consume = run.run_json(["consume", "--bootstrap", bootstrap, "--topic", topic, "--partitions", PARTITIONS,
                            "--expect", peak["delivered"] + half["delivered"]])
    return {"peak": peak, "half": half, "consume": consume}


def histogram(nodes, name):
    """The summed cumulative buckets {le: count} of a histogram over brokers."""
    out = {}
    for n in nodes:
        with urllib.request.urlopen(f"http://127.0.0.1:{n.http_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(f"{name}_bucket{{"):
                    le = line.split('le="')[1].split('"')[0]
                    out[le] = out.get(le, 0) + float(line.rsplit(" ", 1)[1])
    return out


def quantile(before, after, q):
    """The bucket bound (ms) below which a fraction q of the observations between
    two readings fall."""
    bounds = sorted((float(le), after[le] - before.get(le, 0)) for le in after if le != "+Inf")
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    if total <= 0:
        return None, 0
    for bound, count in bounds:
        if count >= q * total:
            return bound * 1000, int(total)
    return float("inf"), int(total)


def fill(bootstrap, topic, mib):
    """Writes `mib` MiB of 64 KiB records into partition 0 of `topic`."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 20,
                  "batch.size": 512 << 10, "queue.buffering.max.kbytes": 262144, "message.max.bytes": 1 << 20})
    failed = []
    value = b"m" * 65536
    for _ in range(mib * 16):
        while True:
            try:
                p.produce(topic, value=value, partition=0, on_delivery=lambda e, m: e and failed.append(e))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(300) == 0 and not failed, failed[:3]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each produce run")
    ap.add_argument("--settle", type=float, default=5.0, help="pause between runs, seconds")
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--lease-ttl", type=int, default=5)
    ap.add_argument("--move-mib", type=int, default=1024, help="size of the partition moved (0: skip)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        run.build()
    base = pathlib.Path(tempfile.mkdtemp(dir=ROOT / "target", prefix="bench-cluster-"))
    results = {}

    # Single node, its embedded default (local journal with fsync), same machine.
    data = base / "single" / "data"
    data.mkdir(parents=True)
    port, http_port = run.free_port(), run.free_port()
    proc = run.start_broker(data, port, http_port, {})
    try:
        results["single"] = workload(f"127.0.0.1:{port}", "single", args.seconds, args.settle)
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    os.environ["TRIBUTARY_BIN"] = str(run.BROKER)
    c = LocalCluster(base / "cluster", lease_ttl=args.lease_ttl, name="bench")
    try:
        c.up(args.brokers)
        bootstrap = c.bootstrap
        before = histogram(c.nodes, "tributary_wal_put_duration_seconds")
        results["cluster"] = workload(bootstrap, "cluster", args.seconds, args.settle)
        after = histogram(c.nodes, "tributary_wal_put_duration_seconds")
        results["put_ms"] = {q: quantile(before, after, q) for q in (0.5, 0.99)}

        # Failover: SIGKILL the owner of partition 0 of the workload topic.
        topic = "bench-cluster"
        owner = leaders(bootstrap, topic)[0]
        victim = next(n for n in c.nodes if n.id == owner)
        killed = time.monotonic()
        victim.kill()
        live = ",".join(n.address for n in c.nodes if n is not victim)
        wait_until(lambda: all(b != owner for b in leaders(live, topic).values()) and served(live, topic, PARTITIONS),
                   120, "every partition served after the kill")
        results["failover_s"] = time.monotonic() - killed
        victim.start()
        wait_until(lambda: served(c.bootstrap, topic, PARTITIONS), 120, "served with the broker back")

        if args.move_mib:
            topic = "bench-move"
            create(c.bootstrap, topic, 1)
            started = time.monotonic()
            fill(c.bootstrap, topic, args.move_mib)
            results["fill_s"] = time.monotonic() - started
            owner = leaders(c.bootstrap, topic)[0]
            leaving = next(n for n in c.nodes if n.id == owner)
            stopped = time.monotonic()
            leaving.stop()
            live = ",".join(n.address for n in c.nodes if n is not leaving)
            wait_until(lambda: leaders(live, topic).get(0) not in (None, owner) and served(live, topic, 1), 120,
                       "the 1 GiB partition served by its new owner")
            results["move_s"] = time.monotonic() - stopped
            results["move_mib"] = args.move_mib
    finally:
        c.down()
        # The brokers' data, the object store and the 1 GiB partition: several GB.
        shutil.rmtree(base, ignore_errors=True)

    s, k = results["single"], results["cluster"]
    print(f"\n## Cluster benchmark ({args.brokers} brokers on s3s-fs vs one broker on local disk, "
          f"{SIZE} B records, {PARTITIONS} partitions, acks=all, {args.seconds:.0f} s per run, one 2-core machine)\n")
    print("| | peak records/s | peak MB/s | at half rate: p50 / p99 ms | consume MB/s |\n|---|---|---|---|---|")
    for label, r in (("single node", s), (f"{args.brokers}-broker cluster", k)):
        p, h, co = r["peak"], r["half"], r["consume"]
        print(f"| {label} | {p['records_per_sec']:,.0f} | {p['mb_per_sec']:.1f} | "
              f"{h['p50_ms']:.2f} / {h['p99_ms']:.2f} | {co['mb_per_sec']:.1f} |")
    (p50, n), (p99, _) = results["put_ms"][0.5], results["put_ms"][0.99]
    print(f"\nJournal-object PUTs to s3s-fs in the same runs: {n:,} uploads, p50 <= {p50:g} ms, p99 <= {p99:g} ms "
          "(histogram bucket bounds)")
    print(f"Failover (SIGKILL of a partition owner, lease TTL {args.lease_ttl} s): every partition served again "
          f"after {results['failover_s']:.2f} s")
    if "move_s" in results:
        print(f"Move of a partition holding {results['move_mib']} MiB (written in {results['fill_s']:.1f} s; owner "
              f"stopped with SIGTERM): served by its new owner after {results['move_s']:.2f} s")
    out = ROOT / "target" / "bench-cluster-results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nRaw results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
