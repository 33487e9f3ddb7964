//! The model thread: requests queue up, are gathered into batches bounded by tokens and by
//! waiting time, and are scored together. The async runtime never runs the model.

use super::metrics::Metrics;
use crate::predict::{EncodedPair, PairPrediction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Scores tokenized pairs. Implemented by the model bundle; the server knows nothing else of it.
pub trait Backend: Send + 'static {
    fn score(&mut self, pairs: &[EncodedPair]) -> Result<Vec<PairPrediction>, String>;
}

pub type Reply = Result<Vec<PairPrediction>, String>;

struct Job {
    pairs: Vec<EncodedPair>,
    tokens: usize,
    reply: oneshot::Sender<Reply>,
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
}

/// The queue is full.
#[derive(Debug)]
pub struct Overloaded;

#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Batcher {
    pub fn spawn<B: Backend>(mut backend: B, limits: BatchLimits, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = sync_channel::<Job>(limits.max_queued.max(1));
        let ready = Arc::new(AtomicBool::new(false));
        let thread_ready = ready.clone();
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("epitome-model".into())
            .spawn(move || {
                thread_ready.store(true, Ordering::SeqCst);
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
                    run_batch(&mut backend, jobs, &thread_metrics);
                }
                thread_ready.store(false, Ordering::SeqCst);
            })
            .expect("the model thread starts");
        Self { tx, ready, metrics }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Queues pairs for scoring; the receiver yields their predictions in order.
    pub fn submit(&self, pairs: Vec<EncodedPair>) -> Result<oneshot::Receiver<Reply>, Overloaded> {
        let (reply, rx) = oneshot::channel();
        let tokens = pairs.iter().map(EncodedPair::tokens).sum();
        self.metrics.queue_add(1);
        match self.tx.try_send(Job {
            pairs,
            tokens,
            reply,
        }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_add(-1);
                Err(Overloaded)
            }
        }
    }
}

fn run_batch<B: Backend>(backend: &mut B, jobs: Vec<Job>, metrics: &Metrics) {
    let sizes: Vec<usize> = jobs.iter().map(|j| j.pairs.len()).collect();
    let mut pairs = Vec::with_capacity(sizes.iter().sum());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        pairs.extend(job.pairs);
        replies.push(job.reply);
    }
    metrics.batch(pairs.len());
    match backend.score(&pairs) {
        Ok(predictions) => {
            let mut it = predictions.into_iter();
            for (reply, n) in replies.into_iter().zip(sizes) {
                let _ = reply.send(Ok(it.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
