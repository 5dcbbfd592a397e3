//! The dashboard over a `RedisQueue` (with a `RedisWorker` running its commands): the same
//! router and API as in process. Needs `A3S_LANE_REDIS_URL` (`bash scripts/test.sh` starts
//! a throwaway redis-server); without it the test fails saying so, it never skips.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use lane_core::{HandlerRegistry, LaneError, QueueClient, handler_fn};
use lane_dashboard::{DashboardConfig, router};
use lane_redis::{RedisQueue, RedisQueueConfig, RedisWorker, RedisWorkerConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const AUTH: (&str, &str) = ("authorization", "Bearer redis-test-token");

fn redis_url() -> String {
    match std::env::var("A3S_LANE_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "A3S_LANE_REDIS_URL is not set, and this test needs a Redis server. Run `bash \
             scripts/test.sh` (it starts a throwaway redis-server), or set \
             A3S_LANE_REDIS_URL=redis://HOST:PORT to use a running one."
        ),
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:9090");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    for _ in 0..250 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_the_same_over_a_redis_queue() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("a3s-test-dashboard-{}-{nanos}", std::process::id());
    let queue = RedisQueue::connect(
        RedisQueueConfig::new(redis_url())
            .with_key_prefix(&prefix)
            .with_default_lanes(),
    )
    .await
    .expect("connecting to the test Redis");
    let broken = Arc::new(AtomicBool::new(true));
    let handlers = HandlerRegistry::default();
    handlers.register(
        "echo",
        handler_fn(|payload, _ctx| async move { Ok(json!({ "echo": payload })) }),
    );
    let flaky_broken = Arc::clone(&broken);
    handlers.register(
        "flaky",
        handler_fn(move |_payload, _ctx| {
            let broken = flaky_broken.load(Ordering::SeqCst);
            async move {
                if broken {
                    Err(LaneError::CommandError("broken".into()))
                } else {
                    Ok(json!("fixed"))
                }
            }
        }),
    );
    let worker = RedisWorker::start(
        &queue,
        handlers,
        RedisWorkerConfig::new(4)
            .with_lease_ttl(Duration::from_secs(2))
            .with_block_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let client: Arc<dyn QueueClient> = Arc::new(queue.clone());
    let app = router(
        Arc::clone(&client),
        DashboardConfig::new()
            .with_token("redis-test-token")
            .with_batch_interval(Duration::from_millis(20)),
    );

    // Lanes and counts.
    let (status, lanes) = call(&app, Method::GET, "/api/lanes?limit=2&sort=priority", &[]).await;
    assert_eq!(status, StatusCode::OK, "{lanes}");
    assert_eq!(lanes["total"], 6);
    assert_eq!(lanes["lanes"][0]["id"], "system");

    // The event stream, over a real socket, carries a command run by the worker.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = app.clone();
    let server = tokio::spawn(async move { axum::serve(listener, served).await });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 8192];
    let mut read_until = async |seen: &mut String, needle: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !seen.contains(needle) {
            let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in the stream: {seen}"))
                .unwrap();
            assert!(read > 0, "the stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    };
    read_until(&mut seen, "event: stats").await;
    let handle = client.submit("query", "echo", json!(1)).await.unwrap();
    let id = handle.id();
    assert_eq!(handle.await.unwrap(), json!({ "echo": 1 }));
    read_until(&mut seen, "\"completed\":1").await;
    assert!(seen.contains(&format!("\"command_id\":{id}")), "{seen}");

    let (status, command) = call(&app, Method::GET, &format!("/api/commands/{id}"), &[AUTH]).await;
    assert_eq!(status, StatusCode::OK, "{command}");
    assert_eq!(command["state"], "completed");
    let (status, _) = call(
        &app,
        Method::GET,
        "/api/lanes/query/commands?state=completed",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Pause and resume, with the token only.
    let (status, _) = call(&app, Method::POST, "/api/lanes/query/pause", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&app, Method::POST, "/api/lanes/query/pause", &[AUTH]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(client.stats().await.unwrap().lanes["query"].paused);
    let (status, _) = call(&app, Method::POST, "/api/lanes/query/resume", &[AUTH]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!client.stats().await.unwrap().lanes["query"].paused);

    // Dead letters: payload for the token only, redrive (it runs), delete one.
    for n in 0..2 {
        let handle = client
            .submit("query", "flaky", json!({ "n": n }))
            .await
            .unwrap();
        assert!(handle.await.is_err());
    }
    let (_, anonymous) = call(&app, Method::GET, "/api/dead-letters", &[]).await;
    assert_eq!(
        anonymous["dead_letters"].as_array().unwrap().len(),
        2,
        "{anonymous}"
    );
    assert_eq!(anonymous["dead_letters"][0]["payload_hidden"], true);
    let (_, letters) = call(&app, Method::GET, "/api/dead-letters", &[AUTH]).await;
    assert_eq!(letters["dead_letters"][0]["payload"], json!({ "n": 0 }));
    let first = letters["dead_letters"][0]["command_id"].as_u64().unwrap();
    let second = letters["dead_letters"][1]["command_id"].as_u64().unwrap();
    broken.store(false, Ordering::SeqCst);
    let (status, redriven) = call(
        &app,
        Method::POST,
        &format!("/api/dead-letters/{first}/redrive"),
        &[AUTH],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{redriven}");
    let new_id = redriven["new_id"].as_u64().unwrap();
    eventually("the re-driven command completes", async || {
        call(
            &app,
            Method::GET,
            &format!("/api/commands/{new_id}"),
            &[AUTH],
        )
        .await
        .1["state"]
            == "completed"
    })
    .await;
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/dead-letters/{second}/delete"),
        &[AUTH],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/dead-letters/{second}/delete"),
        &[AUTH],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(client.dead_letters(10).await.unwrap().is_empty());

    // /metrics from the stats.
    let response = app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .header(header::HOST, "127.0.0.1:9090")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("a3s_lane_lane_max_concurrency{lane=\"query\"}"),
        "{text}"
    );
    // The page never shows the Redis URL.
    let (_, overview) = call(&app, Method::GET, "/api/overview", &[]).await;
    assert!(!overview.to_string().contains("redis://"));

    server.abort();
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let _ = queue.clear().await;
}
