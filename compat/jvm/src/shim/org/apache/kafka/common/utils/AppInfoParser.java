// connect-file 4.3.1 (the newest FileStreamSource/Sink on Maven Central here) calls
// org.apache.kafka.common.utils.AppInfoParser.getVersion(), which Kafka 4.4 moved to
// org.apache.kafka.common.utils.internals. This class forwards that one call, so Kafka's own file
// connectors run in a 4.4 Connect worker (compat/jvm/connect_check.sh puts it on the classpath).
package org.apache.kafka.common.utils;

public final class AppInfoParser {
    private AppInfoParser() {}

    public static String getVersion() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getVersion();
    }
}
