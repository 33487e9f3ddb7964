//! The `epitome` command line: clap structs, dispatch, and what a person reads on the
//! terminal (progress bars, tables). The work is in the library.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use epitome::analyze::{ColumnMap, OnError, ResampleUnit};
use epitome::bundle::ModelSource;
use epitome::data::{Pair, PairReader};
use epitome::encoder::fetch::{
    default_encoder_dir, ensure_default_encoder, fetch_default_encoder, resolve_encoder,
};
use epitome::encoder::PretrainedEncoder;
use epitome::evaluate::{evaluate_bundle, EvalSplit};
use epitome::model::{LevelHead, LevelPooling, ResponderSharing};
use epitome::predict::{predict_file, predict_pairs, FileRun, PairPrediction, Shard};
use epitome::pretrain::PretrainOptions;
use epitome::progress::{Progress, Unit};
use epitome::serve::{read_token_file, ServeConfig};
use epitome::train::{LevelLossWeights, LevelWeighting, TrainOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Measure how empathy is expressed in text-based mental health support: Emotional Reactions,
/// Interpretations and Explorations (Sharma et al., EMNLP 2020), with levels and rationales.
#[derive(Parser, Debug)]
#[command(name = "epitome", version, about)]
struct Cli {
    /// Log verbosity (post text is never logged).
    #[arg(
        long,
        global = true,
        env = "EPITOME_LOG",
        value_enum,
        default_value = "info"
    )]
    log: LogLevel,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch the default encoder, install the shipped model, score the sample.
    Quickstart(QuickstartArgs),
    /// Manage the pretrained encoder.
    #[command(subcommand)]
    Encoder(EncoderCommand),
    /// Train a model on the EPITOME annotations and write a model bundle.
    Train(TrainArgs),
    /// Go on with the encoder's masked-LM training on the posts of the training split (domain-
    /// adaptive pretraining) and write the adapted encoder, for `train --encoder`.
    Pretrain(PretrainArgs),
    /// The paper's comparison table on this split: baselines and bi-encoder recipes, each the
    /// mean ± sd over seeds; trained bundles are kept and reused, so a stopped run resumes.
    Experiment(ExperimentArgs),
    /// Evaluate a model on annotated data: levels and rationales, per mechanism.
    Eval(EvalArgs),
    /// Predict levels and rationales for (seeker post, response post) pairs.
    Predict(PredictArgs),
    /// Measure encoder throughput and training-step time.
    Bench(BenchArgs),
    /// Serve a model over HTTP: a JSON API and a feedback page for peer supporters.
    Serve(ServeArgs),
    /// Send a bounded load of scoring requests to a local `epitome serve` and report latency.
    Loadtest(LoadtestArgs),
    /// Make a bundle from checkpoints of the original code (one per mechanism, .pth or .safetensors).
    Import(ImportArgs),
    /// Join the outputs of `predict --shard K/N` into one, in input order, checking that every
    /// input id is there exactly once.
    Merge(MergeArgs),
    /// Copy a bundle with its fine-tuned tensors stored in another number format (f16 halves
    /// the file; scoring still computes in f32).
    Export(ExportArgs),
    /// Platform insights: how empathic responses are, whether empathy goes with more likes,
    /// replies and follows, and whether supporters improve with experience.
    Analyze(AnalyzeArgs),
    /// Write a synthetic platform with planted effects: interactions.csv, predictions.jsonl
    /// and planted.json (what `analyze` should find).
    SynthPlatform(SynthArgs),
    /// Suggest edits (sentences to insert or replace) that raise a response's empathy, each
    /// checked by the model.
    Suggest(SuggestArgs),
    /// The library of exemplar phrasings that suggestions come from.
    #[command(subcommand)]
    Exemplars(ExemplarsCommand),
    /// Per-level decision offsets for macro-F1: each model's are tuned on the other models'
    /// dev predictions (none of its own dev pairs) and scored on its own dev pairs; with
    /// --apply-to, a copy of a bundle that decides with them.
    TuneOffsets(TuneOffsetsArgs),
    /// Average the level probabilities of models trained on one split (an ensemble) and
    /// compare it, on their shared dev pairs, with each model alone.
    EnsembleEval(EnsembleEvalArgs),
}

#[derive(Args, Debug)]
struct EnsembleEvalArgs {
    /// Directory with the three EPITOME CSVs.
    #[arg(long)]
    data: PathBuf,
    /// Bundles trained on the same split (the same dev pairs), at least two.
    #[arg(long, num_args = 2.., required = true)]
    models: Vec<ModelSource>,
}

#[derive(Args, Debug)]
struct TuneOffsetsArgs {
    /// Directory with the three EPITOME CSVs.
    #[arg(long)]
    data: PathBuf,
    /// Bundles trained with different seeds (so on different splits), at least two.
    #[arg(long, num_args = 2.., required = true)]
    models: Vec<ModelSource>,
    /// Write a copy of this bundle whose offsets are tuned on the dev predictions of the
    /// --models other than it, leaving out its own dev pairs.
    #[arg(long, requires = "out")]
    apply_to: Option<ModelSource>,
    /// Where to write that copy (replaced only once complete).
    #[arg(long, requires = "apply_to")]
    out: Option<PathBuf>,
    /// The mechanisms to tune (the others keep the most probable level), e.g. ER or ER,IP.
    /// Default: every mechanism of the models.
    #[arg(long, value_delimiter = ',')]
    mechanisms: Vec<epitome::mechanism::Mechanism>,
    /// Number format of the copy's stored fine-tuned tensors.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: StoredDType,
    /// Also write the leave-one-out table as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ExemplarArgs {
    /// Exemplar library written by `epitome exemplars build`. Default: the one shipped, built
    /// from the shared annotations' training split with the shipped model's encoder.
    #[arg(long, env = "EPITOME_EXEMPLARS")]
    exemplars: Option<PathBuf>,
    /// Curated phrasings, tried after the retrieved ones (replaces the shipped file;
    /// models/default/curated-exemplars.json shows the format).
    #[arg(long, env = "EPITOME_CURATED")]
    curated: Option<PathBuf>,
}

impl ExemplarArgs {
    fn load(
        &self,
        bundle: &epitome::bundle::LoadedBundle,
    ) -> Result<epitome::suggest::exemplars::Library> {
        Ok(epitome::suggest::load_library(
            bundle,
            self.exemplars.as_deref(),
            self.curated.as_deref(),
        )?)
    }
}

#[derive(Args, Debug)]
struct SuggestArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    library: ExemplarArgs,
    /// The seeker's post.
    #[arg(long)]
    seeker: String,
    /// The response to improve.
    #[arg(long)]
    response: String,
    /// Mechanisms to suggest for, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    mechanisms: Vec<epitome::mechanism::Mechanism>,
    /// Suggestions per mechanism.
    #[arg(long, default_value_t = epitome::suggest::DEFAULT_PER_MECHANISM)]
    max_per_mechanism: usize,
    /// Print the JSON object of `POST /v1/suggest` instead.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ExemplarsCommand {
    /// Build a library from the rationales of level-1 and level-2 responses: sentences
    /// normalised and deduplicated, kept when enough distinct responses use them, first-person
    /// experience claims left out; seeker posts embedded with the model's seeker encoder.
    Build(ExemplarsBuildArgs),
    /// Offline evaluation: for each mechanism, the model's dev responses annotated at level
    /// 0, suggested for; the share that get a verified suggestion, and the mean level gain of
    /// applying the top one.
    Evaluate(ExemplarsEvaluateArgs),
}

#[derive(Args, Debug)]
struct ExemplarsEvaluateArgs {
    /// Directory with the three EPITOME CSVs.
    #[arg(long, default_value = "../shared/data/epitome-reddit")]
    data: PathBuf,
    /// The model, whose recorded split names the dev pairs.
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    library: ExemplarArgs,
    /// Also write the table as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ExemplarsBuildArgs {
    /// Directory with the three EPITOME CSVs.
    #[arg(long, default_value = "../shared/data/epitome-reddit")]
    data: PathBuf,
    /// Whose seeker encoder embeds, and whose training split is used (its dev pairs are left
    /// out).
    #[command(flatten)]
    model: ModelArg,
    /// Distinct responses that must use a phrasing before it is kept.
    #[arg(long, default_value_t = epitome::suggest::exemplars::DEFAULT_MIN_RESPONSES)]
    min_responses: usize,
    /// Where to write the library (JSON).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("levels").required(true).args(["predictions", "model"])))]
struct AnalyzeArgs {
    /// Interactions (CSV, JSONL or Parquet): seeker_post, response_post and, each optional, id,
    /// responder_id, seeker_id, created_at (RFC 3339 or Unix seconds), likes, seeker_replied
    /// (0/1 or a count), seeker_followed (0/1).
    #[arg(long)]
    input: PathBuf,
    /// Levels from `epitome predict` (JSONL, CSV or Parquet), joined on id (or on the row
    /// number when the input has no id column).
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Compute the levels with this model instead (a bundle directory, or `default` for the
    /// shipped model); they are saved to OUT/predictions.jsonl.
    #[arg(long)]
    model: Option<ModelSource>,
    /// Directory for report.html, report.md, insights.json and estimates.csv.
    #[arg(long)]
    out: PathBuf,
    /// Map a column: OUR_NAME=FILE_COLUMN, e.g. likes=upvotes; repeat for more.
    #[arg(long = "col", value_parser = epitome::analyze::parse_mapping)]
    columns: Vec<(epitome::analyze::Column, String)>,
    /// What to do with a row that cannot be used.
    #[arg(long, value_enum, default_value = "fail")]
    on_error: OnError,
    /// Bootstrap replicates for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 12)]
    seed: u64,
    /// Supporters need at least this many dated responses to enter the learning analysis.
    #[arg(long, default_value_t = 10)]
    min_responses: usize,
    /// High empathy: total score (0–6) at least this.
    #[arg(long, default_value_t = 4)]
    high_empathy: u8,
    /// Low empathy: total score at most this.
    #[arg(long, default_value_t = 1)]
    low_empathy: u8,
    /// What the bootstrap resamples.
    #[arg(long, value_enum, default_value = "auto")]
    resample: ResampleUnit,
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Directory to write interactions.csv, predictions.jsonl and planted.json into.
    #[arg(long)]
    out: PathBuf,
    /// Interactions in all.
    #[arg(long, default_value_t = 20_000)]
    interactions: usize,
    /// Supporters (activity is heavy-tailed: a few write most responses).
    #[arg(long, default_value_t = 400)]
    supporters: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Learning: share of each mechanism's level distribution moved towards level 2 per
    /// doubling of experience (negative: towards level 0). 0: flat.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    learning: f64,
}

#[derive(Args, Debug)]
struct ExperimentArgs {
    /// Directory with the three EPITOME CSVs.
    #[arg(long)]
    data: PathBuf,
    /// Where the bundles (OUT/RECIPE/seed-N), results.json and results.md go.
    #[arg(long)]
    out: PathBuf,
    /// Number of seeds: 12, 13, ... Each seed draws its own split and training.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// A bi-encoder row: `default`, or NAME:FIELD=VALUE,... over the default training options
    /// (e.g. len128:max_len=128). Repeat for more rows.
    #[arg(long = "recipe", default_value = "default")]
    recipes: Vec<epitome::experiment::Recipe>,
    /// Leave out the majority-class and TF-IDF rows.
    #[arg(long)]
    no_baselines: bool,
    /// Grouped, stratified k-fold: every seed runs each of K folds as dev (K trainings per
    /// seed and recipe) instead of one 10% dev split.
    #[arg(long)]
    folds: Option<usize>,
    #[command(flatten)]
    encoder: EncoderArg,
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// The input the shards were scored from.
    #[arg(long)]
    input: PathBuf,
    /// The merged output (.csv, .parquet or JSON lines, as the shard outputs).
    #[arg(long)]
    output: PathBuf,
    /// The shard outputs, in any order.
    #[arg(required = true)]
    parts: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The bundle to copy.
    #[arg(long)]
    model: PathBuf,
    /// Where to write the copy (replaced only once complete).
    #[arg(long)]
    out: PathBuf,
    /// Number format of the stored fine-tuned tensors.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: StoredDType,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoredDType {
    F32,
    F16,
    Bf16,
}

impl From<StoredDType> for candle_core::DType {
    fn from(d: StoredDType) -> Self {
        match d {
            StoredDType::F32 => candle_core::DType::F32,
            StoredDType::F16 => candle_core::DType::F16,
            StoredDType::Bf16 => candle_core::DType::BF16,
        }
    }
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// The pretrained encoder the checkpoints started from (for the paper's models: roberta-base).
    #[arg(long)]
    encoder: PathBuf,
    /// A checkpoint and its mechanism, as ER=path; repeat for IP and EX.
    #[arg(long = "checkpoint", value_parser = parse_checkpoint, required = true)]
    checkpoints: Vec<(epitome::Mechanism, PathBuf)>,
    /// Tokens per post; the original code uses 64.
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    /// Where to write the bundle.
    #[arg(long)]
    out: PathBuf,
}

fn parse_checkpoint(s: &str) -> Result<(epitome::Mechanism, PathBuf), String> {
    let (m, path) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected MECHANISM=PATH, e.g. ER=er.pth"))?;
    Ok((m.parse()?, PathBuf::from(path)))
}

#[derive(Args, Debug)]
struct LoadtestArgs {
    /// Address of the server (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Pairs to send (CSV or JSONL with seeker_post and response_post), cycled through.
    #[arg(long)]
    input: PathBuf,
    /// The route to load: score (`POST /v1/score`) or suggest (`POST /v1/suggest`).
    #[arg(long, value_enum, default_value = "score")]
    route: epitome::loadtest::Route,
    /// Requests in total.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
    /// File holding the server's bearer token, if it has one.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    library: ExemplarArgs,
    /// Address to listen on. The default is reachable from this machine only.
    #[arg(long, env = "EPITOME_ADDR", default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// File holding a bearer token required on /v1/score, /info and /metrics.
    #[arg(long, env = "EPITOME_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Tokens (seeker and response) in one model batch.
    #[arg(long, default_value_t = 8192)]
    max_batch_tokens: usize,
    /// Milliseconds a batch waits for more requests once those already queued have joined.
    /// 0: requests that arrive while the model is busy are batched, a lone one is not delayed.
    #[arg(long, default_value_t = 0)]
    max_wait_ms: u64,
    /// Requests that may wait for the model (being read, tokenized or queued); more get 429
    /// before their body is read.
    #[arg(long, default_value_t = 64)]
    max_concurrent_requests: usize,
    /// A request that waited this many milliseconds for the model gets 429 unscored.
    #[arg(long, default_value_t = 10_000)]
    max_queue_ms: u64,
    /// Milliseconds a client has to send its request headers before the connection is closed.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Milliseconds a client has to send its body once the headers are in (408 after).
    #[arg(long, default_value_t = 10_000)]
    body_timeout_ms: u64,
    /// Pairs in one request.
    #[arg(long, default_value_t = 64)]
    max_pairs_per_request: usize,
    /// Bytes in one request body.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Characters in one post (posts are truncated to the model's maximum tokens anyway).
    #[arg(long, default_value_t = 20_000)]
    max_text_chars: usize,
}

impl ServeArgs {
    fn config(&self) -> Result<ServeConfig> {
        let ms = std::time::Duration::from_millis;
        Ok(ServeConfig {
            addr: self.addr,
            token: self
                .token_file
                .as_deref()
                .map(read_token_file)
                .transpose()?,
            max_batch_tokens: self.max_batch_tokens,
            max_wait: ms(self.max_wait_ms),
            max_concurrent_requests: self.max_concurrent_requests,
            max_queue_time: ms(self.max_queue_ms),
            header_timeout: ms(self.header_timeout_ms),
            body_timeout: ms(self.body_timeout_ms),
            max_pairs_per_request: self.max_pairs_per_request,
            max_body_bytes: self.max_body_bytes,
            max_text_chars: self.max_text_chars,
        })
    }
}

#[derive(Subcommand, Debug)]
enum EncoderCommand {
    /// Download the default encoder (all-MiniLM-L6-v2) into the cache and verify it.
    Fetch {
        /// Download again even if the cache holds a verified copy.
        #[arg(long)]
        force: bool,
    },
    /// Print where the default encoder is cached.
    Path,
}

#[derive(Args, Debug)]
struct ShardArg {
    /// Score only shard INDEX/COUNT of the input (INDEX from 0), chosen by a stable hash of
    /// each pair's id, so that COUNT processes cover the input exactly once; join their
    /// outputs with `epitome merge`. `--shard slurm` or `--shard k8s` read the index and count
    /// from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX/EPITOME_SHARDS.
    #[arg(long)]
    shard: Option<String>,
}

impl ShardArg {
    fn shard(&self) -> Result<Option<Shard>> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!(
                    "--shard {}: {name} is not set",
                    self.shard.as_deref().unwrap_or("")
                )
            })
        };
        let text = match self.shard.as_deref() {
            None => return Ok(None),
            Some("slurm") => {
                let min: u64 = std::env::var("SLURM_ARRAY_TASK_MIN")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let id: u64 = var("SLURM_ARRAY_TASK_ID")?
                    .parse()
                    .context("SLURM_ARRAY_TASK_ID is not a number")?;
                format!(
                    "{}/{}",
                    id.saturating_sub(min),
                    var("SLURM_ARRAY_TASK_COUNT")?
                )
            }
            Some("k8s") => format!(
                "{}/{}",
                var("JOB_COMPLETION_INDEX")?,
                var("EPITOME_SHARDS")?
            ),
            Some(other) => other.to_owned(),
        };
        text.parse::<Shard>()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--shard {e}"))
    }
}

#[derive(Args, Debug)]
struct ModelArg {
    /// A model bundle directory written by `epitome train`, or `default` for the model that
    /// ships with epitome (installed into the cache on first use, with the default encoder).
    #[arg(long, env = "EPITOME_MODEL", default_value = ModelSource::SHIPPED)]
    model: ModelSource,
    /// Number format of the encoders' products: f32; int8 (the responder encoder's products
    /// with int8 weights and activations, close calls scored again in f32: the levels stay
    /// f32's, see docs/RESULTS.md); or auto, int8 where the CPU has AVX-512 VNNI and f32
    /// elsewhere.
    #[arg(long, value_enum, env = "EPITOME_PRECISION", default_value = "auto")]
    precision: epitome::kernels::Precision,
}

impl ModelArg {
    /// The bundle, set to run at the chosen precision.
    fn load(&self) -> Result<epitome::bundle::LoadedBundle> {
        let dir = self.model.resolve()?;
        let mut loaded = epitome::bundle::load(&dir, &Device::Cpu)?;
        loaded.model.set_precision(self.precision);
        Ok(loaded)
    }
}

#[derive(Args, Debug)]
struct EncoderArg {
    /// A Hugging Face-format encoder directory (config.json, tokenizer.json, model.safetensors).
    /// Default: all-MiniLM-L6-v2, fetched into the cache on first use.
    #[arg(long, env = "EPITOME_ENCODER")]
    encoder: Option<PathBuf>,
}

impl EncoderArg {
    fn resolve(&self) -> Result<(PretrainedEncoder, String)> {
        Ok(resolve_encoder(self.encoder.as_deref())?)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// Tuned for the default encoder on the dev split (docs/RESULTS.md).
    Default,
    /// The original code's settings (RoBERTa-base in the paper).
    Paper,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Directory with the three EPITOME CSVs (emotional-reactions-reddit.csv, ...).
    #[arg(long)]
    data: PathBuf,
    /// Where to write the model bundle (a directory; replaced only once complete).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    encoder: EncoderArg,
    /// Base settings; the flags below override single values.
    #[arg(long, value_enum, default_value = "default")]
    preset: Preset,
    /// Passes over the training pairs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Pairs per optimisation step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate of AdamW.
    #[arg(long)]
    lr: Option<f64>,
    /// Peak learning rate of the layers new to the model (cross-attention, level and
    /// rationale heads), which start from random values [default: --lr].
    #[arg(long)]
    head_lr: Option<f64>,
    /// Weight of the level loss.
    #[arg(long)]
    lambda_ei: Option<f64>,
    /// Weight of the rationale loss.
    #[arg(long)]
    lambda_re: Option<f64>,
    /// Maximum tokens per post, special tokens included.
    #[arg(long)]
    max_len: Option<usize>,
    /// Dropout probability in the attention and the heads.
    #[arg(long)]
    dropout: Option<f64>,
    /// Seed of the split, the initialisation, dropout and the batch order.
    #[arg(long)]
    seed: Option<u64>,
    /// Seed of the split alone (default: --seed): several seeds' models on one split, e.g. to
    /// average them with `ensemble-eval`.
    #[arg(long)]
    split_seed: Option<u64>,
    /// Share of pairs (grouped by seeker post) held out as the dev split.
    #[arg(long)]
    dev_fraction: Option<f64>,
    /// Use only the first N pairs (smoke tests).
    #[arg(long)]
    limit: Option<usize>,
    /// Grouped, stratified k-fold instead of --dev-fraction: INDEX/COUNT makes fold INDEX
    /// (from 0) of COUNT the dev side.
    #[arg(long)]
    fold: Option<epitome::data::Fold>,
    /// One responder encoder for all mechanisms, or one each.
    #[arg(long, value_enum)]
    responder: Option<ResponderSharing>,
    /// Weighting of the levels in the level loss: none, inverse (n / 3·n_level) or sqrt (its
    /// square root), for all mechanisms or per mechanism as ER=sqrt,IP=inverse,EX=inverse.
    #[arg(long)]
    class_weights: Option<LevelWeighting>,
    /// Each mechanism's weight on its level loss, on top of --lambda-ei: one number for all,
    /// or per mechanism as IP=2 (unnamed mechanisms: 1).
    #[arg(long)]
    level_loss_weights: Option<LevelLossWeights>,
    /// Fine-tune the responder's word embeddings too.
    #[arg(long)]
    train_embeddings: Option<bool>,
    /// Level head: softmax over the three levels (the paper's), or ordinal (P(level ≥ 1) and
    /// P(level = 2 | level ≥ 1), so that level 1 learns from every pair).
    #[arg(long, value_enum)]
    level_head: Option<LevelHead>,
    /// Response state the level head reads: the first token (the paper's) or the mean of the
    /// response's tokens (how the default encoder was trained to be read).
    #[arg(long, value_enum)]
    level_pooling: Option<LevelPooling>,
    /// Fraction of steps with a linear learning-rate warm-up.
    #[arg(long)]
    warmup: Option<f64>,
    /// Decoupled weight decay of AdamW.
    #[arg(long)]
    weight_decay: Option<f64>,
}

impl TrainArgs {
    fn options(&self) -> Result<TrainOptions> {
        let mut o = match self.preset {
            Preset::Default => TrainOptions::default_for_minilm(),
            Preset::Paper => TrainOptions::paper(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { o.$f = v; } )* };
        }
        set!(
            epochs,
            batch_size,
            lr,
            lambda_ei,
            lambda_re,
            max_len,
            dropout,
            seed,
            dev_fraction,
            responder,
            class_weights,
            level_loss_weights,
            train_embeddings,
            level_head,
            level_pooling,
            warmup,
            weight_decay
        );
        o.head_lr = self.head_lr.or(o.head_lr);
        o.limit = self.limit;
        o.fold = self.fold;
        o.split_seed = self.split_seed;
        o.validate()?;
        Ok(o)
    }
}

#[derive(Args, Debug)]
struct PretrainArgs {
    /// Directory with the three EPITOME CSVs; the posts of its training split are read.
    #[arg(long)]
    data: PathBuf,
    /// Where to write the adapted encoder (a directory; replaced only once complete).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    encoder: EncoderArg,
    /// Passes over the posts.
    #[arg(long, default_value_t = PretrainOptions::default().epochs)]
    epochs: usize,
    /// Posts per optimisation step.
    #[arg(long, default_value_t = PretrainOptions::default().batch_size)]
    batch_size: usize,
    /// Peak learning rate of AdamW.
    #[arg(long, default_value_t = PretrainOptions::default().lr)]
    lr: f64,
    /// Peak learning rate of the new masked-LM head.
    #[arg(long, default_value_t = PretrainOptions::default().head_lr)]
    head_lr: f64,
    /// Share of each post's tokens to predict (BERT's 0.15).
    #[arg(long, default_value_t = PretrainOptions::default().mask_prob)]
    mask_prob: f64,
    /// Maximum tokens per post, special tokens included: the fine-tuning's.
    #[arg(long, default_value_t = PretrainOptions::default().max_len)]
    max_len: usize,
    /// Seed of the head's initialisation, the masks, dropout and the batch order.
    #[arg(long, default_value_t = PretrainOptions::default().seed)]
    seed: u64,
    /// Seed of the split whose training side is read: the --split-seed (or --seed) of the
    /// `train` runs that will start from this encoder. Default: --seed.
    #[arg(long)]
    split_seed: Option<u64>,
    /// Share of pairs held out as dev, as `train --dev-fraction`.
    #[arg(long, default_value_t = PretrainOptions::default().dev_fraction)]
    dev_fraction: f64,
    /// Read the training side of this grouped fold, as `train --fold`.
    #[arg(long)]
    fold: Option<epitome::data::Fold>,
    /// Use only the first N pairs (smoke tests).
    #[arg(long)]
    limit: Option<usize>,
    /// Fraction of steps with a linear learning-rate warm-up.
    #[arg(long, default_value_t = PretrainOptions::default().warmup)]
    warmup: f64,
    /// Decoupled weight decay of AdamW.
    #[arg(long, default_value_t = PretrainOptions::default().weight_decay)]
    weight_decay: f64,
}

impl PretrainArgs {
    fn options(&self) -> Result<PretrainOptions> {
        let o = PretrainOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            head_lr: self.head_lr,
            warmup: self.warmup,
            weight_decay: self.weight_decay,
            mask_prob: self.mask_prob,
            max_len: self.max_len,
            seed: self.seed,
            split_seed: self.split_seed.unwrap_or(self.seed),
            dev_fraction: self.dev_fraction,
            fold: self.fold,
            limit: self.limit,
            ..PretrainOptions::default()
        };
        o.validate()?;
        Ok(o)
    }
}

#[derive(Args, Debug)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Directory with the three EPITOME CSVs.
    #[arg(long)]
    data: PathBuf,
    /// Which pairs to evaluate.
    #[arg(long, value_enum, default_value = "all")]
    split: EvalSplit,
    /// Also write the metrics as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PredictArgs {
    #[command(flatten)]
    model: ModelArg,
    /// CSV, JSONL or Parquet (.parquet) with seeker_post, response_post and optionally id.
    #[arg(long, conflicts_with_all = ["seeker", "response"])]
    input: Option<PathBuf>,
    /// Output file: .csv for CSV, .parquet for Parquet (typed columns), anything else for
    /// JSON lines. Default: JSON lines on stdout.
    #[arg(long, requires = "input")]
    output: Option<PathBuf>,
    /// Continue the run that `--output`'s working file was left by (after a crash, `kill -9`
    /// or a pre-empted job): the pairs already written are read past, not scored again.
    #[arg(long, requires = "output")]
    resume: bool,
    /// What to do with a malformed row: stop, naming its file, line and field (what was
    /// written is kept for --resume), or leave it out and list it in OUTPUT.skipped.txt.
    #[arg(long, value_enum, default_value = "fail")]
    on_error: OnError,
    #[command(flatten)]
    shard: ShardArg,
    /// Megabytes of encoded seeker posts to keep, so that a post answered many times is
    /// encoded once (the oldest leave first). More helps when replies to one post lie far
    /// apart in the file, less keeps `predict` smaller; the results are the same whatever it
    /// is. Default: 256.
    #[arg(long, requires = "input", value_parser = clap::value_parser!(u32).range(0..=65536))]
    seeker_cache_mb: Option<u32>,
    /// The seeker post of a single pair.
    #[arg(long, requires = "response")]
    seeker: Option<String>,
    /// The response post of a single pair.
    #[arg(long, requires = "seeker")]
    response: Option<String>,
}

#[derive(Args, Debug)]
struct QuickstartArgs {
    /// The model to score with: `default` (shipped with epitome) or a bundle directory.
    #[arg(long, env = "EPITOME_MODEL", default_value = ModelSource::SHIPPED)]
    model: ModelSource,
    /// Pairs to score.
    #[arg(
        long,
        default_value = "../shared/data/epitome-reddit/sample_test_input.csv"
    )]
    input: PathBuf,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    encoder: EncoderArg,
    /// Timed repetitions of each measurement.
    #[arg(long, default_value_t = 6)]
    iters: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Instead of the encoder, time `analyze` (levels given) on this many synthetic
    /// interactions, written to a temporary directory.
    #[arg(long, conflicts_with_all = ["encoder", "iters"])]
    analyze: Option<usize>,
    /// Bootstrap replicates of the analyze benchmark.
    #[arg(long, default_value_t = 1000, requires = "analyze")]
    bootstrap: usize,
}

/// Process-wide settings that make the tensor kernels faster; measured on single-pair scoring
/// with `perf stat` (task-clock over 100 pairs).
fn tune_runtime() {
    // candle asks for its thread count on every matrix product and, without RAYON_NUM_THREADS,
    // works it out again from /proc/cpuinfo each time: 29% of the CPU time of single-pair
    // scoring. Work it out once, with candle's own rule. Set before any thread starts.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    // Every tensor op allocates its output; mimalloc by default hands freed pages back to the
    // kernel, which zeroes them again on the next allocation. Keeping them saved a further 8%.
    // -1 means never purge.
    // SAFETY: sets a plain integer option of the allocator this binary links; no pointers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// `mi_option_purge_delay` in mimalloc.h (libmimalloc-sys names 14 and 16, not 15).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `--log`: a closed set, so that a mistyped level is an error naming the flag instead of a
/// silent fallback.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "epitome=error",
            LogLevel::Warn => "epitome=warn",
            LogLevel::Info => "epitome=info",
            LogLevel::Debug => "epitome=debug",
            LogLevel::Trace => "epitome=trace",
        }
    }
}

fn main() -> std::process::ExitCode {
    tune_runtime();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::new(cli.log.directive());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of our output went away (`epitome predict ... | head -1`): what it
        // wanted it has, as ripgrep treats it.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Encoder(EncoderCommand::Fetch { force }) => {
            let dir = if force {
                let dir = default_encoder_dir();
                fetch_default_encoder(&dir)?;
                dir
            } else {
                ensure_default_encoder()?
            };
            println!("{}", dir.display());
            Ok(())
        }
        Command::Encoder(EncoderCommand::Path) => {
            println!("{}", default_encoder_dir().display());
            Ok(())
        }
        Command::Train(args) => train(&args),
        Command::Pretrain(args) => pretrain(&args),
        Command::Experiment(args) => experiment(&args),
        Command::Eval(args) => eval(&args),
        Command::Predict(args) => predict(&args),
        Command::Quickstart(args) => quickstart(&args),
        Command::Serve(args) => serve(&args),
        Command::Loadtest(args) => loadtest(&args),
        Command::Analyze(args) => analyze(&args),
        Command::SynthPlatform(args) => synth_platform(&args),
        Command::Suggest(args) => suggest(&args),
        Command::Exemplars(ExemplarsCommand::Evaluate(args)) => {
            let bundle = args.model.load()?;
            let library = args.library.load(&bundle)?;
            let rows = epitome::suggest::evaluate_suggestions(
                &bundle,
                &library,
                &args.data,
                &Bars::default(),
            )?;
            println!("| mechanism | dev responses at level 0 | model says 0 / 1 / 2 | with a verified suggestion | top raises the level | mean level gain (with one) | mean level gain (all) | top from annotations / curated |");
            println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            for r in &rows {
                println!(
                    "| {} | {} | {} / {} / {} | {} ({:.1}%) | {} | {:.2} | {:.2} | {} / {} |",
                    r.mechanism,
                    r.responses,
                    r.model_levels_before[0],
                    r.model_levels_before[1],
                    r.model_levels_before[2],
                    r.with_suggestion,
                    100.0 * r.with_suggestion as f64 / r.responses.max(1) as f64,
                    r.top_raises_level,
                    r.mean_gain_with,
                    r.mean_gain_all,
                    r.top_from_exemplars,
                    r.top_from_curated
                );
            }
            if let Some(path) = &args.json {
                let json = serde_json::to_vec_pretty(&rows)?;
                epitome::atomic::write_atomically(path, |w| std::io::Write::write_all(w, &json))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
        Command::Exemplars(ExemplarsCommand::Build(args)) => {
            anyhow::ensure!(
                args.min_responses >= 1,
                "--min-responses must be at least 1"
            );
            let bundle = args.model.load()?;
            let library = epitome::suggest::build_library(&bundle, &args.data, args.min_responses)?;
            let json = serde_json::to_vec_pretty(&library)?;
            epitome::atomic::write_atomically(&args.out, |w| std::io::Write::write_all(w, &json))
                .with_context(|| format!("cannot write {}", args.out.display()))?;
            let count = |m| library.of(m).count();
            eprintln!(
                "{} exemplars (ER {}, IP {}, EX {}) used by at least {} responses each, written to {}",
                library.exemplars.len(),
                count(epitome::mechanism::Mechanism::EmotionalReactions),
                count(epitome::mechanism::Mechanism::Interpretations),
                count(epitome::mechanism::Mechanism::Explorations),
                args.min_responses,
                args.out.display()
            );
            Ok(())
        }
        Command::Import(args) => {
            let encoder = PretrainedEncoder::open(&args.encoder)?;
            epitome::bundle::import_original(&encoder, &args.checkpoints, args.max_len, &args.out)?;
            eprintln!("bundle written to {}", args.out.display());
            Ok(())
        }
        Command::Merge(args) => {
            let n =
                epitome::predict::merge(&args.input, &args.parts, &args.output, &Bars::default())?;
            eprintln!("{n} predictions in {}", args.output.display());
            Ok(())
        }
        Command::Export(args) => {
            epitome::bundle::export(
                &args.model,
                &args.out,
                args.dtype.into(),
                epitome::train::record_command,
            )?;
            eprintln!("bundle written to {}", args.out.display());
            Ok(())
        }
        Command::Bench(args) => bench(&args),
        Command::TuneOffsets(args) => tune_offsets(&args),
        Command::EnsembleEval(args) => ensemble_eval(&args),
    }
}

/// Each of `models` scored on its own dev pairs of the annotations in `data`.
fn dev_scores_of(
    data: &Path,
    models: &[ModelSource],
) -> Result<Vec<epitome::experiment::dev::DevScores>> {
    let dataset = epitome::data::load_epitome(data)?;
    let dirs = models
        .iter()
        .map(ModelSource::resolve)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(epitome::experiment::dev::dev_scores_of(
        &dirs,
        &dataset.examples,
    )?)
}

fn ensemble_eval(args: &EnsembleEvalArgs) -> Result<()> {
    use epitome::experiment::ensemble::{average, level_scores};
    let members = dev_scores_of(&args.data, &args.models)?;
    let ensemble = average(&members)?;
    println!(
        "{} dev pairs; accuracy / macro-F1, deciding by the most probable level",
        ensemble.ids.len()
    );
    println!(
        "| mechanism | {} | mean of the models | ensemble |",
        args.models
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("| --- |{} --- | --- |", " --- |".repeat(members.len()));
    for &m in &ensemble.mechanisms {
        let alone: Vec<_> = members.iter().filter_map(|d| level_scores(d, m)).collect();
        let Some(together) = level_scores(&ensemble, m) else {
            continue;
        };
        let cells: Vec<String> = alone
            .iter()
            .map(|s| format!("{:.3} / {:.3}", s.accuracy, s.macro_f1))
            .collect();
        let n = alone.len() as f64;
        println!(
            "| {m} | {} | {:.3} / {:.3} | {:.3} / {:.3} |",
            cells.join(" | "),
            alone.iter().map(|s| s.accuracy).sum::<f64>() / n,
            alone.iter().map(|s| s.macro_f1).sum::<f64>() / n,
            together.accuracy,
            together.macro_f1
        );
    }
    Ok(())
}

fn tune_offsets(args: &TuneOffsetsArgs) -> Result<()> {
    use epitome::experiment::offsets::{apply, leave_one_out};
    let all = dev_scores_of(&args.data, &args.models)?;
    let rows = leave_one_out(&all, &args.mechanisms);
    println!("| model | mechanism | offsets of levels 1, 2 | tuned on (pairs) | dev pairs | macro-F1 argmax → offsets | accuracy | F1 of level 1 |");
    println!("| --- | --- | --- | ---: | ---: | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {:+.1}, {:+.1} | {} | {} | {:.3} → {:.3} | {:.3} → {:.3} | {:.3} → {:.3} |",
            r.model.display(),
            r.mechanism,
            r.offsets[1],
            r.offsets[2],
            r.tuned_on,
            r.dev_pairs,
            r.macro_f1_before,
            r.macro_f1_after,
            r.accuracy_before,
            r.accuracy_after,
            r.level_f1_before[1],
            r.level_f1_after[1]
        );
    }
    for m in epitome::Mechanism::ALL {
        let of: Vec<_> = rows.iter().filter(|r| r.mechanism == m).collect();
        if !of.is_empty() {
            let n = of.len() as f64;
            println!(
                "{m}: mean dev macro-F1 over {} models {:.3} → {:.3}",
                of.len(),
                of.iter().map(|r| r.macro_f1_before).sum::<f64>() / n,
                of.iter().map(|r| r.macro_f1_after).sum::<f64>() / n
            );
        }
    }
    if let Some(path) = &args.json {
        write_atomically(path, &(serde_json::to_string_pretty(&rows)? + "\n"))?;
    }
    let (Some(target), Some(out)) = (&args.apply_to, &args.out) else {
        return Ok(());
    };
    let report = apply(
        &target.resolve()?,
        out,
        args.dtype.into(),
        &all,
        &args.mechanisms,
        &args.data,
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        &Bars::default(),
    )?;
    print!("{}", report.table());
    eprintln!("bundle written to {}", out.display());
    Ok(())
}

/// Progress drawn as indicatif bars on stderr, one phase at a time.
#[derive(Default)]
struct Bars(std::sync::Mutex<Option<ProgressBar>>);

impl Bars {
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(pb) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(pb);
        }
    }
}

impl Progress for Bars {
    fn begin(&self, phase: &str, total: Option<u64>, unit: Unit) {
        let template = match (unit, total) {
            (Unit::Bytes, _) => "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({eta})",
            (_, Some(_)) => "{prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, ETA {eta})",
            (_, None) => "{prefix} {spinner} {pos} pairs ({per_sec})",
        };
        let pb = match total {
            Some(n) => ProgressBar::new(n),
            None if unit == Unit::Bytes => ProgressBar::new(0),
            None => ProgressBar::new_spinner(),
        };
        pb.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(phase.to_owned());
        if let Some(old) = self.0.lock().unwrap_or_else(|e| e.into_inner()).replace(pb) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        self.with(|pb| pb.inc(n));
    }

    fn set(&self, done: u64, total: u64) {
        self.with(|pb| {
            pb.set_length(total);
            pb.set_position(done);
        });
    }

    fn message(&self, text: String) {
        self.with(|pb| pb.set_message(text));
    }

    fn end(&self) {
        if let Some(pb) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pb.finish_and_clear();
        }
    }
}

fn synth_platform(args: &SynthArgs) -> Result<()> {
    let config = epitome::analyze::synth::SynthConfig {
        interactions: args.interactions,
        supporters: args.supporters,
        seed: args.seed,
        learning: args.learning,
        ..Default::default()
    };
    config.validate()?;
    let platform = epitome::analyze::synth::generate(&config);
    platform
        .write(&args.out)
        .with_context(|| format!("cannot write into {}", args.out.display()))?;
    eprintln!(
        "wrote interactions.csv, predictions.jsonl and planted.json ({} interactions) to {}",
        platform.rows.len(),
        args.out.display()
    );
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<()> {
    let json = if let Some(interactions) = args.analyze {
        let dir = tempfile_dir("epitome-bench-analyze")?;
        let report = epitome::analyze::bench::run(interactions, args.bootstrap, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        serde_json::to_string_pretty(&report?)?
    } else {
        let (encoder, _) = args.encoder.resolve()?;
        serde_json::to_string_pretty(&epitome::bench::run(&encoder, args.iters)?)?
    };
    println!("{json}");
    if let Some(path) = &args.json {
        write_atomically(path, &(json + "\n"))?;
    }
    Ok(())
}

fn loadtest(args: &LoadtestArgs) -> Result<()> {
    let pairs = PairReader::open(&args.input)?.collect::<Result<Vec<_>, _>>()?;
    let test = epitome::loadtest::LoadTest {
        addr: args.addr,
        route: args.route,
        requests: args.requests,
        concurrency: args.concurrency,
        max_duration: std::time::Duration::from_secs(args.max_seconds),
        token: args
            .token_file
            .as_deref()
            .map(read_token_file)
            .transpose()?,
    };
    let report = epitome::loadtest::run(&test, &pairs)?;
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    if let Some(path) = &args.json {
        write_atomically(path, &(json + "\n"))?;
    }
    if report.failed + report.lost > 0 {
        bail!("{} failed and {} lost requests", report.failed, report.lost);
    }
    Ok(())
}

fn serve(args: &ServeArgs) -> Result<()> {
    let config = args.config()?;
    let bundle = args.model.load()?;
    // A model on another encoder than the shipped library's still serves scores; asking
    // for a library that does not fit it is an error.
    let library = match (args.library.load(&bundle), &args.library.exemplars) {
        (Ok(library), _) => Some(library),
        (Err(e), Some(_)) => return Err(e),
        (Err(e), None) => {
            tracing::warn!("POST /v1/suggest is off: {e:#}");
            None
        }
    };
    match (&config.token, args.addr.ip().is_loopback()) {
        (None, true) => tracing::info!("no token: reachable from this machine only ({})", args.addr),
        (None, false) => tracing::warn!(
            "no token and a non-loopback address ({}): anyone who can reach it can send text to score; pass --token-file",
            args.addr
        ),
        (Some(_), _) => tracing::info!("bearer token required on /v1/score, /info and /metrics"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(epitome::serve::serve_bundle(config, bundle, library))
        .with_context(|| format!("cannot serve on {}", args.addr))
}

fn analyze(args: &AnalyzeArgs) -> Result<()> {
    use epitome::analyze::job::{self, AnalyzeJob, LevelsFrom};
    let model_dir = match (&args.predictions, &args.model) {
        (None, Some(model)) => Some(model.resolve()?),
        _ => None,
    };
    let levels = match (&args.predictions, &model_dir) {
        (Some(predictions), _) => LevelsFrom::Predictions(predictions),
        (None, Some(dir)) => LevelsFrom::Model(dir),
        (None, None) => bail!("give --predictions FILE or --model DIR (or --model default)"),
    };
    let job = AnalyzeJob {
        input: &args.input,
        levels,
        columns: ColumnMap::with_mappings(&args.columns)?,
        out: &args.out,
        options: epitome::analyze::AnalyzeOptions {
            replicates: args.bootstrap,
            seed: args.seed,
            unit: args.resample,
            thresholds: epitome::analyze::outcomes::Thresholds {
                low_max: args.low_empathy,
                high_min: args.high_empathy,
            },
            min_responses: args.min_responses,
            on_error: args.on_error,
            ..Default::default()
        },
    };
    let outcome = job::run(job, &Bars::default())?;
    if let Some(saved) = &outcome.saved_predictions {
        eprintln!(
            "levels saved to {} (pass it as --predictions to analyze again without scoring)",
            saved.display()
        );
    }
    let insights = &outcome.insights;
    for finding in epitome::analyze::report::findings(insights) {
        println!("- {finding}");
    }
    let skipped = &insights.input.skipped;
    if skipped.rows > 0 || skipped.unmatched_predictions > 0 || skipped.prediction_lines > 0 {
        eprintln!(
            "skipped {} rows, {} unreadable prediction lines and {} predictions without an interaction (details in the report)",
            skipped.rows, skipped.prediction_lines, skipped.unmatched_predictions
        );
    }
    if !insights.warnings.is_empty() {
        eprintln!(
            "{} warnings about small groups (see the report)",
            insights.warnings.len()
        );
    }
    eprintln!(
        "analyzed {} interactions; wrote report.html, report.md, insights.json and estimates.csv to {}",
        insights.input.interactions,
        args.out.display()
    );
    Ok(())
}

fn train(args: &TrainArgs) -> Result<()> {
    train_and_report(
        &args.data,
        args.encoder.encoder.as_deref(),
        &args.options()?,
        &args.out,
    )
}

/// Trains with bars on stderr, then says what was kept and its dev metrics.
fn train_and_report(
    data: &Path,
    encoder: Option<&Path>,
    options: &TrainOptions,
    out: &Path,
) -> Result<()> {
    let (encoder, source) = resolve_encoder(encoder)?;
    let summary = epitome::train::train(data, &encoder, &source, options, out, &Bars::default())?;
    eprintln!(
        "trained on {} pairs ({} dev) in {:.0} s; kept epoch {}; bundle written to {}",
        summary.train_pairs,
        summary.dev_pairs,
        summary.seconds,
        summary.best_epoch,
        summary.out.display()
    );
    if let Some(dev) = &summary.dev {
        eprint!("dev metrics of the kept epoch:\n{}", dev.table());
    }
    Ok(())
}

fn pretrain(args: &PretrainArgs) -> Result<()> {
    let (encoder, source) = args.encoder.resolve()?;
    let summary = epitome::pretrain::pretrain(
        &args.data,
        &encoder,
        &source,
        &args.options()?,
        &args.out,
        &Bars::default(),
    )?;
    eprintln!(
        "masked-LM training on {} posts ({} dev) in {:.0} s; adapted encoder written to {}",
        summary.texts,
        summary.dev_texts,
        summary.seconds,
        summary.out.display()
    );
    if let Some(dev) = summary.history.last().and_then(|e| e.dev) {
        eprintln!(
            "dev posts: masked-token loss {:.3}, accuracy {:.3} ({} tokens)",
            dev.loss, dev.accuracy, dev.tokens
        );
    }
    eprintln!(
        "fine-tune from it with: epitome train --encoder {} --split-seed {} ...",
        summary.out.display(),
        args.split_seed.unwrap_or(args.seed)
    );
    Ok(())
}

fn experiment(args: &ExperimentArgs) -> Result<()> {
    use epitome::experiment::{self, ExperimentOptions};
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let (encoder, source) = args.encoder.resolve()?;
    let options = ExperimentOptions {
        seeds: (12..12 + args.seeds).collect(),
        recipes: args.recipes.clone(),
        baselines: !args.no_baselines,
        folds: args.folds,
    };
    let report = experiment::run(
        &args.data,
        &encoder,
        &source,
        &options,
        &args.out,
        &Bars::default(),
    )?;
    let table = experiment::markdown(&report);
    write_atomically(
        &args.out.join("results.json"),
        &(serde_json::to_string_pretty(&report)? + "\n"),
    )?;
    write_atomically(&args.out.join("results.md"), &table)?;
    print!("{table}");
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let bundle = args.model.load()?;
    let evaluation = evaluate_bundle(&bundle, &args.data, args.split, &Bars::default())?;
    let report = &evaluation.report;
    print!("{}", report.table());
    let not_found: usize = evaluation.data.spans_not_found.iter().sum();
    println!(
        "T-F1 and IOU-F1 count a response with neither gold nor predicted rationale as 1.0 ({}); {not_found} annotated spans could not be located",
        report
            .mechanisms
            .iter()
            .map(|m| format!("{} {}", m.mechanism, m.rationale.both_empty))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("paper (RoBERTa-base, TalkLife + Reddit): ER 79.93 / 74.29, IP 87.50 / 67.46, EX 86.92 / 73.47 (accuracy / macro-F1)");
    if let Some(path) = &args.json {
        write_atomically(path, &(serde_json::to_string_pretty(report)? + "\n"))?;
    }
    Ok(())
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir(prefix: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn write_atomically(path: &Path, content: &str) -> Result<()> {
    epitome::atomic::write_atomically(path, |w| w.write_all(content.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One pair, for a person reading the terminal.
fn print_prediction(prediction: &PairPrediction, max_len: usize) {
    for (m, p) in &prediction.mechanisms {
        let word = ["none", "weak", "strong"][p.level as usize];
        println!(
            "{} ({}): level {} ({word})  probabilities {:.2} / {:.2} / {:.2}",
            m.name(),
            m.code(),
            p.level,
            p.probs[0],
            p.probs[1],
            p.probs[2]
        );
        for r in &p.rationales {
            println!("    rationale [{}..{}]: {:?}", r.start, r.end, r.text);
        }
    }
    if prediction.truncated {
        println!("(a post was longer than {max_len} tokens and was truncated)");
    }
}

fn predict(args: &PredictArgs) -> Result<()> {
    let bundle = args.model.load()?;
    if let (Some(seeker), Some(response)) = (&args.seeker, &args.response) {
        let pair = Pair {
            id: "1".into(),
            seeker_post: seeker.clone(),
            response_post: response.clone(),
        };
        let prediction = predict_pairs(&bundle.scorer(), &bundle.text, &[pair])?.remove(0);
        print_prediction(&prediction, bundle.info.max_len);
        return Ok(());
    }
    let Some(input) = &args.input else {
        bail!("give --input FILE, or --seeker TEXT and --response TEXT");
    };
    let report = predict_file(
        bundle.scorer(),
        bundle.fingerprint(),
        input,
        args.output.as_deref(),
        FileRun {
            resume: args.resume,
            shard: args.shard.shard()?,
            on_error: args.on_error,
            seeker_cache_mb: args.seeker_cache_mb.map(|mb| mb as usize),
        },
        &Bars::default(),
    )?;
    if let Some(out) = &args.output {
        eprintln!("{} predictions in {}", report.predictions, out.display());
    }
    if report.skipped > 0 {
        eprintln!("{} bad rows left out (--on-error skip):", report.skipped);
        for m in report.skip_messages.iter().take(10) {
            eprintln!("  {m}");
        }
        if let Some(file) = &report.skip_file {
            eprintln!("every one is listed in {}", file.display());
        }
    }
    Ok(())
}

fn suggest(args: &SuggestArgs) -> Result<()> {
    use epitome::suggest::{EditOp, Source, SuggestOptions};
    let bundle = args.model.load()?;
    let library = args.library.load(&bundle)?;
    anyhow::ensure!(
        (1..=epitome::suggest::MAX_PER_MECHANISM).contains(&args.max_per_mechanism),
        "--max-per-mechanism must be 1 to {}",
        epitome::suggest::MAX_PER_MECHANISM
    );
    anyhow::ensure!(
        !args.response.trim().is_empty(),
        "--response is empty; there is nothing to improve"
    );
    let options = SuggestOptions {
        mechanisms: if args.mechanisms.is_empty() {
            epitome::mechanism::Mechanism::ALL.to_vec()
        } else {
            args.mechanisms.clone()
        },
        max_per_mechanism: args.max_per_mechanism,
    };
    let pair = Pair {
        id: "1".into(),
        seeker_post: args.seeker.clone(),
        response_post: args.response.clone(),
    };
    let out = epitome::suggest::suggest_pair(&bundle, &library, &pair, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let word = |level: u8| ["none", "weak", "strong"][usize::from(level.min(2))];
    let levels: Vec<String> = out
        .before
        .iter()
        .map(|(m, s)| format!("{m} {} ({})", s.level, word(s.level)))
        .collect();
    println!("now: {}", levels.join(", "));
    if out.suggestions.is_empty() {
        println!("no suggestion raises a mechanism the model can check");
    }
    for s in &out.suggestions {
        let place = match s.edit.op {
            EditOp::Insert { at } => format!("insert at {at}"),
            EditOp::Replace { start, end } => format!(
                "replace {:?}",
                epitome::suggest::sentences::slice(&args.response, start, end)
            ),
        };
        let source = match s.source {
            Source::Exemplar { responses } => format!("used by {responses} annotated responses"),
            Source::Curated => "curated".to_owned(),
        };
        println!(
            "{}: {place}: {:?}\n    {} {} -> {} (P(higher) {:.2} -> {:.2}); {source}",
            s.edit.mechanism,
            s.edit.text,
            s.edit.mechanism,
            s.before.level,
            s.after.level,
            s.before.above(s.before.level),
            s.after.above(s.before.level),
        );
    }
    Ok(())
}

fn quickstart(args: &QuickstartArgs) -> Result<()> {
    let model = args.model.resolve()?;
    eprintln!("scoring {} with {}", args.input.display(), args.model);
    let bundle = epitome::bundle::load(&model, &Device::Cpu)?;
    predict_file(
        bundle.scorer(),
        bundle.fingerprint(),
        &args.input,
        None,
        FileRun::default(),
        &Bars::default(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_training_command_parses_back_to_the_same_options() {
        let mut options = TrainOptions::default_for_minilm();
        options.max_len = 128;
        options.seed = 14;
        options.lr = 5e-5;
        options.responder = ResponderSharing::Separate;
        options.class_weights = "ER=none,IP=sqrt,EX=inverse".parse().unwrap();
        options.fold = Some(epitome::data::Fold { index: 1, count: 5 });
        options.level_head = LevelHead::Ordinal;
        options.level_pooling = LevelPooling::Mean;
        options.head_lr = Some(2.4e-4);
        options.level_loss_weights = "IP=2,EX=0.5".parse().unwrap();
        options.split_seed = Some(12);
        let line = options.command_line();
        let args: Vec<&str> = line.split_whitespace().collect();
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Train(parsed) = cli.command else {
            panic!("{line}")
        };
        assert_eq!(parsed.options().unwrap(), options, "{line}");
        let default = TrainOptions::default_for_minilm().command_line();
        assert_eq!(default, "epitome train --data DATA --out OUT --seed 12");
    }

    #[test]
    fn every_command_parses() {
        Cli::try_parse_from(["epitome", "encoder", "fetch"]).unwrap();
        Cli::try_parse_from(["epitome", "quickstart"]).unwrap();
        let cli = Cli::try_parse_from([
            "epitome",
            "train",
            "--data",
            "d",
            "--out",
            "m",
            "--preset",
            "paper",
            "--epochs",
            "2",
            "--responder",
            "separate",
            "--class-weights",
            "inverse",
        ])
        .unwrap();
        let Command::Train(args) = cli.command else {
            panic!()
        };
        let o = args.options().unwrap();
        assert_eq!(
            (o.epochs, o.lr, o.responder),
            (2, 2e-5, ResponderSharing::Separate)
        );
        Cli::try_parse_from([
            "epitome", "eval", "--model", "m", "--data", "d", "--json", "x.json",
        ])
        .unwrap();
        let cli = Cli::try_parse_from([
            "epitome",
            "pretrain",
            "--data",
            "d",
            "--out",
            "e",
            "--seed",
            "3",
            "--mask-prob",
            "0.2",
        ])
        .unwrap();
        let Command::Pretrain(args) = cli.command else {
            panic!()
        };
        let o = args.options().unwrap();
        assert_eq!((o.seed, o.split_seed, o.mask_prob), (3, 3, 0.2));
        assert_eq!(
            o.command_line(),
            "epitome pretrain --data DATA --out OUT --seed 3 --split-seed 3 --mask-prob 0.2"
        );
        Cli::try_parse_from([
            "epitome", "predict", "--model", "m", "--input", "a.csv", "--output", "b.jsonl",
        ])
        .unwrap();
        Cli::try_parse_from([
            "epitome",
            "predict",
            "--model",
            "m",
            "--seeker",
            "s",
            "--response",
            "r",
        ])
        .unwrap();
        assert!(
            Cli::try_parse_from(["epitome", "predict", "--model", "m", "--seeker", "s"]).is_err()
        );
        Cli::try_parse_from(["epitome", "bench", "--iters", "2"]).unwrap();
        Cli::try_parse_from(["epitome", "bench", "--analyze", "1000000"]).unwrap();
        assert!(Cli::try_parse_from(["epitome", "bench", "--bootstrap", "10"]).is_err());
        let cli = Cli::try_parse_from([
            "epitome",
            "analyze",
            "--input",
            "i.csv",
            "--predictions",
            "p.jsonl",
            "--out",
            "r",
            "--col",
            "likes=upvotes",
            "--col",
            "created_at=time",
            "--on-error",
            "skip",
        ])
        .unwrap();
        let Command::Analyze(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.columns.len(), 2);
        assert!(Cli::try_parse_from(["epitome", "analyze", "--input", "i", "--out", "r"]).is_err());
        assert!(Cli::try_parse_from([
            "epitome",
            "analyze",
            "--input",
            "i",
            "--out",
            "r",
            "--predictions",
            "p",
            "--model",
            "m"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "epitome",
            "analyze",
            "--input",
            "i",
            "--out",
            "r",
            "--predictions",
            "p",
            "--col",
            "karma=x"
        ])
        .is_err());
        Cli::try_parse_from([
            "epitome",
            "synth-platform",
            "--out",
            "d",
            "--learning",
            "-0.05",
        ])
        .unwrap();
        let cli = Cli::try_parse_from(["epitome", "serve", "--model", "m"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!()
        };
        assert!(
            args.addr.ip().is_loopback(),
            "the server binds to loopback by default"
        );
    }
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
