//! The dashboard over a real in-process `QueueManager`, through HTTP: pages, the JSON API,
//! token refusal, POST-only actions, read-only mode, the event stream and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use lane_core::{
    EventEmitter, LaneConfig, LaneError, QueueClient, QueueManager, QueueManagerBuilder, handler_fn,
};
use lane_dashboard::{DashboardConfig, QueueMetrics, router};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

struct Fixture {
    manager: QueueManager,
    client: Arc<dyn QueueClient>,
    metrics: QueueMetrics,
    /// While set, `flaky` commands fail.
    broken: Arc<AtomicBool>,
}

async fn fixture() -> Fixture {
    let metrics = QueueMetrics::local();
    let broken = Arc::new(AtomicBool::new(true));
    let flaky_broken = Arc::clone(&broken);
    let manager = QueueManagerBuilder::new(EventEmitter::new(1024))
        .with_lane("fast", LaneConfig::new(1, 4), 0)
        .with_lane("slow", LaneConfig::new(1, 1), 1)
        .with_dlq(100)
        .with_metrics(metrics.clone())
        .with_handler(
            "echo",
            handler_fn(|payload, _ctx| async move { Ok(json!({ "echo": payload })) }),
        )
        .with_handler(
            "sleep",
            handler_fn(|payload, _ctx| async move {
                let ms = payload.as_u64().unwrap_or(10);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Value::Null)
            }),
        )
        .with_handler(
            "leaky",
            handler_fn(|_payload, _ctx| async move {
                Err(LaneError::NonRetryable(
                    "cannot reach redis://app:s3cret@db:6379/0".into(),
                ))
            }),
        )
        .with_handler(
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
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    Fixture {
        client: Arc::new(manager.clone()),
        manager,
        metrics,
        broken,
    }
}

fn app(fixture: &Fixture, config: DashboardConfig) -> Router {
    router(Arc::clone(&fixture.client), config)
}

struct Answer {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

async fn call(app: &Router, method: Method, uri: &str, headers: &[(&str, &str)]) -> Answer {
    call_with_body(app, method, uri, headers, Body::empty()).await
}

async fn call_with_body(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request = request.header(header::HOST, "127.0.0.1:9090");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

const AUTH: (&str, &str) = ("authorization", "Bearer test-token-0123456789");

async fn run(
    fixture: &Fixture,
    lane: &str,
    kind: &str,
    payload: Value,
) -> Result<Value, LaneError> {
    fixture.client.submit(lane, kind, payload).await?.await
}

#[tokio::test]
async fn pages_and_assets_load_at_the_root_and_under_a_prefix() {
    let fixture = fixture().await;
    let app = app(&fixture, DashboardConfig::new().with_title("<ops>"));
    for path in ["/", "/lanes", "/commands", "/dead-letters", "/groups"] {
        let page = call(&app, Method::GET, path, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.content_type.starts_with("text/html"), "{path}");
        assert!(page.text.contains("&lt;ops&gt;"), "the title is escaped");
        assert!(page.text.contains(r#"<meta name="base" content="/">"#));
    }
    let script = call(&app, Method::GET, "/assets/app.js", &[]).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.content_type.starts_with("text/javascript"));
    assert!(script.text.contains("EventSource"));
    let style = call(&app, Method::GET, "/assets/style.css", &[]).await;
    assert!(style.content_type.starts_with("text/css"));

    let nested = Router::new().nest("/dash", app.clone());
    let page = call(&nested, Method::GET, "/dash/lanes", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains(r#"<meta name="base" content="/dash/">"#),
        "{}",
        page.text
    );
    let lanes = call(&nested, Method::GET, "/dash/api/lanes", &[]).await;
    assert_eq!(lanes.json()["total"], 2);

    let missing = call(&app, Method::GET, "/nope", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "not_found");
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn the_api_lists_lanes_and_commands_in_pages_and_refuses_bad_input() {
    let fixture = fixture().await;
    for n in 0..3 {
        run(&fixture, "fast", "echo", json!(n)).await.unwrap();
    }
    let app = app(
        &fixture,
        DashboardConfig::new().with_metrics(fixture.metrics.clone()),
    );

    let lanes = call(&app, Method::GET, "/api/lanes?limit=1&sort=priority", &[]).await;
    assert_eq!(lanes.status, StatusCode::OK, "{}", lanes.text);
    let lanes = lanes.json();
    assert_eq!(lanes["total"], 2);
    assert_eq!(lanes["lanes"].as_array().unwrap().len(), 1);
    assert_eq!(lanes["lanes"][0]["id"], "fast");
    assert_eq!(lanes["lanes"][0]["max"], 4);
    assert_eq!(lanes["lanes"][0]["metrics"]["completed"], 3);
    assert!(lanes["lanes"][0]["metrics"]["run_ms"]["percentiles"]["p99"].is_number());
    let second = call(
        &app,
        Method::GET,
        "/api/lanes?offset=1&limit=1&sort=priority",
        &[],
    )
    .await;
    assert_eq!(second.json()["lanes"][0]["id"], "slow");
    let filtered = call(&app, Method::GET, "/api/lanes?q=slo", &[]).await;
    assert_eq!(filtered.json()["total"], 1);

    let done = call(
        &app,
        Method::GET,
        "/api/lanes/fast/commands?state=completed&limit=2",
        &[],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let done = done.json();
    assert_eq!(done["commands"].as_array().unwrap().len(), 2);
    assert_eq!(done["has_more"], true);
    let id = done["commands"][0]["id"].as_u64().unwrap();
    // No token configured: results are shown.
    assert_eq!(done["commands"][0]["result"], json!({ "echo": 2 }));

    let one = call(&app, Method::GET, &format!("/api/commands/{id}"), &[]).await;
    assert_eq!(one.json()["state"], "completed");
    let overview = call(&app, Method::GET, "/api/overview", &[]).await.json();
    assert_eq!(overview["lanes"], 2);
    assert_eq!(overview["actions_enabled"], false);

    for (uri, status, code) in [
        (
            "/api/commands/abc",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/commands/987654321",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/lanes/nope/commands",
            StatusCode::NOT_FOUND,
            "lane_not_found",
        ),
        (
            "/api/lanes/fast/commands?state=bogus",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/lanes/fast/commands?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/lanes/fast/commands?limit=abc",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/lanes?limit=100000",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/lanes?sort=bogus",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/dead-letters?offset=20000",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/dead-letters/1234567",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/lanes/nope/groups",
            StatusCode::NOT_FOUND,
            "lane_not_found",
        ),
    ] {
        let answer = call(&app, Method::GET, uri, &[]).await;
        assert_eq!(answer.status, status, "{uri}: {}", answer.text);
        assert_eq!(answer.error_code(), code, "{uri}");
        assert!(answer.content_type.starts_with("application/json"), "{uri}");
    }
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn actions_need_the_token_post_and_the_same_site() {
    let fixture = fixture().await;
    let app = app(&fixture, DashboardConfig::new().with_token(TOKEN));
    let pause = "/api/lanes/slow/pause";

    let none = call(&app, Method::POST, pause, &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.error_code(), "unauthorized");
    let wrong = call(
        &app,
        Method::POST,
        pause,
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let other_scheme = call(
        &app,
        Method::POST,
        pause,
        &[("authorization", "Basic dGVzdA==")],
    )
    .await;
    assert_eq!(other_scheme.status, StatusCode::UNAUTHORIZED);
    let evil = call(
        &app,
        Method::POST,
        pause,
        &[AUTH, ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN);
    let cross = call(
        &app,
        Method::POST,
        pause,
        &[AUTH, ("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(!fixture.client.stats().await.unwrap().lanes["slow"].paused);

    let get = call(&app, Method::GET, pause, &[AUTH]).await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.error_code(), "method_not_allowed");

    let ok = call(
        &app,
        Method::POST,
        pause,
        &[
            AUTH,
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert!(fixture.client.stats().await.unwrap().lanes["slow"].paused);
    let resumed = call(&app, Method::POST, "/api/lanes/slow/resume", &[AUTH]).await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert!(!fixture.client.stats().await.unwrap().lanes["slow"].paused);

    let timed = call_with_body(
        &app,
        Method::POST,
        "/api/lanes/slow/pause-for",
        &[AUTH],
        Body::from(r#"{"seconds": 30}"#),
    )
    .await;
    assert_eq!(timed.status, StatusCode::OK, "{}", timed.text);
    assert!(fixture.client.stats().await.unwrap().lanes["slow"].paused);
    for body in [
        "",
        "{",
        r#"{"seconds": -1}"#,
        r#"{"seconds": "x"}"#,
        r#"{"minutes": 1}"#,
    ] {
        let bad = call_with_body(
            &app,
            Method::POST,
            "/api/lanes/slow/pause-for",
            &[AUTH],
            Body::from(body),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{body}: {}", bad.text);
    }
    let unknown = call(&app, Method::POST, "/api/lanes/nope/pause", &[AUTH]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let cancel = call(&app, Method::POST, "/api/commands/99999/cancel", &[AUTH]).await;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);

    // A pending command is cancelled.
    let handle = fixture
        .client
        .submit("slow", "sleep", json!(10))
        .await
        .unwrap();
    let cancel = call(
        &app,
        Method::POST,
        &format!("/api/commands/{}/cancel", handle.id()),
        &[AUTH],
    )
    .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.text);
    assert_eq!(cancel.json()["took_effect"], true);
    assert!(handle.await.is_err());

    // Without a configured token every action is refused.
    let tokenless = router(Arc::clone(&fixture.client), DashboardConfig::new());
    let refused = call(&tokenless, Method::POST, "/api/lanes/slow/resume", &[AUTH]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    fixture.manager.shutdown_now().await;
}

#[tokio::test]
async fn read_only_mode_refuses_every_action_and_still_shows_the_pages() {
    let fixture = fixture().await;
    let app = app(
        &fixture,
        DashboardConfig::new().with_token(TOKEN).read_only(true),
    );
    for uri in [
        "/api/lanes/fast/pause",
        "/api/lanes/fast/resume",
        "/api/commands/1/cancel",
        "/api/dead-letters/1/redrive",
        "/api/dead-letters/1/delete",
        "/api/dead-letters/redrive-all",
        "/api/dead-letters/purge",
        "/api/lanes/fast/groups/g/pause",
    ] {
        let answer = call(&app, Method::POST, uri, &[AUTH]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(
            answer.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("read-only")
        );
    }
    assert_eq!(
        call(&app, Method::GET, "/", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, Method::GET, "/api/overview", &[]).await.json()["read_only"],
        true
    );
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn dead_letters_show_payloads_to_the_token_only_and_are_redriven_and_deleted() {
    let fixture = fixture().await;
    for n in 0..3 {
        assert!(
            run(&fixture, "fast", "flaky", json!({ "secret": n }))
                .await
                .is_err()
        );
    }
    let app = app(&fixture, DashboardConfig::new().with_token(TOKEN));

    let anonymous = call(&app, Method::GET, "/api/dead-letters?limit=2", &[])
        .await
        .json();
    let letters = anonymous["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(anonymous["has_more"], true);
    assert_eq!(letters[0]["payload"], Value::Null);
    assert_eq!(letters[0]["payload_hidden"], true);
    assert!(
        !call(&app, Method::GET, "/api/dead-letters", &[])
            .await
            .text
            .contains("secret")
    );
    let authorised = call(&app, Method::GET, "/api/dead-letters?lane=fast", &[AUTH])
        .await
        .json();
    let letters = authorised["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0]["payload"], json!({ "secret": 0 }));
    let ids: Vec<u64> = letters
        .iter()
        .map(|l| l["command_id"].as_u64().unwrap())
        .collect();
    let one = call(
        &app,
        Method::GET,
        &format!("/api/dead-letters/{}", ids[0]),
        &[],
    )
    .await
    .json();
    assert_eq!(one["payload_hidden"], true);
    let status = call(
        &app,
        Method::GET,
        &format!("/api/commands/{}", ids[0]),
        &[AUTH],
    )
    .await
    .json();
    assert_eq!(status["state"], "dead_lettered");
    assert_eq!(status["payload"], json!({ "secret": 0 }));

    // Redrive one: it runs (and completes, now that the handler works).
    fixture.broken.store(false, Ordering::SeqCst);
    let redriven = call(
        &app,
        Method::POST,
        &format!("/api/dead-letters/{}/redrive", ids[0]),
        &[AUTH],
    )
    .await;
    assert_eq!(redriven.status, StatusCode::OK, "{}", redriven.text);
    let new_id = redriven.json()["new_id"].as_u64().unwrap();
    let mut state = Value::Null;
    for _ in 0..100 {
        state = call(
            &app,
            Method::GET,
            &format!("/api/commands/{new_id}"),
            &[AUTH],
        )
        .await
        .json()["state"]
            .clone();
        if state == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, "completed");
    let again = call(
        &app,
        Method::POST,
        &format!("/api/dead-letters/{}/redrive", ids[0]),
        &[AUTH],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // Delete one, then all.
    let deleted = call(
        &app,
        Method::POST,
        &format!("/api/dead-letters/{}/delete", ids[1]),
        &[AUTH],
    )
    .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    let gone = call(
        &app,
        Method::POST,
        &format!("/api/dead-letters/{}/delete", ids[1]),
        &[AUTH],
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let purged = call(&app, Method::POST, "/api/dead-letters/purge", &[AUTH])
        .await
        .json();
    assert_eq!(purged["purged"], 1);

    // Redrive all.
    fixture.broken.store(true, Ordering::SeqCst);
    for n in 0..2 {
        assert!(run(&fixture, "slow", "flaky", json!(n)).await.is_err());
    }
    fixture.broken.store(false, Ordering::SeqCst);
    let all = call(&app, Method::POST, "/api/dead-letters/redrive-all", &[AUTH])
        .await
        .json();
    assert_eq!(all["redriven"], 2, "{all}");
    assert!(fixture.client.dead_letters(10).await.unwrap().is_empty());
    fixture.manager.shutdown().await;
}

/// Reads from `stream` until `needle` has been seen, or fails after `timeout`.
async fn read_until(
    stream: &mut tokio::net::TcpStream,
    seen: &mut String,
    needle: &str,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = [0u8; 8192];
    while !seen.contains(needle) {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in the stream: {seen}"))
            .unwrap();
        assert!(read > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
}

#[tokio::test]
async fn the_event_stream_delivers_a_batch_when_a_command_runs() {
    event_stream_delivers_a_batch(false).await;
}

#[tokio::test]
async fn the_event_stream_counts_from_the_metrics_when_it_has_them() {
    event_stream_delivers_a_batch(true).await;
}

async fn event_stream_delivers_a_batch(with_metrics: bool) {
    let fixture = fixture().await;
    let mut config = DashboardConfig::new().with_batch_interval(Duration::from_millis(20));
    if with_metrics {
        config = config.with_metrics(fixture.metrics.clone());
    }
    let app = app(&fixture, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET /api/events?lanes=fast HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = String::new();
    // The first message: the counts now (so the subscription is in place).
    read_until(
        &mut stream,
        &mut seen,
        "event: stats",
        Duration::from_secs(5),
    )
    .await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        seen.to_lowercase()
            .contains("content-type: text/event-stream")
    );
    let id = fixture
        .client
        .submit("fast", "echo", json!("hi"))
        .await
        .unwrap();
    let command_id = id.id();
    id.await.unwrap();
    read_until(
        &mut stream,
        &mut seen,
        "\"completed\":1",
        Duration::from_secs(5),
    )
    .await;
    let batch = seen.split("event: batch").nth(1).expect("a batch message");
    assert!(
        batch.contains(&format!("\"command_id\":{command_id}")),
        "{batch}"
    );
    assert!(batch.contains("\"fast\""), "{batch}");
    let source = if with_metrics { "metrics" } else { "events" };
    assert!(
        batch.contains(&format!("\"source\":\"{source}\"")),
        "{batch}"
    );
    // No payload or result in the stream.
    assert!(!seen.contains("\"hi\""), "{seen}");
    server.abort();
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text() {
    let fixture = fixture().await;
    run(&fixture, "fast", "echo", json!(1)).await.unwrap();
    let app = app(
        &fixture,
        DashboardConfig::new().with_metrics(fixture.metrics.clone()),
    );
    let answer = call(&app, Method::GET, "/metrics", &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.content_type.starts_with("text/plain; version=0.0.4"));
    let mut families = std::collections::HashSet::new();
    for line in answer.text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let family = parts.next().unwrap();
            assert!(
                families.insert(family.to_owned()),
                "{family} declared twice"
            );
            assert!(
                matches!(parts.next(), Some("gauge" | "counter" | "summary")),
                "{line}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
    }
    assert!(
        answer
            .text
            .contains("a3s_lane_lane_max_concurrency{lane=\"fast\"} 4\n")
    );
    assert!(
        answer
            .text
            .contains("a3s_lane_lane_paused{lane=\"slow\"} 0\n")
    );
    assert!(
        answer
            .text
            .contains("lane_commands_completed_total{lane=\"fast\"} 1\n")
    );
    assert!(
        answer
            .text
            .contains("lane_command_latency_ms{lane=\"fast\",quantile=\"0.99\"}")
    );

    // Every series the Grafana dashboard in docs/ queries is served (in the repository;
    // a packaged crate has no docs/).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana-a3s-lane.json"
    );
    let Ok(grafana) = std::fs::read_to_string(path) else {
        assert!(
            !std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs")).exists(),
            "docs/ exists but has no grafana-a3s-lane.json"
        );
        fixture.manager.shutdown().await;
        return;
    };
    let grafana: Value = serde_json::from_str(&grafana).unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for panel in grafana["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for token in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if token.starts_with("a3s_lane_") || token.starts_with("lane_command") {
                    let family = token
                        .strip_suffix("_sum")
                        .or_else(|| token.strip_suffix("_count"))
                        .unwrap_or(token);
                    queried.insert(family.to_owned());
                }
            }
        }
    }
    for family in &queried {
        assert!(
            answer.text.contains(&format!("# TYPE {family} ")),
            "the Grafana dashboard queries {family}, which /metrics does not serve"
        );
    }
    assert!(queried.len() > 10, "{queried:?}");
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn schedules_are_listed_with_payloads_for_the_token_only_and_paused_and_resumed() {
    let fixture = fixture().await;
    fixture
        .client
        .put_schedule(lane_core::Schedule::every(
            "nightly",
            "slow",
            "echo",
            json!({ "secret": 1 }),
            Duration::from_secs(3600),
        ))
        .await
        .unwrap();
    let app = app(&fixture, DashboardConfig::new().with_token(TOKEN));
    let anonymous = call(&app, Method::GET, "/api/schedules", &[]).await;
    assert_eq!(anonymous.status, StatusCode::OK, "{}", anonymous.text);
    let anonymous = anonymous.json();
    assert_eq!(anonymous["total"], 1);
    assert_eq!(anonymous["schedules"][0]["schedule"]["name"], "nightly");
    assert_eq!(
        anonymous["schedules"][0]["schedule"]["payload"],
        Value::Null
    );
    assert_eq!(
        anonymous["schedules"][0]["schedule"]["payload_hidden"],
        true
    );
    let authorised = call(&app, Method::GET, "/api/schedules", &[AUTH])
        .await
        .json();
    assert_eq!(
        authorised["schedules"][0]["schedule"]["payload"],
        json!({ "secret": 1 })
    );
    let paused = call(&app, Method::POST, "/api/schedules/nightly/pause", &[AUTH]).await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    assert!(fixture.client.schedules().await.unwrap()[0].paused);
    let resumed = call(&app, Method::POST, "/api/schedules/nightly/resume", &[AUTH]).await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert!(!fixture.client.schedules().await.unwrap()[0].paused);
    let unknown = call(&app, Method::POST, "/api/schedules/nope/pause", &[AUTH]).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
    assert_eq!(
        call(&app, Method::GET, "/schedules", &[]).await.status,
        StatusCode::OK
    );
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn serve_shuts_down_with_an_event_stream_open() {
    let fixture = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lane_dashboard::serve(
        listener,
        Arc::clone(&fixture.client),
        DashboardConfig::new().with_token(TOKEN),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        "event: stats",
        Duration::from_secs(5),
    )
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns although a page was streaming")
        .unwrap()
        .unwrap();
    // The stream was ended (the chunked body's last chunk, then EOF).
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the stream ends")
        .unwrap();
    fixture.manager.shutdown().await;
}

// Multi-threaded: the redriven commands run (and fail again) while redrive-all goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_all_redrives_each_letter_once_when_the_handler_keeps_failing() {
    const LETTERS: usize = 50;
    let fixture = fixture().await;
    for n in 0..LETTERS {
        assert!(run(&fixture, "fast", "flaky", json!(n)).await.is_err());
    }
    let originals: Vec<u64> = fixture
        .client
        .dead_letters(1000)
        .await
        .unwrap()
        .iter()
        .map(|l| l.command_id)
        .collect();
    assert_eq!(originals.len(), LETTERS);
    let app = app(&fixture, DashboardConfig::new().with_token(TOKEN));
    let all = call(&app, Method::POST, "/api/dead-letters/redrive-all", &[AUTH]).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    // One new run per original letter, no more.
    assert_eq!(all.json()["redriven"], LETTERS, "{}", all.text);
    // The redriven commands fail again: as many new letters, under new ids.
    for _ in 0..200 {
        let letters = fixture.client.dead_letters(1000).await.unwrap();
        if letters.len() >= LETTERS && letters.iter().all(|l| !originals.contains(&l.command_id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let letters = fixture.client.dead_letters(1000).await.unwrap();
    assert_eq!(letters.len(), LETTERS);
    assert!(letters.iter().all(|l| !originals.contains(&l.command_id)));
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn command_errors_are_shown_without_credentials() {
    let fixture = fixture().await;
    let submitted = fixture
        .client
        .submit("fast", "leaky", json!(null))
        .await
        .unwrap();
    let id = submitted.id();
    assert!(submitted.await.is_err());
    let app = app(&fixture, DashboardConfig::new().with_token(TOKEN));
    let status = call(&app, Method::GET, &format!("/api/commands/{id}"), &[AUTH]).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert!(
        status.text.contains("redis://***@db:6379"),
        "{}",
        status.text
    );
    assert!(!status.text.contains("s3cret"), "{}", status.text);
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn requests_for_another_host_are_refused_on_every_route() {
    let fixture = fixture().await;
    let app = app(&fixture, DashboardConfig::new().with_token(TOKEN));
    for uri in [
        "/api/lanes",
        "/",
        "/dead-letters",
        "/metrics",
        "/api/events",
    ] {
        let refused = call(&app, Method::GET, uri, &[("host", "evil.example:9090")]).await;
        assert!(
            refused.status == StatusCode::MISDIRECTED_REQUEST
                || refused.status == StatusCode::FORBIDDEN,
            "{uri}: {} {}",
            refused.status,
            refused.text
        );
        assert_eq!(refused.error_code(), "unknown_host", "{uri}");
    }
    let refused = call(
        &app,
        Method::POST,
        "/api/lanes/fast/pause",
        &[
            ("host", "evil.example:9090"),
            ("origin", "http://evil.example:9090"),
            AUTH,
        ],
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::MISDIRECTED_REQUEST,
        "{}",
        refused.text
    );
    for host in [
        "127.0.0.1:9090",
        "localhost:8080",
        "[::1]:9090",
        "localhost",
    ] {
        let fine = call(&app, Method::GET, "/api/lanes", &[("host", host)]).await;
        assert_eq!(fine.status, StatusCode::OK, "{host}: {}", fine.text);
        let page = call(&app, Method::GET, "/", &[("host", host)]).await;
        assert_eq!(page.status, StatusCode::OK, "{host}: {}", page.text);
    }
    // A page of another origin is refused even when it names its own host as Host.
    let refused = call(
        &app,
        Method::POST,
        "/api/lanes/fast/pause",
        &[("origin", "http://evil.example:9090"), AUTH],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    // Hosts allowed by configuration.
    let app = router(
        Arc::clone(&fixture.client),
        DashboardConfig::new()
            .with_token(TOKEN)
            .with_allowed_host("dash.example.com"),
    );
    let fine = call(
        &app,
        Method::GET,
        "/api/lanes",
        &[("host", "dash.example.com")],
    )
    .await;
    assert_eq!(fine.status, StatusCode::OK, "{}", fine.text);
    let paused = call(
        &app,
        Method::POST,
        "/api/lanes/fast/pause",
        &[
            ("host", "dash.example.com"),
            ("origin", "https://dash.example.com"),
            AUTH,
        ],
    )
    .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    fixture.manager.shutdown().await;
}

#[tokio::test]
async fn serve_refuses_another_host_and_answers_its_own_address() {
    let fixture = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lane_dashboard::serve(
        listener,
        Arc::clone(&fixture.client),
        DashboardConfig::new().with_token(TOKEN),
        async move {
            let _ = stopped.await;
        },
    ));
    for (host, want) in [
        (format!("{addr}"), "200"),
        (format!("localhost:{}", addr.port()), "200"),
        (format!("evil.example:{}", addr.port()), "421"),
        ("localhost:1".to_owned(), "421"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET /api/lanes HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {want}")),
            "{host}: {answer}"
        );
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    fixture.manager.shutdown().await;
}
