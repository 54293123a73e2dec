// Drives Tributary with the Java client (kafka-clients 4.3.0). Run by
// compat-tests/test_java_client.py; exits non-zero with a message on any mismatch.
//
//   RoundTrip <bootstrap> produce <tag>   create topics, produce, read back, compare
//   RoundTrip <bootstrap> verify <tag>    read back and compare only (after a restart)
//
// The records follow compat-tests/scenario.py: keys, null keys, null values, binary
// values, repeated and empty headers; one topic per compression codec, a
// 100-partition topic, and a record near max.message.bytes.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class RoundTrip {
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};

    record Rec(byte[] key, byte[] value, List<Header> headers) {}

    static byte[] utf8(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    static List<Rec> records(String tag, int n) {
        List<Rec> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            byte[] key = i % 7 == 3 ? null : utf8(tag + "-key-" + i);
            byte[] value = null;
            if (!(i % 5 == 4 && key != null)) {
                byte[] text = utf8((tag + "-value-" + i + "-").repeat(i % 13 + 1));
                value = Arrays.copyOf(text, text.length + 3);
                value[text.length] = (byte) (i % 256);
                value[text.length + 1] = 0;
                value[text.length + 2] = (byte) 255;
            }
            List<Header> headers = new ArrayList<>();
            if (i % 3 == 0) {
                headers.add(new RecordHeader("h1", utf8("v" + i)));
                headers.add(new RecordHeader("h1", utf8("dup")));
                headers.add(new RecordHeader("empty", new byte[0]));
            }
            out.add(new Rec(key, value, headers));
        }
        return out;
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static Properties common(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        return p;
    }

    static KafkaProducer<byte[], byte[]> producer(String bootstrap, String codec) {
        Properties p = common(bootstrap);
        p.put("acks", "all");
        p.put("compression.type", codec);
        p.put("linger.ms", "5");
        p.put("max.request.size", "3000000");
        // enable.idempotence is left at the 4.x default (true): InitProducerId and
        // sequence checks are on this path.
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    static List<ConsumerRecord<byte[], byte[]>> readAll(String bootstrap, String topic, int partitions, int count) {
        Properties p = common(bootstrap);
        p.put("enable.auto.commit", "false");
        p.put("fetch.max.wait.ms", "100");
        p.put("max.partition.fetch.bytes", "3000000");
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) tps.add(new TopicPartition(topic, i));
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (got.size() < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) got.add(r);
            }
        }
        got.sort(Comparator.comparingInt((ConsumerRecord<byte[], byte[]> r) -> r.partition()).thenComparingLong(ConsumerRecord::offset));
        return got;
    }

    static void compare(List<Rec> expected, List<ConsumerRecord<byte[], byte[]>> got, String ctx) {
        check(got.size() == expected.size(), ctx + ": expected " + expected.size() + " records, got " + got.size());
        for (int i = 0; i < expected.size(); i++) {
            Rec e = expected.get(i);
            ConsumerRecord<byte[], byte[]> g = got.get(i);
            check(g.offset() == i, ctx + " record " + i + ": offset " + g.offset());
            check(Arrays.equals(e.key(), g.key()), ctx + " record " + i + ": key differs");
            check(Arrays.equals(e.value(), g.value()), ctx + " record " + i + ": value differs");
            Header[] gh = g.headers().toArray();
            check(gh.length == e.headers().size(), ctx + " record " + i + ": " + gh.length + " headers");
            for (int h = 0; h < gh.length; h++) {
                check(gh[h].key().equals(e.headers().get(h).key())
                        && Arrays.equals(gh[h].value(), e.headers().get(h).value()), ctx + " record " + i + ": header " + h);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], mode = args[1], tag = args[2];
        boolean produce = mode.equals("produce");
        if (produce) {
            try (Admin admin = Admin.create(common(bootstrap))) {
                List<NewTopic> topics = new ArrayList<>();
                for (String codec : CODECS) topics.add(new NewTopic(tag + "-" + codec, 1, (short) 1));
                topics.add(new NewTopic(tag + "-p100", 100, (short) 1));
                topics.add(new NewTopic(tag + "-big", 1, (short) 1));
                admin.createTopics(topics).all().get(30, TimeUnit.SECONDS);
                Set<String> names = admin.listTopics().names().get(30, TimeUnit.SECONDS);
                for (NewTopic t : topics) check(names.contains(t.name()), "topic " + t.name() + " not listed");
                Map<String, TopicDescription> d = admin.describeTopics(List.of(tag + "-p100")).allTopicNames().get(30, TimeUnit.SECONDS);
                check(d.get(tag + "-p100").partitions().size() == 100, "p100 has " + d.get(tag + "-p100").partitions().size());
                // DeleteTopics by topic id (v6)
                String doomed = tag + "-doomed";
                admin.createTopics(List.of(new NewTopic(doomed, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
                org.apache.kafka.common.Uuid id = admin.describeTopics(List.of(doomed)).allTopicNames()
                        .get(30, TimeUnit.SECONDS).get(doomed).topicId();
                check(id != null && !id.equals(org.apache.kafka.common.Uuid.ZERO_UUID), "topic id of " + doomed);
                admin.deleteTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(id))).all().get(30, TimeUnit.SECONDS);
                check(!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(doomed), doomed + " still listed");
            }
        }
        for (String codec : CODECS) {
            String topic = tag + "-" + codec;
            List<Rec> expected = records(topic, 40);
            if (produce) {
                try (KafkaProducer<byte[], byte[]> p = producer(bootstrap, codec)) {
                    List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
                    for (Rec r : expected) fs.add(p.send(new ProducerRecord<>(topic, 0, r.key(), r.value(), r.headers())));
                    p.flush();
                    for (int i = 0; i < fs.size(); i++) {
                        long off = fs.get(i).get(30, TimeUnit.SECONDS).offset();
                        check(off == i, codec + ": record " + i + " acknowledged at offset " + off);
                    }
                }
            }
            compare(expected, readAll(bootstrap, topic, 1, expected.size()), codec);
        }
        String p100 = tag + "-p100";
        if (produce) {
            try (KafkaProducer<byte[], byte[]> p = producer(bootstrap, "none")) {
                for (int part = 0; part < 100; part++) p.send(new ProducerRecord<>(p100, part, utf8("k"), utf8("p" + part)));
                p.flush();
            }
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(bootstrap, p100, 100, 100);
        check(got.size() == 100, "p100: got " + got.size());
        for (int part = 0; part < 100; part++) {
            check(got.get(part).partition() == part && got.get(part).offset() == 0
                    && Arrays.equals(got.get(part).value(), utf8("p" + part)), "p100: partition " + part);
        }
        String big = tag + "-big";
        byte[] bigValue = new byte[1_000_000];
        Arrays.fill(bigValue, (byte) 'j');
        if (produce) {
            try (KafkaProducer<byte[], byte[]> p = producer(bootstrap, "none")) {
                check(p.send(new ProducerRecord<>(big, 0, utf8("k"), bigValue)).get(30, TimeUnit.SECONDS).offset() == 0, "big offset");
                try {
                    p.send(new ProducerRecord<>(big, 0, utf8("k"), new byte[1_100_000])).get(30, TimeUnit.SECONDS);
                    check(false, "a 1.1 MB record was accepted");
                } catch (java.util.concurrent.ExecutionException e) {
                    check(e.getCause() instanceof org.apache.kafka.common.errors.RecordTooLargeException,
                            "1.1 MB record failed with " + e.getCause());
                }
            }
        }
        List<ConsumerRecord<byte[], byte[]>> b = readAll(bootstrap, big, 1, 1);
        check(b.size() == 1 && Arrays.equals(b.get(0).value(), bigValue), "big record read back");
        System.out.println("OK " + mode);
    }
}
