//! Group commit: work that arrives while a write is in flight is collected
//! and written together, as write-ahead logs and Kafka producers do.
//!
//! A [`GroupCommit`] has a fixed number of writer tasks sharing one queue.
//! A free writer takes the first job that arrives and, with it, whatever
//! else is already waiting (up to [`Limits`]), then runs them as one batch.
//! Nothing ever waits for company: on an idle path a job is taken at once,
//! alone, as before. Under load, jobs queue while every writer is busy, and
//! the next free writer takes them all — one round trip and one commit for
//! the lot instead of one each.
//!
//! ```ignore
//! let commit = GroupCommit::new(4, Limits { jobs: 32, bytes: 1 << 20 }, |jobs: Vec<u32>| async move {
//!     jobs.into_iter().map(|j| j * 2).collect()
//! });
//! assert_eq!(commit.submit(21, 1).await, Some(42));
//! ```
//!
//! Writers are started by the first [`GroupCommit::submit`], on the runtime
//! that calls it (an HTTP worker's own, so its connections stay on its
//! thread). They stop when the `GroupCommit` is dropped and the queue is
//! empty.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

/// How large a batch may grow.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Jobs per batch, at least 1.
    pub jobs: usize,
    /// The jobs' weights (their bytes) per batch; a job heavier than this
    /// goes alone.
    pub bytes: usize,
}

type Run<J, R> = dyn Fn(Vec<J>) -> Pin<Box<dyn Future<Output = Vec<R>> + Send>> + Send + Sync;

struct Entry<J, R> {
    job: J,
    bytes: usize,
    reply: oneshot::Sender<R>,
}

/// The queue the writers share: its receiver, and a job taken from it that
/// did not fit the batch it was taken for (it starts the next one).
struct Queue<J, R> {
    rx: mpsc::UnboundedReceiver<Entry<J, R>>,
    carry: Option<Entry<J, R>>,
}

/// What the writers are started with.
struct Idle<J, R> {
    queue: Queue<J, R>,
    run: Arc<Run<J, R>>,
}

pub struct GroupCommit<J, R> {
    tx: mpsc::UnboundedSender<Entry<J, R>>,
    /// Until the writers start: what they need.
    idle: Mutex<Option<Idle<J, R>>>,
    writers: usize,
    limits: Limits,
}

impl<J: Send + 'static, R: Send + 'static> GroupCommit<J, R> {
    /// `writers` batches may be in flight at once; `run` answers every job
    /// of a batch, in order (a job it leaves unanswered gets `None`).
    pub fn new<F, Fut>(writers: usize, limits: Limits, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let run: Arc<Run<J, R>> = Arc::new(move |jobs| Box::pin(run(jobs)));
        Self {
            tx,
            idle: Mutex::new(Some(Idle {
                queue: Queue { rx, carry: None },
                run,
            })),
            writers: writers.max(1),
            limits: Limits {
                jobs: limits.jobs.max(1),
                bytes: limits.bytes,
            },
        }
    }

    /// Queues `job` (weighing `bytes`) and waits for its batch to be
    /// written. `None`: the writers are gone (the runtime is shutting down).
    pub async fn submit(&self, job: J, bytes: usize) -> Option<R> {
        self.start();
        let (reply, answer) = oneshot::channel();
        self.tx.send(Entry { job, bytes, reply }).ok()?;
        answer.await.ok()
    }

    fn start(&self) {
        let Some(Idle { queue, run }) = self.idle.lock().ok().and_then(|mut idle| idle.take())
        else {
            return;
        };
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..self.writers {
            tokio::spawn(writer(queue.clone(), self.limits, run.clone()));
        }
    }
}

async fn writer<J, R>(
    queue: Arc<tokio::sync::Mutex<Queue<J, R>>>,
    limits: Limits,
    run: Arc<Run<J, R>>,
) {
    loop {
        let Some(batch) = next_batch(&queue, limits).await else {
            return;
        };
        let (jobs, replies): (Vec<J>, Vec<oneshot::Sender<R>>) =
            batch.into_iter().map(|e| (e.job, e.reply)).unzip();
        // A panic fails this batch's jobs (their callers get `None`), not
        // the writer: the others after it still need one.
        match AssertUnwindSafe(run(jobs)).catch_unwind().await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(_) => tracing::error!("a batch panicked; its jobs were not answered"),
        }
    }
}

/// Waits for a job, then takes whatever else is queued, within `limits`.
/// `None` once the queue is closed and empty.
async fn next_batch<J, R>(
    queue: &tokio::sync::Mutex<Queue<J, R>>,
    limits: Limits,
) -> Option<Vec<Entry<J, R>>> {
    let mut q = queue.lock().await;
    let first = match q.carry.take() {
        Some(entry) => entry,
        None => q.rx.recv().await?,
    };
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while batch.len() < limits.jobs {
        let Ok(entry) = q.rx.try_recv() else { break };
        if bytes.saturating_add(entry.bytes) > limits.bytes {
            q.carry = Some(entry);
            break;
        }
        bytes += entry.bytes;
        batch.push(entry);
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_on_an_idle_queue_runs_alone_at_once() {
        let commit = GroupCommit::new(
            2,
            Limits {
                jobs: 8,
                bytes: 100,
            },
            |jobs: Vec<u32>| async move { vec![jobs.len(); jobs.len()] },
        );
        assert_eq!(commit.submit(1, 1).await, Some(1));
        assert_eq!(commit.submit(2, 1).await, Some(1));
    }

    /// One writer, held busy by a first job: what queues meanwhile goes in
    /// the next batches, within the limits, each job answered in order.
    #[tokio::test]
    async fn jobs_queued_behind_a_busy_writer_share_batches_within_the_limits() {
        let (release, hold) = tokio::sync::watch::channel(false);
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let commit = Arc::new(GroupCommit::new(
            1,
            Limits { jobs: 3, bytes: 10 },
            move |jobs: Vec<u32>| {
                let mut hold = hold.clone();
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(jobs.clone());
                    if jobs == [0] {
                        let _ = hold.wait_for(|go| *go).await;
                    }
                    jobs.into_iter().map(|j| j + 100).collect::<Vec<_>>()
                }
            },
        ));
        let first = tokio::spawn({
            let commit = commit.clone();
            async move { commit.submit(0, 1).await }
        });
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        // Queued while the writer is busy, with these weights.
        let mut waiting = Vec::new();
        for (job, bytes) in [(1, 1), (2, 1), (3, 1), (4, 1), (5, 9), (6, 1)] {
            let commit = commit.clone();
            waiting.push(tokio::spawn(async move { commit.submit(job, bytes).await }));
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(100));
        for (i, w) in waiting.into_iter().enumerate() {
            assert_eq!(w.await.unwrap(), Some(101 + i as u32));
        }
        assert_eq!(
            *sizes.lock().unwrap(),
            [vec![0], vec![1, 2, 3], vec![4, 5], vec![6]],
            "three jobs at most, and 6 would take 4 and 5's batch to 11 bytes"
        );
    }

    #[tokio::test]
    async fn a_panicking_batch_fails_its_jobs_and_the_writer_goes_on() {
        let commit = GroupCommit::new(
            1,
            Limits {
                jobs: 4,
                bytes: 100,
            },
            |jobs: Vec<u32>| async move {
                assert!(jobs != [13], "unlucky");
                jobs
            },
        );
        assert_eq!(commit.submit(13, 1).await, None);
        assert_eq!(commit.submit(7, 1).await, Some(7));
    }
}
