#!/usr/bin/env python3
"""Two broker builds side by side in one run: the same produce loads (bench/loadgen,
acks=all, fsync) against each, alternating A, B, A, B so drift of the machine hits
both, each on a fresh data directory. Per run, from the broker's /proc entry: MB/s,
the CPU seconds the broker spent per GB produced, the minor page faults per GB (the
kernel mapping and zeroing fresh memory for it), and its peak RSS.

With --latency, each load runs at half the peak rate build A reaches (measured
first) and the table shows latency instead: the client's p50/p99/p99.9 and the
broker's own stage p99s from its /metrics histograms (journal queue, fsync, whole
request), beside the CPU per GB.

    python3 bench/ab.py --a /path/to/tributary-before --b target/release/tributary \\
        [--seconds 10] [--rounds 2] [--latency] [--a-env K=V,...] [--b-env K=V,...]

--a-env/--b-env set environment variables for one side (a configuration A/B with
one build: `--a target/release/tributary --b target/release/tributary
--b-env TRIBUTARY_...=...`).

Builds nothing (build B with `cargo build --release --bin tributary`; keep a copy of
an earlier build as A). Not part of the test suite."""

import argparse
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (free_port, run_json, the loadgen path)

LOADS = [(1024, 8), (100, 1), (1024, 1)]


def proc_stats(pid):
    """(CPU seconds, minor faults, peak RSS in MiB) of a process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    minflt = int(fields[7])
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return cpu, minflt, hwm


def one(binary, size, partitions, seconds, base, rate=None, env_extra=None):
    data = pathlib.Path(tempfile.mkdtemp(dir=base))
    port, http = bench.free_port(), bench.free_port()
    env = dict(os.environ, RUST_LOG="warn", TRIBUTARY_JOURNAL_DURABILITY="fsync", **(env_extra or {}))
    proc = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http}",
                             "--data-dir", str(data)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                import urllib.request
                urllib.request.urlopen(f"http://127.0.0.1:{http}/health/ready", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        metrics = f"http://127.0.0.1:{http}/metrics"
        cpu0, flt0, _ = proc_stats(proc.pid)
        before = bench.scrape(metrics)
        r = bench.run_json(["produce", "--bootstrap", f"127.0.0.1:{port}", "--topic", f"ab-{size}-{partitions}",
                            "--partitions", partitions, "--size", size, "--seconds", seconds,
                            *(["--rate", rate] if rate else [])])
        cpu1, flt1, hwm = proc_stats(proc.pid)
        stages = bench.stages_between(before, bench.scrape(metrics))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)
    gb = r["mb_per_sec"] * seconds / 1000
    return {"mb_per_sec": r["mb_per_sec"], "cpu_s_per_gb": (cpu1 - cpu0) / gb, "faults_per_gb": (flt1 - flt0) / gb,
            "peak_rss_mib": hwm, "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "p999_ms": r["p999_ms"],
            "records_per_sec": r["records_per_sec"], "stages": stages}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--latency", action="store_true", help="half of A's peak rate; report latency")
    ap.add_argument("--a-env", default="", help="K=V,... for build A's broker")
    ap.add_argument("--b-env", default="", help="K=V,... for build B's broker")
    args = ap.parse_args()
    envs = {name: dict(kv.split("=", 1) for kv in spec.split(",") if kv)
            for name, spec in (("A", args.a_env), ("B", args.b_env))}
    base = pathlib.Path(tempfile.mkdtemp(dir=bench.ROOT / "target"))
    results, rates = {}, {}
    try:
        if args.latency:
            for size, partitions in LOADS:
                peak = one(args.a, size, partitions, args.seconds, base, env_extra=envs["A"])
                rates[(size, partitions)] = round(peak["records_per_sec"] / 2)
                print(f"  peak of A at {size} B x {partitions}: {peak['mb_per_sec']:.1f} MB/s", file=sys.stderr)
        for _ in range(args.rounds):
            for size, partitions in LOADS:
                for name, binary in (("A", args.a), ("B", args.b)):
                    r = one(binary, size, partitions, args.seconds, base, rates.get((size, partitions)), envs[name])
                    results.setdefault((size, partitions, name), []).append(r)
                    print(f"  {name} {size} B x {partitions}: {r}", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    avg = lambda runs, k: sum(r[k] for r in runs) / len(runs)  # noqa: E731
    if args.latency:
        stage = lambda runs, s: max((r["stages"].get(s) or {}).get("p99") or 0 for r in runs)  # noqa: E731
        print("\nAt half of A's peak rate; client p50 / p99 / p99.9 averaged over rounds, broker stage p99 the "
              "worst round (ms):\n")
        print("| load | build | MB/s | client p50 / p99 / p99.9 | journal queue p99 | journal write p99 | fsync p99 "
              "| whole request p99 | broker CPU s per GB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for size, partitions in LOADS:
            for name in ("A", "B"):
                runs = results[(size, partitions, name)]
                print(f"| {size} B x {partitions} | {name} | {avg(runs, 'mb_per_sec'):.1f} | "
                      f"{avg(runs, 'p50_ms'):.2f} / {avg(runs, 'p99_ms'):.2f} / {avg(runs, 'p999_ms'):.2f} | "
                      f"{stage(runs, 'journal queue'):.2f} | {stage(runs, 'journal write'):.2f} | "
                      f"{stage(runs, 'fsync'):.2f} | "
                      f"{stage(runs, 'whole request'):.2f} | {avg(runs, 'cpu_s_per_gb'):.2f} |")
        return
    print("\n| load | build | MB/s | broker CPU s per GB | minor faults per GB | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for size, partitions in LOADS:
        for name in ("A", "B"):
            runs = results[(size, partitions, name)]
            print(f"| {size} B x {partitions} | {name} | {avg(runs, 'mb_per_sec'):.1f} | "
                  f"{avg(runs, 'cpu_s_per_gb'):.2f} | {avg(runs, 'faults_per_gb'):,.0f} | "
                  f"{max(r['peak_rss_mib'] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
