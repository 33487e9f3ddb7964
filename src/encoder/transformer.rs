//! A BERT-family encoder (BERT, MiniLM, RoBERTa) with an explicit forward pass.
//! Tensor names follow the Hugging Face checkpoints, without the `bert.`/`roberta.` prefix.

use super::config::{Activation, EncoderConfig, Family};
use super::layers::{Dropout, LayerNorm, Linear, Mode};
use crate::kernels;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Token ids of a padded batch, ready for an encoder.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    /// (batch, tokens) u32.
    pub ids: Tensor,
    /// (batch, tokens) u32.
    pub type_ids: Tensor,
    /// (batch, tokens) f32: 1 for real tokens, 0 for padding.
    pub mask: Tensor,
    /// Real tokens per row.
    pub lengths: Vec<usize>,
}

impl TokenBatch {
    /// Pads each row to the longest row (or to `pad_to`, when longer) with `pad_id`.
    pub fn new(
        rows: &[(&[u32], &[u32])],
        pad_id: u32,
        pad_to: Option<usize>,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let longest = rows.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let width = pad_to.map_or(longest, |p| p.max(longest)).max(1);
        let b = rows.len();
        let mut ids = vec![pad_id; b * width];
        let mut type_ids = vec![0u32; b * width];
        let mut mask = vec![0f32; b * width];
        for (r, (row_ids, row_types)) in rows.iter().enumerate() {
            let base = r * width;
            ids[base..base + row_ids.len()].copy_from_slice(row_ids);
            type_ids[base..base + row_types.len()].copy_from_slice(row_types);
            mask[base..base + row_ids.len()].fill(1.0);
        }
        Ok(Self {
            ids: Tensor::from_vec(ids, (b, width), device)?,
            type_ids: Tensor::from_vec(type_ids, (b, width), device)?,
            mask: Tensor::from_vec(mask, (b, width), device)?,
            lengths: rows.iter().map(|(ids, _)| ids.len()).collect(),
        })
    }

    pub fn width(&self) -> usize {
        self.ids.dims().get(1).copied().unwrap_or(0)
    }

    /// Rows `start..start + len`, at the same width.
    fn rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            ids: self.ids.narrow(0, start, len)?,
            type_ids: self.type_ids.narrow(0, start, len)?,
            mask: self.mask.narrow(0, start, len)?,
            lengths: self.lengths[start..start + len].to_vec(),
        })
    }
}

/// Hugging Face's `BertEmbeddings` (and `RobertaEmbeddings`, whose positions start after the
/// padding id): word, position and token-type embeddings, LayerNorm, dropout.
/// <https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py>
struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
    dropout: Dropout,
    family: Family,
    pad_id: u32,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &EncoderConfig, family: Family) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word: vb.get((cfg.vocab_size, h), "word_embeddings.weight")?,
            position: vb.get(
                (cfg.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type: vb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?,
            norm: LayerNorm::load(vb.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            dropout: Dropout::new(cfg.hidden_dropout_prob),
            family,
            pad_id: cfg.pad_token_id,
        })
    }

    /// BERT counts positions from 0; RoBERTa from pad_id + 1 over real tokens, and gives
    /// padding the position pad_id, as Hugging Face's `create_position_ids_from_input_ids`.
    fn position_ids(&self, batch: &TokenBatch) -> Result<Tensor> {
        let (b, t) = batch.ids.dims2()?;
        let ids: Vec<u32> = match self.family {
            Family::Bert => (0..b).flat_map(|_| 0..t as u32).collect(),
            Family::Roberta => batch
                .lengths
                .iter()
                .flat_map(|&len| {
                    (0..t).map(move |i| {
                        if i < len {
                            self.pad_id + 1 + i as u32
                        } else {
                            self.pad_id
                        }
                    })
                })
                .collect(),
        };
        Tensor::from_vec(ids, (b, t), batch.ids.device())
    }

    fn forward(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        let (b, t) = batch.ids.dims2()?;
        let h = self.word.dim(1)?;
        let lookup = |table: &Tensor, ids: &Tensor| -> Result<Tensor> {
            table
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, h))
        };
        let words = lookup(&self.word, &batch.ids)?;
        let positions = lookup(&self.position, &self.position_ids(batch)?)?;
        let types = lookup(&self.token_type, &batch.type_ids)?;
        let x = ((words + positions)? + types)?;
        let x = self.norm.forward(&x)?;
        self.dropout.forward(&x, mode)
    }
}

/// Hugging Face's `BertAttention`: `BertSelfAttention` (query, key, value, the attention
/// itself) and `BertSelfOutput` (dense, dropout, residual, LayerNorm) in one struct.
/// <https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py>
struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    norm: LayerNorm,
    probs_dropout: Dropout,
    hidden_dropout: Dropout,
    heads: usize,
}

impl SelfAttention {
    fn load(vb: VarBuilder, cfg: &EncoderConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let own = vb.pp("self");
        let out = vb.pp("output");
        Ok(Self {
            query: Linear::load(own.pp("query"), h, h)?,
            key: Linear::load(own.pp("key"), h, h)?,
            value: Linear::load(own.pp("value"), h, h)?,
            output: Linear::load(out.pp("dense"), h, h)?,
            norm: LayerNorm::load(out.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            probs_dropout: Dropout::new(cfg.attention_probs_dropout_prob),
            hidden_dropout: Dropout::new(cfg.hidden_dropout_prob),
            heads: cfg.num_attention_heads,
        })
    }

    /// `lengths`: real tokens per row; padding is never attended.
    fn forward(&self, x: &Tensor, lengths: &[usize], mode: Mode) -> Result<Tensor> {
        let context = kernels::attention(
            &self.query.forward_t(x, mode)?,
            &self.key.forward_t(x, mode)?,
            &self.value.forward_t(x, mode)?,
            self.heads,
            lengths,
            self.probs_dropout.attention(mode),
        )?;
        let out = self.output.forward_t(&context, mode)?;
        let out = self.hidden_dropout.forward(&out, mode)?;
        self.norm.forward_residual(&out, x, mode)
    }
}

/// Hugging Face's `BertIntermediate` (dense, activation) and `BertOutput` (dense, dropout,
/// residual, LayerNorm) in one struct.
struct FeedForward {
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
    dropout: Dropout,
    activation: Activation,
}

impl FeedForward {
    fn load(vb: VarBuilder, cfg: &EncoderConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            intermediate: Linear::load(vb.pp("intermediate").pp("dense"), h, i)?,
            output: Linear::load(vb.pp("output").pp("dense"), i, h)?,
            norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            dropout: Dropout::new(cfg.hidden_dropout_prob),
            activation: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = match self.activation {
            Activation::GeluErf => self.intermediate.forward_gelu_t(x, mode)?,
            Activation::GeluTanh => self.intermediate.forward_t(x, mode)?.gelu()?,
            Activation::Relu => self.intermediate.forward_t(x, mode)?.relu()?,
        };
        let y = self.output.forward_t(&y, mode)?;
        let y = self.dropout.forward(&y, mode)?;
        self.norm.forward_residual(&y, x, mode)
    }
}

/// Hugging Face's `BertLayer`: attention, then the feed-forward block.
struct Layer {
    attention: SelfAttention,
    feed_forward: FeedForward,
}

/// The transformer encoder: token ids in, one hidden state per token out. Hugging Face's
/// `BertModel` (or `RobertaModel`) without its pooler: `BertEmbeddings` then `BertEncoder`.
pub struct Encoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    span: tracing::Span,
}

impl Encoder {
    /// `vb` points at the encoder's root (where `embeddings.` and `encoder.layer.` live).
    pub fn load(vb: VarBuilder, cfg: &EncoderConfig) -> Result<Self> {
        let family = cfg.family().ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "unsupported encoder model_type '{}': expected bert or roberta",
                cfg.model_type
            ))
        })?;
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg, family)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let lvb = vb.pp("encoder").pp("layer").pp(i.to_string());
                Ok(Layer {
                    attention: SelfAttention::load(lvb.pp("attention"), cfg)?,
                    feed_forward: FeedForward::load(lvb, cfg)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            span: tracing::span!(tracing::Level::TRACE, "encoder"),
        })
    }

    /// Hidden states (batch, tokens, hidden) of a padded batch.
    ///
    /// At inference, a batch of several rows on a pool of several threads runs as two halves
    /// side by side, each on a thread of its own where every kernel is single-threaded: one
    /// batch split inside every product left 10–14% of two cores idle (the serial parts
    /// between products, and a hand-off per product). Batch 32 × 64, interleaved on 2 cores:
    /// 460–487 ms → 403–414 ms (medians). Four or eight parts were slower (medians 425–454 and
    /// 471–488 ms against 391–432 for two, interleaved): every part streams all the weights.
    /// Each row is computed as it would be alone, whatever the split.
    pub fn forward(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        let rows = batch.lengths.len();
        if !mode.is_train() && rows >= 2 && rayon::current_num_threads() >= 2 {
            let (a, b) = (
                batch.rows(0, rows / 2)?,
                batch.rows(rows / 2, rows - rows / 2)?,
            );
            let (a, b) = kernels::join_single_threaded(
                || self.forward_whole(&a, mode),
                || self.forward_whole(&b, mode),
            );
            return Tensor::cat(&[a?, b?], 0);
        }
        self.forward_whole(batch, mode)
    }

    fn forward_whole(&self, batch: &TokenBatch, mode: Mode) -> Result<Tensor> {
        let _enter = self.span.enter();
        let mut x = self.embeddings.forward(batch, mode)?;
        for layer in &self.layers {
            x = layer.attention.forward(&x, &batch.lengths, mode)?;
            x = layer.feed_forward.forward(&x, mode)?;
        }
        if x.dtype() != DType::F32 {
            x = x.to_dtype(DType::F32)?;
        }
        Ok(x)
    }
}
