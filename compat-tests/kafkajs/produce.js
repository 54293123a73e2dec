// Produces a set of records with kafkajs and prints their offsets as JSON.
// Input (stdin, JSON): { bootstrap, topic, partitions, codec, records: [{ key, value, headers }] }
// where key/value are base64 or null and headers is [[name, base64], ...].
// Output (stdout, JSON): { created: bool, offsets: [offset per record], partition }

const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
const SnappyCodec = require('kafkajs-snappy');
const lz4js = require('lz4js');
const zstd = require('@bokuweb/zstd-wasm');

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) { return Buffer.from(lz4js.compress(encoder.buffer)); },
  async decompress(buffer) { return Buffer.from(lz4js.decompress(buffer)); },
});
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress(encoder) { await zstd.init(); return Buffer.from(zstd.compress(encoder.buffer, 3)); },
  async decompress(buffer) { await zstd.init(); return Buffer.from(zstd.decompress(buffer)); },
});

const CODECS = {
  none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4, zstd: CompressionTypes.ZSTD,
};

const decode = (b64) => (b64 === null ? null : Buffer.from(b64, 'base64'));

async function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const kafka = new Kafka({ clientId: 'compat', brokers: [input.bootstrap], logLevel: logLevel.ERROR, retry: { retries: 3 } });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic: input.topic, numPartitions: input.partitions, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  const listed = await admin.listTopics();
  if (!listed.includes(input.topic)) throw new Error(`topic ${input.topic} not listed after creation`);
  await admin.disconnect();

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const messages = input.records.map((r) => {
    const headers = {};
    for (const [name, value] of r.headers) {
      const v = decode(value);
      headers[name] = name in headers ? [].concat(headers[name], v) : v;
    }
    return { key: decode(r.key), value: decode(r.value), headers, partition: 0 };
  });
  const result = await producer.send({ topic: input.topic, acks: -1, compression: CODECS[input.codec], messages });
  await producer.disconnect();
  if (result.length !== 1 || result[0].errorCode !== 0) throw new Error(`unexpected send result ${JSON.stringify(result)}`);
  const base = Number(result[0].baseOffset);
  process.stdout.write(JSON.stringify({ created, partition: result[0].partition, offsets: messages.map((_, i) => base + i) }));
}

main().catch((e) => { console.error(e); process.exit(1); });
