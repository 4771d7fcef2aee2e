// Spark 3.5 (local[1]) reads one of zombi's Iceberg tables through Iceberg's JdbcCatalog on the
// broker's SQLite catalog file and compares every row with what was produced.
//
//   java [Spark's --add-opens] -cp 'LIB/*:CLASSES' SparkRead JDBC_URI WAREHOUSE TOPIC EXPECTED_JSONL [S3_ENDPOINT]
//
// With S3_ENDPOINT the warehouse is on S3 (path-style, us-east-1, keys from AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY) and is read through Iceberg's S3FileIO.
// EXPECTED_JSONL: one produced record a line, {"partition", "offset", "timestamp_ms", "key",
// "value", "headers": [[key, value], ...]} with bytes as hex and null for null. Every
// (partition, offset) must appear exactly once, with the same key, value (null and empty kept
// apart), timestamp and headers in order. Prints PASS/FAIL and "N passed, M failed".

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

public class SparkRead {
    static String hex(byte[] b) {
        if (b == null) return "null";
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    public static void main(String[] args) throws Exception {
        String uri = args[0], warehouse = args[1], topic = args[2];
        List<String> expected = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[3]))) {
            if (!line.isBlank()) expected.add(line.trim());
        }
        SparkSession.Builder builder = SparkSession.builder();
        if (args.length > 4) {
            String c = "spark.sql.catalog.zombi.";
            builder = builder.config(c + "io-impl", "org.apache.iceberg.aws.s3.S3FileIO")
                    .config(c + "s3.endpoint", args[4])
                    .config(c + "s3.path-style-access", "true")
                    .config(c + "client.region", "us-east-1")
                    .config(c + "s3.access-key-id", System.getenv("AWS_ACCESS_KEY_ID"))
                    .config(c + "s3.secret-access-key", System.getenv("AWS_SECRET_ACCESS_KEY"));
        }
        builder = builder.master("local[1]").appName("zombi-iceberg-read")
                .config("spark.ui.enabled", "false")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.sql.shuffle.partitions", "1")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
                .config("spark.sql.catalog.zombi", "org.apache.iceberg.spark.SparkCatalog")
                .config("spark.sql.catalog.zombi.uri", uri);
        if (uri.startsWith("http://") || uri.startsWith("https://")) {
            // zombi's own Iceberg REST catalog (http://HOST:PORT/iceberg)
            builder = builder.config("spark.sql.catalog.zombi.type", "rest");
        } else {
            builder = builder.config("spark.sql.catalog.zombi.catalog-impl", "org.apache.iceberg.jdbc.JdbcCatalog")
                    .config("spark.sql.catalog.zombi.jdbc.schema-version", "V1")
                    .config("spark.sql.catalog.zombi.warehouse", warehouse);
        }
        SparkSession spark = builder.getOrCreate();
        String suffix = System.getProperty("check.suffix", args.length > 4 ? "_s3" : "_local");
        int passed = 0, failed = 0;
        try {
            List<Row> rows = spark.sql("SELECT `partition`, `offset`, `timestamp`, key, value, headers FROM zombi.zombi.`"
                    + topic + "` ORDER BY `partition`, `offset`").collectAsList();
            // the rows in the same JSON form as the expectation (keys in the same order)
            List<String> got = new ArrayList<>();
            for (Row r : rows) {
                StringBuilder sb = new StringBuilder();
                sb.append("{\"partition\": ").append(r.getInt(0)).append(", \"offset\": ").append(r.getLong(1));
                java.sql.Timestamp ts = r.isNullAt(2) ? null : r.getTimestamp(2);
                sb.append(", \"timestamp_ms\": ").append(ts == null ? "null" : Long.toString(ts.getTime()));
                sb.append(", \"key\": ").append(q(r.isNullAt(3) ? null : (byte[]) r.get(3)));
                sb.append(", \"value\": ").append(q(r.isNullAt(4) ? null : (byte[]) r.get(4)));
                sb.append(", \"headers\": [");
                List<Row> hs = r.getList(5);
                for (int i = 0; i < hs.size(); i++) {
                    Row h = hs.get(i);
                    if (i > 0) sb.append(", ");
                    sb.append("[\"").append(h.getString(0)).append("\", ")
                            .append(q(h.isNullAt(1) ? null : (byte[]) h.get(1))).append("]");
                }
                sb.append("]}");
                got.add(sb.toString());
            }
            if (got.equals(expected)) {
                System.out.printf("PASS spark_reads_every_partition_offset%s (%d rows of %s)%n", suffix, got.size(), topic);
                passed++;
            } else {
                failed++;
                System.out.printf("FAIL spark_reads_every_partition_offset%s: %d rows, %d expected%n", suffix, got.size(), expected.size());
                for (int i = 0; i < Math.max(got.size(), expected.size()); i++) {
                    String g = i < got.size() ? got.get(i) : "<none>";
                    String e = i < expected.size() ? expected.get(i) : "<none>";
                    if (!g.equals(e)) {
                        System.out.println("  first difference at row " + i + ":\n    spark:    " + g + "\n    produced: " + e);
                        break;
                    }
                }
            }
            long n = spark.sql("SELECT count(*) FROM zombi.zombi.`" + topic + "` WHERE `offset` >= 10").first().getLong(0);
            long want = expected.stream().filter(l -> Long.parseLong(l.replaceAll(".*\"offset\": (\\d+),.*", "$1")) >= 10).count();
            if (n == want) {
                System.out.printf("PASS spark_filter_on_offset%s (%d rows)%n", suffix, n);
                passed++;
            } else {
                System.out.printf("FAIL spark_filter_on_offset%s: %d rows, %d expected%n", suffix, n, want);
                failed++;
            }
        } catch (Exception e) {
            failed++;
            System.out.println("FAIL spark_reads_every_partition_offset" + suffix + ": " + e);
            e.printStackTrace(System.out);
        } finally {
            spark.stop();
        }
        System.out.printf("%d passed, %d failed%n", passed, failed);
        System.exit(failed == 0 ? 0 : 1);
    }

    static String q(byte[] b) {
        return b == null ? "null" : "\"" + hex(b) + "\"";
    }
}
