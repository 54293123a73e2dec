// SASL with kafkajs, driven by compat-tests/test_security.py:
//   node sasl.js <bootstrap> <mechanism> <user> <password> <topic>
// creates the topic, produces 20 records and reads them back in a consumer group;
// prints "OK". With a wrong password it must fail to connect: prints "REFUSED <type>".

const assert = require('assert');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, mechanism, username, password, topic] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: 'compat-sasl',
  brokers: [bootstrap],
  logLevel: logLevel.NOTHING,
  sasl: { mechanism, username, password },
  retry: { retries: 1 },
});

async function main() {
  const admin = kafka.admin();
  try {
    await admin.connect();
  } catch (e) {
    console.log(`REFUSED ${e.type || e.name}`);
    return;
  }
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: [...Array(20).keys()].map((i) => ({ value: `v${i}` })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `${topic}-g` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} records`)), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString());
        if (got.length === 20) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  assert.deepStrictEqual(got, [...Array(20).keys()].map((i) => `v${i}`));
  console.log('OK');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
