//! Property tests of the log against a simple model, with restarts between operations: offsets are
//! dense and monotonic, nothing acknowledged is lost, and order is kept per partition.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use proptest::prelude::*;

use super::batch::{self, tests::batch as make_batch};
use super::{ReadRequest, open_for_tests};
use crate::config::Durability;

#[derive(Debug, Clone)]
enum Op {
    Append { partition: usize, records: i32, value: u8 },
    Read { partition: usize, from_fraction: u8 },
    DeleteRecords { partition: usize, fraction: u8 },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 1..5i32, any::<u8>()).prop_map(|(partition, records, value)| Op::Append { partition, records, value }),
        3 => (0..3usize, any::<u8>()).prop_map(|(partition, from_fraction)| Op::Read { partition, from_fraction }),
        1 => (0..3usize, any::<u8>()).prop_map(|(partition, fraction)| Op::DeleteRecords { partition, fraction }),
        1 => Just(Op::Restart),
    ]
}

/// The model: each partition's values by offset, and its log start.
#[derive(Default, Clone)]
struct Model {
    values: Vec<Vec<u8>>,
    log_start: i64,
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = open_for_tests(dir.path(), Durability::Fsync).await.expect("open");
    let topic = log.create_topic("model", 3, Default::default(), false).await.expect("topic");
    let mut models = vec![Model::default(); 3];
    for op in ops {
        match op {
            Op::Append { partition, records, value } => {
                let topic = log.topic("model").expect("topic");
                let bytes = make_batch(records, &[value], None);
                let batches = batch::validate(&bytes, 1 << 20).expect("valid");
                let receiver = log.submit_append(&topic, &topic.partitions[partition], batches).await.expect("queued");
                let info = receiver.await.expect("reply").expect("appended");
                let model = &mut models[partition];
                assert_eq!(info.base_offset, model.values.len() as i64, "offsets are dense");
                model.values.extend((0..records).map(|_| vec![value]));
            }
            Op::Read { partition, from_fraction } => {
                let model = &models[partition];
                let span = model.values.len() as i64 - model.log_start;
                let from = model.log_start + span * i64::from(from_fraction) / 256;
                let topic = log.topic("model").expect("topic");
                let request = ReadRequest {
                    partition: topic.partitions[partition].clone(),
                    offset: from,
                    max_bytes: 1 << 20,
                    at_least_one: true,
                    isolation: Default::default(),
                    verify_checksums: true,
                };
                let read =
                    log.read_local(vec![request], 1 << 20).await.remove(0).1.expect("read").expect("in the hot tier");
                let mut records = read.records.clone();
                let mut offsets = Vec::new();
                while !records.is_empty() {
                    let set = RecordBatchDecoder::decode(&mut records).expect("decodes");
                    for record in set.records {
                        let value = record.value.unwrap_or_default();
                        assert_eq!(
                            value,
                            Bytes::from(model.values[record.offset as usize].clone()),
                            "record at {}",
                            record.offset
                        );
                        offsets.push(record.offset);
                    }
                }
                // Whole batches: the first may start before `from`, and the rest follow in order.
                let wanted: Vec<i64> = (from..model.values.len() as i64).collect();
                let tail: Vec<i64> = offsets.iter().copied().filter(|o| *o >= from).collect();
                assert_eq!(tail, wanted, "everything from the fetch offset, in order");
            }
            Op::DeleteRecords { partition, fraction } => {
                let model = &mut models[partition];
                let span = model.values.len() as i64 - model.log_start;
                let to = model.log_start + span * i64::from(fraction) / 256;
                let topic = log.topic("model").expect("topic");
                let start = log.delete_records(&topic.partitions[partition], to).await.expect("delete records");
                model.log_start = model.log_start.max(to);
                assert_eq!(start, model.log_start);
            }
            Op::Restart => {
                log.close().await;
                drop(log);
                log = open_for_tests(dir.path(), Durability::Fsync).await.expect("reopen");
            }
        }
        let topic = log.topic("model").expect("topic");
        for (partition, model) in models.iter().enumerate() {
            assert_eq!(topic.partitions[partition].high_watermark(), model.values.len() as i64);
            assert_eq!(topic.partitions[partition].log_start(), model.log_start);
        }
    }
    assert_eq!(topic.partitions.len(), 3);
    log.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_the_model_across_restarts(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(run(ops));
    }
}
