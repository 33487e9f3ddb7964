//! Parquet input, read a batch of rows at a time and handed on as text fields, so that every
//! reader of [`super::records::Records`] (pairs, interactions, predictions) takes Parquet
//! with the same columns, checks and messages as CSV. Rows are numbered from 1; messages
//! call them rows, not lines.

use super::error::DataError;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Rows decoded per batch: bounds memory whatever the file's row groups hold.
const BATCH_ROWS: usize = 1024;

/// Whether `path` names a Parquet file (by extension, as every format here is told).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

/// The rows of a Parquet file as text fields, in file order.
pub struct ParquetRows {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    headers: Vec<String>,
    /// Columns whose type has no text form here, with that type (for the message).
    unsupported: Vec<Option<String>>,
    batch: Option<RecordBatch>,
    /// For each dictionary column of `batch`, each row's index into its values.
    dictionary_keys: Vec<Option<Vec<usize>>>,
    /// Next row within `batch`.
    next: usize,
    /// Rows handed out so far.
    row: u64,
    total: u64,
}

impl ParquetRows {
    pub fn open(path: &Path, file: File) -> Result<Self, DataError> {
        let bad = |e: parquet::errors::ParquetError| DataError::Inconsistent {
            path: path.to_path_buf(),
            message: format!("not a readable Parquet file ({e})"),
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(bad)?;
        let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
        let schema = builder.schema().clone();
        let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(bad)?;
        let headers = schema.fields().iter().map(|f| f.name().clone()).collect();
        let unsupported = schema
            .fields()
            .iter()
            .map(|f| (!has_text_form(f.data_type())).then(|| f.data_type().to_string()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            headers,
            unsupported,
            batch: None,
            dictionary_keys: Vec::new(),
            next: 0,
            row: 0,
            total,
        })
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The type of column `index` when it has no text form (a list, a struct, binary).
    pub fn unsupported(&self, index: usize) -> Option<&str> {
        self.unsupported.get(index)?.as_deref()
    }

    /// Rows read so far, and rows in the file.
    pub fn progress(&self) -> (u64, u64) {
        (self.row, self.total)
    }

    /// The next row (its 1-based number and its fields; a null is an empty field).
    pub fn next_row(&mut self) -> Option<Result<(u64, csv::StringRecord), DataError>> {
        while self
            .batch
            .as_ref()
            .is_none_or(|b| self.next >= b.num_rows())
        {
            match self.reader.next()? {
                Ok(batch) => {
                    self.dictionary_keys = batch
                        .columns()
                        .iter()
                        .map(|c| match c.data_type() {
                            DataType::Dictionary(_, _) => {
                                Some(c.as_any_dictionary().normalized_keys())
                            }
                            _ => None,
                        })
                        .collect();
                    self.batch = Some(batch);
                    self.next = 0;
                }
                // The file is damaged from here on: not a bad row to skip, the end of reading.
                Err(e) => {
                    return Some(Err(DataError::Inconsistent {
                        path: self.path.clone(),
                        message: format!(
                            "unreadable Parquet data from row {} on ({e})",
                            self.row + 1
                        ),
                    }))
                }
            }
        }
        let batch = self.batch.as_ref()?;
        let i = self.next;
        self.next += 1;
        self.row += 1;
        let mut record = csv::StringRecord::with_capacity(64, batch.num_columns());
        for (column, keys) in batch.columns().iter().zip(&self.dictionary_keys) {
            let text = match keys {
                // pandas writes a categorical column (a platform's responder ids) this way.
                Some(keys) if column.is_valid(i) => {
                    text_of(column.as_any_dictionary().values(), keys[i])
                }
                _ => text_of(column, i),
            };
            record.push_field(text.as_deref().unwrap_or(""));
        }
        Some(Ok((self.row, record)))
    }
}

/// Whether [`text_of`] gives values of this type.
fn has_text_form(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(_, values) => has_text_form(values),
        _ => {
            matches!(
                t,
                DataType::Null
                    | DataType::Boolean
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Timestamp(_, _)
            ) || t.is_integer()
        }
    }
}

/// A cell as the text a CSV would hold: numbers as written by Rust, booleans as true/false,
/// timestamps and dates as Unix seconds (UTC), `None` for a null (and for a type without a
/// text form, which the readers refuse by name before they read a row).
fn text_of(array: &ArrayRef, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    macro_rules! num {
        ($t:ty) => {
            array.as_primitive::<$t>().value(i).to_string()
        };
    }
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(i).to_owned(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(i).to_owned(),
        DataType::Utf8View => array.as_string_view().value(i).to_owned(),
        DataType::Boolean => array.as_boolean().value(i).to_string(),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => num!(Float32Type),
        DataType::Float64 => num!(Float64Type),
        DataType::Date32 => {
            let days = array
                .as_primitive::<arrow_array::types::Date32Type>()
                .value(i);
            (i64::from(days) * 86_400).to_string()
        }
        DataType::Date64 => {
            let ms = array
                .as_primitive::<arrow_array::types::Date64Type>()
                .value(i);
            seconds(ms, 1_000)
        }
        DataType::Timestamp(unit, _) => {
            use arrow_array::types::{
                TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
                TimestampSecondType,
            };
            let (v, per_second) = match unit {
                TimeUnit::Second => (array.as_primitive::<TimestampSecondType>().value(i), 1),
                TimeUnit::Millisecond => (
                    array.as_primitive::<TimestampMillisecondType>().value(i),
                    1_000,
                ),
                TimeUnit::Microsecond => (
                    array.as_primitive::<TimestampMicrosecondType>().value(i),
                    1_000_000,
                ),
                TimeUnit::Nanosecond => (
                    array.as_primitive::<TimestampNanosecondType>().value(i),
                    1_000_000_000,
                ),
            };
            seconds(v, per_second)
        }
        // Dictionary columns are looked up by the caller, once per batch.
        _ => return None,
    })
}

/// `v` in units of 1/`per_second` s as decimal seconds, exactly (no float rounding).
fn seconds(v: i64, per_second: i64) -> String {
    if per_second == 1 {
        return v.to_string();
    }
    let (whole, frac) = (v.div_euclid(per_second), v.rem_euclid(per_second));
    if frac == 0 {
        return whole.to_string();
    }
    let digits = per_second.ilog10() as usize;
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_seconds_are_exact_and_negative_ones_floor() {
        assert_eq!(seconds(1_709_296_200_500, 1_000), "1709296200.5");
        assert_eq!(seconds(-1, 1_000), "-1.999");
        assert_eq!(seconds(42, 1), "42");
        assert_eq!(seconds(3_000_000_000, 1_000_000_000), "3");
    }
}
