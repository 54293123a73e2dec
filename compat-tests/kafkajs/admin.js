// Admin round trips with kafkajs, driven by compat-tests/test_kafkajs.py:
//   node admin.js <bootstrap> <topic>
// create, alterConfigs (seen in describeConfigs), createPartitions (metadata shows
// them), deleteTopicRecords (the low offset moves), deleteTopics. Prints "OK".

const assert = require('assert');
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs');

const [bootstrap, topic] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'compat-admin', brokers: [bootstrap], logLevel: logLevel.NOTHING });

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });

  await admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
  });
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
  });
  const entry = described.resources[0].configEntries.find((e) => e.configName === 'retention.ms');
  assert.strictEqual(entry.configValue, '3600000');

  await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  assert.strictEqual(meta.topics[0].partitions.length, 3);

  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: [0, 1, 2, 3, 4].map((i) => ({ value: `v${i}`, partition: 1 })) });
  await producer.disconnect();
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 1, offset: '3' }] });
  const offsets = await admin.fetchTopicOffsets(topic);
  const p1 = offsets.find((o) => o.partition === 1);
  assert.strictEqual(p1.low, '3');
  assert.strictEqual(p1.high, '5');

  await admin.deleteTopics({ topics: [topic] });
  assert(!(await admin.listTopics()).includes(topic));
  await admin.disconnect();
  console.log('OK');
}

main().then(() => process.exit(0), (e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
