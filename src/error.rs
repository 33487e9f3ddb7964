//! The library's error type: one variant per area, each keeping that area's message.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Text(#[from] crate::text::TextError),
    #[error(transparent)]
    Encoder(#[from] crate::encoder::EncoderError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error("model computation failed: {}", crate::model::without_backtrace(.0))]
    Tensor(#[from] candle_core::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Pretrain(#[from] crate::pretrain::PretrainError),
    #[error(transparent)]
    Analyze(#[from] crate::analyze::AnalyzeError),
    #[error(transparent)]
    Predict(#[from] crate::predict::PredictError),
    #[error(transparent)]
    Merge(#[from] crate::predict::MergeError),
    #[error(transparent)]
    Eval(#[from] crate::evaluate::EvalError),
    #[error(transparent)]
    Experiment(#[from] crate::experiment::ExperimentError),
    #[error(transparent)]
    Exemplar(#[from] crate::suggest::exemplars::ExemplarError),
    #[error(transparent)]
    Option(#[from] OptionError),
}

/// A setting outside what it may be, named as the command line spells it.
#[derive(Debug, thiserror::Error)]
#[error("{flag} must be {requirement}")]
pub struct OptionError {
    pub flag: &'static str,
    pub requirement: &'static str,
}

impl OptionError {
    /// `Err` naming `flag` unless `ok`.
    pub fn check(ok: bool, flag: &'static str, requirement: &'static str) -> Result<(), Self> {
        if ok {
            Ok(())
        } else {
            Err(Self { flag, requirement })
        }
    }
}
