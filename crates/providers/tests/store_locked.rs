//! An answer store that cannot be written (another process holds the SQLite file's lock)
//! loses no paid answer and buys nothing more until it can be written again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use robustify_providers::provider::BoxFuture;
use robustify_providers::{
    Answer, AnswerBackend, AnswerStore, Delivered, DrawContext, Ledger, Provider,
    ProviderClassifier, Receipt, ScoredLabel,
};
use robustify_smoothing::{BaseClassifier, Image};

/// A vendor that answers "cat" to everything, $0.001 an image, and counts its requests.
struct Counting {
    requests: AtomicU64,
}

impl Provider for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn classify_within<'a>(
        &'a self,
        images: &'a [Image],
        _allowance: Option<&'a Ledger>,
    ) -> BoxFuture<'a, Vec<robustify_providers::Result<Delivered>>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            images
                .iter()
                .map(|_| {
                    Ok(Delivered {
                        answer: Answer {
                            labels: vec![ScoredLabel {
                                label: "cat".into(),
                                score: 0.9,
                            }],
                        },
                        receipt: Receipt {
                            status: 200,
                            cost_usd: 0.001,
                            attempts: 1,
                            ..Receipt::default()
                        },
                    })
                })
                .collect()
        })
    }
}

fn context() -> DrawContext {
    DrawContext {
        image: "ab".repeat(32),
        provider: "counting".into(),
        denoiser: "none".into(),
        sigma: 0.25,
        seed: 1,
        client: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_keeps_paid_answers_and_stops_new_paid_work() {
    let dir = std::env::temp_dir().join(format!("robustify-locked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("answers.sqlite");
    let store = Arc::new(
        AnswerStore::open(&path)
            .unwrap()
            .with_busy_timeout(Duration::from_millis(200))
            .unwrap(),
    );
    let vendor = Arc::new(Counting {
        requests: AtomicU64::new(0),
    });
    let classifier = ProviderClassifier::new(vendor.clone())
        .with_store(store.clone() as Arc<dyn AnswerBackend>, context());
    let images: Vec<Image> = (0..4)
        .map(|_| Image::new(2, 2, vec![0.5; 12]).unwrap())
        .collect();

    // Another process takes the write lock and keeps it.
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // Paid answers arrive while the file is locked: counted, and kept in memory.
    let labels = classifier.classify(0..4, &images).await.unwrap();
    assert_eq!(labels, ["cat"; 4]);
    assert_eq!(vendor.requests.load(Ordering::SeqCst), 1);
    assert_eq!(store.waiting(), 4);
    assert!((classifier.spent_usd() - 0.004).abs() < 1e-12);

    // No new paid work while they cannot be written: the vendor is not asked again.
    let err = classifier
        .classify(4..8, &images)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot be written") && err.contains("4 paid answers wait"),
        "{err}"
    );
    assert_eq!(vendor.requests.load(Ordering::SeqCst), 1);

    // The lock goes: the waiting answers are written first, then work goes on.
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    classifier.classify(4..8, &images).await.unwrap();
    assert_eq!(vendor.requests.load(Ordering::SeqCst), 2);
    assert_eq!(store.waiting(), 0);

    // Every paid answer, and what each cost, is in the file: a new process reuses all 8
    // and sees $0.008 charged.
    drop(classifier);
    let reopened = AnswerStore::open(&path).unwrap();
    let found = reopened.lookup(&context(), 0..8).unwrap();
    assert!(found.iter().all(Option::is_some), "{found:?}");
    let spent: f64 = reopened
        .spent("", 0)
        .unwrap()
        .iter()
        .map(|(_, usd)| usd)
        .sum();
    assert!((spent - 0.008).abs() < 1e-9, "{spent}");
}
