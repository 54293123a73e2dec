"""The consumer-group scenario every client runs, through a small adapter per client:

1. three consumers join one group on a 6-partition topic: their assignments are
   disjoint, none empty, and cover every partition;
2. they consume 60 records with auto-commit off, committing each record after
   processing it (a record counts as consumed once its commit succeeded);
3. one consumer leaves: the other two cover every partition again within the
   session timeout, and consume 30 more records;
4. the broker restarts; a consumer of the same group resumes exactly at the
   committed offsets and reads the 30 records produced after the restart;
5. every record was consumed exactly once.
"""

import subprocess
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import unique, wait_until

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000

# Group settings that keep the tests quick: no initial rebalance delay, fast
# heartbeats for the consumer protocol.
BROKER_ENV = {
    "TRIBUTARY_GROUPS_INITIAL_REBALANCE_DELAY_MS": "0",
    "TRIBUTARY_GROUPS_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
}


def create_topic(broker, topic, partitions=PARTITIONS):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def produce(broker, topic, start, count, partitions=PARTITIONS):
    """Values v<start> .. v<start+count-1>, spread round-robin over the partitions."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(start, start + count):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % partitions)
    assert p.flush(30) == 0


class Runner:
    """Polls one consumer in its own thread, as an application would: a client's
    JoinGroup may wait for the other members, which must keep polling meanwhile."""

    def __init__(self, consumer, seen):
        self.consumer = consumer
        self.seen = seen
        self.error = None
        self.assigned = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        try:
            while not self.stopping.is_set():
                self.seen.extend(self.consumer.poll(0.1))
                # Clients are not all thread-safe: read the assignment here, not
                # from the test's thread.
                self.assigned = set(self.consumer.assignment())
        except Exception as e:  # surfaced by check()
            self.error = e

    def check(self):
        if self.error:
            raise AssertionError(f"consumer failed: {self.error!r}")

    def assignment(self):
        self.check()
        return self.assigned

    def pause(self):
        """Stops polling; the consumer stays in its group (clients heartbeat in the
        background)."""
        self.stopping.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "consumer poll loop did not stop"
        self.check()

    def close(self):
        self.pause()
        self.consumer.close()


def poll_all(consumers, seen):
    """For single-threaded callers: one poll of each consumer."""
    for c in consumers:
        if isinstance(c, Runner):
            c.check()
        else:
            seen.extend(c.poll(0.1))


def assignments(consumers):
    return [set(c.assignment()) for c in consumers]


def disjoint_cover(parts, n):
    if len(parts) != n or any(not p for p in parts):
        return False
    union = set().union(*parts)
    return union == set(range(PARTITIONS)) and sum(len(p) for p in parts) == PARTITIONS


def settled_cover(consumers, n, quiet=1.0, timeout=60):
    """Waits for disjoint assignments covering every partition that stay unchanged
    for `quiet` seconds (an incremental rebalance passes through covers that are not
    final), and returns them."""
    state = {"last": None, "since": 0.0}

    def settled():
        now = [frozenset(a) for a in assignments(consumers)]
        if not disjoint_cover(now, n):
            state["last"] = None
            return False
        if now != state["last"]:
            state["last"], state["since"] = now, time.monotonic()
            return False
        return time.monotonic() - state["since"] >= quiet

    wait_until(settled, timeout=timeout, what=f"{n} settled disjoint assignments")
    return [set(a) for a in state["last"]]


def consume_until(consumers, seen, count, timeout=60, what="records"):
    wait_until(lambda: (poll_all(consumers, seen), len(seen) >= count)[1], timeout=timeout,
               interval=0 if any(not isinstance(c, Runner) for c in consumers) else 0.05,
               what=f"{count} {what}")


def assert_exactly_once(seen, expected_values):
    values = [v for (_, _, v) in seen]
    dupes = {v for v in values if values.count(v) > 1}
    assert not dupes, f"consumed more than once: {sorted(dupes)[:10]}"
    assert sorted(values) == sorted(expected_values), \
        f"missing {sorted(set(expected_values) - set(values))[:10]}, extra {sorted(set(values) - set(expected_values))[:10]}"


def run(broker, make_consumer):
    """make_consumer(broker, group, topic) -> adapter with poll(timeout) -> [(partition,
    offset, value)] (each already committed), assignment() -> partitions, close()."""
    topic = unique("grp")
    group = unique("g")
    create_topic(broker, topic)
    produce(broker, topic, 0, 60)
    seen = []

    consumers = [Runner(make_consumer(broker, group, topic), seen) for _ in range(3)]
    wait_until(lambda: disjoint_cover(assignments(consumers), 3), timeout=60,
               what=f"three disjoint assignments covering {PARTITIONS} partitions")
    consume_until(consumers, seen, 60)

    leaver = consumers.pop()
    left_at = time.monotonic()
    leaver.close()
    wait_until(lambda: disjoint_cover(assignments(consumers), 2), timeout=60, what="the leaver's partitions to move")
    moved_after = time.monotonic() - left_at
    assert moved_after < SESSION_TIMEOUT_MS / 1000, f"partitions moved only after {moved_after:.1f}s"
    produce(broker, topic, 60, 30)
    consume_until(consumers, seen, 90)
    for c in consumers:
        c.close()
    assert_exactly_once(seen, [f"v{i}".encode() for i in range(90)])

    committed_end = {}
    for partition, offset, _ in seen:
        committed_end[partition] = max(committed_end.get(partition, 0), offset + 1)
    broker.restart()
    produce(broker, topic, 90, 30)
    after = []
    resumed = Runner(make_consumer(broker, group, topic), after)
    consume_until([resumed], after, 30, what="records after the restart")
    resumed.close()
    first = {}
    for partition, offset, _ in after:
        first.setdefault(partition, offset)
    assert first == committed_end, f"resumed at {first}, committed {committed_end}"
    assert_exactly_once(seen + after, [f"v{i}".encode() for i in range(120)])
    return moved_after


def run_program(args, mode, timeout=240):
    """Runs a client program of the scenario (Java, Node) in one mode; it prints
    CONSUMED <partition> <offset> <value> per committed record, MOVED <ms>, and
    OK <mode> last. Returns (consumed, moved)."""
    r = subprocess.run(args, capture_output=True, timeout=timeout)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, (out + r.stderr.decode(errors="replace"))[-4000:]
    lines = out.strip().splitlines()
    assert lines and lines[-1] == f"OK {mode}", out[-2000:]
    consumed = [(int(p), int(o), v.encode())
                for _, p, o, v in (line.split(" ", 3) for line in lines if line.startswith("CONSUMED "))]
    moved = [int(line.split()[1]) for line in lines if line.startswith("MOVED ")]
    return consumed, moved


def run_external(broker, program):
    """The scenario with a client program: program(mode) -> (consumed, moved)."""
    seen, moved = program("run")
    assert moved and moved[0] < SESSION_TIMEOUT_MS, f"partitions moved after {moved} ms"
    assert_exactly_once(seen, [f"v{i}".encode() for i in range(90)])
    committed_end = {}
    for partition, offset, _ in seen:
        committed_end[partition] = max(committed_end.get(partition, 0), offset + 1)
    broker.restart()
    after, _ = program("resume")
    first = {}
    for partition, offset, _ in after:
        first.setdefault(partition, offset)
    assert first == committed_end, f"resumed at {first}, committed {committed_end}"
    assert_exactly_once(seen + after, [f"v{i}".encode() for i in range(120)])
