//! The `epitome` command line: argument parsing and error reporting; the work is in the library.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use epitome::data::{load_epitome, Pair, PairReader};
use epitome::encoder::fetch::{default_encoder_dir, ensure_default_encoder, fetch_default_encoder};
use epitome::encoder::PretrainedEncoder;
use epitome::evaluate::evaluate;
use epitome::features::featurize;
use epitome::model::ResponderSharing;
use epitome::predict::{predict_pairs, PredictionWriter, Scorer};
use epitome::train::{LevelWeighting, TrainOptions};
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
    /// Fetch the default encoder, train the default model if there is none, score the sample.
    Quickstart(QuickstartArgs),
    /// Manage the pretrained encoder.
    #[command(subcommand)]
    Encoder(EncoderCommand),
    /// Train a model on the EPITOME annotations and write a model bundle.
    Train(TrainArgs),
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
    /// Platform insights: how empathic responses are, whether empathy goes with more likes,
    /// replies and follows, and whether supporters improve with experience.
    Analyze(AnalyzeArgs),
    /// Write a synthetic platform with planted effects: interactions.csv, predictions.jsonl
    /// and planted.json (what `analyze` should find).
    SynthPlatform(SynthArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum OnErrorArg {
    /// Stop at the first bad row, naming its file, line and column.
    Fail,
    /// Leave bad rows out and report how many, and why.
    Skip,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum ResampleArg {
    /// Supporters when the input has responder_id, interactions otherwise.
    Auto,
    Interaction,
    Supporter,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("levels").required(true).args(["predictions", "model"])))]
struct AnalyzeArgs {
    /// Interactions (CSV or JSONL): seeker_post, response_post and, each optional, id,
    /// responder_id, seeker_id, created_at (RFC 3339 or Unix seconds), likes, seeker_replied
    /// (0/1 or a count), seeker_followed (0/1).
    #[arg(long)]
    input: PathBuf,
    /// Levels from `epitome predict` (JSONL or CSV), joined on id (or on the row number when
    /// the input has no id column).
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Compute the levels with this model bundle instead (saved to DIR/predictions.jsonl).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Directory for report.html, report.md, insights.json and estimates.csv.
    #[arg(long)]
    out: PathBuf,
    /// Map a column: OUR_NAME=FILE_COLUMN, e.g. likes=upvotes; repeat for more.
    #[arg(long = "col", value_parser = epitome::analyze::parse_mapping)]
    columns: Vec<(epitome::analyze::Column, String)>,
    /// What to do with a row that cannot be used.
    #[arg(long, value_enum, default_value = "fail")]
    on_error: OnErrorArg,
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
    resample: ResampleArg,
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
    /// A model bundle written by `epitome train`.
    #[arg(long, env = "EPITOME_MODEL")]
    model: PathBuf,
    #[command(flatten)]
    precision: PrecisionArg,
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
struct PrecisionArg {
    /// Number format of the encoders' products: f32, or int8 (int8 weights and
    /// activations, f32 norms and softmax; see docs/RESULTS.md for its dev metrics).
    #[arg(long, value_enum, env = "EPITOME_PRECISION", default_value = "f32")]
    precision: epitome::kernels::Precision,
}

impl PrecisionArg {
    /// The bundle at `dir`, set to run at this precision.
    fn load(&self, dir: &Path) -> Result<epitome::bundle::LoadedBundle> {
        let mut loaded = epitome::bundle::load(dir, &Device::Cpu)?;
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
        let dir = match &self.encoder {
            Some(d) => d.clone(),
            None => ensure_default_encoder()?,
        };
        let encoder = PretrainedEncoder::open(&dir)?;
        let source = match &self.encoder {
            Some(d) => d.display().to_string(),
            None => format!(
                "{} ({})",
                epitome::encoder::fetch::DEFAULT_ENCODER_NAME,
                epitome::encoder::fetch::DEFAULT_PACKAGE
            ),
        };
        Ok((encoder, source))
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
    /// Share of pairs (grouped by seeker post) held out as the dev split.
    #[arg(long)]
    dev_fraction: Option<f64>,
    /// Use only the first N pairs (smoke tests).
    #[arg(long)]
    limit: Option<usize>,
    /// One responder encoder for all mechanisms, or one each.
    #[arg(long, value_enum)]
    responder: Option<ResponderSharing>,
    /// Weighting of the levels in the level loss: none, inverse (n / 3·n_level) or sqrt (its
    /// square root), for all mechanisms or per mechanism as ER=sqrt,IP=inverse,EX=inverse.
    #[arg(long)]
    class_weights: Option<LevelWeighting>,
    /// Fine-tune the responder's word embeddings too.
    #[arg(long)]
    train_embeddings: Option<bool>,
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
            train_embeddings,
            warmup,
            weight_decay
        );
        o.limit = self.limit;
        if o.epochs == 0 || o.batch_size == 0 {
            bail!("--epochs and --batch-size must be at least 1");
        }
        if !(0.0..1.0).contains(&o.dev_fraction) {
            bail!("--dev-fraction must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&o.dropout) || !(0.0..1.0).contains(&o.warmup) {
            bail!("--dropout and --warmup must be in [0, 1)");
        }
        if o.lr <= 0.0 || !o.lr.is_finite() {
            bail!("--lr must be a positive number");
        }
        Ok(o)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum SplitChoice {
    /// Every pair in the data.
    All,
    /// The dev pairs of the split recorded in the bundle.
    Dev,
    /// The training pairs of the split recorded in the bundle.
    Train,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A model bundle written by `epitome train`.
    #[arg(long, env = "EPITOME_MODEL")]
    model: PathBuf,
    #[command(flatten)]
    precision: PrecisionArg,
    /// Directory with the three EPITOME CSVs.
    #[arg(long)]
    data: PathBuf,
    /// Which pairs to evaluate.
    #[arg(long, value_enum, default_value = "all")]
    split: SplitChoice,
    /// Also write the metrics as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// A model bundle written by `epitome train`.
    #[arg(long, env = "EPITOME_MODEL")]
    model: PathBuf,
    #[command(flatten)]
    precision: PrecisionArg,
    /// CSV or JSONL with seeker_post, response_post and optionally id.
    #[arg(long, conflicts_with_all = ["seeker", "response"])]
    input: Option<PathBuf>,
    /// Output file: .csv for CSV, anything else for JSON lines. Default: JSON lines on stdout.
    #[arg(long, requires = "input")]
    output: Option<PathBuf>,
    /// The seeker post of a single pair.
    #[arg(long, requires = "response")]
    seeker: Option<String>,
    /// The response post of a single pair.
    #[arg(long, requires = "seeker")]
    response: Option<String>,
}

#[derive(Args, Debug)]
struct QuickstartArgs {
    /// Directory with the three EPITOME CSVs.
    #[arg(long, default_value = "../shared/data/epitome-reddit")]
    data: PathBuf,
    /// Where the default model lives (trained there if absent).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Pairs to score once the model exists.
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
    // 15 is `mi_option_purge_delay` in mimalloc.h (libmimalloc-sys names 14 and 16, not 15);
    // -1 means never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a plain integer option of the allocator this binary links; no pointers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

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
        Command::Eval(args) => eval(&args),
        Command::Predict(args) => predict(&args),
        Command::Quickstart(args) => quickstart(&args),
        Command::Serve(args) => serve(&args),
        Command::Loadtest(args) => loadtest(&args),
        Command::Analyze(args) => analyze(&args),
        Command::SynthPlatform(args) => {
            if args.interactions == 0 || args.supporters == 0 {
                bail!("--interactions and --supporters must be at least 1");
            }
            if !args.learning.is_finite() || args.learning.abs() > 1.0 {
                bail!("--learning must be between -1 and 1");
            }
            let config = epitome::analyze::synth::SynthConfig {
                interactions: args.interactions,
                supporters: args.supporters,
                seed: args.seed,
                learning: args.learning,
                ..Default::default()
            };
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
        Command::Import(args) => {
            let encoder = PretrainedEncoder::open(&args.encoder)?;
            epitome::bundle::import_original(&encoder, &args.checkpoints, args.max_len, &args.out)?;
            eprintln!("bundle written to {}", args.out.display());
            Ok(())
        }
        Command::Bench(args) => {
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
                std::fs::write(path, json + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
    }
}

fn loadtest(args: &LoadtestArgs) -> Result<()> {
    let pairs = PairReader::open(&args.input)?.collect::<Result<Vec<_>, _>>()?;
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let test = epitome::loadtest::LoadTest {
        addr: args.addr,
        requests: args.requests,
        concurrency: args.concurrency,
        max_duration: std::time::Duration::from_secs(args.max_seconds),
        token,
    };
    let report = epitome::loadtest::run(&test, &pairs).map_err(anyhow::Error::msg)?;
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
    let token = match &args.token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .trim()
                .to_owned();
            if token.is_empty() {
                bail!("the token file {} is empty", path.display());
            }
            Some(token)
        }
        None => None,
    };
    let bundle = args.precision.load(&args.model)?;
    let config = epitome::serve::ServeConfig {
        addr: args.addr,
        token,
        max_batch_tokens: args.max_batch_tokens,
        max_wait: std::time::Duration::from_millis(args.max_wait_ms),
        max_concurrent_requests: args.max_concurrent_requests,
        max_queue_time: std::time::Duration::from_millis(args.max_queue_ms),
        header_timeout: std::time::Duration::from_millis(args.header_timeout_ms),
        body_timeout: std::time::Duration::from_millis(args.body_timeout_ms),
        max_pairs_per_request: args.max_pairs_per_request,
        max_body_bytes: args.max_body_bytes,
        max_text_chars: args.max_text_chars,
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
        .block_on(epitome::serve::serve_bundle(config, bundle))
        .with_context(|| format!("cannot serve on {}", args.addr))
}

fn analyze(args: &AnalyzeArgs) -> Result<()> {
    use epitome::analyze::{self as an, ColumnMap, LevelSource, OnError};
    if args.bootstrap < 100 {
        bail!("--bootstrap must be at least 100 for 95% intervals");
    }
    if args.high_empathy > 6 || args.low_empathy >= args.high_empathy {
        bail!("--low-empathy must be below --high-empathy, and both within 0–6");
    }
    let on_error = match args.on_error {
        OnErrorArg::Fail => OnError::Fail,
        OnErrorArg::Skip => OnError::Skip,
    };
    let columns = ColumnMap::with_mappings(&args.columns).map_err(anyhow::Error::msg)?;
    let mappings = columns.mappings();
    let reader = an::InteractionReader::open(&args.input, columns, args.model.is_some())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the output directory {}", args.out.display()))?;
    let bar = |prefix: &str| {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_prefix(prefix.to_owned());
        pb
    };
    let (data, levels_from, levels_source) = match (&args.predictions, &args.model) {
        (Some(predictions), _) => {
            let index = an::PredictionIndex::read(predictions, on_error == OnError::Skip)?;
            let pb = bar("reading");
            let data = an::collect(
                reader,
                LevelSource::Predictions(index),
                on_error,
                &mut |read, size| {
                    pb.set_length(size);
                    pb.set_position(read);
                },
            );
            pb.finish_and_clear();
            (data?, "predictions", predictions.display().to_string())
        }
        (None, Some(model)) => {
            let device = Device::Cpu;
            let loaded = epitome::bundle::load(model, &device)?;
            if loaded.info.model.mechanisms.len() != 3 {
                bail!(
                    "{} predicts {} mechanisms; analyze needs all three (ER, IP, EX)",
                    model.display(),
                    loaded.info.model.mechanisms.len()
                );
            }
            let scorer = Scorer {
                model: &loaded.model,
                text: &loaded.text,
                pad_id: loaded.pad_id,
                device: &device,
            };
            let saved = args.out.join("predictions.jsonl");
            let mut writer = PredictionWriter::create(Some(&saved), &loaded.info.model.mechanisms)
                .with_context(|| format!("cannot create {}", saved.display()))?;
            let pb = bar("scoring");
            let mut score = |pairs: &[Pair]| -> Result<Vec<an::Levels>, epitome::Error> {
                let predictions = predict_pairs(&scorer, &loaded.text, pairs)?;
                writer
                    .write(&predictions)
                    .map_err(|source| epitome::Error::Write {
                        path: saved.clone(),
                        source,
                    })?;
                Ok(predictions.iter().map(an::levels_of).collect())
            };
            let data = an::collect(
                reader,
                LevelSource::Model(&mut score),
                on_error,
                &mut |read, size| {
                    pb.set_length(size);
                    pb.set_position(read);
                },
            );
            pb.finish_and_clear();
            match data {
                Ok(data) => {
                    writer
                        .finish()
                        .with_context(|| format!("cannot finish {}", saved.display()))?;
                    eprintln!("levels saved to {} (pass it as --predictions to analyze again without scoring)", saved.display());
                    (data, "model", model.display().to_string())
                }
                Err(e) => {
                    writer.abandon();
                    return Err(e.into());
                }
            }
        }
        (None, None) => bail!("give --predictions FILE or --model DIR"),
    };
    let options = an::AnalyzeOptions {
        replicates: args.bootstrap,
        seed: args.seed,
        unit: match args.resample {
            ResampleArg::Auto => an::ResampleUnit::Auto,
            ResampleArg::Interaction => an::ResampleUnit::Interaction,
            ResampleArg::Supporter => an::ResampleUnit::Supporter,
        },
        thresholds: an::outcomes::Thresholds {
            low_max: args.low_empathy,
            high_min: args.high_empathy,
        },
        min_responses: args.min_responses,
        on_error,
        ..Default::default()
    };
    let provenance = an::Provenance {
        file: args.input.display().to_string(),
        sha256: epitome::digest::sha256_file(&args.input)
            .with_context(|| format!("cannot read {}", args.input.display()))?,
        levels_from: levels_from.into(),
        levels_source,
        column_mappings: mappings,
    };
    let insights = an::analyze(&data, &options, provenance)?;
    an::report::write_reports(&insights, &args.out)
        .with_context(|| format!("cannot write the report into {}", args.out.display()))?;
    for finding in an::report::findings(&insights) {
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
    let options = args.options()?;
    let (encoder, source) = args.encoder.resolve()?;
    let summary = epitome::train::train(&args.data, &encoder, &source, &options, &args.out)?;
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

fn eval(args: &EvalArgs) -> Result<()> {
    let device = Device::Cpu;
    let loaded = args.precision.load(&args.model)?;
    let dataset = load_epitome(&args.data)?;
    let examples: Vec<_> = match args.split {
        SplitChoice::All => dataset.examples.iter().collect(),
        choice => {
            let split = loaded.info.split.as_ref().with_context(|| {
                format!("{} records no split; use --split all", args.model.display())
            })?;
            let (train, dev) = split.partition(&dataset.examples);
            if choice == SplitChoice::Dev {
                dev
            } else {
                train
            }
        }
    };
    if examples.is_empty() {
        bail!("no pairs to evaluate in {}", args.data.display());
    }
    let features = featurize(&loaded.text, &examples)?;
    let scorer = Scorer {
        model: &loaded.model,
        text: &loaded.text,
        pad_id: loaded.pad_id,
        device: &device,
    };
    let pb = progress(Some(features.len() as u64), "scoring");
    let report = evaluate(&scorer, &features, 32, |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    print!("{}", report.table());
    let not_found: usize = dataset.report.spans_not_found.iter().sum();
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
        write_atomically(path, &(serde_json::to_string_pretty(&report)? + "\n"))?;
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

fn progress(len: Option<u64>, prefix: &str) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{prefix} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})"
    } else {
        "{prefix} {spinner} {pos} pairs ({per_sec})"
    };
    pb.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix.to_owned());
    pb
}

/// Pairs read and scored per round: bounds memory for any input size.
const CHUNK: usize = 256;

/// Whether `output` names the file `input` (through links or `..` too): writing there would
/// replace the pairs being read.
fn same_file(input: &Path, output: &Path) -> bool {
    let (Ok(input), Some(name)) = (std::fs::canonicalize(input), output.file_name()) else {
        return false;
    };
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::canonicalize(parent).is_ok_and(|dir| dir.join(name) == input)
}

fn predict(args: &PredictArgs) -> Result<()> {
    if let (Some(input), Some(output)) = (&args.input, &args.output) {
        if same_file(input, output) {
            bail!(
                "--output {} is the input file; write the predictions elsewhere",
                output.display()
            );
        }
    }
    let device = Device::Cpu;
    let loaded = args.precision.load(&args.model)?;
    let scorer = Scorer {
        model: &loaded.model,
        text: &loaded.text,
        pad_id: loaded.pad_id,
        device: &device,
    };
    if let (Some(seeker), Some(response)) = (&args.seeker, &args.response) {
        let pair = Pair {
            id: "1".into(),
            seeker_post: seeker.clone(),
            response_post: response.clone(),
        };
        let prediction = predict_pairs(&scorer, &loaded.text, &[pair])?.remove(0);
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
            println!(
                "(a post was longer than {} tokens and was truncated)",
                loaded.info.max_len
            );
        }
        return Ok(());
    }
    let Some(input) = &args.input else {
        bail!("give --input FILE, or --seeker TEXT and --response TEXT");
    };
    let reader = PairReader::open(input)?;
    let mut writer =
        PredictionWriter::create(args.output.as_deref(), &loaded.info.model.mechanisms)
            .with_context(|| {
                format!(
                    "cannot create the output next to {}",
                    args.output
                        .as_deref()
                        .unwrap_or(Path::new("stdout"))
                        .display()
                )
            })?;
    let pb = progress(None, "scoring");
    let result = (|| -> Result<u64> {
        let mut count = 0u64;
        let mut chunk: Vec<Pair> = Vec::with_capacity(CHUNK);
        let mut reader = reader.peekable();
        while reader.peek().is_some() {
            chunk.clear();
            while chunk.len() < CHUNK {
                match reader.next() {
                    Some(pair) => chunk.push(pair?),
                    None => break,
                }
            }
            let predictions = predict_pairs(&scorer, &loaded.text, &chunk)?;
            writer
                .write(&predictions)
                .context("cannot write the predictions")?;
            count += chunk.len() as u64;
            pb.inc(chunk.len() as u64);
        }
        Ok(count)
    })();
    pb.finish_and_clear();
    match result {
        Ok(count) => {
            writer.finish().context("cannot finish the output file")?;
            if let Some(out) = &args.output {
                eprintln!("scored {count} pairs into {}", out.display());
            }
            Ok(())
        }
        Err(e) => {
            writer.abandon();
            Err(e)
        }
    }
}

fn quickstart(args: &QuickstartArgs) -> Result<()> {
    let model = args
        .model
        .clone()
        .unwrap_or_else(epitome::home::default_model_dir);
    if !model.join(epitome::bundle::BUNDLE_FILE).is_file() {
        eprintln!(
            "no model at {}: training the default model on {} (about 15 minutes on 2 cores)",
            model.display(),
            args.data.display()
        );
        let options = TrainOptions::default_for_minilm();
        let (encoder, source) = EncoderArg { encoder: None }.resolve()?;
        let summary = epitome::train::train(&args.data, &encoder, &source, &options, &model)?;
        if let Some(dev) = &summary.dev {
            eprint!("dev metrics:\n{}", dev.table());
        }
    }
    eprintln!("scoring {} with {}", args.input.display(), model.display());
    predict(&PredictArgs {
        model,
        precision: PrecisionArg {
            precision: epitome::kernels::Precision::F32,
        },
        input: Some(args.input.clone()),
        output: None,
        seeker: None,
        response: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
