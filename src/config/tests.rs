use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use clap::parser::ValueSource;

use super::definitions::{self, DEFINITIONS, Scope};
use super::security::InterBrokerSasl;
use super::*;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    Config::try_parse_from(std::iter::once("zombi").chain(args.iter().copied()))
}

/// A TOML file holding `text`, kept while the returned guard lives.
fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

/// Where the value of `--flag` came from, and what it was, after parsing `args`.
fn source_of(args: &[&str], flag: &str) -> (Option<ValueSource>, Option<String>) {
    let (cli, matches) = matches_from(std::iter::once("zombi").chain(args.iter().copied())).expect("parses");
    let arg = cli.get_arguments().find(|arg| arg.get_long() == Some(flag)).expect("the flag exists");
    let id = arg.get_id().as_str();
    let raw = matches.try_get_raw(id).ok().flatten().and_then(|mut values| values.next());
    (matches.value_source(id), raw.map(|value| value.to_string_lossy().into_owned()))
}

#[test]
fn flags_win_over_file_and_defaults_fill_the_rest() {
    let toml = file("num-partitions = 2\nnode-id = 7\n");
    let path = toml.path().to_str().unwrap();
    let config = parse(&["--config", path, "--num-partitions", "4"]).expect("valid");
    assert_eq!(config.log.num_partitions, 4);
    assert_eq!(config.node_id, 7);
    assert_eq!(config.kafka_advertised_host, "127.0.0.1");
    assert_eq!(config.kafka_advertised_port, 9092);
}

#[test]
fn file_uses_kafka_names() {
    let toml = file("\"socket.request.max.bytes\" = 2048\ndata-dir = \"/x\"");
    let config = parse(&["--config", toml.path().to_str().unwrap()]).expect("parses");
    assert_eq!(config.network.socket_request_max_bytes, 2048);
    assert_eq!(config.data_dir, PathBuf::from("/x"));
    let bogus = file("bogus = 1");
    assert!(parse(&["--config", bogus.path().to_str().unwrap()]).is_err());
}

/// Every setting's default, as README's table states it, is the table's; the defaults resolve.
#[test]
fn defaults_resolve_as_readme_states_them() {
    let config = parse(&[]).expect("the defaults are valid");
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(
        (config.log.retention_ms, config.log.segment_bytes, config.log.roll_ms),
        (604_800_000, 64 << 20, 600_000)
    );
    assert_eq!(config.groups.offsets_retention_ms(), 10_080 * 60_000);
    assert_eq!(config.network.requests_in_flight_per_connection_max, 64);
    for (flag, readme_default) in readme_flags() {
        let definition = definitions::setting_of(&flag).unwrap_or_else(|| panic!("README's --{flag} has no row"));
        let literal =
            readme_default.strip_prefix('`').and_then(|d| d.strip_suffix('`')).filter(|d| !d.contains(['<', '`']));
        if let Some(literal) = literal {
            assert_eq!(definition.default, Some(literal), "--{flag}");
        }
    }
}

/// README's flag tables: (flag, default cell).
fn readme_flags() -> Vec<(String, String)> {
    include_str!("../../README.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `--"))
        .map(|rest| {
            let (flag, rest) = rest.split_once('`').expect("| `--flag` | default | meaning |");
            let default = rest.trim_start_matches(" |").split(" | ").next().unwrap_or("").trim();
            (flag.to_string(), default.to_string())
        })
        .collect()
}

/// A value each setting accepts.
fn sample(flag: &str) -> String {
    let given = match flag {
        "cluster-id" => "zombi-cluster",
        "kafka-advertised" => "kafka.local:19092",
        "object-store" | "wal-store" => "file:///var/tmp/objects",
        "s3-endpoint" => "http://127.0.0.1:9000",
        "s3-region" => "eu-west-1",
        "iceberg-catalog" => "sqlite:///var/tmp/catalog.db",
        "iceberg-warehouse" => "file:///var/tmp/warehouse",
        "coordinator" => "postgres://zombi:zombi@127.0.0.1:5432/zombi",
        "broker-rack" => "rack-a",
        "listeners" => "PLAINTEXT://127.0.0.1:19092,SASL_PLAINTEXT://127.0.0.1:19093",
        "advertised-listeners" => "PLAINTEXT://kafka.local:19092",
        "inter-broker-listener-name" => "PLAINTEXT",
        "inter-broker-sasl-username" => "admin",
        "ssl-cert-file" => "/etc/zombi/server.crt",
        "ssl-key-file" => "/etc/zombi/server.key",
        "ssl-ca-file" => "/etc/zombi/ca.crt",
        "bootstrap-admin" => "admin",
        "super-users" => "User:admin;User:ops",
        "oauthbearer-jwks-file" => "/etc/zombi/jwks.json",
        "oauthbearer-jwks-endpoint-url" => "https://idp.example/realms/zombi/protocol/openid-connect/certs",
        "oauthbearer-issuer" => "https://idp.example",
        "oauthbearer-audience" => "zombi",
        "oauthbearer-token-endpoint-url" => "file:///etc/zombi/broker.jwt",
        "http-auth" => "basic",
        _ => definitions::setting_of(flag).and_then(|definition| definition.default).expect("a default"),
    };
    given.to_string()
}

/// The flags a flag's sample value needs beside it to resolve.
fn companions(flag: &str) -> &'static [&'static str] {
    match flag {
        "coordinator" => &["--wal-store", "file:///var/tmp/wal"],
        "advertised-listeners" => &["--listeners", "PLAINTEXT://127.0.0.1:9092"],
        "oauthbearer-token-endpoint-url" => &[
            "--sasl-mechanism-inter-broker-protocol",
            "OAUTHBEARER",
            "--sasl-enabled-mechanisms",
            "OAUTHBEARER",
            "--oauthbearer-jwks-file",
            "/etc/zombi/jwks.json",
        ],
        _ => &[],
    }
}

/// Every flag README lists (the cluster flags too) is a flag that parses and resolves, read from
/// the command line.
#[test]
fn every_readme_flag_parses() {
    let flags = readme_flags();
    assert_eq!(flags.len(), 88, "README lists every flag but --config");
    for (flag, _) in flags {
        let value = sample(&flag);
        let given = format!("--{flag}={value}");
        let mut args = vec![given.as_str()];
        args.extend(companions(&flag));
        parse(&args).unwrap_or_else(|error| panic!("--{flag}: {error}"));
        assert_eq!(source_of(&args, &flag), (Some(ValueSource::CommandLine), Some(value)), "--{flag}");
    }
}

/// The TOML keys accepted, exactly as before the table: each flag's name, Kafka's name instead
/// for the settings README lists under Kafka's names, both for the cluster's `broker.*`.
const FILE_KEYS: &[&str] = &[
    "data-dir",
    "node-id",
    "cluster-id",
    "kafka-listen",
    "kafka-advertised",
    "http-listen",
    "http-request-max-bytes",
    "http-connections-max",
    "http-header-read-timeout-ms",
    "http-idle-timeout-ms",
    "record-batch-decompressed-max-bytes",
    "auto-create-topics",
    "num-partitions",
    "durability",
    "fsync-interval-ms",
    "socket.request.max.bytes",
    "message.max.bytes",
    "log.retention.ms",
    "log.retention.bytes",
    "retention-check-interval-ms",
    "connections-max",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "offsets.retention.minutes",
    "log-format",
    "object-store",
    "s3-endpoint",
    "s3-region",
    "log.segment.bytes",
    "log.roll.ms",
    "log.local.retention.ms",
    "log.local.retention.bytes",
    "remote.storage.enable",
    "remote.log.manager.task.interval.ms",
    "remote-fetch-cache-bytes",
    "memory-max-bytes",
    "iceberg-catalog",
    "iceberg-warehouse",
    "iceberg-partition-by",
    "iceberg-namespace",
    "iceberg-commit-interval-ms",
    "iceberg-target-file-bytes",
    "iceberg-enable",
    "iceberg-compaction-interval-ms",
    "iceberg-compaction-min-files",
    "iceberg-snapshot-max-age-ms",
    "iceberg-orphan-min-age-ms",
    "wal-store",
    "wal-interval-ms",
    "wal-bytes-max",
    "wal-stream-roll-ms",
    "coordinator",
    "broker-rack",
    "broker.rack",
    "broker-session-timeout-ms",
    "broker.session.timeout.ms",
    "broker-heartbeat-interval-ms",
    "broker.heartbeat.interval.ms",
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "listeners",
    "advertised-listeners",
    "advertised.listeners",
    "inter-broker-listener-name",
    "inter.broker.listener.name",
    "sasl-mechanism-inter-broker-protocol",
    "sasl.mechanism.inter.broker.protocol",
    "inter-broker-sasl-username",
    "ssl-cert-file",
    "ssl-key-file",
    "ssl-ca-file",
    "ssl-client-auth",
    "ssl.client.auth",
    "ssl-principal-mapping-rules",
    "ssl.principal.mapping.rules",
    "sasl-enabled-mechanisms",
    "sasl.enabled.mechanisms",
    "connections-max-reauth-ms",
    "connections.max.reauth.ms",
    "bootstrap-admin",
    "authorizer",
    "super-users",
    "super.users",
    "allow-everyone-if-no-acl-found",
    "allow.everyone.if.no.acl.found",
    "oauthbearer-jwks-file",
    "oauthbearer-jwks-endpoint-url",
    "sasl.oauthbearer.jwks.endpoint.url",
    "oauthbearer-jwks-endpoint-refresh-ms",
    "sasl.oauthbearer.jwks.endpoint.refresh.ms",
    "oauthbearer-issuer",
    "oauthbearer-audience",
    "oauthbearer-sub-claim-name",
    "sasl.oauthbearer.sub.claim.name",
    "oauthbearer-token-endpoint-url",
    "sasl.oauthbearer.token.endpoint.url",
    "http-auth",
    "http-metrics-auth",
    "http-tls",
    "quota.window.num",
    "quota.window.size.seconds",
    "producer.id.expiration.ms",
];

/// The file takes exactly those keys, each sets its setting, and the Kafka names README lists are
/// among them; a flag's name where the file takes Kafka's is refused, as before.
#[test]
fn every_file_key_sets_its_setting() {
    let table: BTreeSet<&str> = DEFINITIONS.iter().flat_map(|definition| definition.file_keys()).collect();
    assert_eq!(table, FILE_KEYS.iter().copied().collect::<BTreeSet<_>>());
    for key in FILE_KEYS {
        let flag = definitions::flag_of_file_key(key).expect("a setting");
        let value = sample(flag);
        let literal = match value.parse::<i64>() {
            Ok(number) => number.to_string(),
            Err(_) if value == "true" || value == "false" => value.clone(),
            Err(_) => format!("{value:?}"),
        };
        let toml = file(&format!("\"{key}\" = {literal}\n"));
        let path = toml.path().to_str().unwrap();
        let mut args = vec!["--config", path];
        args.extend(companions(flag));
        parse(&args).unwrap_or_else(|error| panic!("{key}: {error}"));
        assert_eq!(source_of(&args, flag), (Some(ValueSource::DefaultValue), Some(value)), "{key}");
    }
    let readme = include_str!("../../README.md");
    let paragraph = readme.split("In the TOML file the keys").nth(1).expect("README's TOML paragraph");
    let paragraph = paragraph.split("\n\n").next().unwrap_or_default();
    // The Kafka names are written `"log.retention.ms"`.
    let quoted: Vec<&str> =
        paragraph.split("`\"").skip(1).filter_map(|rest| rest.split_once('"').map(|(key, _)| key)).collect();
    assert!(quoted.len() >= 10, "{quoted:?}");
    for key in quoted {
        assert!(FILE_KEYS.contains(&key), "README names {key}");
    }
    for refused in ["log-retention-ms", "socket-request-max-bytes", "auto.create.topics.enable", "config"] {
        let toml = file(&format!("\"{refused}\" = 1\n"));
        assert!(parse(&["--config", toml.path().to_str().unwrap()]).is_err(), "{refused}");
    }
}

/// Each flag is a row of the table and each row with a flag is a flag, with the environment
/// variable named after it; clap ids are unique (clap checks that only in debug builds).
#[test]
fn the_flags_are_the_table() {
    let cli = command();
    let mut ids = BTreeSet::new();
    let mut flags = BTreeSet::new();
    for arg in cli.get_arguments() {
        let Some(flag) = arg.get_long() else { continue };
        if matches!(flag, "help" | "version") {
            continue;
        }
        assert!(ids.insert(arg.get_id().as_str().to_string()), "duplicate id {}", arg.get_id());
        let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
        let expected = format!("ZOMBI_{}", flag.to_uppercase().replace('-', "_"));
        assert_eq!(env.as_deref(), Some(expected.as_str()), "--{flag}");
        if flag != "config" {
            let definition = definitions::setting_of(flag).expect("a row");
            assert_eq!(definition.env().as_deref(), Some(expected.as_str()));
            assert!(!definition.doc.is_empty(), "--{flag} has its help line");
        }
        flags.insert(flag.to_string());
    }
    for definition in DEFINITIONS {
        if let Some(flag) = definition.flag {
            assert!(flags.contains(flag), "the row of --{flag} has no flag");
            assert_eq!(definition.scope, Scope::Broker);
        }
        if let Some(default) = definition.default {
            assert!(definition.valid.check(default).is_ok(), "{}: {default}", definition.name());
        }
    }
}

/// A setting's value is checked by its row wherever it comes from, with the rules AlterConfigs
/// applies to the same Kafka name.
#[test]
fn values_are_checked_by_their_rows() {
    for bad in [
        &["--log-segment-bytes", "13"][..],
        &["--log-retention-ms=-5"],
        &["--num-partitions", "10001"],
        &["--node-id=-1"],
        &["--socket-request-max-bytes", "100"],
        &["--log-format", "yaml"],
        &["--http-connections-max", "0"],
        &["--message-max-bytes", "10"],
        &["--durability", "periodic", "--fsync-interval-ms", "0"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    let toml = file("\"log.roll.ms\" = 0\n");
    assert!(parse(&["--config", toml.path().to_str().unwrap()]).is_err());
    assert!(parse(&["--wal-interval-ms", "0"]).is_ok(), "checked only with --wal-store");
    assert!(parse(&["--wal-store", "file:///w", "--wal-interval-ms", "0"]).is_err());
}

#[test]
fn iceberg_defaults_live_in_the_data_dir_and_bad_catalogs_are_refused() {
    use super::iceberg::{CatalogLocation, PartitionBy};
    let config = parse(&["--data-dir", "/d"]).expect("valid");
    assert_eq!(config.iceberg.catalog, CatalogLocation::Sqlite(PathBuf::from("/d/iceberg/catalog.db")));
    assert_eq!(config.iceberg.warehouse, "file:///d/iceberg/warehouse");
    assert_eq!((config.iceberg.namespace.as_str(), config.iceberg.commit_interval_ms), ("zombi", 60_000));
    assert_eq!(config.iceberg.partition_by, PartitionBy::Day);
    for catalog in ["mysql://x", "postgres://", "postgres:///db", "http://", "https://u:p@rest/", "http://h?uri=x"] {
        assert!(parse(&["--iceberg-catalog", catalog]).is_err(), "{catalog}");
    }
    for warehouse in ["s3://", "http://x/w", "/relative/without/scheme", "file://relative"] {
        assert!(parse(&["--iceberg-warehouse", warehouse]).is_err(), "{warehouse}");
    }
}

/// A REST catalog: the URL before `?` is the catalog's base URI, the query its properties;
/// `--iceberg-warehouse` is its `warehouse` property; secrets come from the environment too,
/// and are never shown.
#[test]
fn rest_catalogs_take_their_properties_from_the_url() {
    use super::iceberg::CatalogLocation;
    let url = "https://catalog.example:8181/api/catalog/?scope=PRINCIPAL_ROLE%3AALL&header.X-Iceberg-Access-Delegation=vended-credentials&credential=id%3As3cr3t";
    let config = parse(&["--iceberg-catalog", url, "--iceberg-warehouse", "lake"]).expect("valid");
    let CatalogLocation::Rest { uri, properties } = &config.iceberg.catalog else { panic!("a REST catalog") };
    assert_eq!(uri, "https://catalog.example:8181/api/catalog");
    let expected = [
        ("credential", "id:s3cr3t"),
        ("header.X-Iceberg-Access-Delegation", "vended-credentials"),
        ("scope", "PRINCIPAL_ROLE:ALL"),
        ("warehouse", "lake"),
    ];
    assert_eq!(properties, &expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    assert_eq!(config.iceberg.warehouse, "lake");
    for text in [config.iceberg.catalog.to_string(), format!("{:?}", config.iceberg)] {
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("credential=***"), "{text}");
    }
    assert!(parse(&["--iceberg-catalog", "http://h:1?warehouse=a", "--iceberg-warehouse", "b"]).is_err());
    let plain = parse(&["--iceberg-catalog", "http://h:1?warehouse=s3%3A%2F%2Fw"]).expect("valid");
    assert_eq!(plain.iceberg.warehouse, "s3://w");
    let from_env = CatalogLocation::parse("http://h:1").unwrap().with_rest_secrets(Some("a:b".into()), None);
    let CatalogLocation::Rest { properties, .. } = from_env else { panic!("a REST catalog") };
    assert_eq!(properties.get("credential").map(String::as_str), Some("a:b"));
}

#[test]
fn postgres_catalogs_never_show_their_password() {
    use super::iceberg::CatalogLocation;
    for url in ["postgres://zombi:s3cr3t@postgres:5432/zombi", "postgresql://zombi:s3cr3t@db/zombi?sslmode=disable"] {
        let config = parse(&["--iceberg-catalog", url]).expect("valid");
        assert_eq!(config.iceberg.catalog, CatalogLocation::Postgres(url.into()));
        assert_eq!(config.iceberg.catalog.uri(), url, "sqlx gets the URL as given");
        let shown = [config.iceberg.catalog.to_string(), format!("{:?}", config.iceberg), format!("{config:?}")];
        for text in shown {
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(text.contains("zombi:***@"), "{text}");
        }
    }
    let location = CatalogLocation::parse("postgres://u@h/db?password=p%40ss&application_name=z").unwrap();
    assert_eq!(location.to_string(), "postgres://u@h/db?password=***&application_name=z");
    assert_eq!(CatalogLocation::parse("postgres://h:5432/db").unwrap().to_string(), "postgres://h:5432/db");
    let odd = CatalogLocation::parse("postgres://u:pa/ss@w@ord@h:5432/db").unwrap().to_string();
    assert_eq!(odd, "postgres://u:***@h:5432/db");
    let refused = CatalogLocation::parse("mysql://u:hidden@h/db").unwrap_err();
    assert!(!refused.contains("hidden"), "{refused}");
}

#[test]
fn the_warehouse_follows_an_s3_object_store() {
    let s3 = |object_store: &str, warehouse: Option<&str>| {
        let mut args = vec!["--object-store", object_store, "--s3-endpoint", "http://127.0.0.1:9000"];
        if let Some(warehouse) = warehouse {
            args.extend(["--iceberg-warehouse", warehouse]);
        }
        parse(&args).expect("valid").iceberg
    };
    assert_eq!(s3("s3://logs/prod/", None).warehouse, "s3://logs/prod/iceberg/warehouse");
    assert_eq!(s3("s3://logs", None).warehouse, "s3://logs/iceberg/warehouse");
    assert_eq!(s3("s3://logs", None).s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s3("s3://logs", Some("s3://lake/tables/")).warehouse, "s3://lake/tables");
    assert_eq!(s3("s3://logs", Some("file:///w")).warehouse, "file:///w");
    let local = s3("file:///objects", None).warehouse;
    assert!(local.starts_with("file:///") && local.ends_with("/data/iceberg/warehouse"), "{local}");
}

#[test]
fn partition_specs_parse_by_name() {
    use super::iceberg::PartitionBy;
    let by = |text: &str| parse(&["--iceberg-partition-by", text]).map(|c| c.iceberg.partition_by);
    let named = [
        ("day", PartitionBy::Day),
        ("hour", PartitionBy::Hour),
        ("month", PartitionBy::Month),
        ("partition", PartitionBy::Partition),
        ("none", PartitionBy::None),
    ];
    for (text, expected) in named {
        assert_eq!(by(text).expect(text), expected);
    }
    for bad in ["", "Day", "week", "day(timestamp)"] {
        assert!(by(bad).is_err(), "{bad:?}");
    }
    let toml = file("iceberg-partition-by = \"hour\"");
    let config = parse(&["--config", toml.path().to_str().unwrap()]).expect("parses");
    assert_eq!(config.iceberg.partition_by, PartitionBy::Hour);
}

/// Cluster mode needs a write-ahead log (no acknowledged record on one disk only); its
/// Iceberg tables are shared: the catalog is the coordinator's PostgreSQL and the warehouse
/// is in the shared object store, unless set; no password shows.
#[test]
fn cluster_mode_needs_the_write_ahead_log_and_shares_its_tables() {
    let coordinator = "postgres://z:hidden@127.0.0.1:5432/z";
    assert!(parse(&["--coordinator", coordinator]).is_err());
    let cluster = ["--coordinator", coordinator, "--wal-store", "file:///w", "--object-store", "file:///shared/bucket"];
    let config = parse(&cluster).expect("valid");
    assert!(config.iceberg.enable);
    assert_eq!(config.iceberg.catalog.uri(), "postgres://z:hidden@127.0.0.1:5432/z");
    assert_eq!(config.iceberg.warehouse, "file:///shared/bucket/iceberg/warehouse");
    assert_eq!(config.network.requests_in_flight_per_connection_max, 1024);
    assert!(!format!("{config:?}").contains("hidden"));
    let own_catalog = [&cluster[..], &["--iceberg-catalog", "sqlite:///c.db"]].concat();
    let config = parse(&own_catalog).expect("valid");
    assert!(config.iceberg.catalog.uri().starts_with("sqlite:///c.db"));
    let single = parse(&[]).expect("valid");
    assert!(single.iceberg.enable && single.coordinator.is_none() && single.wal.is_none());
}

#[test]
fn advertised_rejects_unspecified_and_bad_ports() {
    let listen = SocketAddr::from(([0, 0, 0, 0], 9092));
    assert!(advertised_address(listen, Some("0.0.0.0:9092".into())).is_err());
    assert!(advertised_address(listen, Some("host:0".into())).is_err());
    assert!(advertised_address(listen, Some("host".into())).is_err());
    assert_eq!(
        advertised_address(listen, Some("kafka.local:19092".into())).expect("ok"),
        ("kafka.local".into(), 19092)
    );
}

/// DescribeConfigs lists the broker's configs in the order it always has, read-only where
/// AlterConfigs cannot set them, with Kafka's types (the types once reported for
/// `min.insync.replicas`, `default.replication.factor`, `offsets.retention.minutes`,
/// `socket.request.max.bytes` and `group.*.ms` were not Kafka's: the differential harness).
#[test]
fn broker_configs_are_described_with_kafkas_types() {
    let config = parse(&["--durability", "periodic", "--fsync-interval-ms", "20", "--node-id", "3"]).expect("valid");
    let described = definitions::described_broker_configs(&config, &BTreeMap::new());
    let names: Vec<&str> = described.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "advertised.listeners",
            "inter.broker.listener.name",
            "sasl.mechanism.inter.broker.protocol",
            "auto.create.topics.enable",
            "broker.id",
            "log.retention.bytes",
            "log.retention.ms",
            "log.segment.bytes",
            "log.roll.ms",
            "log.local.retention.bytes",
            "log.local.retention.ms",
            "log.flush.interval.messages",
            "log.flush.interval.ms",
            "message.max.bytes",
            "node.id",
            "num.partitions",
            "socket.request.max.bytes",
            "quota.window.num",
            "quota.window.size.seconds",
            "group.initial.rebalance.delay.ms",
            "group.min.session.timeout.ms",
            "group.max.session.timeout.ms",
            "offsets.retention.minutes",
            "transaction.max.timeout.ms",
            "transactional.id.expiration.ms",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "default.replication.factor",
            "min.insync.replicas",
            "compression.type",
            "log.cleanup.policy",
            "log.message.timestamp.type",
            "unclean.leader.election.enable",
            "delete.topic.enable",
            "background.threads",
            "num.io.threads",
            "num.network.threads",
            "producer.id.expiration.ms",
            "connections.max.reauth.ms",
        ]
    );
    let value = |name: &str| described.iter().find(|entry| entry.name == name).map(|entry| entry.value.as_str());
    assert_eq!(value("log.flush.interval.ms"), Some("20"));
    assert_eq!(value("log.flush.interval.messages"), Some("9223372036854775807"));
    assert_eq!(value("broker.id"), Some("3"));
    assert_eq!(value("advertised.listeners"), Some("PLAINTEXT://127.0.0.1:9092"));
    let dynamic: Vec<&str> =
        described.iter().filter(|entry| !entry.read_only).map(|entry| entry.name.as_str()).collect();
    assert_eq!(dynamic.len(), 17, "{dynamic:?}");
    let types = [
        ("advertised.listeners", 7),
        ("auto.create.topics.enable", 1),
        ("broker.id", 3),
        ("log.segment.bytes", 3),
        ("log.roll.ms", 5),
        ("socket.request.max.bytes", 3),
        ("quota.window.num", 3),
        ("quota.window.size.seconds", 3),
        ("group.initial.rebalance.delay.ms", 3),
        ("group.min.session.timeout.ms", 3),
        ("group.max.session.timeout.ms", 3),
        ("offsets.retention.minutes", 3),
        ("default.replication.factor", 3),
        ("min.insync.replicas", 3),
        ("log.cleanup.policy", 7),
        ("sasl.kerberos.ticket.renew.jitter", 6),
        ("max.connections", 3),
        ("producer.id.expiration.ms", 3),
        ("connections.max.reauth.ms", 5),
    ];
    for (name, ty) in types {
        assert_eq!(definitions::described_type(Scope::Broker, name), ty, "{name}");
    }
    assert_eq!(definitions::described_type(Scope::Topic, "min.insync.replicas"), 3);
    assert_eq!(definitions::described_type(Scope::Topic, "follower.replication.throttled.replicas"), 7);
    assert_eq!(definitions::described_type(Scope::Group, "streams.num.standby.replicas"), 3);
}

/// Each described broker config says where its value comes from, most specific first, as Kafka's
/// synonyms do: AlterConfigs' value, then the value the broker runs with (every setting zombi
/// has is static), then the default; configs zombi has no setting for come from the default.
/// The source is the first synonym's.
#[test]
fn broker_configs_list_their_synonyms_most_specific_first() {
    use definitions::Source::{Default, DynamicBroker, DynamicDefaultBroker, StaticBroker};
    let config = parse(&["--log-segment-bytes", "1048576"]).expect("valid");
    let dynamic = BTreeMap::from([("log.roll.ms".to_string(), "7000".to_string())]);
    let described = definitions::described_broker_configs(&config, &dynamic);
    let synonyms = |name: &str| {
        let entry = described.iter().find(|entry| entry.name == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!((entry.value.as_str(), entry.source), (entry.synonyms[0].value.as_str(), entry.synonyms[0].source));
        entry.synonyms.iter().map(|s| (s.name.as_str(), s.value.as_str(), s.source)).collect::<Vec<_>>()
    };
    assert_eq!(
        synonyms("log.segment.bytes"),
        [("log.segment.bytes", "1048576", StaticBroker), ("log.segment.bytes", "67108864", Default)]
    );
    assert_eq!(
        synonyms("log.roll.ms"),
        [
            ("log.roll.ms", "7000", DynamicBroker),
            ("log.roll.ms", "600000", StaticBroker),
            ("log.roll.ms", "600000", Default)
        ]
    );
    assert_eq!(synonyms("log.cleanup.policy"), [("log.cleanup.policy", "delete", Default)]);
    assert_eq!(synonyms("broker.id"), [("broker.id", "0", StaticBroker)]);
    assert_eq!(described.last().map(|entry| entry.name.as_str()), Some("log.roll.ms"), "dynamic ones come last");

    // The cluster-wide default lists only what AlterConfigs set, as Kafka does.
    assert!(definitions::described_cluster_defaults(&BTreeMap::new()).is_empty());
    let defaults = definitions::described_cluster_defaults(&dynamic);
    assert_eq!(defaults.len(), 1);
    assert_eq!((defaults[0].name.as_str(), defaults[0].source), ("log.roll.ms", DynamicDefaultBroker));
}

/// A topic config's synonyms below the topic are its broker config's (Kafka's
/// `ServerTopicConfigSynonyms`), or Kafka's default where zombi has no such broker config.
#[test]
fn topic_configs_have_their_broker_configs_as_synonyms() {
    use definitions::Source::{Default, StaticBroker};
    let config = parse(&[]).expect("valid");
    let synonyms = |name: &str| {
        definitions::topic_synonyms(&config, &BTreeMap::new(), name)
            .into_iter()
            .map(|s| (s.name, s.value, s.source))
            .collect::<Vec<_>>()
    };
    let owned = |name: &str, value: &str, source| (name.to_string(), value.to_string(), source);
    assert_eq!(synonyms("cleanup.policy"), [owned("log.cleanup.policy", "delete", Default)]);
    assert_eq!(
        synonyms("max.message.bytes"),
        [owned("message.max.bytes", "1048588", StaticBroker), owned("message.max.bytes", "1048588", Default)]
    );
    assert_eq!(synonyms("delete.retention.ms"), [owned("log.cleaner.delete.retention.ms", "86400000", Default)]);
    assert!(synonyms("remote.storage.enable").is_empty(), "Kafka has no broker synonym for it");
}

/// The topic configs Kafka 4 removed are still accepted (older clients set them) but no longer
/// described, as Kafka 4 lists them no more.
#[test]
fn topic_configs_removed_in_kafka_4_are_accepted_not_described() {
    for name in ["message.format.version", "message.downconversion.enable", "message.timestamp.difference.max.ms"] {
        assert!(!definitions::topic_config_names().any(|listed| listed == name), "{name} is not described");
        assert!(definitions::kafka_config(Scope::Topic, name).is_some(), "{name} is accepted");
    }
    assert!(definitions::validate(Scope::Topic, "message.format.version", "0.10.0").is_ok());
    assert!(definitions::validate(Scope::Topic, "message.downconversion.enable", "maybe").is_err());
}

/// `--memory-max-bytes` bounds the buffers that grow with load: the default shares out at most
/// itself (queued requests count twice), a smaller budget shrinks each share, and
/// `--remote-fetch-cache-bytes` can only lower its own.
#[test]
fn the_memory_budget_bounds_the_buffers() {
    let shared = |config: &Config| {
        config.log.memtables_total_bytes
            + config.log.block_cache_bytes
            + 2 * config.network.queued_request_bytes_max
            + config.tier.fetch_cache_bytes
            + config.tier.upload_bytes_max
    };
    let default = parse(&[]).expect("defaults");
    assert_eq!(default.memory_max_bytes, 256 << 20);
    assert!(shared(&default) <= default.memory_max_bytes, "{}", shared(&default));
    assert_eq!(default.log.memtables_total_bytes, 96 << 20);
    assert_eq!(default.log.memtable_bytes * default.log.memtables_max as usize, 96 << 20);
    assert!(default.log.group_commit_bytes_max <= default.network.queued_request_bytes_max);

    let small = parse(&["--memory-max-bytes", &(64u64 << 20).to_string()]).expect("64 MiB");
    assert_eq!(
        (small.log.memtables_total_bytes, small.log.block_cache_bytes, small.network.queued_request_bytes_max),
        (24 << 20, 8 << 20, 8 << 20)
    );
    assert_eq!((small.tier.fetch_cache_bytes, small.tier.upload_bytes_max), (8 << 20, 8 << 20));
    assert!(small.log.group_commit_bytes_max <= 4 << 20);

    let capped = parse(&["--remote-fetch-cache-bytes", "1048576"]).expect("a small remote cache");
    assert_eq!(capped.tier.fetch_cache_bytes, 1 << 20);
    assert!(parse(&["--memory-max-bytes", "1048576"]).is_err(), "below the 64 MiB floor");
}

/// Kafka's listener syntax: each listener's protocol, bind address and advertised address; the
/// first listener is the one `kafka_advertised_*` names.
#[test]
fn listeners_parse_in_kafkas_syntax() {
    let config = parse(&[
        "--listeners",
        "PLAINTEXT://127.0.0.1:9092,SASL_SSL://:9093",
        "--advertised-listeners",
        "SASL_SSL://kafka.example.com:19093",
        "--ssl-cert-file",
        "/etc/zombi/server.crt",
        "--ssl-key-file",
        "/etc/zombi/server.key",
    ])
    .expect("parses");
    let shown: Vec<(String, String, String, i32)> = config
        .security
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.bind.to_string(), l.advertised_host.clone(), l.advertised_port))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("PLAINTEXT".into(), "127.0.0.1:9092".into(), "127.0.0.1".into(), 9092),
            ("SASL_SSL".into(), "0.0.0.0:9093".into(), "kafka.example.com".into(), 19093),
        ]
    );
    assert_eq!((config.kafka_advertised_host.as_str(), config.kafka_advertised_port), ("127.0.0.1", 9092));
    assert_eq!(config.security.sasl_mechanisms, vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
}

/// Bad listener settings are refused with the flag's name and a reason.
#[test]
fn bad_listener_settings_are_refused() {
    let refused = |args: &[&str], flag: &str| match parse(args) {
        Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, flag, "{args:?}"),
        other => panic!("{args:?} was not refused: {other:?}"),
    };
    refused(&["--listeners", "HTTP://127.0.0.1:9092"], "listeners");
    refused(&["--listeners", "PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9093"], "listeners");
    refused(&["--listeners", "PLAINTEXT://127.0.0.1"], "listeners");
    refused(&["--listeners", "PLAINTEXT://:9092", "--advertised-listeners", "SSL://a:1"], "advertised-listeners");
    refused(&["--advertised-listeners", "PLAINTEXT://a:1"], "advertised-listeners");
    refused(&["--listeners", "SSL://:9093"], "ssl-cert-file");
    refused(&["--ssl-client-auth", "required"], "ssl-ca-file");
    refused(
        &["--listeners", "SASL_PLAINTEXT://:9093", "--sasl-enabled-mechanisms", "GSSAPI"],
        "sasl-enabled-mechanisms",
    );
    refused(&["--bootstrap-admin", "a=b"], "bootstrap-admin");
    let url = "https://idp.example/jwks";
    refused(
        &["--oauthbearer-jwks-file", "/j.json", "--oauthbearer-jwks-endpoint-url", url],
        "oauthbearer-jwks-endpoint-url",
    );
    refused(&["--oauthbearer-jwks-endpoint-url", "ftp://idp.example/jwks"], "oauthbearer-jwks-endpoint-url");
    refused(
        &["--oauthbearer-jwks-endpoint-url", url, "--oauthbearer-jwks-endpoint-refresh-ms", "0"],
        "oauthbearer-jwks-endpoint-refresh-ms",
    );
    let cluster = ["--coordinator", "postgres://z:z@127.0.0.1:5432/z", "--wal-store", "file:///var/tmp/wal"];
    refused(&[&cluster[..], &["--listeners", "SASL_PLAINTEXT://:9093"]].concat(), "inter-broker-sasl-username");
    refused(&["--sasl-mechanism-inter-broker-protocol", "GSSAPI"], "sasl-mechanism-inter-broker-protocol");
    let plain_only = ["--sasl-enabled-mechanisms", "PLAIN", "--inter-broker-sasl-username", "broker"];
    refused(&plain_only, "sasl-mechanism-inter-broker-protocol");
    let tls = ["--listeners", "SSL://:9093", "--ssl-cert-file", "/c.pem", "--ssl-key-file", "/k.pem"];
    refused(&[&cluster[..], &tls[..]].concat(), "ssl-ca-file");
    refused(&["--listeners", "PLAINTEXT://:9092", "--inter-broker-listener-name", "SSL"], "inter-broker-listener-name");
    refused(&["--authorizer", "acl"], "authorizer");
    refused(&["--super-users", "admin"], "super-users");
}

/// The inter-broker listener: the one named, else PLAINTEXT, else SSL, else the first; in a
/// cluster it may be SSL (with the CA that checks the other brokers), or SASL with a user.
#[test]
fn the_inter_broker_listener_is_plaintext_or_ssl() {
    let name = |args: &[&str]| parse(args).expect("parses").security.inter_broker_listener;
    let tls = ["--ssl-cert-file", "/c.pem", "--ssl-key-file", "/k.pem", "--ssl-ca-file", "/ca.pem"];
    assert_eq!(name(&[]), "PLAINTEXT");
    assert_eq!(
        name(&[&["--listeners", "SASL_SSL://:9094,SSL://:9093,PLAINTEXT://:9092"], &tls[..]].concat()),
        "PLAINTEXT"
    );
    assert_eq!(name(&[&["--listeners", "SASL_SSL://:9094,SSL://:9093"], &tls[..]].concat()), "SSL");
    assert_eq!(name(&["--listeners", "SASL_PLAINTEXT://:9094"]), "SASL_PLAINTEXT");
    let named = [&["--listeners", "PLAINTEXT://:9092,SSL://:9093", "--inter-broker-listener-name", "SSL"], &tls[..]];
    assert_eq!(name(&named.concat()), "SSL");
    let cluster = ["--coordinator", "postgres://z:z@127.0.0.1:5432/z", "--wal-store", "file:///var/tmp/wal"];
    let secured =
        [&cluster[..], &["--listeners", "SASL_SSL://:9094,SSL://:9093", "--authorizer", "standard"], &tls[..]];
    let config = parse(&secured.concat()).expect("a secured cluster parses");
    assert_eq!(config.security.inter_broker().name, "SSL");
    assert!(config.security.acls);
    let sasl = [&cluster[..], &["--listeners", "SASL_PLAINTEXT://:9094", "--inter-broker-sasl-username", "broker"]];
    let config = parse(&sasl.concat()).expect("a SASL inter-broker listener with a user parses");
    let Some(InterBrokerSasl::Password { username, .. }) = config.security.inter_broker_sasl else {
        panic!("inter-broker SASL with a password")
    };
    let mechanism = config.security.inter_broker_sasl_mechanism.as_str();
    assert_eq!((mechanism, username.as_str()), ("SCRAM-SHA-512", "broker"));

    // OAUTHBEARER between brokers: the token comes from a file, and the principal with it.
    let oauth = [
        "--listeners",
        "SASL_PLAINTEXT://:9094",
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-512,OAUTHBEARER",
        "--oauthbearer-jwks-file",
        "/etc/zombi/jwks.json",
        "--sasl-mechanism-inter-broker-protocol",
        "OAUTHBEARER",
    ];
    let token = ["--oauthbearer-token-endpoint-url", "file:///etc/zombi/broker.jwt"];
    let config = parse(&[&cluster[..], &oauth[..], &token[..]].concat()).expect("OAUTHBEARER between brokers parses");
    assert_eq!(config.security.inter_broker_sasl, Some(InterBrokerSasl::TokenFile("/etc/zombi/broker.jwt".into())));
    let refused = |args: &[&str]| match parse(args) {
        Err(ConfigError::Invalid { name, reason }) => format!("{name}: {reason}"),
        other => panic!("{args:?} parsed: {other:?}"),
    };
    let https = ["--oauthbearer-token-endpoint-url", "https://idp.example/token"];
    let reason = refused(&[&cluster[..], &oauth[..], &https[..]].concat());
    assert!(reason.starts_with("oauthbearer-token-endpoint-url") && reason.contains("file:///PATH"), "{reason}");
    let with_user = [&cluster[..], &oauth[..], &token[..], &["--inter-broker-sasl-username", "broker"]].concat();
    assert!(refused(&with_user).starts_with("inter-broker-sasl-username"));
    let not_oauth = [&sasl.concat()[..], &token[..]].concat();
    assert!(refused(&not_oauth).starts_with("oauthbearer-token-endpoint-url"));
    let without_token = [&cluster[..], &oauth[..]].concat();
    assert!(refused(&without_token).contains("--oauthbearer-token-endpoint-url"));
}

/// ACL settings: super users as Kafka writes them, with the bootstrap admin added; HTTP basic
/// auth by default once an authorizer is on, unless `--http-auth` says otherwise.
#[test]
fn acl_settings_resolve_as_kafka_names_them() {
    let config =
        parse(&["--authorizer", "standard", "--super-users", "User:ops; User:audit", "--bootstrap-admin", "root"])
            .expect("parses");
    assert!(config.security.acls);
    assert_eq!(config.security.super_users, vec!["User:ops", "User:audit", "User:root"]);
    assert!(!config.security.allow_everyone_if_no_acl_found);
    assert_eq!(config.http.auth, "basic");
    let open = parse(&["--authorizer", "standard", "--http-auth", "none", "--allow-everyone-if-no-acl-found"])
        .expect("parses");
    assert_eq!(open.http.auth, "none");
    assert!(open.security.allow_everyone_if_no_acl_found);
    assert_eq!(parse(&[]).expect("defaults").http.auth, "none");
}

/// Kafka's `ssl.principal.mapping.rules` syntax: rules and DEFAULT, commas inside a pattern's
/// braces kept, an escaped `/`, L and U; anything else is refused with Kafka's message.
#[test]
fn principal_mapping_rules_parse_as_kafkas() {
    use super::{Case, PrincipalRule, security::parse_principal_rules};
    let rules =
        parse_principal_rules("RULE:^CN=([^,]+),OU=(.*)$/$1@$2/L, RULE:^O=a\\/b$/ab/U,\nDEFAULT").expect("valid");
    assert_eq!(
        rules,
        vec![
            PrincipalRule::Rule {
                pattern: "^CN=([^,]+),OU=(.*)$".into(),
                replacement: "$1@$2".into(),
                case: Some(Case::Lower)
            },
            PrincipalRule::Rule { pattern: "^O=a\\/b$".into(), replacement: "ab".into(), case: Some(Case::Upper) },
            PrincipalRule::Default,
        ]
    );
    assert_eq!(parse_principal_rules("DEFAULT"), Ok(vec![PrincipalRule::Default]));
    assert!(parse_principal_rules("RULE:^CN=(.*$/$1/").is_err(), "not a regular expression");
    assert!(parse_principal_rules("RULE:^CN=.*$").is_err(), "no replacement");
    assert_eq!(parse_principal_rules("DEFAULT,bogus"), Err("Invalid rule: bogus".to_string()));
}
