//! Domain-adaptive pretraining (Gururangan et al., ACL 2020, "Don't Stop Pretraining"): the
//! encoder goes on with masked-LM training on the seeker and response posts of the training
//! split before it is fine-tuned, so that its representations fit peer-support text. The
//! original code's users asked for it (upstream issue #14). The result is an encoder directory
//! that `train --encoder` reads like any other, with `pretrain.json` saying how it was made.
//!
//! Only the training side of the split that `train` will draw is read (the same seed, dev share
//! or fold): a dev post seen here, even without its labels, would flatter the dev metrics.
//! The word embeddings stay as they are (the masked-LM decoder shares them), as fine-tuning
//! keeps them by default.

pub mod masking;

use crate::data::{check_split_options, load_epitome, Dataset, Example, Fold, LoadReport, Split};
use crate::digest::sha256_file;
use crate::encoder::layers::Mode;
use crate::encoder::{
    Encoder, EncoderError, MlmHead, PretrainedEncoder, TokenBatch, CONFIG_FILE, TOKENIZER_FILE,
    WEIGHTS_FILE,
};
use crate::model::params::{registered_vars, ParamSource, TrainPolicy};
use crate::progress::{Progress, Unit};
use crate::rng::SplitMix64;
use crate::text::{Encoded, TextEncoder};
use crate::train::{batches_of_similar_length, linear_schedule, AdamW, Gradients, TrainError};
use crate::{Error, OptionError};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use masking::{MaskedText, Masker};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The file beside an adapted encoder's weights that records how it was made.
pub const PRETRAIN_FILE: &str = "pretrain.json";

/// Where the word embeddings are, in the names [`PretrainedEncoder::load_tensors`] gives.
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";
/// The masked-LM head's tensors, which are not written out.
const HEAD_PREFIX: &str = "cls.";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainOptions {
    pub epochs: usize,
    /// Texts per step.
    pub batch_size: usize,
    pub lr: f64,
    /// Peak learning rate of the masked-LM head, which starts from random values (the
    /// encoder's checkpoint has none) and must learn faster than the encoder moves.
    pub head_lr: f64,
    /// Fraction of the steps spent warming the learning rate up linearly from 0.
    pub warmup: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Share of each text's real tokens the model predicts.
    pub mask_prob: f64,
    /// Maximum tokens of each post, specials included: the fine-tuning's.
    pub max_len: usize,
    /// Seed of the head's initialisation, the masks, dropout and the batch order.
    pub seed: u64,
    /// The split whose training side is read: `train`'s `--split-seed` (or `--seed`).
    pub split_seed: u64,
    pub dev_fraction: f64,
    pub fold: Option<Fold>,
    /// Use only the first N pairs (smoke tests).
    pub limit: Option<usize>,
}

impl Default for PretrainOptions {
    /// The settings of docs/RESULTS.md's pretraining row; the split is `train`'s default one.
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 32,
            lr: 5e-5,
            head_lr: 1e-3,
            warmup: 0.06,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            mask_prob: 0.15,
            max_len: 64,
            seed: 12,
            split_seed: 12,
            dev_fraction: 0.1,
            fold: None,
            limit: None,
        }
    }
}

impl PretrainOptions {
    pub fn validate(&self) -> Result<(), OptionError> {
        OptionError::check(self.epochs >= 1, "--epochs", "at least 1")?;
        OptionError::check(self.batch_size >= 1, "--batch-size", "at least 1")?;
        OptionError::check(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr",
            "a positive number",
        )?;
        OptionError::check(
            self.head_lr > 0.0 && self.head_lr.is_finite(),
            "--head-lr",
            "a positive number",
        )?;
        OptionError::check((0.0..1.0).contains(&self.warmup), "--warmup", "in [0, 1)")?;
        OptionError::check(
            self.mask_prob > 0.0 && self.mask_prob < 1.0,
            "--mask-prob",
            "in (0, 1)",
        )?;
        OptionError::check(self.max_len >= 4, "--max-len", "at least 4")?;
        check_split_options(self.dev_fraction, self.fold)
    }

    /// The command that repeats this run, its data and output paths written `DATA` and `OUT`
    /// (they differ from machine to machine), as `train` records its command.
    pub fn command_line(&self) -> String {
        let base = Self::default();
        let mut flags = vec![format!(
            "epitome pretrain --data DATA --out OUT --seed {} --split-seed {}",
            self.seed, self.split_seed
        )];
        macro_rules! flag {
            ($($field:ident => $name:literal),*) => {
                $( if self.$field != base.$field { flags.push(format!("--{} {}", $name, self.$field)); } )*
            };
        }
        flag!(
            epochs => "epochs",
            batch_size => "batch-size",
            lr => "lr",
            head_lr => "head-lr",
            warmup => "warmup",
            weight_decay => "weight-decay",
            max_grad_norm => "max-grad-norm",
            mask_prob => "mask-prob",
            max_len => "max-len",
            dev_fraction => "dev-fraction"
        );
        if let Some(f) = self.fold {
            flags.push(format!("--fold {}/{}", f.index, f.count));
        }
        if let Some(l) = self.limit {
            flags.push(format!("--limit {l}"));
        }
        flags.join(" ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error("the tokenizer {} has no mask token ([MASK] or <mask>), which masked-LM training needs", path.display())]
    NoMaskToken { path: PathBuf },
    #[error("the encoder {} has no {WORD_EMBEDDINGS}", path.display())]
    NoWordEmbeddings { path: PathBuf },
    #[error("no training texts: raise --limit or lower --dev-fraction")]
    NoTexts,
}

/// Each post of `examples` once, seeker posts and responses alike, in dataset order.
pub fn corpus<'a>(examples: &[&'a Example]) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    examples
        .iter()
        .flat_map(|e| [e.seeker_post.as_str(), e.response_post.as_str()])
        .filter(|t| seen.insert(*t))
        .collect()
}

/// Masked-LM loss and accuracy over a set of texts.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MlmScore {
    /// Mean cross-entropy per predicted token, in nats.
    pub loss: f64,
    /// Share of predicted tokens whose most probable token is the original.
    pub accuracy: f64,
    pub tokens: usize,
}

/// An encoder with its masked-LM head, being trained.
pub struct MlmTrainer {
    encoder: Encoder,
    head: MlmHead,
    /// The encoder's trainable tensors, then the head's, each part sorted by name.
    names: Vec<String>,
    vars: Vec<Var>,
    /// How many of `names` are the encoder's.
    encoder_vars: usize,
    /// The encoder's tensors that do not train (the word embeddings, buffers, a pooler), as
    /// loaded: the adapted encoder keeps them.
    fixed: HashMap<String, Tensor>,
    /// One optimizer each, for their own learning rates.
    encoder_optimizer: AdamW,
    head_optimizer: AdamW,
    dropout_rng: Mutex<SplitMix64>,
    pad_id: u32,
    device: Device,
}

impl MlmTrainer {
    /// The encoder's tensors trainable except the word embeddings; a new head initialised from
    /// `seed`.
    pub fn new(
        encoder: &PretrainedEncoder,
        seed: u64,
        weight_decay: f64,
        device: &Device,
    ) -> Result<Self, Error> {
        let tensors = encoder.load_tensors(device)?;
        // Tensor clones share their storage: this keeps nothing alive that the model does not.
        let mut fixed = tensors.clone();
        let word_embeddings = tensors.get(WORD_EMBEDDINGS).cloned().ok_or_else(|| {
            PretrainError::NoWordEmbeddings {
                path: encoder.weights_path(),
            }
        })?;
        let varmap = VarMap::new();
        let policy = TrainPolicy {
            varmap: varmap.clone(),
            rng: Mutex::new(SplitMix64::new(seed)),
            is_frozen: Box::new(|name: &str| name == WORD_EMBEDDINGS),
            may_init: Box::new(|name: &str| name.starts_with(HEAD_PREFIX)),
        };
        let source = ParamSource::train(tensors, policy);
        let vb = source.var_builder(device);
        let model_encoder = Encoder::load(vb.clone(), &encoder.config)?;
        let head = MlmHead::load(vb, &encoder.config, word_embeddings)?;
        let missing = source.missing();
        if !missing.is_empty() {
            return Err(TrainError::EncoderLacksTensors {
                path: encoder.weights_path(),
                names: missing,
            }
            .into());
        }
        let mut registered = registered_vars(&varmap);
        // Stable: each part stays sorted by name.
        registered.sort_by_key(|(n, _)| n.starts_with(HEAD_PREFIX));
        let encoder_vars = registered.partition_point(|(n, _)| !n.starts_with(HEAD_PREFIX));
        let (names, vars): (Vec<String>, Vec<Var>) = registered.into_iter().unzip();
        fixed.retain(|name, _| !names.contains(name));
        Ok(Self {
            encoder: model_encoder,
            head,
            encoder_optimizer: AdamW::new(vars[..encoder_vars].to_vec(), weight_decay, 1e-8),
            head_optimizer: AdamW::new(vars[encoder_vars..].to_vec(), weight_decay, 1e-8),
            encoder_vars,
            fixed,
            vars,
            names,
            dropout_rng: Mutex::new(SplitMix64::new(seed ^ 0x5EED)),
            pad_id: encoder.config.pad_token_id,
            device: device.clone(),
        })
    }

    /// Names of the trainable tensors: the encoder's, then the head's.
    pub fn trainable_names(&self) -> &[String] {
        &self.names
    }

    /// Vocabulary logits at the batch's chosen positions and the original ids there.
    fn logits(
        &self,
        texts: &[&Encoded],
        masked: &[MaskedText],
        mode: Mode,
    ) -> Result<(Tensor, Vec<u32>), Error> {
        let rows: Vec<(&[u32], &[u32])> = masked
            .iter()
            .zip(texts)
            .map(|(m, t)| (m.ids.as_slice(), t.type_ids.as_slice()))
            .collect();
        let batch = TokenBatch::new(&rows, self.pad_id, None, &self.device)?;
        let width = batch.width();
        let hidden = self.encoder.forward(&batch, mode)?;
        let (b, w, h) = hidden.dims3()?;
        let (positions, targets): (Vec<u32>, Vec<u32>) = masked
            .iter()
            .enumerate()
            .flat_map(|(row, m)| {
                m.targets
                    .iter()
                    .map(move |&(i, id)| ((row * width + i) as u32, id))
            })
            .unzip();
        let positions = Tensor::new(positions.as_slice(), &self.device)?;
        // Only the chosen positions go through the head: its decoder is vocab × hidden.
        let chosen = hidden.reshape((b * w, h))?.index_select(&positions, 0)?;
        Ok((self.head.forward(&chosen, mode)?, targets))
    }

    /// Loss and flattened gradients of every trainable tensor (in [`Self::trainable_names`]
    /// order; `None` where a tensor got no gradient), without updating anything.
    pub fn gradients(
        &self,
        texts: &[&Encoded],
        masked: &[MaskedText],
    ) -> Result<(f32, Gradients), Error> {
        let (logits, targets) = self.logits(texts, masked, Mode::Train(&self.dropout_rng))?;
        let targets = Tensor::new(targets.as_slice(), &self.device)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let value = loss.to_scalar::<f32>()?;
        let grads = loss.backward()?;
        let mut gradients = self.encoder_optimizer.gradients(&grads)?;
        gradients.extend(self.head_optimizer.gradients(&grads)?);
        Ok((value, gradients))
    }

    /// One optimisation step at learning rates `lr` (the encoder) and `head_lr`, the
    /// gradients' global norm clipped to `max_grad_norm`; returns the loss.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        texts: &[&Encoded],
        masked: &[MaskedText],
        lr: f64,
        head_lr: f64,
        max_grad_norm: f64,
        step: usize,
    ) -> Result<f32, Error> {
        let (loss, gradients) = self.gradients(texts, masked)?;
        if !loss.is_finite() {
            return Err(TrainError::Diverged { loss, step }.into());
        }
        let (_, scale) = AdamW::clipping(&gradients, max_grad_norm);
        let (encoder, head) = gradients.split_at(self.encoder_vars);
        self.encoder_optimizer.step(encoder, lr, scale)?;
        self.head_optimizer.step(head, head_lr, scale)?;
        Ok(loss)
    }

    /// Loss and accuracy over `batches` of masked texts, without dropout.
    pub fn score(&self, batches: &[(Vec<&Encoded>, Vec<MaskedText>)]) -> Result<MlmScore, Error> {
        let (mut loss, mut correct, mut tokens) = (0f64, 0usize, 0usize);
        for (texts, masked) in batches {
            let (logits, targets) = self.logits(texts, masked, Mode::Infer)?;
            let nll = candle_nn::loss::cross_entropy(
                &logits,
                &Tensor::new(targets.as_slice(), &self.device)?,
            )?
            .to_scalar::<f32>()? as f64;
            let best = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += best.iter().zip(&targets).filter(|(a, b)| a == b).count();
            loss += nll * targets.len() as f64;
            tokens += targets.len();
        }
        Ok(MlmScore {
            loss: loss / tokens.max(1) as f64,
            accuracy: correct as f64 / tokens.max(1) as f64,
            tokens,
        })
    }

    /// Every tensor of the encoder as loaded, the trained ones at their current values; the
    /// head is left out.
    pub fn adapted_tensors(&self) -> Result<HashMap<String, Tensor>, Error> {
        let mut tensors = self.fixed.clone();
        for (name, var) in self.names.iter().zip(&self.vars).take(self.encoder_vars) {
            tensors.insert(name.clone(), var.as_tensor().detach().copy()?);
        }
        Ok(tensors)
    }
}

/// One epoch's record in `pretrain.json` and the log.
#[derive(Clone, Debug, Serialize)]
pub struct PretrainEpoch {
    pub epoch: usize,
    pub mean_loss: f64,
    /// The dev side's posts, masked the same way after every epoch.
    pub dev: Option<MlmScore>,
    pub seconds: f64,
}

/// What a pretraining run produced.
#[derive(Debug)]
pub struct PretrainSummary {
    pub history: Vec<PretrainEpoch>,
    pub texts: usize,
    pub dev_texts: usize,
    pub seconds: f64,
    pub out: PathBuf,
}

/// `pretrain.json`: how an adapted encoder was made, and which split's training side it read.
#[derive(Debug, Serialize, Deserialize)]
pub struct PretrainRecord {
    pub command: String,
    pub options: PretrainOptions,
    /// The encoder it started from, and the SHA-256 of its weights.
    pub source_encoder: String,
    pub source_weights_sha256: String,
    pub data: LoadReport,
    pub split: Split,
    pub texts: usize,
    pub history: serde_json::Value,
    pub seconds: f64,
}

/// Reads `pretrain.json` beside an encoder's weights, where there is one; one that cannot be
/// read is warned about and taken as absent.
pub fn read_record(encoder_dir: &Path) -> Option<PretrainRecord> {
    let path = encoder_dir.join(PRETRAIN_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(
                "{} cannot be read ({e}): which posts its pretraining read is unknown",
                path.display()
            );
            None
        }
    }
}

/// Masked-LM training of `encoder` on the posts of the training side of the split in
/// `data_dir`; writes the adapted encoder directory to `out`.
pub fn pretrain(
    data_dir: &Path,
    encoder: &PretrainedEncoder,
    encoder_source: &str,
    options: &PretrainOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<PretrainSummary, Error> {
    options.validate()?;
    let started = Instant::now();
    let device = Device::Cpu;
    let (Dataset { examples, report }, split) = load_epitome(data_dir)?.for_run(
        options.limit,
        options.fold,
        options.dev_fraction,
        options.split_seed,
    );
    let (train_side, dev_side) = split.partition(&examples);
    let texts = corpus(&train_side);
    let seen: HashSet<&str> = texts.iter().copied().collect();
    let dev_texts: Vec<&str> = corpus(&dev_side)
        .into_iter()
        .filter(|t| !seen.contains(t))
        .collect();
    if texts.is_empty() {
        return Err(PretrainError::NoTexts.into());
    }
    let text = encoder.text_encoder(options.max_len)?;
    let masker = Masker {
        mask_id: ["[MASK]", "<mask>"]
            .iter()
            .find_map(|t| text.token_id(t))
            .ok_or_else(|| PretrainError::NoMaskToken {
                path: encoder.tokenizer_path(),
            })?,
        vocab_size: encoder.config.vocab_size as u32,
        prob: options.mask_prob,
    };
    let encoded = encode_all(&text, &texts)?;
    let dev_encoded = encode_all(&text, &dev_texts)?;
    // The dev posts' masks are drawn once, so that epochs compare on the same predictions.
    let dev_batches = masked_batches(
        &dev_encoded,
        options.batch_size,
        &masker,
        &mut SplitMix64::new(options.seed ^ 0xDE5),
        false,
    );

    let mut trainer = MlmTrainer::new(encoder, options.seed, options.weight_decay, &device)?;
    let steps_per_epoch = encoded.len().div_ceil(options.batch_size);
    let total_steps = steps_per_epoch * options.epochs;
    tracing::info!(
        texts = encoded.len(),
        dev_texts = dev_encoded.len(),
        trainable_tensors = trainer.trainable_names().len(),
        "masked-LM training, {} epochs of {} steps",
        options.epochs,
        steps_per_epoch
    );
    let mut rng = SplitMix64::new(options.seed.wrapping_add(1));
    let mut history = Vec::new();
    let mut step = 0;
    for epoch in 1..=options.epochs {
        let epoch_start = Instant::now();
        progress.begin(
            &format!("epoch {epoch}/{}", options.epochs),
            Some(steps_per_epoch as u64),
            Unit::Steps,
        );
        let mut loss_sum = 0.0;
        let batches = masked_batches(&encoded, options.batch_size, &masker, &mut rng, true);
        for (k, (texts, masked)) in batches.iter().enumerate() {
            let lr = |peak| linear_schedule(peak, options.warmup, step, total_steps);
            let (encoder_lr, head_lr) = (lr(options.lr), lr(options.head_lr));
            step += 1;
            let loss = trainer.step(
                texts,
                masked,
                encoder_lr,
                head_lr,
                options.max_grad_norm,
                step,
            )?;
            loss_sum += loss as f64;
            progress.message(format!("loss {:.4}", loss_sum / (k + 1) as f64));
            progress.advance(1);
        }
        progress.end();
        let dev = if dev_batches.is_empty() {
            None
        } else {
            Some(trainer.score(&dev_batches)?)
        };
        let record = PretrainEpoch {
            epoch,
            mean_loss: loss_sum / batches.len().max(1) as f64,
            dev,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch,
            loss = format!("{:.4}", record.mean_loss),
            dev_loss = dev.map(|d| format!("{:.4}", d.loss)),
            dev_accuracy = dev.map(|d| format!("{:.4}", d.accuracy)),
            seconds = format!("{:.0}", record.seconds),
            "epoch done"
        );
        history.push(record);
    }

    let tensors = trainer.adapted_tensors()?;
    let weights_path = encoder.weights_path();
    let record = PretrainRecord {
        command: options.command_line(),
        options: options.clone(),
        source_encoder: encoder_source.to_owned(),
        source_weights_sha256: sha256_file(&weights_path).map_err(|e| EncoderError::Invalid {
            path: weights_path.clone(),
            message: format!("cannot read the weights: {e}"),
        })?,
        data: report,
        split,
        texts: encoded.len(),
        history: serde_json::to_value(&history).unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
    };
    write_encoder(out, &encoder.dir, &tensors, &record)?;
    Ok(PretrainSummary {
        history,
        texts: encoded.len(),
        dev_texts: dev_encoded.len(),
        seconds: started.elapsed().as_secs_f64(),
        out: out.to_path_buf(),
    })
}

fn encode_all(text: &TextEncoder, posts: &[&str]) -> Result<Vec<Encoded>, Error> {
    Ok(posts
        .iter()
        .map(|p| text.encode(p))
        .collect::<Result<_, _>>()?)
}

/// `encoded` in batches, each text masked: of similar lengths in a shuffled order when
/// `shuffle`, else in order.
fn masked_batches<'a>(
    encoded: &'a [Encoded],
    batch_size: usize,
    masker: &Masker,
    rng: &mut SplitMix64,
    shuffle: bool,
) -> Vec<(Vec<&'a Encoded>, Vec<MaskedText>)> {
    let order: Vec<Vec<usize>> = if shuffle {
        let lengths: Vec<usize> = encoded.iter().map(Encoded::len).collect();
        batches_of_similar_length(&lengths, batch_size, rng)
    } else {
        (0..encoded.len())
            .collect::<Vec<_>>()
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    };
    order
        .into_iter()
        .map(|rows| {
            let texts: Vec<&Encoded> = rows.iter().map(|&i| &encoded[i]).collect();
            let masked = masker.mask_batch(&texts, rng);
            (texts, masked)
        })
        .collect()
}

/// The adapted encoder as a Hugging Face directory: the source's config and tokenizer, the new
/// weights, and [`PRETRAIN_FILE`].
fn write_encoder(
    out: &Path,
    source_dir: &Path,
    tensors: &HashMap<String, Tensor>,
    record: &PretrainRecord,
) -> Result<(), Error> {
    let io_err = |path: &Path, source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    crate::atomic::replace_dir(out, io_err, |staging| {
        for file in [CONFIG_FILE, TOKENIZER_FILE] {
            let to = staging.join(file);
            std::fs::copy(source_dir.join(file), &to).map_err(|e| io_err(&to, e))?;
        }
        candle_core::safetensors::save(tensors, staging.join(WEIGHTS_FILE))?;
        let json = serde_json::to_string_pretty(record).unwrap_or_default();
        let path = staging.join(PRETRAIN_FILE);
        std::fs::write(&path, json + "\n").map_err(|e| io_err(&path, e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_names_what_differs_from_the_defaults() {
        let o = PretrainOptions {
            epochs: 7,
            mask_prob: 0.2,
            fold: Some(Fold { index: 1, count: 5 }),
            ..PretrainOptions::default()
        };
        assert_eq!(
            o.command_line(),
            "epitome pretrain --data DATA --out OUT --seed 12 --split-seed 12 --epochs 7 \
             --mask-prob 0.2 --fold 1/5"
        );
    }

    #[test]
    fn options_outside_their_range_name_their_flag() {
        for (o, flag) in [
            (
                PretrainOptions {
                    mask_prob: 0.0,
                    ..Default::default()
                },
                "--mask-prob",
            ),
            (
                PretrainOptions {
                    epochs: 0,
                    ..Default::default()
                },
                "--epochs",
            ),
            (
                PretrainOptions {
                    fold: Some(Fold { index: 3, count: 3 }),
                    ..Default::default()
                },
                "--fold",
            ),
        ] {
            assert_eq!(o.validate().unwrap_err().flag, flag);
        }
    }
}
