//! Training the bi-encoder: data preparation, the optimisation loop, dev evaluation after each
//! epoch, best-epoch selection and the bundle.

mod optimizer;
mod options;

pub use optimizer::{linear_schedule, AdamW, Gradients};
pub use options::{ClassWeighting, LevelLossWeights, LevelWeighting, TrainOptions};

use crate::bundle::{self, BundleInfo, EncoderInfo};
use crate::data::{load_epitome, Dataset, Split};
use crate::encoder::layers::Mode;
use crate::encoder::{PretrainedEncoder, TokenBatch};
use crate::evaluate::{evaluate, EvalReport};
use crate::features::{featurize, Features};
use crate::kernels;
use crate::mechanism::{Mechanism, NUM_LEVELS};
use crate::model::loss::{one_hot, weighted_cross_entropy};
use crate::model::params::{registered_vars, ParamSource, TrainPolicy};
use crate::model::{BiEncoder, ModelConfig, RESPONDER_PREFIX, SEEKER_PREFIX};
use crate::predict::{batch_of, Scorer};
use crate::progress::{Progress, Unit};
use crate::rng::SplitMix64;
use crate::text::Encoded;
use crate::Error;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// A model being trained, with its optimizer state.
pub struct Trainer {
    pub model: BiEncoder,
    varmap: VarMap,
    names: Vec<String>,
    optimizer: AdamW,
    dropout_rng: Mutex<SplitMix64>,
    options: TrainOptions,
    /// Level-loss weight per mechanism and level.
    class_weights: [[f32; NUM_LEVELS]; 3],
    device: Device,
    pad_id: u32,
    steps_done: usize,
    total_steps: usize,
}

/// What one optimisation step did.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    pub loss: f32,
    pub grad_norm: f64,
    pub lr: f64,
}

impl Trainer {
    /// Builds a trainable model from a pretrained encoder: the seeker encoder frozen, the
    /// responder encoder(s) trainable copies, the new layers initialised from `options.seed`.
    pub fn new(
        encoder: &PretrainedEncoder,
        mechanisms: &[Mechanism],
        options: &TrainOptions,
        level_counts: [[usize; NUM_LEVELS]; 3],
        total_steps: usize,
        device: &Device,
    ) -> Result<Self, Error> {
        let config = ModelConfig {
            mechanisms: mechanisms.to_vec(),
            responder: options.responder,
            dropout: options.dropout,
            mask_seeker_padding: true,
            pad_to_max_len: false,
            level_offsets: Default::default(),
            level_head: options.level_head,
            level_pooling: options.level_pooling,
        };
        let tensors = bundle::assemble(&config, encoder.load_tensors(device)?, HashMap::new());
        let varmap = VarMap::new();
        let train_embeddings = options.train_embeddings;
        let policy = TrainPolicy {
            varmap: varmap.clone(),
            rng: Mutex::new(SplitMix64::new(options.seed)),
            is_frozen: Box::new(move |name: &str| {
                name.starts_with(&format!("{SEEKER_PREFIX}."))
                    || (!train_embeddings && name.ends_with("embeddings.word_embeddings.weight"))
            }),
            may_init: Box::new(|name: &str| {
                !name.starts_with(SEEKER_PREFIX) && !name.starts_with(RESPONDER_PREFIX)
            }),
        };
        let source = ParamSource::train(tensors, policy);
        let model = BiEncoder::load(source.var_builder(device), &encoder.config, &config)?;
        let missing = source.missing();
        if !missing.is_empty() {
            return Err(TrainError::EncoderLacksTensors {
                path: encoder.weights_path(),
                names: missing,
            }
            .into());
        }
        let (names, vars): (Vec<String>, Vec<Var>) = registered_vars(&varmap).into_iter().unzip();
        // Everything outside the responder encoder(s) is new and starts from random values.
        let head_scale = options.head_lr() / options.lr;
        let optimizer =
            AdamW::new(vars, options.weight_decay, options.adam_eps).with_lr_scales(|i| {
                if names[i].starts_with(RESPONDER_PREFIX) {
                    1.0
                } else {
                    head_scale
                }
            });
        Ok(Self {
            model,
            optimizer,
            varmap,
            names,
            dropout_rng: Mutex::new(SplitMix64::new(options.seed ^ 0x5EED)),
            class_weights: class_weights(options.class_weights, level_counts),
            options: options.clone(),
            device: device.clone(),
            pad_id: encoder.config.pad_token_id,
            steps_done: 0,
            total_steps: total_steps.max(1),
        })
    }

    /// Names of the trainable tensors, sorted.
    pub fn trainable_names(&self) -> &[String] {
        &self.names
    }

    /// The trainable tensors' current values, copied.
    pub fn snapshot(&self) -> Result<HashMap<String, Tensor>, Error> {
        self.names
            .iter()
            // Detached first: a copy of a variable records the copy for backprop, so the
            // snapshot would still count as trainable (and `epitome bench` scored with it
            // through the training products instead of the inference ones).
            .map(|n| Ok((n.clone(), var(&self.varmap, n).as_tensor().detach().copy()?)))
            .collect()
    }

    pub fn restore(&self, snapshot: &HashMap<String, Tensor>) -> Result<(), Error> {
        for n in &self.names {
            if let Some(t) = snapshot.get(n) {
                var(&self.varmap, n).set(t)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        linear_schedule(
            self.options.lr,
            self.options.warmup,
            self.steps_done,
            self.total_steps,
        )
    }

    /// Loss and flattened gradients of every trainable tensor (in [`Self::trainable_names`]
    /// order; `None` where a tensor got no gradient), without updating anything.
    pub fn gradients(
        &self,
        batch: &[&Features],
        seeker_states: &[&Tensor],
    ) -> Result<(f32, Gradients), Error> {
        let response_refs: Vec<&Encoded> = batch.iter().map(|f| &f.response).collect();
        let response = batch_of(&response_refs, self.pad_id, &self.device)?;
        let (states, seeker_mask) = stack_states(seeker_states, &self.device)?;
        let logits = self.model.forward(
            &states,
            &seeker_mask,
            &response,
            Mode::Train(&self.dropout_rng),
        )?;
        let loss = self.loss(batch, &response, &logits)?;
        let loss_value = loss.to_scalar::<f32>()?;
        if !loss_value.is_finite() {
            return Err(TrainError::Diverged {
                loss: loss_value,
                step: self.steps_done + 1,
            }
            .into());
        }
        let grads = loss.backward()?;
        Ok((loss_value, self.optimizer.gradients(&grads)?))
    }

    /// One optimisation step on a batch; `seeker_states` are the frozen seeker encodings of
    /// the batch's pairs, each (tokens, hidden).
    pub fn step(
        &mut self,
        batch: &[&Features],
        seeker_states: &[&Tensor],
    ) -> Result<StepStats, Error> {
        let (loss, gradients) = self.gradients(batch, seeker_states)?;
        let (norm, scale) = AdamW::clipping(&gradients, self.options.max_grad_norm);
        let lr = self.learning_rate();
        self.optimizer.step(&gradients, lr, scale)?;
        self.steps_done += 1;
        Ok(StepStats {
            loss,
            grad_norm: norm,
            lr,
        })
    }

    fn loss(
        &self,
        batch: &[&Features],
        response: &TokenBatch,
        logits: &[crate::model::MechanismLogits],
    ) -> Result<Tensor, Error> {
        let dev = &self.device;
        let width = response.width();
        // Padding weighs 0: the rationale loss covers the response's real tokens only.
        let token_weights = response.mask.flatten_all()?;
        let mut total: Option<Tensor> = None;
        for out in logits {
            let m = out.mechanism.index();
            let levels: Vec<u8> = batch.iter().map(|f| f.levels[m]).collect();
            let weights: Vec<f32> = levels
                .iter()
                .map(|&l| self.class_weights[m][l as usize])
                .collect();
            let level_loss = weighted_cross_entropy(
                &out.level,
                &one_hot(&levels, NUM_LEVELS, dev)?,
                &Tensor::from_vec(weights, batch.len(), dev)?,
            )?;
            let mut token_labels = vec![0u8; batch.len() * width];
            for (i, f) in batch.iter().enumerate() {
                for (t, &flag) in f.rationale[m].iter().enumerate() {
                    token_labels[i * width + t] = u8::from(flag);
                }
            }
            let rationale_loss = weighted_cross_entropy(
                &out.rationale.reshape((batch.len() * width, 2))?,
                &one_hot(&token_labels, 2, dev)?,
                &token_weights,
            )?;
            let level_weight =
                self.options.lambda_ei * self.options.level_loss_weights.get(out.mechanism);
            let part = ((level_loss * level_weight)? + (rationale_loss * self.options.lambda_re)?)?;
            total = Some(match total {
                Some(t) => (t + part)?,
                None => part,
            });
        }
        total.ok_or_else(|| TrainError::NoMechanism.into())
    }

    pub fn scorer<'a>(&'a self, text: &'a crate::text::TextEncoder) -> Scorer<'a> {
        Scorer {
            model: &self.model,
            text,
            pad_id: self.pad_id,
            device: &self.device,
        }
    }

    /// Frozen seeker encodings of `features`, one (tokens, hidden) tensor each.
    pub fn encode_seekers(
        &self,
        features: &[&Features],
        mut on_batch: impl FnMut(usize),
    ) -> Result<Vec<Tensor>, Error> {
        let mut order: Vec<usize> = (0..features.len()).collect();
        order.sort_by_key(|&i| features[i].seeker.len());
        let mut out: Vec<Option<Tensor>> = vec![None; features.len()];
        for chunk in order.chunks(64) {
            let refs: Vec<&Encoded> = chunk.iter().map(|&i| &features[i].seeker).collect();
            let batch = batch_of(&refs, self.pad_id, &self.device)?;
            let states = self.model.encode_seekers(&batch)?;
            for (row, &i) in chunk.iter().enumerate() {
                let len = features[i].seeker.len();
                // In storage of its own: as a view, each pair kept the batch's 64 rows of
                // states (3.9 MB a pair, 10 GB for the Reddit data).
                let row = states.get(row)?.narrow(0, 0, len)?;
                out[i] = Some(kernels::own_storage(&row)?);
            }
            on_batch(chunk.len());
        }
        Ok(out.into_iter().flatten().collect())
    }
}

fn var(varmap: &VarMap, name: &str) -> Var {
    varmap
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
        .expect("names come from the varmap itself")
}

/// Pads per-pair seeker states to a (batch, tokens, hidden) tensor with its 0/1 mask.
fn stack_states(states: &[&Tensor], device: &Device) -> Result<(Tensor, Tensor), Error> {
    let longest = states
        .iter()
        .map(|s| s.dim(0))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(1);
    let mut padded = Vec::with_capacity(states.len());
    let mut mask = Vec::with_capacity(states.len() * longest);
    for s in states {
        let len = s.dim(0)?;
        padded.push(s.pad_with_zeros(0, 0, longest - len)?);
        mask.extend((0..longest).map(|t| if t < len { 1f32 } else { 0.0 }));
    }
    Ok((
        Tensor::stack(&padded, 0)?,
        Tensor::from_vec(mask, (states.len(), longest), device)?,
    ))
}

/// Batches whose responses have similar lengths, in random order. Each batch is padded to its
/// longest response, and 30% of Reddit responses fill the 64 tokens: random batches nearly
/// always pad to 64, while batches cut from length-sorted pools of 16 batches pad little.
/// The pools are drawn at random each epoch, so batches still mix differently every time.
pub fn length_bucketed_batches(
    features: &[Features],
    batch_size: usize,
    rng: &mut SplitMix64,
) -> Vec<Vec<usize>> {
    let lengths: Vec<usize> = features.iter().map(|f| f.response.len()).collect();
    batches_of_similar_length(&lengths, batch_size, rng)
}

/// [`length_bucketed_batches`] of items of the given lengths.
pub fn batches_of_similar_length(
    lengths: &[usize],
    batch_size: usize,
    rng: &mut SplitMix64,
) -> Vec<Vec<usize>> {
    const POOL_BATCHES: usize = 16;
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch_size.max(1)));
    for pool in order.chunks_mut(batch_size.max(1) * POOL_BATCHES) {
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch_size.max(1)).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

fn class_weights(
    kinds: LevelWeighting,
    counts: [[usize; NUM_LEVELS]; 3],
) -> [[f32; NUM_LEVELS]; 3] {
    std::array::from_fn(|m| {
        let kind = kinds.get(Mechanism::ALL[m]);
        let total: usize = counts[m].iter().sum();
        std::array::from_fn(|l| {
            let inverse = if counts[m][l] == 0 {
                1.0
            } else {
                total as f64 / (NUM_LEVELS as f64 * counts[m][l] as f64)
            };
            match kind {
                ClassWeighting::None => 1.0,
                ClassWeighting::Inverse => inverse as f32,
                ClassWeighting::Sqrt => inverse.sqrt() as f32,
            }
        })
    })
}

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the encoder {} lacks tensors: {}", path.display(), names.join(", "))]
    EncoderLacksTensors { path: PathBuf, names: Vec<String> },
    #[error("the loss became {loss} at step {step}: lower --lr")]
    Diverged { loss: f32, step: usize },
    #[error("the model has no mechanism to train")]
    NoMechanism,
    #[error("no training pairs: raise --limit or lower --dev-fraction")]
    NoTrainingPairs,
}

/// One epoch's record in the bundle and the log.
#[derive(Clone, Debug, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub mean_loss: f64,
    pub seconds: f64,
    pub dev_mean_macro_f1: Option<f64>,
    pub dev_macro_f1: Vec<(Mechanism, f64)>,
}

struct BestEpoch {
    score: f64,
    epoch: usize,
    weights: HashMap<String, Tensor>,
    dev: Option<EvalReport>,
}

/// What a training run produced.
pub struct TrainSummary {
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub dev: Option<EvalReport>,
    pub train_pairs: usize,
    pub dev_pairs: usize,
    /// Dev pairs whose posts the encoder's masked-LM pretraining read (`pretrain.json` beside
    /// its weights); their dev metrics flatter the model. `None`: not a pretrained encoder.
    pub dev_pairs_seen_in_pretraining: Option<usize>,
    pub seconds: f64,
    pub out: PathBuf,
}

/// Trains on the EPITOME annotations in `data_dir` and writes a bundle to `out`.
pub fn train(
    data_dir: &Path,
    encoder: &PretrainedEncoder,
    encoder_source: &str,
    options: &TrainOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<TrainSummary, Error> {
    options.validate()?;
    let started = Instant::now();
    let device = Device::Cpu;
    let split_seed = options.split_seed.unwrap_or(options.seed);
    let (Dataset { examples, report }, split) = load_epitome(data_dir)?.for_run(
        options.limit,
        options.fold,
        options.dev_fraction,
        split_seed,
    );
    let not_found: usize = report.spans_not_found.iter().sum();
    let total_spans: usize = report.spans_total.iter().sum();
    tracing::info!(
        pairs = examples.len(),
        spans = total_spans,
        spans_not_found = not_found,
        "loaded annotations from {}",
        data_dir.display()
    );
    let (train_set, dev_set) = split.partition(&examples);
    if train_set.is_empty() {
        return Err(TrainError::NoTrainingPairs.into());
    }
    let dev_seen = dev_pairs_seen_in_pretraining(encoder, &split);
    if let Some(n @ 1..) = dev_seen {
        tracing::warn!(
            "the encoder's masked-LM pretraining read the posts of {n} of the {} dev pairs: \
             their dev metrics will flatter the model; pretrain with this run's split seed \
             ({split_seed}), dev fraction and fold",
            dev_set.len()
        );
    }
    let text = encoder.text_encoder(options.max_len)?;
    let train_features = featurize(&text, &train_set)?;
    let dev_features = featurize(&text, &dev_set)?;
    let mut level_counts = [[0usize; NUM_LEVELS]; 3];
    for f in &train_features {
        for m in 0..3 {
            level_counts[m][f.levels[m] as usize] += 1;
        }
    }
    let steps_per_epoch = train_features.len().div_ceil(options.batch_size);
    let mut trainer = Trainer::new(
        encoder,
        &Mechanism::ALL,
        options,
        level_counts,
        steps_per_epoch * options.epochs,
        &device,
    )?;
    tracing::info!(
        train = train_features.len(),
        dev = dev_features.len(),
        trainable_tensors = trainer.trainable_names().len(),
        "training {} epochs of {} steps",
        options.epochs,
        steps_per_epoch
    );

    progress.begin(
        "encoding seeker posts",
        Some(train_features.len() as u64),
        Unit::Pairs,
    );
    let train_refs: Vec<&Features> = train_features.iter().collect();
    let seeker_states = trainer.encode_seekers(&train_refs, |n| progress.advance(n as u64))?;
    progress.end();

    let mut order_rng = SplitMix64::new(options.seed.wrapping_add(1));
    let mut history = Vec::new();
    let mut best: Option<BestEpoch> = None;
    for epoch in 1..=options.epochs {
        let epoch_start = Instant::now();
        let batches = length_bucketed_batches(&train_features, options.batch_size, &mut order_rng);
        progress.begin(
            &format!("epoch {epoch}/{}", options.epochs),
            Some(steps_per_epoch as u64),
            Unit::Steps,
        );
        let mut loss_sum = 0.0;
        for (k, chunk) in batches.iter().enumerate() {
            let batch: Vec<&Features> = chunk.iter().map(|&i| &train_features[i]).collect();
            let states: Vec<&Tensor> = chunk.iter().map(|&i| &seeker_states[i]).collect();
            let stats = trainer.step(&batch, &states)?;
            loss_sum += stats.loss as f64;
            progress.message(format!("loss {:.4}", loss_sum / (k + 1) as f64));
            progress.advance(1);
            if (k + 1) % 10 == 0 {
                tracing::debug!(
                    epoch,
                    step = k + 1,
                    loss = stats.loss,
                    grad_norm = stats.grad_norm,
                    lr = stats.lr,
                    "step"
                );
            }
        }
        progress.end();
        let mean_loss = loss_sum / steps_per_epoch as f64;
        let dev_report = if dev_features.is_empty() {
            None
        } else {
            progress.begin(
                &format!("epoch {epoch} dev"),
                Some(dev_features.len() as u64),
                Unit::Pairs,
            );
            let r = evaluate(&trainer.scorer(&text), &dev_features, 64, |n| {
                progress.advance(n as u64)
            })?;
            progress.end();
            Some(r)
        };
        let score = dev_report.as_ref().map(|r| r.mean_macro_f1());
        let record = EpochRecord {
            epoch,
            mean_loss,
            seconds: epoch_start.elapsed().as_secs_f64(),
            dev_mean_macro_f1: score,
            dev_macro_f1: dev_report
                .as_ref()
                .map(|r| {
                    r.mechanisms
                        .iter()
                        .map(|m| (m.mechanism, m.level.macro_f1))
                        .collect()
                })
                .unwrap_or_default(),
        };
        tracing::info!(
            epoch,
            loss = format!("{mean_loss:.4}"),
            dev_mean_macro_f1 = score.map(|s| format!("{s:.4}")),
            seconds = format!("{:.0}", record.seconds),
            "epoch done"
        );
        if let Some(r) = &dev_report {
            eprint!("{}", r.table());
        }
        history.push(record);
        // Without a dev set the last epoch is kept.
        let key = score.unwrap_or(epoch as f64);
        if best.as_ref().is_none_or(|b| key > b.score) {
            best = Some(BestEpoch {
                score: key,
                epoch,
                weights: trainer.snapshot()?,
                dev: dev_report,
            });
        }
    }
    let BestEpoch {
        epoch: best_epoch,
        weights,
        dev,
        ..
    } = best.ok_or(crate::OptionError {
        flag: "--epochs",
        requirement: "at least 1",
    })?;
    trainer.restore(&weights)?;
    let info = BundleInfo {
        format_version: bundle::FORMAT_VERSION,
        epitome_version: env!("CARGO_PKG_VERSION").to_owned(),
        model: trainer.model.config().clone(),
        max_len: options.max_len,
        encoder: EncoderInfo {
            source: encoder_source.to_owned(),
            config: encoder.config.clone(),
        },
        training: serde_json::json!({
            "command": options.command_line(),
            "options": options,
            "best_epoch": best_epoch,
            "history": history,
            "train_pairs": train_features.len(),
            "dev_pairs": dev_features.len(),
            "dev_pairs_seen_in_pretraining": dev_seen,
            "seconds": started.elapsed().as_secs_f64(),
        }),
        data: Some(report),
        split: Some(split),
        dev_metrics: dev
            .as_ref()
            .map(|d| serde_json::to_value(d).unwrap_or_default()),
        files: Default::default(),
        settings_sha256: Default::default(),
    };
    bundle::save(out, info, encoder, &weights)?;
    Ok(TrainSummary {
        history,
        best_epoch,
        dev,
        train_pairs: train_features.len(),
        dev_pairs: dev_features.len(),
        dev_pairs_seen_in_pretraining: dev_seen,
        seconds: started.elapsed().as_secs_f64(),
        out: out.to_path_buf(),
    })
}

/// How many of `split`'s dev pairs were on the training side of the split that `encoder`'s
/// masked-LM pretraining read; `None` for an encoder without `pretrain.json`.
fn dev_pairs_seen_in_pretraining(encoder: &PretrainedEncoder, split: &Split) -> Option<usize> {
    let record = crate::pretrain::read_record(&encoder.dir)?;
    let read: std::collections::HashSet<&str> =
        record.split.train.iter().map(String::as_str).collect();
    Some(
        split
            .dev
            .iter()
            .filter(|id| read.contains(id.as_str()))
            .count(),
    )
}

/// Gives a bundle trained before `training.command` was recorded the command of its options
/// (for `epitome export`).
pub fn record_command(info: &mut BundleInfo) {
    let serde_json::Value::Object(training) = &mut info.training else {
        return;
    };
    if training.contains_key("command") {
        return;
    }
    let options = training
        .get("options")
        .and_then(|o| serde_json::from_value::<TrainOptions>(o.clone()).ok());
    if let Some(options) = options {
        training.insert("command".into(), options.command_line().into());
    }
}
