//! Throughput and step-time measurements, shaped like ../shared/peer/torch_bench.py so that the
//! two can be run side by side for a ratio.

use crate::encoder::layers::Mode;
use crate::encoder::{Encoder, PretrainedEncoder};
use crate::features::Features;
use crate::mechanism::Mechanism;
use crate::model::params::ParamSource;
use crate::predict::Scorer;
use crate::text::Encoded;
use crate::train::{TrainOptions, Trainer};
use crate::Error;
use candle_core::Device;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub threads: usize,
    pub encoder: String,
    /// Inference, batch 32 × 64 tokens, no padding.
    pub encoder_forward_seq_per_s: f64,
    /// One optimizer step of the default model (shared responder, three mechanisms, frozen word
    /// embeddings), batch 32 × 64, seeker encoder run inside the step as the peer does.
    pub train_step_s: f64,
    /// The same step with seeker states computed beforehand, as `epitome train` does.
    pub train_step_cached_seeker_s: f64,
    /// One step with every responder parameter trainable, word embeddings included
    /// (the peer's setting, one mechanism).
    pub train_step_all_params_one_mechanism_s: f64,
    /// Scoring all three mechanisms, one pair at a time, 64 tokens each.
    pub pipeline_pairs_per_s_batch1: f64,
    /// Scoring all three mechanisms, batch 32, 64 tokens each.
    pub batched_pipeline_pairs_per_s: f64,
}

fn synthetic(batch: usize, len: usize, vocab: usize) -> Vec<Encoded> {
    (0..batch)
        .map(|b| {
            let ids = (0..len)
                .map(|t| (((b * len + t) * 7 + 1000) % 29000 + 1000) % vocab)
                .map(|x| x as u32)
                .collect();
            Encoded {
                ids,
                type_ids: vec![0; len],
                offsets: (0..len).map(|t| (t, t + 1)).collect(),
                special: vec![false; len],
                truncated: false,
            }
        })
        .collect()
}

fn time<F: FnMut() -> Result<(), Error>>(iters: usize, mut f: F) -> Result<f64, Error> {
    f()?; // warm-up
    let start = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() / iters.max(1) as f64)
}

pub fn run(encoder: &PretrainedEncoder, iters: usize) -> Result<BenchReport, Error> {
    let device = Device::Cpu;
    let cfg = &encoder.config;
    let texts = synthetic(32, 64, cfg.vocab_size);
    let refs: Vec<&Encoded> = texts.iter().collect();
    let batch = crate::predict::batch_of(&refs, cfg.pad_token_id, &device)?;

    let source = ParamSource::load(encoder.load_tensors(&device)?);
    let plain = Encoder::load(source.var_builder(&device), cfg)?;
    let forward = time(iters, || {
        plain.forward(&batch, Mode::Infer)?;
        Ok(())
    })?;

    let features: Vec<Features> = texts
        .iter()
        .map(|t| Features {
            seeker: t.clone(),
            response: t.clone(),
            levels: [0; 3],
            rationale: std::array::from_fn(|_| vec![false; t.len()]),
        })
        .collect();
    let fref: Vec<&Features> = features.iter().collect();
    let counts = [[10, 10, 10]; 3];
    let options = TrainOptions::default_for_minilm();
    let steps = 1000;
    let mut trainer = Trainer::new(encoder, &Mechanism::ALL, &options, counts, steps, &device)?;
    let train_iters = (iters / 2).max(2);
    let step_full = time(train_iters, || step_with_seekers(&mut trainer, &fref))?;
    let states = trainer.encode_seekers(&fref, |_| {})?;
    let s: Vec<_> = states.iter().collect();
    let step_cached = time(train_iters, || {
        trainer.step(&fref, &s)?;
        Ok(())
    })?;
    let all_params = TrainOptions {
        train_embeddings: true,
        ..options.clone()
    };
    let mut single = Trainer::new(
        encoder,
        &[Mechanism::EmotionalReactions],
        &all_params,
        counts,
        steps,
        &device,
    )?;
    let step_all = time(train_iters, || step_with_seekers(&mut single, &fref))?;

    let text = encoder.text_encoder(64)?;
    let scorer = trainer.scorer(&text);
    let one = time(iters * 4, || {
        score(&scorer, &refs[..1])?;
        Ok(())
    })?;
    let batched = time(iters, || {
        score(&scorer, &refs)?;
        Ok(())
    })?;
    Ok(BenchReport {
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        encoder: encoder.dir.display().to_string(),
        encoder_forward_seq_per_s: 32.0 / forward,
        train_step_s: step_full,
        train_step_cached_seeker_s: step_cached,
        train_step_all_params_one_mechanism_s: step_all,
        pipeline_pairs_per_s_batch1: 1.0 / one,
        batched_pipeline_pairs_per_s: 32.0 / batched,
    })
}

/// One training step with the seeker encoder run inside it, as the PyTorch peer's step does.
fn step_with_seekers(trainer: &mut Trainer, features: &[&Features]) -> Result<(), Error> {
    let states = trainer.encode_seekers(features, |_| {})?;
    let refs: Vec<_> = states.iter().collect();
    trainer.step(features, &refs)?;
    Ok(())
}

fn score(scorer: &Scorer, items: &[&Encoded]) -> Result<(), Error> {
    scorer.score_encoded(items, items)?;
    Ok(())
}
