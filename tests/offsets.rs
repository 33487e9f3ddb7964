//! Per-level decision offsets: the scorer decides with them, `tune-offsets` tunes them on other
//! models' dev pairs and writes a bundle whose recorded dev metrics are its own.

mod common;

use common::{epitome_at, shared, stderr, tiny_model_and_pairs, train_tiny};
use epitome::mechanism::Mechanism;
use epitome::model::offsets::decide;
use epitome::model::LevelOffsets;

fn pairs() -> Vec<epitome::data::Pair> {
    (0..24)
        .map(|i| epitome::data::Pair {
            id: format!("p{i}"),
            seeker_post: format!("I have not slept for {i} days and nobody notices"),
            response_post: "That sounds exhausting. ".repeat(1 + i % 3) + "What keeps you up?",
        })
        .collect()
}

#[test]
fn offsets_decide_the_level_and_leave_the_probabilities_as_they_were() {
    let (_dir, model, _) = tiny_model_and_pairs(1);
    let mut bundle = epitome::bundle::load(&model, &candle_core::Device::Cpu).unwrap();
    let pairs = pairs();
    let plain = epitome::predict::predict_pairs(&bundle.scorer(), &bundle.text, &pairs).unwrap();
    let mut offsets = LevelOffsets::default();
    // Far above any difference of log-probabilities a softmax of these logits gives.
    offsets
        .0
        .insert(Mechanism::Interpretations, [0.0, 60.0, 0.0]);
    bundle.model.set_level_offsets(offsets);
    let shifted = epitome::predict::predict_pairs(&bundle.scorer(), &bundle.text, &pairs).unwrap();
    for (a, b) in plain.iter().zip(&shifted) {
        for ((ma, pa), (mb, pb)) in a.mechanisms.iter().zip(&b.mechanisms) {
            assert_eq!(ma, mb);
            assert_eq!(pa.probs, pb.probs, "{}: probabilities moved", a.id);
            if *ma == Mechanism::Interpretations {
                assert_eq!(pb.level, 1, "{}", a.id);
            } else {
                assert_eq!(pa, pb, "{}: {ma} has no offsets", a.id);
            }
        }
    }
}

#[test]
fn tuned_offsets_come_from_the_other_models_and_the_copy_records_its_own_dev_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, seed) in [("a", "1"), ("b", "2")] {
        let out = train_tiny(d, &d.join(name), &["--limit", "120", "--seed", seed]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let data = shared().join("data/epitome-reddit");
    let data = data.to_str().unwrap();
    let out = epitome_at(
        d,
        d,
        &[
            "tune-offsets",
            "--data",
            data,
            "--models",
            "a",
            "b",
            "--apply-to",
            "a",
            "--out",
            "c",
            "--dtype",
            "f32",
            "--json",
            "rows.json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(d.join("rows.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 6, "two models × three mechanisms");
    for r in &rows {
        // Each model is tuned on the other's dev pairs that are not in its own dev set.
        assert!(r["tuned_on"].as_u64().unwrap() > 0, "{r}");
    }

    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("c/bundle.json")).unwrap()).unwrap();
    let provenance = &info["training"]["level_offsets"];
    assert_eq!(
        provenance["tuned_on"],
        serde_json::json!(["b"]),
        "{provenance}"
    );
    // The copy's offsets are those row "a" reports, tuned on b alone.
    let offsets: LevelOffsets =
        serde_json::from_value(info["model"]["level_offsets"].clone()).unwrap_or_default();
    for r in rows.iter().filter(|r| r["model"] == "a") {
        let m: Mechanism = serde_json::from_value(r["mechanism"].clone()).unwrap();
        let o: [f32; 3] = serde_json::from_value(r["offsets"].clone()).unwrap();
        assert_eq!(offsets.of(m), o, "{m}");
    }

    let eval = epitome_at(
        d,
        d,
        &[
            "eval", "--model", "c", "--data", data, "--split", "dev", "--json", "e.json",
        ],
    );
    assert!(eval.status.success(), "{}", stderr(&eval));
    let evaluated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("e.json")).unwrap()).unwrap();
    assert_eq!(evaluated, info["dev_metrics"]);

    // Every level the copy predicts is the one its offsets decide from its probabilities.
    let input = d.join("in.jsonl");
    let lines: Vec<String> = pairs()
        .iter()
        .map(|p| {
            serde_json::json!({"id": p.id, "seeker_post": p.seeker_post, "response_post": p.response_post})
                .to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let predicted = epitome_at(
        d,
        d,
        &[
            "predict",
            "--model",
            "c",
            "--input",
            "in.jsonl",
            "--output",
            "out.jsonl",
        ],
    );
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    for line in std::fs::read_to_string(d.join("out.jsonl"))
        .unwrap()
        .lines()
    {
        let p: serde_json::Value = serde_json::from_str(line).unwrap();
        for m in Mechanism::ALL {
            let probs: [f32; 3] = serde_json::from_value(p[m.code()]["probs"].clone()).unwrap();
            assert_eq!(
                p[m.code()]["level"].as_u64().unwrap(),
                decide(&offsets.of(m), &probs) as u64,
                "{line}"
            );
        }
    }
}

#[test]
fn offsets_written_into_bundle_json_by_hand_are_refused() {
    let (dir, model, _) = tiny_model_and_pairs(1);
    let path = model.join("bundle.json");
    let mut info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    info["model"]["level_offsets"] = serde_json::json!({"IP": [0.0, 1.0, 0.0]});
    std::fs::write(&path, info.to_string()).unwrap();
    let err = match epitome::bundle::load(&model, &candle_core::Device::Cpu) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an edited bundle.json loaded"),
    };
    assert!(err.contains("model.level_offsets"), "{err}");
    drop(dir);
}
