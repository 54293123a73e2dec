#!/usr/bin/env python3
"""Tributary benchmark: durable produce throughput and latency, consume throughput,
and the raw sequential write bandwidth of the same disk with fdatasync, measured in
the same run and printed side by side.

    python3 bench/run.py [--seconds 10] [--data-dir DIR] [--kafka]

Builds the broker and bench/loadgen in release mode, starts the broker on free
loopback ports with a fresh data directory, runs the matrix (100 B and 1 KiB
records, 1 and 8 partitions, acks=all): first at full speed, then at half that
rate for latency; then consumes the largest topic from the start. Stops the
broker by its PID. With --kafka, runs the same matrix against Apache Kafka 4.4 (the
jars of compat-tests/kafka, fetched by Maven), once fsyncing every append and once
with its default page-cache durability, and prints the three side by side. Not part
of the test suite."""

import argparse
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOADGEN_DIR = ROOT / "bench" / "loadgen"
LOADGEN = LOADGEN_DIR / "target" / "release" / "loadgen"
BROKER = ROOT / "target" / "release" / "tributary"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_json(args, timeout=600):
    r = subprocess.run([str(LOADGEN), *map(str, args)], capture_output=True, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"loadgen {args[0]} failed:\n{r.stderr.decode(errors='replace')}")
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def build():
    subprocess.run(["cargo", "build", "--release", "--bin", "tributary"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release"], cwd=LOADGEN_DIR, check=True)


def start_broker(data_dir, port, http_port, env_extra):
    env = dict(os.environ, RUST_LOG="info", **env_extra)
    log = open(data_dir.parent / "broker.log", "ab")
    proc = subprocess.Popen([str(BROKER), "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
                             "--http-listen", f"127.0.0.1:{http_port}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("broker exited during start; see broker.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("broker not ready within 60s")


def matrix(bootstrap, args):
    """The produce matrix (peak, then half rate for latency) and a consume from the
    start of the largest topic, against the broker at `bootstrap`."""
    produce, delivered = [], {}
    for size in (100, 1024):
        for partitions in (1, 8):
            topic = f"bench-{size}-{partitions}"
            time.sleep(args.settle)
            peak = run_json(["produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", partitions,
                             "--size", size, "--seconds", args.seconds])
            # A saturating run leaves the client's multi-GB queue and the machine
            # busy for seconds after it ends; latency is a steady-state figure.
            time.sleep(args.settle)
            half = run_json(["produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", partitions,
                             "--size", size, "--seconds", args.seconds,
                             "--rate", round(peak["records_per_sec"] / 2)])
            delivered[topic] = (partitions, peak["delivered"] + half["delivered"])
            produce.append({"size": size, "partitions": partitions, "peak": peak, "half": half})
            print(f"  {bootstrap} {topic}: {peak['mb_per_sec']:.1f} MB/s peak", file=sys.stderr)
    topic = "bench-1024-8"
    partitions, count = delivered[topic]
    time.sleep(args.settle)
    consume = run_json(["consume", "--bootstrap", bootstrap, "--topic", topic, "--partitions", partitions,
                        "--expect", count])
    return produce, consume


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each produce run")
    ap.add_argument("--data-dir", help="where the broker keeps its data (default: a temp dir under target/)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--settle", type=float, default=10.0, help="pause between runs, seconds")
    ap.add_argument("--durability", default="fsync", choices=["fsync", "interval"])
    ap.add_argument("--kafka", action="store_true",
                    help="run the same matrix against Apache Kafka 4.4 (compat-tests/kafka, Maven), with an "
                         "fsync per append and with its default page-cache durability, and print them beside")
    args = ap.parse_args()
    if not args.no_build:
        build()
    base = pathlib.Path(args.data_dir) if args.data_dir else pathlib.Path(tempfile.mkdtemp(dir=ROOT / "target"))
    base.mkdir(parents=True, exist_ok=True)
    data_dir = base / "data"
    data_dir.mkdir(exist_ok=True)

    results = {"disk": [], "produce": [], "consume": None}
    for block in (256 * 1024, 1024 * 1024):
        results["disk"].append(run_json(["disk", "--dir", data_dir, "--block", block, "--seconds", 5]))

    port, http_port = free_port(), free_port()
    proc = start_broker(data_dir, port, http_port, {"TRIBUTARY_JOURNAL_DURABILITY": args.durability})
    try:
        results["produce"], results["consume"] = matrix(f"127.0.0.1:{port}", args)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    if args.kafka:
        results["kafka"] = {}
        sys.path.insert(0, str(ROOT / "compat-tests"))
        import kafkakit
        classpath = kafkakit.maven_classpath("kafka")
        # Kafka acknowledges acks=all once the in-sync replicas have the batch in
        # their page cache; log.flush.interval.messages=1 makes it fsync every
        # append first, the durability Tributary's default gives.
        for name, extra in (("fsync", ["log.flush.interval.messages=1"]), ("page cache", [])):
            workdir = base / f"kafka-{name.replace(' ', '-')}"
            workdir.mkdir()
            kafka = kafkakit.ApacheKafka(workdir, classpath, extra=extra, heap="1g")
            kafka.start()
            try:
                produce, consume = matrix(kafka.bootstrap, args)
            finally:
                kafka.stop()
            results["kafka"][name] = {"produce": produce, "consume": consume}

    raw = max(d["mb_per_sec"] for d in results["disk"])
    print(f"\n## Tributary benchmark ({args.durability} durability, {args.seconds:.0f} s per run, 2-core machine)\n")
    print("| disk probe: sequential write + fdatasync | MB/s | p50 ms | p99 ms |\n|---|---|---|---|")
    for d in results["disk"]:
        print(f"| {d['block'] // 1024} KiB blocks | {d['mb_per_sec']:.1f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} |")
    print("\n| record | partitions | peak records/s | peak MB/s | % of raw disk | at half rate: p50 / p99 / p999 ms |")
    print("|---|---|---|---|---|---|")
    for r in results["produce"]:
        p, h = r["peak"], r["half"]
        print(f"| {r['size']} B | {r['partitions']} | {p['records_per_sec']:,.0f} | {p['mb_per_sec']:.1f} | "
              f"{100 * p['mb_per_sec'] / raw:.0f}% | {h['p50_ms']:.2f} / {h['p99_ms']:.2f} / {h['p999_ms']:.2f} |")
    c = results["consume"]
    print(f"\nConsume from start (bench-1024-8, {c['records']:,} records): "
          f"{c['records_per_sec']:,.0f} records/s, {c['mb_per_sec']:.1f} MB/s")
    if args.kafka:
        k = results["kafka"]
        print("\n## Beside Apache Kafka 4.4 (same machine, same loadgen, acks=all, one replica)\n")
        print("| record | partitions | Tributary peak MB/s | Kafka fsync peak MB/s | Kafka page cache peak MB/s | "
              "p99 ms at half rate: Tributary / Kafka fsync / Kafka page cache |")
        print("|---|---|---|---|---|---|")
        for i, r in enumerate(results["produce"]):
            f, c = k["fsync"]["produce"][i], k["page cache"]["produce"][i]
            print(f"| {r['size']} B | {r['partitions']} | {r['peak']['mb_per_sec']:.1f} | {f['peak']['mb_per_sec']:.1f} | "
                  f"{c['peak']['mb_per_sec']:.1f} | {r['half']['p99_ms']:.2f} / {f['half']['p99_ms']:.2f} / "
                  f"{c['half']['p99_ms']:.2f} |")
        print("\nConsume from start (bench-1024-8), MB/s: Tributary {:.1f}, Kafka fsync {:.1f}, Kafka page cache {:.1f}"
              .format(results["consume"]["mb_per_sec"], k["fsync"]["consume"]["mb_per_sec"],
                      k["page cache"]["consume"]["mb_per_sec"]))
    out = ROOT / "target" / "bench-results.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nRaw results: {out.relative_to(ROOT)}")
    if not args.data_dir:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
