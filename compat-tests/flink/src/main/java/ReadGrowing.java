// A Flink job (Flink's MiniCluster in this JVM) reading one topic with the Flink Kafka
// connector's KafkaSource, partition discovery on, driven by compat-tests/test_scaling.py:
//   ReadGrowing <bootstrap> <topic> <group> <discovery-interval-ms>
// Prints, flushed at once, "RUNNING" when the job runs and "CONSUMED <partition>
// <offset> <value>" per record (parallelism 1, so in read order per partition). Stops
// when a line "stop" arrives on standard input (or after 240 s): cancels the job and
// prints "OK".

import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

public class ReadGrowing {
    /** Each record as "<partition> <offset> <value>". */
    static final class Placed implements KafkaRecordDeserializationSchema<String> {
        @Override
        public void deserialize(ConsumerRecord<byte[], byte[]> r, Collector<String> out) {
            String value = r.value() == null ? "" : new String(r.value(), StandardCharsets.UTF_8);
            out.collect(r.partition() + " " + r.offset() + " " + value);
        }

        @Override
        public TypeInformation<String> getProducedType() {
            return Types.STRING;
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2], discovery = args[3];
        // Warnings only, but the source's partition discovery at INFO (on standard error).
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        System.setProperty("org.slf4j.simpleLogger.log.org.apache.flink.connector.kafka.source.enumerator", "info");
        KafkaSource<String> source = KafkaSource.<String>builder()
                .setBootstrapServers(bootstrap)
                .setTopics(topic)
                .setGroupId(group)
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setDeserializer(new Placed())
                .setProperty("partition.discovery.interval.ms", discovery)
                .setProperty("metadata.max.age.ms", "500")
                .build();
        Configuration conf = new Configuration();
        StreamExecutionEnvironment env = Jobs.local(1, conf);
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "tributary")
                .map(line -> "CONSUMED " + line).returns(Types.STRING)
                .print();
        Jobs.runUntilStopped(env, "read-growing", 240_000);
    }
}
