//! A lane held back by its admission policy starts again exactly when the policy said,
//! woken by the queue's timer task (no submit or completion needed to wake it).

use std::sync::Arc;
use std::time::Duration;

use lane_core::{Admission, AdmissionPolicy, EventEmitter, LaneConfig, QueueManagerBuilder};
use parking_lot::Mutex;
use tokio::time::Instant;

/// Admits one command, then one more every 100 ms.
#[derive(Debug)]
struct OneEvery100ms;

#[derive(Debug)]
struct Gate {
    next: Option<Instant>,
}

impl Admission for Gate {
    fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
        match self.next {
            Some(next) if now < next => Err(next),
            _ => {
                self.next = Some(now + Duration::from_millis(100));
                Ok(())
            }
        }
    }
}

impl AdmissionPolicy for OneEvery100ms {
    fn admission(&self) -> Option<Box<dyn Admission>> {
        Some(Box::new(Gate { next: None }))
    }
}

#[tokio::test(start_paused = true)]
async fn throttled_lane_starts_when_its_admission_allows_again() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "api",
            LaneConfig::new(1, 10).with_rate_limit(OneEvery100ms),
            0,
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..3 {
        let starts = starts.clone();
        handles.push(
            manager
                .submit_fn("api", "tick", move |_| {
                    let starts = starts.clone();
                    async move {
                        starts.lock().push(origin.elapsed());
                        Ok(serde_json::Value::Null)
                    }
                })
                .await
                .unwrap(),
        );
    }
    // Bounded: without the timer task's wake-up the lane would stay throttled forever.
    tokio::time::timeout(Duration::from_secs(10), async {
        for handle in handles {
            handle.await.unwrap();
        }
    })
    .await
    .expect("the throttled lane was never woken");
    assert_eq!(
        *starts.lock(),
        vec![
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_millis(200)
        ]
    );
}
