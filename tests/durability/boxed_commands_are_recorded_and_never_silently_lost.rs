//! The 0.3 storage promise in one process: with storage, a command submitted as a
//! `Box<dyn Command>` (or a closure) is recorded while it waits or runs and removed when
//! it ends; one that gives a `replay_payload` comes back after a restart like any
//! replayable command, and one that gives none becomes a dead letter saying it was not
//! replayable. (`tests/a_killed_process_leaves_a_record_of_every_0_3_command.rs` checks
//! the same across a SIGKILL.)

use a3s_lane::{
    Command, CommandContext, EventEmitter, LaneConfig, LaneError, MAX_PAYLOAD_DEPTH,
    QueueManagerBuilder, Result, handler_fn,
};
use async_trait::async_trait;
use serde_json::{Value, json};

use crate::support::{ValueLog, stop_and_drain, storage};

/// A 0.3 command without a replay payload.
struct Opaque;

#[async_trait]
impl Command for Opaque {
    async fn execute(&self) -> Result<Value> {
        Ok(json!("opaque ran"))
    }

    fn command_type(&self) -> &str {
        "opaque"
    }
}

/// A 0.3 command with a replay payload; `fail` makes it fail for good.
struct SendEmail {
    payload: Value,
    fail: bool,
}

impl SendEmail {
    fn to(to: &str) -> Box<Self> {
        Box::new(Self {
            payload: json!({ "to": to }),
            fail: false,
        })
    }
}

#[async_trait]
impl Command for SendEmail {
    async fn execute(&self) -> Result<Value> {
        if self.fail {
            return Err(LaneError::non_retryable("mail server said no"));
        }
        Ok(json!({ "sent": self.payload["to"] }))
    }

    fn command_type(&self) -> &str {
        "send_email"
    }

    fn replay_payload(&self) -> Option<Value> {
        Some(self.payload.clone())
    }
}

fn recording(log: &ValueLog) -> impl a3s_lane::Handler {
    let log = log.clone();
    handler_fn(move |payload: Value, _ctx: CommandContext| {
        log.push(payload.clone());
        async move { Ok(payload) }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boxed_command_is_listed_while_it_waits_and_runs_and_forgotten_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = storage(dir.path()).await;
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 1), 0)
        .with_storage(store.clone())
        .build()
        .await
        .unwrap();
    manager.pause_lane("work").unwrap();
    manager.start().await.unwrap();
    let opaque = manager.submit("work", Box::new(Opaque)).await.unwrap();
    let closure = manager
        .submit_fn("work", "closure", |_ctx| async { Ok(json!(1)) })
        .await
        .unwrap();
    let replayable = manager
        .submit("work", SendEmail::to("ada@example.com"))
        .await
        .unwrap();
    let listed: Vec<(String, String, bool, Value)> = store
        .load_commands()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.command_type, c.lane_id, c.replayable, c.payload))
        .collect();
    assert_eq!(
        listed,
        [
            ("opaque".into(), "work".into(), false, Value::Null),
            ("closure".into(), "work".into(), false, Value::Null),
            (
                "send_email".into(),
                "work".into(),
                true,
                json!({ "to": "ada@example.com" })
            ),
        ]
    );
    manager.resume_lane("work").unwrap();
    assert_eq!(opaque.await.unwrap().unwrap(), json!("opaque ran"));
    assert_eq!(closure.await.unwrap(), json!(1));
    assert_eq!(
        replayable.await.unwrap().unwrap(),
        json!({ "sent": "ada@example.com" })
    );
    stop_and_drain(&manager).await;
    assert!(store.load_commands().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_replayable_boxed_command_runs_and_the_others_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        // First life: the lane is paused; shutdown_now keeps what it interrupts.
        let store = storage(dir.path()).await;
        let manager = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("work", LaneConfig::new(1, 1), 0)
            .with_storage(store.clone())
            .build()
            .await
            .unwrap();
        manager.pause_lane("work").unwrap();
        manager.start().await.unwrap();
        let mut ids = Vec::new();
        for command in [
            Box::new(Opaque) as Box<dyn Command>,
            SendEmail::to("ada@example.com"),
        ] {
            ids.push(
                manager
                    .submit_with_handle("work", command)
                    .await
                    .unwrap()
                    .id(),
            );
        }
        manager.shutdown_now().await;
        manager
            .drain(std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(store.load_commands().await.unwrap().len(), 2);
        ids
    };
    let store = storage(dir.path()).await;
    let log = ValueLog::default();
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 1), 0)
        .with_storage(store.clone())
        .with_dlq(10)
        .with_handler("send_email", recording(&log))
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let letter = manager.dead_letters().unwrap().get(ids[0]).unwrap();
    assert!(
        letter
            .error
            .starts_with("not replayable: a Box<dyn Command> without a replay payload"),
        "{letter:?}"
    );
    assert_eq!(
        (
            letter.command_type.as_str(),
            letter.lane_id.as_str(),
            &letter.payload
        ),
        ("opaque", "work", &None)
    );
    let refused = manager.redrive(ids[0]).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("only replayable commands can be re-driven"),
        "{refused}"
    );
    stop_and_drain(&manager).await;
    assert_eq!(log.values(), [json!({ "to": "ada@example.com" })]);
    let stored: Vec<u64> = store
        .load_dead_letters()
        .await
        .unwrap()
        .iter()
        .map(|l| l.command_id)
        .collect();
    assert_eq!(stored, [ids[0]]);
    assert!(store.load_commands().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_payload_is_checked_at_submit_and_kept_by_its_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let store = storage(dir.path()).await;
    let log = ValueLog::default();
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 1), 0)
        .with_storage(store.clone())
        .with_dlq(10)
        .with_handler("send_email", recording(&log))
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();

    let mut deep = json!("leaf");
    for _ in 0..MAX_PAYLOAD_DEPTH {
        deep = Value::Array(vec![deep]);
    }
    let too_deep = Box::new(SendEmail {
        payload: json!({ "deep": deep }),
        fail: false,
    });
    let error = manager.submit("work", too_deep).await.unwrap_err();
    assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
    assert!(error.to_string().contains("MAX_PAYLOAD_DEPTH"), "{error}");

    let failing = Box::new(SendEmail {
        payload: json!({ "to": "bob@example.com" }),
        fail: true,
    });
    let handle = manager.submit_with_handle("work", failing).await.unwrap();
    let id = handle.id();
    assert!(handle.await.is_err());
    let letter = manager.dead_letters().unwrap().get(id).unwrap();
    assert_eq!(letter.payload, Some(json!({ "to": "bob@example.com" })));
    // Re-driven, it runs with the handler registered for its type.
    let again = manager.redrive(id).await.unwrap();
    assert_eq!(again.await.unwrap(), json!({ "to": "bob@example.com" }));
    assert_eq!(log.values(), [json!({ "to": "bob@example.com" })]);
    stop_and_drain(&manager).await;
    assert!(store.load_commands().await.unwrap().is_empty());
}

/// Records of commands that cannot be replayed never push redrivable dead letters out:
/// with a full list, an older record makes room, and with none the record is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_unreplayable_commands_never_push_out_letters_that_can_be_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let builder = |store| {
        QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("work", LaneConfig::new(1, 1), 0)
            .with_storage(store)
            .with_dlq(3)
    };
    let letters = {
        let store = storage(dir.path()).await;
        let manager = builder(store.clone()).build().await.unwrap();
        manager.start().await.unwrap();
        // Three redrivable dead letters fill the list...
        let mut letters = Vec::new();
        for to in ["a@x", "b@x", "c@x"] {
            let command = Box::new(SendEmail {
                payload: json!({ "to": to }),
                fail: true,
            });
            let handle = manager.submit_with_handle("work", command).await.unwrap();
            letters.push(handle.id());
            assert!(handle.await.is_err());
        }
        // ...then five 0.3 commands without a replay payload wait when the queue stops.
        manager.pause_lane("work").unwrap();
        for _ in 0..5 {
            let _waiting = manager
                .submit_with_handle("work", Box::new(Opaque))
                .await
                .unwrap();
        }
        manager.shutdown_now().await;
        manager
            .drain(std::time::Duration::from_secs(30))
            .await
            .unwrap();
        letters
    };
    let store = storage(dir.path()).await;
    let manager = builder(store.clone())
        .with_handler("send_email", recording(&ValueLog::default()))
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let kept: Vec<(u64, bool)> = manager
        .dead_letters()
        .unwrap()
        .list()
        .await
        .iter()
        .map(|l| (l.command_id, l.payload.is_some()))
        .collect();
    assert_eq!(
        kept,
        letters.iter().map(|id| (*id, true)).collect::<Vec<_>>(),
        "the redrivable letters stay, in memory..."
    );
    stop_and_drain(&manager).await;
    let stored: Vec<u64> = store
        .load_dead_letters()
        .await
        .unwrap()
        .iter()
        .map(|l| l.command_id)
        .collect();
    assert_eq!(stored, letters, "...and in storage");
    assert!(store.load_commands().await.unwrap().is_empty());
}
