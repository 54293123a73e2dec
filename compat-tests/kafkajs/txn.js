// Transactions with kafkajs, driven by compat-tests/test_kafkajs.py:
//   node txn.js <bootstrap> <topic> <group> <source>
// commits one transaction (records c0..c4 and group offset 5 on <source>), aborts a
// second (a0..a4, offset 9), and prints "OK". The test reads the results back.

const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, groupId, source] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'compat-txn', brokers: [bootstrap], logLevel: logLevel.NOTHING });

async function main() {
  const producer = kafka.producer({ transactionalId: `kjs-${topic}`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (const [prefix, offset, commit] of [['c', '5', true], ['a', '9', false]]) {
    const txn = await producer.transaction();
    const messages = [0, 1, 2, 3, 4].map((i) => ({ value: `${prefix}${i}`, partition: 0 }));
    await txn.send({ topic, messages });
    await txn.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: source, partitions: [{ partition: 0, offset }] }] });
    if (commit) await txn.commit(); else await txn.abort();
  }
  await producer.disconnect();
  console.log('OK');
}

main().then(() => process.exit(0), (e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
