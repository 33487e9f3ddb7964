//! Reading data: the EPITOME annotations, pairs to score, dataset splits, and rationale
//! span alignment.

pub mod align;
mod epitome;
mod error;
pub(crate) mod lines;
mod pairs;
mod split;

pub use align::{char_slice, locate_spans, CharSpan};
pub use epitome::{load_epitome, Dataset, Example, LoadReport, MechanismLabel};
pub use error::DataError;
pub(crate) use error::{describe_headers, from_csv, quote_value, require_column, utf8_record};
pub(crate) use pairs::UNCLOSED_QUOTE;
pub use pairs::{InputFormat, Pair, PairReader};
pub use split::{split_dev, Split};
