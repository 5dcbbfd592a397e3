//! The embedded page, script and style sheet.

use axum::extract::{OriginalUri, State};
use axum::http::{Uri, header};
use axum::response::{Html, IntoResponse, Response};

use crate::AppState;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The base path the router is mounted at (`/` or `/dashboard/`), from the full request
/// path and the path the router saw.
fn base_path(original: &Uri, local: &Uri) -> String {
    let full = original.path().trim_end_matches('/');
    let local = local.path().trim_end_matches('/');
    let prefix = full.strip_suffix(local).unwrap_or("");
    format!("{}/", prefix.trim_end_matches('/'))
}

pub(crate) async fn page(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Html<String> {
    let base = escape_html(&base_path(&original, &uri));
    Html(
        INDEX
            .replace("{{TITLE}}", &escape_html(state.config.title()))
            .replace("{{BASE}}", &base),
    )
}

pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub(crate) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(base_path(&uri("/"), &uri("/")), "/");
        assert_eq!(base_path(&uri("/lanes"), &uri("/lanes")), "/");
        assert_eq!(base_path(&uri("/dash/lanes"), &uri("/lanes")), "/dash/");
        assert_eq!(base_path(&uri("/dash/"), &uri("/")), "/dash/");
        assert_eq!(base_path(&uri("/dash"), &uri("/")), "/dash/");
        assert_eq!(escape_html("<a&'\">"), "&lt;a&amp;&#39;&quot;&gt;");
    }
}
