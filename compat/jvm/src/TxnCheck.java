// Transactions (KIP-98) through the Java client (Kafka 4.4) against one broker: a transactional
// producer's committed and aborted transactions as read_committed and read_uncommitted consumers
// see them, an open transaction holding back the last stable offset, fencing by a second
// producer with the same transactional.id, and consume-transform-produce with
// sendOffsetsToTransaction.
//
//   java -cp 'LIB/*:CLASSES' TxnCheck BOOTSTRAP [RUN_TAG]
//
// Uses ClientCheck's helpers (check, eq, truth, createTopic, producer, consumer). Every check
// prints PASS/FAIL NAME; the last line is "N passed, M failed". Assertions are on the exact
// records (partition, offset, key, value), offsets (including the offset each marker takes),
// committed group offsets and exception classes.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.*;

public class TxnCheck {
    static String run;

    static byte[] b(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    static String s(byte[] b) { return b == null ? null : new String(b, StandardCharsets.UTF_8); }

    static KafkaProducer<byte[], byte[]> txnProducer(String id) {
        return ClientCheck.producer("none", Map.of("transactional.id", id, "max.block.ms", "30000",
                "transaction.timeout.ms", "60000"));
    }

    static KafkaConsumer<byte[], byte[]> reader(IsolationLevel level) {
        return ClientCheck.consumer(null, Map.of("isolation.level", level.toString()));
    }

    /** "partition@offset key=value" for a record, the unit every comparison below works on. */
    static String line(int partition, long offset, String key, String value) {
        return partition + "@" + offset + " " + key + "=" + value;
    }

    /** Everything from the beginning of the topic's partitions up to their end offsets at the
     *  reader's isolation level (the last stable offset for read_committed): each record as a
     *  line(), per partition in offset order. Also asserts that the position reached the end
     *  offset exactly (past any trailing markers or aborted batches). */
    static Map<Integer, List<String>> readAll(String topic, int partitions, IsolationLevel level,
                                              Map<Integer, Long> expectEnd) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < partitions; p++) tps.add(new TopicPartition(topic, p));
        Map<Integer, List<String>> out = new TreeMap<>();
        try (KafkaConsumer<byte[], byte[]> c = reader(level)) {
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            if (expectEnd != null)
                for (TopicPartition tp : tps)
                    ClientCheck.eq(expectEnd.get(tp.partition()), end.get(tp), level + " end offset of " + tp);
            long deadline = System.currentTimeMillis() + 30000;
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200)))
                    out.computeIfAbsent(r.partition(), k -> new ArrayList<>())
                            .add(line(r.partition(), r.offset(), s(r.key()), s(r.value())));
                boolean done = true;
                for (TopicPartition tp : tps) done &= c.position(tp) >= end.get(tp);
                if (done) break;
            }
            for (TopicPartition tp : tps)
                ClientCheck.eq(end.get(tp), c.position(tp), level + " position after reading " + tp);
            // and nothing beyond (a marker returned as a record would show up here)
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500)))
                throw new AssertionError("record past the end offset: " + r.partition() + "@" + r.offset());
        }
        for (int p = 0; p < partitions; p++) out.putIfAbsent(p, new ArrayList<>());
        return out;
    }

    static boolean fenced(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause())
            if (t instanceof ProducerFencedException || t instanceof InvalidProducerEpochException) return true;
        return false;
    }

    static String chain(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) sb.append(sb.length() > 0 ? " <- " : "").append(t);
        return sb.toString();
    }

    /** Asserts that the group's committed offsets are exactly `expected`, as a stable OffsetFetch
     *  (require_stable, KIP-447) answers them. While the transaction's offsets are still being
     *  made the group's (Kafka writes them when its marker reaches the group coordinator, after
     *  EndTxn has answered) the partition is UNSTABLE_OFFSET_COMMIT, which the Admin client
     *  leaves out of its answer: so a missing partition is waited for (20 s at most), but a
     *  present partition with another offset, or one that should not be there, fails at once. */
    static void assertGroupOffsets(Admin a, String group, Map<TopicPartition, Long> expected, String what) throws Exception {
        long deadline = System.currentTimeMillis() + 20000;
        Map<TopicPartition, Long> got = null;
        while (true) {
            try {
                Map<TopicPartition, OffsetAndMetadata> m = a.listConsumerGroupOffsets(group,
                        new ListConsumerGroupOffsetsOptions().requireStable(true)).partitionsToOffsetAndMetadata().get();
                got = new HashMap<>();
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet())
                    if (e.getValue() != null) got.put(e.getKey(), e.getValue().offset());
                for (Map.Entry<TopicPartition, Long> e : got.entrySet())
                    if (!e.getValue().equals(expected.get(e.getKey())))
                        throw new AssertionError(what + ": expected " + expected + ", got " + got);
                if (got.equals(expected)) return;
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnstableOffsetCommitException)) throw e;
            }
            if (System.currentTimeMillis() > deadline)
                throw new AssertionError(what + ": expected " + expected + ", still got " + got + " after 20 s");
            Thread.sleep(50);
        }
    }

    public static void main(String[] args) throws Exception {
        ClientCheck.bootstrap = args[0];
        run = args.length > 1 ? args[1] : Long.toString(System.currentTimeMillis() % 100000);

        // (a) committed and aborted transactions over three partitions
        final int partitions = 3, perTxn = 5;
        final boolean[] commits = {true, false, true, true, false, true};
        String rwTopic = "jvm-txn-rw-" + run;
        String rwId = "jvm-txn-rw-" + run;
        ClientCheck.check("txn_commit_abort_read_committed", () -> {
            try (Admin a = ClientCheck.admin()) { ClientCheck.createTopic(a, rwTopic, partitions, Map.of()); }
            Map<Integer, List<String>> all = new TreeMap<>(), committed = new TreeMap<>();
            try (KafkaProducer<byte[], byte[]> p = txnProducer(rwId)) {
                p.initTransactions();
                for (int t = 0; t < commits.length; t++) {
                    p.beginTransaction();
                    List<Future<RecordMetadata>> fs = new ArrayList<>();
                    List<String> lines = new ArrayList<>();
                    for (int i = 0; i < perTxn; i++) {
                        for (int part = 0; part < partitions; part++) {
                            String k = "t" + t + "-p" + part + "-" + i, v = (commits[t] ? "commit-" : "abort-") + t + "-" + i;
                            fs.add(p.send(new ProducerRecord<>(rwTopic, part, b(k), b(v))));
                            // each transaction takes perTxn offsets and one for its marker
                            lines.add(line(part, (long) t * (perTxn + 1) + i, k, v));
                        }
                    }
                    p.flush();
                    for (int j = 0; j < fs.size(); j++) {
                        RecordMetadata md = fs.get(j).get();
                        String want = lines.get(j);
                        ClientCheck.eq(want.substring(0, want.indexOf(' ')), md.partition() + "@" + md.offset(),
                                "offset of " + want.substring(want.indexOf(' ') + 1));
                    }
                    if (commits[t]) p.commitTransaction(); else p.abortTransaction();
                    for (String l : lines) {
                        int part = Integer.parseInt(l.substring(0, l.indexOf('@')));
                        all.computeIfAbsent(part, k -> new ArrayList<>()).add(l);
                        if (commits[t]) committed.computeIfAbsent(part, k -> new ArrayList<>()).add(l);
                    }
                }
            }
            for (List<String> l : all.values()) l.sort(Comparator.comparingLong(x -> Long.parseLong(x.substring(x.indexOf('@') + 1, x.indexOf(' ')))));
            for (List<String> l : committed.values()) l.sort(Comparator.comparingLong(x -> Long.parseLong(x.substring(x.indexOf('@') + 1, x.indexOf(' ')))));
            Map<Integer, Long> end = new HashMap<>();
            for (int part = 0; part < partitions; part++) end.put(part, (long) commits.length * (perTxn + 1));
            ClientCheck.eq(committed, readAll(rwTopic, partitions, IsolationLevel.READ_COMMITTED, end), "read_committed records");
            ClientCheck.eq(all, readAll(rwTopic, partitions, IsolationLevel.READ_UNCOMMITTED, end), "read_uncommitted records");
            System.out.println("  " + commits.length + " transactions (4 committed, 2 aborted) x " + partitions
                    + " partitions x " + perTxn + " records: read_committed got the 60 committed, read_uncommitted all 90");
        });

        // (a') an open transaction holds read_committed readers at the last stable offset
        ClientCheck.check("txn_open_holds_last_stable_offset", () -> {
            TopicPartition tp = new TopicPartition(rwTopic, 0);
            long base = (long) commits.length * (perTxn + 1);
            try (KafkaProducer<byte[], byte[]> p = txnProducer(rwId);
                 Admin a = ClientCheck.admin();
                 KafkaConsumer<byte[], byte[]> rc = reader(IsolationLevel.READ_COMMITTED);
                 KafkaConsumer<byte[], byte[]> ru = reader(IsolationLevel.READ_UNCOMMITTED)) {
                p.initTransactions();
                p.beginTransaction();
                for (int i = 0; i < 3; i++)
                    ClientCheck.eq(base + i, p.send(new ProducerRecord<>(rwTopic, 0, b("open-" + i), b("v" + i))).get().offset(), "offset of open-" + i);
                ClientCheck.eq(base, a.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
                        .partitionResult(tp).get().offset(), "read_committed latest (last stable offset) while open");
                ClientCheck.eq(base + 3, a.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(IsolationLevel.READ_UNCOMMITTED))
                        .partitionResult(tp).get().offset(), "read_uncommitted latest (high watermark) while open");
                rc.assign(List.of(tp));
                rc.seek(tp, base);
                ru.assign(List.of(tp));
                ru.seek(tp, base);
                List<ConsumerRecord<byte[], byte[]>> u = ClientCheck.consumeUntil(ru, 3, 20000);
                ClientCheck.eq(3, u.size(), "read_uncommitted records of the open transaction");
                long until = System.currentTimeMillis() + 1500;
                while (System.currentTimeMillis() < until)
                    for (ConsumerRecord<byte[], byte[]> r : rc.poll(Duration.ofMillis(100)))
                        throw new AssertionError("read_committed got " + r.offset() + " of an open transaction");
                ClientCheck.eq(base, rc.position(tp), "read_committed position while open");
                p.commitTransaction();
                List<ConsumerRecord<byte[], byte[]>> c = ClientCheck.consumeUntil(rc, 3, 20000);
                List<String> got = new ArrayList<>();
                for (ConsumerRecord<byte[], byte[]> r : c) got.add(line(r.partition(), r.offset(), s(r.key()), s(r.value())));
                ClientCheck.eq(List.of(line(0, base, "open-0", "v0"), line(0, base + 1, "open-1", "v1"),
                        line(0, base + 2, "open-2", "v2")), got, "read_committed after the commit");
                ClientCheck.eq(base + 4, a.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
                        .partitionResult(tp).get().offset(), "read_committed latest after the commit (past its marker)");
            }
        });

        // (a'') KIP-664's tooling: Admin.describeProducers shows the open transaction, and
        // Admin.abortTransaction (WriteTxnMarkers to the leader) aborts it on the partition
        ClientCheck.check("txn_describe_producers_and_abort", () -> {
            String topic = "jvm-txn-tooling-" + run;
            TopicPartition tp = new TopicPartition(topic, 0);
            try (Admin a = ClientCheck.admin()) { ClientCheck.createTopic(a, topic, 1, Map.of()); }
            try (KafkaProducer<byte[], byte[]> p = txnProducer("jvm-txn-tooling-" + run);
                 Admin a = ClientCheck.admin()) {
                p.initTransactions();
                p.beginTransaction();
                for (int i = 0; i < 3; i++)
                    ClientCheck.eq((long) i, p.send(new ProducerRecord<>(topic, 0, b("k" + i), b("v" + i))).get().offset(), "offset of k" + i);
                List<ProducerState> states = a.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers();
                ClientCheck.eq(1, states.size(), "producers on the partition");
                ProducerState st = states.get(0);
                ClientCheck.eq(OptionalLong.of(0), st.currentTransactionStartOffset(), "open transaction's first offset");
                ClientCheck.eq(2, st.lastSequence(), "last sequence");
                ClientCheck.eq(0, st.producerEpoch(), "producer epoch");
                System.out.println("  describeProducers: " + st);
                a.abortTransaction(new AbortTransactionSpec(tp, st.producerId(), (short) st.producerEpoch(),
                        st.coordinatorEpoch().orElse(0))).all().get();
                ClientCheck.eq(4L, a.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
                        .partitionResult(tp).get().offset(), "read_committed latest after the abort (past its marker)");
                ProducerState after = a.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers().get(0);
                ClientCheck.eq(OptionalLong.empty(), after.currentTransactionStartOffset(), "no transaction open after the abort");
                p.abortTransaction();
            }
            Map<Integer, List<String>> rc = readAll(topic, 1, IsolationLevel.READ_COMMITTED, Map.of(0, 5L));
            ClientCheck.eq(Map.of(0, List.of()), rc, "read_committed records");
        });

        // (b) a second producer with the same transactional.id fences the first
        ClientCheck.check("txn_fencing_same_transactional_id", () -> {
            String topic = "jvm-txn-fence-" + run, id = "jvm-txn-fence-" + run;
            try (Admin a = ClientCheck.admin()) { ClientCheck.createTopic(a, topic, 2, Map.of()); }
            KafkaProducer<byte[], byte[]> p1 = txnProducer(id);
            try {
                p1.initTransactions();
                p1.beginTransaction();
                ClientCheck.eq(0L, p1.send(new ProducerRecord<>(topic, 0, b("p1-a"), b("first"))).get().offset(), "p1-a offset");
                try (KafkaProducer<byte[], byte[]> p2 = txnProducer(id)) {
                    p2.initTransactions();              // new epoch: fences p1, aborts its open transaction
                    Throwable err = null;
                    try {
                        p1.send(new ProducerRecord<>(topic, 1, b("p1-b"), b("fenced"))).get(30, java.util.concurrent.TimeUnit.SECONDS);
                        p1.commitTransaction();
                    } catch (Exception e) {
                        err = e;
                    }
                    ClientCheck.truth(err != null, "the fenced producer's send and commit both succeeded");
                    ClientCheck.truth(fenced(err), "fenced producer's error: " + chain(err));
                    System.out.println("  fenced producer got: " + chain(err));
                    p2.beginTransaction();
                    p2.send(new ProducerRecord<>(topic, 0, b("p2-a"), b("second")));
                    p2.send(new ProducerRecord<>(topic, 1, b("p2-b"), b("second")));
                    p2.commitTransaction();
                }
            } finally {
                p1.close(Duration.ZERO);
            }
            // p1-a was aborted by p2's InitProducerId (marker at 1), p1-b never written
            Map<Integer, List<String>> rc = readAll(topic, 2, IsolationLevel.READ_COMMITTED, Map.of(0, 4L, 1, 2L));
            ClientCheck.eq(Map.of(0, List.of(line(0, 2, "p2-a", "second")), 1, List.of(line(1, 0, "p2-b", "second"))), rc,
                    "read_committed records");
            Map<Integer, List<String>> ru = readAll(topic, 2, IsolationLevel.READ_UNCOMMITTED, Map.of(0, 4L, 1, 2L));
            ClientCheck.eq(Map.of(0, List.of(line(0, 0, "p1-a", "first"), line(0, 2, "p2-a", "second")),
                    1, List.of(line(1, 0, "p2-b", "second"))), ru, "read_uncommitted records");
        });

        // (c) consume-transform-produce: offsets committed with the transaction
        ClientCheck.check("txn_consume_transform_produce", () -> {
            String in = "jvm-ctp-in-" + run, out = "jvm-ctp-out-" + run, group = "jvm-ctp-g-" + run;
            final int n = 30;
            try (Admin a = ClientCheck.admin()) {
                ClientCheck.createTopic(a, in, 2, Map.of());
                ClientCheck.createTopic(a, out, 2, Map.of());
            }
            try (KafkaProducer<byte[], byte[]> p = ClientCheck.producer("none", Map.of())) {
                for (int i = 0; i < n; i++)
                    for (int part = 0; part < 2; part++)
                        p.send(new ProducerRecord<>(in, part, b("in-" + part + "-" + i), b("v-" + part + "-" + i)));
                p.flush();
            }
            TopicPartition in0 = new TopicPartition(in, 0), in1 = new TopicPartition(in, 1);
            Map<TopicPartition, Long> done = Map.of(in0, (long) n, in1, (long) n);
            Map<TopicPartition, Long> expected = new HashMap<>();
            int rounds = 0, aborted = 0, abortedRecords = 0;
            try (Admin a = ClientCheck.admin();
                 KafkaProducer<byte[], byte[]> p = txnProducer("jvm-ctp-" + run);
                 KafkaConsumer<byte[], byte[]> c = ClientCheck.consumer(group, Map.of("isolation.level", "read_committed",
                         "max.poll.records", "7"))) {
                p.initTransactions();
                c.subscribe(List.of(in));
                long deadline = System.currentTimeMillis() + 90000;
                while (!expected.equals(done)) {
                    ClientCheck.truth(System.currentTimeMillis() < deadline, "timed out; committed so far " + expected);
                    ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(200));
                    if (recs.isEmpty()) continue;
                    p.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                    for (ConsumerRecord<byte[], byte[]> r : recs) {
                        p.send(new ProducerRecord<>(out, r.partition(), r.key(), b("T(" + s(r.value()) + ")")));
                        offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    p.flush();   // written before the end (an abort drops records still unsent)
                    p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                    boolean abort = rounds == 1 || rounds == 3;
                    if (abort) {
                        p.abortTransaction();
                        aborted++;
                        abortedRecords += recs.count();
                        assertGroupOffsets(a, group, expected, "group offsets after abort " + aborted + " (unchanged)");
                        for (TopicPartition tp : offsets.keySet()) c.seek(tp, expected.getOrDefault(tp, 0L));
                    } else {
                        p.commitTransaction();
                        offsets.forEach((tp, om) -> expected.put(tp, om.offset()));
                        assertGroupOffsets(a, group, expected, "group offsets after the commit of round " + rounds);
                        Map<TopicPartition, OffsetAndMetadata> cm = c.committed(offsets.keySet());
                        for (TopicPartition tp : offsets.keySet())
                            ClientCheck.eq(expected.get(tp), cm.get(tp).offset(), "consumer.committed " + tp);
                    }
                    rounds++;
                }
            }
            ClientCheck.truth(aborted == 2, "two aborted rounds (" + aborted + ")");
            // the output: every input record transformed exactly once, in order per partition
            Map<Integer, List<String>> rc = readAll(out, 2, IsolationLevel.READ_COMMITTED, null);
            for (int part = 0; part < 2; part++) {
                List<String> want = new ArrayList<>(), got = new ArrayList<>();
                for (int i = 0; i < n; i++) want.add("in-" + part + "-" + i + "=T(v-" + part + "-" + i + ")");
                for (String l : rc.get(part)) got.add(l.substring(l.indexOf(' ') + 1));
                ClientCheck.eq(want, got, "read_committed output of partition " + part);
            }
            Map<Integer, List<String>> ru = readAll(out, 2, IsolationLevel.READ_UNCOMMITTED, null);
            ClientCheck.eq(2 * n + abortedRecords, ru.get(0).size() + ru.get(1).size(), "read_uncommitted output (aborted rounds included)");
            System.out.println("  " + rounds + " rounds (" + aborted + " aborted, " + abortedRecords
                    + " records redone), group offsets " + done);
        });

        System.out.printf("%d passed, %d failed%n", ClientCheck.passed, ClientCheck.failed);
        System.exit(ClientCheck.failed == 0 ? 0 : 1);
    }
}
