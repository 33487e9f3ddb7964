//! `epitome bench --analyze N`: the cost of `analyze` alone (levels given) on a synthetic
//! platform of N interactions, phase by phase, with the process's peak memory.

use super::synth::{generate, SynthConfig};
use super::{
    analyze, collect, report, AnalyzeOptions, ColumnMap, InteractionReader, LevelSource, OnError,
    PredictionIndex, Provenance, ResampleUnit,
};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct AnalyzeRun {
    pub resampling_unit: String,
    /// Reading the interactions and predictions and joining them.
    pub read_join_s: f64,
    /// Every analysis, bootstrap included.
    pub analyze_s: f64,
    pub write_reports_s: f64,
    pub total_s: f64,
}

#[derive(Debug, Serialize)]
pub struct AnalyzeBenchReport {
    pub interactions: usize,
    pub supporters: usize,
    pub bootstrap_replicates: usize,
    pub threads: usize,
    pub input_mb: f64,
    pub predictions_mb: f64,
    pub runs: Vec<AnalyzeRun>,
    /// Peak resident memory of the whole process (VmHWM), generation included.
    pub peak_rss_mb: Option<f64>,
}

/// Writes a platform into `dir`, then analyses it once per resampling unit.
pub fn run(
    interactions: usize,
    replicates: usize,
    dir: &Path,
) -> Result<AnalyzeBenchReport, crate::Error> {
    let io = |source| crate::Error::Write {
        path: dir.to_path_buf(),
        source,
    };
    let supporters = (interactions / 50).max(1);
    let config = SynthConfig {
        interactions,
        supporters,
        ..Default::default()
    };
    generate(&config).write(dir).map_err(io)?;
    let input = dir.join("interactions.csv");
    let predictions = dir.join("predictions.jsonl");
    let mb = |p: &Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6);
    let mut runs = Vec::new();
    for unit in [ResampleUnit::Supporter, ResampleUnit::Interaction] {
        let start = Instant::now();
        let reader = InteractionReader::open(&input, ColumnMap::default(), false)?;
        let index = PredictionIndex::read(&predictions, false)?;
        let data = collect(
            reader,
            LevelSource::Predictions(index),
            OnError::Fail,
            &mut |_, _| {},
        )?;
        let read_join_s = start.elapsed().as_secs_f64();
        let t = Instant::now();
        let options = AnalyzeOptions {
            replicates,
            unit,
            ..Default::default()
        };
        let insights = analyze(&data, &options, Provenance::default())?;
        let analyze_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        report::write_reports(&insights, &dir.join("report")).map_err(io)?;
        runs.push(AnalyzeRun {
            resampling_unit: insights.settings.resampling_unit.clone(),
            read_join_s,
            analyze_s,
            write_reports_s: t.elapsed().as_secs_f64(),
            total_s: start.elapsed().as_secs_f64(),
        });
    }
    Ok(AnalyzeBenchReport {
        interactions,
        supporters,
        bootstrap_replicates: replicates,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        input_mb: mb(&input),
        predictions_mb: mb(&predictions),
        runs,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// VmHWM from /proc (Linux); None elsewhere.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
