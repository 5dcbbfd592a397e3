//! Redis queues on a Redis Cluster (A3S_LANE_REDIS_CLUSTER_URLS; `bash scripts/test.sh`
//! starts a throwaway one). Each test uses prefixes whose slots live on nodes other than
//! the first URL's, checked with CLUSTER KEYSLOT / CLUSTER SLOTS and a MOVED reply from
//! the first node, so the queue works only if its scripts and its blocking listeners
//! are routed to the right node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a3s_lane::{
    CancelOutcome, HandlerRegistry, LaneConfig, LaneError, RedisQueue, RedisQueueConfig,
    RedisWorker, RedisWorkerConfig, RemoteState, handler_fn,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::support::{
    ClusterQueue, cluster_masters, node_connection, prefix_off_the_first_node,
    prefixes_on_every_node, redis_cluster_urls,
};

fn worker_config(slots: usize) -> RedisWorkerConfig {
    RedisWorkerConfig::new(slots)
        .with_lease_ttl(Duration::from_secs(3))
        .with_block_timeout(Duration::from_secs(1))
}

/// Awaits `future`, failing (instead of hanging) when it takes over a minute: that is
/// what a listener that cannot reach the queue's node looks like.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("gave up after a minute waiting for {what}"))
}

fn echo_handlers() -> HandlerRegistry {
    let handlers = HandlerRegistry::default();
    handlers.register(
        "echo",
        handler_fn(|payload, _| async move { Ok(json!({ "echo": payload })) }),
    );
    handlers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_and_results_return_for_queues_on_every_node() {
    let placed = prefixes_on_every_node("cluster-results").await;
    for place in &placed {
        let test = ClusterQueue::connect(&place.prefix, |c| {
            c.with_lane("jobs", LaneConfig::new(1, 4), 0)
        })
        .await;
        // No heartbeat for an hour: the idle worker hears of the submits only through
        // its wake list (BLPOP on its own connection), and the results come back only
        // through the producer's result list (BLPOP too).
        let config = RedisWorkerConfig::new(2)
            .with_lease_ttl(Duration::from_secs(3 * 3600))
            .with_heartbeat_interval(Duration::from_secs(3600));
        let worker = RedisWorker::start(&test.queue, echo_handlers(), config)
            .await
            .unwrap();
        let handles = test
            .queue
            .submit_batch((0..6).map(|i| ("jobs", "echo", json!(i))))
            .await
            .unwrap();
        let what = format!("the results of prefix {} on {}", place.prefix, place.owner);
        within(&what, async {
            for (i, handle) in handles.into_iter().enumerate() {
                assert_eq!(handle.await.unwrap(), json!({ "echo": i }));
            }
        })
        .await;
        let stats = test.queue.stats().await.unwrap();
        assert_eq!(stats.counter("completed"), 6, "on {}", place.owner);
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_the_nodes_forgot_are_loaded_again() {
    let place = prefix_off_the_first_node("cluster-noscript").await;
    let test = ClusterQueue::connect(&place.prefix, |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
    })
    .await;
    let worker = RedisWorker::start(&test.queue, echo_handlers(), worker_config(2))
        .await
        .unwrap();
    let first = test.queue.submit("jobs", "echo", json!(1)).await.unwrap();
    assert_eq!(
        within("a result", first).await.unwrap(),
        json!({ "echo": 1 })
    );
    // As after a restart or failover: every node forgets every script.
    for master in cluster_masters().await {
        let mut node = node_connection(&format!("redis://{}", master.address)).await;
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut node)
            .await
            .unwrap();
    }
    let second = test.queue.submit("jobs", "echo", json!(2)).await.unwrap();
    assert_eq!(
        within("a result", second).await.unwrap(),
        json!({ "echo": 2 })
    );
    assert_eq!(test.queue.stats().await.unwrap().counter("completed"), 2);
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_config_pointed_at_a_cluster_node_says_to_use_the_cluster_config() {
    let place = prefix_off_the_first_node("cluster-wrong-config").await;
    let config = RedisQueueConfig::new(redis_cluster_urls()[0].clone())
        .with_key_prefix(&place.prefix)
        .with_lane("jobs", LaneConfig::new(1, 1), 0);
    let error = RedisQueue::connect(config).await.unwrap_err();
    assert!(
        matches!(&error, LaneError::Storage(message)
            if message.to_lowercase().contains("moved")
                && message.contains("RedisQueueConfig::cluster")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_priority_then_fifo() {
    let place = prefix_off_the_first_node("cluster-priority").await;
    let test = ClusterQueue::connect(&place.prefix, |c| {
        c.with_lane("high", LaneConfig::new(1, 10), 0)
            .with_lane("mid", LaneConfig::new(1, 10), 1)
            .with_lane("low", LaneConfig::new(1, 10), 2)
    })
    .await;
    // Submitted before any worker exists, least urgent first.
    let mut submitted = Vec::new();
    for lane in ["low", "mid", "high"] {
        for i in 0..4 {
            let handle = test.queue.submit(lane, "echo", json!(i)).await.unwrap();
            submitted.push((handle.id(), lane, handle));
        }
    }
    let worker = RedisWorker::start(&test.queue, echo_handlers(), worker_config(1))
        .await
        .unwrap();
    let mut claims = Vec::new();
    for (id, lane, handle) in submitted {
        within("a result", handle).await.unwrap();
        let record = test.queue.command(id).await.unwrap().unwrap();
        claims.push((record.fencing_token.unwrap(), lane, id));
    }
    claims.sort();
    let order: Vec<(&str, u64)> = claims.iter().map(|&(_, lane, id)| (lane, id)).collect();
    let mut expected: Vec<(&str, u64)> = Vec::new();
    for lane in ["high", "mid", "low"] {
        let mut ids: Vec<(&str, u64)> = claims
            .iter()
            .filter(|(_, l, _)| *l == lane)
            .map(|&(_, lane, id)| (lane, id))
            .collect();
        ids.sort();
        expected.extend(ids);
    }
    assert_eq!(order, expected, "claims by priority, then in submit order");
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_cap_holds_over_two_workers() {
    let place = prefix_off_the_first_node("cluster-cap").await;
    let test = ClusterQueue::connect(&place.prefix, |c| {
        c.with_lane("capped", LaneConfig::new(1, 2), 0)
    })
    .await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    // The first run waits until a second one runs beside it, so the cap is reached.
    let (reached_tx, reached_rx) = watch::channel(false);
    let reached_tx = Arc::new(reached_tx);
    let handlers = HandlerRegistry::default();
    {
        let (running, peak) = (running.clone(), peak.clone());
        handlers.register(
            "work",
            handler_fn(move |_, _| {
                let (running, peak) = (running.clone(), peak.clone());
                let (reached_tx, mut reached_rx) = (reached_tx.clone(), reached_rx.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    if now >= 2 {
                        reached_tx.send_replace(true);
                    }
                    reached_rx.wait_for(|reached| *reached).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(Value::Null)
                }
            }),
        );
    }
    // Each worker alone has room for four runs of the lane.
    let first = RedisWorker::start(&test.queue, handlers.clone(), worker_config(4))
        .await
        .unwrap();
    let second = RedisWorker::start(&test.queue, handlers, worker_config(4))
        .await
        .unwrap();
    let handles = test
        .queue
        .submit_batch((0..12).map(|i| ("capped", "work", json!(i))))
        .await
        .unwrap();
    // A cap of 1 would leave the first run waiting.
    within("two runs of the lane at once, as its cap allows", async {
        for handle in handles {
            handle.await.unwrap();
        }
    })
    .await;
    assert_eq!(peak.load(Ordering::SeqCst), 2, "the cap, never more");
    first.shutdown(Duration::from_secs(10)).await.unwrap();
    second.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_running_command() {
    let place = prefix_off_the_first_node("cluster-cancel").await;
    let test = ClusterQueue::connect(&place.prefix, |c| {
        c.with_lane("jobs", LaneConfig::new(1, 2), 0)
    })
    .await;
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let handlers = HandlerRegistry::default();
    handlers.register(
        "wait",
        handler_fn(move |_, ctx| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                ctx.cancelled().await;
                Ok(json!("stopped"))
            }
        }),
    );
    let worker = RedisWorker::start(&test.queue, handlers, worker_config(2))
        .await
        .unwrap();
    let handle = test.queue.submit("jobs", "wait", json!({})).await.unwrap();
    within("the command to start", started_rx.recv())
        .await
        .unwrap();
    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Signalled);
    let id = handle.id();
    let error = within("the cancelled result", handle).await.unwrap_err();
    assert!(error.is_cancelled(), "{error:?}");
    assert_eq!(
        test.queue.command(id).await.unwrap().unwrap().state,
        RemoteState::Cancelled
    );
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_submitter() {
    let place = prefix_off_the_first_node("cluster-progress").await;
    let test = ClusterQueue::connect(&place.prefix, |c| {
        c.with_lane("jobs", LaneConfig::new(1, 2), 0)
    })
    .await;
    let (step_tx, step_rx) = mpsc::unbounded_channel::<()>();
    let step_rx = Arc::new(tokio::sync::Mutex::new(step_rx));
    let handlers = HandlerRegistry::default();
    handlers.register(
        "steps",
        handler_fn(move |_, ctx| {
            let step_rx = step_rx.clone();
            async move {
                for step in 1..=3 {
                    step_rx.lock().await.recv().await;
                    ctx.report_progress(json!(step));
                }
                Ok(json!("done"))
            }
        }),
    );
    let worker = RedisWorker::start(&test.queue, handlers, worker_config(2))
        .await
        .unwrap();
    let mut events = test.queue.subscribe();
    let handle = test.queue.submit("jobs", "steps", json!({})).await.unwrap();
    let progress = handle.progress();
    for step in 1..=3 {
        step_tx.send(()).unwrap();
        // The command's lifecycle events pass by; its progress comes in order.
        let event = loop {
            let event = within("a progress event", events.recv()).await.unwrap();
            if event.key == "queue.command.progress" {
                break event;
            }
        };
        assert_eq!(
            event.payload,
            json!({"lane_id": "jobs", "command_id": handle.id(), "progress": step})
        );
    }
    assert_eq!(within("the result", handle).await.unwrap(), json!("done"));
    assert_eq!(*progress.borrow(), Some(json!(3)));
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_command_is_taken_over_when_its_lease_expires() {
    let place = prefix_off_the_first_node("cluster-takeover").await;
    let test = ClusterQueue::connect(&place.prefix, |c| {
        c.with_lane("jobs", LaneConfig::new(1, 2), 0)
    })
    .await;
    // A short lease for the doomed worker (it is taken over after it), a long one for
    // the survivor (so a loaded machine never makes it miss a renewal).
    let config = |id: &str, lease: Duration| {
        RedisWorkerConfig::new(1)
            .with_worker_id(id)
            .with_lease_ttl(lease)
            .with_block_timeout(Duration::from_secs(1))
    };

    // The doomed worker runs on a runtime of its own: stopping that runtime drops its
    // tasks without a word to Redis, as a killed process would.
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let doomed_handlers = HandlerRegistry::default();
    doomed_handlers.register(
        "job",
        handler_fn(move |_, _| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
                Ok(Value::Null)
            }
        }),
    );
    let doomed_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let queue = test.queue.clone();
    let doomed = doomed_runtime
        .spawn(async move {
            RedisWorker::start(
                &queue,
                doomed_handlers,
                config("doomed", Duration::from_secs(1)),
            )
            .await
        })
        .await
        .unwrap()
        .unwrap();
    let handle = test.queue.submit("jobs", "job", json!({})).await.unwrap();
    let id = handle.id();
    within("the command to start", started_rx.recv())
        .await
        .unwrap();
    let record = test.queue.command(id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.worker.as_deref()),
        (RemoteState::Running, Some("doomed"))
    );
    doomed_runtime.shutdown_background();
    drop(doomed);

    let survivor_handlers = HandlerRegistry::default();
    survivor_handlers.register(
        "job",
        handler_fn(|_, ctx| async move { Ok(json!({ "attempt": ctx.attempt() })) }),
    );
    let survivor = RedisWorker::start(
        &test.queue,
        survivor_handlers,
        config("survivor", Duration::from_secs(15)),
    )
    .await
    .unwrap();
    assert_eq!(
        within("the survivor's result", handle).await.unwrap(),
        json!({ "attempt": 2 })
    );
    let record = test.queue.command(id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.worker.as_deref(), record.attempts),
        (RemoteState::Done, Some("survivor"), 2)
    );
    let stats = test.queue.stats().await.unwrap();
    assert_eq!(stats.counter("workers_lost"), 1);
    assert_eq!(stats.counter("requeued"), 1);
    survivor.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_each_instant_once_over_three_workers() {
    let place = prefix_off_the_first_node("cluster-schedule").await;
    let test = ClusterQueue::connect(&place.prefix, |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
    })
    .await;
    // No heartbeat for an hour: the workers hear of the schedule only from the put's
    // wake-up and their own schedule timers.
    let config = || {
        RedisWorkerConfig::new(2)
            .with_lease_ttl(Duration::from_secs(3 * 3600))
            .with_heartbeat_interval(Duration::from_secs(3600))
    };
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(
            RedisWorker::start(&test.queue, echo_handlers(), config())
                .await
                .unwrap(),
        );
    }
    let mut events = test.queue.subscribe();
    // Put by a client without workers, as a producer elsewhere would.
    let producer = RedisQueue::connect(
        RedisQueueConfig::cluster(redis_cluster_urls()).with_key_prefix(&place.prefix),
    )
    .await
    .unwrap();
    let every = Duration::from_millis(100);
    producer
        .put_schedule(a3s_lane::Schedule::every(
            "tick",
            "jobs",
            "echo",
            json!("tick"),
            every,
        ))
        .await
        .unwrap();
    let mut fired = std::collections::BTreeMap::new();
    let mut duplicates = Vec::new();
    let started = tokio::time::Instant::now();
    let mut stopped_one = false;
    while started.elapsed() < Duration::from_millis(2500) {
        if !stopped_one && started.elapsed() > Duration::from_secs(1) {
            // One worker leaves midway; the others go on alone.
            workers.pop().unwrap().shutdown_now().await;
            stopped_one = true;
        }
        let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(100), events.recv()).await
        else {
            continue;
        };
        assert_ne!(
            event.key,
            a3s_lane::event_keys::SCHEDULE_SKIPPED,
            "{event:?}"
        );
        if event.key == a3s_lane::event_keys::SCHEDULE_FIRED {
            let instant = event.payload["instant_ms"].as_u64().unwrap();
            if fired
                .insert(instant, event.payload["command_id"].as_u64().unwrap())
                .is_some()
            {
                duplicates.push(instant);
            }
        }
    }
    assert!(producer.remove_schedule("tick").await.unwrap());
    assert!(duplicates.is_empty(), "fired twice: {duplicates:?}");
    let instants: Vec<u64> = fired.keys().copied().collect();
    assert!(instants.len() >= 15, "{instants:?}");
    assert!(
        instants
            .windows(2)
            .all(|w| w[1] - w[0] == every.as_millis() as u64),
        "each instant once, none missing: {instants:?}"
    );
    for id in fired.values() {
        within("an instant's command", async {
            loop {
                if let Some(command) = test.queue.command(*id).await.unwrap()
                    && command.state == RemoteState::Done
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    for worker in workers {
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    }
}
