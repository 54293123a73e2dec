// A Flink job (Flink's MiniCluster in this JVM) copying one topic to another with the
// Flink Kafka connector's KafkaSource and a KafkaSink with DeliveryGuarantee
// EXACTLY_ONCE (two-phase commit over Kafka transactions, committed at each
// checkpoint), driven by compat-tests/test_flink.py:
//   ExactlyOnce <bootstrap> <input> <output> <group> <transactional-id-prefix>
// Every value v becomes "v!". Checkpoints every 500 ms; on a failure (the broker
// killed under it) the job restarts from its last checkpoint, again and again.
// Prints "RUNNING" when the job runs; stops when a line "stop" arrives on standard
// input (or after 300 s): cancels the job and prints "OK".


import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.CheckpointingMode;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

public class ExactlyOnce {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], input = args[1], output = args[2], group = args[3], prefix = args[4];
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        // Task failures and restarts, so the test can tell what the job went through.
        System.setProperty("org.slf4j.simpleLogger.log.org.apache.flink.runtime.executiongraph.ExecutionGraph", "info");
        Configuration conf = new Configuration();
        conf.setString("restart-strategy.type", "fixed-delay");
        conf.setString("restart-strategy.fixed-delay.attempts", "1000");
        conf.setString("restart-strategy.fixed-delay.delay", "1 s");
        StreamExecutionEnvironment env = Jobs.local(2, conf);
        env.enableCheckpointing(500, CheckpointingMode.EXACTLY_ONCE);

        KafkaSource<String> source = KafkaSource.<String>builder()
                .setBootstrapServers(bootstrap)
                .setTopics(input)
                .setGroupId(group)
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setValueOnlyDeserializer(new SimpleStringSchema())
                .setProperty("isolation.level", "read_committed")
                .build();
        KafkaSink<String> sink = KafkaSink.<String>builder()
                .setBootstrapServers(bootstrap)
                .setRecordSerializer(KafkaRecordSerializationSchema.builder()
                        .setTopic(output)
                        .setValueSerializationSchema(new SimpleStringSchema())
                        .build())
                .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .setTransactionalIdPrefix(prefix)
                // Below the broker's transaction.max.timeout.ms (15 min by default).
                .setProperty("transaction.timeout.ms", "60000")
                .build();
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "input")
                .map(v -> v + "!").returns(Types.STRING)
                .sinkTo(sink);
        Jobs.runUntilStopped(env, "exactly-once", 300_000);
    }
}
