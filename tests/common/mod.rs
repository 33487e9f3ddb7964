//! Helpers shared by the integration tests: the fixtures in ../shared are read in place.
#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn shared() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [here.join("../shared"), here.join("shared")];
    candidates
        .iter()
        .find(|p| p.join("fixtures").is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the shared fixtures are missing: expected ../shared/fixtures beside the checkout"
            )
        })
}

pub fn fixtures() -> PathBuf {
    shared().join("fixtures")
}

pub fn reference(name: &str) -> serde_json::Value {
    let path = fixtures().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn assert_close(actual: &[f32], expected: &[f32], tol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol,
            "{what}[{i}]: got {a}, expected {e} (tolerance {tol})"
        );
    }
}

/// The largest |a − b| over two tensors of one shape.
pub fn largest_difference(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Runs the built `epitome` with its cache in `home`, from `cwd`, logging warnings only.
pub fn epitome_at(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_epitome"))
        .args(args)
        .current_dir(cwd)
        .env("EPITOME_HOME", home)
        .env("EPITOME_LOG", "warn")
        .output()
        .expect("the epitome binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `id` of every line of a JSON lines prediction output, in order.
pub fn jsonl_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Trains a model on the tiny RoBERTa fixture encoder for one epoch into `out`, with `extra`
/// flags (a `--limit`, say), from `home`.
pub fn train_tiny(home: &Path, out: &Path, extra: &[&str]) -> Output {
    let data = shared().join("data/epitome-reddit");
    let encoder = fixtures().join("tiny-roberta");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--encoder",
        encoder.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ];
    args.extend_from_slice(extra);
    epitome_at(home, home, &args)
}

/// `epitome predict --model MODEL --input INPUT --output OUTPUT EXTRA..`, with its cache in
/// `home`, from `cwd`.
pub fn predict_at(
    home: &Path,
    cwd: &Path,
    model: &Path,
    input: &Path,
    output: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output,
    ];
    args.extend_from_slice(extra);
    epitome_at(home, cwd, &args)
}

/// A tiny model and an input `in.csv` of `n` pairs (with line breaks in responses, and
/// repeated seeker posts) in a fresh directory.
pub fn tiny_model_and_pairs(n: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let out = train_tiny(dir.path(), &model, &["--limit", "24"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let input = dir.path().join("in.csv");
    let mut w = csv::Writer::from_path(&input).unwrap();
    w.write_record(["id", "seeker_post", "response_post"])
        .unwrap();
    for i in 0..n {
        w.write_record([
            format!("t{i}"),
            format!("I have felt low for {} weeks now", i % 40),
            "I'm so sorry.\nWhat happened after that? ".repeat(i % 4),
        ])
        .unwrap();
    }
    w.flush().unwrap();
    (dir, model, input)
}
