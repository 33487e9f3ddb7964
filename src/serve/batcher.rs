//! The model thread: requests queue up, are gathered into batches bounded by tokens and by
//! waiting time, and are scored together. The async runtime never runs the model.

use super::metrics::Metrics;
use crate::predict::{EncodedPair, PairPrediction};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Scores tokenized pairs. Implemented by the model bundle; the server knows nothing else of it.
pub trait Backend: Send + 'static {
    fn score(&mut self, pairs: &[EncodedPair]) -> Result<Vec<PairPrediction>, BackendError>;
}

/// The backend could not score a batch; the next batch may succeed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// Why a request got no predictions.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the model failed on this batch: {0}")]
    Backend(#[from] BackendError),
    #[error("the request waited {waited_ms} ms for the model, more than the bound of {bound_ms} ms (max_queue_ms); retry later")]
    QueueTimeout { waited_ms: u128, bound_ms: u128 },
    #[error(
        "{requests} requests already wait for the model (max_concurrent_requests); retry shortly"
    )]
    Overloaded { requests: usize },
    #[error("the model thread has stopped; restart the server")]
    Dead,
}

pub type Reply = Result<Vec<PairPrediction>, BatchError>;

struct Job {
    pairs: Vec<EncodedPair>,
    tokens: usize,
    queued_at: Instant,
    /// The request's place among those waiting for the model: given back when its batch starts,
    /// so that the limit counts waiting requests, not the one being scored.
    waiting: OwnedSemaphorePermit,
    reply: oneshot::Sender<Reply>,
}

/// Whether the model thread can take work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Starting,
    Ready,
    /// It panicked or returned: requests get 503 and `/readyz` says unready.
    Dead,
}

#[derive(Default)]
struct HealthCell(AtomicU8);

impl HealthCell {
    fn set(&self, h: Health) {
        self.0.store(h as u8, Ordering::SeqCst);
    }

    fn get(&self) -> Health {
        match self.0.load(Ordering::SeqCst) {
            0 => Health::Starting,
            1 => Health::Ready,
            _ => Health::Dead,
        }
    }
}

/// Marks the model thread dead however it ends, unwinding included.
struct DeadOnDrop(Arc<HealthCell>);

impl Drop for DeadOnDrop {
    fn drop(&mut self) {
        self.0.set(Health::Dead);
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Tokens (seeker and response, specials included) in one model batch; a single request
    /// above it runs alone.
    pub max_batch_tokens: usize,
    /// How long a batch waits for more requests after taking those already queued.
    pub max_wait: Duration,
    /// Requests that may wait in the queue before new ones get 429.
    pub max_queued: usize,
    /// A request that waited longer than this for the model is answered 429 unscored: its
    /// client has likely given up, and scoring it would delay those still waiting.
    pub max_queue_time: Duration,
}

#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    health: Arc<HealthCell>,
    metrics: Arc<Metrics>,
    max_queued: usize,
}

impl Batcher {
    pub fn spawn<B: Backend>(
        mut backend: B,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(limits.max_queued.max(1));
        let health = Arc::new(HealthCell::default());
        let thread_health = health.clone();
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("epitome-model".into())
            .spawn(move || {
                let _dead_on_exit = DeadOnDrop(thread_health.clone());
                thread_health.set(Health::Ready);
                let mut carried: Option<Job> = None;
                loop {
                    let first = match carried.take() {
                        Some(job) => job,
                        None => match rx.recv() {
                            Ok(job) => {
                                thread_metrics.queue_add(-1);
                                job
                            }
                            Err(_) => break,
                        },
                    };
                    let deadline = Instant::now() + limits.max_wait;
                    let mut tokens = first.tokens;
                    let mut jobs = vec![first];
                    while tokens < limits.max_batch_tokens {
                        // Requests that queued up while the last batch ran join at once; only
                        // then does the batch wait (at most until the deadline) for more.
                        let next = match rx.try_recv() {
                            Ok(job) => Ok(job),
                            Err(_) => {
                                let now = Instant::now();
                                if now >= deadline {
                                    break;
                                }
                                rx.recv_timeout(deadline - now)
                            }
                        };
                        match next {
                            Ok(job) => {
                                thread_metrics.queue_add(-1);
                                if tokens + job.tokens > limits.max_batch_tokens {
                                    carried = Some(job);
                                    break;
                                }
                                tokens += job.tokens;
                                jobs.push(job);
                            }
                            Err(RecvTimeoutError::Timeout)
                            | Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    if run_batch(&mut backend, jobs, &limits, &thread_metrics).is_err() {
                        // A panic may have left the model half-updated: stop taking work.
                        tracing::error!("the model thread panicked; it takes no more requests");
                        break;
                    }
                }
            })?;
        Ok(Self {
            tx,
            health,
            metrics,
            max_queued: limits.max_queued,
        })
    }

    pub fn health(&self) -> Health {
        self.health.get()
    }

    /// Queues pairs for scoring; the receiver yields their predictions in order.
    pub fn submit(
        &self,
        pairs: Vec<EncodedPair>,
        waiting: OwnedSemaphorePermit,
    ) -> Result<oneshot::Receiver<Reply>, BatchError> {
        if self.health() == Health::Dead {
            return Err(BatchError::Dead);
        }
        let (reply, rx) = oneshot::channel();
        let tokens = pairs.iter().map(EncodedPair::tokens).sum();
        self.metrics.queue_add(1);
        let job = Job {
            pairs,
            tokens,
            queued_at: Instant::now(),
            waiting,
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.metrics.queue_add(-1);
                Err(match e {
                    TrySendError::Full(_) => BatchError::Overloaded {
                        requests: self.max_queued,
                    },
                    TrySendError::Disconnected(_) => BatchError::Dead,
                })
            }
        }
    }
}

/// Scores one batch and answers its requests; `Err` when the backend panicked (every request
/// of the batch is then answered [`BatchError::Dead`]).
fn run_batch<B: Backend>(
    backend: &mut B,
    jobs: Vec<Job>,
    limits: &BatchLimits,
    metrics: &Metrics,
) -> Result<(), ()> {
    let mut sizes = Vec::with_capacity(jobs.len());
    let mut pairs = Vec::new();
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        drop(job.waiting);
        let waited = job.queued_at.elapsed();
        if waited > limits.max_queue_time {
            let _ = job.reply.send(Err(BatchError::QueueTimeout {
                waited_ms: waited.as_millis(),
                bound_ms: limits.max_queue_time.as_millis(),
            }));
            continue;
        }
        sizes.push(job.pairs.len());
        pairs.extend(job.pairs);
        replies.push(job.reply);
    }
    if pairs.is_empty() {
        return Ok(());
    }
    metrics.batch(pairs.len());
    let answer = |replies: Vec<oneshot::Sender<Reply>>, error: BatchError| {
        for reply in replies {
            let _ = reply.send(Err(error.clone()));
        }
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| backend.score(&pairs))) {
        Ok(Ok(predictions)) => {
            let mut it = predictions.into_iter();
            for (reply, n) in replies.into_iter().zip(sizes) {
                let _ = reply.send(Ok(it.by_ref().take(n).collect()));
            }
            Ok(())
        }
        Ok(Err(e)) => {
            answer(replies, BatchError::Backend(e));
            Ok(())
        }
        Err(_) => {
            answer(replies, BatchError::Dead);
            Err(())
        }
    }
}
