//! Throughput and step-time measurements, shaped like ../shared/peer/torch_bench.py so that the
//! two can be run side by side for a ratio.

use crate::bundle;
use crate::encoder::layers::Mode;
use crate::encoder::{Encoder, PretrainedEncoder};
use crate::features::Features;
use crate::mechanism::Mechanism;
use crate::model::params::ParamSource;
use crate::model::BiEncoder;
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
    /// The CPU's model name, as /proc/cpuinfo gives it.
    pub cpu_model: String,
    /// The CPU features that decide which kernels run.
    pub cpu_features: Vec<String>,
    /// The instruction set epitome's own matrix kernels run (`EPITOME_ISA` may hold it lower);
    /// `null` where they fall back to portable code.
    pub kernels: Option<crate::kernels::Isa>,
    pub encoder: String,
    /// Inference, batch 32 × 64 tokens, no padding.
    pub encoder_forward_seq_per_s: f64,
    /// Inference, one sequence of 64 tokens, milliseconds.
    pub encoder_forward_one_sequence_ms: f64,
    /// The same two with int8 products (`--precision int8`), and the largest difference of
    /// the last hidden state from f32 at batch 32 × 64 (as ort_bench.py reports for ORT).
    pub int8_encoder_forward_seq_per_s: f64,
    pub int8_encoder_forward_one_sequence_ms: f64,
    pub int8_max_abs_diff: f32,
    /// One optimizer step of the default model (shared responder, three mechanisms, frozen word
    /// embeddings), batch 32 × 64, seeker encoder run inside the step as the peer does.
    pub train_step_s: f64,
    /// The same step with seeker states computed beforehand, as `epitome train` does.
    pub train_step_cached_seeker_s: f64,
    /// One step with every responder parameter trainable, word embeddings included
    /// (the peer's setting, one mechanism).
    pub train_step_all_params_one_mechanism_s: f64,
    /// Scoring all three mechanisms, one pair at a time, 64 tokens each, with a model loaded
    /// as `predict` and `serve` load one.
    pub pipeline_pairs_per_s_batch1: f64,
    /// The same, milliseconds per pair.
    pub pipeline_one_pair_ms: f64,
    /// Scoring all three mechanisms, batch 32, 64 tokens each.
    pub batched_pipeline_pairs_per_s: f64,
    /// Peak resident memory of this process, MB.
    pub peak_rss_mb: f64,
}

/// The CPU's model name and the features of it that the kernels dispatch on.
pub fn cpu_description() -> (String, Vec<String>) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let wanted = [
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "amx_int8",
    ];
    let features = wanted
        .iter()
        .filter(|f| flags.split_whitespace().any(|x| x == **f))
        .map(|f| f.to_string())
        .collect();
    (field("model name"), features)
}

/// Peak resident memory of this process in MB (VmHWM), 0 where /proc has no answer.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
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
    let single = crate::predict::batch_of(&refs[..1], cfg.pad_token_id, &device)?;
    let forward_one = time(iters * 8, || {
        plain.forward(&single, Mode::Infer)?;
        Ok(())
    })?;
    let int8_forward = time(iters, || {
        plain.forward(&batch, Mode::Quantized)?;
        Ok(())
    })?;
    let int8_forward_one = time(iters * 8, || {
        plain.forward(&single, Mode::Quantized)?;
        Ok(())
    })?;
    let int8_max_abs_diff = (plain.forward(&batch, Mode::Quantized)?
        - plain.forward(&batch, Mode::Infer)?)?
    .abs()?
    .flatten_all()?
    .max(0)?
    .to_scalar::<f32>()?;

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

    // Scored with the trained tensors loaded as a bundle's are: plain tensors, not variables,
    // so that the products take the inference path (transposed weights) as in `predict` and
    // `serve`.
    let tensors = bundle::assemble(
        trainer.model.config(),
        encoder.load_tensors(&device)?,
        trainer.snapshot()?,
    );
    let loaded = BiEncoder::load(
        ParamSource::load(tensors).var_builder(&device),
        cfg,
        trainer.model.config(),
    )?;
    let text = encoder.text_encoder(64)?;
    let scorer = Scorer {
        model: &loaded,
        text: &text,
        pad_id: cfg.pad_token_id,
        device: &device,
    };
    let one = time(iters * 4, || {
        score(&scorer, &refs[..1])?;
        Ok(())
    })?;
    let batched = time(iters, || {
        score(&scorer, &refs)?;
        Ok(())
    })?;
    let (cpu_model, cpu_features) = cpu_description();
    Ok(BenchReport {
        threads: rayon::current_num_threads(),
        cpu_model,
        cpu_features,
        kernels: crate::kernels::Isa::best(),
        encoder: encoder.dir.display().to_string(),
        encoder_forward_seq_per_s: 32.0 / forward,
        encoder_forward_one_sequence_ms: forward_one * 1e3,
        int8_encoder_forward_seq_per_s: 32.0 / int8_forward,
        int8_encoder_forward_one_sequence_ms: int8_forward_one * 1e3,
        int8_max_abs_diff,
        train_step_s: step_full,
        train_step_cached_seeker_s: step_cached,
        train_step_all_params_one_mechanism_s: step_all,
        pipeline_pairs_per_s_batch1: 1.0 / one,
        pipeline_one_pair_ms: one * 1e3,
        batched_pipeline_pairs_per_s: 32.0 / batched,
        peak_rss_mb: peak_rss_mb(),
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
