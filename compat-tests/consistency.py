"""A consistency workload in the style of Jepsen's Kafka tests: idempotent and
transactional producers and a read_committed consumer group run against one broker
while a nemesis SIGKILLs and restarts it, pauses it (SIGSTOP, then SIGCONT) and
restarts it cleanly, for a bounded time. Everything clients were told is recorded;
an offline checker then reads every partition back and reports

- lost: a record whose produce was acknowledged is not in the log;
- duplicated: a value is in the log more than once (idempotence and transactions
  both promise none);
- reordered: one producer's records of one partition are out of order in the log;
- aborted reads: a read_committed reader saw a record of an aborted transaction;
- torn transactions: a transaction whose records are partly visible to
  read_committed (all or nothing), or a committed one missing some;
- offsets back: a group's committed offset, or a partition's high watermark, seen
  lower than before.

`run(broker, seconds, seed)` returns the history; `check(broker, history)` the
anomalies by kind. `compat-tests/test_consistency.py` runs it short;
`python3 compat-tests/consistency.py --seconds 600` runs it long on its own broker."""

import random
import signal
import threading
import time
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import unique, wait_until

PARTITIONS = 4


class History:
    def __init__(self, topic):
        self.topic = topic
        self.lock = threading.Lock()
        self.acked = {}  # value -> (partition, offset)
        self.txns = {}  # txn id -> (outcome, [values]); outcome: committed, aborted, unknown
        # (consumer, partition) -> committed offsets that consumer saw, in order (one
        # consumer's reads are ordered in time; two consumers' are not).
        self.commits = defaultdict(list)
        self.watermarks = defaultdict(list)  # partition -> high watermarks seen, in order
        self.consumed = []  # (partition, offset, value) seen by the read_committed group
        self.faults = []
        self.produced = 0


def idempotent_producer(broker, h, name, stop):
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 2, "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 200})
    seq = 0

    def cb(err, msg):
        if err is None:
            with h.lock:
                h.acked[msg.value()] = (msg.partition(), msg.offset())

    while not stop.is_set():
        value = f"{name}-{seq:07d}".encode()
        try:
            p.produce(h.topic, value=value, key=name.encode(), on_delivery=cb)
            seq += 1
        except BufferError:
            p.poll(0.05)
        p.poll(0)
        if seq % 50 == 0:
            time.sleep(0.01)
    p.flush(90)
    with h.lock:
        h.produced += seq


def transactional_producer(broker, h, stop, rng):
    def make():
        p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"{h.topic}-txn",
                      "transaction.timeout.ms": 20000, "message.timeout.ms": 20000,
                      "reconnect.backoff.max.ms": 200})
        p.init_transactions(60)
        return p

    p = None
    n = 0
    while not stop.is_set():
        tid = n
        n += 1
        values = [f"txn-{tid:05d}-{i}".encode() for i in range(5)]
        with h.lock:
            h.txns[tid] = ("unknown", values)
        try:
            if p is None:
                p = make()
            p.begin_transaction()
            for i, v in enumerate(values):
                p.produce(h.topic, value=v, partition=rng.randrange(PARTITIONS))
            if rng.random() < 0.3:
                p.abort_transaction(30)
                outcome = "aborted"
            else:
                p.commit_transaction(30)
                outcome = "committed"
            with h.lock:
                h.txns[tid] = (outcome, values)
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                try:
                    p.abort_transaction(30)
                    with h.lock:
                        h.txns[tid] = ("aborted", values)
                    continue
                except KafkaException:
                    pass
            # Outcome unknown (a commit cut by the nemesis): all or nothing must hold.
            p = None
            time.sleep(0.2)


def group_consumer(broker, h, group, name, stop):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "isolation.level": "read_committed",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                  "reconnect.backoff.max.ms": 200})
    c.subscribe([h.topic])
    polls = 0
    while not stop.is_set():
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            with h.lock:
                h.consumed.append((m.partition(), m.offset(), m.value()))
        polls += 1
        if polls % 10 == 0:
            try:
                c.commit(asynchronous=False)
                for tp in c.committed([TopicPartition(h.topic, p) for p in range(PARTITIONS)], timeout=5):
                    if tp.offset >= 0:
                        with h.lock:
                            h.commits[(name, tp.partition)].append((tp.offset, time.monotonic()))
            except KafkaException:
                pass
    c.close()


def watermarks(broker, h, stop):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("hw"), "reconnect.backoff.max.ms": 200})
    while not stop.is_set():
        for p in range(PARTITIONS):
            try:
                hw = c.get_watermark_offsets(TopicPartition(h.topic, p), timeout=2)[1]
                with h.lock:
                    h.watermarks[p].append(hw)
            except KafkaException:
                pass
        stop.wait(0.3)
    c.close()


def nemesis(broker, h, stop, rng, deadline):
    while time.monotonic() < deadline and not stop.is_set():
        stop.wait(rng.uniform(3.0, 5.0))
        if time.monotonic() >= deadline:
            break
        fault = rng.choice(["kill", "kill", "pause", "restart"])
        h.faults.append(fault)
        if fault == "kill":
            broker.kill()
            broker.start()
        elif fault == "pause":
            broker.proc.send_signal(signal.SIGSTOP)
            time.sleep(rng.uniform(0.5, 2.0))
            broker.proc.send_signal(signal.SIGCONT)
        else:
            broker.restart()


def run(broker, seconds, seed):
    rng = random.Random(seed)
    topic = unique("jepsen")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS)])[topic].result(30)
    h = History(topic)
    stop = threading.Event()
    workers = [
        threading.Thread(target=idempotent_producer, args=(broker, h, "p0", stop)),
        threading.Thread(target=idempotent_producer, args=(broker, h, "p1", stop)),
        threading.Thread(target=transactional_producer, args=(broker, h, stop, random.Random(seed + 1))),
        threading.Thread(target=group_consumer, args=(broker, h, f"{topic}-g", "c0", stop)),
        threading.Thread(target=group_consumer, args=(broker, h, f"{topic}-g", "c1", stop)),
        threading.Thread(target=watermarks, args=(broker, h, stop)),
    ]
    for w in workers:
        w.start()
    try:
        nemesis(broker, h, stop, rng, time.monotonic() + seconds)
    finally:
        stop.set()
        for w in workers:
            w.join(120)
    return h


def read_all(broker, topic, isolation):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("check"), "enable.auto.commit": False,
                  "isolation.level": isolation, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    out = []
    eof = set()
    deadline = time.monotonic() + 120
    while len(eof) < PARTITIONS and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
            continue
        eof.discard(m.partition())
        out.append((m.partition(), m.offset(), m.value()))
    c.close()
    assert len(eof) == PARTITIONS, "the check read did not reach the end of every partition"
    return out


def check(broker, h):
    anomalies = defaultdict(list)
    log = read_all(broker, h.topic, "read_uncommitted")
    committed_view = read_all(broker, h.topic, "read_committed")
    at = {}
    seen = defaultdict(int)
    for p, o, v in log:
        seen[v] += 1
        at[v] = (p, o)
    for v, n in seen.items():
        if n > 1:
            anomalies["duplicated"].append(v)
    for v, where in h.acked.items():
        if v not in at:
            anomalies["lost"].append((v, where))
        elif at[v] != where:
            anomalies["lost"].append((v, where, "found at", at[v]))
    last = {}
    for p, o, v in log:
        if v.startswith(b"p"):
            name, seq = v.split(b"-")
            key = (p, name)
            if key in last and int(seq) < last[key]:
                anomalies["reordered"].append((p, v))
            last[key] = int(seq)
    visible = {v for _, _, v in committed_view}
    aborted = {v for outcome, vals in h.txns.values() if outcome == "aborted" for v in vals}
    for v in visible & aborted:
        anomalies["aborted read"].append(v)
    for _, _, v in h.consumed:
        if v in aborted:
            anomalies["aborted read"].append(("group", v))
    for tid, (outcome, values) in h.txns.items():
        shown = sum(v in visible for v in values)
        if outcome == "committed" and shown != len(values):
            anomalies["torn transaction"].append((tid, outcome, shown))
        elif outcome == "unknown" and shown not in (0, len(values)):
            anomalies["torn transaction"].append((tid, outcome, shown))
    for key, seen_offsets in h.commits.items():
        for (a, ta), (b, tb) in zip(seen_offsets, seen_offsets[1:]):
            if b < a:
                anomalies["committed offset back"].append((key, a, b, round(tb - ta, 2)))
    for p, marks in h.watermarks.items():
        if any(b < a for a, b in zip(marks, marks[1:])):
            anomalies["high watermark back"].append(p)
    return dict(anomalies), {
        "acked": len(h.acked),
        "log": len(log),
        "transactions": {k: sum(1 for o, _ in h.txns.values() if o == k) for k in ("committed", "aborted", "unknown")},
        "consumed": len(h.consumed),
        "faults": {f: h.faults.count(f) for f in set(h.faults)},
    }


if __name__ == "__main__":
    import argparse
    import json
    import pathlib
    import tempfile

    from conftest import Broker

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    b = Broker(pathlib.Path(tempfile.mkdtemp(prefix="trb-jepsen-")),
               config_text="[groups]\ninitial_rebalance_delay_ms = 0\n")
    b.start()
    try:
        history = run(b, args.seconds, args.seed)
        wait_until(lambda: b.proc is not None, what="broker up")
        anomalies, stats = check(b, history)
    finally:
        b.stop()
    print(json.dumps({"seconds": args.seconds, "seed": args.seed, "stats": stats,
                      "anomalies": {k: len(v) for k, v in anomalies.items()},
                      "examples": {k: [repr(x) for x in v[:5]] for k, v in anomalies.items()}}, indent=2))
