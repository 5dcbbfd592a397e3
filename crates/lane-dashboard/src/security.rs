//! Tokens, the rights an action needs, cross-site refusal and the security headers.

use std::fmt::Write as _;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::config::DashboardConfig;
use crate::error::ApiError;

/// A fresh random token: 32 bytes from the operating system's generator, as 64 hex
/// digits.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS generator: fall back to the process's randomly keyed hasher and the clock
        // (still unguessable from outside, if weaker).
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            chunk.copy_from_slice(&hasher.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The bearer token of a request, if it carries one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Whether the request carries the configured token (compared in constant time).
fn has_token(headers: &HeaderMap, config: &DashboardConfig) -> bool {
    match (config.token(), bearer(headers)) {
        (Some(expected), Some(given)) => expected.as_bytes().ct_eq(given.as_bytes()).into(),
        _ => false,
    }
}

/// Whether the request may see payloads and results: always when no token is set,
/// otherwise only with it.
pub(crate) fn may_view_payloads(headers: &HeaderMap, config: &DashboardConfig) -> bool {
    config.token().is_none() || has_token(headers, config)
}

/// Why a request from a browser is cross-site, if it is: an `Origin` that is neither the
/// dashboard's own (its `Host`) nor an allowed one, or a `Sec-Fetch-Site` other than
/// `same-origin` / `none` without an allowed origin.
fn cross_site(headers: &HeaderMap, config: &DashboardConfig) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    let allowed = |origin: &str| {
        config
            .allowed_origins()
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    };
    if let Some(origin) = origin {
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(origin);
        let own = host.is_some_and(|host| authority.eq_ignore_ascii_case(host));
        if !own && !allowed(origin) {
            return Some(format!(
                "a request from origin {origin} is refused: actions are accepted from the \
                 dashboard's own pages only (see DashboardConfig::with_allowed_origin)"
            ));
        }
        if allowed(origin) {
            return None;
        }
    }
    match headers.get("sec-fetch-site").and_then(|h| h.to_str().ok()) {
        Some("cross-site") | Some("same-site") => Some(
            "a cross-site request is refused: actions are accepted from the dashboard's own \
             pages only"
                .to_owned(),
        ),
        _ => None,
    }
}

/// The gate of every action: not read-only, a token configured, not cross-site, and the
/// token carried.
pub(crate) async fn require_action_rights(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let config = &state.config;
    let headers = request.headers();
    if config.is_read_only() {
        return ApiError::forbidden("the dashboard is read-only: actions are turned off")
            .into_response();
    }
    if config.token().is_none() {
        return ApiError::forbidden(
            "no token is configured, so actions are turned off (DashboardConfig::with_token)",
        )
        .into_response();
    }
    if let Some(reason) = cross_site(headers, config) {
        return ApiError::forbidden(reason).into_response();
    }
    if bearer(headers).is_none() {
        return ApiError::unauthorized(
            "this action needs the header `Authorization: Bearer <token>`",
        )
        .into_response();
    }
    if !has_token(headers, config) {
        return ApiError::unauthorized("the bearer token is wrong").into_response();
    }
    next.run(request).await
}

/// Headers on every response: no sniffing, no framing, no referrer, scripts and styles
/// from the dashboard only, nothing cached.
pub(crate) async fn response_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let a = generate_token();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, generate_token());
    }

    #[test]
    fn origins() {
        let config = DashboardConfig::new().with_allowed_origin("https://ops.example.com/");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9090"));
        assert!(cross_site(&headers, &config).is_none());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9090"),
        );
        assert!(cross_site(&headers, &config).is_none());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&headers, &config).is_some());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ops.example.com"),
        );
        assert!(cross_site(&headers, &config).is_none());
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&headers, &config).is_some());
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(cross_site(&headers, &config).is_none());
    }
}
