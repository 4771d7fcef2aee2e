//! Producer ids (Kafka's `ProducerIdManager`) and InitProducerId for idempotent producers (the
//! part of Kafka's `TransactionCoordinator.handleInitProducerId` without a transactional id).
//! Transactional producers are refused until the transaction coordinator exists.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::log::LogError;
use crate::log::metadata::MetadataStore;

/// Hands out producer ids from blocks the metadata store allocates (one durable write per block,
/// `log::metadata::PRODUCER_ID_BLOCK_SIZE`); ids never repeat, across restarts too (a restart
/// skips the rest of a block).
pub struct ProducerIdManager {
    metadata: Arc<dyn MetadataStore>,
    /// The rest of the current block; refilled from `metadata` when empty.
    block: Mutex<Range<i64>>,
}

/// InitProducerId's answer: the producer id and epoch, or an error code with both at -1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitProducerIdResult {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub error: i16,
}

impl InitProducerIdResult {
    fn error(error: i16) -> Self {
        InitProducerIdResult { producer_id: -1, producer_epoch: -1, error }
    }
}

impl ProducerIdManager {
    pub fn new(metadata: Arc<dyn MetadataStore>) -> Self {
        ProducerIdManager { metadata, block: Mutex::new(0..0) }
    }

    /// The next unused producer id.
    pub async fn generate_producer_id(&self) -> Result<i64, LogError> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            *block = self.metadata.allocate_producer_ids().await?;
        }
        block.next().ok_or(LogError::Unavailable)
    }

    /// InitProducerId: a new id at epoch 0, or, for an idempotent producer that names its id and
    /// epoch, the next epoch of the same id (KIP-360: it resets its sequences).
    pub async fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        producer_id: i64,
        producer_epoch: i16,
    ) -> InitProducerIdResult {
        if transactional_id.is_some() {
            return InitProducerIdResult::error(LogError::TransactionsUnsupported.code());
        }
        if producer_id >= 0 && (0..i16::MAX - 1).contains(&producer_epoch) {
            return InitProducerIdResult { producer_id, producer_epoch: producer_epoch + 1, error: 0 };
        }
        match self.generate_producer_id().await {
            Ok(producer_id) => InitProducerIdResult { producer_id, producer_epoch: 0, error: 0 },
            Err(error) => InitProducerIdResult::error(error.code()),
        }
    }
}
