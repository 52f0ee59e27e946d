//! Logging in with a token (a session cookie follows) and out.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::{esc, url};
use super::{Ui, base_of};
use crate::server::query::value_in;
use crate::server::read_limited;
use crate::server::session::{clear_cookie, cookie, set_cookie};

/// The largest login form read.
const MAX_FORM: usize = 16 * 1024;

/// The value of `key` in an `application/x-www-form-urlencoded` body or query.
fn form_value(form: &str, key: &str) -> Option<String> {
    value_in(form, key).and_then(Result::ok)
}

/// Where to go after logging in: a path under the UI only (never another site).
fn safe_next(base: &str, next: Option<String>) -> String {
    let home = format!("{base}/ui/");
    match next {
        Some(n) if n.starts_with(&format!("{base}/ui/")) && !n.starts_with("//") => n,
        _ => home,
    }
}

fn login_page(base: &str, next: &str, message: Option<&str>) -> String {
    let error = message
        .map(|m| format!("<p class=\"badge bad\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · kargo-rs</title>\
<link rel=\"stylesheet\" href=\"{b}/ui/assets/app.css\"></head><body>\
<main><form class=\"card login\" method=\"post\" action=\"{b}/ui/login\">\
<h1>kargo-rs</h1><p class=\"muted\">Log in with your API token.</p>{error}\
<label for=\"token\">Token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" autofocus>\
<input type=\"hidden\" name=\"next\" value=\"{n}\"><button class=\"action\" type=\"submit\">Log in</button>\
</form></main></body></html>\n",
        b = esc(base),
        n = esc(next),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn form(State(ui): State<Arc<Ui>>, original: OriginalUri, uri: Uri) -> Response {
    let base = base_of(&original, &uri);
    if ui.auth.is_open() {
        return Redirect::to(&format!("{base}/ui/")).into_response();
    }
    let next = safe_next(&base, uri.query().and_then(|q| form_value(q, "next")));
    html(StatusCode::OK, login_page(&base, &next, None))
}

pub(super) async fn submit(
    State(ui): State<Arc<Ui>>,
    original: OriginalUri,
    uri: Uri,
    body: Body,
) -> Response {
    let base = base_of(&original, &uri);
    let form = read_limited(body, MAX_FORM)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let next = safe_next(&base, form_value(&form, "next"));
    let token = form_value(&form, "token").unwrap_or_default();
    let token = token.trim();
    let Some(principal) = ui.auth.access().authenticate(token).cloned() else {
        tracing::warn!("UI login refused: unknown token");
        let message = if token.is_empty() {
            "token: required"
        } else {
            "unknown token"
        };
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(&base, &next, Some(message)),
        );
    };
    let name = principal.name().to_owned();
    let Some(session) = ui.auth.sessions().create(principal) else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            login_page(
                &base,
                &next,
                Some("no session could be made now; try again"),
            ),
        );
    };
    tracing::info!(user = %name, "UI login");
    let path = format!("{base}/");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, set_cookie(&session.id, &path)),
            (header::LOCATION, next),
        ],
    )
        .into_response()
}

pub(super) async fn logout(
    State(ui): State<Arc<Ui>>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let base = base_of(&original, &uri);
    let form = read_limited(body, MAX_FORM)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if let Some(id) = cookie(&headers) {
        // The form carries the session's CSRF token: another site cannot log us out.
        let ok =
            ui.auth.sessions().get(id).is_some_and(|(_, csrf)| {
                form_value(&form, "csrf").as_deref() == Some(csrf.as_str())
            });
        if !ok {
            return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
        }
        ui.auth.sessions().remove(id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear_cookie(&format!("{base}/"))),
            (
                header::LOCATION,
                format!("{base}/ui/login?next={}", url(&format!("{base}/ui/"))),
            ),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_next_stays_home() {
        assert_eq!(
            form_value("token=a%2Bb+c&next=%2Fui%2F", "token").as_deref(),
            Some("a+b c")
        );
        assert_eq!(form_value("token=%zz", "token"), None);
        assert_eq!(
            safe_next("", Some("/ui/projects/x".into())),
            "/ui/projects/x"
        );
        assert_eq!(
            safe_next("", Some("https://evil.example/ui/".into())),
            "/ui/"
        );
        assert_eq!(safe_next("/k", Some("/ui/".into())), "/k/ui/");
    }
}
