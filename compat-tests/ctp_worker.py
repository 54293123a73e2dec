"""A consume-transform-produce worker (confluent-kafka transactions), run as its own
process by test_transactions.py so that it can be SIGKILLed at any point:

    python ctp_worker.py <bootstrap> <input> <output> <group> <transactional.id> <expected>

Reads <input> with read_committed in group <group>, writes each record's value
upper-cased to the same partition of <output>, and commits the consumed offsets in
the same transaction, a few records per transaction. Exits 0 once the group has
committed <expected> records in total."""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

bootstrap, source, sink, group, txn_id, expected = sys.argv[1:7]
expected = int(expected)

consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "isolation.level": "read_committed",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
})
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 2,
                     "transaction.timeout.ms": 10000})
producer.init_transactions(30)
consumer.subscribe([source])

done = 0
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    msgs = [m for m in consumer.consume(num_messages=5, timeout=0.5) if m.error() is None]
    if not msgs:
        positions = consumer.committed([TopicPartition(source, p) for p in range(2)], timeout=10)
        if sum(max(tp.offset, 0) for tp in positions) >= expected:
            print("DONE", flush=True)
            sys.exit(0)
        continue
    producer.begin_transaction()
    for m in msgs:
        producer.produce(sink, value=m.value().upper(), key=m.key(), partition=m.partition())
    offsets = {}
    for m in msgs:
        offsets[m.partition()] = m.offset() + 1
    producer.send_offsets_to_transaction([TopicPartition(source, p, o) for p, o in offsets.items()],
                                         consumer.consumer_group_metadata(), 30)
    try:
        producer.commit_transaction(30)
    except KafkaException as e:
        if e.args[0].txn_requires_abort():
            producer.abort_transaction(30)
            # Re-read what was not committed.
            for tp in consumer.committed([TopicPartition(source, p) for p in offsets], timeout=10):
                consumer.seek(TopicPartition(source, tp.partition, max(tp.offset, 0)))
            continue
        raise
    done += len(msgs)
    time.sleep(0.02)
print("TIMEOUT", flush=True)
sys.exit(1)
