//! What the subcommands print: one view type each, shown as an aligned table or as JSON
//! (`--json`; the field names below are stable).

use lane_core::{CancelOutcome, CommandStatus, DeadLetter};
use serde::Serialize;
use serde_json::Value;

use crate::CliResult;

/// A subcommand's result, printable both ways.
pub(crate) trait Render {
    /// The text for a person.
    fn table(&self) -> String;
    /// The JSON for a script.
    fn json(&self) -> serde_json::Result<Value>;
}

/// Prints `out` to stdout.
pub(crate) fn print(out: &dyn Render, json: bool) -> CliResult<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&out.json()?)?);
    } else {
        print!("{}", out.table());
    }
    Ok(())
}

macro_rules! json_render {
    ($type:ty) => {
        impl Render for $type {
            fn table(&self) -> String {
                self.text()
            }
            fn json(&self) -> serde_json::Result<Value> {
                serde_json::to_value(self)
            }
        }
    };
}

/// One lane's counts. Fields an engine does not know are `null` (a LocalStorage
/// directory keeps no lane settings and no running state).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LaneView {
    pub(crate) id: String,
    pub(crate) priority: Option<u8>,
    pub(crate) effective_priority: Option<u8>,
    pub(crate) pending: usize,
    pub(crate) delayed: usize,
    pub(crate) running: Option<usize>,
    pub(crate) max_concurrency: Option<usize>,
    pub(crate) max_waiting: Option<usize>,
    pub(crate) paused: Option<bool>,
    pub(crate) throttled: Option<bool>,
    pub(crate) dead_letters: Option<usize>,
}

/// `stats`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatsView {
    /// `"redis"` or `"storage"`.
    pub(crate) engine: &'static str,
    /// The queue, as it may be shown (no password).
    pub(crate) target: String,
    pub(crate) total_pending: usize,
    pub(crate) total_delayed: usize,
    pub(crate) total_running: Option<usize>,
    pub(crate) dead_letters: Option<usize>,
    pub(crate) workers: Option<usize>,
    pub(crate) idle_workers: Option<usize>,
    pub(crate) lanes: Vec<LaneView>,
}

impl StatsView {
    /// The `lanes` subcommand's view of the same counts.
    pub(crate) fn lanes_view(self) -> LanesView {
        LanesView { lanes: self.lanes }
    }

    fn text(&self) -> String {
        let mut out = format!("queue    {} ({})\n", self.target, self.engine);
        let mut line = |name: &str, value: Option<usize>| {
            if let Some(value) = value {
                out.push_str(&format!("{name:<8} {value}\n"));
            }
        };
        line("pending", Some(self.total_pending));
        line("delayed", Some(self.total_delayed));
        line("running", self.total_running);
        line("dead", self.dead_letters);
        line("workers", self.workers);
        line("idle", self.idle_workers);
        out.push('\n');
        out.push_str(&lanes_table(&self.lanes));
        out
    }
}
json_render!(StatsView);

/// `lanes`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LanesView {
    pub(crate) lanes: Vec<LaneView>,
}

impl LanesView {
    fn text(&self) -> String {
        lanes_table(&self.lanes)
    }
}
json_render!(LanesView);

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub(crate) fn lanes_table(lanes: &[LaneView]) -> String {
    if lanes.is_empty() {
        return "(no lanes)\n".into();
    }
    let rows = lanes
        .iter()
        .map(|l| {
            let mut state = Vec::new();
            if l.paused == Some(true) {
                state.push("paused");
            }
            if l.throttled == Some(true) {
                state.push("throttled");
            }
            vec![
                l.id.clone(),
                match (l.priority, l.effective_priority) {
                    (Some(p), Some(e)) if p != e => format!("{p}->{e}"),
                    (p, _) => opt(p),
                },
                l.pending.to_string(),
                l.delayed.to_string(),
                opt(l.running),
                opt(l.max_concurrency),
                opt(l.max_waiting),
                opt(l.dead_letters),
                if state.is_empty() {
                    "-".into()
                } else {
                    state.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "LANE", "PRIORITY", "PENDING", "DELAYED", "RUNNING", "MAX", "MAX_WAIT", "DEAD", "STATE",
        ],
        rows,
    )
}

/// `commands`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CommandsView {
    pub(crate) state: &'static str,
    pub(crate) commands: Vec<CommandStatus>,
    /// Give it to `--after` for the next page; `null` after the last.
    pub(crate) next_cursor: Option<String>,
}

impl CommandsView {
    fn text(&self) -> String {
        let mut out = if self.commands.is_empty() {
            format!("(no {} commands)\n", self.state)
        } else {
            commands_table(&self.commands)
        };
        if let Some(cursor) = &self.next_cursor {
            out.push_str(&format!("next page: --after {cursor}\n"));
        }
        out
    }
}
json_render!(CommandsView);

fn commands_table(commands: &[CommandStatus]) -> String {
    let rows = commands
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.lane_id.clone(),
                c.command_type.clone(),
                c.state.as_str().to_owned(),
                c.attempts.to_string(),
                opt(c.submitted_at_ms.map(time)),
                opt(c.finished_at_ms.map(time)),
                c.error
                    .as_ref()
                    .map_or_else(|| "-".into(), |e| shorten(&e.message, 60)),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "LANE",
            "TYPE",
            "STATE",
            "ATTEMPTS",
            "SUBMITTED",
            "FINISHED",
            "ERROR",
        ],
        rows,
    )
}

/// `show`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ShowView {
    #[serde(flatten)]
    pub(crate) status: CommandStatus,
    /// Its payload, where the engine keeps it.
    pub(crate) payload: Option<Value>,
}

impl ShowView {
    fn text(&self) -> String {
        let s = &self.status;
        let mut rows = vec![
            ("id", s.id.to_string()),
            ("lane", s.lane_id.clone()),
            ("type", s.command_type.clone()),
            ("state", s.state.as_str().to_owned()),
            ("attempts", s.attempts.to_string()),
            ("submitted", opt(s.submitted_at_ms.map(time))),
            ("started", opt(s.started_at_ms.map(time))),
            ("finished", opt(s.finished_at_ms.map(time))),
        ];
        if let Some(result) = &s.result {
            rows.push(("result", result.to_string()));
        }
        if let Some(error) = &s.error {
            rows.push(("error", format!("{}: {}", error.kind, error.message)));
        }
        if let Some(payload) = &self.payload {
            rows.push(("payload", payload.to_string()));
        }
        rows.iter()
            .map(|(name, value)| format!("{name:<10} {value}\n"))
            .collect()
    }
}
json_render!(ShowView);

/// `dead-letters list`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeadLettersView {
    pub(crate) dead_letters: Vec<DeadLetter>,
}

impl DeadLettersView {
    fn text(&self) -> String {
        if self.dead_letters.is_empty() {
            return "(no dead letters)\n".into();
        }
        let rows = self
            .dead_letters
            .iter()
            .map(|d| {
                vec![
                    d.command_id.to_string(),
                    d.lane_id.clone(),
                    d.command_type.clone(),
                    d.attempts.to_string(),
                    time(d.failed_at),
                    shorten(&d.error, 60),
                ]
            })
            .collect();
        table(&["ID", "LANE", "TYPE", "ATTEMPTS", "FAILED", "ERROR"], rows)
    }
}
json_render!(DeadLettersView);

/// `dead-letters redrive`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RedriveView {
    /// The ids sent back to their lanes (a command keeps its id).
    pub(crate) redriven: Vec<u64>,
}

impl RedriveView {
    fn text(&self) -> String {
        match self.redriven.as_slice() {
            [] => "no dead letters to redrive\n".into(),
            [id] => format!("redrove dead letter {id}\n"),
            ids => format!("redrove {} dead letters\n", ids.len()),
        }
    }
}
json_render!(RedriveView);

/// `dead-letters purge`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PurgeView {
    /// How many dead letters were deleted.
    pub(crate) purged: usize,
}

impl PurgeView {
    fn text(&self) -> String {
        format!("deleted {} dead letter(s)\n", self.purged)
    }
}
json_render!(PurgeView);

/// `cancel`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CancelView {
    pub(crate) id: u64,
    /// `cancelled`, `signalled` (running: told to stop) or `already_finished`.
    pub(crate) outcome: CancelOutcome,
}

impl CancelView {
    fn text(&self) -> String {
        match self.outcome {
            CancelOutcome::Cancelled => format!("command {} cancelled\n", self.id),
            CancelOutcome::Signalled => format!(
                "command {} is running: told to stop, it ends as cancelled once it does\n",
                self.id
            ),
            CancelOutcome::AlreadyFinished => {
                format!("command {} had already finished\n", self.id)
            }
            CancelOutcome::Unknown => format!("no command {}\n", self.id),
        }
    }
}
json_render!(CancelView);

/// `pause` and `resume`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PauseView {
    pub(crate) lane: String,
    pub(crate) paused: bool,
    /// A timed pause's length in milliseconds.
    pub(crate) for_ms: Option<u64>,
}

impl PauseView {
    fn text(&self) -> String {
        match (self.paused, self.for_ms) {
            (true, Some(ms)) => format!("lane {} paused for {ms} ms\n", self.lane),
            (true, None) => format!("lane {} paused until resumed\n", self.lane),
            (false, _) => format!("lane {} resumed\n", self.lane),
        }
    }
}
json_render!(PauseView);

/// An aligned table: columns as wide as their widest cell, numbers right-aligned.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..headers.len())
        .map(|i| {
            let cell = |row: &Vec<String>| row.get(i).cloned().unwrap_or_default();
            rows.iter().any(|row| cell(row).parse::<f64>().is_ok())
                && rows.iter().all(|row| {
                    let c = cell(row);
                    c == "-" || c.parse::<f64>().is_ok()
                })
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut text = cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if numeric[i] {
                    format!("{}{cell}", " ".repeat(pad))
                } else {
                    format!("{cell}{}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// At most `max` characters of `text` on one line.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut short: String = one_line.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// Milliseconds since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn tables_align_and_right_align_numbers() {
        let text = table(
            &["LANE", "PENDING"],
            vec![
                vec!["a".into(), "5".into()],
                vec!["longer".into(), "120".into()],
            ],
        );
        assert_eq!(text, "LANE    PENDING\na             5\nlonger      120\n");
    }

    #[test]
    fn long_errors_are_shortened_to_one_line() {
        assert_eq!(shorten("a\nb", 10), "a b");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
