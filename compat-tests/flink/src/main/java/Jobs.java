// What the Flink jobs of the compatibility tests share: a MiniCluster environment
// with its REST endpoint on a free loopback port, and running a job the way the
// tests drive it (print "RUNNING" once it runs, cancel it when a line "stop"
// arrives on standard input or after a time limit, then print "OK" and exit).

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.TimeUnit;

import org.apache.flink.api.common.JobStatus;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

final class Jobs {
    private Jobs() {}

    /** Flink's MiniCluster in this JVM at `parallelism`, with `conf` added. */
    static StreamExecutionEnvironment local(int parallelism, Configuration conf) {
        conf.setString("rest.bind-address", "127.0.0.1");
        conf.setString("rest.bind-port", "0");
        return StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
    }

    /** Runs the job until "stop" on standard input (or `limitMs`), then exits. */
    static void runUntilStopped(StreamExecutionEnvironment env, String name, long limitMs) throws Exception {
        JobClient job = env.executeAsync(name);
        long deadline = System.currentTimeMillis() + 60_000;
        while (job.getJobStatus().get(10, TimeUnit.SECONDS) != JobStatus.RUNNING) {
            if (System.currentTimeMillis() > deadline) throw new IllegalStateException("job not running");
            Thread.sleep(100);
        }
        System.out.println("RUNNING");
        System.out.flush();
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
        stdin.join(limitMs);
        job.cancel().get(60, TimeUnit.SECONDS);
        System.out.flush();
        System.out.println("OK");
        System.out.flush();
        System.exit(0);
    }
}
