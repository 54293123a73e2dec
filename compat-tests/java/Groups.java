// Consumer groups with the Java client (kafka-clients 4.3.0), driven by
// compat-tests/test_java_client.py. Modes:
//   run    <bootstrap> <topic> <group> <classic|consumer>: create a 6-partition topic,
//          produce 60 records, three consumers in one group (each in its own thread,
//          committing every record synchronously after processing it), wait for
//          disjoint assignments covering every partition, consume everything, close
//          one consumer, wait for the other two to cover every partition, produce 30
//          more and consume them.
//   resume <bootstrap> <topic> <group> <classic|consumer>: produce 30 more, one
//          consumer of the same group reads them.
// Every consumed record is printed as "CONSUMED <partition> <offset> <value>"; the
// time the leaver's partitions took to move as "MOVED <ms>"; "ASSIGNED <a>|<b>|<c>"
// the first disjoint cover; the last line is "OK <mode>".

import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Groups {
    static final int PARTITIONS = 6;

    static String bootstrap, topic, group, protocol;
    static final Queue<String> consumed = new ConcurrentLinkedQueue<>();

    /** One consumer polling in its own thread, as applications do. */
    static final class Member implements Runnable {
        final AtomicReference<Set<Integer>> assigned = new AtomicReference<>(Set.of());
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        volatile boolean stop;
        final Thread thread = new Thread(this);

        Member() {
            thread.setDaemon(true);
            thread.start();
        }

        public void run() {
            Properties p = new Properties();
            p.put("bootstrap.servers", bootstrap);
            p.put("group.id", group);
            p.put("group.protocol", protocol);
            p.put("auto.offset.reset", "earliest");
            p.put("enable.auto.commit", "false");
            if (protocol.equals("classic")) {
                p.put("session.timeout.ms", "6000");
                p.put("heartbeat.interval.ms", "500");
            }
            try (KafkaConsumer<byte[], byte[]> c =
                         new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                c.subscribe(List.of(topic));
                while (!stop) {
                    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                        try {
                            c.commitSync(Map.of(tp, new OffsetAndMetadata(r.offset() + 1)));
                        } catch (CommitFailedException | RebalanceInProgressException e) {
                            // Not committed, so not consumed: read it again (if the
                            // partition moved, its next owner starts there).
                            try {
                                c.seek(tp, r.offset());
                            } catch (IllegalStateException notAssigned) {
                                // revoked meanwhile
                            }
                            break;
                        }
                        consumed.add("CONSUMED " + r.partition() + " " + r.offset() + " " + new String(r.value()));
                    }
                    Set<Integer> now = new TreeSet<>();
                    for (TopicPartition tp : c.assignment()) now.add(tp.partition());
                    assigned.set(now);
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        }

        void close() throws Exception {
            stop = true;
            thread.join(30_000);
            if (thread.isAlive()) throw new IllegalStateException("consumer thread did not stop");
            check();
        }

        void check() {
            if (failure.get() != null) throw new RuntimeException("consumer failed", failure.get());
        }
    }

    static boolean disjointCover(List<Member> members) {
        Set<Integer> union = new HashSet<>();
        int total = 0;
        for (Member m : members) {
            m.check();
            Set<Integer> a = m.assigned.get();
            if (a.isEmpty()) return false;
            union.addAll(a);
            total += a.size();
        }
        return total == PARTITIONS && union.size() == PARTITIONS;
    }

    static void waitFor(String what, long timeoutMs, java.util.function.BooleanSupplier cond) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) throw new AssertionError("timed out waiting for " + what);
            Thread.sleep(50);
        }
    }

    static void produce(int start, int count) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        try (KafkaProducer<byte[], byte[]> producer =
                     new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = start; i < start + count; i++) {
                producer.send(new ProducerRecord<>(topic, i % PARTITIONS, ("k" + i).getBytes(), ("v" + i).getBytes()));
            }
            producer.flush();
        }
    }

    public static void main(String[] args) throws Exception {
        String mode = args[1];
        bootstrap = args[0];
        topic = args[2];
        group = args[3];
        protocol = args[4];
        if (mode.equals("run")) {
            Properties ap = new Properties();
            ap.put("bootstrap.servers", bootstrap);
            try (Admin admin = Admin.create(ap)) {
                admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(30, TimeUnit.SECONDS);
            }
            produce(0, 60);
            List<Member> members = new ArrayList<>(List.of(new Member(), new Member(), new Member()));
            waitFor("three disjoint assignments", 60_000, () -> disjointCover(members));
            System.out.println("ASSIGNED " + members.get(0).assigned.get() + "|" + members.get(1).assigned.get() + "|"
                    + members.get(2).assigned.get());
            waitFor("60 records", 60_000, () -> consumed.size() >= 60);
            Member leaver = members.remove(2);
            long left = System.currentTimeMillis();
            leaver.close();
            waitFor("the leaver's partitions to move", 60_000, () -> disjointCover(members));
            System.out.println("MOVED " + (System.currentTimeMillis() - left));
            produce(60, 30);
            waitFor("90 records", 60_000, () -> consumed.size() >= 90);
            for (Member m : members) m.close();
        } else {
            produce(90, 30);
            Member m = new Member();
            waitFor("30 records after the restart", 60_000, () -> consumed.size() >= 30);
            m.close();
        }
        consumed.forEach(System.out::println);
        System.out.println("OK " + mode);
    }
}
