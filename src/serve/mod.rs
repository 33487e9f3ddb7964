//! `epitome serve`: a JSON API and a feedback page over a model bundle.
//!
//! Shaped after text-embeddings-inference: the HTTP layer validates and tokenizes, a bounded
//! queue feeds one model thread that batches concurrent requests, and the two meet only through
//! [`batcher::Backend`], which has no tensor in it.

pub mod api;
pub mod batcher;
pub mod client;
pub mod error;
pub mod metrics;
pub mod types;

use crate::bundle::LoadedBundle;
use crate::predict::{predict_encoded, EncodedPair, PairPrediction};
use batcher::{Backend, BackendError, BatchLimits, Batcher};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// Bearer token required on /v1/score, /info and /metrics.
    pub token: Option<String>,
    pub max_batch_tokens: usize,
    pub max_wait: Duration,
    /// Requests that may wait for the model (reading, tokenizing, queued); more get 429
    /// before their body is read.
    pub max_concurrent_requests: usize,
    /// A request that waited this long for the model gets 429 unscored.
    pub max_queue_time: Duration,
    /// A client must send its request headers within this time, or the connection is closed.
    pub header_timeout: Duration,
    /// And its body within this time after them, or it gets 408.
    pub body_timeout: Duration,
    pub max_pairs_per_request: usize,
    pub max_body_bytes: usize,
    /// Longest post accepted, in characters; posts are truncated to the model's maximum length
    /// in tokens anyway, this only refuses absurd inputs before tokenizing them.
    pub max_text_chars: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_batch_tokens: 8192,
            max_wait: Duration::ZERO,
            max_concurrent_requests: 64,
            max_queue_time: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_pairs_per_request: 64,
            max_body_bytes: 1 << 20,
            max_text_chars: 20_000,
        }
    }
}

/// The bundle as the server's backend.
pub struct BundleBackend {
    bundle: Arc<LoadedBundle>,
}

impl BundleBackend {
    /// The bundle, shared with what else needs its encoders (suggestions' retrieval).
    pub fn bundle(&self) -> Arc<LoadedBundle> {
        self.bundle.clone()
    }
}

/// What `POST /v1/suggest` needs beside the batching model thread: the exemplar library, and
/// the model's seeker encoder to embed seeker posts for retrieval (outside the model thread:
/// an embedding is one small forward pass).
pub struct Suggesting {
    pub library: crate::suggest::exemplars::Library,
    pub bundle: Arc<LoadedBundle>,
}

impl Suggesting {
    /// The seeker post's embedding.
    pub fn embed(&self, seeker: &crate::text::Encoded) -> Result<Vec<f32>, String> {
        self.bundle
            .scorer()
            .seeker_embeddings(&[seeker])
            .map_err(|e| crate::model::without_backtrace(&e))?
            .pop()
            .ok_or_else(|| "no embedding".to_owned())
    }
}

impl Backend for BundleBackend {
    fn score(&mut self, pairs: &[EncodedPair]) -> Result<Vec<PairPrediction>, BackendError> {
        predict_encoded(&self.bundle.scorer(), pairs).map_err(|e| BackendError(e.to_string()))
    }
}

/// Facts for `GET /info`.
fn info(bundle: &LoadedBundle) -> serde_json::Value {
    let i = &bundle.info;
    serde_json::json!({
        "epitome_version": env!("CARGO_PKG_VERSION"),
        "bundle_epitome_version": i.epitome_version,
        "mechanisms": i.model.mechanisms,
        "responder": i.model.responder,
        "max_len": i.max_len,
        "encoder": {"source": i.encoder.source, "model_type": i.encoder.config.model_type,
                    "hidden_size": i.encoder.config.hidden_size, "layers": i.encoder.config.num_hidden_layers},
        "training_data_sha256": i.data.as_ref().map(|d| &d.file_sha256),
        "files_sha256": i.files,
    })
}

/// A server running in the background of a tokio runtime.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
        Ok(())
    }
}

/// Binds and starts serving `backend` (and suggestions, when given what they need); must be
/// called inside a tokio runtime.
pub async fn start<B: Backend>(
    config: ServeConfig,
    backend: B,
    text: crate::text::TextEncoder,
    info: serde_json::Value,
    suggesting: Option<Arc<Suggesting>>,
) -> std::io::Result<Running> {
    let metrics = Arc::new(metrics::Metrics::default());
    let batcher = Batcher::spawn(
        backend,
        BatchLimits {
            max_batch_tokens: config.max_batch_tokens,
            max_wait: config.max_wait,
            max_queued: config.max_concurrent_requests,
            max_queue_time: config.max_queue_time,
        },
        metrics.clone(),
    )?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let header_timeout = config.header_timeout;
    let state = Arc::new(api::AppState {
        waiting: Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_requests.max(1),
        )),
        config,
        batcher,
        text,
        metrics,
        info,
        request_ids: AtomicU64::new(0),
        suggesting,
    });
    let app = api::router(state);
    let (shutdown, mut signal) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        // Out of file descriptors and the like: the next accept may succeed.
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    // axum's own `serve` sets no header timeout: a client that never finishes
                    // its headers would hold its connection forever.
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_timeout)
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                _ = &mut signal => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

/// Serves a bundle (with suggestions from `library`) until SIGINT or SIGTERM, then finishes
/// the requests in flight.
pub async fn serve_bundle(
    config: ServeConfig,
    bundle: LoadedBundle,
    library: Option<crate::suggest::exemplars::Library>,
) -> std::io::Result<()> {
    let (backend, text, facts) = bundle_backend(bundle);
    let suggesting = library.map(|library| {
        Arc::new(Suggesting {
            library,
            bundle: backend.bundle(),
        })
    });
    let running = start(config, backend, text, facts, suggesting).await?;
    tracing::info!("listening on http://{}", running.addr);
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    running.stop().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Builds the bundle backend and its facts, for callers that start the server themselves.
pub fn bundle_backend(
    bundle: LoadedBundle,
) -> (BundleBackend, crate::text::TextEncoder, serde_json::Value) {
    let text = bundle.text.clone();
    let facts = info(&bundle);
    (
        BundleBackend {
            bundle: Arc::new(bundle),
        },
        text,
        facts,
    )
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {} is empty", .0.display())]
    Empty(std::path::PathBuf),
}

/// The bearer token in `path`, trimmed. A file that others may read is used, with a warning:
/// anyone who can read it can send text to the server.
pub fn read_token_file(path: &std::path::Path) -> Result<String, TokenFileError> {
    let read = |source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let token = std::fs::read_to_string(path)
        .map_err(read)?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(TokenFileError::Empty(path.to_path_buf()));
    }
    if readable_by_others(path) {
        tracing::warn!(
            "the token file {} can be read by other users; make it private with chmod 600",
            path.display()
        );
    }
    Ok(token)
}

#[cfg(unix)]
pub fn readable_by_others(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
pub fn readable_by_others(_: &std::path::Path) -> bool {
    false
}
