//! Pretrained encoders: the Hugging Face directory format (config.json, tokenizer.json,
//! model.safetensors), the transformer itself, and fetching the default encoder.

mod config;
pub mod fetch;
pub mod layers;
pub mod mlm_head;
pub mod stored;
mod transformer;

pub use config::{Activation, EncoderConfig, Family};
pub use mlm_head::MlmHead;
pub use stored::{SafetensorsFile, StoredAt, StoredTensors};
pub use transformer::{Encoder, TokenBatch};

use crate::text::{TextEncoder, TextError};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{} has no {file}; an encoder directory needs config.json, tokenizer.json and model.safetensors (Hugging Face format)", dir.display())]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("{0}")]
    Fetch(String),
}

/// A pretrained encoder directory in Hugging Face format.
#[derive(Clone, Debug)]
pub struct PretrainedEncoder {
    pub dir: PathBuf,
    pub config: EncoderConfig,
}

impl PretrainedEncoder {
    pub fn open(dir: &Path) -> Result<Self, EncoderError> {
        for file in [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
            if !dir.join(file).is_file() {
                return Err(EncoderError::MissingFile {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let path = dir.join(CONFIG_FILE);
        let invalid = |message: String| EncoderError::Invalid {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| invalid(e.to_string()))?;
        let config: EncoderConfig =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if config.family().is_none() {
            return Err(invalid(format!(
                "model_type '{}' is not supported; use a BERT-family (bert) or RoBERTa-family (roberta) encoder",
                config.model_type
            )));
        }
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(invalid(
                "hidden_size is not a multiple of num_attention_heads".into(),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
        })
    }

    pub fn weights_path(&self) -> PathBuf {
        self.dir.join(WEIGHTS_FILE)
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(TOKENIZER_FILE)
    }

    pub fn text_encoder(&self, max_len: usize) -> Result<TextEncoder, EncoderError> {
        if max_len < 3 || max_len > self.config.max_tokens() {
            return Err(EncoderError::Invalid {
                path: self.dir.join(CONFIG_FILE),
                message: format!(
                    "max length {max_len} is outside 3..={} that this encoder's position table holds",
                    self.config.max_tokens()
                ),
            });
        }
        let text = TextEncoder::from_file(&self.tokenizer_path(), max_len)?;
        // An id past the embedding table would fail deep inside the first forward pass.
        if text.vocab_size() > self.config.vocab_size {
            return Err(EncoderError::Invalid {
                path: self.tokenizer_path(),
                message: format!(
                    "the tokenizer has {} tokens but config.json's vocab_size is {}: the tokenizer belongs to another encoder",
                    text.vocab_size(),
                    self.config.vocab_size
                ),
            });
        }
        Ok(text)
    }

    /// The encoder's tensors with the architecture prefix (`bert.`, `roberta.`) removed, so
    /// that names start at `embeddings.` and `encoder.`.
    pub fn load_tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>, EncoderError> {
        let path = self.weights_path();
        let all =
            candle_core::safetensors::load(&path, device).map_err(|e| EncoderError::Invalid {
                path: path.clone(),
                message: format!("cannot read the weights: {e}"),
            })?;
        strip_prefix(all).ok_or_else(|| not_a_checkpoint(path))
    }

    /// Where the encoder's tensors are stored, named as [`Self::load_tensors`] names them;
    /// only the file's header is read.
    pub fn stored_tensors(
        &self,
    ) -> Result<(SafetensorsFile, HashMap<String, String>), EncoderError> {
        let path = self.weights_path();
        let file = SafetensorsFile::open(&path).map_err(|e| EncoderError::Invalid {
            path: path.clone(),
            message: format!("cannot read the weights: {e}"),
        })?;
        let names = file.names().map(|n| (n.to_owned(), n.to_owned())).collect();
        let names = strip_prefix(names).ok_or_else(|| not_a_checkpoint(path))?;
        Ok((file, names))
    }
}

fn not_a_checkpoint(path: PathBuf) -> EncoderError {
    EncoderError::Invalid {
        path,
        message:
            "no tensor named *embeddings.word_embeddings.weight: not a BERT or RoBERTa checkpoint"
                .into(),
    }
}

/// Finds the prefix in front of `embeddings.word_embeddings.weight` and keeps the tensors
/// (or where they are stored) under it.
pub fn strip_prefix<T>(all: HashMap<String, T>) -> Option<HashMap<String, T>> {
    const ANCHOR: &str = "embeddings.word_embeddings.weight";
    let prefix = all
        .keys()
        .filter_map(|k| k.strip_suffix(ANCHOR))
        .min_by_key(|p| p.len())?
        .to_owned();
    Some(
        all.into_iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|s| (s.to_owned(), v)))
            .collect(),
    )
}
