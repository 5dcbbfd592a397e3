//! The `lane.command` span of each run arrives at a loopback OTLP collector as the child
//! of the span that submitted the command: one trace crosses the queue. In its own test
//! binary, so that no other test touches the global callsite cache of `tracing`.

mod support;

use std::time::Duration;

use a3s_lane::{LaneError, OtlpTracing, QueueMetrics};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use serde_json::json;
use support::{collector, config, int_attr, manager, string_attr};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "current_thread")]
async fn a_command_span_is_the_child_of_the_submitters_span() {
    let (addr, received) = collector().await;
    let tracing_export = OtlpTracing::new(&config(addr)).unwrap();
    let subscriber = tracing_subscriber::registry().with(tracing_export.layer());
    let _default = tracing::subscriber::set_default(subscriber);
    let manager = manager(QueueMetrics::local()).await;

    let submitter = tracing::info_span!("handle_request");
    async {
        let ok = manager
            .submit_fn("query", "traced", |_ctx| async {
                tracing::info_span!("inside_command").in_scope(|| {});
                Ok(json!(1))
            })
            .await
            .unwrap();
        let failing = manager
            .submit_fn("query", "broken", |_ctx| async {
                Err(LaneError::CommandError("boom".into()))
            })
            .await
            .unwrap();
        ok.await.unwrap();
        failing.await.unwrap_err();
    }
    .instrument(submitter)
    .await;
    manager.drain(Duration::from_secs(5)).await.unwrap();
    tracing_export.flush().await.unwrap();

    {
        let received = received.lock().unwrap();
        let spans: Vec<&Span> = received
            .traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        let named = |name: &str| -> Vec<&Span> {
            spans.iter().copied().filter(|s| s.name == name).collect()
        };
        let request = named("handle_request");
        assert_eq!(
            request.len(),
            1,
            "spans: {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        let request = request[0];
        let runs = named("lane.command");
        assert_eq!(runs.len(), 2);
        for run in &runs {
            assert_eq!(
                run.trace_id, request.trace_id,
                "the trace crosses the queue"
            );
            assert_eq!(run.parent_span_id, request.span_id);
            assert_eq!(run.kind, SpanKind::Consumer as i32);
            assert_eq!(string_attr(&run.attributes, "lane"), Some("query"));
            assert_eq!(
                int_attr(&run.attributes, "attempt"),
                Some(1),
                "{:?}",
                run.attributes
            );
        }
        let traced = runs
            .iter()
            .find(|s| string_attr(&s.attributes, "command_type") == Some("traced"))
            .unwrap();
        assert_eq!(
            string_attr(&traced.attributes, "outcome"),
            Some("completed")
        );
        let broken = runs
            .iter()
            .find(|s| string_attr(&s.attributes, "command_type") == Some("broken"))
            .unwrap();
        assert_eq!(string_attr(&broken.attributes, "outcome"), Some("failed"));
        assert_eq!(
            broken.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
        // The command's own spans nest under its run.
        let inside = named("inside_command");
        assert_eq!(inside.len(), 1);
        assert_eq!(inside[0].parent_span_id, traced.span_id);
        assert_eq!(inside[0].trace_id, request.trace_id);
    }
    tracing_export.shutdown().await.unwrap();
}
