//! Predictions as Parquet, with typed columns: the CSV output's columns, where a mechanism's
//! level is an integer, its probabilities floats, and its rationales one list of
//! `{start, end, text}` structs (CSV spreads them over `_rationales` and
//! `_rationale_offsets`). pandas, pyarrow, polars and DuckDB read it as it is.
//!
//! A Parquet file is only readable once its footer is written, so a run cannot be resumed
//! from a half-written one: the run stages its predictions as JSON lines in its working file
//! (resumable like any other output) and [`convert_staged`] writes the Parquet file when the
//! run is complete.

use super::{MechanismPrediction, PairPrediction, Rationale};
use crate::mechanism::{Mechanism, NUM_LEVELS};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, Int8Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Int64Array, Int8Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

/// Rows per Arrow batch written or read.
const BATCH_ROWS: usize = 4096;
/// Rows per row group: a reader can skip or split on them, and the writer buffers one.
const ROW_GROUP_ROWS: usize = 64 * 1024;

fn rationale_fields() -> Fields {
    Fields::from(vec![
        Field::new("start", DataType::Int64, false),
        Field::new("end", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ])
}

fn rationale_list() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(rationale_fields()),
        false,
    )))
}

/// The columns of a predictions file for `mechanisms`, in CSV order.
pub fn schema(mechanisms: &[Mechanism]) -> SchemaRef {
    let mut fields = vec![Field::new("id", DataType::Utf8, false)];
    for m in mechanisms {
        let code = m.code();
        fields.push(Field::new(format!("{code}_level"), DataType::Int8, false));
        for level in 0..NUM_LEVELS {
            fields.push(Field::new(
                format!("{code}_prob_{level}"),
                DataType::Float32,
                false,
            ));
        }
        fields.push(Field::new(
            format!("{code}_rationales"),
            rationale_list(),
            false,
        ));
    }
    fields.push(Field::new("truncated", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

fn columns_of(predictions: &[PairPrediction], mechanisms: &[Mechanism]) -> Vec<ArrayRef> {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
        predictions.iter().map(|p| p.id.as_str()),
    ))];
    for (k, _) in mechanisms.iter().enumerate() {
        let ms: Vec<&MechanismPrediction> =
            predictions.iter().map(|p| &p.mechanisms[k].1).collect();
        columns.push(Arc::new(Int8Array::from_iter_values(
            ms.iter().map(|m| m.level as i8),
        )));
        for level in 0..NUM_LEVELS {
            columns.push(Arc::new(Float32Array::from_iter_values(
                ms.iter().map(|m| m.probs[level]),
            )));
        }
        let spans = || ms.iter().flat_map(|m| &m.rationales);
        let structs = StructArray::new(
            rationale_fields(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    spans().map(|r| r.start as i64),
                )),
                Arc::new(Int64Array::from_iter_values(spans().map(|r| r.end as i64))),
                Arc::new(StringArray::from_iter_values(
                    spans().map(|r| r.text.as_str()),
                )),
            ],
            None,
        );
        let DataType::List(item) = rationale_list() else {
            unreachable!("rationale_list is a list")
        };
        columns.push(Arc::new(ListArray::new(
            item,
            OffsetBuffer::from_lengths(ms.iter().map(|m| m.rationales.len())),
            Arc::new(structs),
            None,
        )));
    }
    columns.push(Arc::new(BooleanArray::from_iter(
        predictions.iter().map(|p| Some(p.truncated)),
    )));
    columns
}

/// Writes predictions to a Parquet file a batch at a time.
pub struct ParquetWriter {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    mechanisms: Vec<Mechanism>,
    pending: Vec<PairPrediction>,
}

impl ParquetWriter {
    pub fn new(file: File, mechanisms: &[Mechanism]) -> std::io::Result<Self> {
        let schema = schema(mechanisms);
        // Snappy: what pandas and DuckDB write by default, and cheap to decode.
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(std::io::Error::other)?;
        Ok(Self {
            writer,
            schema,
            mechanisms: mechanisms.to_vec(),
            pending: Vec::with_capacity(BATCH_ROWS),
        })
    }

    pub fn push(&mut self, prediction: PairPrediction) -> std::io::Result<()> {
        let codes = prediction.mechanisms.iter().map(|(m, _)| *m);
        if !codes.eq(self.mechanisms.iter().copied()) {
            return Err(invalid(format!(
                "prediction {} has other mechanisms than the file's",
                prediction.id
            )));
        }
        self.pending.push(prediction);
        if self.pending.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            columns_of(&self.pending, &self.mechanisms),
        )
        .map_err(std::io::Error::other)?;
        self.writer.write(&batch).map_err(std::io::Error::other)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the footer and hands the file back (for the caller to sync).
    pub fn finish(mut self) -> std::io::Result<File> {
        self.flush()?;
        self.writer.into_inner().map_err(std::io::Error::other)
    }
}

/// One line of the JSON lines output back as a prediction, with its mechanisms in `order`.
pub fn prediction_from_json(line: &str, order: &[Mechanism]) -> Result<PairPrediction, String> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| format!("not a prediction object ({e})"))?;
    let id = match v.remove("id") {
        Some(serde_json::Value::String(s)) => s,
        Some(other) if !other.is_null() => other.to_string(),
        _ => return Err("no id".into()),
    };
    let mut mechanisms = Vec::with_capacity(order.len());
    for m in order {
        let value = v
            .remove(m.code())
            .ok_or_else(|| format!("no field {}", m.code()))?;
        let p: MechanismPrediction = serde_json::from_value(value)
            .map_err(|e| format!("field {}: not a prediction ({e})", m.code()))?;
        mechanisms.push((*m, p));
    }
    let truncated = v
        .get("truncated")
        .and_then(serde_json::Value::as_bool)
        .ok_or("no boolean field truncated")?;
    Ok(PairPrediction {
        id,
        mechanisms,
        truncated,
    })
}

/// Writes the Parquet form of a JSON lines output (`staged`, as this run wrote it) to `out`.
pub fn convert_staged(staged: &Path, out: File, mechanisms: &[Mechanism]) -> std::io::Result<File> {
    let mut writer = ParquetWriter::new(out, mechanisms)?;
    for (n, line) in BufReader::new(File::open(staged)?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let p = prediction_from_json(&line, mechanisms)
            .map_err(|e| invalid(format!("{}, line {}: {e}", staged.display(), n + 1)))?;
        writer.push(p)?;
    }
    writer.finish()
}

/// The predictions of a Parquet file that epitome wrote, in file order.
pub struct PredictionRows {
    reader: ParquetRecordBatchReader,
    mechanisms: Vec<Mechanism>,
    batch: Vec<PairPrediction>,
}

impl PredictionRows {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)
            .map_err(|e| invalid(format!("not a readable Parquet file ({e})")))?;
        let names: Vec<&String> = builder.schema().fields().iter().map(|f| f.name()).collect();
        let mechanisms: Vec<Mechanism> = names
            .iter()
            .filter_map(|n| n.strip_suffix("_level")?.parse().ok())
            .collect();
        if builder.schema().fields() != schema(&mechanisms).fields() {
            return Err(invalid(
                "its columns are not those of `epitome predict`'s Parquet output",
            ));
        }
        let reader = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            reader,
            mechanisms,
            batch: Vec::new(),
        })
    }

    pub fn mechanisms(&self) -> &[Mechanism] {
        &self.mechanisms
    }

    fn decode(&self, batch: &RecordBatch) -> Vec<PairPrediction> {
        let ids = batch.column(0).as_string::<i32>();
        let truncated = batch.column(batch.num_columns() - 1).as_boolean();
        let per = 2 + NUM_LEVELS;
        let mut rows: Vec<PairPrediction> = (0..batch.num_rows())
            .map(|i| PairPrediction {
                id: ids.value(i).to_owned(),
                mechanisms: Vec::with_capacity(self.mechanisms.len()),
                truncated: truncated.value(i),
            })
            .collect();
        for (k, m) in self.mechanisms.iter().enumerate() {
            let first = 1 + k * per;
            let level = batch.column(first).as_primitive::<Int8Type>();
            let probs: Vec<_> = (0..NUM_LEVELS)
                .map(|l| batch.column(first + 1 + l).as_primitive::<Float32Type>())
                .collect();
            let lists = batch.column(first + 1 + NUM_LEVELS).as_list::<i32>();
            for (i, row) in rows.iter_mut().enumerate() {
                let spans = lists.value(i);
                let spans = spans.as_struct();
                let (starts, ends, texts) = (
                    spans.column(0).as_primitive::<Int64Type>(),
                    spans.column(1).as_primitive::<Int64Type>(),
                    spans.column(2).as_string::<i32>(),
                );
                let rationales = (0..spans.len())
                    .map(|j| Rationale {
                        start: starts.value(j) as usize,
                        end: ends.value(j) as usize,
                        text: texts.value(j).to_owned(),
                    })
                    .collect();
                row.mechanisms.push((
                    *m,
                    MechanismPrediction {
                        level: level.value(i) as u8,
                        probs: std::array::from_fn(|l| probs[l].value(i)),
                        rationales,
                    },
                ));
            }
        }
        rows
    }
}

impl Iterator for PredictionRows {
    type Item = std::io::Result<PairPrediction>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.batch.is_empty() {
            let batch = match self.reader.next()? {
                Ok(b) => b,
                Err(e) => return Some(Err(std::io::Error::other(e))),
            };
            self.batch = self.decode(&batch);
            self.batch.reverse();
        }
        self.batch.pop().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<PairPrediction> {
        (0..n)
            .map(|i| PairPrediction {
                id: format!("p{i}"),
                mechanisms: Mechanism::ALL
                    .iter()
                    .map(|&m| {
                        let rationales = (0..i % 3)
                            .map(|j| Rationale {
                                start: j * 10,
                                end: j * 10 + 4,
                                text: format!("sp{j}é"),
                            })
                            .collect();
                        let p = (i % 7) as f32 / 7.0;
                        (
                            m,
                            MechanismPrediction {
                                level: (i % 3) as u8,
                                probs: [p, 1.0 - p, 0.1234567],
                                rationales,
                            },
                        )
                    })
                    .collect(),
                truncated: i % 5 == 0,
            })
            .collect()
    }

    #[test]
    fn a_written_file_reads_back_as_the_same_predictions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        // More than one batch and a partial last one.
        let predictions = sample(BATCH_ROWS + 17);
        let mut w = ParquetWriter::new(File::create(&path).unwrap(), &Mechanism::ALL).unwrap();
        for p in predictions.clone() {
            w.push(p).unwrap();
        }
        w.finish().unwrap();
        let rows = PredictionRows::open(&path).unwrap();
        assert_eq!(rows.mechanisms(), &Mechanism::ALL);
        let back: Vec<PairPrediction> = rows.map(Result::unwrap).collect();
        assert_eq!(back, predictions);
    }

    #[test]
    fn staged_json_lines_convert_to_the_same_predictions() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged.jsonl");
        let predictions = sample(40);
        let text: String = predictions
            .iter()
            .map(|p| format!("{}\n", p.to_json()))
            .collect();
        std::fs::write(&staged, text).unwrap();
        let out = dir.path().join("out.parquet");
        convert_staged(&staged, File::create(&out).unwrap(), &Mechanism::ALL).unwrap();
        let back: Vec<PairPrediction> = PredictionRows::open(&out)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, predictions);
    }

    #[test]
    fn a_parquet_file_of_other_columns_is_not_taken_for_predictions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from_iter_values(["a"]))],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let err = PredictionRows::open(&path).err().unwrap().to_string();
        assert!(err.contains("not those of"), "{err}");
    }
}
