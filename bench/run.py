#!/usr/bin/env python3
"""Tributary benchmark: durable produce throughput and latency, consume throughput,
and the raw sequential write bandwidth of the same disk with fdatasync, measured in
the same run and printed side by side.

    python3 bench/run.py [--seconds 10] [--data-dir DIR] [--kafka]

Builds the broker and bench/loadgen in release mode, starts the broker on free
loopback ports with a fresh data directory, runs the matrix (100 B and 1 KiB
records, 1 and 8 partitions, acks=all): first at full speed, then at half that
rate for latency (and at a quarter and three quarters, so the curve shows where
queueing starts), with the broker's own stage percentiles (from its /metrics
histograms) beside the client's; then consumes the largest topic from the start.
Where the machine has 4 cores or more, the broker and the load generator are pinned
to separate halves of them (said in the output either way). Stops the broker by its
PID. With --kafka, runs the same matrix against Apache Kafka 4.4 (the
jars of compat-tests/kafka, fetched by Maven), once fsyncing every append and once
with its default page-cache durability, and prints the three side by side, with
Kafka's own kafka-producer-perf-test run against each of the three as well; and,
since each broker's half rate is its own, it compares them at the same rates too:
Kafka with its default durability and Tributary (on a fresh broker) each run once
more at the half rate of Kafka with an fsync per append. Not part of the test
suite."""

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


def cores():
    """(broker cores, loadgen cores) when there are enough to split, else None."""
    n = os.cpu_count() or 1
    if n < 4:
        return None
    return set(range(n // 2)), set(range(n // 2, n))


def pinned(which):
    split = cores()
    if split is None:
        return None
    mask = split[0] if which == "broker" else split[1]
    return lambda: os.sched_setaffinity(0, mask)


def run_json(args, timeout=600):
    r = subprocess.run([str(LOADGEN), *map(str, args)], capture_output=True, timeout=timeout,
                       preexec_fn=pinned("loadgen"))
    if r.returncode != 0:
        sys.exit(f"loadgen {args[0]} failed:\n{r.stderr.decode(errors='replace')}")
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    if not out.get("delivered", 1):
        # A broker that took nothing (gone, or the topic missing) is no figure.
        sys.exit(f"loadgen {' '.join(map(str, args))} delivered nothing:\n{r.stderr.decode(errors='replace')[-2000:]}")
    return out


def discard(path, args):
    """A broker's data once its figures are taken: the matrix writes tens of GB, and
    three brokers' worth at once filled a disk here. Kept when --data-dir is given."""
    if not args.data_dir:
        shutil.rmtree(path, ignore_errors=True)


def build():
    subprocess.run(["cargo", "build", "--release", "--bin", "tributary"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release"], cwd=LOADGEN_DIR, check=True)


def start_broker(data_dir, port, http_port, env_extra):
    env = dict(os.environ, RUST_LOG="info", **env_extra)
    log = open(data_dir.parent / "broker.log", "ab")
    proc = subprocess.Popen([str(BROKER), "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
                             "--http-listen", f"127.0.0.1:{http_port}"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=pinned("broker"))
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


# The broker's produce stages, as its /metrics histograms name them.
STAGES = [
    ("handle", "tributary_request_stage_duration_seconds", {"api": "Produce", "stage": "handle"}),
    ("journal queue", "tributary_journal_queue_duration_seconds", {}),
    ("journal write", "tributary_journal_write_duration_seconds", {}),
    ("fsync", "tributary_journal_fsync_duration_seconds", {}),
    ("response slot", "tributary_request_stage_duration_seconds", {"api": "Produce", "stage": "response_slot"}),
    ("response write", "tributary_request_stage_duration_seconds", {"api": "Produce", "stage": "response_write"}),
    ("whole request", "tributary_request_duration_seconds", {"api": "Produce"}),
]


def scrape(url):
    """Cumulative bucket counts of the STAGES histograms: name -> [(le, count)]."""
    if url is None:
        return {}
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for stage, metric, labels in STAGES:
        buckets = []
        for line in text.splitlines():
            if not line.startswith(metric + "_bucket{"):
                continue
            inside, value = line[len(metric) + 8:].rsplit("} ", 1)
            kv = dict(part.split("=", 1) for part in inside.split(","))
            kv = {k: v.strip('"') for k, v in kv.items()}
            if all(kv.get(k) == v for k, v in labels.items()):
                buckets.append((float("inf") if kv["le"] == "+Inf" else float(kv["le"]), float(value)))
        out[stage] = sorted(buckets)
    return out


SEGMENT_BYTES = 64 * 1024 * 1024  # the broker's default segment.bytes, which the bench keeps


def await_sealing(url, deadline_s=120.0):
    """Waits until the broker has sealed what a run left sealable, so that a latency
    run measures its rate and not the catch-up after a saturating run (bench topics
    end in their partition count; a partition seals at SEGMENT_BYTES). Returns the
    seconds waited (None without /metrics)."""
    if url is None:
        return None
    started = time.monotonic()
    while True:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        behind = False
        for line in text.splitlines():
            if line.startswith('tributary_flush_lag_bytes{topic="'):
                topic = line.split('"')[1]
                partitions = int(topic.rsplit("-", 1)[1]) if topic.rsplit("-", 1)[-1].isdigit() else 1
                behind |= float(line.rsplit(" ", 1)[1]) > partitions * SEGMENT_BYTES
        waited = time.monotonic() - started
        if not behind or waited > deadline_s:
            return round(waited, 1)
        time.sleep(0.25)


def quantile(before, after, q):
    """q of the observations between two scrapes, interpolated in its bucket (ms)."""
    delta = [(le, a - b) for (le, a), (_, b) in zip(after, before or [(le, 0.0) for le, _ in after])]
    if not delta or delta[-1][1] <= 0:
        return None
    rank, prev_le, prev_count = q * delta[-1][1], 0.0, 0.0
    for le, count in delta:
        if count >= rank:
            if le == float("inf"):
                return prev_le * 1000
            return 1000 * (prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9))
        prev_le, prev_count = le, count
    return None


def stages_between(before, after):
    return {stage: {f"p{n}": quantile(before.get(stage), after[stage], q) for n, q in (("50", 0.5), ("99", 0.99))}
            for stage in after}


def at_rates(bootstrap, args, rates, metrics_url=None):
    """One latency run per (size, partitions) at the given records/s."""
    out = []
    for (size, partitions), rate in rates.items():
        time.sleep(args.settle)
        sealing_wait = await_sealing(metrics_url)
        before = scrape(metrics_url)
        run = run_json(["produce", "--bootstrap", bootstrap, "--topic", f"rate-{size}-{partitions}", "--partitions",
                        partitions, "--size", size, "--seconds", args.seconds, "--rate", rate])
        if metrics_url:
            run["broker_stages"] = stages_between(before, scrape(metrics_url))
            run["sealing_wait_s"] = sealing_wait
        out.append(run)
    return out


def matrix(bootstrap, args, metrics_url=None):
    """The produce matrix (peak, then a quarter, half and three quarters of it for
    latency, with the broker's stage percentiles where it has /metrics) and a consume
    from the start of the largest topic, against the broker at `bootstrap`."""
    produce, delivered = [], {}
    for size in (100, 1024):
        for partitions in (1, 8):
            topic = f"bench-{size}-{partitions}"
            time.sleep(args.settle)
            peak = run_json(["produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", partitions,
                             "--size", size, "--seconds", args.seconds])
            # A saturating run leaves the client's multi-GB queue and the machine
            # busy for seconds after it ends, and sealing behind by gigabytes;
            # latency is a steady-state figure (await_sealing's wait is reported).
            at = {}
            for share in (0.25, 0.5, 0.75):
                time.sleep(args.settle)
                sealing_wait = await_sealing(metrics_url)
                before = scrape(metrics_url)
                run = run_json(["produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", partitions,
                                "--size", size, "--seconds", args.seconds,
                                "--rate", round(peak["records_per_sec"] * share)])
                if metrics_url:
                    run["broker_stages"] = stages_between(before, scrape(metrics_url))
                    run["sealing_wait_s"] = sealing_wait
                at[share] = run
            half = at[0.5]
            delivered[topic] = (partitions, peak["delivered"] + sum(r["delivered"] for r in at.values()))
            produce.append({"size": size, "partitions": partitions, "peak": peak, "half": half,
                            "quarter": at[0.25], "three_quarters": at[0.75]})
            print(f"  {bootstrap} {topic}: {peak['mb_per_sec']:.1f} MB/s peak", file=sys.stderr)
    topic = "bench-1024-8"
    partitions, count = delivered[topic]
    time.sleep(args.settle)
    consume = run_json(["consume", "--bootstrap", bootstrap, "--topic", topic, "--partitions", partitions,
                        "--expect", count])
    return produce, consume


PERF_RE = (r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
           r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def producer_perf_test(classpath, bootstrap, records=300_000, size=1024):
    """Kafka's own kafka-producer-perf-test (ProducerPerformance from the Kafka jars):
    acks=all, `records` records of `size` bytes as fast as it goes, into a fresh
    8-partition topic (created by kafka-topics)."""
    import re
    topic = f"perf-{size}-{int(time.time() * 1000)}"
    java = ["java", "-cp", classpath]
    subprocess.run(java + ["org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create",
                           "--topic", topic, "--partitions", "8", "--replication-factor", "1"],
                   check=True, capture_output=True, timeout=120)
    r = subprocess.run(java + ["org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records",
                               str(records), "--record-size", str(size), "--throughput", "-1", "--producer-props",
                               f"bootstrap.servers={bootstrap}", "acks=all", "linger.ms=5", "batch.size=262144"],
                       capture_output=True, text=True, timeout=600)
    m = re.search(PERF_RE, r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"kafka-producer-perf-test failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    keys = ("records", "records_per_sec", "mb_per_sec", "avg_ms", "max_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms")
    return {k: float(v) for k, v in zip(keys, m.groups())}


def split_of(run):
    """Where a client's delivery time went, from librdkafka's statistics: the p99 of
    a record's wait in the client's queue (linger included) and of a request's round
    trip to the broker (sent to answered; the broker's time plus the sockets')."""
    if run.get("rtt_p99_ms") is None:
        return "-"
    return f"{run['client_queue_p99_ms']:.2f} / {run['rtt_p99_ms']:.2f}"


def peak_rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


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
    try:
        measure_and_print(args, base)
    finally:
        discard(base, args)


def measure_and_print(args, base):
    data_dir = base / "data"
    data_dir.mkdir(exist_ok=True)

    results = {"disk": [], "produce": [], "consume": None}
    for block in (256 * 1024, 1024 * 1024):
        results["disk"].append(run_json(["disk", "--dir", data_dir, "--block", block, "--seconds", 5]))

    classpath = None
    if args.kafka:
        sys.path.insert(0, str(ROOT / "compat-tests"))
        import kafkakit
        classpath = kafkakit.maven_classpath("kafka")
    port, http_port = free_port(), free_port()
    proc = start_broker(data_dir, port, http_port, {"TRIBUTARY_JOURNAL_DURABILITY": args.durability})
    try:
        results["produce"], results["consume"] = matrix(f"127.0.0.1:{port}", args,
                                                        f"http://127.0.0.1:{http_port}/metrics")
        # Peak memory over the fill and the consume from the start (the Kafka
        # producer perf test after it is left out).
        results["peak_rss_mib"] = peak_rss_mib(proc.pid)
        if classpath:
            time.sleep(args.settle)
            results["perf_test"] = producer_perf_test(classpath, f"127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        discard(data_dir, args)
    if args.kafka:
        results["kafka"] = {}
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
                time.sleep(args.settle)
                perf = producer_perf_test(classpath, kafka.bootstrap)
                results["kafka"][name] = {"produce": produce, "consume": consume, "perf_test": perf}
                if name == "fsync":
                    same_rates = {(r["size"], r["partitions"]): round(r["peak"]["records_per_sec"] / 2)
                                  for r in produce}
                else:
                    results["kafka"][name]["same_rate"] = at_rates(kafka.bootstrap, args, same_rates)
            finally:
                kafka.stop()
                discard(workdir, args)
        # Tributary at the same rates, on a fresh broker and data directory.
        same_dir = base / "data-same-rate"
        same_dir.mkdir()
        port, http_port = free_port(), free_port()
        proc = start_broker(same_dir, port, http_port, {"TRIBUTARY_JOURNAL_DURABILITY": args.durability})
        try:
            # Warmed up first, as Kafka was by its whole matrix: a fresh broker's
            # first seconds (first journal files, caches filling) are not its tail.
            at_rates(f"127.0.0.1:{port}", args, same_rates)
            results["same_rate"] = at_rates(f"127.0.0.1:{port}", args, same_rates, f"http://127.0.0.1:{http_port}/metrics")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            discard(same_dir, args)

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
    print("\n| record | partitions | client p99 ms at 1/4 / 1/2 / 3/4 of peak |\n|---|---|---|")
    for r in results["produce"]:
        print(f"| {r['size']} B | {r['partitions']} | {r['quarter']['p99_ms']:.2f} / {r['half']['p99_ms']:.2f} / "
              f"{r['three_quarters']['p99_ms']:.2f} |")
    names = [stage for stage, _, _ in STAGES]
    print("\nBroker-side produce stages at half the peak rate, p50 / p99 ms (from its /metrics histograms, "
          "interpolated within buckets):\n")
    print("| record | partitions | " + " | ".join(names) + " | client p50 / p99 | client queue / round trip p99 |")
    print("|---|---|" + "---|" * (len(names) + 2))
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    for r in results["produce"]:
        st = r["half"].get("broker_stages", {})
        cells = [f"{fmt(st.get(n, {}).get('p50'))} / {fmt(st.get(n, {}).get('p99'))}" for n in names]
        print(f"| {r['size']} B | {r['partitions']} | " + " | ".join(cells) +
              f" | {r['half']['p50_ms']:.2f} / {r['half']['p99_ms']:.2f} | {split_of(r['half'])} |")
    split = cores()
    print("\n" + (f"Broker pinned to cores {sorted(split[0])}, load generator to {sorted(split[1])}." if split else
                  f"Not pinned: {os.cpu_count()} cores are too few to give the broker and the load generator "
                  "their own (the client shares the broker's cores; its figures include that)."))
    waits = [(r["size"], r["partitions"], r[k].get("sealing_wait_s") or 0)
             for r in results["produce"] for k in ("quarter", "half", "three_quarters")]
    if waits:
        size, partitions, longest = max(waits, key=lambda w: w[2])
        print(f"\nEach latency run started once sealing had caught up with the runs before it: the longest wait "
              f"was {longest:.1f} s, at {size} B x {partitions}.")
    c = results["consume"]
    print(f"\nConsume from start (bench-1024-8, {c['records']:,} records): "
          f"{c['records_per_sec']:,.0f} records/s, {c['mb_per_sec']:.1f} MB/s")
    print(f"\nBroker peak RSS over the fill and the consume: {results['peak_rss_mib']:.0f} MiB (its caches may "
          "hold up to cache.total_bytes + storage.block_cache_bytes, 512 + 256 MiB by default)")
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
        print("\nAt the same rate, half of Kafka fsync's peak: client p50 / p99 / p99.9 ms (Tributary's "
              "whole-request p99 from its /metrics)\n")
        print("| record | partitions | MB/s | Tributary | Tributary broker p99 | Kafka fsync | Kafka page cache | "
              "round trip p99: Tributary / Kafka fsync / Kafka page cache |")
        print("|---|---|---|---|---|---|---|---|")
        pct = lambda r: f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['p999_ms']:.2f}"
        for i, r in enumerate(results["same_rate"]):
            f, c = k["fsync"]["produce"][i], k["page cache"]["same_rate"][i]
            whole = r.get("broker_stages", {}).get("whole request", {}).get("p99")
            print(f"| {r['size']} B | {r['partitions']} | {r['mb_per_sec']:.1f} | {pct(r)} | {fmt(whole)} | "
                  f"{pct(f['half'])} | {pct(c)} | {fmt(r.get('rtt_p99_ms'))} / {fmt(f['half'].get('rtt_p99_ms'))} / "
                  f"{fmt(c.get('rtt_p99_ms'))} |")
        print("\nConsume from start (bench-1024-8), MB/s: Tributary {:.1f}, Kafka fsync {:.1f}, Kafka page cache {:.1f}"
              .format(results["consume"]["mb_per_sec"], k["fsync"]["consume"]["mb_per_sec"],
                      k["page cache"]["consume"]["mb_per_sec"]))
        print("\nkafka-producer-perf-test (300,000 x 1 KiB, 8 partitions, acks=all, linger.ms=5, as fast as it "
              "goes):\n")
        print("| broker | records/s | MB/s | avg ms | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|---|")
        for name, perf in (("Tributary", results["perf_test"]), ("Kafka fsync", k["fsync"]["perf_test"]),
                           ("Kafka page cache", k["page cache"]["perf_test"])):
            print(f"| {name} | {perf['records_per_sec']:,.0f} | {perf['mb_per_sec']:.1f} | {perf['avg_ms']:.1f} | "
                  f"{perf['p50_ms']:.0f} | {perf['p99_ms']:.0f} | {perf['p999_ms']:.0f} | {perf['max_ms']:.0f} |")
    out = ROOT / "target" / "bench-results.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nRaw results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
