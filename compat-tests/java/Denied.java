// ACL refusals as the Java client (kafka-clients 4.3.0) reports them, driven by
// compat-tests/test_acls.py:  java Denied <bootstrap> <user> <password> <topic> <group> <txn>
//
// The user authenticates with SCRAM-SHA-512 and may READ <topic> and nothing else.
// Each refused operation must fail with Kafka's exception type: producing
// (TopicAuthorizationException), consuming in <group>
// (GroupAuthorizationException), a transactional producer with <txn>
// (TransactionalIdAuthorizationException), creating a topic
// (TopicAuthorizationException), describing ACLs and altering users
// (ClusterAuthorizationException). Prints "OK denied" last.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Denied {
    static Properties base(String bootstrap, String user, String password) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "SCRAM-SHA-512");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + user + "\" password=\"" + password + "\";");
        return p;
    }

    static void expect(Class<? extends Throwable> type, String what, Runnable r) {
        try {
            r.run();
        } catch (Throwable t) {
            Throwable c = t;
            while (c != null) {
                if (type.isInstance(c)) {
                    System.out.println(what + ": " + type.getSimpleName());
                    return;
                }
                c = c.getCause();
            }
            throw new AssertionError(what + ": expected " + type.getSimpleName() + ", got " + t, t);
        }
        throw new AssertionError(what + ": expected " + type.getSimpleName() + ", but it succeeded");
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], user = args[1], password = args[2], topic = args[3], group = args[4],
                txn = args[5];
        Properties pp = base(bootstrap, user, password);
        pp.put("key.serializer", ByteArraySerializer.class.getName());
        pp.put("value.serializer", ByteArraySerializer.class.getName());
        pp.put("max.block.ms", "15000");
        Properties plain = new Properties();
        plain.putAll(pp);
        // Idempotence would first need IDEMPOTENT_WRITE (ClusterAuthorizationException).
        plain.put("enable.idempotence", "false");
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(plain)) {
            expect(TopicAuthorizationException.class, "produce", () -> {
                try {
                    p.send(new ProducerRecord<>(topic, "x".getBytes())).get();
                } catch (InterruptedException | ExecutionException e) {
                    throw new RuntimeException(e);
                }
            });
        }
        Properties cp = base(bootstrap, user, password);
        cp.put("key.deserializer", ByteArrayDeserializer.class.getName());
        cp.put("value.deserializer", ByteArrayDeserializer.class.getName());
        cp.put("group.id", group);
        cp.put("auto.offset.reset", "earliest");
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(cp)) {
            c.subscribe(List.of(topic));
            expect(GroupAuthorizationException.class, "consume in a group", () -> {
                long end = System.currentTimeMillis() + 20_000;
                while (System.currentTimeMillis() < end) c.poll(Duration.ofMillis(500));
            });
        }
        Properties tp = new Properties();
        tp.putAll(pp);
        tp.put("transactional.id", txn);
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(tp)) {
            expect(TransactionalIdAuthorizationException.class, "initTransactions", p::initTransactions);
        }
        try (Admin admin = Admin.create(base(bootstrap, user, password))) {
            expect(TopicAuthorizationException.class, "createTopics", () -> {
                try {
                    admin.createTopics(List.of(new NewTopic(topic + "-new", 1, (short) 1))).all().get();
                } catch (InterruptedException | ExecutionException e) {
                    throw new RuntimeException(e);
                }
            });
            expect(ClusterAuthorizationException.class, "describeAcls", () -> {
                try {
                    admin.describeAcls(AclBindingFilter.ANY).values().get();
                } catch (InterruptedException | ExecutionException e) {
                    throw new RuntimeException(e);
                }
            });
            expect(ClusterAuthorizationException.class, "alterUserScramCredentials", () -> {
                try {
                    admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(user,
                            new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), "x"))).all().get();
                } catch (InterruptedException | ExecutionException e) {
                    throw new RuntimeException(e);
                }
            });
        }
        System.out.println("OK denied");
    }
}
