//! Black-box tests: the real `zombi` binary, driven over TCP by the rdkafka crate and raw frames.

mod acls;
mod admin;
mod bad_input;
mod cluster;
mod cluster_security;
mod cluster_transactions;
mod common;
mod console;
mod decompression;
mod durability;
mod groups;
mod http;
mod http_client;
mod http_consumers;
mod http_limits;
mod iceberg;
mod iceberg_catalogs;
mod oauthbearer;
mod postgres;
mod produce_consume;
mod quotas;
mod raw;
mod security;
mod tiering;
mod transactions;
mod wal;
