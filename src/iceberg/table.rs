//! A topic's table: schema (with fixed field ids), partition spec, and rows written as Parquet.

use std::collections::HashMap;
use std::sync::Arc;

use ::iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use ::iceberg::spec::{
    DataFile, DataFileFormat, ListType, NestedField, PrimitiveType, Schema, StructType, TableMetadata, Transform, Type,
    UnboundPartitionSpec,
};
use ::iceberg::table::Table;
use ::iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use ::iceberg::writer::file_writer::ParquetWriterBuilder;
use ::iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use ::iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use ::iceberg::writer::partitioning::PartitioningWriter;
use ::iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use ::iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use arrow_array::builder::{
    Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_schema::{ArrowError, DataType, Fields, SchemaRef};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::PartitionBy;
use super::records::Row;

/// Field ids are fixed: readers and later schema changes rely on them.
pub const FIELD_PARTITION: i32 = 1;
pub const FIELD_OFFSET: i32 = 2;
pub const FIELD_TIMESTAMP: i32 = 3;
pub const FIELD_KEY: i32 = 4;
pub const FIELD_VALUE: i32 = 5;
pub const FIELD_HEADERS: i32 = 6;
pub const FIELD_HEADERS_ELEMENT: i32 = 7;
pub const FIELD_HEADER_KEY: i32 = 8;
pub const FIELD_HEADER_VALUE: i32 = 9;

/// `partition int, offset long, timestamp timestamptz, key binary, value binary,
/// headers list<struct<key string, value binary>>`.
pub fn schema() -> Result<Schema, ::iceberg::Error> {
    let header = StructType::new(vec![
        NestedField::required(FIELD_HEADER_KEY, "key", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::optional(FIELD_HEADER_VALUE, "value", Type::Primitive(PrimitiveType::Binary)).into(),
    ]);
    let headers = ListType::new(NestedField::list_element(FIELD_HEADERS_ELEMENT, Type::Struct(header), true).into());
    Schema::builder()
        .with_schema_id(0)
        .with_fields(vec![
            NestedField::required(FIELD_PARTITION, "partition", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::required(FIELD_OFFSET, "offset", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(FIELD_TIMESTAMP, "timestamp", Type::Primitive(PrimitiveType::Timestamptz)).into(),
            NestedField::optional(FIELD_KEY, "key", Type::Primitive(PrimitiveType::Binary)).into(),
            NestedField::optional(FIELD_VALUE, "value", Type::Primitive(PrimitiveType::Binary)).into(),
            NestedField::required(FIELD_HEADERS, "headers", Type::List(headers)).into(),
        ])
        .build()
}

/// The spec of a new table. The default, `day(timestamp)`: readers prune by time, and a day of a
/// busy topic fills whole files.
pub fn partition_spec(by: PartitionBy) -> Result<UnboundPartitionSpec, ::iceberg::Error> {
    let field = match by {
        PartitionBy::Day => (FIELD_TIMESTAMP, "timestamp_day", Transform::Day),
        PartitionBy::Hour => (FIELD_TIMESTAMP, "timestamp_hour", Transform::Hour),
        PartitionBy::Month => (FIELD_TIMESTAMP, "timestamp_month", Transform::Month),
        PartitionBy::Partition => (FIELD_PARTITION, "partition", Transform::Identity),
        PartitionBy::None => return Ok(UnboundPartitionSpec::builder().build()),
    };
    Ok(UnboundPartitionSpec::builder().add_partition_field(field.0, field.1, field.2)?.build())
}

/// Rows as an Arrow batch of the table's Arrow schema (field ids in the field metadata).
pub fn to_arrow(rows: &[Row], schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let mut partition = Int32Builder::with_capacity(rows.len());
    let mut offset = Int64Builder::with_capacity(rows.len());
    let mut timestamp = TimestampMicrosecondBuilder::with_capacity(rows.len());
    let mut key = LargeBinaryBuilder::new();
    let mut value = LargeBinaryBuilder::new();
    let mut header_offsets = Vec::with_capacity(rows.len() + 1);
    let mut header_key = StringBuilder::new();
    let mut header_value = LargeBinaryBuilder::new();
    header_offsets.push(0i32);
    for row in rows {
        partition.append_value(row.partition);
        offset.append_value(row.offset);
        timestamp.append_option(row.timestamp_us);
        key.append_option(row.key.as_deref());
        value.append_option(row.value.as_deref());
        for (name, bytes) in &row.headers {
            header_key.append_value(name);
            header_value.append_option(bytes.as_deref());
        }
        let last = header_offsets.last().copied().unwrap_or(0);
        let count = i32::try_from(row.headers.len()).map_err(|e| ArrowError::ComputeError(e.to_string()))?;
        header_offsets.push(last + count);
    }
    let timestamp_type = schema.field(2).data_type().clone();
    let timezone = match &timestamp_type {
        DataType::Timestamp(_, timezone) => timezone.clone(),
        other => return Err(ArrowError::SchemaError(format!("timestamp column is {other}"))),
    };
    let DataType::List(element) = schema.field(5).data_type() else {
        return Err(ArrowError::SchemaError("headers column is not a list".to_string()));
    };
    let DataType::Struct(header_fields) = element.data_type() else {
        return Err(ArrowError::SchemaError("headers element is not a struct".to_string()));
    };
    let headers = StructArray::try_new(
        Fields::clone(header_fields),
        vec![Arc::new(header_key.finish()) as ArrayRef, Arc::new(header_value.finish())],
        None,
    )?;
    let headers = ListArray::try_new(
        element.clone(),
        arrow_buffer::OffsetBuffer::new(header_offsets.into()),
        Arc::new(headers),
        None,
    )?;
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(timestamp.finish().with_timezone_opt(timezone)),
            Arc::new(key.finish()),
            Arc::new(value.finish()),
            Arc::new(headers),
        ],
    )
}

type Builder = DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// The data files of one commit: rows are split by partition (a day, by default) and each
/// partition's rows roll over into a new file at the target size.
pub struct CommitWriter {
    arrow_schema: SchemaRef,
    writer: Writer,
}

/// iceberg-rust's splitter refuses an unpartitioned spec, so those tables write directly.
#[expect(clippy::large_enum_variant, reason = "one per commit, made once and never moved in a loop")]
enum Writer {
    Partitioned { splitter: RecordBatchPartitionSplitter, writer: FanoutWriter<Builder> },
    Unpartitioned(UnpartitionedWriter<Builder>),
}

impl CommitWriter {
    pub fn new(table: &Table, target_file_bytes: usize, row_group_rows_max: usize) -> Result<Self, ::iceberg::Error> {
        let metadata: &TableMetadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let arrow_schema = Arc::new(schema_to_arrow_schema(&schema)?);
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(row_group_rows_max))
            .build();
        let parquet = ParquetWriterBuilder::new(properties, schema.clone());
        let names =
            DefaultFileNameGenerator::new(format!("zombi-{}", uuid::Uuid::now_v7()), None, DataFileFormat::Parquet);
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            target_file_bytes,
            table.file_io().clone(),
            DefaultLocationGenerator::new(metadata)?,
            names,
        );
        let spec = metadata.default_partition_spec().clone();
        let builder = DataFileWriterBuilder::new(rolling);
        let writer = if spec.is_unpartitioned() {
            Writer::Unpartitioned(UnpartitionedWriter::new(builder))
        } else {
            let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
            Writer::Partitioned { splitter, writer: FanoutWriter::new(builder) }
        };
        Ok(CommitWriter { arrow_schema, writer })
    }

    pub async fn write(&mut self, rows: &[Row]) -> Result<(), ::iceberg::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = to_arrow(rows, &self.arrow_schema)
            .map_err(|e| ::iceberg::Error::new(::iceberg::ErrorKind::DataInvalid, e.to_string()))?;
        self.write_batch(batch).await
    }

    /// The Arrow schema rows are written in (the table's, with field ids).
    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow_schema.clone()
    }

    /// Writes a batch already in [`Self::arrow_schema`] (rows read back from a data file).
    pub async fn write_batch(&mut self, batch: RecordBatch) -> Result<(), ::iceberg::Error> {
        match &mut self.writer {
            Writer::Partitioned { splitter, writer } => {
                for (key, part) in splitter.split(&batch)? {
                    writer.write(key, part).await?;
                }
            }
            Writer::Unpartitioned(writer) => writer.write(batch).await?,
        }
        Ok(())
    }

    pub async fn close(self) -> Result<Vec<DataFile>, ::iceberg::Error> {
        match self.writer {
            Writer::Partitioned { writer, .. } => writer.close().await,
            Writer::Unpartitioned(writer) => writer.close().await,
        }
    }
}

/// Table properties set at creation.
pub fn properties() -> HashMap<String, String> {
    HashMap::from([
        // The sink checks the table's offsets itself before each commit; iceberg-rust's own retry
        // would re-apply an append on top of a snapshot it cannot see, so it is off.
        ("commit.retry.num-retries".to_string(), "0".to_string()),
        ("write.parquet.compression-codec".to_string(), "zstd".to_string()),
        ("write.format.default".to_string(), "parquet".to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use bytes::Bytes;

    use super::*;

    #[test]
    fn rows_become_an_arrow_batch_of_the_table_schema() {
        let schema = Arc::new(schema_to_arrow_schema(&schema().unwrap()).unwrap());
        let rows = vec![
            Row {
                partition: 1,
                offset: 7,
                timestamp_us: Some(1),
                key: None,
                value: Some(Bytes::new()),
                headers: vec![("a".into(), None), ("a".into(), Some(Bytes::from_static(b"x")))],
            },
            Row { partition: 1, offset: 8, timestamp_us: None, key: Some(Bytes::new()), value: None, headers: vec![] },
        ];
        let batch = to_arrow(&rows, &schema).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let headers = batch.column(5).as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(headers.value_length(0), 2);
        assert_eq!(headers.value_length(1), 0);
        assert!(batch.column(3).is_null(0) && !batch.column(3).is_null(1));
        assert!(!batch.column(4).is_null(0) && batch.column(4).is_null(1));
    }
}
