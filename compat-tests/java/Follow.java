// One KafkaConsumer (kafka-clients 4.3.0) of a group, reading a topic that may grow,
// driven by compat-tests/test_scaling.py:
//   Follow <bootstrap> <topic> <group> <classic|consumer>
// It commits every record synchronously after reading it and prints, flushed at
// once, "CONSUMED <partition> <offset> <value>" per record and "ASSIGNED <a,b,...>"
// whenever its assignment changes. It stops when a line "stop" arrives on standard
// input (or after 180 s), closes the consumer and prints "OK".

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.*;

import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class Follow {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2], protocol = args[3];
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("group.protocol", protocol);
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        p.put("metadata.max.age.ms", "500");
        if (protocol.equals("classic")) {
            p.put("session.timeout.ms", "6000");
            p.put("heartbeat.interval.ms", "500");
        }
        Thread stdin = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in))) {
                String line;
                while ((line = in.readLine()) != null) {
                    if (line.trim().equals("stop")) break;
                }
            } catch (Exception ignored) {
                // closed: stop as well
            }
        });
        stdin.setDaemon(true);
        stdin.start();
        long deadline = System.currentTimeMillis() + 180_000;
        Set<Integer> shown = new TreeSet<>();
        try (KafkaConsumer<byte[], byte[]> c =
                     new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            c.subscribe(List.of(topic));
            while (stdin.isAlive() && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    try {
                        c.commitSync(Map.of(tp, new OffsetAndMetadata(r.offset() + 1)));
                    } catch (CommitFailedException | RebalanceInProgressException e) {
                        // Not committed, so not consumed: read it again.
                        try {
                            c.seek(tp, r.offset());
                        } catch (IllegalStateException notAssigned) {
                            // revoked meanwhile
                        }
                        break;
                    }
                    System.out.println("CONSUMED " + r.partition() + " " + r.offset() + " " + new String(r.value()));
                }
                Set<Integer> now = new TreeSet<>();
                for (TopicPartition tp : c.assignment()) now.add(tp.partition());
                if (!now.equals(shown)) {
                    shown = now;
                    StringJoiner j = new StringJoiner(",");
                    for (int q : now) j.add(Integer.toString(q));
                    System.out.println("ASSIGNED " + j);
                }
                System.out.flush();
            }
        }
        System.out.println("OK");
        System.out.flush();
    }
}
