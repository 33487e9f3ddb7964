//! The masked-LM head that `epitome pretrain` trains beside the encoder, as Hugging Face's
//! `BertLMPredictionHead`: a transform (dense, GELU, LayerNorm) and a decoder tied to the word
//! embeddings, with a bias per vocabulary entry.
//! <https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py>
//!
//! The head is new (sentence-embedding checkpoints such as all-MiniLM-L6-v2 ship none) and is
//! not kept: only the adapted encoder serves fine-tuning. RoBERTa's `RobertaLMHead` computes
//! the same function under other names; the BERT names are used for both.

use super::layers::{LayerNorm, Linear, Mode};
use super::EncoderConfig;
use crate::kernels;
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Hugging Face's `BertLMPredictionHead` (with its `BertPredictionHeadTransform`).
pub struct MlmHead {
    dense: Linear,
    norm: LayerNorm,
    /// The decoder's weight, (vocab, hidden): the encoder's word embeddings.
    decoder: Tensor,
    bias: Tensor,
}

impl MlmHead {
    /// `vb` at the model's root (the head's tensors are `cls.predictions.*`); `word_embeddings`
    /// is the encoder's (vocab, hidden) table, which the decoder shares.
    pub fn load(vb: VarBuilder, cfg: &EncoderConfig, word_embeddings: Tensor) -> Result<Self> {
        let vb = vb.pp("cls").pp("predictions");
        let h = cfg.hidden_size;
        Ok(Self {
            dense: Linear::load(vb.pp("transform").pp("dense"), h, h)?,
            norm: LayerNorm::load(vb.pp("transform").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            decoder: word_embeddings,
            bias: vb.get_with_hints(cfg.vocab_size, "bias", Init::Const(0.0))?,
        })
    }

    /// Vocabulary logits (n, vocab) of hidden states (n, hidden).
    pub fn forward(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        let x = self.dense.forward_gelu_t(hidden, mode)?;
        let x = candle_core::Module::forward(&self.norm, &x)?;
        kernels::linear(&x, &self.decoder, &self.bias)
    }
}
