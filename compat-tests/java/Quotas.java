// Client quotas with the Java client (kafka-clients 4.3.0), driven by
// compat-tests/test_java_client.py:  java Quotas <bootstrap> <topic> <phase>
//
// phase "throttle": sets producer_byte_rate for the client-id slow-producer,
// consumer_byte_rate for slow-consumer and a default client-id quota through
// AlterClientQuotas, sees them in DescribeClientQuotas (exact, default and all),
// sees an unenforced key refused, then produces and consumes 600 KB as those
// clients: both take at least as long as their quota allows and see throttle time
// in their metrics; a client without a quota sees none.
// phase "persisted" (after a broker restart): the quotas are still there; removing
// one leaves the others. Prints "OK" last.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Quotas {
    static final double RATE = 200_000;
    static final int RECORDS = 600, SIZE = 1000;

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static ClientQuotaEntity client(String id) {
        return new ClientQuotaEntity(Collections.singletonMap(ClientQuotaEntity.CLIENT_ID, id));
    }

    static Map<ClientQuotaEntity, Map<String, Double>> describe(Admin admin, ClientQuotaFilter filter) throws Exception {
        return admin.describeClientQuotas(filter).entities().get(30, TimeUnit.SECONDS);
    }

    static void alter(Admin admin, ClientQuotaEntity e, String key, Double value) throws Exception {
        admin.alterClientQuotas(List.of(new ClientQuotaAlteration(e, List.of(new ClientQuotaAlteration.Op(key, value)))))
                .all().get(30, TimeUnit.SECONDS);
    }

    static double metric(Map<MetricName, ? extends Metric> metrics, String name) {
        for (Map.Entry<MetricName, ? extends Metric> m : metrics.entrySet()) {
            if (m.getKey().name().equals(name) && m.getKey().tags().getOrDefault("node-id", "").isEmpty()) {
                Object v = m.getValue().metricValue();
                if (v instanceof Double d && !d.isNaN()) return d;
            }
        }
        return 0.0;
    }

    /** Produces RECORDS records as clientId; returns {elapsed ms, throttle-time max}. */
    static double[] produce(String bootstrap, String topic, String clientId) throws Exception {
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("client.id", clientId);
        pp.put("acks", "all");
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer())) {
            p.partitionsFor(topic);
            long start = System.nanoTime();
            for (int i = 0; i < RECORDS; i++) p.send(new ProducerRecord<>(topic, 0, null, new byte[SIZE]));
            p.flush();
            double elapsed = (System.nanoTime() - start) / 1e6;
            return new double[] {elapsed, metric(p.metrics(), "produce-throttle-time-max")};
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], phase = args[2];
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        ClientQuotaEntity anyClient = new ClientQuotaEntity(Collections.singletonMap(ClientQuotaEntity.CLIENT_ID, null));
        try (Admin admin = Admin.create(ap)) {
            if (phase.equals("persisted")) {
                Map<ClientQuotaEntity, Map<String, Double>> all = describe(admin, ClientQuotaFilter.all());
                check(all.size() == 3, "after the restart: " + all);
                check(all.get(client("slow-producer")).equals(Map.of("producer_byte_rate", RATE)), "slow-producer: " + all);
                alter(admin, client("slow-producer"), "producer_byte_rate", null);
                all = describe(admin, ClientQuotaFilter.all());
                check(all.size() == 2 && !all.containsKey(client("slow-producer")), "after removing one: " + all);
                System.out.println("OK");
                return;
            }
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
            alter(admin, client("slow-producer"), "producer_byte_rate", RATE);
            alter(admin, client("slow-consumer"), "consumer_byte_rate", RATE);
            alter(admin, anyClient, "consumer_byte_rate", 1e9);
            try {
                alter(admin, client("slow-producer"), "request_percentage", 50.0);
                throw new AssertionError("request_percentage was accepted");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof InvalidRequestException, "expected InvalidRequestException, got " + e.getCause());
            }

            Map<ClientQuotaEntity, Map<String, Double>> exact = describe(admin, ClientQuotaFilter.containsOnly(
                    List.of(ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.CLIENT_ID, "slow-producer"))));
            check(exact.equals(Map.of(client("slow-producer"), Map.of("producer_byte_rate", RATE))), "exact: " + exact);
            Map<ClientQuotaEntity, Map<String, Double>> defaults = describe(admin, ClientQuotaFilter.containsOnly(
                    List.of(ClientQuotaFilterComponent.ofDefaultEntity(ClientQuotaEntity.CLIENT_ID))));
            check(defaults.equals(Map.of(anyClient, Map.of("consumer_byte_rate", 1e9))), "default: " + defaults);
            Map<ClientQuotaEntity, Map<String, Double>> users = describe(admin, ClientQuotaFilter.containsOnly(
                    List.of(ClientQuotaFilterComponent.ofEntityType(ClientQuotaEntity.USER))));
            check(users.isEmpty(), "user quotas: " + users);
            check(describe(admin, ClientQuotaFilter.all()).size() == 3, "all");

            // 600 KB at 200 KB/s: well over a second even with the first window's burst.
            double[] slow = produce(bootstrap, topic, "slow-producer");
            check(slow[0] >= 1500, "600 KB produced in " + slow[0] + " ms at a 200 KB/s quota");
            check(slow[1] > 0, "the throttled producer saw no throttle time");
            double[] fast = produce(bootstrap, topic, "fast-producer");
            check(fast[1] == 0, "an unthrottled producer saw throttle time " + fast[1]);

            Properties cp = new Properties();
            cp.put("bootstrap.servers", bootstrap);
            cp.put("client.id", "slow-consumer");
            cp.put("group.id", "quota-" + topic);
            cp.put("enable.auto.commit", "false");
            try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                TopicPartition tp = new TopicPartition(topic, 0);
                c.assign(List.of(tp));
                c.seekToBeginning(List.of(tp));
                long start = System.nanoTime(), next = 0;
                long deadline = System.currentTimeMillis() + 60_000;
                while (next < 2 * RECORDS && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                        check(r.offset() == next, "offset " + r.offset() + ", expected " + next);
                        next++;
                    }
                }
                double elapsed = (System.nanoTime() - start) / 1e6;
                check(next == 2 * RECORDS, "consumed " + next + " of " + 2 * RECORDS);
                check(elapsed >= 3000, "1.2 MB consumed in " + elapsed + " ms at a 200 KB/s quota");
                check(metric(c.metrics(), "fetch-throttle-time-max") > 0, "the throttled consumer saw no throttle time");
            }
        }
        System.out.println("OK");
    }
}
