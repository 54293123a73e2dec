"""Flink (2.2, MiniCluster) with the Flink Kafka connector (5.0.0-2.2) against
Tributary: a job copying a topic through a KafkaSink with EXACTLY_ONCE delivery
(Kafka transactions committed at each checkpoint; compat-tests/flink/ExactlyOnce.java)
keeps running while the broker is killed with SIGKILL twice under it and started
again; a read_committed reader of the output sees every acknowledged input exactly
once. (A broker that is back within a second or so is ridden out by the connector's
Kafka clients, the open transactions being durable: the job usually goes on without
restarting from a checkpoint; the test prints how often it did.) Run with transaction.version 2 (the connector's producers use transactions
v2) and 1."""

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import unique, wait_until
from test_scaling import Following

RECORDS = 3000


@pytest.mark.parametrize("version", [2, 1])
def test_flink_exactly_once_sink_survives_broker_sigkills(make_broker, flink_classpath, version):
    broker = make_broker(env={"TRIBUTARY_TRANSACTIONS_VERSION": str(version)})
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    source, sink = unique("fin"), unique("fout")
    for f in admin.create_topics([NewTopic(source, 3, 1), NewTopic(sink, 3, 1)]).values():
        f.result(timeout=15)
    job = Following(["java", "-cp", flink_classpath, "ExactlyOnce", broker.bootstrap, source, sink, unique("fg"),
                     unique("ftx")], "flink")
    job.start()
    wait_until(lambda: "RUNNING" in job.lines, timeout=120, what="the Flink job to run")

    # Inputs at about 300 records/s, acknowledged ones remembered; the producer rides
    # out the broker's deaths (bounded: RECORDS records, message.timeout.ms).
    acked, failed = set(), []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 120000})
    done = threading.Event()

    def delivered(err, msg):
        (failed.append(err) if err else acked.add(msg.value().decode()))

    def produce():
        for i in range(RECORDS):
            producer.produce(source, value=f"v{i:05d}".encode(), on_delivery=delivered)
            if i % 30 == 29:
                producer.poll(0)
                time.sleep(0.1)
        producer.flush(150)
        done.set()

    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("fcheck"),
                       "isolation.level": "read_committed", "enable.auto.commit": False})
    reader.assign([TopicPartition(sink, p, 0) for p in range(3)])
    seen, twice = set(), []

    def read_some(seconds=0.2):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = reader.poll(0.1)
            if m is not None and not m.error():
                v = m.value().decode()
                (twice.append(v) if v in seen else seen.add(v))
        return len(seen)

    threading.Thread(target=produce, daemon=True).start()
    kills = []
    for at in (300, 1500):
        wait_until(lambda at=at: read_some() >= at, timeout=120, what=f"{at} records through the job")
        broker.kill()
        kills.append(len(seen))
        broker.start()
    assert done.wait(180), "the inputs were not all produced"
    assert not failed, f"{len(failed)} inputs not acknowledged: {failed[:3]}"
    want = {v + "!" for v in acked}
    wait_until(lambda: read_some() and want <= seen, timeout=180,
               what=f"all {len(want)} acknowledged inputs through the job")
    read_some(1.0)  # anything more would be a duplicate
    job.finish()
    reader.close()
    assert not twice, f"{len(twice)} outputs read twice, e.g. {twice[:3]}"
    assert seen == want, f"{len(seen - want)} outputs without an acknowledged input"
    restarts = sum(1 for line in job.lines if "switched from RUNNING to RESTARTING" in line)
    print(f"transaction.version {version}: {len(want)} records copied exactly once; the broker was killed after "
          f"{kills} of them; {restarts} restarts of the job from a checkpoint")
