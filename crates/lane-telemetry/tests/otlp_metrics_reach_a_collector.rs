//! The OTLP metrics export, checked end to end against a collector this test starts on
//! loopback: the metric names, kinds, values and lane attributes must arrive.

mod support;

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{LaneError, OtelMetricsBackend, OtlpConfig, OtlpTracing, QueueMetrics};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use serde_json::json;
use support::{collector, config, manager, string_attr};

/// The value of a sum's or gauge's data point for `lane`.
fn point(metric: &Metric, lane: &str) -> Option<f64> {
    let points = match metric.data.as_ref()? {
        Data::Sum(sum) => &sum.data_points,
        Data::Gauge(gauge) => &gauge.data_points,
        _ => return None,
    };
    let point = points
        .iter()
        .find(|p| string_attr(&p.attributes, "lane") == Some(lane))?;
    match point.value? {
        number_data_point::Value::AsInt(i) => Some(i as f64),
        number_data_point::Value::AsDouble(d) => Some(d),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_metrics_arrive_with_names_values_kinds_and_lane_attributes() {
    let (addr, received) = collector().await;
    let otel = Arc::new(OtelMetricsBackend::otlp(&config(addr)).unwrap());
    let metrics = QueueMetrics::new(otel.clone());
    let manager = manager(metrics.clone()).await;

    let mut handles = Vec::new();
    for i in 0..20u32 {
        handles.push(
            manager
                .submit_fn("query", "lookup", move |_ctx| async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if i < 3 {
                        Err(LaneError::CommandError("not found".into()))
                    } else {
                        Ok(json!(i))
                    }
                })
                .await
                .unwrap(),
        );
    }
    for _ in 0..5 {
        handles.push(
            manager
                .submit_fn("prompt", "generate", |_ctx| async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(json!("text"))
                })
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        let _ = handle.await;
    }
    manager.drain(Duration::from_secs(10)).await.unwrap();
    otel.flush().await.unwrap();

    {
        let received = received.lock().unwrap();
        assert!(
            received.other_paths.is_empty(),
            "{:?}",
            received.other_paths
        );
        let request = received.metrics.last().expect("a metrics export arrived");
        let resource = request.resource_metrics[0].resource.as_ref().unwrap();
        assert_eq!(
            string_attr(&resource.attributes, "service.name"),
            Some("lane-otlp-test")
        );
        let all: Vec<&Metric> = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .collect();
        let metric = |name: &str| {
            *all.iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("metric {name} not exported; got {:?}", names(&all)))
        };

        let submitted = metric("lane.commands.submitted");
        assert!(matches!(&submitted.data, Some(Data::Sum(s)) if s.is_monotonic));
        assert_eq!(point(submitted, "query"), Some(20.0));
        assert_eq!(point(submitted, "prompt"), Some(5.0));
        assert_eq!(
            point(metric("lane.commands.completed"), "query"),
            Some(17.0)
        );
        assert_eq!(point(metric("lane.commands.failed"), "query"), Some(3.0));
        assert_eq!(
            point(metric("lane.commands.dead_lettered"), "query"),
            Some(3.0)
        );
        assert_eq!(
            point(metric("lane.commands.completed"), "prompt"),
            Some(5.0)
        );
        assert_eq!(point(metric("lane.commands.started"), "prompt"), Some(5.0));

        let depth = metric("lane.queue.depth");
        assert!(matches!(depth.data, Some(Data::Gauge(_))), "{depth:?}");
        assert_eq!(point(depth, "query"), Some(0.0));
        assert_eq!(point(metric("lane.commands.active"), "prompt"), Some(0.0));

        let latency = metric("lane.command.latency_ms");
        assert_eq!(latency.unit, "ms");
        let Some(Data::Histogram(histogram)) = &latency.data else {
            panic!("latency is not a histogram: {latency:?}");
        };
        let lane_point = |lane: &str| {
            histogram
                .data_points
                .iter()
                .find(|p| string_attr(&p.attributes, "lane") == Some(lane))
                .unwrap()
        };
        assert_eq!(lane_point("query").count, 20);
        assert_eq!(lane_point("prompt").count, 5);
        assert!(lane_point("prompt").sum.unwrap() >= 100.0);
        assert_eq!(lane_point("query").bucket_counts.iter().sum::<u64>(), 20);
        assert_eq!(lane_point("query").explicit_bounds.len(), 17);
        let wait = metric("lane.command.wait_ms");
        assert!(matches!(wait.data, Some(Data::Histogram(_))));
    }

    // Gauges are read from the queue when the exporter collects: a paused lane with
    // three waiting commands exports a depth of 3 without any command having finished.
    manager.pause_lane("prompt").unwrap();
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(
            manager
                .submit_fn("prompt", "generate", |_ctx| async { Ok(json!("text")) })
                .await
                .unwrap(),
        );
    }
    otel.flush().await.unwrap();
    {
        let received = received.lock().unwrap();
        let request = received.metrics.last().expect("a second export arrived");
        let depth = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == "lane.queue.depth")
            .expect("the depth gauge is exported");
        assert_eq!(point(depth, "prompt"), Some(3.0));
        assert_eq!(point(depth, "query"), Some(0.0));
    }
    manager.resume_lane("prompt").unwrap();
    for handle in waiting {
        handle.await.unwrap();
    }
    otel.shutdown().await.unwrap();
}

fn names(metrics: &[&Metric]) -> Vec<String> {
    metrics.iter().map(|m| m.name.clone()).collect()
}

#[test]
fn building_an_exporter_outside_a_runtime_says_what_to_do() {
    let err = OtelMetricsBackend::otlp(&OtlpConfig::new("http://127.0.0.1:4318")).unwrap_err();
    assert!(err.to_string().contains("needs a tokio runtime"), "{err}");
    assert!(OtlpTracing::new(&OtlpConfig::new("https://example:4318")).is_err());
}
