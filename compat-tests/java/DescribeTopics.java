// The Java Admin's describeTopics (kafka-clients 4.3.0), which pages with
// DescribeTopicPartitions (KIP-966) where the broker serves it, driven by
// compat-tests/test_java_client.py:  java DescribeTopics <bootstrap> <prefix>
// Creates <prefix>-a (25 partitions), <prefix>-b (3) and <prefix>-c (1), then
// describes them with at most 10, 4 and 1 partitions per answer (so the client
// follows the broker's cursor within and across topics) and with the default, and a
// missing topic beside them (UnknownTopicOrPartitionException for it alone); every
// description must have every partition, in order, each with a leader among the
// cluster's nodes. Prints "OK" last.

import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

public class DescribeTopics {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], prefix = args[1];
        Map<String, Integer> want = new TreeMap<>(Map.of(prefix + "-a", 25, prefix + "-b", 3, prefix + "-c", 1));
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            List<NewTopic> create = new ArrayList<>();
            want.forEach((name, n) -> create.add(new NewTopic(name, n, (short) 1)));
            admin.createTopics(create).all().get(30, TimeUnit.SECONDS);
            Set<Integer> nodes = new HashSet<>();
            for (Node n : admin.describeCluster().nodes().get(30, TimeUnit.SECONDS)) nodes.add(n.id());

            for (int limit : new int[] {10, 4, 1, 0}) {
                DescribeTopicsOptions options = new DescribeTopicsOptions();
                if (limit > 0) options.partitionSizeLimitPerResponse(limit);
                Map<String, TopicDescription> got =
                        admin.describeTopics(want.keySet(), options).allTopicNames().get(30, TimeUnit.SECONDS);
                check(got.keySet().equals(want.keySet()), "described " + got.keySet());
                for (Map.Entry<String, Integer> w : want.entrySet()) {
                    TopicDescription d = got.get(w.getKey());
                    check(d.name().equals(w.getKey()) && !d.isInternal() && d.topicId() != null, "topic " + d);
                    List<TopicPartitionInfo> parts = d.partitions();
                    check(parts.size() == w.getValue(), w.getKey() + " has " + parts.size() + " partitions at limit " + limit);
                    for (int i = 0; i < parts.size(); i++) {
                        TopicPartitionInfo p = parts.get(i);
                        check(p.partition() == i, w.getKey() + " partition " + i + " is " + p.partition());
                        check(p.leader() != null && nodes.contains(p.leader().id()), "leader of " + i + ": " + p.leader());
                        check(p.replicas().size() == 1 && p.isr().size() == 1, "replicas of " + i + ": " + p);
                    }
                    check(d.authorizedOperations() == null || !d.authorizedOperations().isEmpty(), "operations " + d);
                }
            }

            String missing = prefix + "-missing";
            Set<String> names = new TreeSet<>(want.keySet());
            names.add(missing);
            Map<String, KafkaFuture<TopicDescription>> each =
                    admin.describeTopics(names, new DescribeTopicsOptions().partitionSizeLimitPerResponse(5))
                            .topicNameValues();
            for (String name : want.keySet()) {
                check(each.get(name).get(30, TimeUnit.SECONDS).partitions().size() == want.get(name), name + " beside a missing topic");
            }
            try {
                each.get(missing).get(30, TimeUnit.SECONDS);
                throw new AssertionError("a missing topic was described");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof UnknownTopicOrPartitionException, "expected UnknownTopicOrPartitionException, got " + e.getCause());
            }
        }
        System.out.println("OK");
    }
}
