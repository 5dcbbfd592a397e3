//! [`ApiError`]: every refusal as JSON `{"error": {"code", "message"}}` with its status.

use axum::Json;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use lane_core::LaneError;
use serde_json::json;

/// An error answered by the dashboard's API: an HTTP status, a short machine-readable
/// code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short code (`"not_found"`, `"unauthorized"`, `"invalid_input"`, …).
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_input`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl From<LaneError> for ApiError {
    fn from(error: LaneError) -> Self {
        let message = redact(&error.to_string());
        match error {
            LaneError::LaneNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "lane_not_found", message)
            }
            LaneError::InvalidInput(_) | LaneError::ConfigError(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
            }
            LaneError::HandlerNotFound { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "handler_not_found", message)
            }
            LaneError::LaneFull { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "lane_full", message)
            }
            LaneError::ShutdownInProgress => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            LaneError::QueueError(_) => Self::new(StatusCode::CONFLICT, "queue_error", message),
            LaneError::Storage(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_error", message)
            }
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "queue_error", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Removes credentials from URLs in an engine's message (`redis://user:secret@host` →
/// `redis://***@host`), so that no password reaches a page.
pub(crate) fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(scheme) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("nothing at {}", uri.path()))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed here: pages and lists are GET, actions are POST",
    )
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact("cannot reach redis://user:s3cret@db:6379/0 (refused)"),
            "cannot reach redis://***@db:6379/0 (refused)"
        );
        assert_eq!(redact("redis://db:6379"), "redis://db:6379");
        assert_eq!(redact("no url"), "no url");
    }
}
