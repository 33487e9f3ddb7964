//! Batch scoring of whole platforms: `predict --resume` after `kill -9`, `--shard K/N`,
//! `merge`, and the working files' safety. On the tiny RoBERTa fixture encoder.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn epitome(dir: &Path, args: &[&str]) -> Output {
    epitome_at(dir, dir, args)
}

fn setup(n: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    tiny_model_and_pairs(n)
}

fn predict(dir: &Path, model: &Path, input: &Path, output: &str, extra: &[&str]) -> Output {
    predict_at(dir, dir, model, input, output, extra)
}

#[test]
fn kill_9_then_resume_gives_exactly_the_rows_of_an_uninterrupted_run() {
    let (dir, model, input) = setup(30_000);
    let d = dir.path();
    let whole = predict(d, &model, &input, "whole.jsonl", &[]);
    assert!(whole.status.success(), "{}", stderr(&whole));
    let expected = std::fs::read_to_string(d.join("whole.jsonl")).unwrap();
    kill_9_then_resume(d, &model, &input, "resumed.jsonl");
    assert_eq!(
        std::fs::read_to_string(d.join("resumed.jsonl")).unwrap(),
        expected
    );
    // A Parquet output is staged as JSON lines, so it resumes the same way.
    kill_9_then_resume(d, &model, &input, "resumed.parquet");
    assert_eq!(parquet_as_json_lines(&d.join("resumed.parquet")), expected);
}

/// The rows of a Parquet prediction output in the JSON lines form.
fn parquet_as_json_lines(path: &Path) -> String {
    epitome::predict::PredictionRows::open(path)
        .unwrap()
        .map(|p| format!("{}\n", p.unwrap().to_json()))
        .collect()
}

/// Starts `predict --output NAME`, kills it (SIGKILL) once it has checkpointed some pairs,
/// checks what it left, and resumes it to the end.
fn kill_9_then_resume(d: &Path, model: &Path, input: &Path, name: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_epitome"))
        .args(["predict", "--model", model.to_str().unwrap(), "--input"])
        .arg(input)
        .args(["--output", name])
        .current_dir(d)
        .env("EPITOME_HOME", d)
        .env("EPITOME_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = d.join(format!(".{name}.partial.state"));
    let started = std::time::Instant::now();
    loop {
        let read = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["pairs_read"].as_u64())
            .unwrap_or(0);
        if read >= 2000 || started.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !d.join(name).exists(),
        "the run finished before it was killed"
    );
    let work = d.join(format!(".{name}.partial"));
    assert!(work.exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(work.metadata().unwrap().permissions().mode() & 0o077, 0);

    // Without --resume the leftover is named, not overwritten.
    let refused = predict(d, model, input, name, &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--resume"),
        "{}",
        stderr(&refused)
    );
    // A resume with other options is refused, saying which.
    let other = predict(d, model, input, name, &["--resume", "--shard", "0/2"]);
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("options differs"),
        "{}",
        stderr(&other)
    );

    let resumed = predict(d, model, input, name, &["--resume"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(
        d.join(name).metadata().unwrap().permissions().mode() & 0o077,
        0
    );
    assert!(!work.exists() && !state.exists());
}

#[test]
fn shards_cover_the_input_exactly_once_and_merge_checks_them() {
    let (dir, model, input) = setup(600);
    let d = dir.path();
    let whole = predict(d, &model, &input, "whole.csv", &[]);
    assert!(whole.status.success(), "{}", stderr(&whole));
    let expected: Vec<String> = (0..600).map(|i| format!("t{i}")).collect();
    for n in [1, 3, 7] {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut parts = Vec::new();
        for k in 0..n {
            let name = format!("part-{n}-{k}.jsonl");
            let out = predict(d, &model, &input, &name, &["--shard", &format!("{k}/{n}")]);
            assert!(out.status.success(), "{}", stderr(&out));
            for id in jsonl_ids(&d.join(&name)) {
                *seen.entry(id).or_default() += 1;
            }
            parts.push(name);
        }
        assert_eq!(seen.len(), 600, "{n} shards");
        assert!(seen.values().all(|&c| c == 1), "{n} shards: an id twice");
        assert!(expected.iter().all(|id| seen.contains_key(id)));
    }
    // Three CSV shards, merged in any order, are the single run: the same rows in the same
    // order, the same levels and rationales; probabilities agree to float rounding (a pair is
    // batched with other pairs in a shard than in a single run, and sums over a batch's
    // padded length round differently).
    for k in 0..3 {
        let out = predict(
            d,
            &model,
            &input,
            &format!("s{k}.csv"),
            &["--shard", &format!("{k}/3")],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let input_arg = input.to_str().unwrap();
    let merged = epitome(
        d,
        &[
            "merge",
            "--input",
            input_arg,
            "--output",
            "merged.csv",
            "s2.csv",
            "s0.csv",
            "s1.csv",
        ],
    );
    assert!(merged.status.success(), "{}", stderr(&merged));
    assert_same_predictions(&d.join("merged.csv"), &d.join("whole.csv"));
    // A missing shard names an id; a shard given twice names a doubled id.
    let missing = epitome(
        d,
        &[
            "merge", "--input", input_arg, "--output", "m.csv", "s0.csv", "s1.csv",
        ],
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("in none of the shard outputs"),
        "{}",
        stderr(&missing)
    );
    let doubled = epitome(
        d,
        &[
            "merge", "--input", input_arg, "--output", "m.csv", "s0.csv", "s1.csv", "s2.csv",
            "s1.csv",
        ],
    );
    assert!(!doubled.status.success());
    assert!(stderr(&doubled).contains("twice"), "{}", stderr(&doubled));
    assert!(!d.join("m.csv").exists());
}

fn assert_same_predictions(a: &Path, b: &Path) {
    let rows = |p: &Path| -> Vec<csv::StringRecord> {
        csv::Reader::from_path(p)
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect()
    };
    let (ra, rb) = (rows(a), rows(b));
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x.len(), y.len());
        for (k, (u, v)) in x.iter().zip(y.iter()).enumerate() {
            match (u.parse::<f64>(), v.parse::<f64>()) {
                (Ok(p), Ok(q)) if u.contains('.') => {
                    assert!((p - q).abs() < 1e-5, "row {}, field {k}: {u} vs {v}", &x[0])
                }
                _ => assert_eq!(u, v, "row {}, field {k}", &x[0]),
            }
        }
    }
}

#[test]
fn a_link_planted_at_the_working_file_is_refused_and_its_target_untouched() {
    let (dir, model, input) = setup(20);
    let d = dir.path();
    let target = d.join("precious.txt");
    std::fs::write(&target, "keep me").unwrap();
    std::os::unix::fs::symlink(&target, d.join(".out.jsonl.partial")).unwrap();
    let out = predict(d, &model, &input, "out.jsonl", &[]);
    assert!(!out.status.success());
    let resumed = predict(d, &model, &input, "out.jsonl", &["--resume"]);
    assert!(!resumed.status.success());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(!d.join("out.jsonl").exists());
}

#[test]
fn a_huge_post_costs_only_what_its_first_tokens_cost() {
    let encoder =
        epitome::encoder::PretrainedEncoder::open(&fixtures().join("tiny-roberta")).unwrap();
    let text = encoder.text_encoder(64).unwrap();
    let sentence = "I have been feeling so alone since I moved here last winter. ";
    let normal = text.encode(&sentence.repeat(20)).unwrap();
    // 30 MB on one line: read up to the cap, cut at a char boundary (é is two bytes).
    let huge = format!("{}{}", sentence.repeat(20), "é".repeat(15_000_000));
    let read = text.readable_prefix(&huge);
    assert!(read.len() <= 64 * epitome::text::MAX_BYTES_PER_TOKEN && huge.starts_with(read));
    let cut = text.encode(&huge).unwrap();
    assert!(cut.truncated && normal.truncated);
    assert_eq!(cut.ids, normal.ids);
    assert_eq!(cut.offsets, normal.offsets);
    // A short post is read whole.
    assert_eq!(text.readable_prefix(sentence), sentence);
}

#[test]
fn bad_rows_mid_file_stop_the_run_or_are_listed_with_their_lines() {
    let (dir, model, _) = setup(1);
    let d = dir.path();
    let input = d.join("mixed.jsonl");
    let mut lines = Vec::new();
    for i in 1..=600 {
        lines.push(match i {
            50 => "{not json".to_owned(),
            420 => serde_json::json!({"id": "x420", "seeker_post": "private words"}).to_string(),
            _ => serde_json::json!({"id": format!("x{i}"), "seeker_post": "I feel low", "response_post": "Sorry. What happened?"}).to_string(),
        });
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let fail = predict(d, &model, &input, "out.jsonl", &[]);
    assert!(!fail.status.success());
    assert!(stderr(&fail).contains("line 50"), "{}", stderr(&fail));
    assert!(!d.join("out.jsonl").exists());
    assert!(!d.join(".out.jsonl.partial").exists());

    let skip = predict(d, &model, &input, "out.jsonl", &["--on-error", "skip"]);
    assert!(skip.status.success(), "{}", stderr(&skip));
    let ids = jsonl_ids(&d.join("out.jsonl"));
    assert_eq!(ids.len(), 598);
    assert!(!ids.contains(&"x50".to_owned()) && !ids.contains(&"x420".to_owned()));
    let listed = std::fs::read_to_string(d.join("out.jsonl.skipped.txt")).unwrap();
    assert!(
        listed.contains("line 50") && listed.contains("line 420"),
        "{listed}"
    );
    assert!(stderr(&skip).contains("2 bad rows"), "{}", stderr(&skip));
    for text in [&listed, &stderr(&skip)] {
        assert!(!text.contains("private words"));
    }
}

#[test]
fn a_seeker_post_seen_before_is_not_encoded_again_and_scores_the_same() {
    let (dir, model, _) = setup(1);
    let bundle = epitome::bundle::load(&model, &candle_core::Device::Cpu).unwrap();
    drop(dir);
    let pairs: Vec<epitome::data::Pair> = (0..90)
        .map(|i| epitome::data::Pair {
            id: i.to_string(),
            // Ten threads of nine replies each, interleaved.
            seeker_post: format!(
                "thread {} has been hard for me, {}",
                i % 10,
                "so hard ".repeat(i % 10)
            ),
            response_post: format!(
                "I'm sorry. {}What happened?",
                "That sounds hard. ".repeat(i % 3)
            ),
        })
        .collect();
    let scorer = bundle.scorer();
    let plain = epitome::predict::predict_pairs(&scorer, &bundle.text, &pairs).unwrap();
    let mut cache = epitome::predict::SeekerCache::new(epitome::predict::DEFAULT_BUDGET_BYTES);
    let mut cached = Vec::new();
    for chunk in pairs.chunks(30) {
        cached.extend(
            epitome::predict::predict_pairs_cached(&scorer, &bundle.text, chunk, Some(&mut cache))
                .unwrap(),
        );
    }
    // Ten distinct posts: every lookup after the first chunk finds its post.
    assert_eq!(cache.hits + cache.misses, 90);
    assert!(
        cache.hits >= 60,
        "{} hits, {} misses",
        cache.hits,
        cache.misses
    );
    for (a, b) in plain.iter().zip(&cached) {
        assert_eq!(a.id, b.id);
        for ((ma, pa), (mb, pb)) in a.mechanisms.iter().zip(&b.mechanisms) {
            assert_eq!(
                (ma, pa.level, &pa.rationales),
                (mb, pb.level, &pb.rationales)
            );
            for (x, y) in pa.probs.iter().zip(&pb.probs) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
    }
}

#[test]
fn the_seeker_cache_budget_changes_no_prediction() {
    let (dir, model, input) = setup(300);
    let d = dir.path();
    let default = predict(d, &model, &input, "default.csv", &[]);
    assert!(default.status.success(), "{}", stderr(&default));
    let none = predict(d, &model, &input, "none.csv", &["--seeker-cache-mb", "0"]);
    assert!(none.status.success(), "{}", stderr(&none));
    assert_same_predictions(&d.join("default.csv"), &d.join("none.csv"));
    let bad = predict(
        d,
        &model,
        &input,
        "bad.jsonl",
        &["--seeker-cache-mb", "lots"],
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("--seeker-cache-mb"),
        "{}",
        stderr(&bad)
    );
}
