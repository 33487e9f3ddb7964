//! The batch-scoring recipes of deploy/: the Slurm scripts run for real (with the variables a
//! job array sets, without a Slurm daemon) and give a single run's rows; the Kubernetes
//! manifests are parsed and their fields checked against each other and the CLI.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_slurm_array_scripts_score_every_shard_and_merge_to_a_single_runs_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = env!("CARGO_BIN_EXE_epitome");
    let model = d.join("model");
    let train = train_tiny(d, &model, &["--limit", "24"]);
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let input = d.join("pairs.csv");
    let mut w = csv::Writer::from_path(&input).unwrap();
    w.write_record(["id", "seeker_post", "response_post"])
        .unwrap();
    for i in 0..300 {
        w.write_record([
            format!("r{i}"),
            format!("seeker {}", i % 17),
            format!("I'm sorry. How are you {i}?"),
        ])
        .unwrap();
    }
    w.flush().unwrap();
    let run = |script: &str, args: &[&Path], env: &[(&str, String)]| {
        let mut c = Command::new("bash");
        c.arg(repo(script)).args(args).current_dir(d);
        c.env("EPITOME_BIN", bin)
            .env("EPITOME_MODEL", &model)
            .env("EPITOME_HOME", d)
            .env("EPITOME_LOG", "warn");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let outdir = d.join("out");
    // An array submitted as --array=4-6: task ids 4, 5, 6, shards 0, 1, 2.
    for task in 4..7 {
        run(
            "deploy/slurm/score.sbatch",
            &[&input, &outdir],
            &[
                ("SLURM_ARRAY_TASK_ID", task.to_string()),
                ("SLURM_ARRAY_TASK_MIN", "4".into()),
                ("SLURM_ARRAY_TASK_COUNT", "3".into()),
            ],
        );
    }
    let merged = d.join("scores.jsonl");
    run(
        "deploy/slurm/merge.sbatch",
        &[&input, &outdir, &merged],
        &[],
    );
    let expected: Vec<String> = (0..300).map(|i| format!("r{i}")).collect();
    assert_eq!(jsonl_ids(&merged), expected);
    let parts: usize = (4..7)
        .map(|t| jsonl_ids(&outdir.join(format!("part-{t}.jsonl"))).len())
        .sum();
    assert_eq!(parts, 300);
}

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "{path}: one document");
    docs.remove(0)
}

fn container(job: &Yaml) -> &Yaml {
    &job["spec"]["template"]["spec"]["containers"][0]
}

fn script(job: &Yaml) -> String {
    let c = container(job);
    let mut parts: Vec<String> = Vec::new();
    for v in c["command"]
        .as_vec()
        .unwrap()
        .iter()
        .chain(c["args"].as_vec().unwrap())
    {
        parts.push(v.as_str().unwrap().to_owned());
    }
    parts.join(" ")
}

fn env(job: &Yaml, name: &str) -> Option<String> {
    container(job)["env"]
        .as_vec()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

#[test]
fn the_kubernetes_indexed_job_shards_by_completion_index_and_the_merge_reads_its_parts() {
    let score = load("deploy/k8s/score-job.yaml");
    assert_eq!(score["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(score["kind"].as_str(), Some("Job"));
    let spec = &score["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().unwrap();
    assert!(completions >= 1 && spec["parallelism"].as_i64().unwrap() <= completions);
    // The shard count the pods read is the number of completion indexes.
    assert_eq!(env(&score, "EPITOME_SHARDS"), Some(completions.to_string()));
    assert_eq!(
        spec["template"]["spec"]["restartPolicy"].as_str(),
        Some("Never")
    );
    let s = script(&score);
    assert!(
        s.contains("epitome predict") && s.contains("--shard k8s"),
        "{s}"
    );
    assert!(
        s.contains("part-$JOB_COMPLETION_INDEX.jsonl") && s.contains("--resume"),
        "{s}"
    );
    assert!(s.contains("--input /data/input.jsonl"), "{s}");
    // Every flag the pod passes is one `epitome predict` knows.
    let help = Command::new(env!("CARGO_BIN_EXE_epitome"))
        .args(["predict", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in s.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "predict has no {flag}");
    }
    let mount = &container(&score)["volumeMounts"][0];
    assert_eq!(mount["mountPath"].as_str(), Some("/data"));

    let merge = load("deploy/k8s/merge-job.yaml");
    assert_eq!(merge["kind"].as_str(), Some("Job"));
    let m = script(&merge);
    assert!(
        m.contains("epitome merge --input /data/input.jsonl")
            && m.contains("/data/out/part-*.jsonl"),
        "{m}"
    );
    let volume = |job: &Yaml| {
        job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(volume(&merge), volume(&score));
    assert!(volume(&score).is_some());
}
