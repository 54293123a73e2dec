// Transactions with the Java client (kafka-clients 4.3.0), driven by
// compat-tests/test_java_client.py:  java Txn <bootstrap> <tag>
// A consume-transform-produce step commits (records and offsets through
// sendOffsetsToTransaction), a second one aborts; a read_committed consumer sees
// only the first, a read_uncommitted one both; the group's committed offset is the
// first step's; a second producer with the same transactional.id fences the first.
// Prints "OK" last.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Txn {
    static String bootstrap;

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static KafkaProducer<String, String> producer(String txnId) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        if (txnId != null) p.put("transactional.id", txnId);
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    static List<String> readAll(String topic, String isolation) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("isolation.level", isolation);
        p.put("enable.auto.commit", "false");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long end = c.endOffsets(List.of(tp)).get(tp);
            List<String> out = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 30_000;
            while (c.position(tp) < end && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) out.add(r.value());
            }
            check(c.position(tp) >= end, "did not reach the end of " + topic + " (" + isolation + ")");
            return out;
        }
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        String tag = args[1];
        String in = "jtx-in-" + tag, out = "jtx-out-" + tag, group = "jtx-g-" + tag, txnId = "jtx-" + tag;
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(in, 1, (short) 1), new NewTopic(out, 1, (short) 1)))
                    .all().get(30, TimeUnit.SECONDS);
        }
        try (KafkaProducer<String, String> plain = producer(null)) {
            for (int i = 0; i < 20; i++) plain.send(new ProducerRecord<>(in, 0, "k" + i, "v" + i));
            plain.flush();
        }

        Properties cp = new Properties();
        cp.put("bootstrap.servers", bootstrap);
        cp.put("group.id", group);
        cp.put("isolation.level", "read_committed");
        cp.put("enable.auto.commit", "false");
        cp.put("auto.offset.reset", "earliest");
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer());
        consumer.subscribe(List.of(in));
        List<ConsumerRecord<String, String>> input = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 30_000;
        while (input.size() < 20 && System.currentTimeMillis() < deadline) {
            consumer.poll(Duration.ofMillis(200)).forEach(input::add);
        }
        check(input.size() == 20, "consumed " + input.size() + " of 20 input records");

        KafkaProducer<String, String> txn = producer(txnId);
        txn.initTransactions();
        TopicPartition inTp = new TopicPartition(in, 0);
        for (int step = 0; step < 2; step++) {
            txn.beginTransaction();
            for (ConsumerRecord<String, String> r : input.subList(step * 10, step * 10 + 10)) {
                txn.send(new ProducerRecord<>(out, 0, r.key(), r.value().toUpperCase()));
            }
            txn.sendOffsetsToTransaction(Map.of(inTp, new OffsetAndMetadata(step * 10 + 10)), consumer.groupMetadata());
            if (step == 0) {
                txn.commitTransaction();
            } else {
                // Flushed first, so the aborted records are in the log (abort drops
                // what the producer has not sent yet) and read_uncommitted sees them.
                txn.flush();
                txn.abortTransaction();
            }
        }
        OffsetAndMetadata committed = consumer.committed(Set.of(inTp)).get(inTp);
        check(committed != null && committed.offset() == 10, "group committed " + committed + ", expected 10");
        consumer.close();

        List<String> visible = readAll(out, "read_committed");
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < 10; i++) expected.add("V" + i);
        check(visible.equals(expected), "read_committed saw " + visible);
        check(readAll(out, "read_uncommitted").size() == 20, "read_uncommitted should see both steps");

        // A second instance fences the first.
        KafkaProducer<String, String> second = producer(txnId);
        second.initTransactions();
        boolean fenced = false;
        try {
            txn.beginTransaction();
            txn.send(new ProducerRecord<>(out, 0, "z", "zombie")).get(30, TimeUnit.SECONDS);
            txn.commitTransaction();
        } catch (ProducerFencedException e) {
            fenced = true;
        } catch (Exception e) {
            // Transactions v2: the zombie's write is refused with INVALID_PRODUCER_EPOCH
            // (as Kafka 4.4 answers it), v1: with PRODUCER_FENCED.
            fenced = e.getCause() instanceof ProducerFencedException
                    || e.getCause() instanceof org.apache.kafka.common.errors.InvalidProducerEpochException
                    || e.getClass().getSimpleName().contains("Fenced")
                    || String.valueOf(e.getMessage()).toLowerCase().contains("fenced");
            if (!fenced) throw e;
        }
        check(fenced, "the first producer was not fenced");
        txn.close(Duration.ofSeconds(5));
        second.beginTransaction();
        second.send(new ProducerRecord<>(out, 0, "s", "second"));
        second.commitTransaction();
        second.close();
        List<String> after = readAll(out, "read_committed");
        check(after.size() == 11 && after.get(10).equals("second") && !after.contains("zombie"), "after fencing: " + after);
        System.out.println("OK");
    }
}
