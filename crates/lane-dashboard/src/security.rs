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

/// Splits an authority (`host`, `host:port`, `[v6]:port`) into its lowercased host
/// (IPv6 in brackets) and its port, if any.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim();
    if authority.is_empty() || authority.contains(['/', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?.parse().ok()?),
        };
        (format!("[{}]", inner.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port.parse().ok()?)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

/// Whether `host` (lowercased, IPv6 in brackets) is an IP address literal.
fn is_ip_literal(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<std::net::IpAddr>().is_ok()
}

/// Whether the dashboard answers to `authority` (a `Host` header, or an origin's
/// authority with `default_port` when it names none): the listening address, the loopback
/// names (with the listening port when it is known, any port otherwise) and the hosts of
/// [`DashboardConfig::with_allowed_host`].
fn host_allowed(authority: &str, default_port: u16, config: &DashboardConfig) -> bool {
    let Some((host, port)) = split_authority(authority) else {
        return false;
    };
    let port = port.unwrap_or(default_port);
    let listening = config.listening_addr();
    let port_ok = listening.is_none_or(|addr| addr.port() == port);
    if matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]") && port_ok {
        return true;
    }
    if let Some(addr) = listening
        && port_ok
    {
        let ip = addr.ip();
        if ip.is_unspecified() {
            // Listening on every interface: any address of this machine, by number (a
            // rebinding page reaches it by name only).
            if is_ip_literal(&host) {
                return true;
            }
        } else {
            let own = match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            };
            if host == own {
                return true;
            }
        }
    }
    config
        .allowed_hosts()
        .iter()
        .any(|allowed| match split_authority(allowed) {
            Some((allowed_host, Some(allowed_port))) => {
                allowed_host == host && allowed_port == port
            }
            Some((allowed_host, None)) => allowed_host == host,
            None => false,
        })
}

/// The gate of every route: the request's `Host` must be one the dashboard answers to
/// (see [`DashboardConfig::with_allowed_host`]); others are refused with 421, against
/// DNS rebinding.
pub(crate) async fn require_known_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    let allowed = host
        .as_deref()
        .is_some_and(|host| host_allowed(host, 80, &state.config));
    if !allowed {
        let shown = host.as_deref().unwrap_or("(none)");
        return ApiError::new(
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            format!(
                "the host {shown:?} is not one this dashboard answers to: use its address, \
                 localhost, or a host allowed with DashboardConfig::with_allowed_host"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Why a request from a browser is cross-site, if it is: an `Origin` that is neither one
/// of the hosts the dashboard answers to nor an allowed origin, or a `Sec-Fetch-Site`
/// other than `same-origin` / `none` without an allowed origin.
fn cross_site(headers: &HeaderMap, config: &DashboardConfig) -> Option<String> {
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    let allowed = |origin: &str| {
        config
            .allowed_origins()
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    };
    if let Some(origin) = origin {
        if allowed(origin) {
            return None;
        }
        let own = origin.split_once("://").is_some_and(|(scheme, authority)| {
            let default_port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
                && host_allowed(authority, default_port, config)
        });
        if !own {
            return Some(format!(
                "a request from origin {origin} is refused: actions are accepted from the \
                 dashboard's own pages only (see DashboardConfig::with_allowed_origin)"
            ));
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
        // An origin naming the claimed Host is not enough: it must be an allowed host.
        headers.remove("sec-fetch-site");
        headers.insert(header::HOST, HeaderValue::from_static("evil.example:9090"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example:9090"),
        );
        assert!(cross_site(&headers, &config).is_some());
    }

    #[test]
    fn hosts() {
        let mounted = DashboardConfig::new().with_allowed_host("Dash.Example.com");
        assert!(host_allowed("127.0.0.1:1234", 80, &mounted));
        assert!(host_allowed("localhost", 80, &mounted));
        assert!(host_allowed("[::1]:9", 80, &mounted));
        assert!(host_allowed("dash.example.com:8443", 80, &mounted));
        assert!(!host_allowed("evil.example:9090", 80, &mounted));
        assert!(!host_allowed("10.0.0.1:9090", 80, &mounted));
        let served = DashboardConfig::new()
            .with_listening_addr("10.0.0.5:9090".parse().unwrap())
            .with_allowed_host("dash.example.com:443");
        assert!(host_allowed("10.0.0.5:9090", 80, &served));
        assert!(host_allowed("localhost:9090", 80, &served));
        assert!(!host_allowed("localhost:9091", 80, &served));
        assert!(!host_allowed("10.0.0.6:9090", 80, &served));
        assert!(host_allowed("dash.example.com:443", 80, &served));
        assert!(!host_allowed("dash.example.com:80", 80, &served));
        let any = DashboardConfig::new().with_listening_addr("0.0.0.0:9090".parse().unwrap());
        assert!(host_allowed("192.168.1.7:9090", 80, &any));
        assert!(!host_allowed("rebind.example:9090", 80, &any));
    }
}
