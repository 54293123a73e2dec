"""Kafka Streams (kafka-streams 4.4.0) against Tributary: an application with
processing.guarantee=exactly_once_v2 (compat-tests/streams/RunningTotals.java: a sum
per key in a state store whose changelog Streams creates, every new total written
out) is killed with SIGKILL while it works and started again, once with
transaction.version 2 finalized (its producers use transactions v2: no
AddPartitionsToTxn) and once with 1. A read_committed reader of the
output must see, for every key, exactly the running totals of that key's inputs in
order: none twice (an aborted transaction's writes hidden, the state restored from
its changelog as of the last commit), none missing."""

import struct
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import unique, wait_until
from test_java_client import requests

KEYS = 12
RECORDS = 4000


class App:
    """One RunningTotals process, its output read line by line."""

    def __init__(self, classpath, bootstrap, app_id, source, sink, state_dir):
        self.proc = subprocess.Popen(
            ["java", "-cp", classpath, "RunningTotals", bootstrap, app_id, source, sink, str(state_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def running(self):
        assert self.proc.poll() is None, "the Streams application exited:\n" + "\n".join(self.lines[-30:])
        assert not any(l.startswith(("ERROR", "UNCAUGHT")) for l in self.lines), "\n".join(self.lines[-30:])
        return "RUNNING" in self.lines


@pytest.mark.parametrize("version", [2, 1])
def test_kafka_streams_exactly_once_v2_survives_a_sigkill(make_broker, streams_classpath, tmp_path, version):
    broker = make_broker(env={"TRIBUTARY_TRANSACTIONS_VERSION": str(version)})
    broker.start()
    added_before = requests(broker, "AddPartitionsToTxn")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    source, sink, app_id = unique("in"), unique("out"), unique("totals")
    for f in admin.create_topics([NewTopic(source, 3, 1), NewTopic(sink, 3, 1)]).values():
        f.result(timeout=15)

    # The inputs, produced at about 1,000 records/s while the application runs and
    # dies: key k<i % 12>, value i + 1 as Serdes.Long writes it.
    inputs = {f"k{k}": [] for k in range(KEYS)}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5})
    sent = threading.Event()

    def produce():
        for i in range(RECORDS):
            key = f"k{i % KEYS}"
            inputs[key].append(i + 1)
            producer.produce(source, key=key.encode(), value=struct.pack(">q", i + 1))
            if i % 50 == 49:
                producer.poll(0)
                time.sleep(0.05)
        assert producer.flush(60) == 0
        sent.set()

    # A read_committed reader of the output, from the start, in offset order per
    # partition (one key stays in one partition).
    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("check"),
                       "isolation.level": "read_committed", "enable.auto.commit": False})
    reader.assign([TopicPartition(sink, p, 0) for p in range(3)])
    seen = {f"k{k}": [] for k in range(KEYS)}

    def read_some(seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = reader.poll(0.1)
            if m is not None and not m.error():
                seen[m.key().decode()].append(struct.unpack(">q", m.value())[0])
        return sum(len(v) for v in seen.values())

    state = tmp_path / "state"
    app = App(streams_classpath, broker.bootstrap, app_id, source, sink, state)
    wait_until(app.running, timeout=120, what="the Streams application to run")
    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    # Killed in the middle: after some totals are committed, long before the inputs end.
    wait_until(lambda: read_some(0.2) >= 300, timeout=90, what="the first committed totals")
    app.proc.kill()
    app.proc.wait(30)
    killed_at = sum(len(v) for v in seen.values())

    app = App(streams_classpath, broker.bootstrap, app_id, source, sink, state)
    wait_until(app.running, timeout=120, what="the Streams application to run again")
    assert sent.wait(120), "the inputs were not all produced"
    finals = {k: sum(v) for k, v in inputs.items()}
    wait_until(lambda: read_some(0.2) and all(seen[k] and seen[k][-1] == finals[k] for k in finals) or
               any(len(seen[k]) > len(inputs[k]) for k in finals),
               timeout=120, what="every key's final total")
    read_some(1.0)  # anything after the finals would be a duplicate
    app.proc.stdin.write("stop\n")
    app.proc.stdin.flush()
    app.proc.wait(60)
    reader.close()

    for key, values in inputs.items():
        totals, running = [], 0
        for v in values:
            running += v
            totals.append(running)
        assert seen[key] == totals, (f"{key}: {len(seen[key])} totals read, {len(totals)} expected; "
                                     f"first difference at {next((i for i, (a, b) in enumerate(zip(seen[key], totals)) if a != b), min(len(seen[key]), len(totals)))}")
    added = requests(broker, "AddPartitionsToTxn") - added_before
    ends = requests(broker, "EndTxn")
    print(f"transaction.version {version}: {RECORDS} inputs over {KEYS} keys; killed after {killed_at} committed "
          f"totals; every key's running totals read once each, in order; {ends:.0f} EndTxn, "
          f"{added:.0f} AddPartitionsToTxn")
    assert ends > 0
    assert (added == 0) if version == 2 else (added > 0), f"transactions v{version}: {added} AddPartitionsToTxn"
