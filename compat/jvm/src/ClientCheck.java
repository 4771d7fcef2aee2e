// The Java client (Kafka 4.4) against one broker: the Admin client, the idempotent producer in
// every codec, a classic-protocol group consumer, and the admin views of what they did.
//
//   java -cp 'LIB/*:CLASSES' ClientCheck BOOTSTRAP
//
// Every check prints PASS/FAIL NAME; the last line is "N passed, M failed". Assertions are on
// bytes, offsets, timestamps and error classes; waits are for events (poll results), bounded.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.function.Supplier;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ClientCheck {
    static int passed = 0, failed = 0;
    static String bootstrap;

    interface Check { void run() throws Exception; }

    static void check(String name, Check c) {
        long t0 = System.nanoTime();
        try {
            c.run();
            passed++;
            System.out.printf("PASS %s [%.1f s]%n", name, (System.nanoTime() - t0) / 1e9);
        } catch (Throwable e) {
            failed++;
            System.out.printf("FAIL %s: %s%n", name, e);
            e.printStackTrace(System.out);
        }
        System.out.flush();
    }

    static void eq(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual))
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
    }

    static void truth(boolean b, String what) {
        if (!b) throw new AssertionError(what);
    }

    static Throwable cause(Supplier<KafkaFuture<?>> f) {
        try {
            f.get().get();
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (InterruptedException e) {
            throw new RuntimeException(e);
        }
    }

    static Properties base() {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", "zombi-jvm-check");
        return p;
    }

    static Admin admin() {
        return Admin.create(base());
    }

    static KafkaProducer<byte[], byte[]> producer(String codec, Map<String, Object> extra) {
        Properties p = base();
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        p.put("compression.type", codec);
        p.put("linger.ms", "5");
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<byte[], byte[]> consumer(String group, Map<String, Object> extra) {
        Properties p = base();
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        if (group != null) p.put("group.id", group);
        p.put("group.protocol", "classic");
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        p.putAll(extra);
        return new KafkaConsumer<>(p);
    }

    static void createTopic(Admin a, String name, int partitions, Map<String, String> configs) throws Exception {
        a.createTopics(List.of(new NewTopic(name, partitions, (short) 1).configs(configs))).all().get();
        // wait until every partition's leader answers ListOffsets (Kafka's broker learns of a new
        // topic from its metadata log a little after CreateTopics answers). Not describeTopics:
        // admin_describe_topics checks that one on its own.
        Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
        for (int i = 0; i < partitions; i++) specs.put(new TopicPartition(name, i), OffsetSpec.latest());
        long deadline = System.currentTimeMillis() + 30000;
        while (true) {
            try {
                a.listOffsets(specs).all().get();
                return;
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof RetriableException) || System.currentTimeMillis() > deadline) throw e;
            }
            Thread.sleep(50);
        }
    }

    record Sent(int partition, long offset, long timestamp, byte[] key, byte[] value, List<Header> headers) {}

    static byte[] bytes(String s) { return s == null ? null : s.getBytes(StandardCharsets.UTF_8); }

    static List<Sent> produceAll(KafkaProducer<byte[], byte[]> prod, String topic, int partitions, int n, long t0, String tag)
            throws Exception {
        List<java.util.concurrent.Future<RecordMetadata>> futures = new ArrayList<>();
        List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
        Random rnd = new Random(42);
        for (int i = 0; i < n; i++) {
            byte[] key = (i % 7 == 0) ? null : bytes(tag + "-key-" + i);
            byte[] value;
            if (i % 11 == 0) value = null;                       // tombstone
            else if (i % 13 == 0) value = new byte[0];
            else {
                value = new byte[(i * 37) % 3000 + 1];
                rnd.nextBytes(value);
            }
            List<Header> headers = new ArrayList<>();
            headers.add(new RecordHeader("h", bytes("a" + i)));
            headers.add(new RecordHeader("h", bytes("b" + i)));   // repeated key
            if (i % 3 == 0) headers.add(new RecordHeader("null", (byte[]) null));
            ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, i % partitions, t0 + i, key, value, headers);
            recs.add(r);
            futures.add(prod.send(r));
        }
        prod.flush();
        List<Sent> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            RecordMetadata md = futures.get(i).get();
            ProducerRecord<byte[], byte[]> r = recs.get(i);
            eq(r.partition(), md.partition(), "partition of record " + i);
            eq(r.timestamp(), md.timestamp(), "timestamp in the metadata of record " + i);
            List<Header> hs = new ArrayList<>();
            r.headers().forEach(hs::add);
            out.add(new Sent(md.partition(), md.offset(), r.timestamp(), r.key(), r.value(), hs));
        }
        return out;
    }

    static List<ConsumerRecord<byte[], byte[]>> consumeUntil(KafkaConsumer<byte[], byte[]> c, int expected, long timeoutMs) {
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (got.size() < expected && System.currentTimeMillis() < deadline) {
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) got.add(r);
        }
        return got;
    }

    static void compare(List<Sent> sent, List<ConsumerRecord<byte[], byte[]>> got) {
        eq(sent.size(), got.size(), "records consumed");
        Map<String, ConsumerRecord<byte[], byte[]>> byPos = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : got) {
            ConsumerRecord<byte[], byte[]> prev = byPos.put(r.partition() + "@" + r.offset(), r);
            truth(prev == null, "record consumed twice: " + r.partition() + "@" + r.offset());
        }
        for (Sent s : sent) {
            ConsumerRecord<byte[], byte[]> r = byPos.get(s.partition + "@" + s.offset);
            truth(r != null, "missing record " + s.partition + "@" + s.offset);
            truth(Arrays.equals(s.key, r.key()), "key at " + s.partition + "@" + s.offset);
            truth(Arrays.equals(s.value, r.value()), "value at " + s.partition + "@" + s.offset);
            eq(s.timestamp, r.timestamp(), "timestamp at " + s.partition + "@" + s.offset);
            eq(TimestampType.CREATE_TIME, r.timestampType(), "timestamp type");
            List<Header> hs = new ArrayList<>();
            r.headers().forEach(hs::add);
            eq(s.headers.size(), hs.size(), "header count at " + s.partition + "@" + s.offset);
            for (int i = 0; i < hs.size(); i++) {
                eq(s.headers.get(i).key(), hs.get(i).key(), "header key");
                truth(Arrays.equals(s.headers.get(i).value(), hs.get(i).value()), "header value");
            }
        }
        // offsets dense per partition from 0
        Map<Integer, List<Long>> offs = new TreeMap<>();
        for (Sent s : sent) offs.computeIfAbsent(s.partition, k -> new ArrayList<>()).add(s.offset);
        for (Map.Entry<Integer, List<Long>> e : offs.entrySet()) {
            List<Long> l = e.getValue();
            Collections.sort(l);
            for (int i = 0; i < l.size(); i++) eq((long) i, l.get(i), "dense offsets of partition " + e.getKey());
        }
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        String run = args.length > 1 ? args[1] : Long.toString(System.currentTimeMillis() % 100000);
        long t0 = (System.currentTimeMillis() / 1000 - 600) * 1000;

        try (Admin a = admin()) {
            check("admin_describe_cluster", () -> {
                DescribeClusterResult d = a.describeCluster();
                eq(1, d.nodes().get().size(), "nodes");
                truth(d.clusterId().get() != null, "cluster id");
                truth(d.controller().get() != null, "controller");
            });
            check("admin_describe_topics", () -> {
                createTopic(a, "jvm-desc-" + run, 3, Map.of());
                TopicDescription d = a.describeTopics(List.of("jvm-desc-" + run)).allTopicNames().get().get("jvm-desc-" + run);
                eq(3, d.partitions().size(), "partitions");
                for (TopicPartitionInfo p : d.partitions()) {
                    truth(p.leader() != null, "leader of " + p.partition());
                    eq(1, p.replicas().size(), "replicas");
                    eq(1, p.isr().size(), "isr");
                }
                truth(!d.isInternal(), "internal");
                truth(d.topicId() != null && !d.topicId().equals(Uuid.ZERO_UUID), "topic id");
            });
            check("admin_create_topic_errors", () -> {
                createTopic(a, "jvm-dup-" + run, 1, Map.of());
                Throwable e = cause(() -> a.createTopics(List.of(new NewTopic("jvm-dup-" + run, 1, (short) 1))).all());
                truth(e instanceof TopicExistsException, "create twice: " + e);
                e = cause(() -> a.createTopics(List.of(new NewTopic("jvm-bad/" + run, 1, (short) 1))).all());
                truth(e instanceof InvalidTopicException, "invalid name: " + e);
                e = cause(() -> a.createTopics(List.of(new NewTopic("jvm-rf3-" + run, 1, (short) 3))).all());
                truth(e instanceof InvalidReplicationFactorException, "rf 3: " + e);
                e = cause(() -> a.createTopics(List.of(new NewTopic("jvm-cfg-" + run, 1, (short) 1)
                        .configs(Map.of("cleanup.policy", "bogus")))).all());
                truth(e instanceof InvalidConfigurationException, "bad config: " + e);
            });
        }

        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            check("idempotent_roundtrip_" + codec, () -> {
                String topic = "jvm-rt-" + codec + "-" + run;
                try (Admin a = admin()) { createTopic(a, topic, 3, Map.of()); }
                List<Sent> sent;
                try (KafkaProducer<byte[], byte[]> p = producer(codec, Map.of())) {  // idempotent by default
                    sent = produceAll(p, topic, 3, 300, t0, codec);
                }
                String group = "jvm-g-" + codec + "-" + run;
                try (KafkaConsumer<byte[], byte[]> c = consumer(group, Map.of())) {
                    c.subscribe(List.of(topic));
                    List<ConsumerRecord<byte[], byte[]>> got = consumeUntil(c, sent.size(), 60000);
                    compare(sent, got);
                    eq(3, c.assignment().size(), "assigned partitions");
                    c.commitSync();
                    Map<TopicPartition, OffsetAndMetadata> committed = c.committed(c.assignment());
                    long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
                    eq((long) sent.size(), total, "committed offsets add up to the records");
                }
                // a new member of the same group resumes at the committed offsets: nothing left
                try (KafkaConsumer<byte[], byte[]> c = consumer(group, Map.of())) {
                    c.subscribe(List.of(topic));
                    long deadline = System.currentTimeMillis() + 30000;
                    while (c.assignment().isEmpty() && System.currentTimeMillis() < deadline)
                        c.poll(Duration.ofMillis(100)).forEach(r -> { throw new AssertionError("re-read " + r.offset()); });
                    for (TopicPartition tp : c.assignment())
                        eq(c.committed(Set.of(tp)).get(tp).offset(), c.position(tp), "resumed position of " + tp);
                }
            });
        }

        check("transactional_producer_init", () -> {
            Map<String, Object> extra = Map.of("transactional.id", "jvm-txn-" + run, "max.block.ms", "10000");
            try (KafkaProducer<byte[], byte[]> p = producer("none", extra)) {
                try {
                    p.initTransactions();
                    System.out.println("  note: initTransactions succeeded (the broker has transactions)");
                } catch (KafkaException e) {
                    System.out.println("  note: initTransactions refused: " + e);
                }
            }
        });

        check("consumer_group_two_members", () -> {
            String topic = "jvm-grp-" + run;
            try (Admin a = admin()) { createTopic(a, topic, 4, Map.of()); }
            List<Sent> sent;
            String group = "jvm-grp-g-" + run;
            Map<String, Object> extra = Map.of("max.poll.records", "20", "partition.assignment.strategy",
                    "org.apache.kafka.clients.consumer.CooperativeStickyAssignor");
            try (KafkaConsumer<byte[], byte[]> c1 = consumer(group, extra);
                 KafkaConsumer<byte[], byte[]> c2 = consumer(group, extra)) {
                c1.subscribe(List.of(topic));
                c2.subscribe(List.of(topic));
                // both members in the group, the partitions split between them, before reading
                long deadline = System.currentTimeMillis() + 60000;
                List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
                while (System.currentTimeMillis() < deadline) {
                    c1.poll(Duration.ofMillis(100)).forEach(got::add);
                    c2.poll(Duration.ofMillis(100)).forEach(got::add);
                    Set<TopicPartition> union = new HashSet<>(c1.assignment());
                    union.addAll(c2.assignment());
                    if (!c1.assignment().isEmpty() && !c2.assignment().isEmpty() && union.size() == 4) break;
                }
                truth(got.isEmpty(), "records before anything was produced");
                try (KafkaProducer<byte[], byte[]> p = producer("lz4", Map.of())) {
                    sent = produceAll(p, topic, 4, 400, t0, "grp");
                }
                deadline = System.currentTimeMillis() + 90000;
                while (got.size() < sent.size() && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> r : c1.poll(Duration.ofMillis(100))) got.add(r);
                    c1.commitSync();
                    for (ConsumerRecord<byte[], byte[]> r : c2.poll(Duration.ofMillis(100))) got.add(r);
                    c2.commitSync();
                }
                // after a rebalance a partition may be re-read from its committed offset: dedupe
                Map<String, ConsumerRecord<byte[], byte[]>> uniq = new LinkedHashMap<>();
                for (ConsumerRecord<byte[], byte[]> r : got) uniq.putIfAbsent(r.partition() + "@" + r.offset(), r);
                compare(sent, new ArrayList<>(uniq.values()));
                Set<TopicPartition> all = new HashSet<>(c1.assignment());
                all.addAll(c2.assignment());
                eq(4, all.size(), "partitions covered by the two members");
                truth(Collections.disjoint(c1.assignment(), c2.assignment()), "members share no partition");
                truth(!c1.assignment().isEmpty() && !c2.assignment().isEmpty(), "both members have partitions");
                try (Admin a = admin()) {
                    ConsumerGroupDescription d = a.describeConsumerGroups(List.of(group)).all().get().get(group);
                    eq(GroupState.STABLE, d.groupState(), "group state");
                    eq(2, d.members().size(), "members");
                    eq("cooperative-sticky", d.partitionAssignor(), "assignor");
                    Map<TopicPartition, OffsetAndMetadata> offs = a.listConsumerGroupOffsets(group)
                            .partitionsToOffsetAndMetadata().get();
                    eq(4, offs.size(), "committed partitions");
                    eq(400L, offs.values().stream().mapToLong(OffsetAndMetadata::offset).sum(), "committed total");
                    Throwable e = cause(() -> a.deleteConsumerGroups(List.of(group)).all());
                    truth(e instanceof GroupNotEmptyException, "delete a live group: " + e);
                }
            }
        });

        check("admin_offsets_configs_records", () -> {
            String topic = "jvm-adm-" + run;
            try (Admin a = admin()) {
                createTopic(a, topic, 2, Map.of("retention.ms", "3600000"));
                try (KafkaProducer<byte[], byte[]> p = producer("none", Map.of())) {
                    for (int i = 0; i < 10; i++)
                        p.send(new ProducerRecord<>(topic, 0, t0 + (i == 5 ? 100 : i), bytes("k" + i), bytes("v" + i))).get();
                }
                TopicPartition tp = new TopicPartition(topic, 0);
                eq(0L, a.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset(), "earliest");
                eq(10L, a.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset(), "latest");
                ListOffsetsResult.ListOffsetsResultInfo mx = a.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).partitionResult(tp).get();
                eq(5L, mx.offset(), "max timestamp offset");
                eq(t0 + 100, mx.timestamp(), "max timestamp");
                eq(3L, a.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(t0 + 3))).partitionResult(tp).get().offset(), "by time");
                eq(-1L, a.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(t0 + 101))).partitionResult(tp).get().offset(), "after all");

                ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                a.incrementalAlterConfigs(Map.of(res, List.of(
                        new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND),
                        new AlterConfigOp(new ConfigEntry("max.message.bytes", "65536"), AlterConfigOp.OpType.SET)))).all().get();
                long deadline = System.currentTimeMillis() + 10000;
                Config cfg;
                while (true) {
                    cfg = a.describeConfigs(List.of(res)).all().get().get(res);
                    if ("65536".equals(cfg.get("max.message.bytes").value()) || System.currentTimeMillis() > deadline) break;
                    Thread.sleep(50);
                }
                eq("delete,compact", cfg.get("cleanup.policy").value(), "cleanup.policy after APPEND");
                eq("65536", cfg.get("max.message.bytes").value(), "max.message.bytes");
                eq(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, cfg.get("retention.ms").source(), "retention.ms source");
                eq("3600000", cfg.get("retention.ms").value(), "retention.ms");

                DeletedRecords dr = a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp).get();
                eq(4L, dr.lowWatermark(), "low watermark");
                eq(4L, a.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset(), "earliest after delete");
                try (KafkaConsumer<byte[], byte[]> c = consumer(null, Map.of())) {
                    c.assign(List.of(tp));
                    c.seekToBeginning(List.of(tp));
                    List<ConsumerRecord<byte[], byte[]>> got = consumeUntil(c, 6, 30000);
                    eq(6, got.size(), "records after DeleteRecords");
                    eq(4L, got.get(0).offset(), "first offset after DeleteRecords");
                }

                a.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all().get();
                deadline = System.currentTimeMillis() + 10000;
                int n;
                try (KafkaConsumer<byte[], byte[]> c = consumer(null, Map.of())) {
                    while ((n = c.partitionsFor(topic).size()) < 4 && System.currentTimeMillis() < deadline) Thread.sleep(50);
                }
                eq(4, n, "partitions after CreatePartitions (consumer metadata)");

                Set<String> names = a.listTopics().names().get();
                truth(names.contains(topic), "listTopics");
                a.deleteTopics(List.of(topic)).all().get();
                deadline = System.currentTimeMillis() + 10000;
                while (a.listTopics().names().get().contains(topic) && System.currentTimeMillis() < deadline) Thread.sleep(50);
                truth(!a.listTopics().names().get().contains(topic), "deleted topic still listed");
            }
        });

        check("admin_groups", () -> {
            try (Admin a = admin()) {
                Collection<GroupListing> groups = a.listGroups().all().get();
                truth(groups.stream().anyMatch(g -> g.groupId().startsWith("jvm-g-none-" + run)), "listGroups lists our group");
                String group = "jvm-g-none-" + run;
                String topic = "jvm-rt-none-" + run;
                TopicPartition tp = new TopicPartition(topic, 0);
                a.alterConsumerGroupOffsets(group, Map.of(tp, new OffsetAndMetadata(1, "meta"))).all().get();
                OffsetAndMetadata om = a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().get(tp);
                eq(1L, om.offset(), "altered offset");
                eq("meta", om.metadata(), "altered metadata");
                a.deleteConsumerGroupOffsets(group, Set.of(tp)).all().get();
                truth(!a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().containsKey(tp), "offset deleted");
                a.deleteConsumerGroups(List.of(group)).all().get();
                Throwable e = cause(() -> a.deleteConsumerGroups(List.of(group)).all());
                truth(e instanceof GroupIdNotFoundException, "delete twice: " + e);
            }
        });

        System.out.printf("%d passed, %d failed%n", passed, failed);
        System.exit(failed == 0 ? 0 : 1);
    }
}
