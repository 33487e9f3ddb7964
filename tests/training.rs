//! Training mechanics on the tiny RoBERTa fixture: gradients reach every trainable tensor,
//! the frozen seeker encoder stays frozen, and the loss goes down.

mod common;

use candle_core::Device;
use common::*;
use epitome::data::load_epitome;
use epitome::encoder::PretrainedEncoder;
use epitome::features::{featurize, Features};
use epitome::model::{LevelHead, LevelPooling, ResponderSharing};
use epitome::train::{ClassWeighting, LevelLossWeights, LevelWeighting, TrainOptions, Trainer};
use epitome::Mechanism;

fn setup(options: &TrainOptions) -> (Trainer, Vec<Features>) {
    let dev = Device::Cpu;
    let encoder = PretrainedEncoder::open(&fixtures().join("tiny-roberta")).unwrap();
    let data = load_epitome(&shared().join("data/epitome-reddit")).unwrap();
    let examples: Vec<_> = data.examples.iter().take(16).collect();
    let text = encoder.text_encoder(options.max_len).unwrap();
    let features = featurize(&text, &examples).unwrap();
    let trainer = Trainer::new(
        &encoder,
        &Mechanism::ALL,
        options,
        [[5, 5, 6]; 3],
        100,
        &dev,
    )
    .unwrap();
    (trainer, features)
}

/// Sum of absolute differences of two tensors of the same shape.
fn abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn options(responder: ResponderSharing, train_embeddings: bool) -> TrainOptions {
    TrainOptions {
        lr: 1e-3,
        responder,
        train_embeddings,
        class_weights: LevelWeighting::all(ClassWeighting::Inverse),
        ..TrainOptions::default_for_minilm()
    }
}

#[test]
fn every_trainable_tensor_gets_a_gradient_and_changes_while_the_seeker_stays() {
    for (responder, level_head, level_pooling) in [
        (
            ResponderSharing::Shared,
            LevelHead::Softmax,
            LevelPooling::First,
        ),
        (
            ResponderSharing::Separate,
            LevelHead::Softmax,
            LevelPooling::First,
        ),
        (
            ResponderSharing::Shared,
            LevelHead::Ordinal,
            LevelPooling::First,
        ),
        (
            ResponderSharing::Shared,
            LevelHead::Softmax,
            LevelPooling::Mean,
        ),
    ] {
        let (mut trainer, features) = setup(&TrainOptions {
            level_head,
            level_pooling,
            ..options(responder, true)
        });
        let refs: Vec<&Features> = features.iter().collect();
        let states = trainer.encode_seekers(&refs, |_| {}).unwrap();
        let state_refs: Vec<_> = states.iter().collect();

        let names = trainer.trainable_names().to_vec();
        // Responder encoder(s) (16 tensors per layer, 5 embedding tensors, 2 layers), and per
        // mechanism attention (8), level head (4), rationale head (2).
        let encoders = if responder == ResponderSharing::Shared {
            1
        } else {
            3
        };
        assert_eq!(names.len(), encoders * (5 + 2 * 16) + 3 * 14, "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with("seeker")));

        let (_, grads) = trainer.gradients(&refs, &state_refs).unwrap();
        for (name, g) in names.iter().zip(&grads) {
            let g = g
                .as_ref()
                .unwrap_or_else(|| panic!("{name} got no gradient"));
            let norm: f32 = g.iter().map(|x| x * x).sum();
            assert!(norm > 0.0, "{name} got a zero gradient");
        }

        let before = trainer.snapshot().unwrap();
        // A snapshot is plain values: a model built from it (`epitome bench`, a saved
        // bundle) must take the inference products, not the training ones.
        assert!(before.values().all(|t| !t.track_op()));
        trainer.step(&refs, &state_refs).unwrap();
        let after = trainer.snapshot().unwrap();
        for name in &names {
            let diff = abs_diff(&before[name], &after[name]);
            assert!(diff > 0.0, "{name} did not change");
        }
        let states_after = trainer.encode_seekers(&refs, |_| {}).unwrap();
        for (a, b) in states.iter().zip(&states_after) {
            let diff = abs_diff(a, b);
            assert_eq!(diff, 0.0, "the frozen seeker encoder changed");
        }
    }
}

/// Sum of squares of the gradient of each trainable tensor whose name starts with `prefix`;
/// `None` where the tensor got no gradient.
fn gradient_norms(
    trainer: &Trainer,
    features: &[Features],
    prefix: &str,
) -> Vec<(String, Option<f32>)> {
    let refs: Vec<&Features> = features.iter().collect();
    let states = trainer.encode_seekers(&refs, |_| {}).unwrap();
    let state_refs: Vec<_> = states.iter().collect();
    let (_, grads) = trainer.gradients(&refs, &state_refs).unwrap();
    trainer
        .trainable_names()
        .iter()
        .zip(&grads)
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, g)| {
            let norm = g.as_ref().map(|g| g.iter().map(|x| x * x).sum());
            (name.clone(), norm)
        })
        .collect()
}

#[test]
fn a_mechanisms_level_loss_weight_scales_what_its_level_head_learns() {
    let weighted = |ip: f64| TrainOptions {
        dropout: 0.0,
        level_loss_weights: LevelLossWeights {
            ip,
            ..LevelLossWeights::default()
        },
        ..options(ResponderSharing::Shared, false)
    };
    let norms = |ip: f64, prefix: &str| {
        let (trainer, features) = setup(&weighted(ip));
        gradient_norms(&trainer, &features, prefix)
    };
    let head = "IP.empathy_classifier.";
    let (plain, tripled, ignored) = (norms(1.0, head), norms(3.0, head), norms(0.0, head));
    assert_eq!(plain.len(), 4, "{plain:?}");
    // Only the level loss reaches the level head: its gradient scales with the weight (its
    // squares by 9), and at a weight of 0 it gets none (candle drops a product by 0 from the
    // graph), so the optimizer leaves it as it is.
    for (((name, p), (_, t)), (_, z)) in plain.iter().zip(&tripled).zip(&ignored) {
        let (p, t) = (p.expect("a gradient at 1"), t.expect("a gradient at 3"));
        assert!(p > 0.0, "{name} got a zero gradient at weight 1");
        assert!(
            (t / p - 9.0).abs() < 1e-3,
            "{name}: {t} against {p} at weight 3"
        );
        assert!(z.is_none_or(|z| z == 0.0), "{name} learned at weight 0");
    }
    // The other mechanisms' heads learn as before.
    let er = "ER.empathy_classifier.";
    assert_eq!(norms(1.0, er), norms(0.0, er));
}

/// Adam's first step moves every value whose gradient is not tiny by its learning rate, in
/// the gradient's direction: so the largest change of a tensor is its learning rate.
#[test]
fn the_new_layers_learn_at_the_head_learning_rate_and_the_encoder_at_its_own() {
    let (lr, head_lr) = (1e-4, 1e-3);
    let (mut trainer, features) = setup(&TrainOptions {
        dropout: 0.0,
        weight_decay: 0.0,
        lr,
        head_lr: Some(head_lr),
        ..options(ResponderSharing::Shared, false)
    });
    let refs: Vec<&Features> = features.iter().collect();
    let states = trainer.encode_seekers(&refs, |_| {}).unwrap();
    let state_refs: Vec<_> = states.iter().collect();
    let before = trainer.snapshot().unwrap();
    let stats = trainer.step(&refs, &state_refs).unwrap();
    assert_eq!(stats.lr, lr);
    let after = trainer.snapshot().unwrap();
    let largest_change = |name: &str| -> f64 {
        let d = (&after[name] - &before[name]).unwrap().abs().unwrap();
        d.flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    for name in trainer.trainable_names() {
        // A key's bias adds the same to every score of a query, which the softmax ignores:
        // its gradient is rounding.
        if name.ends_with("k_linear.bias") || name.ends_with("key.bias") {
            continue;
        }
        let want = if name.starts_with("responder.") {
            lr
        } else {
            head_lr
        };
        let got = largest_change(name);
        assert!(
            (got / want - 1.0).abs() < 0.02,
            "{name} moved by at most {got}, not {want}"
        );
    }
}

#[test]
fn frozen_word_embeddings_are_not_trainable() {
    let (trainer, _) = setup(&options(ResponderSharing::Shared, false));
    assert!(trainer
        .trainable_names()
        .iter()
        .all(|n| !n.ends_with("word_embeddings.weight")));
    assert!(trainer
        .trainable_names()
        .iter()
        .any(|n| n.ends_with("position_embeddings.weight")));
}

#[test]
fn loss_goes_down_on_a_repeated_batch() {
    for level_head in [LevelHead::Softmax, LevelHead::Ordinal] {
        let (mut trainer, features) = setup(&TrainOptions {
            dropout: 0.0,
            level_head,
            ..options(ResponderSharing::Shared, true)
        });
        let refs: Vec<&Features> = features.iter().collect();
        let states = trainer.encode_seekers(&refs, |_| {}).unwrap();
        let state_refs: Vec<_> = states.iter().collect();
        let first = trainer.step(&refs, &state_refs).unwrap().loss;
        let mut last = first;
        for _ in 0..30 {
            last = trainer.step(&refs, &state_refs).unwrap().loss;
        }
        assert!(last < first * 0.8, "{level_head:?}: loss {first} -> {last}");
    }
}

#[test]
fn length_bucketed_batches_cover_every_pair_once_and_pad_less() {
    use epitome::rng::SplitMix64;
    use epitome::text::Encoded;
    let features: Vec<Features> = (0..1000)
        .map(|i| {
            let len = 3 + (i * 37) % 62;
            let enc = Encoded {
                ids: vec![5; len],
                type_ids: vec![0; len],
                offsets: vec![(0, 0); len],
                special: vec![false; len],
                truncated: false,
            };
            Features {
                seeker: enc.clone(),
                response: enc,
                levels: [0; 3],
                rationale: std::array::from_fn(|_| vec![false; len]),
            }
        })
        .collect();
    let batches = epitome::train::length_bucketed_batches(&features, 32, &mut SplitMix64::new(1));
    let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
    seen.sort();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    let padded: usize = batches
        .iter()
        .map(|b| b.len() * b.iter().map(|&i| features[i].response.len()).max().unwrap())
        .sum();
    let real: usize = features.iter().map(|f| f.response.len()).sum();
    assert!(
        (padded as f64) < real as f64 * 1.2,
        "padding overhead {padded} vs {real}"
    );
    let again = epitome::train::length_bucketed_batches(&features, 32, &mut SplitMix64::new(2));
    assert_ne!(batches, again, "each epoch draws new batches");
}
