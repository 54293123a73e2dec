#!/usr/bin/env python3
"""Auto-scaling, measured on a release broker:

1. Reaction: a stream with the `bytes` policy (target 1 MiB/s per partition, window
   and cooldown 5 s, factor 2) is produced at 3 MiB/s from one confluent-kafka
   producer (1 KiB records, metadata refreshed every second: the client's default
   is 5 minutes, which then bounds when it sees new partitions). Prints when each
   growth step shows in Metadata and when the producer's first record lands on a
   new partition, from the start of the overload.
2. Cost of measurement: N idle partitions (topics of 1,000), once with every topic
   on `fixed` and once with every topic on `bytes` (so the scaler samples them all,
   every second); prints the broker's CPU per second and its resident memory, idle,
   side by side.

    .venv/bin/python bench/scaling.py [--partitions 100000] [--idle-seconds 20]

Needs confluent-kafka (in .venv after scripts/test). Not part of the test suite."""

import argparse
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parent.parent
BROKER = ROOT / "target" / "release" / "tributary"
PER_TOPIC = 1000
MIB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir, env):
    port, http_port = free_port(), free_port()
    proc = subprocess.Popen([str(BROKER), "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
                             "--http-listen", f"127.0.0.1:{http_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, RUST_LOG="warn", **env))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("broker not ready")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def reaction(base):
    proc, bootstrap = start(base / "reaction", {"TRIBUTARY_TOPICS_SCALING_SAMPLE_MS": "100"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"tributary.scaling.policy": "bytes", "tributary.scaling.target": str(MIB),
              "tributary.scaling.factor": "2", "tributary.scaling.max.partitions": "8",
              "tributary.scaling.window.ms": "5000", "tributary.scaling.cooldown.ms": "5000"}
    admin.create_topics([NewTopic("hot", 1, 1, config=config)])["hot"].result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "topic.metadata.refresh.interval.ms": 1000,
                  "queue.buffering.max.messages": 1_000_000})
    first_on = {}
    started = time.monotonic()

    def done(err, msg):
        if err is None and msg.partition() not in first_on:
            first_on[msg.partition()] = time.monotonic() - started

    steps = [(0.0, 1)]
    value = b"x" * 1024
    rate = 3 * MIB // 1024  # records per second
    while time.monotonic() - started < 40:
        tick = time.monotonic()
        for _ in range(rate // 20):
            p.produce("hot", value=value, on_delivery=done)
        p.poll(0)
        count = len(admin.list_topics("hot", timeout=10).topics["hot"].partitions)
        if count != steps[-1][1]:
            steps.append((round(tick - started, 2), count))
        if steps[-1][1] >= 3 and tick - started > steps[-1][0] + 6:
            break
        time.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))
    p.flush(60)
    stop(proc)
    print("\n## Reaction to 3x the target (window 5 s, cooldown 5 s, factor 2)\n")
    print("| step | partitions | in Metadata after | first record on a new partition after |\n|---|---|---|---|")
    for (t, n), (_, before) in zip(steps[1:], steps):
        new = [first_on[q] for q in range(before, n) if q in first_on]
        print(f"| {before} -> {n} | {n} | {t:.2f} s | {min(new):.2f} s |" if new else
              f"| {before} -> {n} | {n} | {t:.2f} s | - |")


def idle_cost(base, partitions, seconds, policy):
    env = {"TRIBUTARY_TOPICS_SCALING_POLICY": policy, "TRIBUTARY_TOPICS_SCALING_TARGET": str(1 << 40)}
    proc, bootstrap = start(base / policy, env)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = max(1, partitions // PER_TOPIC)
    for i in range(0, topics, 10):
        fs = admin.create_topics([NewTopic(f"idle-{j}", PER_TOPIC, 1) for j in range(i, min(i + 10, topics))],
                                 operation_timeout=60)
        for f in fs.values():
            f.result(timeout=120)
    time.sleep(2)
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    rss = rss_bytes(proc.pid)
    stop(proc)
    return topics * PER_TOPIC, cpu, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=100_000)
    ap.add_argument("--idle-seconds", type=float, default=20)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bin", "tributary"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as tmp:
        base = pathlib.Path(tmp)
        reaction(base)
        rows = [(policy, *idle_cost(base, args.partitions, args.idle_seconds, policy)) for policy in ("fixed", "bytes")]
    print(f"\n## Measuring every partition, idle ({rows[0][1]:,} partitions, sampled every second)\n")
    print("| every topic's policy | broker CPU, idle | broker RSS |\n|---|---|---|")
    for policy, _, cpu, rss in rows:
        print(f"| {policy} | {cpu * 100:.2f} % of a core | {rss / MIB:.1f} MiB |")


if __name__ == "__main__":
    main()
