//! Masked-LM pretraining on the tiny RoBERTa fixture: gradients reach every encoder tensor but
//! the word embeddings, the loss goes down, only the training side's posts are read, and the
//! adapted encoder is one that `train` starts from.

mod common;

use candle_core::Device;
use common::*;
use epitome::data::{load_epitome, split_for};
use epitome::encoder::PretrainedEncoder;
use epitome::pretrain::masking::Masker;
use epitome::pretrain::{corpus, pretrain, read_record, MlmTrainer, PretrainOptions};
use epitome::progress::Silent;
use epitome::rng::SplitMix64;
use epitome::text::Encoded;
use epitome::train::{train, TrainOptions};

fn tiny() -> PretrainedEncoder {
    PretrainedEncoder::open(&fixtures().join("tiny-roberta")).unwrap()
}

#[test]
fn every_encoder_tensor_but_the_word_embeddings_gets_a_gradient() {
    let encoder = tiny();
    let trainer = MlmTrainer::new(&encoder, 3, 0.01, &Device::Cpu).unwrap();
    let names = trainer.trainable_names();
    assert!(
        !names.iter().any(|n| n.contains("word_embeddings")),
        "the word embeddings are the decoder's weight and stay as they are"
    );
    assert!(names.iter().any(|n| n.starts_with("cls.predictions.")));
    // Every encoder tensor the checkpoint has, but the word embeddings, trains.
    let stored = encoder.load_tensors(&Device::Cpu).unwrap();
    for name in stored.keys().filter(|n| !n.contains("word_embeddings")) {
        assert!(names.contains(name), "{name} does not train");
    }

    let data = load_epitome(&shared().join("data/epitome-reddit")).unwrap();
    let text = encoder.text_encoder(32).unwrap();
    let examples: Vec<_> = data.examples.iter().take(8).collect();
    let encoded: Vec<Encoded> = corpus(&examples)
        .iter()
        .map(|t| text.encode(t).unwrap())
        .collect();
    let refs: Vec<&Encoded> = encoded.iter().collect();
    let masker = Masker {
        mask_id: text.token_id("<mask>").unwrap(),
        vocab_size: encoder.config.vocab_size as u32,
        prob: 0.3,
    };
    let masked = masker.mask_batch(&refs, &mut SplitMix64::new(5));
    let (loss, grads) = trainer.gradients(&refs, &masked).unwrap();
    assert!(loss.is_finite() && loss > 0.0);
    for (name, g) in names.iter().zip(&grads) {
        let g = g
            .as_ref()
            .unwrap_or_else(|| panic!("{name} got no gradient"));
        let norm: f32 = g.iter().map(|v| v * v).sum();
        assert!(norm > 0.0, "{name} got a zero gradient");
    }
}

#[test]
fn pretraining_reads_the_training_side_lowers_the_loss_and_writes_an_encoder_train_uses() {
    let data_dir = shared().join("data/epitome-reddit");
    let encoder = tiny();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adapted");
    let options = PretrainOptions {
        epochs: 4,
        batch_size: 8,
        lr: 2e-3,
        head_lr: 5e-3,
        max_len: 32,
        seed: 4,
        split_seed: 9,
        dev_fraction: 0.25,
        limit: Some(48),
        ..PretrainOptions::default()
    };
    let summary = pretrain(&data_dir, &encoder, "tiny", &options, &out, &Silent).unwrap();

    // The posts read are the training side's of split seed 9, and no dev post is among them.
    let data = load_epitome(&data_dir).unwrap();
    let examples = &data.examples[..48];
    let split = split_for(examples, None, 0.25, 9);
    let (train_side, dev_side) = split.partition(examples);
    assert!(!dev_side.is_empty());
    assert_eq!(summary.texts, corpus(&train_side).len(), "posts read");
    assert!(summary.dev_texts > 0);
    let record = read_record(&out).expect("pretrain.json");
    assert_eq!(record.split, split);

    let first = summary.history.first().unwrap();
    let last = summary.history.last().unwrap();
    assert!(
        last.mean_loss < first.mean_loss,
        "training loss {} → {}",
        first.mean_loss,
        last.mean_loss
    );
    assert!(last.dev.unwrap().loss < first.dev.unwrap().loss);

    // The adapted encoder: the same word embeddings, the layers moved, no head.
    let adapted = PretrainedEncoder::open(&out).unwrap();
    let before = encoder.load_tensors(&Device::Cpu).unwrap();
    let after = adapted.load_tensors(&Device::Cpu).unwrap();
    let mut keys: Vec<_> = after.keys().cloned().collect();
    keys.sort();
    let mut want: Vec<_> = before.keys().cloned().collect();
    want.sort();
    assert_eq!(
        keys, want,
        "the adapted encoder has the source's tensors, no more"
    );
    let word = "embeddings.word_embeddings.weight";
    assert_eq!(largest_difference(&before[word], &after[word]), 0.0);
    let layer = "encoder.layer.0.attention.self.query.weight";
    assert!(largest_difference(&before[layer], &after[layer]) > 0.0);

    // `train` starts from it.
    let train_one_epoch = |encoder: &PretrainedEncoder, split_seed, out: &str| {
        let options = TrainOptions {
            epochs: 1,
            max_len: 32,
            limit: Some(48),
            split_seed: Some(split_seed),
            dev_fraction: 0.25,
            ..TrainOptions::default_for_minilm()
        };
        train(
            &data_dir,
            encoder,
            "fixture",
            &options,
            &dir.path().join(out),
            &Silent,
        )
        .unwrap()
    };
    let trained = train_one_epoch(&adapted, 9, "model");
    assert_eq!(trained.dev_pairs, split.dev.len());
    assert_eq!(trained.dev_pairs_seen_in_pretraining, Some(0));

    // On another split, some of the dev pairs' posts were read in pretraining, and it says so.
    let other = train_one_epoch(&adapted, 10, "model-other-split");
    let moved = split_for(examples, None, 0.25, 10)
        .dev
        .iter()
        .filter(|id| split.train.contains(id))
        .count();
    assert!(moved > 0);
    assert_eq!(other.dev_pairs_seen_in_pretraining, Some(moved));
    let not_pretrained = train_one_epoch(&encoder, 9, "model-not-pretrained");
    assert_eq!(not_pretrained.dev_pairs_seen_in_pretraining, None);
}
