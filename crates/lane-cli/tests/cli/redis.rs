//! Against a queue in Redis, under a prefix of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use a3s_lane::{
    HandlerRegistry, LaneConfig, LaneError, QueueClient, RedisQueue, RedisQueueConfig, RedisWorker,
    RedisWorkerConfig, handler_fn,
};
use serde_json::json;

use crate::{a3s_lane, ids};

/// The Redis server the tests use. Without one the test fails (it never skips).
pub(crate) fn redis_url() -> String {
    match std::env::var("A3S_LANE_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "A3S_LANE_REDIS_URL is not set, and this test needs a Redis server. Run \
             `bash scripts/test.sh` (it starts a throwaway redis-server on a free port), or \
             set A3S_LANE_REDIS_URL=redis://HOST:PORT to use a running one."
        ),
    }
}

pub(crate) fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("a3s-cli-test-{test}-{}-{nanos}", std::process::id())
}

/// Deletes the queue's keys when dropped, whatever the test's outcome.
pub(crate) struct Cleanup(pub(crate) RedisQueue);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queue = self.0.clone();
        // A runtime of its own: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(queue.clear()))
        })
        .join();
    }
}

/// `a3s-lane --redis URL --prefix P ARGS…`
fn cli(prefix: &str, args: &[&str]) -> crate::Run {
    let url = redis_url();
    let mut all = vec!["--redis", url.as_str(), "--prefix", prefix];
    all.extend_from_slice(args);
    a3s_lane(all)
}

async fn connect(prefix: &str) -> RedisQueue {
    RedisQueue::connect(
        RedisQueueConfig::new(redis_url())
            .with_key_prefix(prefix)
            .with_lane("mail", LaneConfig::new(1, 2), 1)
            .with_lane("report", LaneConfig::new(1, 1), 5),
    )
    .await
    .expect("connecting to the test Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_queue_is_listed_paused_resumed_and_cancelled() {
    let prefix = unique_prefix("steer");
    let queue = connect(&prefix).await;
    let _cleanup = Cleanup(queue.clone());
    let mut submitted = Vec::new();
    for n in 0..3 {
        let handle = queue
            .submit("mail", "send", json!({ "n": n }))
            .await
            .unwrap();
        submitted.push(handle.id());
    }
    let _report = queue.submit("report", "build", json!({})).await.unwrap();

    // No lane list on the command line: the queue's lanes are read from Redis.
    let stats = cli(&prefix, &["stats", "--json"]).json();
    assert_eq!(stats["engine"], "redis");
    assert_eq!(stats["total_pending"], 4);
    let lanes = stats["lanes"].as_array().unwrap();
    assert_eq!(lanes.len(), 2);
    assert_eq!(lanes[0]["id"], "mail", "by priority");
    assert_eq!(lanes[0]["pending"], 3);
    assert_eq!(lanes[0]["max_concurrency"], 2);
    let table = cli(&prefix, &["lanes"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(table.stdout.starts_with("LANE"), "{table:?}");
    assert!(table.stdout.contains("mail"), "{table:?}");

    // Paged: two, then the rest.
    let first = cli(
        &prefix,
        &[
            "commands", "--state", "pending", "--lane", "mail", "--limit", "2", "--json",
        ],
    )
    .json();
    assert_eq!(ids(&first), submitted[..2]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let rest = cli(
        &prefix,
        &[
            "commands", "--state", "pending", "--limit", "10", "--after", &cursor, "--json",
        ],
    )
    .json();
    assert_eq!(ids(&rest).len(), 2, "the last of mail, then report: {rest}");
    assert_eq!(ids(&rest)[0], submitted[2]);
    assert!(rest["next_cursor"].is_null());

    let shown = cli(&prefix, &["show", &submitted[0].to_string(), "--json"]).json();
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["lane_id"], "mail");
    assert_eq!(shown["payload"], json!({ "n": 0 }));

    // Pause, timed pause, resume.
    let paused = cli(&prefix, &["pause", "mail", "--json"]).json();
    assert_eq!(
        paused,
        json!({ "lane": "mail", "paused": true, "for_ms": null })
    );
    let stats = cli(&prefix, &["lanes", "--json"]).json();
    assert_eq!(stats["lanes"][0]["paused"], true);
    cli(&prefix, &["resume", "mail", "--json"]).json();
    let stats = cli(&prefix, &["lanes", "--json"]).json();
    assert_eq!(stats["lanes"][0]["paused"], false);
    let timed = cli(&prefix, &["pause", "report", "--for", "1m", "--json"]).json();
    assert_eq!(timed["for_ms"], 60_000);
    let stats = queue.stats().await.unwrap();
    assert!(
        stats.queue.lanes["report"].throttled,
        "a timed pause holds it"
    );
    cli(&prefix, &["resume", "report"]);
    assert!(!queue.stats().await.unwrap().queue.lanes["report"].throttled);

    // Cancel.
    let cancelled = cli(&prefix, &["cancel", &submitted[1].to_string(), "--json"]).json();
    assert_eq!(cancelled["outcome"], "cancelled");
    let shown = cli(&prefix, &["show", &submitted[1].to_string(), "--json"]).json();
    assert_eq!(shown["state"], "cancelled");
    let listing = cli(&prefix, &["commands", "--state", "cancelled", "--json"]).json();
    assert_eq!(ids(&listing), [submitted[1]]);

    // Bad input: a clear message and exit status 1.
    cli(&prefix, &["show", "987654321"]).refused("no command 987654321");
    cli(&prefix, &["cancel", "987654321"]).refused("no command 987654321");
    cli(&prefix, &["pause", "nope"]).refused("nope");
    cli(
        &prefix,
        &["commands", "--state", "pending", "--lane", "nope"],
    )
    .refused("nope");
    cli(
        &prefix,
        &["commands", "--state", "pending", "--after", "bogus"],
    )
    .refused("cursor");
    cli(&prefix, &["commands", "--state", "pending", "--limit", "0"]).refused("limit");
    cli(&format!("{prefix}-wrong"), &["stats"]).refused("no queue under prefix");

    // Watch: frames driven by the event stream, one JSON object per line.
    let watch = cli(
        &prefix,
        &["watch", "--frames", "2", "--interval", "100ms", "--json"],
    );
    assert_eq!(watch.code, Some(0), "{watch:?}");
    let frames: Vec<serde_json::Value> = watch
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON frame"))
        .collect();
    assert_eq!(frames.len(), 2, "{watch:?}");
    assert_eq!(frames[0]["driven_by"], "events");
    assert_eq!(frames[1]["stats"]["total_pending"], 3);
    let screen = cli(&prefix, &["watch", "--frames", "1"]);
    assert!(screen.stdout.starts_with("\x1b[2J\x1b[H"), "{screen:?}");
    assert!(screen.stdout.contains("mail"), "{screen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_redis_queue_are_redriven_and_purged() {
    let prefix = unique_prefix("dead");
    let queue = connect(&prefix).await;
    let _cleanup = Cleanup(queue.clone());
    let failing = Arc::new(AtomicBool::new(true));
    let handlers = HandlerRegistry::default();
    let fail = failing.clone();
    handlers.register(
        "send",
        handler_fn(move |payload, _ctx| {
            let fail = fail.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(LaneError::CommandError("smtp down".into()))
                } else {
                    Ok(payload)
                }
            }
        }),
    );
    let worker = RedisWorker::start(
        &queue,
        handlers,
        RedisWorkerConfig::new(2).with_block_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let mut ids_dead = Vec::new();
    for n in 0..3 {
        let handle = queue
            .submit("mail", "send", json!({ "n": n }))
            .await
            .unwrap();
        ids_dead.push(handle.id());
        assert!(handle.await.is_err());
    }
    let listing = cli(&prefix, &["dead-letters", "list", "--json"]).json();
    let letters = listing["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0]["command_id"], ids_dead[0]);
    assert!(letters[0]["error"].as_str().unwrap().contains("smtp down"));
    let stats = cli(&prefix, &["stats", "--json"]).json();
    assert_eq!(stats["dead_letters"], 3);
    assert_eq!(stats["lanes"][0]["dead_letters"], 3, "all in mail");
    assert_eq!(stats["lanes"][1]["dead_letters"], 0);
    let dead = cli(&prefix, &["commands", "--state", "dead", "--json"]).json();
    assert_eq!(ids(&dead).len(), 3);

    // One is redriven and now runs to completion.
    failing.store(false, Ordering::SeqCst);
    let redriven = cli(
        &prefix,
        &[
            "dead-letters",
            "redrive",
            &ids_dead[0].to_string(),
            "--json",
        ],
    )
    .json();
    assert_eq!(redriven["redriven"], json!([ids_dead[0]]));
    let id = ids_dead[0];
    let start = std::time::Instant::now();
    loop {
        let status = QueueClient::command(&queue, id).await.unwrap();
        if status.is_some_and(|s| s.state == a3s_lane::CommandState::Completed) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the redriven command completes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One is purged by id, then the rest.
    let purged = cli(
        &prefix,
        &["dead-letters", "purge", &ids_dead[1].to_string(), "--json"],
    )
    .json();
    assert_eq!(purged["purged"], 1);
    let listing = cli(&prefix, &["dead-letters", "list", "--json"]).json();
    assert_eq!(listing["dead_letters"].as_array().unwrap().len(), 1);
    cli(
        &prefix,
        &["dead-letters", "purge", &ids_dead[1].to_string()],
    )
    .refused("no dead letter");
    cli(&prefix, &["dead-letters", "redrive", "987654321"]).refused("no dead letter");
    let purged = cli(&prefix, &["dead-letters", "purge", "--all", "--json"]).json();
    assert_eq!(purged["purged"], 1);
    let listing = cli(&prefix, &["dead-letters", "list"]);
    assert_eq!(listing.stdout, "(no dead letters)\n", "{listing:?}");
    worker.shutdown_now().await;
}

#[test]
fn an_unreachable_redis_is_an_error_that_hides_the_password() {
    let run = a3s_lane([
        "--redis",
        "redis://admin:hunter2@127.0.0.1:1",
        "--connect-timeout",
        "1s",
        "stats",
    ]);
    run.refused("cannot connect to Redis at redis://admin:***@127.0.0.1:1");
    assert!(!run.stderr.contains("hunter2"), "{run:?}");
}

/// The nodes of the test Redis Cluster. Without them the test fails (it never skips).
fn cluster_urls() -> Vec<String> {
    let urls: Vec<String> = std::env::var("A3S_LANE_REDIS_CLUSTER_URLS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !urls.is_empty(),
        "A3S_LANE_REDIS_CLUSTER_URLS is not set, and this test needs a Redis Cluster. Run \
         `bash scripts/test.sh` (it starts a throwaway three-node cluster), or `source \
         scripts/redis.sh && ensure_redis_cluster` in your shell, or set it to the nodes of \
         a running one (redis://HOST:PORT,redis://HOST:PORT,...)."
    );
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_on_a_redis_cluster_is_reached_through_its_nodes() {
    let urls = cluster_urls();
    let prefix = unique_prefix("cluster");
    let queue = RedisQueue::connect(
        RedisQueueConfig::cluster(urls.clone())
            .with_key_prefix(&prefix)
            .with_lane("mail", LaneConfig::new(1, 2), 1),
    )
    .await
    .expect("connecting to the test Redis Cluster");
    let _cleanup = Cleanup(queue.clone());
    let handle = queue.submit("mail", "send", json!({})).await.unwrap();

    // Repeated, and as one comma separated list.
    let mut args: Vec<String> = urls
        .iter()
        .flat_map(|url| ["--redis-node".to_owned(), url.clone()])
        .collect();
    args.extend([
        "--prefix".into(),
        prefix.clone(),
        "stats".into(),
        "--json".into(),
    ]);
    let stats = a3s_lane(&args).json();
    assert_eq!(stats["total_pending"], 1);
    let nodes = urls.join(",");
    let paused = a3s_lane([
        "--redis-node",
        &nodes,
        "--prefix",
        &prefix,
        "pause",
        "mail",
        "--json",
    ])
    .json();
    assert_eq!(paused["paused"], true);
    assert!(queue.stats().await.unwrap().queue.lanes["mail"].paused);
    let shown = a3s_lane([
        "--redis-node",
        &nodes,
        "--prefix",
        &prefix,
        "show",
        &handle.id().to_string(),
        "--json",
    ])
    .json();
    assert_eq!(shown["state"], "pending");
}
