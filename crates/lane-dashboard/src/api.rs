//! The JSON API behind the pages.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use lane_core::{
    CancelOutcome, CommandId, CommandState, CommandStatus, DeadLetter, LaneError, LaneStatus, Page,
};
use lane_metrics::{HistogramStats, LaneMetricsSnapshot, MetricsSnapshot, metric_names};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, redact};
use crate::security::may_view_payloads;

/// The most dead letters the dashboard reads to page through them or find one by id (the
/// client surface lists dead letters oldest first with a limit, without an offset).
pub(crate) const DEAD_LETTER_SCAN: usize = 10_000;
/// Lanes per page by default.
const DEFAULT_LANES_PAGE: usize = 50;
/// Commands, groups or dead letters per page by default.
const DEFAULT_PAGE: usize = 50;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `Query` whose refusal is a JSON [`ApiError`].
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
    }
}

/// `Path` whose refusal is a JSON [`ApiError`].
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
    }
}

fn parse_id(raw: &str) -> Result<CommandId, ApiError> {
    raw.trim().parse::<CommandId>().map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not a command id (a whole number)",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

/// The query of every list: paging, and the filters each list reads (a flattened struct
/// would not parse numbers from a query string).
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
    /// Lanes: only those whose id contains this.
    #[serde(default)]
    q: Option<String>,
    /// Lanes: `id` (default), `priority`, `pending`, `active`.
    #[serde(default)]
    sort: Option<String>,
    /// Commands: the state listed (`pending` by default).
    #[serde(default)]
    state: Option<String>,
    /// Dead letters: only this lane's.
    #[serde(default)]
    lane: Option<String>,
}

impl ListQuery {
    fn page(&self, default: usize) -> Result<Page, ApiError> {
        let page = Page::new(self.offset.unwrap_or(0), self.limit.unwrap_or(default));
        page.validate()?;
        Ok(page)
    }
}

// ---------------------------------------------------------------------------------------
// Overview and lanes
// ---------------------------------------------------------------------------------------

pub(crate) async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Value> {
    let stats = state.client.stats().await?;
    let config = &state.config;
    let paused = stats.lanes.values().filter(|l| l.paused).count();
    let letters = state.client.dead_letters(1001).await?.len();
    Ok(Json(json!({
        "title": config.title(),
        "read_only": config.is_read_only(),
        "token_required": config.token().is_some(),
        "actions_enabled": !config.is_read_only() && config.token().is_some(),
        "authorized": config.token().is_some()
            && may_view_payloads(&headers, config),
        "payloads_visible": may_view_payloads(&headers, config),
        "metrics": config.metrics().is_some(),
        "totals": {
            "pending": stats.total_pending,
            "active": stats.total_active,
            "delayed": stats.total_delayed,
        },
        "lanes": stats.lanes.len(),
        "paused_lanes": paused,
        "dead_letters": letters.min(1000),
        "dead_letters_more": letters > 1000,
    })))
}

/// A lane as the lanes page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct LaneView {
    #[serde(flatten)]
    status: LaneStatus,
    /// From the configured `QueueMetrics`, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<LaneMetricsView>,
}

#[derive(Debug, Serialize)]
struct LaneMetricsView {
    submitted: u64,
    started: u64,
    completed: u64,
    failed: u64,
    timed_out: u64,
    retried: u64,
    dead_lettered: u64,
    cancelled: u64,
    wait_ms: Option<HistogramStats>,
    run_ms: Option<HistogramStats>,
}

impl LaneMetricsView {
    fn of(lane: &LaneMetricsSnapshot) -> Self {
        Self {
            submitted: lane.counter(metric_names::COMMANDS_SUBMITTED),
            started: lane.counter(metric_names::COMMANDS_STARTED),
            completed: lane.counter(metric_names::COMMANDS_COMPLETED),
            failed: lane.counter(metric_names::COMMANDS_FAILED),
            timed_out: lane.counter(metric_names::COMMANDS_TIMED_OUT),
            retried: lane.counter(metric_names::COMMANDS_RETRIED),
            dead_lettered: lane.counter(metric_names::COMMANDS_DEAD_LETTERED),
            cancelled: lane.counter(metric_names::COMMANDS_CANCELLED),
            wait_ms: lane.histogram(metric_names::COMMAND_WAIT_MS).copied(),
            run_ms: lane.histogram(metric_names::COMMAND_LATENCY_MS).copied(),
        }
    }
}

pub(crate) async fn lanes(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Value> {
    let page = query.page(DEFAULT_LANES_PAGE)?;
    let stats = state.client.stats().await?;
    let mut lanes: Vec<LaneStatus> = stats
        .lanes
        .into_values()
        .filter(|lane| query.q.as_deref().is_none_or(|q| lane.id.contains(q)))
        .collect();
    match query.sort.as_deref().unwrap_or("id") {
        "id" => lanes.sort_by(|a, b| a.id.cmp(&b.id)),
        "priority" => {
            lanes.sort_by(|a, b| (a.effective_priority, &a.id).cmp(&(b.effective_priority, &b.id)))
        }
        "pending" => lanes.sort_by(|a, b| (b.pending, &a.id).cmp(&(a.pending, &b.id))),
        "active" => lanes.sort_by(|a, b| (b.active, &a.id).cmp(&(a.active, &b.id))),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown sort '{}'; one of: id, priority, pending, active",
                other.chars().take(40).collect::<String>()
            )));
        }
    }
    let total = lanes.len();
    let snapshot: Option<MetricsSnapshot> = match state.config.metrics() {
        Some(metrics) => Some(metrics.snapshot().await),
        None => None,
    };
    let page_lanes: Vec<LaneView> = lanes
        .into_iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|status| {
            let metrics = snapshot
                .as_ref()
                .map(|s| s.lane(&status.id).map(LaneMetricsView::of))
                .map(|m| m.unwrap_or_else(|| LaneMetricsView::of(&LaneMetricsSnapshot::default())));
            LaneView { status, metrics }
        })
        .collect();
    Ok(Json(json!({
        "total": total,
        "offset": page.offset,
        "limit": page.limit,
        "totals": {
            "pending": stats.total_pending,
            "active": stats.total_active,
            "delayed": stats.total_delayed,
        },
        "lanes": page_lanes,
    })))
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// A command's status, its result hidden from a viewer without the token.
fn command_view(mut status: CommandStatus, visible: bool) -> Value {
    let hidden = !visible && status.result.is_some();
    if hidden {
        status.result = None;
    }
    // Engine messages can carry connection URLs with credentials: never show them.
    if let Some(error) = status.error.as_mut() {
        error.message = redact(&error.message);
    }
    let mut value = serde_json::to_value(&status).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("result_hidden".into(), Value::Bool(hidden));
    }
    value
}

pub(crate) async fn lane_commands(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(lane): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Value> {
    let page = query.page(DEFAULT_PAGE)?;
    let command_state: CommandState = query.state.as_deref().unwrap_or("pending").parse()?;
    let visible = may_view_payloads(&headers, &state.config);
    let commands = state
        .client
        .list_commands(&lane, command_state, page)
        .await?;
    let has_more = commands.len() == page.limit;
    Ok(Json(json!({
        "lane": lane,
        "state": command_state,
        "offset": page.offset,
        "limit": page.limit,
        "has_more": has_more,
        "commands": commands
            .into_iter()
            .map(|c| command_view(c, visible))
            .collect::<Vec<_>>(),
    })))
}

pub(crate) async fn command(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Value> {
    let id = parse_id(&id)?;
    let visible = may_view_payloads(&headers, &state.config);
    let status = state
        .client
        .command(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no command with id {id}")))?;
    let mut view = command_view(status.clone(), visible);
    // The client surface keeps the payload of dead letters only.
    if status.state == CommandState::DeadLettered
        && let Some(letter) = find_dead_letter(&state, id).await?
        && let Some(object) = view.as_object_mut()
    {
        let (payload, hidden) = payload_view(letter.payload, visible);
        object.insert("payload".into(), payload);
        object.insert("payload_hidden".into(), Value::Bool(hidden));
    }
    Ok(Json(view))
}

pub(crate) async fn cancel_command(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Value> {
    let id = parse_id(&id)?;
    let outcome = state.client.cancel(id).await?;
    if outcome == CancelOutcome::Unknown {
        return Err(ApiError::not_found(format!("no command with id {id}")));
    }
    Ok(Json(
        json!({ "id": id, "outcome": outcome, "took_effect": outcome.took_effect() }),
    ))
}

// ---------------------------------------------------------------------------------------
// Lane and group actions
// ---------------------------------------------------------------------------------------

pub(crate) async fn pause_lane(
    State(state): State<AppState>,
    ApiPath(lane): ApiPath<String>,
) -> ApiResult<Value> {
    state.client.pause_lane(&lane).await?;
    Ok(Json(json!({ "lane": lane, "paused": true })))
}

pub(crate) async fn resume_lane(
    State(state): State<AppState>,
    ApiPath(lane): ApiPath<String>,
) -> ApiResult<Value> {
    state.client.resume_lane(&lane).await?;
    Ok(Json(json!({ "lane": lane, "paused": false })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseFor {
    seconds: f64,
}

pub(crate) async fn pause_lane_for(
    State(state): State<AppState>,
    ApiPath(lane): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Value> {
    let PauseFor { seconds } = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"seconds\": 30}}: {e}"
        ))
    })?;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 1.0e9 {
        return Err(ApiError::bad_request(format!(
            "seconds must be a positive number, got {seconds}"
        )));
    }
    let duration = Duration::from_secs_f64(seconds);
    state.client.pause_lane_for(&lane, duration).await?;
    Ok(Json(
        json!({ "lane": lane, "paused": true, "seconds": seconds }),
    ))
}

pub(crate) async fn lane_groups(
    State(state): State<AppState>,
    ApiPath(lane): ApiPath<String>,
    ApiQuery(paging): ApiQuery<ListQuery>,
) -> ApiResult<Value> {
    let page = paging.page(DEFAULT_PAGE)?;
    let groups = state.client.groups(&lane, page).await?;
    Ok(Json(json!({
        "lane": lane,
        "offset": page.offset,
        "limit": page.limit,
        "has_more": groups.len() == page.limit,
        "groups": groups,
    })))
}

pub(crate) async fn pause_group(
    State(state): State<AppState>,
    ApiPath((lane, group)): ApiPath<(String, String)>,
) -> ApiResult<Value> {
    state.client.pause_group(&lane, &group).await?;
    Ok(Json(
        json!({ "lane": lane, "group": group, "paused": true }),
    ))
}

pub(crate) async fn resume_group(
    State(state): State<AppState>,
    ApiPath((lane, group)): ApiPath<(String, String)>,
) -> ApiResult<Value> {
    state.client.resume_group(&lane, &group).await?;
    Ok(Json(
        json!({ "lane": lane, "group": group, "paused": false }),
    ))
}

// ---------------------------------------------------------------------------------------
// Dead letters
// ---------------------------------------------------------------------------------------

fn payload_view(payload: Option<Value>, visible: bool) -> (Value, bool) {
    match payload {
        Some(_) if !visible => (Value::Null, true),
        Some(payload) => (payload, false),
        None => (Value::Null, false),
    }
}

fn letter_view(letter: DeadLetter, visible: bool) -> Value {
    let replayable = letter.payload.is_some();
    let (payload, hidden) = payload_view(letter.payload, visible);
    json!({
        "command_id": letter.command_id,
        "command_type": letter.command_type,
        "lane_id": letter.lane_id,
        "error": redact(&letter.error),
        "attempts": letter.attempts,
        "failed_at": letter.failed_at,
        "replayable": replayable,
        "payload": payload,
        "payload_hidden": hidden,
    })
}

async fn find_dead_letter(state: &AppState, id: CommandId) -> Result<Option<DeadLetter>, ApiError> {
    Ok(state
        .client
        .dead_letters(DEAD_LETTER_SCAN)
        .await?
        .into_iter()
        .find(|letter| letter.command_id == id))
}

pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Value> {
    let page = query.page(DEFAULT_PAGE)?;
    let visible = may_view_payloads(&headers, &state.config);
    let wanted = page.offset.saturating_add(page.limit);
    let lane = query.lane.filter(|lane| !lane.is_empty());
    if wanted > DEAD_LETTER_SCAN {
        return Err(ApiError::bad_request(format!(
            "the dashboard pages through the first {DEAD_LETTER_SCAN} dead letters only; \
             redrive or purge some to see the rest"
        )));
    }
    // Without a lane only `offset + limit + 1` letters are read; with one, the first
    // DEAD_LETTER_SCAN are filtered.
    let read = if lane.is_some() {
        DEAD_LETTER_SCAN
    } else {
        wanted + 1
    };
    let letters: Vec<DeadLetter> = state
        .client
        .dead_letters(read)
        .await?
        .into_iter()
        .filter(|letter| lane.as_deref().is_none_or(|lane| letter.lane_id == lane))
        .skip(page.offset)
        .take(page.limit + 1)
        .collect();
    let has_more = letters.len() > page.limit;
    Ok(Json(json!({
        "offset": page.offset,
        "limit": page.limit,
        "has_more": has_more,
        "dead_letters": letters
            .into_iter()
            .take(page.limit)
            .map(|l| letter_view(l, visible))
            .collect::<Vec<_>>(),
    })))
}

pub(crate) async fn dead_letter(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Value> {
    let id = parse_id(&id)?;
    let visible = may_view_payloads(&headers, &state.config);
    let letter = find_dead_letter(&state, id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no dead letter with command id {id} among the oldest {DEAD_LETTER_SCAN} \
                 (only those are searched)"
        ))
    })?;
    Ok(Json(letter_view(letter, visible)))
}

pub(crate) async fn redrive(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Value> {
    let id = parse_id(&id)?;
    // Straight to the client (no scan of the list, which would miss letters past its
    // bound): its "no dead letter" answer becomes a 404.
    let submitted = state
        .client
        .redrive(id)
        .await
        .map_err(|error| match &error {
            LaneError::QueueError(message) if message.starts_with("no dead letter") => {
                ApiError::not_found(format!("no dead letter with command id {id}"))
            }
            _ => ApiError::from(error),
        })?;
    Ok(Json(json!({ "redriven": id, "new_id": submitted.id() })))
}

pub(crate) async fn delete_dead_letter(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Value> {
    let id = parse_id(&id)?;
    if !state.client.delete_dead_letter(id).await? {
        return Err(ApiError::not_found(format!(
            "no dead letter with command id {id}"
        )));
    }
    Ok(Json(json!({ "deleted": id })))
}

pub(crate) async fn redrive_all(State(state): State<AppState>) -> ApiResult<Value> {
    let mut redriven = 0usize;
    let mut failed: BTreeMap<CommandId, String> = BTreeMap::new();
    // The letters are read once: each is redriven exactly once, and a redriven command
    // that fails again (a new letter, under a new id) waits for the next redrive-all.
    let letters = state.client.dead_letters(DEAD_LETTER_SCAN).await?;
    for letter in letters {
        match state.client.redrive(letter.command_id).await {
            Ok(_) => redriven += 1,
            Err(error) => {
                failed.insert(letter.command_id, redact(&error.to_string()));
            }
        }
    }
    Ok(Json(json!({ "redriven": redriven, "failed": failed })))
}

pub(crate) async fn purge(State(state): State<AppState>) -> ApiResult<Value> {
    let purged = state.client.purge_dead_letters().await?;
    Ok(Json(json!({ "purged": purged })))
}

// ---------------------------------------------------------------------------------------
// Recurring schedules
// ---------------------------------------------------------------------------------------

pub(crate) async fn schedules(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Value> {
    let page = query.page(DEFAULT_PAGE)?;
    let visible = may_view_payloads(&headers, &state.config);
    // The client lists every schedule (they are few); the page is cut here.
    let all = state.client.schedules().await?;
    let total = all.len();
    let schedules: Vec<Value> = all
        .into_iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|info| {
            let mut value = serde_json::to_value(&info).unwrap_or(Value::Null);
            if !visible && let Some(schedule) = value.get_mut("schedule") {
                schedule["payload"] = Value::Null;
                schedule["payload_hidden"] = Value::Bool(true);
            }
            value
        })
        .collect();
    Ok(Json(json!({
        "total": total,
        "offset": page.offset,
        "limit": page.limit,
        "schedules": schedules,
    })))
}

pub(crate) async fn pause_schedule(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Value> {
    state.client.pause_schedule(&name).await?;
    Ok(Json(json!({ "schedule": name, "paused": true })))
}

pub(crate) async fn resume_schedule(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Value> {
    state.client.resume_schedule(&name).await?;
    Ok(Json(json!({ "schedule": name, "paused": false })))
}
