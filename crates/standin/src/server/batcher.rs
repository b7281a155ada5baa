//! One model thread that serves many requests, batching what arrives together.

use std::sync::Arc;
use std::sync::mpsc;

use robustify_smoothing::Image;
use tokio::sync::oneshot;

use crate::model::{Classifier, Scored};

type Reply = oneshot::Sender<Result<Vec<Vec<Scored>>, String>>;

struct Job {
    images: Vec<Image>,
    top_k: usize,
    reply: Reply,
}

/// Sends images to a dedicated model thread. Requests that wait together are run as one
/// forward pass (up to `max_batch` images), which is what makes concurrent clients cheap.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the model thread; it ends when the last `Batcher` clone is dropped.
    pub fn start(model: Arc<dyn Classifier>, max_batch: usize) -> Batcher {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                let mut count = jobs[0].images.len();
                while count < max_batch {
                    match rx.try_recv() {
                        Ok(job) => {
                            count += job.images.len();
                            jobs.push(job);
                        }
                        Err(_) => break,
                    }
                }
                run_batch(model.as_ref(), jobs);
            }
        });
        Batcher { tx }
    }

    /// The `top_k` labels of each image.
    pub async fn classify(
        &self,
        images: Vec<Image>,
        top_k: usize,
    ) -> Result<Vec<Vec<Scored>>, String> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                images,
                top_k,
                reply,
            })
            .map_err(|_| "model thread stopped".to_string())?;
        rx.await.map_err(|_| "model thread stopped".to_string())?
    }
}

fn run_batch(model: &dyn Classifier, jobs: Vec<Job>) {
    let top_k = jobs.iter().map(|j| j.top_k).max().unwrap_or(1);
    let mut images = Vec::new();
    let mut replies = Vec::new();
    for job in jobs {
        replies.push((job.images.len(), job.top_k, job.reply));
        images.extend(job.images);
    }
    match model.classify(&images, top_k) {
        Ok(all) => {
            let mut all = all.into_iter();
            for (n, k, reply) in replies {
                let mine = all
                    .by_ref()
                    .take(n)
                    .map(|mut labels| {
                        labels.truncate(k);
                        labels
                    })
                    .collect();
                let _ = reply.send(Ok(mine));
            }
        }
        Err(err) => {
            for (_, _, reply) in replies {
                let _ = reply.send(Err(err.to_string()));
            }
        }
    }
}
