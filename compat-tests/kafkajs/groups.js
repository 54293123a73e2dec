// Consumer groups with kafkajs, driven by compat-tests/test_kafkajs.py; the same
// scenario and output as compat-tests/java/Groups.java:
//   node groups.js <bootstrap> run|resume <topic> <group>
// prints "ASSIGNED ...", "MOVED <ms>", one "CONSUMED <partition> <offset> <value>"
// per record whose commit succeeded, and "OK <mode>" last.

const { Kafka, logLevel } = require('kafkajs');

const PARTITIONS = 6;
const [bootstrap, mode, topic, groupId] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'compat-groups', brokers: [bootstrap], logLevel: logLevel.NOTHING });
const consumed = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, timeoutMs, cond) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function produce(start, count) {
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = start; i < start + count; i++) {
    messages.push({ key: `k${i}`, value: `v${i}`, partition: i % PARTITIONS });
  }
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();
}

async function member() {
  // A short fetch wait keeps the run loop, which also heartbeats, responsive.
  const consumer = kafka.consumer({
    groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000, maxWaitTimeInMs: 500,
  });
  const m = { consumer, assigned: [] };
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    m.assigned = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      // A failed commit throws: kafkajs then reads the record again (or its
      // partition's next owner does); only committed records count.
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      consumed.push(`CONSUMED ${partition} ${message.offset} ${message.value.toString()}`);
    },
  });
  return m;
}

function disjointCover(members) {
  const all = members.flatMap((m) => m.assigned);
  return members.every((m) => m.assigned.length > 0) && all.length === PARTITIONS && new Set(all).size === PARTITIONS;
}

async function main() {
  if (mode === 'run') {
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true });
    await admin.disconnect();
    await produce(0, 60);
    const members = [await member(), await member(), await member()];
    await waitFor('three disjoint assignments', 60000, () => disjointCover(members));
    console.log(`ASSIGNED ${members.map((m) => m.assigned.join(',')).join('|')}`);
    await waitFor('60 records', 60000, () => consumed.length >= 60);
    const leaver = members.pop();
    const left = Date.now();
    await leaver.consumer.disconnect();
    await waitFor("the leaver's partitions to move", 60000, () => disjointCover(members));
    console.log(`MOVED ${Date.now() - left}`);
    await produce(60, 30);
    await waitFor('90 records', 60000, () => consumed.length >= 90);
    for (const m of members) await m.consumer.disconnect();
  } else {
    await produce(90, 30);
    const m = await member();
    await waitFor('30 records after the restart', 60000, () => consumed.length >= 30);
    await m.consumer.disconnect();
  }
  consumed.forEach((line) => console.log(line));
  console.log(`OK ${mode}`);
}

main().then(() => process.exit(0), (e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
