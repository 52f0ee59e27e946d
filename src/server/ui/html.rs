//! HTML building blocks of the pages: escaping, the page frame, badges, times.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::server::views::ArtifactVersion;

/// `s` with `&`, `<`, `>`, `"` and `'` escaped, for text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// `s` percent-encoded for a URL path segment or query value.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// How long ago `t` was, shortly (`42s`, `5m`, `3h`, `2d`), with the exact time as a
/// tooltip.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    let short = match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    };
    format!(
        "<time datetime=\"{}\" title=\"{}\">{short} ago</time>",
        t.to_rfc3339(),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// A duration in milliseconds, shortly.
pub fn duration_ms(ms: i64) -> String {
    match ms {
        ..0 => String::new(),
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A coloured label; `tone` is one of `ok`, `bad`, `busy`, `warn`, `idle`.
pub fn badge(tone: &str, text: &str) -> String {
    format!("<span class=\"badge {tone}\">{}</span>", esc(text))
}

/// A Freight's artifacts as a compact list.
pub fn artifact_list(items: &[ArtifactVersion]) -> String {
    let mut out = String::from("<ul class=\"artifacts\">");
    for a in items {
        let short_key = a.key.rsplit('/').next().unwrap_or(&a.key);
        let _ = write!(
            out,
            "<li title=\"{}\"><span class=\"kind\">{}</span> {} <b>{}</b>{}</li>",
            esc(&a.key),
            esc(&a.kind),
            esc(short_key),
            esc(&a.version),
            if a.kind == "commit" && !a.detail.is_empty() {
                format!(" <span class=\"msg\">{}</span>", esc(&a.detail))
            } else {
                String::new()
            }
        );
    }
    out.push_str("</ul>");
    out
}

/// What a page needs to know to frame itself.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    /// The path the UI is mounted under (`""` at the root, `/kargo` when nested).
    pub base: &'a str,
    /// The caller's name.
    pub user: &'a str,
    /// The session's CSRF token (none for a bearer or anonymous caller).
    pub csrf: Option<&'a str>,
    /// The Project shown, if any.
    pub project: Option<&'a str>,
    /// The kinds of change that refresh the page (`Stage,Freight`...); empty: none.
    pub watch: &'a str,
}

/// A whole page: head, navigation, `main` (which live updates replace).
pub fn page(frame: &Frame<'_>, title: &str, main: &str) -> String {
    let base = esc(frame.base);
    let mut nav = format!("<a class=\"brand\" href=\"{base}/ui/\">kargo-rs</a>");
    if let Some(p) = frame.project {
        let p_url = url(p);
        let _ = write!(
            nav,
            "<a href=\"{base}/ui/projects/{p_url}\">{}</a><a href=\"{base}/ui/projects/{p_url}/freight\">Freight</a>",
            esc(p)
        );
    }
    let logout = if frame.csrf.is_some() {
        format!(
            "<form method=\"post\" action=\"{base}/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"link\">log out</button></form>",
            esc(frame.csrf.unwrap_or(""))
        )
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"csrf-token\" content=\"{csrf}\">\
<title>{title} · kargo-rs</title>\
<link rel=\"stylesheet\" href=\"{base}/ui/assets/app.css\">\
<script defer src=\"{base}/ui/assets/app.js\"></script></head>\
<body data-base=\"{base}\" data-project=\"{project}\" data-watch=\"{watch}\">\
<header><nav>{nav}</nav><div class=\"who\">{user}{logout}</div></header>\
<div id=\"flash\" role=\"alert\" hidden></div>\
<main id=\"main\">{main}</main></body></html>\n",
        csrf = esc(frame.csrf.unwrap_or("")),
        title = esc(title),
        project = esc(frame.project.unwrap_or("")),
        watch = esc(frame.watch),
        user = esc(frame.user),
    )
}

/// A button that calls the API: `method path` with JSON `body`; `then` says what the
/// page does after success (`reload`, or `promotion` to open the promotion answered).
pub fn action_button(
    label: &str,
    method: &str,
    path: &str,
    body: &str,
    then: &str,
    class: &str,
) -> String {
    format!(
        "<button class=\"action {}\" data-method=\"{}\" data-path=\"{}\" data-body=\"{}\" data-then=\"{}\">{}</button>",
        esc(class),
        esc(method),
        esc(path),
        esc(body),
        esc(then),
        esc(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_urls() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url("dev/a b"), "dev%2Fa%20b");
        assert_eq!(duration_ms(1500), "1.5 s");
        assert_eq!(duration_ms(61_000), "1m 1s");
    }
}
