//! The multi-task bi-encoder of Sharma et al. (2020): a frozen seeker encoder, a fine-tuned
//! responder encoder, one-head attention from response tokens to seeker tokens added
//! residually, a level head on the first response token (or the mean of the response tokens,
//! [`LevelPooling`]) and a rationale head on every token.
//!
//! Names of the per-mechanism layers are the original code's (`attn.q_linear`,
//! `empathy_classifier.dense`, ...) under the mechanism's code, so original checkpoints map on
//! by prefix alone.

use super::folded::FoldedAttention;
use super::level_head::LevelHead;
use super::offsets::LevelOffsets;
use super::pooling::LevelPooling;
use crate::encoder::layers::{Dropout, Linear, Mode};
use crate::encoder::{Encoder, EncoderConfig, TokenBatch};
use crate::kernels::{self, Precision};
use crate::mechanism::Mechanism;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// Whether the three mechanisms share one fine-tuned responder encoder or have one each
/// (the paper's setting: one model per mechanism).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ResponderSharing {
    Shared,
    Separate,
}

/// Everything needed to rebuild the model's layers, stored in the bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub mechanisms: Vec<Mechanism>,
    pub responder: ResponderSharing,
    /// Dropout in the attention and the heads.
    pub dropout: f64,
    /// Whether response tokens may attend to seeker padding. The original code passes no mask
    /// (its inputs are padded to 64, so padding is attended); epitome masks it.
    pub mask_seeker_padding: bool,
    /// Pad every post to the maximum length, as the original code does. Only imported
    /// checkpoints need it: with an unmasked seeker, the padding changes the result.
    #[serde(default)]
    pub pad_to_max_len: bool,
    /// How levels are decided from their probabilities (`epitome tune-offsets`); plain argmax
    /// when empty, and then absent from bundle.json, so that bundles made before it keep
    /// their settings digests.
    #[serde(default, skip_serializing_if = "LevelOffsets::is_empty")]
    pub level_offsets: LevelOffsets,
    /// The kind of level head; absent from bundle.json when it is the paper's softmax, for
    /// the same reason.
    #[serde(default, skip_serializing_if = "LevelHead::is_softmax")]
    pub level_head: LevelHead,
    /// Which response state the level head reads; absent from bundle.json when it is the
    /// paper's first token, for the same reason.
    #[serde(default, skip_serializing_if = "LevelPooling::is_first")]
    pub level_pooling: LevelPooling,
}

pub const SEEKER_PREFIX: &str = "seeker";
pub const RESPONDER_PREFIX: &str = "responder";

impl ModelConfig {
    /// Weight-name prefix of the responder encoder used by `m`.
    pub fn responder_prefix(&self, m: Mechanism) -> String {
        match self.responder {
            ResponderSharing::Shared => RESPONDER_PREFIX.to_owned(),
            ResponderSharing::Separate => format!("{RESPONDER_PREFIX}.{}", m.code()),
        }
    }

    pub fn responder_prefixes(&self) -> Vec<String> {
        match self.responder {
            ResponderSharing::Shared => vec![RESPONDER_PREFIX.to_owned()],
            ResponderSharing::Separate => self
                .mechanisms
                .iter()
                .map(|&m| self.responder_prefix(m))
                .collect(),
        }
    }
}

/// One-head scaled dot-product attention from response tokens (queries) to seeker tokens.
struct CrossAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl CrossAttention {
    fn load(vb: VarBuilder, hidden: usize) -> Result<Self> {
        Ok(Self {
            q: Linear::load(vb.pp("q_linear"), hidden, hidden)?,
            k: Linear::load(vb.pp("k_linear"), hidden, hidden)?,
            v: Linear::load(vb.pp("v_linear"), hidden, hidden)?,
            out: Linear::load(vb.pp("out"), hidden, hidden)?,
        })
    }

    /// Keys and values over the seeker tokens.
    fn keys(&self, seeker: &Tensor) -> Result<Keys> {
        Ok(Keys {
            k: self.k.forward(seeker)?,
            v: self.v.forward(seeker)?,
        })
    }

    /// `seeker_lengths`: the seeker tokens each response row may attend to.
    fn attend(
        &self,
        queries: &Tensor,
        keys: &Keys,
        seeker_lengths: &[usize],
        dropout: Dropout,
        mode: Mode,
    ) -> Result<Tensor> {
        let context = kernels::attention(
            queries,
            &keys.k,
            &keys.v,
            1,
            seeker_lengths,
            dropout.attention(mode),
        )?;
        self.out.forward(&context)
    }
}

/// One mechanism's cross-attention keys and values, (batch, seeker tokens, hidden) each.
struct Keys {
    k: Tensor,
    v: Tensor,
}

/// What the heads need from the seeker encoder: every mechanism's keys and values (or, for
/// folded heads, the states themselves), and how many seeker tokens each row may attend to.
/// Computing it needs only the seeker states, so the serving path computes it on the seeker
/// encoder's thread while the responder runs.
pub struct SeekerSide {
    keys: SeekerKeys,
    lengths: Vec<usize>,
}

enum SeekerKeys {
    PerMechanism(Vec<Keys>),
    /// (batch, seeker tokens, hidden): what folded heads attend to, keys and values alike.
    States(Tensor),
}

impl SeekerSide {
    /// The side of the batch's rows `rows`, in that order: what scoring those pairs again
    /// (close calls under int8) needs of their seeker posts, without encoding them again.
    pub fn rows(&self, rows: &[usize]) -> Result<Self> {
        let lengths = rows.iter().map(|&r| self.lengths[r]).collect();
        let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let device = match &self.keys {
            SeekerKeys::States(states) => states.device(),
            SeekerKeys::PerMechanism(keys) => match keys.first() {
                Some(k) => k.k.device(),
                None => &candle_core::Device::Cpu,
            },
        };
        let index = Tensor::new(index.as_slice(), device)?;
        let keys = match &self.keys {
            SeekerKeys::States(states) => SeekerKeys::States(states.index_select(&index, 0)?),
            SeekerKeys::PerMechanism(keys) => SeekerKeys::PerMechanism(
                keys.iter()
                    .map(|k| {
                        Ok(Keys {
                            k: k.k.index_select(&index, 0)?,
                            v: k.v.index_select(&index, 0)?,
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        Ok(Self { keys, lengths })
    }
}

/// What the heads need from the responder encoder(s): their states, every mechanism's
/// queries, which likewise need nothing of the seeker, and which tokens are real.
pub struct ResponseSide {
    states: Vec<Tensor>,
    queries: Vec<Tensor>,
    /// (batch, response tokens): 1 for real tokens, 0 for padding.
    mask: Tensor,
}

struct MechanismLayers {
    mechanism: Mechanism,
    responder: usize,
    attention: CrossAttention,
    level_dense: Linear,
    level_out: Linear,
    rationale: Linear,
}

/// Logits of one mechanism for a batch.
pub struct MechanismLogits {
    pub mechanism: Mechanism,
    /// (batch, 3): scores whose softmax is the levels' probabilities.
    pub level: Tensor,
    /// (batch, response tokens, 2)
    pub rationale: Tensor,
}

pub struct BiEncoder {
    seeker: Encoder,
    responders: Vec<Encoder>,
    mechanisms: Vec<MechanismLayers>,
    /// Every mechanism's attention and rationale head multiplied out, in `mechanisms`' order,
    /// when none of them trains; inference then runs them.
    folded: Option<Vec<FoldedAttention>>,
    dropout: Dropout,
    config: ModelConfig,
    precision: Precision,
    span: tracing::Span,
}

impl BiEncoder {
    /// Builds the model from `vb`, whose names are laid out as described in the module docs.
    pub fn load(vb: VarBuilder, encoder: &EncoderConfig, config: &ModelConfig) -> Result<Self> {
        let hidden = encoder.hidden_size;
        let seeker = Encoder::load(vb.pp(SEEKER_PREFIX), encoder)?;
        let prefixes = config.responder_prefixes();
        let responders = prefixes
            .iter()
            .map(|p| Encoder::load(vb.pp(p), encoder))
            .collect::<Result<Vec<_>>>()?;
        let mechanisms = config
            .mechanisms
            .iter()
            .map(|&m| {
                let mvb = vb.pp(m.code());
                let head = mvb.pp("empathy_classifier");
                let own = config.responder_prefix(m);
                Ok(MechanismLayers {
                    mechanism: m,
                    responder: prefixes.iter().position(|p| *p == own).unwrap_or(0),
                    attention: CrossAttention::load(mvb.pp("attn"), hidden)?,
                    level_dense: Linear::load(head.pp("dense"), hidden, hidden)?,
                    level_out: Linear::load(
                        head.pp("out_proj"),
                        hidden,
                        config.level_head.outputs(),
                    )?,
                    rationale: Linear::load(mvb.pp("rationale_classifier"), hidden, 2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let folded = mechanisms
            .iter()
            .map(|m| {
                let a = &m.attention;
                FoldedAttention::fold(&a.q, &a.k, &a.v, &a.out, &m.rationale)
            })
            .collect::<Result<Option<Vec<_>>>>()?;
        Ok(Self {
            seeker,
            responders,
            mechanisms,
            folded,
            dropout: Dropout::new(config.dropout),
            config: config.clone(),
            precision: Precision::F32,
            span: tracing::span!(tracing::Level::TRACE, "biencoder"),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Whether inference runs the heads multiplied out (see [`super::folded`]): for a model
    /// none of whose heads trains.
    pub fn heads_are_folded(&self) -> bool {
        self.folded.is_some()
    }

    /// The number format of the encoders' products at inference; f32 unless set.
    /// [`Precision::Auto`] is resolved for this CPU here.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision.resolve();
    }

    /// How levels are decided from now on; the tensors are untouched.
    pub fn set_level_offsets(&mut self, offsets: LevelOffsets) {
        self.config.level_offsets = offsets;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The inference mode of the encoders at `precision`: quantized products under int8.
    fn infer_mode(precision: Precision) -> Mode<'static> {
        match precision.resolve() {
            Precision::Int8 => Mode::Quantized,
            Precision::F32 | Precision::Auto => Mode::Infer,
        }
    }

    /// Hidden states of the frozen seeker encoder. It never trains, so it runs without dropout
    /// and its output can be computed once and reused by every mechanism and epoch.
    ///
    /// It runs in f32 at every precision: its states are what a file's scoring caches, and
    /// under int8 the close calls are scored again in f32 from the same cached states, so only
    /// their responses are encoded twice. Quantizing it too left int8 no more accurate (8/15/1
    /// ER/IP/EX level changes on 2,626 pairs, against 8/14/1 with it in f32) and made each
    /// close call encode its seeker post again.
    pub fn encode_seekers(&self, batch: &TokenBatch) -> Result<Tensor> {
        Ok(self.seeker.forward(batch, Mode::Infer)?.detach())
    }

    /// Logits for every mechanism, given the seeker states (batch, seeker tokens, hidden) and
    /// their (batch, seeker tokens) mask.
    pub fn forward(
        &self,
        seeker_states: &Tensor,
        seeker_mask: &Tensor,
        response: &TokenBatch,
        mode: Mode,
    ) -> Result<Vec<MechanismLogits>> {
        let responses = self.encode_responses(response, mode)?;
        self.heads(seeker_states, seeker_mask, &responses, &response.mask, mode)
    }

    /// Hidden states of the responder encoder(s): one tensor when shared, one per mechanism
    /// when separate. [`Mode::Infer`] runs at the model's precision.
    pub fn encode_responses(&self, response: &TokenBatch, mode: Mode) -> Result<Vec<Tensor>> {
        let mode = match mode {
            Mode::Infer => Self::infer_mode(self.precision),
            other => other,
        };
        self.run_responders(response, mode)
    }

    /// [`BiEncoder::encode_responses`] for inference at a precision other than the model's.
    pub fn encode_responses_at(
        &self,
        response: &TokenBatch,
        precision: Precision,
    ) -> Result<Vec<Tensor>> {
        self.run_responders(response, Self::infer_mode(precision))
    }

    fn run_responders(&self, response: &TokenBatch, mode: Mode) -> Result<Vec<Tensor>> {
        self.responders
            .iter()
            .map(|r| r.forward(response, mode))
            .collect()
    }

    /// The per-mechanism layers on top of the encoders' states.
    pub fn heads(
        &self,
        seeker_states: &Tensor,
        seeker_mask: &Tensor,
        responses: &[Tensor],
        response_mask: &Tensor,
        mode: Mode,
    ) -> Result<Vec<MechanismLogits>> {
        let seeker = self.seeker_side(seeker_states, seeker_mask)?;
        let response = self.response_side(responses.to_vec(), response_mask)?;
        self.heads_of(&seeker, &response, mode)
    }

    /// The seeker's part of the heads (see [`SeekerSide`]).
    pub fn seeker_side(&self, seeker_states: &Tensor, seeker_mask: &Tensor) -> Result<SeekerSide> {
        let lengths: Vec<usize> = if self.config.mask_seeker_padding {
            seeker_mask
                .sum(1)?
                .to_vec1::<f32>()?
                .into_iter()
                .map(|n| n.round() as usize)
                .collect()
        } else {
            vec![seeker_states.dim(1)?; seeker_states.dim(0)?]
        };
        let keys = if self.folded.is_some() {
            SeekerKeys::States(seeker_states.clone())
        } else {
            SeekerKeys::PerMechanism(
                self.mechanisms
                    .iter()
                    .map(|m| m.attention.keys(seeker_states))
                    .collect::<Result<_>>()?,
            )
        };
        Ok(SeekerSide { keys, lengths })
    }

    /// The responder's part of the heads (see [`ResponseSide`]), from `encode_responses` and
    /// the response batch's mask.
    pub fn response_side(&self, states: Vec<Tensor>, mask: &Tensor) -> Result<ResponseSide> {
        let queries = match &self.folded {
            Some(folded) => self
                .mechanisms
                .iter()
                .zip(folded)
                .map(|(m, f)| f.queries(&states[m.responder]))
                .collect::<Result<_>>()?,
            None => self
                .mechanisms
                .iter()
                .map(|m| m.attention.q.forward(&states[m.responder]))
                .collect::<Result<_>>()?,
        };
        Ok(ResponseSide {
            states,
            queries,
            mask: mask.clone(),
        })
    }

    /// The per-mechanism layers, from both encoders' parts.
    pub fn heads_of(
        &self,
        seeker: &SeekerSide,
        response: &ResponseSide,
        mode: Mode,
    ) -> Result<Vec<MechanismLogits>> {
        let _enter = self.span.enter();
        let keys = match (&seeker.keys, &self.folded) {
            (SeekerKeys::States(states), Some(folded)) if !mode.is_train() => {
                return self.folded_heads_of(folded, states, &seeker.lengths, response);
            }
            (SeekerKeys::PerMechanism(keys), None) => keys,
            _ => {
                return Err(candle_core::Error::Msg(
                    "the heads were folded for inference: they cannot train".into(),
                ))
            }
        };
        self.mechanisms
            .iter()
            .zip(keys.iter().zip(&response.queries))
            .map(|(m, (keys, queries))| {
                let hr = &response.states[m.responder];
                let attended =
                    m.attention
                        .attend(queries, keys, &seeker.lengths, self.dropout, mode)?;
                let hr = (hr + self.dropout.forward(&attended, mode)?)?;
                let pooled = self.config.level_pooling.pool(&hr, &response.mask)?;
                let x = self.dropout.forward(&pooled, mode)?;
                let level = self.level_scores(m, &x, mode)?;
                // After the level head's dropout: training draws its masks in this order.
                let rationale = m.rationale.forward(&self.dropout.forward(&hr, mode)?)?;
                Ok(MechanismLogits {
                    mechanism: m.mechanism,
                    level,
                    rationale,
                })
            })
            .collect()
    }

    /// [`BiEncoder::heads_of`] for folded heads, at inference.
    fn folded_heads_of(
        &self,
        folded: &[FoldedAttention],
        seeker_states: &Tensor,
        seeker_lengths: &[usize],
        response: &ResponseSide,
    ) -> Result<Vec<MechanismLogits>> {
        self.mechanisms
            .iter()
            .zip(folded.iter().zip(&response.queries))
            .map(|(m, (f, queries))| {
                let context = kernels::attention(
                    queries,
                    seeker_states,
                    seeker_states,
                    1,
                    seeker_lengths,
                    None,
                )?;
                let out = f.outputs(
                    &response.states[m.responder],
                    &context,
                    self.config.level_pooling,
                    &response.mask,
                )?;
                Ok(MechanismLogits {
                    mechanism: m.mechanism,
                    level: self.level_scores(m, &out.pooled, Mode::Infer)?,
                    rationale: out.rationale,
                })
            })
            .collect()
    }

    /// The level head on the pooled response state (after the attention and its dropout).
    fn level_scores(&self, m: &MechanismLayers, pooled: &Tensor, mode: Mode) -> Result<Tensor> {
        let x = m.level_dense.forward(pooled)?.relu()?;
        let x = self.dropout.forward(&x, mode)?;
        self.config
            .level_head
            .level_scores(&m.level_out.forward(&x)?)
    }
}
