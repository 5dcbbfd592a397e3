//! Groups inside a lane with real workers: a group with one command is not stuck behind
//! another group's backlog, and a group's cap holds over all workers together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    GroupLimits, HandlerRegistry, LaneConfig, Page, QueueClient, RedisWorker, RedisWorkerConfig,
    SubmitOptions, handler_fn,
};
use parking_lot::Mutex;
use serde_json::json;

use crate::support::{TestQueue, eventually};

fn worker_config(slots: usize) -> RedisWorkerConfig {
    RedisWorkerConfig::new(slots)
        .with_lease_ttl(Duration::from_secs(3))
        .with_block_timeout(Duration::from_secs(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_of_a_group_starts_right_after_the_first_of_a_backlog() {
    let test = TestQueue::connect("groups-fair", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 1), 0)
    })
    .await;
    let queue = &test.queue;
    let mut backlog = Vec::new();
    for i in 0..2000 {
        backlog.push(
            queue
                .submit_with(
                    "jobs",
                    "work",
                    json!({"group": "a", "i": i}),
                    SubmitOptions::new().with_group("a"),
                )
                .await
                .unwrap(),
        );
    }
    let lone = queue
        .submit_with(
            "jobs",
            "work",
            json!({"group": "b", "i": 0}),
            SubmitOptions::new().with_group("b"),
        )
        .await
        .unwrap();
    let starts = Arc::new(Mutex::new(Vec::<String>::new()));
    let handlers = HandlerRegistry::default();
    let seen = starts.clone();
    handlers.register(
        "work",
        handler_fn(move |payload: serde_json::Value, _| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .push(payload["group"].as_str().unwrap().to_owned());
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(payload)
            }
        }),
    );
    let worker = RedisWorker::start(queue, handlers, worker_config(4))
        .await
        .unwrap();
    lone.await.unwrap();
    {
        let starts = starts.lock();
        let at = starts.iter().position(|group| group == "b").unwrap();
        assert!(at <= 1, "b started {at}th: {:?}", &starts[..at + 1]);
    }
    // The rest of a's backlog is cancelled as a group.
    let cancelled = queue.cancel_group("jobs", "a").await.unwrap();
    assert!(cancelled > 1900, "the cancel reached {cancelled}");
    eventually("a's last runs end", Duration::from_secs(10), || async {
        QueueClient::groups(queue, "jobs", Page::default())
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
    drop(backlog);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_cap_holds_over_two_workers() {
    let test = TestQueue::connect("groups-cap", |c| {
        c.with_lane(
            "jobs",
            LaneConfig::new(1, 16)
                .with_group_limits(GroupLimits::new().with_max_concurrency(2))
                .with_group_override("wide", GroupLimits::new().with_max_concurrency(3)),
            0,
        )
    })
    .await;
    let queue = &test.queue;
    let running: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let handlers = HandlerRegistry::default();
    let gauge = running.clone();
    handlers.register(
        "work",
        handler_fn(move |payload: serde_json::Value, _| {
            let gauge = gauge.clone();
            async move {
                let group = payload["group"].as_str().unwrap().to_owned();
                {
                    let mut gauge = gauge.lock();
                    let (now, peak) = gauge.entry(group.clone()).or_default();
                    *now += 1;
                    *peak = (*peak).max(*now);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
                gauge.lock().get_mut(&group).unwrap().0 -= 1;
                Ok(payload)
            }
        }),
    );
    let mut handles = Vec::new();
    for i in 0..12 {
        for group in ["narrow", "wide"] {
            handles.push(
                queue
                    .submit_with(
                        "jobs",
                        "work",
                        json!({"group": group, "i": i}),
                        SubmitOptions::new().with_group(group),
                    )
                    .await
                    .unwrap(),
            );
        }
    }
    let workers = vec![
        RedisWorker::start(queue, handlers.clone(), worker_config(8))
            .await
            .unwrap(),
        RedisWorker::start(queue, handlers.clone(), worker_config(8))
            .await
            .unwrap(),
    ];
    for handle in handles {
        handle.await.unwrap();
    }
    let peaks = running.lock().clone();
    assert_eq!(
        peaks["narrow"].1, 2,
        "narrow's cap of 2 over both workers: {peaks:?}"
    );
    assert_eq!(
        peaks["wide"].1, 3,
        "wide's override of 3 over both workers: {peaks:?}"
    );
    let status = queue.group_status("jobs", "narrow").await.unwrap();
    assert_eq!((status.pending, status.active), (0, 0));
    for worker in workers {
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    }
}
