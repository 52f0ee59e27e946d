//! Following a pull-request list past its first page, as each provider documents it:
//!
//! - GitHub and Gitea/Forgejo: the `Link` header's `rel="next"` URL;
//! - GitLab: the `Link` header too, else `X-Next-Page` (a page number for `page=`);
//! - Bitbucket Cloud: the `next` URL in the body;
//! - Azure DevOps: the `x-ms-continuationtoken` header (sent back as
//!   `continuationToken=`), else, when the page was as long as the `$top` asked for, the
//!   next `$skip`.
//!
//! A next page is only followed on the API's own origin (scheme, host and port), so a
//! server cannot send the token elsewhere through a `Link` header.

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Value as Json;

use crate::git::GitProvider;

/// The items asked for per page (each provider's largest documented page, Gitea's default
/// maximum).
pub(super) fn page_size(provider: GitProvider) -> usize {
    match provider {
        GitProvider::GitHub | GitProvider::GitLab | GitProvider::Azure => 100,
        GitProvider::Gitea | GitProvider::Bitbucket => 50,
    }
}

/// The query parameter that asks for [`page_size`] items.
pub(super) fn page_size_param(provider: GitProvider) -> &'static str {
    match provider {
        GitProvider::GitHub | GitProvider::GitLab => "per_page",
        GitProvider::Gitea => "limit",
        GitProvider::Bitbucket => "pagelen",
        GitProvider::Azure => "$top",
    }
}

/// The most pages one lookup reads (a bound against a server that never stops).
pub(super) const MAX_PAGES: usize = 100;

/// The URL `rel="next"` names in a `Link` header (RFC 8288), if any.
pub(super) fn link_next(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
            .then_some(target)
    })
}

/// `url` with query parameter `key` set to `value` (replacing an earlier value).
fn with_param(url: &Url, key: &str, value: &str) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = url.clone();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(key, value);
    next
}

/// The next page after `current` (which answered with `headers`, `body` and `items`
/// list items), or `None` on the last page.
pub(super) fn next_page(
    provider: GitProvider,
    current: &Url,
    headers: &HeaderMap,
    body: &Json,
    items: usize,
) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    match provider {
        GitProvider::GitHub | GitProvider::Gitea => {
            header("link").and_then(link_next).map(str::to_owned)
        }
        GitProvider::GitLab => header("link")
            .and_then(link_next)
            .map(str::to_owned)
            .or_else(|| {
                let page = header("x-next-page")?;
                Some(with_param(current, "page", page).to_string())
            }),
        GitProvider::Bitbucket => body.get("next").and_then(Json::as_str).map(str::to_owned),
        GitProvider::Azure => {
            if let Some(token) = header("x-ms-continuationtoken") {
                return Some(with_param(current, "continuationToken", token).to_string());
            }
            let asked: usize = query(current, "$top")?.parse().ok()?;
            if items == 0 || items < asked {
                return None;
            }
            let skip: usize = query(current, "$skip")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Some(with_param(current, "$skip", &(skip + items).to_string()).to_string())
        }
    }
}

fn query(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Whether `next` is on the same origin as the API base `api`.
pub(super) fn same_origin(api: &Url, next: &Url) -> bool {
    api.scheme() == next.scheme()
        && api.host_str() == next.host_str()
        && api.port_or_known_default() == next.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_headers() {
        let h = r#"<https://api.github.com/r?page=3>; rel="next", <https://api.github.com/r?page=9>; rel="last""#;
        assert_eq!(link_next(h), Some("https://api.github.com/r?page=3"));
        let h = r#"<https://g/r?page=1>; rel="prev first", <https://g/r?page=2>; rel=next"#;
        assert_eq!(link_next(h), Some("https://g/r?page=2"));
        assert_eq!(link_next(r#"<https://g/r?page=1>; rel="last""#), None);
        assert_eq!(link_next("garbage"), None);
    }

    #[test]
    fn next_pages_per_provider() {
        let url = Url::parse("https://h/api?state=open&per_page=2").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-next-page", HeaderValue::from_static("3"));
        let next = next_page(GitProvider::GitLab, &url, &headers, &Json::Null, 2).unwrap();
        assert_eq!(next, "https://h/api?state=open&per_page=2&page=3");
        headers.insert("x-next-page", HeaderValue::from_static(""));
        assert_eq!(
            next_page(GitProvider::GitLab, &url, &headers, &Json::Null, 2),
            None
        );

        let body = serde_json::json!({"values": [], "next": "https://h/api?page=2"});
        assert_eq!(
            next_page(GitProvider::Bitbucket, &url, &HeaderMap::new(), &body, 0).as_deref(),
            Some("https://h/api?page=2")
        );

        let url = Url::parse("https://h/prs?%24top=2").unwrap();
        let next = next_page(GitProvider::Azure, &url, &HeaderMap::new(), &Json::Null, 2).unwrap();
        assert_eq!(next, "https://h/prs?%24top=2&%24skip=2");
        assert_eq!(
            next_page(GitProvider::Azure, &url, &HeaderMap::new(), &Json::Null, 1),
            None
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-ms-continuationtoken", HeaderValue::from_static("abc"));
        let next = next_page(GitProvider::Azure, &url, &headers, &Json::Null, 1).unwrap();
        assert_eq!(next, "https://h/prs?%24top=2&continuationToken=abc");

        let api = Url::parse("https://h/api/v3").unwrap();
        assert!(same_origin(&api, &Url::parse("https://h:443/x").unwrap()));
        assert!(!same_origin(&api, &Url::parse("https://evil/x").unwrap()));
        assert!(!same_origin(&api, &Url::parse("http://h/x").unwrap()));
    }
}
