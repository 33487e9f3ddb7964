//! Reading data (CSV, JSONL, Parquet): the EPITOME annotations, pairs to score, dataset
//! splits, and rationale span alignment.

pub mod align;
mod epitome;
mod error;
pub(crate) mod lines;
mod pairs;
mod parquet;
pub mod records;
mod split;

pub use align::{char_slice, locate_spans, CharSpan};
pub use epitome::{load_epitome, Dataset, Example, LoadReport, MechanismLabel};
pub(crate) use error::quote_value;
pub use error::DataError;
pub use pairs::{InputFormat, Pair, PairReader};
pub use split::{check_split_options, split_dev, split_fold, split_for, Fold, Split};

/// What to do with a row that cannot be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop at the first bad row, naming its file, line and column.
    #[default]
    Fail,
    /// Leave bad rows out and report how many, and why.
    Skip,
}
