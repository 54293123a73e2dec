// Admin round trips with the Java client (kafka-clients 4.3.0), driven by
// compat-tests/test_java_client.py:  java AdminOps <bootstrap> <topic>
// Creates a topic, alters a config incrementally and sees it described and in
// effect (a record over the new max.message.bytes is refused), grows the topic to
// three partitions and writes to the new one, deletes records and sees the new low
// watermark, describes the cluster, and deletes the topic. Prints "OK" last.

import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class AdminOps {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("acks", "all");
        pp.put("retries", "0");
        try (Admin admin = Admin.create(ap);
             KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer())) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("max.message.bytes", "2000"), AlterConfigOp.OpType.SET))))
                    .all().get(30, TimeUnit.SECONDS);
            Config described = admin.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS).get(res);
            check("2000".equals(described.get("max.message.bytes").value()), "max.message.bytes not 2000: " + described);
            check(described.get("max.message.bytes").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "source " + described.get("max.message.bytes").source());
            Config withSynonyms = admin.describeConfigs(List.of(res), new DescribeConfigsOptions().includeSynonyms(true))
                    .all().get(30, TimeUnit.SECONDS).get(res);
            List<String> synonyms = new ArrayList<>();
            for (ConfigEntry.ConfigSynonym syn : withSynonyms.get("max.message.bytes").synonyms()) {
                synonyms.add(syn.name() + "=" + syn.value() + "@" + syn.source());
            }
            check(synonyms.equals(List.of("max.message.bytes=2000@DYNAMIC_TOPIC_CONFIG",
                    "message.max.bytes=1048588@DEFAULT_CONFIG")), "synonyms " + synonyms);
            try {
                producer.send(new ProducerRecord<>(topic, 0, null, new byte[3000])).get(30, TimeUnit.SECONDS);
                throw new AssertionError("a record over max.message.bytes was accepted");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof RecordTooLargeException, "expected RecordTooLargeException, got " + e.getCause());
            }
            try {
                admin.incrementalAlterConfigs(Map.of(res, List.of(
                        new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET))))
                        .all().get(30, TimeUnit.SECONDS);
                throw new AssertionError("an unknown config was accepted");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof org.apache.kafka.common.errors.InvalidConfigurationException,
                        "expected InvalidConfigurationException, got " + e.getCause());
            }

            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get(30, TimeUnit.SECONDS);
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            check(d.partitions().size() == 3, "partitions after CreatePartitions: " + d.partitions().size());
            for (int i = 0; i < 5; i++) producer.send(new ProducerRecord<>(topic, 2, null, ("v" + i).getBytes())).get(30, TimeUnit.SECONDS);

            TopicPartition tp = new TopicPartition(topic, 2);
            DeletedRecords deleted = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(2)))
                    .lowWatermarks().get(tp).get(30, TimeUnit.SECONDS);
            check(deleted.lowWatermark() == 2, "low watermark " + deleted.lowWatermark());
            long earliest = admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get(30, TimeUnit.SECONDS).get(tp).offset();
            check(earliest == 2, "earliest offset after DeleteRecords: " + earliest);

            DescribeClusterResult cluster = admin.describeCluster();
            check(cluster.nodes().get(30, TimeUnit.SECONDS).size() == 1, "one node");
            check(cluster.clusterId().get(30, TimeUnit.SECONDS) != null, "a cluster id");

            admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
            check(!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic), "topic still listed");
        }
        System.out.println("OK");
    }
}
