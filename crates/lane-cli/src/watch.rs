//! `watch`: the lanes and the latest events, redrawn in place (ANSI escapes) or printed
//! as one JSON object per line (`--json`).
//!
//! On a Redis queue with its event stream on (the default), the view is redrawn when
//! events arrive ([`QueueClient::subscribe`]), at most ten times a second; pausing and
//! resuming a lane emit no event, so the view is also redrawn every `--interval` to
//! show those. A Redis queue with its event stream off, and a LocalStorage directory
//! (whose owner's events stay in its process), have no events: the view is redrawn
//! every `--interval`.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use lane_core::{EventStream, LaneEvent, QueueClient};
use serde::Serialize;

use crate::output::{StatsView, lanes_table, time};
use crate::{CliResult, Target};

/// Events kept for the view.
const RECENT_EVENTS: usize = 10;
/// How long a burst of events is gathered before one redraw.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// One `--json` line.
#[derive(Debug, Serialize)]
struct Frame<'a> {
    frame: u64,
    /// `"events"` (redrawn as they arrive) or `"interval"`.
    driven_by: &'static str,
    stats: &'a StatsView,
    /// The latest events, oldest first.
    events: &'a VecDeque<LaneEvent>,
}

async fn stats(target: &Target) -> CliResult<StatsView> {
    match target {
        Target::Redis(t) => t.stats().await,
        Target::Storage(t) => t.stats().await,
    }
}

fn event_line(event: &LaneEvent) -> String {
    let mut line = format!(
        "{}  {}",
        &time(event.timestamp)[11..],
        event.key.trim_start_matches("queue.")
    );
    if let Some(lane) = event.lane_id() {
        line.push_str(&format!("  lane={lane}"));
    }
    if let Some(id) = event.command_id() {
        line.push_str(&format!("  id={id}"));
    }
    line
}

fn keep(recent: &mut VecDeque<LaneEvent>, event: LaneEvent) {
    if recent.len() == RECENT_EVENTS {
        recent.pop_front();
    }
    recent.push_back(event);
}

/// Runs the view until `frames` redraws (forever without).
pub(crate) async fn run(
    target: &Target,
    interval: Duration,
    frames: Option<u64>,
    json: bool,
) -> CliResult<()> {
    let mut events: Option<EventStream> = match target {
        Target::Redis(t) if t.queue.events_enabled().await? => {
            Some(QueueClient::subscribe(&t.queue))
        }
        _ => None,
    };
    let mut recent: VecDeque<LaneEvent> = VecDeque::new();
    let mut stdout = std::io::stdout();
    let mut frame = 0u64;
    loop {
        let view = stats(target).await?;
        frame += 1;
        let driven_by = if events.is_some() {
            "events"
        } else {
            "interval"
        };
        if json {
            let line = serde_json::to_string(&Frame {
                frame,
                driven_by,
                stats: &view,
                events: &recent,
            })?;
            writeln!(stdout, "{line}")?;
        } else {
            let mut text = format!(
                "a3s-lane watch  {}  {}  {}\n\n",
                view.target,
                time(now_ms()),
                if events.is_some() {
                    format!("live: redrawn on events, and every {interval:?} for pauses")
                } else {
                    format!("redrawn every {interval:?} (no event stream)")
                }
            );
            text.push_str(&format!(
                "pending {}  delayed {}  running {}  dead {}\n\n",
                view.total_pending,
                view.total_delayed,
                view.total_running.map_or("-".into(), |n| n.to_string()),
                view.dead_letters.map_or("-".into(), |n| n.to_string()),
            ));
            text.push_str(&lanes_table(&view.lanes));
            if events.is_some() {
                text.push_str("\nlatest events\n");
                for event in &recent {
                    text.push_str(&event_line(event));
                    text.push('\n');
                }
            }
            // Home, each line then clear to its end, then clear below: redrawn in place.
            let mut screen = String::from(if frame == 1 {
                "\x1b[2J\x1b[H"
            } else {
                "\x1b[H"
            });
            for line in text.lines() {
                screen.push_str(line);
                screen.push_str("\x1b[K\n");
            }
            screen.push_str("\x1b[J");
            write!(stdout, "{screen}")?;
        }
        stdout.flush()?;
        if frames.is_some_and(|limit| frame >= limit) {
            return Ok(());
        }
        match events.as_mut() {
            None => tokio::time::sleep(interval).await,
            Some(stream) => {
                let first = tokio::time::timeout(interval, stream.recv()).await;
                match first {
                    Err(_elapsed) => {}
                    Ok(Err(_closed)) => events = None,
                    Ok(Ok(event)) => {
                        keep(&mut recent, event);
                        let until = tokio::time::Instant::now() + DEBOUNCE;
                        while let Ok(Ok(event)) =
                            tokio::time::timeout_at(until, stream.recv()).await
                        {
                            keep(&mut recent, event);
                        }
                    }
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
