// Kafka Streams (4.4) against one broker, processing.guarantee=at_least_once, each app stopped
// mid-stream and restarted: a word count (every count update exactly once, in order) and a
// stream-table join (every order joined exactly once with its customer). Then the word count
// again with processing.guarantee=exactly_once_v2 (transactions), killed with SIGKILL mid-stream
// and restarted.
//
//   java -cp 'LIB/*:CLASSES' StreamsCheck BOOTSTRAP RUN_TAG        (the driver)
//   java -cp 'LIB/*:CLASSES' StreamsCheck app BOOTSTRAP APP_ID IN OUT STATE_DIR [GUARANTEE]   (the app)
//
// The driver produces lines of known words, runs the app as a child JVM, stops it (SIGTERM: the
// app's shutdown hook closes Streams, which commits) while input remains, starts it again,
// produces more, and reads the output topic: for every word the updates must be 1, 2, ..., n
// with n its number of occurrences (record caching off, so each input word yields one update).
// A graceful stop under at_least_once neither loses nor repeats an update; a crash could repeat
// some, which is why the stop is graceful. Under exactly_once_v2 a crash may not repeat one
// either: the app is killed (SIGKILL, no shutdown hook, its transaction left open) and the output
// is read with isolation.level=read_committed; the updates must still be exactly 1, 2, ..., n.
// Last line: "N passed, M failed".

import java.io.File;
import java.nio.file.Files;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.kstream.*;

public class StreamsCheck {
    static final String[] WORDS = {"apple", "banana", "cherry", "date", "elder", "fig", "grape",
            "honeydew", "kiwi", "lemon", "mango", "nectarine", "olive", "papaya", "quince"};

    public static void main(String[] args) throws Exception {
        if (args[0].equals("app")) {
            app(args[1], args[2], args[3], args[4], args[5],
                    args.length > 6 ? args[6] : StreamsConfig.AT_LEAST_ONCE);
            return;
        }
        if (args[0].equals("join-app")) {
            joinApp(args[1], args[2], args[3], args[4], args[5], args[6]);
            return;
        }
        String bootstrap = args[0], tag = args[1];
        int passed = 0, failed = 0;
        try {
            drive(bootstrap, tag);
            System.out.println("PASS streams_wordcount_at_least_once_restart");
            passed++;
        } catch (Throwable e) {
            System.out.println("FAIL streams_wordcount_at_least_once_restart: " + e);
            e.printStackTrace(System.out);
            failed++;
        }
        try {
            driveJoin(bootstrap, tag);
            System.out.println("PASS streams_stream_table_join_restart");
            passed++;
        } catch (Throwable e) {
            System.out.println("FAIL streams_stream_table_join_restart: " + e);
            e.printStackTrace(System.out);
            failed++;
        }
        try {
            drive(bootstrap, tag + "-eos", StreamsConfig.EXACTLY_ONCE_V2, true);
            System.out.println("PASS streams_wordcount_exactly_once_v2_crash_restart");
            passed++;
        } catch (Throwable e) {
            System.out.println("FAIL streams_wordcount_exactly_once_v2_crash_restart: " + e);
            e.printStackTrace(System.out);
            failed++;
        }
        System.out.printf("%d passed, %d failed%n", passed, failed);
        System.exit(failed == 0 ? 0 : 1);
    }

    static void app(String bootstrap, String appId, String in, String out, String stateDir, String guarantee)
            throws Exception {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 50);
        p.put(StreamsConfig.consumerPrefix("group.protocol"), "classic");
        StreamsBuilder b = new StreamsBuilder();
        b.<String, String>stream(in)
                .peek((k, v) -> pause())          // ~3 ms a line, so a stop lands mid-stream
                .flatMapValues(v -> Arrays.asList(v.split(" ")))
                .groupBy((k, w) -> w)
                .count(Materialized.as("counts"))
                .toStream()
                .to(out, Produced.with(Serdes.String(), Serdes.Long()));
        KafkaStreams s = new KafkaStreams(b.build(), p);
        CountDownLatch done = new CountDownLatch(1);
        s.setStateListener((now, before) -> {
            System.out.println("STATE " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR) done.countDown();
        });
        s.setUncaughtExceptionHandler(e -> {
            System.out.println("UNCAUGHT " + e);
            e.printStackTrace(System.out);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            s.close(Duration.ofSeconds(30));
            System.out.println("CLOSED");
            System.out.flush();
        }));
        s.start();
        done.await();
    }

    static void pause() {
        try {
            Thread.sleep(3);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** A stateful join: orders (a stream, keyed by customer) joined with customers (a table). */
    static void joinApp(String bootstrap, String appId, String orders, String customers, String out,
                        String stateDir) throws Exception {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 50);
        p.put(StreamsConfig.consumerPrefix("group.protocol"), "classic");
        // wait for both inputs of a task before processing, so the customers (older timestamps)
        // are in the table before the orders that need them
        p.put(StreamsConfig.MAX_TASK_IDLE_MS_CONFIG, 2000);
        StreamsBuilder b = new StreamsBuilder();
        KTable<String, String> table = b.table(customers, Materialized.as("customers"));
        b.<String, String>stream(orders)
                .peek((k, v) -> pause())
                .join(table, (order, customer) -> order + "@" + customer)
                .to(out);
        run(p, b);
    }

    static void run(Properties p, StreamsBuilder b) throws Exception {
        KafkaStreams s = new KafkaStreams(b.build(), p);
        CountDownLatch done = new CountDownLatch(1);
        s.setStateListener((now, before) -> {
            System.out.println("STATE " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR) done.countDown();
        });
        s.setUncaughtExceptionHandler(e -> {
            System.out.println("UNCAUGHT " + e);
            e.printStackTrace(System.out);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            s.close(Duration.ofSeconds(30));
            System.out.println("CLOSED");
            System.out.flush();
        }));
        s.start();
        done.await();
    }

    /** The join, stopped mid-stream and restarted: every order joined exactly once. The
     *  customers are all in their topic before the app starts, so each order has exactly one
     *  possible join result whatever the processing order. */
    static void driveJoin(String bootstrap, String tag) throws Exception {
        String orders = "join-orders-" + tag, customers = "join-customers-" + tag, out = "join-out-" + tag;
        String appId = "join-app-" + tag;
        File work = Files.createTempDirectory("zombi-streams-join").toFile();
        File log = new File(work, "app.log");
        try (Admin a = Admin.create(base(bootstrap))) {
            a.createTopics(List.of(new NewTopic(orders, 3, (short) 1), new NewTopic(customers, 3, (short) 1),
                    new NewTopic(out, 3, (short) 1))).all().get();
        }
        Properties pp = base(bootstrap);
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        Map<String, String> expected = new TreeMap<>();
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
            for (int c = 0; c < 40; c++) prod.send(new ProducerRecord<>(customers, "c" + c, "customer-" + c + "-v1"));
            for (int c = 0; c < 40; c += 3) prod.send(new ProducerRecord<>(customers, "c" + c, "customer-" + c + "-v2"));
            prod.flush();
        }
        Properties cp = base(bootstrap);
        cp.put("key.deserializer", StringDeserializer.class.getName());
        cp.put("value.deserializer", StringDeserializer.class.getName());
        List<String> results = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp);
             KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
            List<TopicPartition> tps = List.of(new TopicPartition(out, 0), new TopicPartition(out, 1), new TopicPartition(out, 2));
            c.assign(tps);
            c.seekToBeginning(tps);
            Runnable drain = () -> c.poll(Duration.ofMillis(100)).forEach(r -> results.add(r.key() + "=" + r.value()));
            Runnable sendOrders = null;
            int n = 0;
            for (; n < 1200; n++) {
                String cust = "c" + (n % 40);
                String cv = "customer-" + (n % 40) + ((n % 40) % 3 == 0 ? "-v2" : "-v1");
                prod.send(new ProducerRecord<>(orders, cust, "order-" + n));
                expected.put("order-" + n, cust + "=order-" + n + "@" + cv);
            }
            prod.flush();
            Process app = startJoinApp(bootstrap, appId, orders, customers, out, new File(work, "state"), log);
            final Process first = app;
            waitFor("first join output (log " + log + ")", 120000, () -> {
                drain.run();
                alive(first, log);
                return results.size() >= 200;
            });
            app.destroy();
            truth(app.waitFor(60, TimeUnit.SECONDS), "join app stopped within 60 s");
            int atStop = results.size();
            truth(atStop < 1200, "stopped mid-stream (" + atStop + " of 1200 joins)");
            System.out.println("  join stopped after " + atStop + " of 1200 orders; restarting");
            app = startJoinApp(bootstrap, appId, orders, customers, out, new File(work, "state"), log);
            for (; n < 2000; n++) {
                String cust = "c" + (n % 40);
                String cv = "customer-" + (n % 40) + ((n % 40) % 3 == 0 ? "-v2" : "-v1");
                prod.send(new ProducerRecord<>(orders, cust, "order-" + n));
                expected.put("order-" + n, cust + "=order-" + n + "@" + cv);
            }
            prod.flush();
            try {
                final Process second = app;
                waitFor("2000 joins (log " + log + ")", 180000, () -> {
                    drain.run();
                    alive(second, log);
                    return results.size() >= 2000;
                });
                long until = System.currentTimeMillis() + 2000;   // and no repeat shows up
                while (System.currentTimeMillis() < until) drain.run();
            } finally {
                app.destroy();
                app.waitFor(60, TimeUnit.SECONDS);
            }
        }
        eq(2000, results.size(), "join results (each order once)");
        Map<String, String> got = new TreeMap<>();
        for (String r : results) got.put(r.substring(r.indexOf("=order-") + 1, r.indexOf('@')), r);
        eq(expected, got, "joined records");
        System.out.println("  2000 orders joined with 40 customers (13 updated before), each exactly once");
    }

    static Process startJoinApp(String bootstrap, String appId, String orders, String customers, String out,
                                File state, File log) throws Exception {
        String java = System.getProperty("java.home") + "/bin/java";
        ProcessBuilder pb = new ProcessBuilder(java, "-Xmx256m", "-XX:+UseSerialGC",
                "-Dlog4j2.configurationFile=" + System.getProperty("log4j2.configurationFile", ""),
                "-cp", System.getProperty("java.class.path"), "StreamsCheck", "join-app", bootstrap, appId, orders,
                customers, out, state.getPath());
        pb.redirectErrorStream(true);
        pb.redirectOutput(ProcessBuilder.Redirect.appendTo(log));
        return pb.start();
    }

    static Properties base(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        return p;
    }

    static Process startApp(String bootstrap, String appId, String in, String out, File state, File log,
                            String guarantee) throws Exception {
        String java = System.getProperty("java.home") + "/bin/java";
        ProcessBuilder pb = new ProcessBuilder(java, "-Xmx256m", "-XX:+UseSerialGC",
                "-Dlog4j2.configurationFile=" + System.getProperty("log4j2.configurationFile", ""),
                "-cp", System.getProperty("java.class.path"), "StreamsCheck", "app", bootstrap, appId, in, out,
                state.getPath(), guarantee);
        pb.redirectErrorStream(true);
        pb.redirectOutput(ProcessBuilder.Redirect.appendTo(log));
        return pb.start();
    }

    static void waitFor(String what, long timeoutMs, java.util.function.BooleanSupplier cond) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) throw new AssertionError("timed out waiting for " + what);
            Thread.sleep(100);
        }
    }

    static void drive(String bootstrap, String tag) throws Exception {
        drive(bootstrap, tag, StreamsConfig.AT_LEAST_ONCE, false);
    }

    /** crash: stop the first run with SIGKILL (only meaningful with exactly_once_v2, whose output
     *  is then read read_committed) instead of SIGTERM. */
    static void drive(String bootstrap, String tag, String guarantee, boolean crash) throws Exception {
        String in = "wc-in-" + tag, out = "wc-out-" + tag, appId = "wc-app-" + tag;
        File work = Files.createTempDirectory("zombi-streams").toFile();
        File log = new File(work, "app.log");
        try (Admin a = Admin.create(base(bootstrap))) {
            a.createTopics(List.of(new NewTopic(in, 3, (short) 1), new NewTopic(out, 2, (short) 1))).all().get();
        }
        Properties pp = base(bootstrap);
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        Map<String, Integer> expected = new TreeMap<>();
        Random rnd = new Random(7);
        int lines = 0;
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
            lines += produce(prod, in, rnd, 1500, expected, lines);
        }
        // output reader (assign from the beginning; keeps reading across the restart)
        Properties cp = base(bootstrap);
        cp.put("key.deserializer", StringDeserializer.class.getName());
        cp.put("value.deserializer", LongDeserializer.class.getName());
        if (!guarantee.equals(StreamsConfig.AT_LEAST_ONCE)) cp.put("isolation.level", "read_committed");
        Map<String, List<Long>> updates = new TreeMap<>();
        try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(cp)) {
            List<TopicPartition> tps = List.of(new TopicPartition(out, 0), new TopicPartition(out, 1));
            c.assign(tps);
            c.seekToBeginning(tps);
            Runnable drain = () -> {
                for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(100)))
                    updates.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
            };
            java.util.function.IntSupplier seen = () -> updates.values().stream().mapToInt(List::size).sum();

            Process app = startApp(bootstrap, appId, in, out, new File(work, "state"), log, guarantee);
            int firstTotal = expected.values().stream().mapToInt(Integer::intValue).sum();
            // stop it mid-stream: once some output exists, well before all of it
            final Process first = app;
            waitFor("first output of the app (log " + log + ")", 120000, () -> {
                drain.run();
                alive(first, log);
                return seen.getAsInt() >= 300;
            });
            if (crash) {
                app.destroyForcibly();                 // SIGKILL: no shutdown hook, a transaction left open
                truth(app.waitFor(60, TimeUnit.SECONDS), "app killed within 60 s");
            } else {
                app.destroy();                         // SIGTERM: the shutdown hook closes Streams
                truth(app.waitFor(60, TimeUnit.SECONDS), "app stopped within 60 s");
                String text = Files.readString(log.toPath());
                truth(text.contains("CLOSED"), "app closed cleanly");
            }
            int atStop = seen.getAsInt();
            truth(atStop < firstTotal, "stopped mid-stream (" + atStop + " of " + firstTotal + " updates)");
            System.out.println("  " + (crash ? "killed" : "stopped") + " after " + atStop + " of " + firstTotal
                    + " updates; restarting");

            app = startApp(bootstrap, appId, in, out, new File(work, "state"), log, guarantee);
            try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
                lines += produce(prod, in, rnd, 1500, expected, lines);
            }
            int total = expected.values().stream().mapToInt(Integer::intValue).sum();
            try {
                final Process second = app;
                waitFor(total + " updates (log " + log + ")", 180000, () -> {
                    drain.run();
                    alive(second, log);
                    return seen.getAsInt() >= total;
                });
                // and nothing more: a repeat would show up as an extra update
                long until = System.currentTimeMillis() + 2000;
                while (System.currentTimeMillis() < until) drain.run();
            } finally {
                app.destroy();
                app.waitFor(60, TimeUnit.SECONDS);
            }
            eq(expected.keySet(), updates.keySet(), "words");
            for (Map.Entry<String, Integer> e : expected.entrySet()) {
                List<Long> got = updates.get(e.getKey());
                List<Long> want = new ArrayList<>();
                for (long i = 1; i <= e.getValue(); i++) want.add(i);
                eq(want, got, "updates of " + e.getKey());
            }
            System.out.println("  " + guarantee + ": " + lines + " lines, " + total + " words, every update once and in order");
            if (crash) {
                // for the record (no assertion: how much the kill caught in flight varies): the
                // output log read read_uncommitted, so the aborted updates are counted too
                Properties up = base(bootstrap);
                up.put("key.deserializer", StringDeserializer.class.getName());
                up.put("value.deserializer", LongDeserializer.class.getName());
                up.put("isolation.level", "read_uncommitted");
                int raw = 0;
                try (KafkaConsumer<String, Long> u = new KafkaConsumer<>(up)) {
                    u.assign(tps);
                    u.seekToBeginning(tps);
                    Map<TopicPartition, Long> end = u.endOffsets(tps);
                    long deadline = System.currentTimeMillis() + 30000;
                    while (System.currentTimeMillis() < deadline
                            && tps.stream().anyMatch(tp -> u.position(tp) < end.get(tp)))
                        raw += u.poll(Duration.ofMillis(100)).count();
                }
                System.out.println("  output log read_uncommitted: " + raw + " records, " + (raw - total)
                        + " more than the committed updates (aborted: in flight when the app was killed)");
            }
        }
    }

    static int produce(KafkaProducer<String, String> prod, String topic, Random rnd, int n,
                       Map<String, Integer> expected, int start) throws Exception {
        for (int i = 0; i < n; i++) {
            StringBuilder sb = new StringBuilder();
            int words = 1 + rnd.nextInt(4);
            for (int j = 0; j < words; j++) {
                String w = WORDS[rnd.nextInt(WORDS.length)];
                expected.merge(w, 1, Integer::sum);
                if (j > 0) sb.append(' ');
                sb.append(w);
            }
            prod.send(new ProducerRecord<>(topic, "line-" + (start + i), sb.toString()));
        }
        prod.flush();
        return n;
    }

    /** Fails at once when the app has died, with its first uncaught error. */
    static void alive(Process app, File log) {
        if (app.isAlive()) return;
        String why = "";
        try {
            for (String line : Files.readAllLines(log.toPath())) {
                if (line.startsWith("UNCAUGHT") || line.startsWith("Caused by")) why += " " + line;
            }
        } catch (java.io.IOException e) {
            why = e.toString();
        }
        throw new AssertionError("the Streams app died:" + why);
    }

    static void truth(boolean b, String what) { if (!b) throw new AssertionError(what); }

    static void eq(Object a, Object b, String what) {
        if (!Objects.equals(a, b)) throw new AssertionError(what + ": expected " + a + ", got " + b);
    }
}
